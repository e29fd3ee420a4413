//! A real one-node Pacemaker (corosync + pacemakerd) runs the OCF agent on a simulator VM. Every state is read
//! from the simulator itself, not through vmha. Needs root (namespaces, /usr/lib/ocf); skips visibly otherwise.

#[path = "pacemaker/common.rs"]
mod common;
#[path = "support/sim.rs"]
mod sim;
#[path = "pacemaker/stack.rs"]
mod stack;

use std::time::{Duration, Instant};

use serde_json::Value;
use sim::{Mode, Sim};
use stack::{AgentInstall, Node, Primitive, cib_xml, corosync_conf};

const VM: &str = "DC0_C0_RP0_VM0";
const NODE_HOST: &str = "DC0_C0_H0";
const MONITOR_INTERVAL_S: u64 = 2;

fn running_on(v: &Value, host: &str) -> bool {
    v["power_state"] == "poweredOn" && v["host"] == host
}

#[test]
fn one_node_pacemaker_runs_and_recovers_the_vm() {
    if !common::is_root() {
        println!("SKIPPED one_node_pacemaker_runs_and_recovers_the_vm: needs root (mount namespaces, /usr/lib/ocf)");
        return;
    }
    for tool in [
        "corosync",
        "pacemakerd",
        "cibadmin",
        "crm_resource",
        "crmadmin",
        "nsenter",
        "unshare",
    ] {
        common::require_tool(tool);
    }
    let sim = Sim::start(Mode::VCenter);
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_password_file(dir.path(), &sim.password);
    let _agent = AgentInstall::new();

    // Begin from a stopped VM, so the cluster's own start is what powers it on.
    sim.guest_shutdown(VM);
    sim.wait_vm(VM, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");

    let node_dir = dir.path().join("node1");
    let conf = corosync_conf(&[("node1", "127.0.0.1")], &node_dir.join("corosync.log"));
    let mut node = Node::new("node1", &node_dir, None, &conf, &cib_xml(""));
    let t0 = Instant::now();
    node.start_corosync();
    node.wait_quorate(Duration::from_secs(20));
    node.start_pacemaker();
    let quorate = t0.elapsed();
    let dc = node.wait_dc(Duration::from_secs(60));
    println!("corosync quorate in {quorate:.1?}");
    let stack_up = t0.elapsed();
    println!("one-node stack up (corosync quorate, DC {dc} elected) in {stack_up:.1?}");
    assert_eq!(dc, "node1");

    // Start: Pacemaker probes (not running), then starts the VM on node1's host.
    let t_start = Instant::now();
    node.tool_ok(
        "cibadmin",
        &[
            "--create",
            "--scope",
            "resources",
            "--xml-text",
            &Primitive {
                url: &sim.url,
                user: &sim.user,
                thumbprint: &sim.thumbprint,
                password_file: &pw,
                hostmap: &format!("node1:{NODE_HOST}"),
                vm: VM,
                allow_migrate: false,
                monitor_interval_s: MONITOR_INTERVAL_S,
            }
            .xml(),
        ],
    );
    let v = sim.wait_vm(VM, Duration::from_secs(60), |v| running_on(v, NODE_HOST));
    println!(
        "resource created -> VM poweredOn on {NODE_HOST} in {:.1?}",
        t_start.elapsed()
    );
    assert_eq!(v["host"], NODE_HOST);
    node.wait_monitor_ok("vm1", Duration::from_secs(30));

    // Powered off from outside: the recurring monitor notices and Pacemaker starts it again.
    let t_fail = Instant::now();
    sim.guest_shutdown(VM);
    sim.wait_vm(VM, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");
    sim.wait_vm(VM, Duration::from_secs(60), |v| running_on(v, NODE_HOST));
    let recovered = t_fail.elapsed();
    println!(
        "outside power-off -> running again under Pacemaker in {recovered:.1?} (monitor interval {MONITOR_INTERVAL_S} s)"
    );
    let failcount = node.tool("crm_failcount", &["--query", "-r", "vm1", "-N", "node1"]);
    let failcount = String::from_utf8_lossy(&failcount.stdout).into_owned();
    assert!(
        failcount.contains("value=1"),
        "the failure was not recorded: {failcount}"
    );

    // target-role=Stopped: the VM is powered off.
    let t_stop = Instant::now();
    node.tool_ok(
        "crm_resource",
        &["-r", "vm1", "--meta", "-p", "target-role", "-v", "Stopped"],
    );
    sim.wait_vm(VM, Duration::from_secs(60), |v| v["power_state"] == "poweredOff");
    println!("target-role=Stopped -> VM poweredOff in {:.1?}", t_stop.elapsed());

    let took = node.stop();
    println!("pacemakerd stopped in {took:.1?}; whole cycle {:.1?}", t0.elapsed());
    // The cluster's shutdown must not have started it again.
    assert_eq!(sim.vm(VM)["power_state"], "poweredOff");
}
