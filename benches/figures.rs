//! The figures quoted in the issue notes: wall time and HTTP request count of each command against the
//! extended vcsim, and how fast `monitor --watch` exits after a power-off.
//! Run: `cargo bench --bench figures` (needs the simulator's Debian packages, as the tests do).

#[path = "../tests/support/run.rs"]
pub mod run;
#[path = "../tests/support/sim.rs"]
pub mod sim;

use std::path::Path;
use std::time::{Duration, Instant};

use sim::Sim;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const RUNS: usize = 7;

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

/// Runs vmha to the end and returns its wall time; its output is shown if it exits other than `want`.
fn vmha(sim: &Sim, args: &[&str], want: i32) -> Duration {
    let started = Instant::now();
    let r = sim.vmha(bin()).run(args);
    let took = started.elapsed();
    assert_eq!(r.code, want, "vmha {}:\n{}{}", args.join(" "), r.stdout, r.stderr);
    took
}

fn report(what: &str, mut times: Vec<Duration>, requests: &[u64]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "{what:<44} median {:>7.1} ms  min {:>7.1} ms  max {:>7.1} ms  HTTP requests {:?}",
        ms(times[times.len() / 2]),
        ms(times[0]),
        ms(times[times.len() - 1]),
        requests.iter().copied().collect::<std::collections::BTreeSet<_>>()
    );
}

/// Runs `cmd` RUNS times, each after `prepare`, and reports its time and request count.
fn measure(sim: &Sim, what: &str, args: &[&str], want: i32, prepare: impl Fn(&Sim)) {
    let (mut times, mut reqs) = (vec![], vec![]);
    for _ in 0..RUNS {
        prepare(sim);
        sim.reset_stats();
        times.push(vmha(sim, args, want));
        reqs.push(sim.stats()["total"].as_u64().unwrap_or(0));
    }
    report(what, times, &reqs);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sim = Sim::start("vcenter");
    println!("vmha figures against the extended vcsim (vCenter mode), {RUNS} runs each; the simulator's guest");
    println!("turns its heartbeat green 300 ms after power-on and shuts down 200 ms after ShutdownGuest.\n");
    let vm = ["--name", VM];
    let with = |a: &[&'static str]| -> Vec<&'static str> { a.iter().copied().chain(vm).collect() };
    measure(&sim, "check", &["check"], 0, |_| {});
    measure(&sim, "status", &with(&["status"]), 0, |_| {});
    measure(
        &sim,
        "start (registered, off, on this host)",
        &with(&["start", "--host", H1]),
        0,
        |s| {
            if s.vm(VM)["power_state"] == "poweredOn" {
                s.guest_shutdown(VM);
            }
        },
    );
    measure(
        &sim,
        "start (already running: idempotent)",
        &with(&["start", "--host", H1]),
        0,
        |_| {},
    );
    measure(
        &sim,
        "monitor (once, healthy)",
        &with(&["monitor", "--host", H1]),
        0,
        |_| {},
    );
    measure(
        &sim,
        "stop (guest shutdown honoured)",
        &with(&["stop", "--host", H1]),
        0,
        |s| {
            if s.vm(VM)["power_state"] != "poweredOn" {
                vmha(s, &with(&["start", "--host", H1]), 0);
            }
        },
    );

    // monitor --watch: time from the power-off to the process exit.
    let mut lat = vec![];
    for _ in 0..RUNS {
        if sim.vm(VM)["power_state"] != "poweredOn" {
            vmha(&sim, &with(&["start", "--host", H1]), 0);
        }
        sim.reset_stats();
        let watch = sim.vmha(bin()).spawn(&with(&["monitor", "--watch", "--host", H1]));
        sim.wait_for_calls("WaitForUpdatesEx", 2, Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(300));
        let at = Instant::now();
        sim.guest_shutdown(VM);
        let r = watch.wait();
        lat.push(at.elapsed());
        assert_eq!(r.code, 11, "{}{}", r.stdout, r.stderr);
    }
    report("monitor --watch: exit after guest power-off", lat, &[]);
}
