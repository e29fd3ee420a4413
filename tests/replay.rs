//! Offline tier: every scenario replayed from `recordings/` (recorded with `--record` against the extended
//! vcsim) through wiremock. No network, no simulator. The same outputs as live are asserted, and every
//! recorded exchange must have been asked for.

mod support;

use std::path::Path;

use support::replay::mount_recording;
use support::run::{Target, vmha};
use support::scenarios::{self, check_step};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings");
    let all = scenarios::all();
    let mut handles = Vec::new();
    for sc in all {
        let dir = root.join(sc.name);
        assert!(
            dir.is_dir(),
            "no recording for scenario {} (re-record: see README)",
            sc.name
        );
        handles.push(tokio::spawn(async move {
            let (server, count) = mount_recording(&dir).await;
            let url = format!("{}/sdk", server.uri());
            for (i, st) in sc.steps.iter().enumerate() {
                let url = url.clone();
                let args = st.args.clone();
                let r = tokio::task::spawn_blocking(move || {
                    let t = Target {
                        url: &url,
                        user: "vmha",
                        password: "replay-password",
                        trust: vec![],
                        record: None,
                    };
                    vmha(&t, &args)
                })
                .await
                .unwrap();
                check_step(sc.name, i, st, &r);
            }
            let received = server.received_requests().await.unwrap_or_default();
            assert!(
                received.len() >= count,
                "{}: {} of {count} recorded exchanges were asked for",
                sc.name,
                received.len()
            );
            sc.name
        }));
    }
    for h in handles {
        let name = h.await.expect("scenario task");
        println!("replayed {name}");
    }
}
