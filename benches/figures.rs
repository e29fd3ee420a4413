//! The figures quoted in the issue notes: wall time and HTTP request count of each command against the
//! extended vcsim, and how fast `monitor --watch` exits after a power-off.
//! Run: `cargo bench --bench figures` (needs the simulator's Debian packages, as the tests do).

#[path = "../tests/support/sim.rs"]
mod sim;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use sim::{Mode, Sim};

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const RUNS: usize = 7;

fn vmha(sim: &Sim, args: &[&str]) -> (i32, Duration) {
    let started = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_vmha"))
        .env("VMHA_URL", &sim.url)
        .env("VMHA_USER", &sim.user)
        .env("VMHA_PASSWORD", &sim.password)
        .env("VMHA_CA_FILE", &sim.ca_file)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("run vmha");
    (out.code().unwrap_or(-1), started.elapsed())
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
        let (code, t) = vmha(sim, args);
        assert_eq!(code, want, "{what}");
        times.push(t);
        reqs.push(sim.stats()["total"].as_u64().unwrap_or(0));
    }
    report(what, times, &reqs);
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sim = Sim::start(Mode::VCenter);
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
                assert_eq!(vmha(s, &with(&["start", "--host", H1])).0, 0);
            }
        },
    );

    // monitor --watch: time from the power-off to the process exit.
    let mut lat = vec![];
    for _ in 0..RUNS {
        if sim.vm(VM)["power_state"] != "poweredOn" {
            assert_eq!(vmha(&sim, &with(&["start", "--host", H1])).0, 0);
        }
        sim.reset_stats();
        let mut child = Command::new(env!("CARGO_BIN_EXE_vmha"))
            .env("VMHA_URL", &sim.url)
            .env("VMHA_USER", &sim.user)
            .env("VMHA_PASSWORD", &sim.password)
            .env("VMHA_CA_FILE", &sim.ca_file)
            .args(with(&["monitor", "--watch", "--host", H1]))
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        sim.wait_vm(VM, Duration::from_secs(10), |_| sim.soap_calls("WaitForUpdatesEx") >= 2);
        std::thread::sleep(Duration::from_millis(300));
        let at = Instant::now();
        sim.guest_shutdown(VM);
        let status = child.wait().unwrap();
        lat.push(at.elapsed());
        assert_eq!(status.code(), Some(11));
    }
    report("monitor --watch: exit after guest power-off", lat, &[]);
}
