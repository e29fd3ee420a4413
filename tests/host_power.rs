//! `vmha host-shutdown` / `host-reboot` and the CLUSTERPRO drop-in `adapters/clusterpro/hostdown.sh` against the
//! simulator (tests/vcsim/hostpower.go adds ShutdownHost_Task and RebootHost_Task, which vcsim 0.24 lacks).

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::Sim;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

fn connection(sim: &Sim, host: &str) -> String {
    sim.host(host)["connection_state"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[test]
fn host_shutdown_and_reboot() {
    let sim = Sim::start("vcenter");
    let vmha = sim.vmha(bin());

    // Not in maintenance mode, no --force: refused before any call, the host untouched.
    let r = vmha.run(&["host-shutdown", "--host", "DC0_C0_H2"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(
        r.stderr.contains("not in maintenance mode") && r.stderr.contains("--force"),
        "{}",
        r.stderr
    );
    assert_eq!(sim.soap_calls("ShutdownHost_Task"), 0);

    // --force: the host goes down.
    let r = vmha.run(&["--json", "host-shutdown", "--host", "DC0_C0_H2", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    let j: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(
        (j["host"].as_str(), j["action"].as_str(), j["force"].as_bool()),
        (Some("DC0_C0_H2"), Some("shutdown"), Some(true))
    );
    assert_eq!(sim.soap_calls("ShutdownHost_Task"), 1);
    wait_host(&sim, "DC0_C0_H2", "notResponding");

    // A host that is not connected: refused, no call.
    let r = vmha.run(&["host-shutdown", "--host", "DC0_C0_H2", "--force"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("DC0_C0_H2 is notResponding"), "{}", r.stderr);
    assert_eq!(sim.soap_calls("ShutdownHost_Task"), 1);

    // In maintenance mode no --force is needed; a reboot brings the host back.
    sim.post("/host/DC0_C0_H1/maintenance", json!({"enabled": true}));
    let r = vmha.run(&["host-reboot", "--host", "DC0_C0_H1"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(sim.soap_calls("RebootHost_Task"), 1);
    wait_host(&sim, "DC0_C0_H1", "notResponding");
    wait_host(&sim, "DC0_C0_H1", "connected");

    // Unknown host: a usage error naming the known ones.
    let r = vmha.run(&["host-reboot", "--host", "nope", "--force"]);
    assert_eq!(r.code, 2, "{r:?}");
    assert!(
        r.stderr.contains("no host named 'nope'") && r.stderr.contains("DC0_C0_H0"),
        "{}",
        r.stderr
    );
    // vCenter without --host: which host?
    let r = vmha.run(&["host-shutdown", "--force"]);
    assert_eq!(r.code, 2, "{r:?}");
}

fn wait_host(sim: &Sim, host: &str, state: &str) {
    let t = Instant::now();
    while connection(sim, host) != state {
        assert!(t.elapsed() < Duration::from_secs(10), "{host} never became {state}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn esx_direct_shuts_its_one_host_down() {
    let sim = Sim::start("esx");
    let r = sim.vmha(bin()).run(&["host-shutdown", "--force"]);
    assert_eq!(r.code, 0, "{r:?}");
    wait_host(&sim, "localhost.localdomain", "notResponding");
}

#[test]
fn clusterpro_hostdown_script() {
    let sim = Sim::start("vcenter");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", sim.ready("password"))).unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let config = dir.path().join("mon-app.toml");
    std::fs::write(
        &config,
        format!(
            "url = \"{}\"\nuser = \"{}\"\npassword-file = \"{}\"\nthumbprint = \"{}\"\nhost = \"DC0_C0_H0\"\n",
            sim.ready("url"),
            sim.ready("user"),
            pw.display(),
            sim.ready("thumbprint")
        ),
    )
    .unwrap();
    let run = |clp: &[(&str, &str)]| {
        let mut c = Command::new(Path::new(env!("CARGO_MANIFEST_DIR")).join("adapters/clusterpro/hostdown.sh"));
        for (k, _) in std::env::vars() {
            if k.starts_with("VMHA_") || k.starts_with("CLP_") || k.starts_with("HOSTDOWN_") {
                c.env_remove(k);
            }
        }
        let out = c
            .env("VMHA", bin())
            .env("VMHA_CONFIG", &config)
            .envs(clp.iter().copied())
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("--- hostdown.sh {clp:?} -> {:?}\n{text}", out.status.code());
        (out.status.code().unwrap_or(-1), text)
    };
    // By hand: nothing happens.
    let (rc, text) = run(&[]);
    assert_eq!(rc, 2, "{text}");
    // HOSTDOWN_FORCE=0 on a host not in maintenance mode: refused, nothing called.
    let (rc, text) = run(&[
        ("CLP_MONITORNAME", "mon-app"),
        ("HOSTDOWN_FORCE", "0"),
        ("HOSTDOWN_ACTION", "reboot"),
    ]);
    assert_eq!(rc, 1, "{text}");
    assert!(text.contains("not in maintenance mode"), "{text}");
    assert_eq!(
        sim.soap_calls("ShutdownHost_Task") + sim.soap_calls("RebootHost_Task"),
        0
    );
    // As a monitor's recovery script: this server's host (the settings file's) goes down, forced by default.
    let (rc, text) = run(&[("CLP_MONITORNAME", "mon-app")]);
    assert_eq!(rc, 0, "{text}");
    assert!(text.contains("[I] [mon-app] hostdown.sh: host-shutdown done"), "{text}");
    assert_eq!(sim.soap_calls("ShutdownHost_Task"), 1);
    wait_host(&sim, "DC0_C0_H0", "notResponding");
}
