//! Two Pacemaker nodes on one machine, each in its own network and mount namespace (192.0.2.1 and 192.0.2.2 on
//! a bridge; 192.0.2.254 is the host, where a forwarder makes the simulator reachable from both). node1 stands
//! for DC0_C0_H0, node2 for DC0_C0_H1. Pacemaker itself drives: start on node1, a live move to node2
//! (allow-migrate), a stop-and-start move back, and node2's host failing with node2's stack killed. A sampler
//! reads the simulator all along and counts samples where the VM runs on two hosts (must be 0).

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
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;
use sim::{Mode, Sim, vmx_path};
use stack::{AgentInstall, Primitive};
use twonode::{HOST_ADDR, InNetns, Net, StopOnDrop, forward, start_two_nodes, wait_until};

const VM: &str = "DC0_C0_RP0_VM0";
const H0: &str = "DC0_C0_H0";
const H1: &str = "DC0_C0_H1";
/// Hosts on which the VM is powered on right now, per the simulator.
fn running_hosts(vms: &Value) -> BTreeSet<String> {
    let vmx = vmx_path(VM);
    vms.as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["vmx"] == vmx.as_str() && v["registered"] == true && v["power_state"] == "poweredOn")
        .filter_map(|v| v["host"].as_str().map(str::to_string))
        .collect()
}

fn on(sim: &Sim, host: &str) -> bool {
    running_hosts(&sim.vms()) == BTreeSet::from([host.to_string()])
}

