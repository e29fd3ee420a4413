//! Requests per command against the simulator, cold (no cached session) and warm: the bounds issue 9
//! sets, measured with the simulator's per-method counts.

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::path::Path;
use std::time::Duration;

use serde_json::Value;

use run::Vmha;
use sim::Sim;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const H2: &str = "DC0_C0_H1";
const UUID: &str = "cd0681bf-2f18-5c00-9b9b-8197c0095348";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

fn cached(sim: &Sim, dir: &Path) -> Vmha {
    let mut v = sim.vmha(bin());
    v.flags.push("--session-dir".into());
    v.flags.push(dir.display().to_string());
    v
}

/// Runs one command and returns (total requests, by method).
fn measure(sim: &Sim, v: &Vmha, args: &[&str], want: i32) -> (u64, Value) {
    sim.reset_stats();
    let r = v.run(args);
    assert_eq!(r.code, want, "{args:?}: {r:?}");
    let s = sim.stats();
    eprintln!("{args:?}: {} requests: {}", s["total"], s["by_method"]);
    (s["total"].as_u64().unwrap(), s["by_method"].clone())
}

fn power_off(sim: &Sim) {
    sim.guest_shutdown(VM);
    sim.wait_vm(VM, Duration::from_secs(10), |v| v["power_state"] == "poweredOff");
}

fn n(by: &Value, m: &str) -> u64 {
    by[m].as_u64().unwrap_or(0)
}

/// A cached session outlives the command: every collector it made must be destroyed.
fn no_collector_left(by: &Value) {
    assert_eq!(
        n(by, "CreatePropertyCollector"),
        n(by, "DestroyPropertyCollector"),
        "{by}"
    );
}

#[test]
fn request_counts_cold_and_warm() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let warm = cached(&sim, &tmp.path().join("vmha"));
    let uncached = sim.vmha(bin());
    let monitor = ["monitor", "--name", VM, "--host", H1];
    let start = ["start", "--name", VM, "--host", H1];
    let stop = ["stop", "--name", VM, "--host", H1];

    // Without the cache: Login and Logout each time, and nothing remembered.
    assert!(measure(&sim, &uncached, &monitor, 0).0 <= 5);
    power_off(&sim);
    assert!(measure(&sim, &uncached, &start, 0).0 <= 11);
    assert!(measure(&sim, &uncached, &stop, 0).0 <= 10);

    // Cold cache: one Login, kept; the name is looked up once.
    let (total, by) = measure(&sim, &warm, &["status", "--name", VM], 0);
    assert_eq!((n(&by, "Login"), n(&by, "Logout")), (1, 0), "{by}");
    assert!(total <= 4, "{by}");
    // Warm: the service content and one state read, then the work.
    let (total, by) = measure(&sim, &warm, &start, 0);
    assert!(
        total <= 9,
        "start of a registered, powered-off VM, warm cache: {total} requests: {by}"
    );
    no_collector_left(&by);
    let (total, by) = measure(&sim, &warm, &monitor, 0);
    assert!(total <= 3, "one-shot monitor, warm cache: {total} requests: {by}");
    assert_eq!(n(&by, "Login"), 0);
    let (total, by) = measure(&sim, &warm, &stop, 0);
    assert!(total <= 8, "stop, warm cache: {total} requests: {by}");
    no_collector_left(&by);
    let (total, by) = measure(&sim, &warm, &["status", "--vmx", &sim::vmx_path(VM)], 0);
    assert!(total <= 4, "{by}");
    let (total, by) = measure(&sim, &warm, &["status", "--vmx", &sim::vmx_path(VM)], 0);
    assert!(total <= 2, "status by vmx, warm: {by}");
    let (total, by) = measure(&sim, &warm, &["status", "--uuid", UUID], 0);
    assert!(total <= 3, "{by}");
    let (total, by) = measure(&sim, &warm, &["status", "--uuid", UUID], 0);
    assert!(total <= 2, "status by uuid, warm: {by}");
}

#[test]
fn a_monitor_waiting_out_a_migration_leaves_no_collector_in_the_cached_session() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let warm = cached(&sim, &tmp.path().join("vmha"));
    // The VM runs on H1; this node stands for H2: after --migration-wait, exit 14.
    let (_, by) = measure(
        &sim,
        &warm,
        &["monitor", "--name", VM, "--host", H2, "--migration-wait", "1"],
        14,
    );
    assert!(n(&by, "CreatePropertyCollector") >= 1, "the wait watches: {by}");
    no_collector_left(&by);
}
