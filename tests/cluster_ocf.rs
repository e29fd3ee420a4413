//! The OCF agent passes resource-agents' `ocf-tester` against the simulator (vCenter mode).

#[path = "pacemaker/common.rs"]
mod common;
#[path = "support/sim.rs"]
mod sim;

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
    let sim = Sim::start(Mode::VCenter);
    let dir = tempfile::tempdir().unwrap();
    // ocf-tester runs meta-data as user nobody, who must reach the shim.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let agent = dir.path().join("vm");
    common::write_shim(&agent);
    let pw = common::write_password_file(dir.path(), &sim.password);

    let started = Instant::now();
    let out = Command::new("ocf-tester")
        .arg("-v")
        .arg("-n")
        .arg("vmha-ocf-tester")
        .args(["-o", &format!("url={}", sim.url)])
        .args(["-o", &format!("user={}", sim.user)])
        .args(["-o", &format!("password_file={}", pw.display())])
        .args(["-o", &format!("ca_file={}", sim.ca_file.display())])
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
        !text.contains(&sim.password),
        "the password leaked into the agent's output"
    );
    // ocf-tester ends with a stop: the simulator itself must show the VM off.
    let vm = sim.vm(VM);
    assert_eq!(vm["power_state"], "poweredOff", "{vm}");
    assert!(started.elapsed() < Duration::from_secs(240), "ocf-tester took too long");
}
