//! vCenter is not a single point of failure: with a host user configured, status, start, stop and
//! monitor act through this node's own host when vCenter refuses, freezes or is gone; a takeover while
//! vCenter is down registers the VM's files on the surviving host; after vCenter returns, its two
//! entries of the same files are told apart; and clusters without any vCenter fail over between hosts.
//! Every check reads the simulator's own state (tests/vcsim: per-host endpoints over one model).

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use run::{Run, Vmha};
use sim::{Sim, vmx_path};

const VM: &str = "DC0_C0_RP0_VM0";
const H0: &str = "DC0_C0_H0";
const H1: &str = "DC0_C0_H1";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

/// One cluster node: its session directory and the host password file, as an administrator keeps them.
struct Node {
    dir: tempfile::TempDir,
    host: &'static str,
}

impl Node {
    fn new(host: &'static str, sim: &Sim) -> Node {
        let dir = tempfile::tempdir().unwrap();
        std::fs::set_permissions(dir.path(), std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
        let pw = dir.path().join("host.pw");
        std::fs::write(&pw, format!("{}\n", sim.host_password())).unwrap();
        std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
        Node { dir, host }
    }

    fn sessions(&self) -> PathBuf {
        self.dir.path().join("sessions")
    }

    /// Forgets that vCenter was unreachable, as 30 s without asking it would.
    fn forget_unreachable(&self) {
        for f in std::fs::read_dir(self.sessions()).into_iter().flatten().flatten() {
            if f.path().extension().is_some_and(|e| e == "unreachable") {
                std::fs::remove_file(f.path()).unwrap();
            }
        }
    }

    /// vmha for this node: vCenter's URL (empty: none), every host's address, the host user.
    fn vmha(&self, sim: &Sim, with_vcenter: bool) -> Vmha {
        let mut v = sim.vmha(bin());
        if !with_vcenter {
            v.url = String::new();
            v.password = None;
        }
        let addresses: Vec<String> = sim.hosts().iter().map(|h| format!("{}={}", h.name, h.url)).collect();
        v.flags.extend([
            "--session-dir".into(),
            self.sessions().display().to_string(),
            "--host-user".into(),
            sim.host_user().to_string(),
            "--host-password-file".into(),
            self.dir.path().join("host.pw").display().to_string(),
            "--host-address".into(),
            addresses.join(";"),
            "--fallback-after".into(),
            "2".into(),
        ]);
        v
    }

    fn run(&self, sim: &Sim, with_vcenter: bool, args: &[&str]) -> (Run, Duration) {
        let mut all: Vec<&str> = args.to_vec();
        all.extend(["--host", self.host]);
        let t = Instant::now();
        let r = self.vmha(sim, with_vcenter).run(&all);
        let took = t.elapsed();
        println!(
            "--- {} {:?}: exit {} in {took:?}\n{}{}",
            self.host, args, r.code, r.stdout, r.stderr
        );
        assert!(!r.stdout.contains(sim.host_password()) && !r.stderr.contains(sim.host_password()));
        (r, took)
    }
}

fn json_of(r: &Run) -> Value {
    serde_json::from_str(r.stdout.lines().last().unwrap_or(""))
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", r.stdout))
}

/// The simulator's entries of `vm` that run: powered on, on a host that is not lost (a `notResponding`
/// host stands for a dead one, whatever its stale entry says).
fn running_on(sim: &Sim, vm: &str) -> Vec<String> {
    let lost: Vec<String> = sim
        .hosts_state()
        .iter()
        .filter(|h| h["connection_state"] == "notResponding")
        .filter_map(|h| h["name"].as_str().map(str::to_string))
        .collect();
    sim.vms()
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] == vm && v["registered"] == true && v["power_state"] == "poweredOn")
        .filter_map(|v| v["host"].as_str().map(str::to_string))
        .filter(|h| !lost.contains(h))
        .collect()
}

fn entries(sim: &Sim, vm: &str) -> Vec<Value> {
    sim.vms()
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["name"] == vm && v["registered"] == true)
        .cloned()
        .collect()
}

