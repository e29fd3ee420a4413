//! Two Pacemaker nodes (network and mount namespaces, tests/pacemaker/twonode.rs) keep a VM through the loss
//! of vCenter: with vCenter down, the node holding the VM dies with its ESX host and the other node runs the
//! VM on its own host, through that host; after vCenter returns, vmha through vCenter names the right host.
//! And a cluster with no vCenter at all (two ESX hosts) starts, moves and fails over. node1 stands for
//! DC0_C0_H0, node2 for DC0_C0_H1. A sampler reads the simulator all along: the VM runs on two hosts in 0
//! samples. Fencing is on: a `stonith:fence_vmha` device powers the lost node's VM off before the takeover.
//! Needs root; skips visibly otherwise.

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
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::{Sim, vmx_path};
use stack::{AgentInstall, Node, Primitive};
use stonith::{FenceShim, NODE1_VM, NODE2_VM, device_xml, stonith_cib};
use twonode::{HOST_ADDR, InNetns, Net, StopOnDrop, forward, running_hosts, start_two_nodes, wait_until};

const VM: &str = "DC0_C0_RP0_VM0";
const H0: &str = "DC0_C0_H0";
const H1: &str = "DC0_C0_H1";

struct Sampler {
    samples: AtomicU64,
    twice: AtomicU64,
    timeline: Mutex<Vec<(Duration, String)>>,
}

