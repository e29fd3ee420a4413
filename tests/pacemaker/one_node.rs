//! One whole cycle of a one-node Pacemaker (corosync + pacemakerd) running the OCF agent on a simulator VM,
//! read from the simulator itself. Shared by tests/cluster_pacemaker.rs (a test-only provider running this
//! build) and tests/installed.rs (the packaged agent, ocf:vmha:vm). Each test file declares `common`, `sim`
//! and `stack` at its root.

use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common;
use crate::sim::{Mode, Sim, vmx_path};
use crate::stack::{Node, Primitive, cib_xml, corosync_conf};

const MONITOR_INTERVAL_S: u64 = 2;

fn running_on(v: &Value, host: &str) -> bool {
    v["power_state"] == "poweredOn" && v["host"] == host
}

/// One whole cycle on a fresh stack: start, outside power-off recovered, target-role=Stopped, with the agent
/// `ocf:PROVIDER:vm` (installed by the caller).
pub fn cycle(mode: Mode, provider: &str) {
    let sim = Sim::start(mode.as_str());
    // The first VM of each inventory (tests/vcsim/README.md) and its host.
    let (vm, host) = match mode {
        Mode::VCenter => ("DC0_H0_VM0", "DC0_H0"),
        Mode::Esx => ("ha-host_VM0", "localhost.localdomain"),
    };
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let label = mode.as_str();

    // Begin from a stopped VM, so the cluster's own start is what powers it on.
    sim.guest_shutdown(vm);
    sim.wait_vm(vm, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");

    let node_dir = dir.path().join("node1");
    let conf = corosync_conf(&[("node1", "127.0.0.1")], &node_dir.join("corosync.log"));
    let mut node = Node::new("node1", &node_dir, None, &conf, &cib_xml(""));
    let t0 = Instant::now();
    node.start_corosync();
    node.wait_quorate(Duration::from_secs(20));
    let quorate = t0.elapsed();
    node.start_pacemaker();
    let dc = node.wait_dc(Duration::from_secs(60));
    println!(
        "[{label}] one-node stack up in {:.1?} (corosync quorate after {quorate:.1?}, DC {dc})",
        t0.elapsed()
    );
    assert_eq!(dc, "node1");

    // vCenter: node1 stands for `host` through hostmap. ESX-direct: the connected host, named by vmx, since
    // stop unregisters the VM and only its vmx path finds it again.
    let vmx = vmx_path(vm);
    let hostmap = format!("node1:{host}");
    let primitive = match mode {
        Mode::VCenter => Primitive {
            url: sim.ready("url"),
            user: sim.ready("user"),
            thumbprint: sim.ready("thumbprint"),
            password_file: &pw,
            hostmap: &hostmap,
            vm_key: "name",
            vm,
            allow_migrate: false,
            monitor_interval_s: MONITOR_INTERVAL_S,
            provider,
        },
        Mode::Esx => Primitive {
            url: sim.ready("url"),
            user: sim.ready("user"),
            thumbprint: sim.ready("thumbprint"),
            password_file: &pw,
            hostmap: "",
            vm_key: "vmx",
            vm: &vmx,
            allow_migrate: false,
            monitor_interval_s: MONITOR_INTERVAL_S,
            provider,
        },
    };

    // Start: Pacemaker probes (not running), then starts the VM on node1's host.
    let t_start = Instant::now();
    node.cib_create("resources", &primitive.xml());
    sim.wait_vm(vm, Duration::from_secs(60), |v| running_on(v, host));
    println!(
        "[{label}] resource created -> VM poweredOn on {host} in {:.1?}",
        t_start.elapsed()
    );
    node.wait_monitor_ok("vm1", Duration::from_secs(30));

    // Powered off from outside: the recurring monitor notices and Pacemaker starts it again.
    let t_fail = Instant::now();
    sim.guest_shutdown(vm);
    sim.wait_vm(vm, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");
    sim.wait_vm(vm, Duration::from_secs(60), |v| running_on(v, host));
    println!(
        "[{label}] outside power-off -> running again under Pacemaker in {:.1?} (monitor interval {MONITOR_INTERVAL_S} s)",
        t_fail.elapsed()
    );
    node.settle(Duration::from_secs(60));
    let failcount = node.tool("crm_failcount", &["--query", "-r", "vm1", "-N", "node1"]);
    let failcount = String::from_utf8_lossy(&failcount.stdout).into_owned();
    assert!(
        failcount.contains("value=1"),
        "the failure was not recorded: {failcount}"
    );

    // target-role=Stopped: the VM is powered off (and, ESX-direct, unregistered).
    let t_stop = Instant::now();
    node.tool_ok(
        "crm_resource",
        &["-r", "vm1", "--meta", "-p", "target-role", "-v", "Stopped"],
    );
    let v = sim.wait_vm(vm, Duration::from_secs(60), |v| match mode {
        Mode::VCenter => v["power_state"] == "poweredOff",
        Mode::Esx => v["registered"] == false,
    });
    println!(
        "[{label}] target-role=Stopped -> VM off in {:.1?}: {}",
        t_stop.elapsed(),
        v["power_state"]
    );
    if mode == Mode::Esx {
        assert_eq!(v["registered"], false, "{v}");
    }

    let took = node.stop();
    println!(
        "[{label}] pacemakerd stopped in {took:.1?}; whole cycle {:.1?}",
        t0.elapsed()
    );
    // The cluster's shutdown must not have started it again.
    let v = sim.vm(vm);
    assert_ne!(v["power_state"], "poweredOn", "{v}");
}