#[test]
fn every_command_goes_through_this_nodes_host_while_vcenter_is_down_or_frozen() {
    let sim = Sim::start("vcenter");
    let n0 = Node::new(H0, &sim);
    // With vCenter up: the answer is vCenter's, and what it says of the VM and hosts is remembered.
    let (r, _) = n0.run(&sim, true, &["--json", "monitor", "--name", VM]);
    assert_eq!(r.code, 0);
    assert!(json_of(&r).get("source").is_none(), "vCenter answered: {}", r.stdout);

    for state in ["down", "frozen"] {
        sim.vcenter(state);
        n0.forget_unreachable();
        let (r, took) = n0.run(&sim, true, &["--json", "monitor", "--name", VM]);
        let j = json_of(&r);
        assert_eq!(r.code, 0, "monitor through the host while vCenter is {state}");
        assert_eq!(
            (j["source"].as_str(), j["via_host"].as_str()),
            (Some("host"), Some(H0)),
            "{j}"
        );
        assert!(j["fallback_reason"].as_str().is_some_and(|w| !w.is_empty()), "{j}");
        // --fallback-after 2: a frozen vCenter costs at most that, a refusing one nothing.
        let bound = if state == "frozen" { 5 } else { 2 };
        assert!(
            took < Duration::from_secs(bound),
            "vCenter {state}: decided in {took:?}"
        );

        let (r, _) = n0.run(&sim, true, &["--json", "status", "--name", VM]);
        let j = json_of(&r);
        assert_eq!(
            (r.code, j["source"].as_str(), j["power_state"].as_str()),
            (0, Some("host"), Some("poweredOn")),
            "{j}"
        );
        sim.vcenter("up");
    }

    // Stop and start through the host: vCenter's entry stays (no unregistration on a managed host).
    sim.vcenter("down");
    let (r, _) = n0.run(&sim, true, &["stop", "--name", VM, "--stop-wait", "10"]);
    assert_eq!(r.code, 0);
    let v = sim.vm(VM);
    assert_eq!(
        (v["registered"].as_bool(), v["power_state"].as_str()),
        (Some(true), Some("poweredOff")),
        "{v}"
    );
    let (r, _) = n0.run(&sim, true, &["start", "--name", VM, "--start-wait", "10"]);
    assert_eq!(r.code, 0);
    assert_eq!(running_on(&sim, VM), vec![H0.to_string()]);
    // A node whose host does not have the VM: not running here.
    let n1 = Node::new(H1, &sim);
    let (r, _) = n1.run(&sim, true, &["monitor", "--name", VM]);
    assert_eq!(r.code, 10, "not registered on H1");
    sim.vcenter("up");
    n0.forget_unreachable();
    let (r, _) = n0.run(&sim, true, &["--json", "monitor", "--name", VM]);
    assert_eq!(r.code, 0);
    assert!(
        json_of(&r).get("source").is_none(),
        "vCenter answers again: {}",
        r.stdout
    );
    // No session leaked: each node keeps one cached session per endpoint it used (node0: vCenter and its
    // host; node1: its host), however many calls it made.
    let sessions = sim.sessions();
    let live = sessions["live"].as_u64().unwrap_or(u64::MAX);
    assert!(live <= 3, "{live} live sessions: {sessions}");
}

#[test]
fn takeover_while_vcenter_is_down_then_vcenter_returns_with_two_entries() {
    let sim = Sim::start("vcenter");
    sim.post("/settings", json!({"host_locks": true, "dead_host_lock_ms": 1500}));
    let n0 = Node::new(H0, &sim);
    let n1 = Node::new(H1, &sim);
    // Both nodes saw the VM through vCenter before (their probes and monitors do): its files are known.
    assert_eq!(n0.run(&sim, true, &["monitor", "--name", VM]).0.code, 0);
    assert_eq!(
        n1.run(&sim, true, &["monitor", "--name", VM, "--migration-wait", "0"])
            .0
            .code,
        14
    );

    // A host that registers files another host ran asks whether the VM was moved or copied.
    sim.post(
        &format!("/vmx/question?vmx={}", sim::encode(&vmx_path(VM))),
        json!({"once": true}),
    );
    sim.vcenter("down");
    sim.host_connection(H0, "notResponding", false);
    let (r, took) = n1.run(&sim, true, &["--json", "start", "--name", VM, "--start-wait", "20"]);
    assert_eq!(r.code, 0, "takeover through H1");
    assert_eq!(json_of(&r)["plan"], "register");
    assert!(
        r.stdout.contains("I moved it") || r.stderr.contains("I moved it"),
        "the moved question is answered"
    );
    assert_eq!(running_on(&sim, VM), vec![H1.to_string()]);
    println!("takeover through the host took {took:?}");

    // vCenter back: two entries of the same files; every command picks the running one.
    sim.vcenter("up");
    n1.forget_unreachable();
    assert_eq!(entries(&sim, VM).len(), 2, "{}", sim.vms());
    let (r, _) = n1.run(&sim, true, &["--json", "status", "--name", VM]);
    let j = json_of(&r);
    assert_eq!(
        (r.code, j["source"].as_str(), j["host"].as_str()),
        (0, Some("vcenter"), Some(H1)),
        "{j}"
    );
    assert_eq!(j["other_entries"].as_array().map(Vec::len), Some(1), "{j}");
    assert_eq!(n1.run(&sim, true, &["monitor", "--name", VM]).0.code, 0);
    // The stale entry's node: nothing to stop there, and it must not act on the wrong entry.
    assert_eq!(n0.run(&sim, true, &["stop", "--name", VM]).0.code, 0);
    assert_eq!(running_on(&sim, VM), vec![H1.to_string()]);
    // The lost host comes back rebooted: its entry is powered off, and now provably stale.
    sim.host_connection(H0, "connected", true);
    assert_eq!(n1.run(&sim, true, &["start", "--name", VM]).0.code, 0);
    assert_eq!(
        entries(&sim, VM).len(),
        1,
        "the powered-off twin is unregistered: {}",
        sim.vms()
    );
    assert_eq!(running_on(&sim, VM), vec![H1.to_string()]);
}