impl Sampler {
    fn run(&self, control: &str, stop: &AtomicBool, t0: Instant) {
        let mut last = String::new();
        while !stop.load(Ordering::SeqCst) {
            let read = (|| {
                Ok::<_, String>((
                    sim::get_json(control, "/vms")?,
                    sim::get_json(control, "/hosts")?,
                    sim::get_json(control, "/locks")?,
                ))
            })();
            if let Ok((vms, hosts, locks)) = read {
                let on = running_hosts(&vms, &hosts, &locks, &vmx_path(VM));
                self.samples.fetch_add(1, Ordering::SeqCst);
                if on.len() > 1 {
                    self.twice.fetch_add(1, Ordering::SeqCst);
                }
                let now = format!("{on:?}");
                if now != last {
                    self.timeline.lock().unwrap().push((t0.elapsed(), now.clone()));
                    last = now;
                }
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn on(&self, sim: &Sim, host: &str) -> bool {
        let locks = sim::get_json(sim.ready("control"), "/locks").unwrap_or(Value::Null);
        running_hosts(&sim.vms(), &Value::Array(sim.hosts_state()), &locks, &vmx_path(VM))
            == BTreeSet::from([host.to_string()])
    }
}

/// The URL at which the nodes reach `target` (`https://127.0.0.1:P/sdk` in the simulator's namespace), and
/// its forwarder's listener.
fn forwarded(target: &str) -> (String, TcpListener, String) {
    let listener = TcpListener::bind(format!("{HOST_ADDR}:0")).expect("bind a forwarder on the bridge");
    let url = format!("https://{}/sdk", listener.local_addr().unwrap());
    let authority = target
        .trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string();
    (url, listener, authority)
}

/// The primitive, with the direct-host parameters: every host's forwarded address, pinned by thumbprint (the
/// hosts' certificates name 127.0.0.1, not the forwarder), and the local ESXi user.
fn primitive_xml(sim: &Sim, url: Option<&str>, pw: &Path, host_pw: &Path, hosts: &[(String, String)]) -> String {
    let hostmap = format!("node1:{H0};node2:{H1}");
    let vmx = vmx_path(VM);
    let base = Primitive {
        provider: stack::PROVIDER,
        url: url.unwrap_or(""),
        user: sim.ready("user"),
        thumbprint: sim.ready("thumbprint"),
        password_file: pw,
        hostmap: &hostmap,
        vm_key: "vmx",
        vm: &vmx,
        allow_migrate: false,
        monitor_interval_s: 2,
    }
    .xml();
    let thumbprints: Vec<String> = sim
        .hosts()
        .iter()
        .filter(|h| hosts.iter().any(|(n, _)| n == &h.name))
        .map(|h| format!("{}={}", h.name, h.thumbprint))
        .collect();
    let addresses: Vec<String> = hosts.iter().map(|(n, u)| format!("{n}={u}")).collect();
    let extra = format!(
        r#"<nvpair id="vm1-host_addresses" name="host_addresses" value="{}"/>
    <nvpair id="vm1-host_thumbprints" name="host_thumbprints" value="{}"/>
    <nvpair id="vm1-host_user" name="host_user" value="{}"/>
    <nvpair id="vm1-host_password_file" name="host_password_file" value="{}"/>
  </instance_attributes>"#,
        addresses.join(";"),
        thumbprints.join(";"),
        sim.host_user(),
        host_pw.display()
    );
    let mut xml = base.replacen("</instance_attributes>", &extra, 1);
    if url.is_none() {
        // No vCenter: no url, user, password or vCenter thumbprint at all.
        xml = xml
            .lines()
            .filter(|l| {
                ![
                    "\"vm1-url\"",
                    "\"vm1-user\"",
                    "\"vm1-password_file\"",
                    "\"vm1-thumbprint\"",
                ]
                .iter()
                .any(|k| l.contains(k))
            })
            .collect::<Vec<_>>()
            .join("\n");
    }
    // Created stopped, so the location preference is in place before Pacemaker first places it.
    xml.replace(
        "<meta_attributes id=\"vm1-meta\">",
        "<meta_attributes id=\"vm1-meta\">\n    <nvpair id=\"vm1-target-role\" name=\"target-role\" value=\"Stopped\"/>",
    )
}

/// The fence device's endpoint: where the cluster nodes' VMs (NODE1_VM, NODE2_VM) can be powered off.
struct FenceTarget<'a> {
    /// Its URL as the simulator serves it (forwarded to the nodes like the others).
    url: String,
    user: &'a str,
    thumbprint: String,
    password_file: &'a Path,
}

fn create_and_start(n: &[Node], xml: &str, fence_url: &str, fence: &FenceTarget) {
    let port = fence_url
        .trim_start_matches("https://")
        .split('/')
        .next()
        .and_then(|a| a.rsplit(':').next())
        .unwrap_or("443")
        .to_string();
    n[0].cib_create(
        "resources",
        &device_xml(HOST_ADDR, &port, fence.user, &fence.thumbprint, fence.password_file),
    );
    n[0].cib_create("resources", xml);
    n[0].cib_create(
        "constraints",
        r#"<rsc_location id="vm1-prefers-node1" rsc="vm1" node="node1" score="50"/>"#,
    );
    n[0].tool_ok(
        "crm_resource",
        &["-r", "vm1", "--meta", "-p", "target-role", "-v", "Started"],
    );
}

/// The tests share the OCF agent's install directory and the bridge's address range: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

fn skip_unless_root(test: &str) -> bool {
    if !common::is_root() {
        println!("SKIPPED {test}: needs root (network and mount namespaces)");
        return true;
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
    false
}

/// Runs `scenario` with the nodes up, the forwarders and the sampler running; checks 0 double runs.
/// `targets`' last entry is the fence device's endpoint.
fn with_cluster(sim: &Sim, targets: &[String], scenario: impl FnOnce(&mut [Node], &[String], &Sampler), net: &Net) {
    let dir = tempfile::tempdir().unwrap();
    let _agent = AgentInstall::install();
    let _fence = FenceShim::install();
    let stop = AtomicBool::new(false);
    let sampler = Sampler {
        samples: AtomicU64::new(0),
        twice: AtomicU64::new(0),
        timeline: Mutex::new(Vec::new()),
    };
    let t0 = Instant::now();
    let fwd: Vec<(String, TcpListener, String)> = targets.iter().map(|t| forwarded(t)).collect();
    let urls: Vec<String> = fwd.iter().map(|(u, _, _)| u.clone()).collect();
    std::thread::scope(|s| {
        for (_, listener, authority) in fwd {
            let stop = &stop;
            s.spawn(move || forward(listener, authority, stop));
        }
        s.spawn(|| sampler.run(sim.ready("control"), &stop, t0));
        let _stop_helpers = StopOnDrop(&stop);
        let t = Instant::now();
        let mut n = start_two_nodes(net, dir.path(), &stonith_cib());
        println!("two-node stack up in {:.1?}", t.elapsed());
        scenario(&mut n, &urls, &sampler);
        n[0].stop();
        n[1].stop();
    });
    let (samples, twice) = (
        sampler.samples.load(Ordering::SeqCst),
        sampler.twice.load(Ordering::SeqCst),
    );
    println!("timeline (s, hosts running the VM):");
    for (t, s) in sampler.timeline.lock().unwrap().iter() {
        println!("  {:6.1} {s}", t.as_secs_f64());
    }
    println!(
        "{samples} samples of the simulator; VM on two hosts in {twice} of them; {:.1?} in all",
        t0.elapsed()
    );
    assert!(samples > 50, "too few samples: {samples}");
    assert_eq!(twice, 0, "the VM ran on two hosts at once");
}

#[test]
fn vcenter_down_node_and_host_lost_the_other_node_runs_the_vm_through_its_host() {
    if skip_unless_root("vcenter_down_node_and_host_lost_the_other_node_runs_the_vm_through_its_host") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = Net::new();
    let _in_sim_ns = InNetns::enter(&net.ns[2]);
    let sim = Sim::start("vcenter");
    sim.post("/settings", json!({"host_locks": true, "dead_host_lock_ms": 3000}));
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let host_dir = dir.path().join("h");
    std::fs::create_dir(&host_dir).unwrap();
    let host_pw = common::write_password_file(&host_dir, sim.host_password());
    // The nodes' VMs run on the standalone host DC0_H0; its own endpoint fences them while vCenter is down.
    let fence = FenceTarget {
        url: sim.host("DC0_H0").url,
        user: sim.host_user(),
        thumbprint: sim.host("DC0_H0").thumbprint,
        password_file: &host_pw,
    };
    let targets = vec![
        sim.ready("url").to_string(),
        sim.host(H0).url,
        sim.host(H1).url,
        fence.url.clone(),
    ];
    with_cluster(
        &sim,
        &targets,
        |n, urls, sampler| {
            let hosts = vec![(H0.to_string(), urls[1].clone()), (H1.to_string(), urls[2].clone())];
            create_and_start(
                n,
                &primitive_xml(&sim, Some(&urls[0]), &pw, &host_pw, &hosts),
                &urls[3],
                &fence,
            );
            wait_until("VM on H0", Duration::from_secs(60), || sampler.on(&sim, H0), &n[0]);
            n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(30));
            n[0].settle(Duration::from_secs(60));
            // The moved-or-copied question a takeover meets, as ESXi asks it.
            sim.post(
                &format!("/vmx/question?vmx={}", sim::encode(&vmx_path(VM))),
                json!({"once": true}),
            );
            sim.vcenter("down");
            // Monitors through the hosts while vCenter is down.
            std::thread::sleep(Duration::from_secs(5));
            sim.host_connection(H0, "notResponding", false);
            // node1's stack dies with its host.
            n[0].crash();
            let n1 = n;
            let took = wait_until(
                "VM taken over on H1",
                Duration::from_secs(90),
                || sampler.on(&sim, H1),
                &n1[1],
            );
            n1[1].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(60));
            println!("vCenter down; node1 + {H0} lost -> VM running on {H1} through {H1} in {took:.1?}");
            // node1 was fenced through DC0_H0's own endpoint before the takeover.
            let fenced = sim.vm(NODE1_VM);
            assert_eq!(
                fenced["power_state"], "poweredOff",
                "node1's VM was not fenced: {fenced}"
            );
            // vCenter returns: vmha through vCenter names the right host, and every command still works.
            sim.vcenter("up");
            let v = sim.vmha(Path::new(env!("CARGO_BIN_EXE_vmha")));
            let r = v.run(&["--json", "status", "--vmx", &vmx_path(VM)]);
            println!("status after vCenter's return: {}{}", r.stdout, r.stderr);
            assert_eq!(r.code, 0);
            let j: Value = serde_json::from_str(r.stdout.trim()).unwrap();
            assert_eq!(
                (j["host"].as_str(), j["source"].as_str()),
                (Some(H1), Some("vcenter")),
                "{j}"
            );
            let r = v.run(&["monitor", "--vmx", &vmx_path(VM), "--host", H1]);
            assert_eq!(r.code, 0, "{}{}", r.stdout, r.stderr);
            n1[1].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(30));
        },
        &net,
    );
}