#[test]
fn two_nodes_move_and_fail_over_without_running_twice() {
    if !common::is_root() {
        println!(
            "SKIPPED two_nodes_move_and_fail_over_without_running_twice: needs root (network and mount namespaces)"
        );
        return;
    }
    for tool in [
        "corosync",
        "pacemakerd",
        "cibadmin",
        "crm_resource",
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
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let _agent = AgentInstall::install();
    let _fence = stonith::FenceShim::install();
    let listener = TcpListener::bind(format!("{HOST_ADDR}:0")).expect("bind the forwarder on the bridge");
    let url = format!("https://{}/sdk", listener.local_addr().unwrap());
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
                let hosts = running_hosts(&sim.vms());
                samples.fetch_add(1, Ordering::SeqCst);
                if hosts.len() > 1 {
                    twice.fetch_add(1, Ordering::SeqCst);
                }
                let now = format!("{hosts:?}");
                if now != last {
                    timeline.lock().unwrap().push((t0.elapsed(), now.clone()));
                    last = now;
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        });
        let _stop_helpers = StopOnDrop(&stop);

        let t_stack = Instant::now();
        // Stonith on, with a fence_vmha device (stonith.rs): node2's death below is fenced before the takeover.
        let mut n = start_two_nodes(&net, dir.path(), &stonith::stonith_cib());
        println!(
            "two-node stack up (both online, DC elected) in {:.1?}",
            t_stack.elapsed()
        );

        let port = url
            .trim_end_matches("/sdk")
            .rsplit(':')
            .next()
            .unwrap_or_default()
            .to_string();
        let device = stonith::device_xml(HOST_ADDR, &port, sim.ready("user"), sim.ready("thumbprint"), &pw);
        n[0].cib_create("resources", &device);
        let hostmap = format!("node1:{H0};node2:{H1}");
        let primitive = |allow_migrate: bool| Primitive {
            url: &url,
            user: sim.ready("user"),
            thumbprint: sim.ready("thumbprint"),
            password_file: &pw,
            hostmap: &hostmap,
            vm_key: "name",
            vm: VM,
            allow_migrate,
            monitor_interval_s: 2,
            provider: stack::PROVIDER,
        };
        // Created stopped, so the location preference is in place before Pacemaker first places it.
        let stopped_xml = primitive(true).xml().replace(
            "<meta_attributes id=\"vm1-meta\">",
            "<meta_attributes id=\"vm1-meta\">\n    <nvpair id=\"vm1-target-role\" name=\"target-role\" value=\"Stopped\"/>",
        );
        n[0].cib_create("resources", &stopped_xml);
        n[0].cib_create(
            "constraints",
            r#"<rsc_location id="vm1-prefers-node1" rsc="vm1" node="node1" score="50"/>"#,
        );
        n[0].tool_ok(
            "crm_resource",
            &["-r", "vm1", "--meta", "-p", "target-role", "-v", "Started"],
        );
        let took = wait_until("VM running on H0", Duration::from_secs(60), || on(&sim, H0), &n[0]);
        n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(30));
        n[0].settle(Duration::from_secs(60));
        println!("start on node1 -> VM on {H0} in {took:.1?}");

        // Live move (allow-migrate=true): migrate_to on node1, migrate_from on node2; never powered off.
        let samples_before = samples.load(Ordering::SeqCst);
        n[0].tool_ok("crm_resource", &["--move", "-r", "vm1", "-N", "node2"]);
        let took = wait_until("VM running on H1", Duration::from_secs(60), || on(&sim, H1), &n[0]);
        n[0].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(30));
        // Clear the move only once its transition is complete: clearing mid-migration makes Pacemaker
        // re-place a half-migrated resource (and the refused start on the old node then bans it there).
        n[0].settle(Duration::from_secs(60));
        n[0].tool_ok("crm_resource", &["--clear", "-r", "vm1"]);
        n[0].settle(Duration::from_secs(60));
        println!("live move node1 -> node2 (allow-migrate=true): VM on {H1} in {took:.1?}");
        let off_during_live = timeline.lock().unwrap().iter().filter(|(_, s)| s == "{}").count();
        assert!(samples.load(Ordering::SeqCst) > samples_before);
        assert_eq!(
            off_during_live, 1,
            "the VM powered off during the live move (only the initial off allowed)"
        );
        let pe = n[0].tool("grep", &["-c", "migrate_to", "/var/log/pacemaker/pacemaker.log"]);
        assert!(
            String::from_utf8_lossy(&pe.stdout).trim() != "0",
            "Pacemaker did not use migrate_to for the live move"
        );

        // Move back without live migration: stop on node2, then start on node1.
        n[0].tool_ok(
            "crm_resource",
            &["-r", "vm1", "--meta", "-p", "allow-migrate", "-v", "false"],
        );
        let t = Instant::now();
        n[0].tool_ok("crm_resource", &["--move", "-r", "vm1", "-N", "node1"]);
        wait_until("VM running on H0", Duration::from_secs(90), || on(&sim, H0), &n[0]);
        n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(30));
        // Clear the move only once its transition is complete: clearing mid-migration makes Pacemaker
        // re-place a half-migrated resource (and the refused start on the old node then bans it there).
        n[0].settle(Duration::from_secs(60));
        n[0].tool_ok("crm_resource", &["--clear", "-r", "vm1"]);
        n[0].settle(Duration::from_secs(60));
        println!("stop-and-start move node2 -> node1: VM on {H0} in {:.1?}", t.elapsed());

        // Back to node2 (live again), then node2's host stops responding and node2's stack dies.
        n[0].tool_ok(
            "crm_resource",
            &["-r", "vm1", "--meta", "-p", "allow-migrate", "-v", "true"],
        );
        n[0].tool_ok("crm_resource", &["--move", "-r", "vm1", "-N", "node2"]);
        wait_until("VM running on H1", Duration::from_secs(60), || on(&sim, H1), &n[0]);
        n[0].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(30));
        // Clear the move only once its transition is complete: clearing mid-migration makes Pacemaker
        // re-place a half-migrated resource (and the refused start on the old node then bans it there).
        n[0].settle(Duration::from_secs(60));
        n[0].tool_ok("crm_resource", &["--clear", "-r", "vm1"]);
        n[0].settle(Duration::from_secs(60));
        let t = Instant::now();
        sim.post(
            &format!("/host/{H1}/connection"),
            serde_json::json!({"state": "notResponding"}),
        );
        n[1].crash();
        let took = wait_until("VM taken over on H0", Duration::from_secs(90), || on(&sim, H0), &n[0]);
        let fenced = sim.vm(stonith::NODE2_VM)["power_state"].clone();
        assert_eq!(fenced, "poweredOff", "node2 was not fenced before the takeover");
        n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(30));
        println!("node2 + {H1} lost -> VM running on {H0} under node1 in {took:.1?}");
        let _ = t;

        let stopped = n[0].stop();
        n[1].stop();
        println!("node1 stopped in {stopped:.1?}");
    });
    let samples = samples.load(Ordering::SeqCst);
    let twice = twice.load(Ordering::SeqCst);
    println!("timeline (s, hosts running the VM):");
    for (t, s) in timeline.lock().unwrap().iter() {
        println!("  {:6.1} {s}", t.as_secs_f64());
    }
    println!(
        "{samples} samples of the simulator; VM on two hosts in {twice} of them; whole test {:.1?}",
        t0.elapsed()
    );
    assert!(samples > 50, "too few samples: {samples}");
    assert_eq!(twice, 0, "the VM ran on two hosts at once");
    drop(sim);
    drop(in_sim_ns);
    drop(net);
}
