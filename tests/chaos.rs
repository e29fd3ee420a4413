//! A chaos campaign (issue 16): a real two-node Pacemaker with stonith on (a `stonith:fence_vmha` device),
//! the `ocf:vmha-test:vm` resource with the direct-host fallback, and a simulator per run. Each run starts
//! from a clean settled cluster, applies a seeded random schedule of 1-3 faults at random moments, heals
//! them, waits for the cluster to settle and checks the invariants from the simulator's own state.
//!
//! Its own main (`harness = false`): one sequential campaign whose length comes from the environment, a
//! report printed at the end whatever happened (libtest would capture it or cut it per test), and a visible
//! SKIPPED line without root. Run as `flock /tmp/vmha-pacemaker.lock cargo test --test chaos` (10 runs), or
//! for the full campaign `VMHA_CHAOS_RUNS=100 flock /tmp/vmha-pacemaker.lock cargo test --test chaos`;
//! `VMHA_CHAOS_SEED=N` replays the run of seed N (the same schedule of faults at the same moments; the
//! cluster's own timing varies), `VMHA_CHAOS_BASE=N` fixes the campaign's seeds, `VMHA_CHAOS_MINUTES=M`
//! starts no run after M minutes, `VMHA_CHAOS_VERBOSE=1` prints every event as it happens. The agents are
//! installed under names of their own (provider `vmha-chaos`, `/usr/sbin/fence_vmha_chaos`), so the
//! campaign never touches the files the other cluster tests install.
//!
//! Fencing is made real: a fence powers the node's stand-in VM off in the simulator (stonith-action=off),
//! and a watcher that reads those VMs every 25 ms then SIGKILLs that node's whole stack, as losing power
//! would. A fenced or crashed node is restarted (its stand-in VM powered on first) once every fault is healed.

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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::io::{ErrorKind, Read, Write};
use std::net::{IpAddr, Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sim::{Sim, vmx_path};
use stack::{Node, Primitive, corosync_conf, kill_namespace, run_with_timeout};
use stonith::{NODE1_VM, NODE2_VM, device_xml, stonith_cib};
use twonode::{HOST_ADDR, InNetns, Net, running_hosts};

const VM: &str = "DC0_C0_RP0_VM0";
const HOSTS: [&str; 2] = ["DC0_C0_H0", "DC0_C0_H1"];
const NODES: [&str; 2] = ["node1", "node2"];
const PLUGS: [&str; 2] = [NODE1_VM, NODE2_VM];
const NODE_ADDRS: [&str; 2] = ["192.0.2.1", "192.0.2.2"];
/// The host the stand-in VMs of the nodes run on; never faulted.
const PLUG_HOST: &str = "DC0_H0";

// ---- timeouts of the configuration, and the recovery bound derived from them ---------------------------

const MONITOR_INTERVAL_S: u64 = 2;
const MONITOR_TIMEOUT_S: u64 = 30;
const OP_TIMEOUT_S: u64 = 60; // start, stop, migrate_to
const STONITH_TIMEOUT_S: u64 = 60;
const NODE_JOIN_S: u64 = 60; // a restarted node quorate, its pacemaker up and online (Node waits)

/// After the last heal: the restarted nodes join, then the worst single recovery chain: a monitor notices
/// (interval + timeout), a stop fails (its timeout), the node is fenced (stonith-timeout), the start runs
/// (its timeout), and a second such chain when the first start was refused (the peer was fenced meanwhile).
fn recovery_bound() -> Duration {
    let chain = MONITOR_INTERVAL_S + MONITOR_TIMEOUT_S + OP_TIMEOUT_S + STONITH_TIMEOUT_S + OP_TIMEOUT_S;
    Duration::from_secs(NODE_JOIN_S + 2 * chain)
}

/// A vmha process older than the longest operation timeout (plus slack) is left running.
const VMHA_MAX_AGE: Duration = Duration::from_secs(OP_TIMEOUT_S + 10);

// ---- a seeded generator (splitmix64: tiny, and the schedule must not depend on a crate's version) --------

struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn ms(&mut self, lo: u64, hi: u64) -> Duration {
        Duration::from_millis(lo + self.below(hi - lo))
    }
}

// ---- faults -------------------------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    NodeKilled,
    NodesPartitioned,
    NodeCutFromVcenter,
    HostLost,
    HostDisconnected,
    VcenterRefusing,
    VcenterFrozen,
    VcenterRestarted,
    GuestCrash,
    GuestShutdown,
    AdminMove,
    AdminLiveMigration,
    FenceFailsOnce,
}

const KINDS: [Kind; 13] = [
    Kind::NodeKilled,
    Kind::NodesPartitioned,
    Kind::NodeCutFromVcenter,
    Kind::HostLost,
    Kind::HostDisconnected,
    Kind::VcenterRefusing,
    Kind::VcenterFrozen,
    Kind::VcenterRestarted,
    Kind::GuestCrash,
    Kind::GuestShutdown,
    Kind::AdminMove,
    Kind::AdminLiveMigration,
    Kind::FenceFailsOnce,
];

#[derive(Clone, Debug)]
struct Fault {
    kind: Kind,
    /// Node (or that node's host) the fault hits.
    target: usize,
    /// A cut that leaves connections silent (true) or refuses them (false).
    silent: bool,
    at: Duration,
    lasts: Duration,
}

impl Fault {
    fn describe(&self) -> String {
        let who = match self.kind {
            Kind::HostLost | Kind::HostDisconnected => HOSTS[self.target].to_string(),
            Kind::NodeCutFromVcenter => {
                format!(
                    "{} ({})",
                    NODES[self.target],
                    if self.silent { "silent" } else { "refused" }
                )
            }
            Kind::VcenterRefusing
            | Kind::VcenterFrozen
            | Kind::VcenterRestarted
            | Kind::GuestCrash
            | Kind::GuestShutdown
            | Kind::NodesPartitioned => String::new(),
            Kind::AdminMove | Kind::AdminLiveMigration => format!("to {}", NODES[self.target]),
            _ => NODES[self.target].to_string(),
        };
        format!(
            "{:?} {who} at +{:.1}s for {:.1}s",
            self.kind,
            self.at.as_secs_f64(),
            self.lasts.as_secs_f64()
        )
    }
}

