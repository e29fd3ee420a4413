//! The CLUSTERPRO drop-ins (adapters/clusterpro) run as CLUSTERPRO would run them, against the simulator.
//!
//! Assumed CLUSTERPRO behaviour (from the CLUSTERPRO X reference guide's exec resource chapter, not verified
//! against a real CLUSTERPRO here): start.sh and stop.sh run as root with CLP_EVENT (START, FAILOVER, RECOVER;
//! stop.sh: START or FAILOVER), CLP_FACTOR (why a stop happens, e.g. GROUPSTOP), CLP_SERVER (HOME or OTHER),
//! CLP_DISK (SUCCESS or FAILURE), CLP_PRIORITY, CLP_GROUPNAME, CLP_RESOURCENAME; exit 0 is success, anything
//! else an activation/deactivation failure; stdout is what CLUSTERPRO logs. A genw custom monitor gets no CLP_
//! variables; exit 0 is normal; an asynchronous genw runs on and its exit is an error.

#[path = "pacemaker/common.rs"]
pub mod common;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use sim::{Mode, Sim};

const VM: &str = "DC0_C0_RP0_VM0";
const HOST: &str = "DC0_C0_H0";
const RESOURCE: &str = "exec-vm1";

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("adapters/clusterpro")
        .join(name)
}

struct Env {
    config: PathBuf,
}

impl Env {
    fn command(&self, name: &str, clp: &[(&str, &str)]) -> Command {
        let mut c = Command::new(script(name));
        for (k, _) in std::env::vars() {
            if k.starts_with("VMHA_") || k.starts_with("CLP_") {
                c.env_remove(k);
            }
        }
        c.env("VMHA", env!("CARGO_BIN_EXE_vmha"))
            .env("VMHA_CONFIG", &self.config)
            .env("CLP_RESOURCENAME", RESOURCE)
            .env("VMHA_GENW_RESOURCE", RESOURCE)
            .env("CLP_GROUPNAME", "failover-vm1")
            .env("CLP_PRIORITY", "1")
            .envs(clp.iter().copied())
            .stdin(Stdio::null());
        c
    }

    fn run(&self, name: &str, clp: &[(&str, &str)]) -> (i32, String) {
        let out: Output = self.command(name, clp).output().expect("run script");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        println!("--- {name} {clp:?} -> {:?}\n{text}", out.status.code());
        (out.status.code().unwrap_or(-1), text)
    }
}

#[test]
fn clusterpro_scripts_drive_the_vm() {
    let sim = Sim::start(Mode::VCenter.as_str());
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let config = dir.path().join(format!("{RESOURCE}.toml"));
    std::fs::write(
        &config,
        format!(
            "url = \"{}\"\nuser = \"{}\"\npassword-file = \"{}\"\nthumbprint = \"{}\"\nname = \"{VM}\"\nhost = \"{HOST}\"\n\
             start-wait = 10\nstop-wait = 20\nmigration-wait = 1\n",
            sim.ready("url"),
            sim.ready("user"),
            pw.display(),
            sim.ready("thumbprint")
        ),
    )
    .unwrap();
    let env = Env { config };
    let line_style = |text: &str| {
        text.lines()
            .any(|l| l.len() > 22 && l.as_bytes()[4] == b'-' && l[19..].starts_with(" [I] [") && l.contains(RESOURCE))
    };

    // Group stop: the VM (running on this server's host) is shut down.
    let (rc, text) = env.run(
        "stop.sh",
        &[
            ("CLP_EVENT", "START"),
            ("CLP_FACTOR", "GROUPSTOP"),
            ("CLP_SERVER", "HOME"),
        ],
    );
    assert_eq!(rc, 0, "{text}");
    assert!(line_style(&text), "no CLUSTERPRO-style log line:\n{text}");
    assert_eq!(sim.vm(VM)["power_state"], "poweredOff");

    // Synchronous genw: one check, abnormal while the VM is off.
    let (rc, text) = env.run("genw.sh", &[]);
    assert_eq!(rc, 11, "{text}");
    assert!(text.contains("not powered on"), "{text}");

    // Group start on the home server.
    let (rc, text) = env.run(
        "start.sh",
        &[("CLP_EVENT", "START"), ("CLP_SERVER", "HOME"), ("CLP_DISK", "SUCCESS")],
    );
    assert_eq!(rc, 0, "{text}");
    let v = sim.vm(VM);
    assert_eq!(
        (v["power_state"].as_str(), v["host"].as_str()),
        (Some("poweredOn"), Some(HOST))
    );
    let (rc, text) = env.run("genw.sh", &[]);
    assert_eq!(rc, 0, "{text}");

    // Asynchronous genw: keeps running while healthy, exits the moment the VM goes down.
    let mut watch = env
        .command("genw.sh", &[])
        .env("VMHA_GENW_WATCH", "1")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(2));
    assert!(
        watch.try_wait().unwrap().is_none(),
        "asynchronous genw exited while the VM was healthy"
    );
    let t = Instant::now();
    sim.guest_shutdown(VM);
    let deadline = Instant::now() + Duration::from_secs(30);
    while watch.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = watch.kill();
            panic!("asynchronous genw did not notice the power-off within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = watch.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    println!(
        "--- genw.sh (async) -> {:?} after {:.1?}\n{text}",
        out.status.code(),
        t.elapsed()
    );
    assert_eq!(out.status.code(), Some(11), "{text}");

    // Recovery (CLUSTERPRO restarts the group on this server).
    let (rc, text) = env.run("start.sh", &[("CLP_EVENT", "RECOVER"), ("CLP_SERVER", "HOME")]);
    assert_eq!(rc, 0, "{text}");
    assert_eq!(sim.vm(VM)["power_state"], "poweredOn");
    // A second start (e.g. failover onto a server that already runs it) changes nothing and succeeds.
    let (rc, text) = env.run("start.sh", &[("CLP_EVENT", "FAILOVER"), ("CLP_SERVER", "OTHER")]);
    assert_eq!(rc, 0, "{text}");

    // Run by hand, without CLUSTERPRO's variables: refuse, change nothing.
    let (rc, text) = env.run("stop.sh", &[]);
    assert_eq!(rc, 2, "{text}");
    assert!(text.contains("not run by CLUSTERPRO"), "{text}");
    assert_eq!(sim.vm(VM)["power_state"], "poweredOn");

    // A missing settings file is named.
    let missing = Env {
        config: dir.path().join("nope.toml"),
    };
    let (rc, text) = missing.run("start.sh", &[("CLP_EVENT", "START")]);
    assert_eq!(rc, 2, "{text}");
    assert!(text.contains("nope.toml"), "{text}");
}