#[test]
fn esx_only_two_hosts_start_move_and_fail_over() {
    if skip_unless_root("esx_only_two_hosts_start_move_and_fail_over") {
        return;
    }
    let _serial = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let net = Net::new();
    let _in_sim_ns = InNetns::enter(&net.ns[2]);
    let sim = Sim::start_esx_hosts(2);
    sim.post("/settings", json!({"host_locks": true, "dead_host_lock_ms": 3000}));
    let dir = tempfile::tempdir().unwrap();
    let pw = common::write_password_file(dir.path(), sim.ready("password"));
    let host_dir = dir.path().join("h");
    std::fs::create_dir(&host_dir).unwrap();
    let host_pw = common::write_password_file(&host_dir, sim.host_password());
    // The nodes' VMs live in another vSphere (a second simulator's vCenter): the ESX-only cluster's hosts
    // carry only the resource.
    let nodes_sim = Sim::start("vcenter");
    let nodes_dir = dir.path().join("nodes");
    std::fs::create_dir(&nodes_dir).unwrap();
    let nodes_pw = common::write_password_file(&nodes_dir, nodes_sim.ready("password"));
    let fence = FenceTarget {
        url: nodes_sim.ready("url").to_string(),
        user: nodes_sim.ready("user"),
        thumbprint: nodes_sim.ready("thumbprint").to_string(),
        password_file: &nodes_pw,
    };
    let targets = vec![sim.host(H0).url, sim.host(H1).url, fence.url.clone()];
    with_cluster(
        &sim,
        &targets,
        |n, urls, sampler| {
            let hosts = vec![(H0.to_string(), urls[0].clone()), (H1.to_string(), urls[1].clone())];
            let t = Instant::now();
            create_and_start(n, &primitive_xml(&sim, None, &pw, &host_pw, &hosts), &urls[2], &fence);
            n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(60));
            n[0].settle(Duration::from_secs(60));
            assert!(sampler.on(&sim, H0));
            println!("no vCenter: resource started on node1 ({H0}) in {:.1?}", t.elapsed());
            // A move: stop on node1 (unregisters on H0), start on node2 (registers on H1).
            let t = Instant::now();
            n[0].tool_ok("crm_resource", &["--move", "-r", "vm1", "-N", "node2"]);
            wait_until("VM on H1", Duration::from_secs(90), || sampler.on(&sim, H1), &n[0]);
            n[0].wait_monitor_ok_on("node2", "vm1", Duration::from_secs(30));
            n[0].settle(Duration::from_secs(60));
            n[0].tool_ok("crm_resource", &["--clear", "-r", "vm1"]);
            n[0].settle(Duration::from_secs(60));
            println!("no vCenter: move node1 -> node2 in {:.1?}", t.elapsed());
            // node2 and its host are lost: node1 takes the VM over on H0.
            sim.post(
                &format!("/vmx/question?vmx={}", sim::encode(&vmx_path(VM))),
                json!({"once": true}),
            );
            let t = Instant::now();
            sim.host_connection(H1, "notResponding", false);
            n[1].crash();
            wait_until(
                "VM taken over on H0",
                Duration::from_secs(90),
                || sampler.on(&sim, H0),
                &n[0],
            );
            n[0].wait_monitor_ok_on("node1", "vm1", Duration::from_secs(60));
            println!("no vCenter: node2 + {H1} lost -> VM on {H0} in {:.1?}", t.elapsed());
            let fenced = nodes_sim.vm(NODE2_VM);
            assert_eq!(
                fenced["power_state"], "poweredOff",
                "node2's VM was not fenced: {fenced}"
            );
        },
        &net,
    );
}
