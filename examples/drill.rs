//! The seed guide's operation checks, as one drill against the built-in simulated vCenter (tests/vcsim):
//! start on H1; move the group (stop on H1, start on H2); live-migrate; the guest shuts down by itself and
//! `monitor --watch` catches it; H2 stops responding and start on H1 takes the VM over.
//!
//! Each step prints vmha's own log, then its outcome, its time, the SOAP requests it made and the VM's
//! state as the simulator itself reports it. Needs golang-go and golang-github-vmware-govmomi-dev
//! (`.ci/deps` installs them). Run: `cargo run --example drill`.

#[path = "../tests/support/sim.rs"]
mod sim;

use std::io::Write;
use std::time::{Duration, Instant};

use clap::Parser;
use sim::{Mode, Sim};
use vmha::error::ExitCode;
use vmha::log::StepLog;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const H2: &str = "DC0_C0_H1";

struct Drill {
    sim: Sim,
    base: Vec<String>,
    log: &'static StepLog,
    results: Vec<(String, bool, Duration, u64)>,
}

/// Runs one vmha command in-process, as the cluster would run the binary; returns its exit code.
async fn run_vmha(base: &[String], args: &[&str], log: &'static StepLog) -> u8 {
    let mut argv = base.to_vec();
    argv.extend(args.iter().map(|s| s.to_string()));
    let cli = vmha::cli::Cli::try_parse_from(&argv).expect("drill arguments parse");
    let command = cli.command.name();
    let result = vmha::app::execute(cli, log).await;
    if let Err(e) = &result {
        println!("    vmha: error: {e}");
    }
    vmha::app::report(command, false, &result).code()
}

impl Drill {
    async fn vmha(&self, args: &[&str]) -> u8 {
        run_vmha(&self.base, args, self.log).await
    }

    fn vm_line(&self) -> String {
        let v = self.sim.vm(VM);
        format!(
            "{} {} on {} (heartbeat {})",
            if v["registered"] == true {
                "registered,"
            } else {
                "NOT registered,"
            },
            v["power_state"].as_str().unwrap_or("-"),
            v["host"].as_str().unwrap_or("-"),
            v["heartbeat"].as_str().unwrap_or("-")
        )
    }

    fn record(&mut self, title: &str, code: u8, want: u8, started: Instant, check: bool) {
        let elapsed = started.elapsed();
        let requests = self.sim.stats()["total"].as_u64().unwrap_or(0);
        let ok = code == want && check;
        println!(
            "  -> {}: exit {code} (expected {want}), {:.2} s, {requests} SOAP requests; simulator: {}\n",
            if ok { "OK" } else { "FAILED" },
            elapsed.as_secs_f64(),
            self.vm_line()
        );
        self.results.push((title.to_string(), ok, elapsed, requests));
    }

    async fn step(&mut self, title: &str, args: &[&str], want: u8, check: impl Fn(&serde_json::Value) -> bool) {
        println!("== {title}\n   $ vmha {}", args.join(" "));
        let _ = std::io::stdout().flush();
        self.sim.reset_stats();
        let started = Instant::now();
        let code = self.vmha(args).await;
        let ok = check(&self.sim.vm(VM));
        self.record(title, code, want, started, ok);
    }
}

fn on(host: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v["registered"] == true && v["power_state"] == "poweredOn" && v["host"] == host
}