fn schedule(seed: u64) -> Vec<Fault> {
    let mut rng = Rng(seed);
    let n = 1 + rng.below(3) as usize;
    let mut faults: Vec<Fault> = (0..n)
        .map(|_| Fault {
            kind: KINDS[rng.below(KINDS.len() as u64) as usize],
            target: rng.below(2) as usize,
            silent: rng.below(2) == 0,
            at: rng.ms(0, 10_000),
            lasts: rng.ms(2_000, 12_000),
        })
        .collect();
    faults.sort_by_key(|f| f.at);
    faults
}

// ---- a forwarder that can cut a node off, silently or refusing, and fail one fence --------------------

const OPEN: u8 = 0;
const SILENT: u8 = 1;
const CLOSED: u8 = 2;

struct Gate {
    name: &'static str,
    /// Client addresses cut off, and how (SILENT or CLOSED).
    blocked: Mutex<HashMap<IpAddr, u8>>,
    conns: Mutex<Vec<(IpAddr, Arc<AtomicU8>)>>,
    /// Armed: the next connection starts a 2 s window in which every connection is refused.
    fail_armed: AtomicBool,
    failing_until: Mutex<Option<Instant>>,
}

impl Gate {
    fn new(name: &'static str) -> Arc<Gate> {
        Arc::new(Gate {
            name,
            blocked: Mutex::new(HashMap::new()),
            conns: Mutex::new(Vec::new()),
            fail_armed: AtomicBool::new(false),
            failing_until: Mutex::new(None),
        })
    }

    fn cut(&self, ip: IpAddr, how: u8) {
        self.blocked.lock().unwrap().insert(ip, how);
        for (c, state) in self.conns.lock().unwrap().iter() {
            if *c == ip {
                state.store(how, Ordering::SeqCst);
            }
        }
    }

    fn heal(&self, ip: IpAddr) {
        self.blocked.lock().unwrap().remove(&ip);
    }
}