#[test]
fn start_through_a_host_refuses_a_vm_another_host_runs() {
    let sim = Sim::start("vcenter");
    let n0 = Node::new(H0, &sim);
    let n1 = Node::new(H1, &sim);
    assert_eq!(n1.run(&sim, true, &["status", "--name", VM]).0.code, 0);
    sim.vcenter("down");
    let (r, took) = n1.run(&sim, true, &["start", "--name", VM]);
    assert_eq!(r.code, 5, "H0 answers that it runs the VM");
    assert!(r.stderr.contains(H0), "{}", r.stderr);
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(running_on(&sim, VM), vec![H0.to_string()]);
    assert_eq!(entries(&sim, VM).len(), 1, "nothing registered on H1");
    drop(n0);
}

#[test]
fn lockdown_refuses_the_host_login_once_and_says_so() {
    let sim = Sim::start("vcenter");
    sim.host_lockdown(H0, "lockdownNormal", &[]);
    let n0 = Node::new(H0, &sim);
    // vCenter reports the host's lockdown mode while it is up.
    assert_eq!(n0.run(&sim, true, &["monitor", "--name", VM]).0.code, 0);
    sim.vcenter("down");
    let (r, _) = n0.run(&sim, true, &["monitor", "--name", VM]);
    assert_eq!(r.code, 3, "login refused");
    assert!(r.stderr.contains("lockdown mode (lockdownNormal)"), "{}", r.stderr);
    assert!(r.stderr.contains("Exception Users"), "{}", r.stderr);
    // A refused login is not tried again (ESXi would lock the account after a few): the next call fails at
    // once without a Login.
    let logins = sim.stats()["by_endpoint"][H0]["by_method"]["Login"]
        .as_u64()
        .unwrap_or(0);
    let (r, _) = n0.run(&sim, true, &["monitor", "--name", VM]);
    assert_eq!(r.code, 3);
    assert!(r.stderr.contains("not tried again"), "{}", r.stderr);
    assert_eq!(
        sim.stats()["by_endpoint"][H0]["by_method"]["Login"]
            .as_u64()
            .unwrap_or(0),
        logins
    );
    // An exception user gets in, once the refusal is forgotten (15 minutes, or its file removed).
    sim.host_lockdown(H0, "lockdownNormal", &[sim.host_user()]);
    for f in std::fs::read_dir(n0.sessions()).unwrap().flatten() {
        if f.path().extension().is_some_and(|e| e == "refused") {
            std::fs::remove_file(f.path()).unwrap();
        }
    }
    assert_eq!(n0.run(&sim, true, &["monitor", "--name", VM]).0.code, 0);
}

#[test]
fn without_a_host_user_a_vcenter_outage_is_exit_4_and_check_warns() {
    let sim = Sim::start("vcenter");
    let v = sim.vmha(bin());
    let r = v.run(&["check"]);
    assert_eq!(r.code, 0);
    assert!(
        r.stderr.contains("single point of failure") || r.stderr.contains("cannot act on its VMs"),
        "{}",
        r.stderr
    );
    sim.vcenter("down");
    let r = v.run(&["monitor", "--name", VM, "--host", H0]);
    assert_eq!(r.code, 4, "{}", r.stderr);
}

#[test]
fn esx_only_cluster_fails_over_between_hosts() {
    let sim = Sim::start_esx_hosts(2);
    sim.post("/settings", json!({"host_locks": true, "dead_host_lock_ms": 1500}));
    let n0 = Node::new(H0, &sim);
    let n1 = Node::new(H1, &sim);
    let vmx = vmx_path(VM);
    // The VM runs on H0; a start on H1 is refused while H0 runs it.
    assert_eq!(n0.run(&sim, false, &["monitor", "--vmx", &vmx]).0.code, 0);
    assert_eq!(n1.run(&sim, false, &["start", "--vmx", &vmx]).0.code, 5);
    // A move: stop on H0 (unregisters there), start on H1 (registers there).
    assert_eq!(
        n0.run(&sim, false, &["stop", "--vmx", &vmx, "--stop-wait", "10"])
            .0
            .code,
        0
    );
    assert!(entries(&sim, VM).is_empty(), "stop unregistered it: {}", sim.vms());
    let (r, _) = n1.run(&sim, false, &["--json", "start", "--vmx", &vmx, "--start-wait", "10"]);
    assert_eq!((r.code, json_of(&r)["plan"].as_str()), (0, Some("register")));
    assert_eq!(running_on(&sim, VM), vec![H1.to_string()]);
    // H1 is lost with the VM on it: H0 takes the VM over once H1's lock is gone.
    sim.host_connection(H1, "notResponding", false);
    let (r, took) = n0.run(&sim, false, &["start", "--vmx", &vmx, "--start-wait", "20"]);
    assert_eq!(r.code, 0, "takeover on H0");
    assert_eq!(running_on(&sim, VM), vec![H0.to_string()]);
    println!("ESX-only takeover took {took:?}");
}
