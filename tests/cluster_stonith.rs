//! Two Pacemaker nodes with stonith on, for real: a `stonith:fence_vmha` device whose plugs are simulator VMs
//! standing for the cluster nodes (pcmk_host_map node1:DC0_H0_VM0, node2:DC0_H0_VM1, plus a spare target).
//! Scenarios: `stonith_admin --off/--reboot/--list` from either node; a stop that fails on node2 (its ESX host
//! not connected) gets node2 fenced and the resource recovered on node1; node2's stack killed gets node2
//! fenced, and only then is the resource started on node1. A sampler reads the simulator every 100 ms.
//! Run only as `flock /tmp/vmha-pacemaker.lock cargo test --test cluster_stonith`.

#[path = "pacemaker/common.rs"]
pub mod common;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;
#[path = "pacemaker/stack.rs"]
pub mod stack;
#[path = "pacemaker/stonith.rs"]
pub mod stonith;
#[path = "pacemaker/twonode.rs"]
pub mod twonode;

use std::collections::BTreeSet;
use std::net::TcpListener;
use std::os::unix::fs::PermissionsExt;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::{Mode, Sim, vmx_path};
use stack::{AgentInstall, Node, Primitive, corosync_conf};
use stonith::{FenceShim, NODE2_VM, SPARE_VM, device_xml, stonith_cib};
use twonode::{HOST_ADDR, InNetns, Net, StopOnDrop, forward, start_two_nodes};

const VM: &str = "DC0_C0_RP0_VM0";
const H0: &str = "DC0_C0_H0";
const H1: &str = "DC0_C0_H1";
use stonith::NODE1_VM;

fn running_hosts(vms: &Value, vm: &str) -> BTreeSet<String> {
    let vmx = vmx_path(vm);
    vms.as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["vmx"] == vmx.as_str() && v["registered"] == true && v["power_state"] == "poweredOn")
        .filter_map(|v| v["host"].as_str().map(str::to_string))
        .collect()
}

fn power(sim: &Sim, vm: &str) -> String {
    sim.vm(vm)["power_state"].as_str().unwrap_or_default().to_string()
}

fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool, node: &Node) -> Duration {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > timeout {
            panic!("timed out after {timeout:?}: {what}\n{}", node.log_tail(120));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// The first time after `since` at which the timeline shows `what`.
fn first(timeline: &Mutex<Vec<(Duration, String)>>, since: Duration, what: &str) -> Option<Duration> {
    timeline
        .lock()
        .unwrap()
        .iter()
        .find(|(t, s)| *t >= since && s.contains(what))
        .map(|(t, _)| *t)
}

#[test]
fn stonith_fences_failed_and_dead_nodes_before_recovery() {
    if !common::is_root() {
        println!("SKIPPED stonith_fences_failed_and_dead_nodes_before_recovery: needs root (namespaces, /usr/sbin)");
        return;
    }
    for tool in [
        "corosync",
        "pacemakerd",
        "cibadmin",
        "crm_resource",
        "stonith_admin",
        "ip",
        "nsenter",
        "unshare",
    ] {
        common::require_tool(tool);
    }
    let net = Net::new();
    let in_sim_ns = InNetns::enter(&net.ns[2]);
    let sim = Sim::start(Mode::VCenter.as_str());
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let _agent = AgentInstall::install();
    let _shim = FenceShim::install();
    let listener = TcpListener::bind(format!("{HOST_ADDR}:0")).expect("bind the forwarder on the bridge");
    let port = listener.local_addr().unwrap().port().to_string();
    let url = format!("https://{HOST_ADDR}:{port}/sdk");
    let stop = AtomicBool::new(false);
    let samples = AtomicU64::new(0);
    let twice = AtomicU64::new(0);
    let timeline: Mutex<Vec<(Duration, String)>> = Mutex::new(Vec::new());
    let t0 = Instant::now();

    sim.guest_shutdown(VM);
    sim.wait_vm(VM, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");

    std::thread::scope(|s| {
        s.spawn(|| {
            forward(
                listener,
                sim.ready("url")
                    .trim_start_matches("https://")
                    .split('/')
                    .next()
                    .unwrap_or_default()
                    .to_string(),
                &stop,
            )
        });
        s.spawn(|| {
            let mut last = String::new();
            while !stop.load(Ordering::SeqCst) {
                let vms = sim.vms();
                let hosts = running_hosts(&vms, VM);
                samples.fetch_add(1, Ordering::SeqCst);
                if hosts.len() > 1 {
                    twice.fetch_add(1, Ordering::SeqCst);
                }
                let node_vms: Vec<String> = [NODE1_VM, NODE2_VM, SPARE_VM]
                    .iter()
                    .map(|n| format!("{n}={}", if running_hosts(&vms, n).is_empty() { "off" } else { "on" }))
                    .collect();
                let now = format!("vm1 on {hosts:?}; {}", node_vms.join(" "));
                if now != last {
                    timeline.lock().unwrap().push((t0.elapsed(), now.clone()));
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let _stop_helpers = StopOnDrop(&stop);

        let nodes = [("node1", "192.0.2.1"), ("node2", "192.0.2.2")];
        // Stonith on; a fence powers the node's VM off (and leaves it off), as a guest cluster would want.
        let cib = stonith_cib();
        let t_stack = Instant::now();
        let mut n = start_two_nodes(&net, dir.path(), &cib);
        println!("two-node stack up in {:.1?}", t_stack.elapsed());

        n[0].cib_create(
            "resources",
            &device_xml(HOST_ADDR, &port, sim.ready("user"), sim.ready("thumbprint"), &pw),
        );
        let hostmap = format!("node1:{H0};node2:{H1}");
        let stopped_xml = Primitive {
            provider: stack::PROVIDER,
            url: &url,
            user: sim.ready("user"),
            thumbprint: sim.ready("thumbprint"),
            password_file: &pw,
            hostmap: &hostmap,
            vm_key: "name",
            vm: VM,
            allow_migrate: true,
            monitor_interval_s: 2,
        }
        .xml()
        .replace(
            "<meta_attributes id=\"vm1-meta\">",
            "<meta_attributes id=\"vm1-meta\">\n    <nvpair id=\"vm1-target-role\" name=\"target-role\" value=\"Stopped\"/>",
        );
        n[0].cib_create("resources", &stopped_xml);
        // vm1 goes to node2 first: that is the node the scenarios fence.
        n[0].cib_create(
            "constraints",
            r#"<rsc_location id="vm1-prefers-node2" rsc="vm1" node="node2" score="50"/>"#,
        );
        n[0].tool_ok(
            "crm_resource",
            &["-r", "vm1", "--meta", "-p", "target-role", "-v", "Started"],
        );
        wait_until(
            "VM running on H1",
            Duration::from_secs(60),
            || running_hosts(&sim.vms(), VM) == BTreeSet::from([H1.to_string()]),
            &n[0],
        );
        n[0].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(30));
        n[0].settle(Duration::from_secs(60));

        // stonith_admin against the device from either node, on the spare target (not a cluster member).
        for (i, node) in n.iter().enumerate() {
            let listed = node.tool_ok("stonith_admin", &["--list", "spare"]);
            assert!(listed.contains("fence-vmha"), "node{}: {listed}", i + 1);
            let registered = node.tool_ok("stonith_admin", &["--list-registered"]);
            assert!(registered.contains("fence-vmha"), "node{}: {registered}", i + 1);
        }
        let t = Instant::now();
        n[0].tool_ok("stonith_admin", &["--fence", "spare", "--timeout", "30"]);
        assert_eq!(power(&sim, SPARE_VM), "poweredOff");
        println!("stonith_admin --fence (off) spare from node1: {:.1?}", t.elapsed());
        let t = Instant::now();
        n[1].tool_ok("stonith_admin", &["--reboot", "spare", "--timeout", "30"]);
        println!("stonith_admin --reboot spare from node2: {:.1?}", t.elapsed());
        // stonith-action=off applies to the cluster's own fencing; a requested reboot is fence_vmha's off, then on.
        assert_eq!(power(&sim, SPARE_VM), "poweredOn");

        // A stop that fails: node2's host stops responding, vm1 is moved away; node2's stop cannot see the VM
        // and fails, so Pacemaker fences node2 before it starts vm1 on node1.
        let since = t0.elapsed();
        sim.post(&format!("/host/{H1}/connection"), json!({"state": "notResponding"}));
        n[0].tool_ok("crm_resource", &["--move", "-r", "vm1", "-N", "node1"]);
        let took = wait_until(
            "vm1 recovered on H0 after node2's failed stop",
            Duration::from_secs(120),
            || running_hosts(&sim.vms(), VM) == BTreeSet::from([H0.to_string()]),
            &n[0],
        );
        // Let the sampler (every 100 ms) catch up with what wait_until saw.
        std::thread::sleep(Duration::from_millis(400));
        let fenced_at = first(&timeline, since, &format!("{NODE2_VM}=off")).expect("node2's VM seen off");
        let started_at = first(&timeline, since, &format!("vm1 on {{\"{H0}\"}}")).expect("vm1 seen on H0");
        assert!(
            fenced_at <= started_at,
            "vm1 started at {started_at:?} before node2 was fenced at {fenced_at:?}"
        );
        let history = n[0].tool_ok("stonith_admin", &["--history", "node2"]);
        assert!(history.contains("successful") || history.contains("ok"), "{history}");
        println!(
            "failed stop on node2 -> node2 fenced at +{:.1?}, vm1 on {H0} at +{:.1?} ({took:.1?} after the move)\n{history}",
            fenced_at - since,
            started_at - since
        );
        n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(30));
        n[0].settle(Duration::from_secs(60));
        n[0].tool_ok("crm_resource", &["--clear", "-r", "vm1"]);
        n[0].settle(Duration::from_secs(60));

        // node2 comes back (a new stack in its namespace, its VM powered on again), vm1 moves to it; then node2's
        // host stops responding and node2's stack dies: node2 is fenced before vm1 is started on node1.
        n[1].stop();
        let d = dir.path().join("node2-again");
        n[1] = Node::new(
            "node2",
            &d,
            Some(&net.ns[1]),
            &corosync_conf(&nodes, &d.join("corosync.log")),
            &cib,
        );
        n[1].start_corosync();
        n[1].wait_quorate(Duration::from_secs(30));
        n[1].start_pacemaker();
        n[0].wait_online(&["node1", "node2"], Duration::from_secs(60));
        sim.post(&format!("/host/{H1}/connection"), json!({"state": "connected"}));
        let on = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"))
            .args([
                "fence",
                "-o",
                "on",
                "-n",
                NODE2_VM,
                "-a",
                "127.0.0.1",
                "-l",
                sim.ready("user"),
            ])
            .args([
                "-u",
                sim.ready("url")
                    .rsplit(':')
                    .next()
                    .unwrap_or("")
                    .trim_end_matches("/sdk"),
            ])
            .args([
                "-S",
                &format!("cat {}", pw.display()),
                "--ca-file",
                sim.ready("ca_file"),
                "--session-dir",
            ])
            .arg(dir.path().join("sessions"))
            .output()
            .unwrap();
        assert!(on.status.success(), "{on:?}");
        n[0].settle(Duration::from_secs(60));
        n[0].tool_ok("crm_resource", &["--move", "-r", "vm1", "-N", "node2"]);
        wait_until(
            "VM running on H1",
            Duration::from_secs(60),
            || running_hosts(&sim.vms(), VM) == BTreeSet::from([H1.to_string()]),
            &n[0],
        );
        n[0].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(30));
        n[0].settle(Duration::from_secs(60));
        n[0].tool_ok("crm_resource", &["--clear", "-r", "vm1"]);
        n[0].settle(Duration::from_secs(60));

        let since = t0.elapsed();
        sim.post(&format!("/host/{H1}/connection"), json!({"state": "notResponding"}));
        n[1].crash();
        let took = wait_until(
            "vm1 taken over on H0 after node2 died",
            Duration::from_secs(120),
            || running_hosts(&sim.vms(), VM) == BTreeSet::from([H0.to_string()]),
            &n[0],
        );
        std::thread::sleep(Duration::from_millis(400));
        let fenced_at = first(&timeline, since, &format!("{NODE2_VM}=off")).expect("node2's VM seen off");
        let started_at = first(&timeline, since, &format!("vm1 on {{\"{H0}\"}}")).expect("vm1 seen on H0");
        assert!(
            fenced_at <= started_at,
            "vm1 started at {started_at:?} before node2 was fenced at {fenced_at:?}"
        );
        println!(
            "node2 killed -> node2 fenced at +{:.1?}, vm1 on {H0} at +{:.1?} ({took:.1?} after the kill)",
            fenced_at - since,
            started_at - since
        );
        n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(30));

        let stopped = n[0].stop();
        n[1].stop();
        println!("node1 stopped in {stopped:.1?}");
    });
    let samples = samples.load(Ordering::SeqCst);
    let twice = twice.load(Ordering::SeqCst);
    println!("timeline (s, state):");
    for (t, s) in timeline.lock().unwrap().iter() {
        println!("  {:6.1} {s}", t.as_secs_f64());
    }
    println!(
        "{samples} samples; vm1 on two hosts in {twice}; whole test {:.1?}",
        t0.elapsed()
    );
    assert!(samples > 50, "too few samples: {samples}");
    assert_eq!(twice, 0, "vm1 ran on two hosts at once");
    drop(sim);
    drop(in_sim_ns);
    drop(net);
}