fn pump(mut from: TcpStream, mut to: TcpStream, state: Arc<AtomicU8>, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => match state.load(Ordering::SeqCst) {
                OPEN => {
                    if to.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
                SILENT => {}
                _ => break,
            },
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if state.load(Ordering::SeqCst) == CLOSED || stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    if state.load(Ordering::SeqCst) != SILENT {
        let _ = to.shutdown(Shutdown::Both);
        let _ = from.shutdown(Shutdown::Both);
    }
}

/// Swallows what a silenced client sends until it gives up (or the run ends).
fn swallow(mut from: TcpStream, stop: Arc<AtomicBool>) {
    let _ = from.set_read_timeout(Some(Duration::from_millis(200)));
    let mut buf = [0u8; 16384];
    loop {
        match from.read(&mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
}

fn serve_gate(listener: TcpListener, target: String, gate: Arc<Gate>, stop: Arc<AtomicBool>, log: Arc<Log>) {
    listener.set_nonblocking(true).unwrap();
    while !stop.load(Ordering::SeqCst) {
        let (client, peer) = match listener.accept() {
            Ok(c) => c,
            Err(_) => {
                std::thread::sleep(Duration::from_millis(5));
                continue;
            }
        };
        let _ = client.set_nonblocking(false);
        let ip = peer.ip();
        if gate.fail_armed.swap(false, Ordering::SeqCst) {
            *gate.failing_until.lock().unwrap() = Some(Instant::now() + Duration::from_secs(2));
            log.event(format!(
                "{}: refusing connections for 2 s (a fence that fails once)",
                gate.name
            ));
        }
        if gate.failing_until.lock().unwrap().is_some_and(|t| Instant::now() < t) {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let how = gate.blocked.lock().unwrap().get(&ip).copied().unwrap_or(OPEN);
        if how == CLOSED {
            let _ = client.shutdown(Shutdown::Both);
            continue;
        }
        let state = Arc::new(AtomicU8::new(how));
        gate.conns.lock().unwrap().push((ip, state.clone()));
        let stop = stop.clone();
        if how == SILENT {
            std::thread::spawn(move || swallow(client, stop));
            continue;
        }
        let Ok(server) = TcpStream::connect(&target) else {
            continue;
        };
        let (c2, s2) = (client.try_clone().unwrap(), server.try_clone().unwrap());
        let (st2, stop2) = (state.clone(), stop.clone());
        std::thread::spawn(move || pump(client, server, state, stop));
        std::thread::spawn(move || pump(s2, c2, st2, stop2));
    }
}

// ---- what a run records ------------------------------------------------------------------------------

struct Log {
    t0: Instant,
    events: Mutex<Vec<(Duration, String)>>,
}

impl Log {
    fn event(&self, what: String) {
        let t = self.t0.elapsed();
        if std::env::var_os("VMHA_CHAOS_VERBOSE").is_some() {
            println!("  {:7.2} {what}", t.as_secs_f64());
        }
        self.events.lock().unwrap().push((t, what));
    }
}

struct Shared {
    /// Holder PIDs of the live node stacks; None once killed (crash or fence).
    holders: Mutex<[Option<u32>; 2]>,
    samples: AtomicU64,
    twice: AtomicU64,
    max_gap_ms: AtomicU64,
    /// Sampler view: the hosts running the VM now.
    now: Mutex<BTreeSet<String>>,
    /// Time the VM ran nowhere, in samples.
    down_samples: AtomicU64,
    timeline: Mutex<Vec<(Duration, String)>>,
}

fn sampler(control: String, shared: Arc<Shared>, stop: Arc<AtomicBool>, log: Arc<Log>) {
    let mut last = String::new();
    let mut prev = Instant::now();
    while !stop.load(Ordering::SeqCst) {
        let read = (|| {
            Ok::<_, String>((
                sim::get_json(&control, "/vms")?,
                sim::get_json(&control, "/hosts")?,
                sim::get_json(&control, "/locks")?,
            ))
        })();
        if let Ok((vms, hosts, locks)) = read {
            let gap = prev.elapsed().as_millis() as u64;
            prev = Instant::now();
            shared.max_gap_ms.fetch_max(gap, Ordering::SeqCst);
            let on = running_hosts(&vms, &hosts, &locks, &vmx_path(VM));
            shared.samples.fetch_add(1, Ordering::SeqCst);
            if on.len() > 1 {
                shared.twice.fetch_add(1, Ordering::SeqCst);
            }
            if on.is_empty() {
                shared.down_samples.fetch_add(1, Ordering::SeqCst);
            }
            let entries: Vec<String> = vms
                .as_array()
                .into_iter()
                .flatten()
                .filter(|v| v["vmx"] == vmx_path(VM).as_str())
                .map(|v| {
                    format!(
                        "{}:{}",
                        v["host"].as_str().unwrap_or("-"),
                        v["power_state"].as_str().unwrap_or("unregistered")
                    )
                })
                .collect();
            let host_states: Vec<String> = hosts
                .as_array()
                .into_iter()
                .flatten()
                .filter(|h| HOSTS.contains(&h["name"].as_str().unwrap_or("")))
                .map(|h| h["connection_state"].as_str().unwrap_or("?").to_string())
                .collect();
            let now = format!(
                "running on {on:?}; entries [{}]; hosts [{}]; lock {}",
                entries.join(" "),
                host_states.join(" "),
                locks[vmx_path(VM).as_str()]["held"]
            );
            if now != last {
                shared.timeline.lock().unwrap().push((log.t0.elapsed(), now.clone()));
                last = now;
            }
            *shared.now.lock().unwrap() = on;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// A fence powers the node's stand-in VM off; the node's stack dies with it, at once.
fn fence_watcher(control: String, shared: Arc<Shared>, stop: Arc<AtomicBool>, log: Arc<Log>) {
    let mut was_off = [false; 2];
    while !stop.load(Ordering::SeqCst) {
        for i in 0..2 {
            let Ok(v) = sim::get_json(&control, &format!("/vm/{}", sim::encode(PLUGS[i]))) else {
                continue;
            };
            let off = v["power_state"] == "poweredOff";
            if off && !was_off[i] {
                log.event(format!("{} powered off: {} fenced", PLUGS[i], NODES[i]));
            }
            was_off[i] = off;
            if off {
                // Read again under the lock: a restart powers the VM on before it records the new stack.
                let mut holders = shared.holders.lock().unwrap();
                let again = sim::get_json(&control, &format!("/vm/{}", sim::encode(PLUGS[i])));
                if again.map(|v| v["power_state"] != "poweredOff").unwrap_or(true) {
                    continue;
                }
                let holder = holders[i].take();
                drop(holders);
                if let Some(pid) = holder {
                    kill_namespace(pid);
                    log.event(format!(
                        "{} fenced ({} powered off): its stack killed",
                        NODES[i], PLUGS[i]
                    ));
                }
            }
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

// ---- the run --------------------------------------------------------------------------------------

struct Env {
    net: Net,
    bin: PathBuf,
    out_dir: PathBuf,
}

#[derive(Default)]
struct Outcome {
    seed: u64,
    faults: Vec<Fault>,
    violations: Vec<String>,
    recovery: Option<Duration>,
    downtime: Duration,
    samples: u64,
    max_gap_ms: u64,
    setup: Duration,
    total: Duration,
    timeline_file: Option<PathBuf>,
    /// Nodes fenced (their stand-in VM seen off), and fence-device refusals that began (FenceFailsOnce).
    fences: usize,
    fence_refusals: usize,
}

struct Cluster<'a> {
    env: &'a Env,
    sim: &'a Sim,
    dir: PathBuf,
    nodes: [Option<Node>; 2],
    incarnations: [u32; 2],
    cib_seed: String,
    shared: Arc<Shared>,
    log: Arc<Log>,
    node_dirs: Vec<(String, PathBuf)>,
}

impl Cluster<'_> {
    fn start_node(&mut self, i: usize) {
        self.incarnations[i] += 1;
        let d = self.dir.join(format!("{}-{}", NODES[i], self.incarnations[i]));
        let conf = corosync_conf(
            &[(NODES[0], NODE_ADDRS[0]), (NODES[1], NODE_ADDRS[1])],
            &d.join("corosync.log"),
        );
        let mut node = Node::new(NODES[i], &d, Some(&self.env.net.ns[i]), &conf, &self.cib_seed);
        node.start_corosync();
        self.shared.holders.lock().unwrap()[i] = Some(node.holder_pid());
        self.node_dirs
            .push((format!("{} #{}", NODES[i], self.incarnations[i]), d));
        self.nodes[i] = Some(node);
    }

    fn alive(&self, i: usize) -> bool {
        self.shared.holders.lock().unwrap()[i].is_some()
    }

    /// A node whose stack lives, to run cluster tools on.
    fn live(&self) -> Option<&Node> {
        (0..2).find(|&i| self.alive(i)).and_then(|i| self.nodes[i].as_ref())
    }

    fn tool(&self, program: &str, args: &[&str]) -> Option<String> {
        let node = self.live()?;
        let out = run_with_timeout(node.command(program).args(args), Duration::from_secs(20));
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Restarts the dead nodes: reaps each old stack, powers its stand-in VM on, starts corosync on all of
    /// them first (two_node's wait_for_all: a node alone is never quorate), then pacemaker.
    fn restart_dead(&mut self) {
        let dead: Vec<usize> = (0..2).filter(|&i| !self.alive(i)).collect();
        for &i in &dead {
            if let Some(mut old) = self.nodes[i].take() {
                old.crash();
                old.stop();
            }
            let v = sim::get_json(self.sim.ready("control"), &format!("/vm/{}", sim::encode(PLUGS[i])))
                .unwrap_or(Value::Null);
            if v["power_state"] != "poweredOn" {
                let r = self
                    .sim
                    .vmha(&self.env.bin)
                    .run(&["start", "--name", PLUGS[i], "--host", PLUG_HOST]);
                if r.code != 0 {
                    self.log
                        .event(format!("cannot power {} on: {}{}", PLUGS[i], r.stdout, r.stderr));
                }
            }
            self.start_node(i);
        }
        // A fence still pending from before the restart may take the new stack down again (as it would
        // a rebooted node): then this gives up, and the next round restarts it once more.
        for &i in &dead {
            let t = Instant::now();
            let quorate = loop {
                if !self.alive(i) {
                    break false;
                }
                let Some(n) = self.nodes[i].as_ref() else {
                    break false;
                };
                let o = n.tool("corosync-quorumtool", &["-s"]);
                if String::from_utf8_lossy(&o.stdout).contains("Quorate:          Yes") {
                    break true;
                }
                if t.elapsed() > Duration::from_secs(NODE_JOIN_S) {
                    break false;
                }
                std::thread::sleep(Duration::from_millis(200));
            };
            match self.nodes[i].as_mut() {
                Some(n) if quorate => {
                    n.start_pacemaker();
                    self.log.event(format!("{} restarted", NODES[i]));
                }
                _ => {
                    // Down again for the next round, whatever kept it from quorum.
                    if let Some(pid) = self.shared.holders.lock().unwrap()[i].take() {
                        kill_namespace(pid);
                    }
                    self.log
                        .event(format!("{}: restart did not become quorate (fenced again?)", NODES[i]));
                }
            }
        }
    }
}

fn primitive_xml(sim: &Sim, urls: &Urls, pw: &Path, host_pw: &Path) -> String {
    let hostmap = format!("{}:{};{}:{}", NODES[0], HOSTS[0], NODES[1], HOSTS[1]);
    let vmx = vmx_path(VM);
    let base = Primitive {
        provider: CHAOS_PROVIDER,
        url: &urls.vcenter,
        user: sim.ready("user"),
        thumbprint: sim.ready("thumbprint"),
        password_file: pw,
        hostmap: &hostmap,
        vm_key: "vmx",
        vm: &vmx,
        allow_migrate: true,
        monitor_interval_s: MONITOR_INTERVAL_S,
    }
    .xml();
    let thumbprints: Vec<String> = HOSTS
        .iter()
        .map(|h| format!("{h}={}", sim.host(h).thumbprint))
        .collect();
    let addresses: Vec<String> = HOSTS.iter().zip(&urls.hosts).map(|(h, u)| format!("{h}={u}")).collect();
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
    base.replacen("</instance_attributes>", &extra, 1).replace(
        "<meta_attributes id=\"vm1-meta\">",
        "<meta_attributes id=\"vm1-meta\">\n    <nvpair id=\"vm1-target-role\" name=\"target-role\" value=\"Stopped\"/>",
    )
}

struct Urls {
    vcenter: String,
    hosts: Vec<String>,
    fence_port: String,
}

fn authority(url: &str) -> String {
    url.trim_start_matches("https://")
        .split('/')
        .next()
        .unwrap_or_default()
        .to_string()
}

fn ip_netns(ns: &str, args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .arg("-n")
        .arg(ns)
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// `<resource id="vm1" ...>` of crm_mon's XML: its attributes and the nodes it runs on.
fn crm_mon_vm1(xml: &str) -> Option<(String, Vec<String>)> {
    let i = xml.find("<resource id=\"vm1\"")?;
    let rest = &xml[i..];
    let tag_end = rest.find('>')?;
    let tag = rest[..tag_end].to_string();
    let body_end = if rest[..tag_end].ends_with('/') {
        tag_end
    } else {
        rest.find("</resource>").unwrap_or(tag_end)
    };
    let nodes = rest[..body_end]
        .split("<node name=\"")
        .skip(1)
        .filter_map(|s| s.split('"').next().map(str::to_string))
        .collect();
    Some((tag, nodes))
}

fn vmha_processes(bin: &Path) -> Vec<(u32, Duration)> {
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    let uptime: f64 = std::fs::read_to_string("/proc/uptime")
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0);
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if std::fs::read_link(format!("/proc/{pid}/exe")).ok().as_deref() != Some(bin) {
            continue;
        }
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Field 22 (starttime) counts after the parenthesised command name.
        let start = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(19))
            .and_then(|s| s.parse::<f64>().ok())
            .unwrap_or(0.0);
        out.push((pid, Duration::from_secs_f64((uptime - start / ticks).max(0.0))));
    }
    out
}

fn run_once(env: &Env, seed: u64) -> Outcome {
    let t_run = Instant::now();
    let faults = schedule(seed);
    let mut o = Outcome {
        seed,
        faults: faults.clone(),
        ..Outcome::default()
    };
    let log = Arc::new(Log {
        t0: Instant::now(),
        events: Mutex::new(Vec::new()),
    });
    let shared = Arc::new(Shared {
        holders: Mutex::new([None, None]),
        samples: AtomicU64::new(0),
        twice: AtomicU64::new(0),
        max_gap_ms: AtomicU64::new(0),
        now: Mutex::new(BTreeSet::new()),
        down_samples: AtomicU64::new(0),
        timeline: Mutex::new(Vec::new()),
    });
    let stop = Arc::new(AtomicBool::new(false));
    let sim = Sim::start("vcenter");
    sim.post("/settings", json!({"host_locks": true, "dead_host_lock_ms": 3000}));
    let dir = env.out_dir.join(format!("run-{seed}"));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let pw = common::write_password_file(&dir, sim.ready("password"));
    let host_dir = dir.join("h");
    std::fs::create_dir_all(&host_dir).unwrap();
    let host_pw = common::write_password_file(&host_dir, sim.host_password());

    // Forwarders: vCenter, each host, and vCenter again for the fence device alone.
    let gates = [
        Gate::new("vcenter"),
        Gate::new("host0"),
        Gate::new("host1"),
        Gate::new("fence"),
    ];
    let targets = [
        sim.ready("url").to_string(),
        sim.host(HOSTS[0]).url,
        sim.host(HOSTS[1]).url,
        sim.ready("url").to_string(),
    ];
    let mut urls = Vec::new();
    for (gate, target) in gates.iter().zip(&targets) {
        let listener = TcpListener::bind(format!("{HOST_ADDR}:0")).expect("bind a forwarder on the bridge");
        urls.push(format!("https://{}/sdk", listener.local_addr().unwrap()));
        let (gate, stop, log, target) = (gate.clone(), stop.clone(), log.clone(), authority(target));
        std::thread::spawn(move || serve_gate(listener, target, gate, stop, log));
    }
    let urls = Urls {
        vcenter: urls[0].clone(),
        hosts: vec![urls[1].clone(), urls[2].clone()],
        fence_port: urls[3]
            .rsplit(':')
            .next()
            .unwrap_or("")
            .trim_end_matches("/sdk")
            .to_string(),
    };
    let control = sim.ready("control").to_string();
    let helpers = [
        {
            let (c, s, st, l) = (control.clone(), shared.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || sampler(c, s, st, l))
        },
        {
            let (c, s, st, l) = (control.clone(), shared.clone(), stop.clone(), log.clone());
            std::thread::spawn(move || fence_watcher(c, s, st, l))
        },
    ];

    let mut cl = Cluster {
        env,
        sim: &sim,
        dir: dir.clone(),
        nodes: [None, None],
        incarnations: [0, 0],
        cib_seed: stonith_cib(),
        shared: shared.clone(),
        log: log.clone(),
        node_dirs: Vec::new(),
    };
    let setup = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        setup_cluster(&mut cl, &sim, &urls, &pw, &host_pw);
    }));
    o.setup = t_run.elapsed();
    if let Err(e) = setup {
        o.violations
            .push(format!("setup failed (no fault yet): {}", panic_text(&*e)));
    } else {
        log.event("clean, settled: vm1 on node1".into());
        let faulty = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let heal_at = inject(&mut cl, &gates, &faults);
            recover(&mut cl, heal_at, &mut o);
        }));
        if let Err(e) = faulty {
            o.violations
                .push(format!("the harness failed during the run: {}", panic_text(&*e)));
        }
    }

    // Teardown: the stacks die (a clean stop would shut the VM down, which no invariant needs).
    for i in 0..2 {
        shared.holders.lock().unwrap()[i] = None;
        if let Some(mut n) = cl.nodes[i].take() {
            n.crash();
            n.stop();
        }
    }
    stop.store(true, Ordering::SeqCst);
    for h in helpers {
        let _ = h.join();
    }
    // SIGKILLed processes need a moment to be gone from /proc.
    let mut left = vmha_processes(&env.bin);
    for _ in 0..40 {
        if left.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        left = vmha_processes(&env.bin);
    }
    if !left.is_empty() {
        o.violations
            .push(format!("vmha processes left after the stacks were stopped: {left:?}"));
    }
    o.samples = shared.samples.load(Ordering::SeqCst);
    o.max_gap_ms = shared.max_gap_ms.load(Ordering::SeqCst);
    o.downtime = Duration::from_millis(shared.down_samples.load(Ordering::SeqCst) * 100);
    let twice = shared.twice.load(Ordering::SeqCst);
    if twice > 0 {
        o.violations
            .push(format!("the VM ran on two hosts in {twice} of {} samples", o.samples));
    }
    // A gap is the machine's load (two cores shared), not vmha: reported per run and in the report, not a
    // violation; a double run shorter than the largest gap could hide in it.
    if o.max_gap_ms > 1000 {
        println!(
            "  (note: a gap of {} ms between two samples of the simulator)",
            o.max_gap_ms
        );
    }
    o.total = t_run.elapsed();
    {
        let events = log.events.lock().unwrap();
        o.fences = events.iter().filter(|(_, e)| e.contains(" powered off: ")).count();
        o.fence_refusals = events
            .iter()
            .filter(|(_, e)| e.contains("a fence that fails once"))
            .count();
    }
    if !o.violations.is_empty() {
        o.timeline_file = Some(write_timeline(&o, &log, &shared, &cl.node_dirs, &sim, &dir));
    } else {
        drop(cl);
        let _ = std::fs::remove_dir_all(&dir);
    }
    o
}

fn panic_text(e: &(dyn std::any::Any + Send)) -> String {
    e.downcast_ref::<String>()
        .cloned()
        .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_default()
}

fn setup_cluster(cl: &mut Cluster, sim: &Sim, urls: &Urls, pw: &Path, host_pw: &Path) {
    for i in 0..2 {
        cl.start_node(i);
    }
    for i in 0..2 {
        let n = cl.nodes[i].as_mut().unwrap();
        n.wait_quorate(Duration::from_secs(30));
        n.start_pacemaker();
    }
    let n0 = cl.nodes[0].as_ref().unwrap();
    n0.wait_dc(Duration::from_secs(60));
    n0.wait_online(&NODES, Duration::from_secs(60));
    n0.cib_create(
        "resources",
        &device_xml(
            HOST_ADDR,
            &urls.fence_port,
            sim.ready("user"),
            sim.ready("thumbprint"),
            pw,
        )
        .replace(r#"type="fence_vmha""#, r#"type="fence_vmha_chaos""#),
    );
    n0.cib_create("resources", &primitive_xml(sim, urls, pw, host_pw));
    n0.cib_create(
        "constraints",
        r#"<rsc_location id="vm1-prefers-node1" rsc="vm1" node="node1" score="50"/>"#,
    );
    n0.tool_ok(
        "crm_resource",
        &["-r", "vm1", "--meta", "-p", "target-role", "-v", "Started"],
    );
    n0.wait_monitor_ok_on("node1", "vm1", Duration::from_secs(60));
    n0.settle(Duration::from_secs(60));
    let on = cl.shared.now.lock().unwrap().clone();
    assert_eq!(
        on,
        BTreeSet::from([HOSTS[0].to_string()]),
        "vm1 not on {} after setup",
        HOSTS[0]
    );
    // Restarted nodes start from this configuration (both may be down at once), without its status.
    let cib = n0.tool_ok("cibadmin", &["--query"]);
    let cib = match (cib.find("<status"), cib.rfind("</status>")) {
        (Some(a), Some(b)) => format!("{}<status/>{}", &cib[..a], &cib[b + "</status>".len()..]),
        _ => cib,
    };
    cl.cib_seed = cib;
}

enum Step {
    Apply(usize),
    Heal(usize),
}

/// Applies and heals every fault on its schedule; returns when the last heal was done.
fn inject(cl: &mut Cluster, gates: &[Arc<Gate>; 4], faults: &[Fault]) -> Instant {
    let t0 = Instant::now();
    let mut steps: Vec<(Duration, Step)> = Vec::new();
    for (i, f) in faults.iter().enumerate() {
        steps.push((f.at, Step::Apply(i)));
        steps.push((f.at + f.lasts, Step::Heal(i)));
    }
    steps.sort_by_key(|(t, _)| *t);
    let sim = cl.sim;
    let vmx_q = format!("vmx={}", sim::encode(&vmx_path(VM)));
    for (at, step) in steps {
        if let Some(wait) = at.checked_sub(t0.elapsed()) {
            std::thread::sleep(wait);
        }
        match step {
            Step::Apply(i) => {
                let f = &faults[i];
                cl.log.event(format!("fault: {}", f.describe()));
                let ip: IpAddr = NODE_ADDRS[f.target].parse().unwrap();
                let result: Result<(), String> = match f.kind {
                    Kind::NodeKilled => {
                        let holder = cl.shared.holders.lock().unwrap()[f.target].take();
                        if let Some(pid) = holder {
                            kill_namespace(pid);
                        }
                        Ok(())
                    }
                    Kind::FenceFailsOnce => {
                        gates[3].fail_armed.store(true, Ordering::SeqCst);
                        let holder = cl.shared.holders.lock().unwrap()[f.target].take();
                        if let Some(pid) = holder {
                            kill_namespace(pid);
                        }
                        Ok(())
                    }
                    Kind::NodesPartitioned => ip_netns(
                        &cl.env.net.ns[0],
                        &["route", "add", "blackhole", &format!("{}/32", NODE_ADDRS[1])],
                    )
                    .and_then(|_| {
                        ip_netns(
                            &cl.env.net.ns[1],
                            &["route", "add", "blackhole", &format!("{}/32", NODE_ADDRS[0])],
                        )
                    }),
                    Kind::NodeCutFromVcenter => {
                        let how = if f.silent { SILENT } else { CLOSED };
                        gates[0].cut(ip, how);
                        gates[3].cut(ip, how);
                        Ok(())
                    }
                    // ESXi asks "moved or copied?" when the files come up on another host.
                    Kind::HostLost | Kind::HostDisconnected => {
                        let _ = sim.try_post(&format!("/vmx/question?{vmx_q}"), json!({"once": true}));
                        Ok(())
                    }
                    .and_then(|_| match f.kind {
                        Kind::HostLost => sim.try_post(
                            &format!("/host/{}/connection", HOSTS[f.target]),
                            json!({"state": "notResponding"}),
                        ),
                        _ => sim.try_post(
                            &format!("/host/{}/connection", HOSTS[f.target]),
                            json!({"state": "disconnected"}),
                        ),
                    })
                    .map(|_| ()),
                    Kind::VcenterRefusing | Kind::VcenterRestarted => {
                        sim.try_post("/control?vcenter=down", Value::Null).map(|_| ())
                    }
                    Kind::VcenterFrozen => sim.try_post("/control?vcenter=frozen", Value::Null).map(|_| ()),
                    Kind::GuestCrash => sim
                        .try_post(&format!("/vmx/heartbeat?{vmx_q}"), json!({"status": "red"}))
                        .map(|_| ()),
                    Kind::GuestShutdown => sim
                        .try_post(&format!("/vmx/guest-shutdown?{vmx_q}"), Value::Null)
                        .map(|_| ()),
                    Kind::AdminMove | Kind::AdminLiveMigration => {
                        let live = if f.kind == Kind::AdminLiveMigration {
                            "true"
                        } else {
                            "false"
                        };
                        cl.tool(
                            "crm_resource",
                            &["-r", "vm1", "--meta", "-p", "allow-migrate", "-v", live],
                        )
                        .and_then(|_| cl.tool("crm_resource", &["--move", "-r", "vm1", "-N", NODES[f.target]]))
                        .map(|_| ())
                        .ok_or_else(|| "crm_resource failed (no live node, or refused)".to_string())
                    }
                };
                if let Err(e) = result {
                    cl.log.event(format!("  (not applied: {e})"));
                }
            }
            Step::Heal(i) => {
                let f = &faults[i];
                cl.log.event(format!("heal: {:?}", f.kind));
                let ip: IpAddr = NODE_ADDRS[f.target].parse().unwrap();
                match f.kind {
                    // Killed nodes are restarted once everything is healed.
                    Kind::NodeKilled | Kind::FenceFailsOnce | Kind::GuestCrash | Kind::GuestShutdown => {}
                    Kind::NodesPartitioned => {
                        let _ = ip_netns(
                            &cl.env.net.ns[0],
                            &["route", "del", "blackhole", &format!("{}/32", NODE_ADDRS[1])],
                        );
                        let _ = ip_netns(
                            &cl.env.net.ns[1],
                            &["route", "del", "blackhole", &format!("{}/32", NODE_ADDRS[0])],
                        );
                    }
                    Kind::NodeCutFromVcenter => {
                        gates[0].heal(ip);
                        gates[3].heal(ip);
                    }
                    // A lost host was dead: it comes back rebooted, its VMs off. A disconnected one lived on.
                    Kind::HostLost => {
                        let _ = sim.try_post(
                            &format!("/host/{}/connection", HOSTS[f.target]),
                            json!({"state": "connected", "rebooted": true}),
                        );
                    }
                    Kind::HostDisconnected => {
                        let _ = sim.try_post(
                            &format!("/host/{}/connection", HOSTS[f.target]),
                            json!({"state": "connected"}),
                        );
                    }
                    Kind::VcenterRefusing | Kind::VcenterFrozen => {
                        let _ = sim.try_post("/control?vcenter=up", Value::Null);
                    }
                    // A restarted vCenter has forgotten every session it had.
                    Kind::VcenterRestarted => {
                        let _ = sim.try_post("/sessions/expire?endpoint=vcenter", Value::Null);
                        let _ = sim.try_post("/control?vcenter=up", Value::Null);
                    }
                    Kind::AdminMove | Kind::AdminLiveMigration => {
                        if cl.tool("crm_resource", &["--clear", "-r", "vm1"]).is_none() {
                            cl.log.event("  (--clear failed; done again after the restarts)".into());
                        }
                    }
                }
            }
        }
    }
    Instant::now()
}

/// Restarts dead nodes and waits until the VM runs on exactly one host, the one of the node Pacemaker
/// places it on, with nothing pending; checks sessions and processes then.
fn recover(cl: &mut Cluster, heal_at: Instant, o: &mut Outcome) {
    let bound = recovery_bound();
    let mut cleared = false;
    let mut last_state = String::new();
    loop {
        if heal_at.elapsed() > bound {
            o.violations.push(format!(
                "not recovered within {bound:?} after the last heal (stuck): {last_state}"
            ));
            return;
        }
        cl.restart_dead();
        if !cleared {
            cleared = cl.tool("crm_resource", &["--clear", "-r", "vm1"]).is_some();
        }
        let on = cl.shared.now.lock().unwrap().clone();
        let mon = cl
            .tool("crm_mon", &["--one-shot", "--output-as=xml"])
            .unwrap_or_default();
        let online = NODES.iter().all(|n| {
            mon.find(&format!("<node name=\"{n}\""))
                .map(|i| mon[i..].split('>').next().unwrap_or("").contains("online=\"true\""))
                .unwrap_or(false)
        });
        let rsc = crm_mon_vm1(&mon);
        let locate = cl.tool("crm_resource", &["--locate", "-r", "vm1"]).unwrap_or_default();
        last_state = format!(
            "simulator: {on:?}; nodes online: {online}; crm_mon vm1: {:?}; locate: {}",
            rsc,
            locate.trim()
        );
        let ok = (|| {
            if !online || on.len() != 1 {
                return Some(false);
            }
            let (tag, nodes) = rsc.as_ref()?;
            let healthy = [
                "role=\"Started\"",
                "active=\"true\"",
                "managed=\"true\"",
                "failed=\"false\"",
                "blocked=\"false\"",
                "nodes_running_on=\"1\"",
            ]
            .iter()
            .all(|a| tag.contains(a));
            let node = nodes.first()?;
            let i = NODES.iter().position(|n| n == node)?;
            Some(
                healthy && nodes.len() == 1 && on.contains(HOSTS[i]) && locate.contains(&format!("running on: {node}")),
            )
        })()
        .unwrap_or(false);
        if ok && cl.tool("crm_resource", &["--wait", "--timeout", "5s"]).is_some() {
            o.recovery = Some(heal_at.elapsed());
            cl.log.event(format!("recovered: {last_state}"));
            break;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    check_sessions_and_processes(cl, o);
}

/// Sessions: each node incarnation keeps at most one cached session per endpoint and user for the agent,
/// plus one on vCenter for the fence agent (another URL, so another cache file). More sessions live on an
/// endpoint than that, after a run of dozens of monitors, is a leak. Sessions a restarted vCenter or a
/// rebooted host forgot are not live. A vmha process older than the longest operation timeout is one
/// left running.
fn check_sessions_and_processes(cl: &mut Cluster, o: &mut Outcome) {
    let mut after: BTreeMap<String, u64> = BTreeMap::new();
    for x in cl.sim.sessions()["sessions"].as_array().into_iter().flatten() {
        *after
            .entry(x["endpoint"].as_str().unwrap_or("?").to_string())
            .or_insert(0) += 1;
    }
    let incarnations: u64 = cl.incarnations.iter().map(|&n| u64::from(n)).sum();
    for (ep, n) in &after {
        let allowed = if ep == "vcenter" {
            2 * incarnations
        } else {
            incarnations
        };
        if *n > allowed {
            o.violations.push(format!(
                "session leak: {n} live sessions on {ep}, at most {allowed} allowed ({incarnations} node incarnations)"
            ));
        }
    }
    cl.log.event(format!("sessions live: {after:?}"));
    for (pid, age) in vmha_processes(&cl.env.bin) {
        if age > VMHA_MAX_AGE {
            o.violations.push(format!(
                "vmha process {pid} has been running for {age:.0?} (left running)"
            ));
        }
    }
}

fn write_timeline(
    o: &Outcome,
    log: &Log,
    shared: &Shared,
    node_dirs: &[(String, PathBuf)],
    sim: &Sim,
    dir: &Path,
) -> PathBuf {
    let mut s = String::new();
    let _ = writeln!(s, "seed {} (replay: VMHA_CHAOS_SEED={} ...)", o.seed, o.seed);
    for f in &o.faults {
        let _ = writeln!(s, "  {}", f.describe());
    }
    for v in &o.violations {
        let _ = writeln!(s, "VIOLATION: {v}");
    }
    let mut all: Vec<(Duration, String)> = log
        .events
        .lock()
        .unwrap()
        .iter()
        .map(|(t, e)| (*t, format!("event      {e}")))
        .collect();
    all.extend(
        shared
            .timeline
            .lock()
            .unwrap()
            .iter()
            .map(|(t, e)| (*t, format!("simulator  {e}"))),
    );
    all.sort_by_key(|(t, _)| *t);
    let _ = writeln!(s, "--- timeline (s since the run began) ---");
    for (t, e) in all {
        let _ = writeln!(s, "{:8.2} {e}", t.as_secs_f64());
    }
    for (name, d) in node_dirs {
        let text = std::fs::read_to_string(d.join("log/pacemaker.log")).unwrap_or_default();
        let _ = writeln!(s, "--- {name}: cluster events and vmha lines ({}) ---", d.display());
        for line in text.lines().filter(|l| {
            [
                "Result of",
                "Initiating",
                "fenc",
                "Fenc",
                "vm1",
                "vmha",
                "error output",
                "lost",
                "Node ",
            ]
            .iter()
            .any(|k| l.contains(k))
        }) {
            let _ = writeln!(s, "{line}");
        }
    }
    let _ = writeln!(s, "--- simulator log tail ---\n{}", sim.log_tail(80));
    let path = dir.join("timeline.txt");
    let _ = std::fs::write(&path, s);
    path
}

// ---- agents under the campaign's own names -------------------------------------------------------

/// The OCF agent (provider `vmha-chaos`) and the fence agent (`/usr/sbin/fence_vmha_chaos`), both execing
/// this build: names no other test installs, so the campaign never removes another test's agents. Removed
/// on drop; a leftover of a killed campaign is replaced.
const CHAOS_PROVIDER: &str = "vmha-chaos";
const CHAOS_FENCE: &str = "/usr/sbin/fence_vmha_chaos";

struct Installed;

impl Installed {
    fn new() -> Installed {
        let dir = PathBuf::from("/usr/lib/ocf/resource.d").join(CHAOS_PROVIDER);
        // These names are the campaign's alone: what stands there was left by a campaign that was killed
        // before its guards ran, and is replaced.
        for (path, left) in [
            (dir.as_path(), dir.exists()),
            (Path::new(CHAOS_FENCE), Path::new(CHAOS_FENCE).exists()),
        ] {
            if left {
                println!("chaos: replacing {} left by an earlier campaign", path.display());
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_file(CHAOS_FENCE);
        std::fs::create_dir_all(&dir).unwrap();
        common::write_shim(&dir.join("vm"));
        std::fs::write(
            CHAOS_FENCE,
            format!("#!/bin/sh\nexec '{}' fence \"$@\"\n", env!("CARGO_BIN_EXE_vmha")),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(CHAOS_FENCE, std::fs::Permissions::from_mode(0o755)).unwrap();
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(CHAOS_FENCE);
        let _ = std::fs::remove_dir_all(PathBuf::from("/usr/lib/ocf/resource.d").join(CHAOS_PROVIDER));
    }
}

// ---- the campaign ----------------------------------------------------------------------------------

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn report(outcomes: &[Outcome], took: Duration) -> String {
    let mut s = String::new();
    let runs = outcomes.len();
    let failed: Vec<&Outcome> = outcomes.iter().filter(|o| !o.violations.is_empty()).collect();
    let violations: usize = outcomes.iter().map(|o| o.violations.len()).sum();
    let samples: u64 = outcomes.iter().map(|o| o.samples).sum();
    let max_gap = outcomes.iter().map(|o| o.max_gap_ms).max().unwrap_or(0);
    let _ = writeln!(s, "=== chaos campaign: {runs} runs in {:.0?} ===", took);
    let _ = writeln!(
        s,
        "invariant violations: {violations} (runs failed: {}); simulator samples: {samples}, largest gap {max_gap} ms",
        failed.len()
    );
    let _ = writeln!(s, "recovery bound (derived from the timeouts): {:?}", recovery_bound());
    let _ = writeln!(
        s,
        "nodes fenced: {}; fence device refusing (FenceFailsOnce) began {} times",
        outcomes.iter().map(|o| o.fences).sum::<usize>(),
        outcomes.iter().map(|o| o.fence_refusals).sum::<usize>()
    );
    let mut by_kind: BTreeMap<Kind, (usize, Vec<Duration>, Vec<Duration>)> = BTreeMap::new();
    for o in outcomes {
        for f in &o.faults {
            let e = by_kind.entry(f.kind).or_default();
            e.0 += 1;
        }
        let kinds: BTreeSet<Kind> = o.faults.iter().map(|f| f.kind).collect();
        for k in kinds {
            let e = by_kind.entry(k).or_default();
            if let Some(r) = o.recovery {
                e.1.push(r);
            }
            e.2.push(o.downtime);
        }
    }
    let _ = writeln!(
        s,
        "{:<20} {:>6} {:>5} | recovery after the last heal: {:>6} {:>6} {:>6} | VM down in the run: {:>6} {:>6}",
        "fault kind", "faults", "runs", "p50", "p99", "max", "p50", "max"
    );
    for (k, (n, mut rec, mut down)) in by_kind {
        rec.sort();
        down.sort();
        let _ = writeln!(
            s,
            "{:<20} {:>6} {:>5} |                              {:>6.1} {:>6.1} {:>6.1} |                    {:>6.1} {:>6.1}",
            format!("{k:?}"),
            n,
            down.len(),
            percentile(&rec, 0.5).as_secs_f64(),
            percentile(&rec, 0.99).as_secs_f64(),
            rec.last().copied().unwrap_or_default().as_secs_f64(),
            percentile(&down, 0.5).as_secs_f64(),
            down.last().copied().unwrap_or_default().as_secs_f64(),
        );
    }
    let mut per_run: Vec<Duration> = outcomes.iter().map(|o| o.total).collect();
    per_run.sort();
    let _ = writeln!(
        s,
        "run length: p50 {:.1?}, max {:.1?}; setup (fresh simulator + two-node stack, settled) p50 {:.1?}",
        percentile(&per_run, 0.5),
        per_run.last().copied().unwrap_or_default(),
        {
            let mut v: Vec<Duration> = outcomes.iter().map(|o| o.setup).collect();
            v.sort();
            percentile(&v, 0.5)
        }
    );
    for o in failed {
        let _ = writeln!(s, "FAILED seed {}:", o.seed);
        for f in &o.faults {
            let _ = writeln!(s, "    {}", f.describe());
        }
        for v in &o.violations {
            let _ = writeln!(s, "    violation: {v}");
        }
        if let Some(p) = &o.timeline_file {
            let _ = writeln!(s, "    timeline: {}", p.display());
        }
    }
    s
}

fn main() {
    // Exit only after every guard (namespaces, installed agents) is dropped.
    if !campaign() {
        std::process::exit(1);
    }
}

/// Runs the campaign; false when a run broke an invariant.
fn campaign() -> bool {
    // harness = false: a filter that is not ours, or --list, must not start a campaign.
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.iter().any(|a| a == "--list") {
        println!("chaos: test");
        return true;
    }
    if args
        .iter()
        .any(|a| !a.starts_with('-') && !"chaos".contains(a.as_str()))
    {
        return true;
    }
    if !common::is_root() {
        println!("chaos: SKIPPED (needs root: network and mount namespaces, /usr/sbin/fence_vmha)");
        return true;
    }
    for tool in [
        "corosync",
        "pacemakerd",
        "cibadmin",
        "crm_resource",
        "crm_mon",
        "stonith_admin",
        "ip",
        "nsenter",
        "unshare",
    ] {
        common::require_tool(tool);
    }
    let replay = std::env::var("VMHA_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse::<u64>().ok());
    let runs: usize = std::env::var("VMHA_CHAOS_RUNS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let base = std::env::var("VMHA_CHAOS_BASE")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(1)
        });
    let seeds: Vec<u64> = match replay {
        Some(s) => vec![s],
        None => (0..runs as u64)
            .map(|i| Rng(base.wrapping_add(i)).next() % 1_000_000_000)
            .collect(),
    };
    let out_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("chaos");
    std::fs::create_dir_all(&out_dir).unwrap();
    let net = Net::new();
    let in_sim_ns = InNetns::enter(&net.ns[2]);
    let _installed = Installed::new();
    let env = Env {
        net,
        bin: PathBuf::from(env!("CARGO_BIN_EXE_vmha")),
        out_dir: out_dir.clone(),
    };
    // A time budget for long campaigns: no new run starts after it (the report covers the runs done).
    let budget = std::env::var("VMHA_CHAOS_MINUTES")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(|m| Duration::from_secs(60 * m));
    let t0 = Instant::now();
    let mut outcomes = Vec::new();
    for (n, seed) in seeds.iter().enumerate() {
        if budget.is_some_and(|b| t0.elapsed() > b) {
            println!("chaos: time budget spent; {} of {} runs done", n, seeds.len());
            break;
        }
        let faults = schedule(*seed);
        println!(
            "chaos run {}/{} seed {seed}: {}",
            n + 1,
            seeds.len(),
            faults.iter().map(Fault::describe).collect::<Vec<_>>().join("; ")
        );
        let o = run_once(&env, *seed);
        println!(
            "  -> {} recovery {} down {:.1}s, {} fenced, {} samples, run {:.1?}{}",
            if o.violations.is_empty() { "ok" } else { "VIOLATION" },
            o.recovery
                .map_or("-".to_string(), |r| format!("{:.1}s", r.as_secs_f64())),
            o.downtime.as_secs_f64(),
            o.fences,
            o.samples,
            o.total,
            o.violations.iter().map(|v| format!("\n     {v}")).collect::<String>()
        );
        outcomes.push(o);
        // The report so far, so that a campaign cut short still leaves one.
        let _ = std::fs::write(out_dir.join("report.txt"), report(&outcomes, t0.elapsed()));
    }
    let text = report(&outcomes, t0.elapsed());
    println!("{text}");
    let _ = std::fs::write(out_dir.join("report.txt"), &text);
    // Back home first: the bridge is deleted from the namespace it was made in.
    drop(in_sim_ns);
    drop(env);
    outcomes.iter().all(|o| o.violations.is_empty())
}
