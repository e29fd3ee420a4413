//! The OCF agent passes resource-agents' `ocf-tester` against the simulator (vCenter mode).

#[path = "pacemaker/common.rs"]
pub mod common;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::os::unix::fs::PermissionsExt;
use std::process::Command;
use std::time::{Duration, Instant};

use sim::{Mode, Sim};

const VM: &str = "DC0_C0_RP0_VM0";
const HOST: &str = "DC0_C0_H0";

#[test]
fn ocf_tester_passes_against_the_simulator() {
    common::require_tool("ocf-tester");
    common::require_tool("xmllint");
    let sim = Sim::start(Mode::VCenter.as_str());
    let dir = tempfile::tempdir().unwrap();
    // ocf-tester runs meta-data as user nobody, who must reach the shim.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    // ...and the binary: a copy of this build's in the same 0755 directory, since the checkout's own path
    // may not be open to nobody.
    let binary = dir.path().join("vmha");
    std::fs::copy(env!("CARGO_BIN_EXE_vmha"), &binary).unwrap();
    let agent = dir.path().join("vm");
    common::write_shim_for(&agent, &binary);
    let pw = common::write_password_file(dir.path(), sim.ready("password"));

    let started = Instant::now();
    let out = Command::new("ocf-tester")
        .arg("-v")
        .arg("-n")
        .arg("vmha-ocf-tester")
        .args(["-o", &format!("url={}", sim.ready("url"))])
        .args(["-o", &format!("user={}", sim.ready("user"))])
        .args(["-o", &format!("password_file={}", pw.display())])
        .args(["-o", &format!("ca_file={}", sim.ready("ca_file"))])
        .args(["-o", &format!("name={VM}")])
        .args(["-o", &format!("hostmap=node1:{HOST};node2:DC0_C0_H1")])
        .args(["-o", &format!("host={HOST}")])
        .args(["-o", "stop_wait=20"])
        .args(["-o", "start_wait=10"])
        .arg(&agent)
        .output()
        .expect("run ocf-tester");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("ocf-tester took {:?}\n{text}", started.elapsed());
    assert!(out.status.success(), "ocf-tester failed:\n{text}\n{}", sim.log_tail(40));
    assert!(text.contains("passed all tests"), "{text}");
    assert!(
        !text.contains(sim.ready("password")),
        "the password leaked into the agent's output"
    );
    // ocf-tester ends with a stop: the simulator itself must show the VM off.
    let vm = sim.vm(VM);
    assert_eq!(vm["power_state"], "poweredOff", "{vm}");
    assert!(started.elapsed() < Duration::from_secs(240), "ocf-tester took too long");
}

/// Runs `vmha ocf ACTION` with exactly these OCF variables; returns (exit code, output, elapsed).
fn agent(action: &str, vars: &[(&str, String)]) -> (i32, String, Duration) {
    let mut c = Command::new(env!("CARGO_BIN_EXE_vmha"));
    for (k, _) in std::env::vars() {
        if k.starts_with("VMHA_") || k.starts_with("OCF_") {
            c.env_remove(k);
        }
    }
    c.arg("ocf")
        .arg(action)
        .envs(vars.iter().map(|(k, v)| (*k, v.as_str())));
    let t = Instant::now();
    let out = c.output().expect("run vmha ocf");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    println!("--- ocf {action} -> {:?}\n{text}", out.status.code());
    (out.status.code().unwrap_or(-1), text, t.elapsed())
}

