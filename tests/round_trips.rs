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

/// A cached session outlives the command: every collector it made, and every filter it put on the
/// session's default collector, must be destroyed (a private collector takes its one filter with it).
fn nothing_left_watching(by: &Value) {
    assert_eq!(
        n(by, "CreatePropertyCollector"),
        n(by, "DestroyPropertyCollector"),
        "{by}"
    );
    assert_eq!(
        n(by, "CreateFilter"),
        n(by, "DestroyPropertyCollector") + n(by, "DestroyPropertyFilter"),
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

    // Without the cache: Login and Logout each time, and nothing remembered. The session is this
    // process's alone, so its waits use the session's default collector (no CreatePropertyCollector),
    // and Logout takes the filter with it.
    assert!(measure(&sim, &uncached, &monitor, 0).0 <= 5);
    power_off(&sim);
    let (total, by) = measure(&sim, &uncached, &start, 0);
    assert!(total <= 10, "start, no cache: {total} requests: {by}");
    assert_eq!(n(&by, "CreatePropertyCollector"), 0, "{by}");
    let (total, by) = measure(&sim, &uncached, &stop, 0);
    assert!(total <= 9, "stop, no cache: {total} requests: {by}");

    // Cold cache: one Login, kept with the service content; the name is looked up once.
    let (total, by) = measure(&sim, &warm, &["status", "--name", VM], 0);
    assert_eq!((n(&by, "Login"), n(&by, "Logout")), (1, 0), "{by}");
    assert!(total <= 4, "{by}");
    // Warm: no RetrieveServiceContent (kept beside the session), one state read, then the work.
    let (total, by) = measure(&sim, &warm, &start, 0);
    assert!(
        total <= 8,
        "start of a registered, powered-off VM, warm cache: {total} requests: {by}"
    );
    assert_eq!(n(&by, "RetrieveServiceContent"), 0, "{by}");
    nothing_left_watching(&by);
    let (total, by) = measure(&sim, &warm, &monitor, 0);
    assert!(total <= 1, "one-shot monitor, warm cache: {total} requests: {by}");
    assert_eq!(n(&by, "Login"), 0);
    let (total, by) = measure(&sim, &warm, &stop, 0);
    assert!(total <= 7, "stop, warm cache: {total} requests: {by}");
    nothing_left_watching(&by);
    let (total, by) = measure(&sim, &warm, &["status", "--vmx", &sim::vmx_path(VM)], 0);
    assert!(total <= 3, "{by}");
    let (total, by) = measure(&sim, &warm, &["status", "--vmx", &sim::vmx_path(VM)], 0);
    assert!(total <= 1, "status by vmx, warm: {by}");
    let (total, by) = measure(&sim, &warm, &["status", "--uuid", UUID], 0);
    assert!(total <= 2, "{by}");
    let (total, by) = measure(&sim, &warm, &["status", "--uuid", UUID], 0);
    assert!(total <= 1, "status by uuid, warm: {by}");
}

#[test]
fn the_process_that_logs_in_waits_on_the_default_collector_and_leaves_nothing_in_the_kept_session() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let cold = cached(&sim, &tmp.path().join("vmha"));
    power_off(&sim);
    // Cold cache: this process logs in, so nobody else knows the session's default collector yet.
    let (total, by) = measure(&sim, &cold, &["start", "--name", VM, "--host", H1], 0);
    assert!(total <= 10, "start, cold cache: {total} requests: {by}");
    assert_eq!((n(&by, "Login"), n(&by, "Logout")), (1, 0), "{by}");
    assert_eq!(n(&by, "CreatePropertyCollector"), 0, "{by}");
    assert_eq!(n(&by, "DestroyPropertyFilter"), 1, "the session lives on: {by}");
    nothing_left_watching(&by);
    // Adopting the session: a private collector, destroyed.
    let (_, by) = measure(&sim, &cold, &["stop", "--name", VM, "--host", H1], 0);
    assert_eq!(n(&by, "CreatePropertyCollector"), 1, "{by}");
    nothing_left_watching(&by);
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
    assert!(n(&by, "CreateFilter") >= 1, "the wait watches: {by}");
    nothing_left_watching(&by);
}

#[test]
fn a_name_lookup_in_a_large_inventory_reads_pages_and_finds_the_vm() {
    // 2,504 VMs: the lookup asks for 1,000 names per answer, so three answers, the last VM in the third.
    let sim = Sim::start_with("vcenter", &["--vms", "2500"]);
    let v = sim.vmha(bin());
    let (_, by) = measure(&sim, &v, &["status", "--name", "bench-vm-02500"], 0);
    assert_eq!(n(&by, "ContinueRetrievePropertiesEx"), 2, "{by}");
    let r = v.run(&["status", "--name", "bench-vm-02500", "--json"]);
    let out: Value = serde_json::from_str(&r.stdout).unwrap();
    assert_eq!(
        (&out["name"], &out["registered"]),
        (&Value::from("bench-vm-02500"), &Value::from(true)),
        "{out}"
    );
}
