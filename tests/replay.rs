//! Offline tier: every scenario replayed from `recordings/` (recorded with `--record` against the extended
//! vcsim) through wiremock. No network, no simulator. The same outputs as live are asserted, every
//! recorded exchange must have been asked for exactly once, and nothing else; a read-only scenario's
//! recording holds no state-changing method.

#[path = "support/replay.rs"]
pub mod replay;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/scenarios.rs"]
pub mod scenarios;

use std::path::Path;

use replay::mount_recording;
use run::Vmha;
use scenarios::check_step;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_scenario_replays() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("recordings");
    let all = scenarios::all();
    for sc in &all {
        assert!(
            root.join(sc.name).is_dir(),
            "no recording for scenario {} (re-record: see README)",
            sc.name
        );
    }
    let mut handles = Vec::new();
    for sc in all {
        let dir = root.join(sc.name);
        handles.push((
            sc.name,
            tokio::spawn(async move {
                let (server, methods) = mount_recording(&dir).await;
                sc.check_changes(methods.iter().map(String::as_str));
                let url = format!("{}/sdk", server.uri());
                for (i, st) in sc.steps.iter().enumerate() {
                    let v = Vmha {
                        bin: env!("CARGO_BIN_EXE_vmha").into(),
                        url: url.clone(),
                        user: "vmha".into(),
                        password: Some(st.password("replay-password").to_string()),
                        flags: vec![],
                        stdin: None,
                    };
                    let args = st.args.clone();
                    let r = tokio::task::spawn_blocking(move || v.run(&args)).await.unwrap();
                    check_step(sc.name, i, st, &r);
                }
                // Each recorded exchange asked for exactly once, nothing unrecorded (wiremock panics otherwise).
                server.verify().await;
            }),
        ));
    }
    // Every scenario runs to its end, so one failure does not hide another.
    let mut failed = Vec::new();
    for (name, h) in handles {
        match h.await {
            Ok(()) => println!("replayed {name}"),
            Err(e) => {
                let why = e.try_into_panic().map_or_else(
                    |e| e.to_string(),
                    |p| {
                        p.downcast_ref::<String>()
                            .cloned()
                            .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                            .unwrap_or_default()
                    },
                );
                failed.push(format!("--- {name}: {why}"));
            }
        }
    }
    assert!(
        failed.is_empty(),
        "{} scenario(s) failed:\n{}",
        failed.len(),
        failed.join("\n")
    );
}