#[test]
fn agent_codes_node_relative_monitor_password_parameter_and_live_migration() {
    let sim = Sim::start(Mode::VCenter.as_str());
    let base = |vm: &str, extra: &[(&'static str, &str)]| -> Vec<(&'static str, String)> {
        let mut v: Vec<(&'static str, String)> = vec![
            ("OCF_RESKEY_url", sim.ready("url").to_string()),
            ("OCF_RESKEY_user", sim.ready("user").to_string()),
            ("OCF_RESKEY_password", sim.ready("password").to_string()),
            ("OCF_RESKEY_thumbprint", sim.ready("thumbprint").to_string()),
            ("OCF_RESKEY_name", vm.to_string()),
            ("OCF_RESKEY_hostmap", format!("node1:{HOST};node2:DC0_C0_H1")),
            ("OCF_RESKEY_CRM_meta_on_node", "node1".into()),
            ("OCF_RESKEY_CRM_meta_interval", "10000".into()),
        ];
        for (k, val) in extra {
            v.retain(|(name, _)| name != k);
            v.push((k, val.to_string()));
        }
        v
    };

    // The password parameter (visible in the CIB) works, and never shows in the output.
    let (rc, text, _) = agent("monitor", &base(VM, &[]));
    assert_eq!(rc, 0, "{text}");
    assert!(!text.contains(sim.ready("password")));
    // node2 stands for DC0_C0_H1: the same VM is "not running" there, at once (no migration wait).
    let (rc, text, took) = agent("monitor", &base(VM, &[("OCF_RESKEY_CRM_meta_on_node", "node2")]));
    assert_eq!(rc, 7, "{text}");
    assert!(
        took < Duration::from_secs(5),
        "monitor of a VM on another host took {took:?}"
    );
    // A node that hostmap does not list: probe says not running, validate-all says "not on this node".
    let probe_vars = base(
        VM,
        &[
            ("OCF_RESKEY_CRM_meta_on_node", "node3"),
            ("OCF_RESKEY_CRM_meta_interval", "0"),
        ],
    );
    assert_eq!(agent("monitor", &probe_vars).0, 7);
    assert_eq!(
        agent("validate-all", &base(VM, &[("OCF_RESKEY_CRM_meta_on_node", "node3")])).0,
        2
    );
    // Wrong password: configuration error (6); bad parameters: 6 before any connection.
    let (rc, text, _) = agent("monitor", &base(VM, &[("OCF_RESKEY_password", "wrong-password")]));
    assert_eq!(rc, 6, "{text}");
    assert!(!text.contains("wrong-password"), "{text}");
    assert_eq!(agent("start", &base(VM, &[("OCF_RESKEY_hostmap", "node1")])).0, 6);
    assert_eq!(agent("validate-all", &base(VM, &[])).0, 0);

    // Server unreachable: a probe answers 7 (documented decision), a recurring monitor 1, a start 1.
    let dead = "https://127.0.0.1:9/sdk";
    let (rc, text, took) = agent(
        "monitor",
        &base(VM, &[("OCF_RESKEY_url", dead), ("OCF_RESKEY_CRM_meta_interval", "0")]),
    );
    assert_eq!(rc, 7, "{text}");
    assert!(took < Duration::from_secs(30), "probe took {took:?}");
    assert_eq!(agent("monitor", &base(VM, &[("OCF_RESKEY_url", dead)])).0, 1);
    assert_eq!(agent("start", &base(VM, &[("OCF_RESKEY_url", dead)])).0, 1);

    // Live migration: migrate_to node2 moves it to DC0_C0_H1 without a power-off; migrate_from on node2 confirms.
    let (rc, text, _) = agent(
        "migrate_to",
        &base(VM, &[("OCF_RESKEY_CRM_meta_migrate_target", "node2")]),
    );
    assert_eq!(rc, 0, "{text}");
    let v = sim.vm(VM);
    assert_eq!(
        (v["power_state"].as_str(), v["host"].as_str()),
        (Some("poweredOn"), Some("DC0_C0_H1"))
    );
    let (rc, text, _) = agent("migrate_from", &base(VM, &[("OCF_RESKEY_CRM_meta_on_node", "node2")]));
    assert_eq!(rc, 0, "{text}");
    // The source node's stop after the migration leaves the VM running on node2's host.
    let (rc, text, _) = agent("stop", &base(VM, &[]));
    assert_eq!(rc, 0, "{text}");
    assert_eq!(sim.vm(VM)["power_state"], "poweredOn");
    // A target that hostmap does not know is a configuration error.
    assert_eq!(
        agent(
            "migrate_to",
            &base(VM, &[("OCF_RESKEY_CRM_meta_migrate_target", "node9")])
        )
        .0,
        6
    );
}

/// The agent reads only `OCF_RESKEY_*`: every `VMHA_*` variable in the environment Pacemaker was started
/// from (a password, another server, unparsable values) leaves its answers exactly as without them.
#[test]
fn agent_ignores_every_vmha_variable() {
    let sim = Sim::start(Mode::VCenter.as_str());
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let ocf = |interval: &str| -> Vec<(&'static str, String)> {
        vec![
            ("OCF_RESKEY_url", sim.ready("url").to_string()),
            ("OCF_RESKEY_user", sim.ready("user").to_string()),
            ("OCF_RESKEY_password_file", pw.display().to_string()),
            ("OCF_RESKEY_thumbprint", sim.ready("thumbprint").to_string()),
            ("OCF_RESKEY_name", VM.to_string()),
            ("OCF_RESKEY_host", HOST.to_string()),
            ("OCF_RESKEY_CRM_meta_interval", interval.to_string()),
        ]
    };
    let noise: Vec<(&'static str, String)> = [
        ("VMHA_PASSWORD", "not-the-password"),
        ("VMHA_PASSWORD_FILE", "/nonexistent/vmha.pw"),
        ("VMHA_URL", "https://127.0.0.1:9/sdk"),
        ("VMHA_USER", "somebody-else"),
        ("VMHA_INSECURE", "perhaps"),
        ("VMHA_THUMBPRINT", "00"),
        ("VMHA_CA_FILE", "/nonexistent/ca.pem"),
        ("VMHA_REQUEST_TIMEOUT", "-1"),
        ("VMHA_CONFIG", "/nonexistent/vmha.toml"),
        ("VMHA_JSON", "1"),
        ("VMHA_NAME", "DC0_C0_RP0_VM1"),
        ("VMHA_HOST", "DC0_C0_H1"),
        ("VMHA_SESSION_DIR", "/nonexistent/sessions"),
        ("VMHA_NO_SESSION_CACHE", "sometimes"),
        ("VMHA_RECORD", "/nonexistent/record"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    for (action, interval) in [
        ("monitor", "0"),
        ("monitor", "10000"),
        ("validate-all", "0"),
        ("stop", "0"),
    ] {
        let clean = agent(action, &ocf(interval));
        let mut vars = ocf(interval);
        vars.extend(noise.iter().cloned());
        let noisy = agent(action, &vars);
        assert_eq!(
            noisy.0, clean.0,
            "{action} (interval {interval}) with VMHA_* set answered {} instead of {}:\n{}",
            noisy.0, clean.0, noisy.1
        );
        assert!(!noisy.1.contains("password source"), "{}", noisy.1);
        assert!(
            !noisy.1.trim_start().starts_with('{'),
            "VMHA_JSON reached the agent: {}",
            noisy.1
        );
    }
    // The stop above really stopped the VM here: with the variables set, the agent still acted on OCF's VM.
    assert_eq!(sim.vm(VM)["power_state"], "poweredOff");
    assert_eq!(sim.vm("DC0_C0_RP0_VM1")["power_state"], "poweredOn");
}

/// Without `OCF_RESKEY_CRM_meta_on_node` the agent asks `crm_node -n` for this node's name (for hostmap): its
/// answer is used, and one that never comes is given up after 10 s (the child killed), not waited for.
#[test]
fn agent_asks_crm_node_and_bounds_it() {
    let sim = Sim::start(Mode::VCenter.as_str());
    let dir = tempfile::tempdir().unwrap();
    let path = format!("{}:{}", dir.path().display(), std::env::var("PATH").unwrap_or_default());
    let fake = dir.path().join("crm_node");
    let vars = |node_script: &str| -> Vec<(&'static str, String)> {
        std::fs::write(&fake, node_script).unwrap();
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
        vec![
            ("OCF_RESKEY_url", sim.ready("url").to_string()),
            ("OCF_RESKEY_user", sim.ready("user").to_string()),
            ("OCF_RESKEY_password", sim.ready("password").to_string()),
            ("OCF_RESKEY_thumbprint", sim.ready("thumbprint").to_string()),
            ("OCF_RESKEY_name", VM.to_string()),
            ("OCF_RESKEY_hostmap", format!("node1:{HOST};node2:DC0_C0_H1")),
            ("OCF_RESKEY_CRM_meta_interval", "10000".into()),
            ("PATH", path.clone()),
        ]
    };
    // node1 stands for the VM's host: running here; node2 does not: not running here.
    let (rc, text, _) = agent("monitor", &vars("#!/bin/sh\necho node1\n"));
    assert_eq!(rc, 0, "{text}");
    let (rc, text, _) = agent("monitor", &vars("#!/bin/sh\necho node2\n"));
    assert_eq!(rc, 7, "{text}");
    // A crm_node that hangs: a generic error, named, within the 10 s bound (plus start-up).
    let (rc, text, took) = agent("monitor", &vars("#!/bin/sh\nexec sleep 60\n"));
    assert_eq!(rc, 1, "{text}");
    assert!(text.contains("crm_node -n did not answer within 10 s"), "{text}");
    assert!(took < Duration::from_secs(20), "took {took:?}");
}