fn off(v: &serde_json::Value) -> bool {
    v["power_state"] == "poweredOff"
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> std::process::ExitCode {
    println!("vmha drill: starting the simulated vCenter (tests/vcsim; the first build takes ~20 s)");
    let sim = tokio::task::spawn_blocking(|| Sim::start(Mode::VCenter)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{}\n", sim.password)).unwrap();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    println!(
        "simulator at {} (hosts {H1}, {H2}; VM {VM}; TLS verified against its CA)\n",
        sim.url
    );
    let base = [
        "vmha",
        "--url",
        &sim.url,
        "--user",
        &sim.user,
        "--password-file",
        pw.to_str().unwrap(),
        "--ca-file",
    ]
    .iter()
    .map(|s| s.to_string())
    .chain([sim.ca_file.display().to_string()])
    .collect();
    let offset = time::UtcOffset::UTC;
    let log: &'static StepLog = Box::leak(Box::new(StepLog::new(offset, VM)));
    let mut d = Drill {
        sim,
        base,
        log,
        results: vec![],
    };
    let sel = ["--name", VM];
    let with = |cmd: &[&'static str]| -> Vec<&'static str> { cmd.iter().copied().chain(sel).collect() };

    d.step(
        "0. hand the VM to the cluster: deactivate it",
        &with(&["stop", "--host", H1]),
        0,
        off,
    )
    .await;
    d.step("1. start the group on H1", &with(&["start", "--host", H1]), 0, on(H1))
        .await;
    d.step("2. monitor on H1", &with(&["monitor", "--host", H1]), 0, on(H1))
        .await;
    d.step("3a. move the group: stop on H1", &with(&["stop", "--host", H1]), 0, off)
        .await;
    d.step(
        "3b. move the group: start on H2",
        &with(&["start", "--host", H2]),
        0,
        on(H2),
    )
    .await;
    d.step(
        "4. live-migrate the group back to H1",
        &with(&["migrate", "--to-host", H1]),
        0,
        on(H1),
    )
    .await;

    // 5: the guest shuts down by itself while monitor --watch runs.
    println!(
        "== 5. the guest shuts itself down; monitor --watch catches it\n   $ vmha monitor --watch --name {VM} --host {H1}"
    );
    d.sim.reset_stats();
    let started = Instant::now();
    let base = d.base.clone();
    // Its own thread and runtime: the command runs while this one drives the simulator.
    let watch = std::thread::spawn(move || {
        let log: &'static StepLog = Box::leak(Box::new(StepLog::new(offset, VM)));
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build();
        rt.expect("a runtime for the watch").block_on(run_vmha(
            &base,
            &["monitor", "--watch", "--name", VM, "--host", H1],
            log,
        ))
    });
    let shutdown_at = {
        let sim = &d.sim;
        sim.wait_vm(VM, Duration::from_secs(10), |_| sim.soap_calls("WaitForUpdatesEx") >= 2);
        tokio::time::sleep(Duration::from_millis(500)).await;
        println!("    (simulator: guest OS shuts down)");
        let at = Instant::now();
        sim.guest_shutdown(VM);
        at
    };
    let code = watch.join().expect("the watch thread");
    println!(
        "    monitor --watch exited {:.3} s after the guest powered off",
        shutdown_at.elapsed().as_secs_f64()
    );
    let ok = off(&d.sim.vm(VM));
    d.record(
        "5. guest shutdown caught by monitor --watch",
        code,
        ExitCode::NotPoweredOn.code(),
        started,
        ok,
    );

    d.step(
        "6. the cluster restarts the group on H2",
        &with(&["start", "--host", H2]),
        0,
        on(H2),
    )
    .await;

    // 7: H2 stops responding; its lock on the files lasts a few seconds more; the VM comes up on H1.
    println!(
        "   (simulator: {H2} stops responding; its lock on the VM's files expires after 3 s; ESX will ask \"moved or copied?\")"
    );
    d.sim.set_host_connection(H2, "notResponding");
    let vmx = sim::vmx_path(VM);
    d.sim.lock_vmx(&vmx, Some(3000));
    d.sim.arm_question_vmx(&vmx);
    d.step(
        "7. H2 fails: start on H1 takes the VM over",
        &with(&["start", "--host", H1]),
        0,
        on(H1),
    )
    .await;
    d.step("8. monitor on H1", &with(&["monitor", "--host", H1]), 0, on(H1))
        .await;

    println!("== summary");
    let mut failed = 0;
    for (title, ok, t, n) in &d.results {
        println!(
            "  {:<6} {:>7.2} s {:>4} req  {title}",
            if *ok { "OK" } else { "FAILED" },
            t.as_secs_f64(),
            n
        );
        failed += usize::from(!ok);
    }
    if failed == 0 {
        println!("all {} steps passed", d.results.len());
        std::process::ExitCode::SUCCESS
    } else {
        println!("{failed} step(s) failed");
        std::process::ExitCode::FAILURE
    }
}
