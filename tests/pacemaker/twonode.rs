//! The two-node scaffolding of the cluster tests: each node in its own network namespace on one bridge
//! (192.0.2.1, .2), the simulator in its own (192.0.2.254), and forwarders that make the simulator's
//! endpoints (vCenter's, each host's own) reachable from the nodes.

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::stack::{Node, corosync_conf};

pub const HOST_ADDR: &str = "192.0.2.254";

/// Three network namespaces on one bridge: node1 (192.0.2.1), node2 (192.0.2.2) and the simulator's
/// (192.0.2.254). The simulator needs its own: traffic between the host's namespace and these does not pass on
/// this machine, while traffic between namespaces does. Removed on drop.
pub struct Net {
    pub ns: [String; 3],
    bridge: String,
}

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Net {
    #[allow(clippy::new_without_default)] // namespaces made once per test, never a default
    pub fn new() -> Net {
        let tag = std::process::id() % 100_000;
        let net = Net {
            ns: [
                format!("vmha-n1-{tag}"),
                format!("vmha-n2-{tag}"),
                format!("vmha-sim-{tag}"),
            ],
            bridge: format!("vhbr{tag}"),
        };
        ip(&["link", "add", &net.bridge, "type", "bridge"]);
        ip(&["link", "set", &net.bridge, "up"]);
        for (i, ns) in net.ns.iter().enumerate() {
            let outer = format!("vh{tag}o{i}");
            let inner = format!("vh{tag}i{i}");
            let addr = if i == 2 {
                HOST_ADDR.to_string()
            } else {
                format!("192.0.2.{}", i + 1)
            };
            ip(&["netns", "add", ns]);
            ip(&["link", "add", &outer, "type", "veth", "peer", "name", &inner]);
            ip(&["link", "set", &inner, "netns", ns]);
            ip(&["link", "set", &outer, "master", &net.bridge]);
            ip(&["link", "set", &outer, "up"]);
            ip(&["-n", ns, "addr", "add", &format!("{addr}/24"), "dev", &inner]);
            ip(&["-n", ns, "link", "set", &inner, "up"]);
            ip(&["-n", ns, "link", "set", "lo", "up"]);
        }
        net
    }
}

/// Moves this thread (and the threads and processes it starts afterwards) into a network namespace; drop
/// returns it to the one it came from.
pub struct InNetns {
    home: std::fs::File,
}

fn setns(f: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: setns on a valid namespace fd only changes this thread's network namespace.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

impl InNetns {
    pub fn enter(name: &str) -> InNetns {
        let home = std::fs::File::open("/proc/thread-self/ns/net").expect("open this thread's netns");
        setns(&std::fs::File::open(format!("/run/netns/{name}")).expect("open the netns"));
        InNetns { home }
    }
}

impl Drop for InNetns {
    fn drop(&mut self) {
        setns(&self.home);
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for ns in &self.ns {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = Command::new("ip").args(["link", "del", &self.bridge]).status();
    }
}

/// Forwards HOST_ADDR:port to the simulator on loopback until `stop` is set.
pub fn forward(listener: TcpListener, target: String, stop: &AtomicBool) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        match listener.accept() {
            Ok((client, _)) => {
                let _ = client.set_nonblocking(false);
                let Ok(server) = TcpStream::connect(&target) else {
                    continue;
                };
                for (mut from, mut to) in [
                    (client.try_clone().unwrap(), server.try_clone().unwrap()),
                    (server, client),
                ] {
                    std::thread::spawn(move || {
                        let _ = from.set_read_timeout(Some(Duration::from_secs(180)));
                        let mut buf = [0u8; 16384];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(Shutdown::Write);
                    });
                }
            }
            Err(_) => std::thread::sleep(Duration::from_millis(10)),
        }
    }
}

/// Polls `ok` every 50 ms until it holds; panics with the node's log after `timeout`. Returns the time taken.
pub fn wait_until(what: &str, timeout: Duration, mut ok: impl FnMut() -> bool, node: &Node) -> Duration {
    let t = Instant::now();
    while !ok() {
        if t.elapsed() > timeout {
            panic!("timed out after {timeout:?}: {what}\n{}", node.log_tail(80));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    t.elapsed()
}

/// node1 (192.0.2.1) and node2 (192.0.2.2), each in its namespace of `net`, with `cib` seeded: corosync up
/// and quorate on both, then pacemakerd, a DC elected and both online.
pub fn start_two_nodes(net: &Net, dir: &std::path::Path, cib: &str) -> Vec<Node> {
    let nodes = [("node1", "192.0.2.1"), ("node2", "192.0.2.2")];
    let mut n = Vec::new();
    for (i, (name, _)) in nodes.iter().enumerate() {
        let d = dir.join(name);
        let conf = corosync_conf(&nodes, &d.join("corosync.log"));
        n.push(Node::new(name, &d, Some(&net.ns[i]), &conf, cib));
    }
    for node in n.iter_mut() {
        node.start_corosync();
    }
    for node in n.iter_mut() {
        node.wait_quorate(Duration::from_secs(30));
        node.start_pacemaker();
    }
    n[0].wait_dc(Duration::from_secs(60));
    n[0].wait_online(&["node1", "node2"], Duration::from_secs(60));
    n
}

/// Sets the flag when dropped: a test's helper threads (forwarders, samplers) end whatever happens, so the
/// scope that runs them can.
pub struct StopOnDrop<'a>(pub &'a AtomicBool);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Hosts on which the VM with files `vmx` runs now, per the simulator's `/vms`, `/hosts` and `/locks`: its
/// powered-on entries on hosts that are up, and on a lost host (notResponding) only while that host still
/// holds the files' lock (it may still be running it; once the lock is gone it is not).
pub fn running_hosts(
    vms: &serde_json::Value,
    hosts: &serde_json::Value,
    locks: &serde_json::Value,
    vmx: &str,
) -> std::collections::BTreeSet<String> {
    let lost: std::collections::BTreeSet<&str> = hosts
        .as_array()
        .into_iter()
        .flatten()
        .filter(|h| h["connection_state"] == "notResponding")
        .filter_map(|h| h["name"].as_str())
        .collect();
    let locked = locks[vmx]["held"] == true;
    vms.as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["vmx"] == vmx && v["registered"] == true && v["power_state"] == "poweredOn")
        .filter_map(|v| v["host"].as_str())
        .filter(|h| !lost.contains(h) || locked)
        .map(str::to_string)
        .collect()
}
