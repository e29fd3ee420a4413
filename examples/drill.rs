//! The seed guide's operation checks, as one drill against the built-in simulated vCenter (tests/vcsim):
//! start on DC0_C0_H0; move the group (stop there, start on DC0_C0_H1); live-migrate; the guest shuts down
//! by itself and `monitor --watch` catches it; DC0_C0_H1 stops responding and start on DC0_C0_H0 takes the VM
//! over. Each step prints a command a person can paste, and the VM must never run on two hosts.
//!
//! Each step runs the vmha binary (built first if needed) and prints its log, then its outcome, its time,
//! the SOAP requests it made and the VM's state as the simulator itself reports it. Needs golang-go and golang-github-vmware-govmomi-dev
//! (`.ci/deps` installs them). Run: `cargo run --example drill`.

#[path = "../tests/support/run.rs"]
pub mod run;
#[path = "../tests/support/sim.rs"]
pub mod sim;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use run::{Run, Vmha};
use serde_json::json;
use sim::{Sim, encode};

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const H2: &str = "DC0_C0_H1";
/// `monitor`'s exit code for a VM that is not powered on (README).
const EXIT_NOT_POWERED_ON: i32 = 11;

struct Drill {
    sim: Sim,
    vmha: Vmha,
    /// What a person pastes before `vmha ...` to repeat a step: URL, user, trust and password file.
    paste: String,
    results: Vec<(String, bool, Duration, u64)>,
    /// Looks at the simulator's VMs after each step, and how many of them saw this VM's files running twice.
    samples: u32,
    twice: u32,
}

/// The vmha binary of this build. `cargo run --example` builds no binaries, so build it (a no-op when it is
/// up to date) with the cargo that built this example, into the same target directory and profile, and
/// together with this example so that the library is built with the same features (not a second time).
fn vmha_binary() -> PathBuf {
    let exe = std::env::current_exe().expect("the drill's own path");
    // <target dir>/<profile dir>/examples/drill
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("the drill runs from <target>/<profile>/examples");
    let target_dir = profile_dir.parent().expect("a target directory");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") | None => "dev",
        Some(p) => p,
    };
    let mut cargo = Command::new(env!("CARGO"));
    // `cargo run` describes this example in the environment (CARGO_MANIFEST_DIR, ...); a build script
    // that watches one of those variables would otherwise rebuild on every run.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy();
        if [
            "CARGO_MANIFEST_",
            "CARGO_PKG_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
            "CARGO_PRIMARY_",
        ]
        .iter()
        .any(|p| k.starts_with(p))
        {
            cargo.env_remove(k.as_ref());
        }
    }
    let built = cargo
        .args([
            "build",
            "--quiet",
            "--bin",
            "vmha",
            "--example",
            "drill",
            "--profile",
            profile,
            "--target-dir",
        ])
        .arg(target_dir)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo to build vmha");
    assert!(built.success(), "building vmha failed");
    profile_dir.join("vmha")
}

/// Shows what vmha printed, indented under the step.
fn show(r: &Run) {
    for line in r.stdout.lines().chain(r.stderr.lines()) {
        println!("    {line}");
    }
}

impl Drill {
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

    fn record(&mut self, title: &str, code: i32, want: i32, started: Instant, check: bool) {
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

    /// Counts the simulator's VMs that run this VM's files: more than one is the failure an HA tool exists to
    /// prevent.
    fn sample_running_copies(&mut self) {
        let vmx = format!("[LocalDS_0] {VM}/{VM}.vmx");
        let vms = self.sim.vms();
        let running = vms
            .as_array()
            .map(|all| {
                all.iter()
                    .filter(|v| v["vmx"] == vmx.as_str() && v["power_state"] == "poweredOn")
                    .count()
            })
            .unwrap_or(0);
        self.samples += 1;
        if running > 1 {
            self.twice += 1;
            println!("  !! {running} running copies of {VM}: {vms}");
        }
    }

    fn step(&mut self, title: &str, args: &[&str], want: i32, check: impl Fn(&serde_json::Value) -> bool) {
        println!("== {title}\n   $ vmha {} {}", self.paste, args.join(" "));
        let _ = std::io::stdout().flush();
        self.sim.reset_stats();
        let started = Instant::now();
        let r = self.vmha.run(args);
        show(&r);
        let ok = check(&self.sim.vm(VM));
        self.sample_running_copies();
        self.record(title, r.code, want, started, ok);
    }
}

fn on(host: &'static str) -> impl Fn(&serde_json::Value) -> bool {
    move |v| v["registered"] == true && v["power_state"] == "poweredOn" && v["host"] == host
}

fn off(v: &serde_json::Value) -> bool {
    v["power_state"] == "poweredOff"
}

fn main() -> std::process::ExitCode {
    let bin = vmha_binary();
    println!("vmha drill: starting the simulated vCenter (tests/vcsim; the first build takes ~20 s)");
    let sim = Sim::start("vcenter");
    println!(
        "simulator at {} (hosts {H1}, {H2}; VM {VM}; TLS verified against its CA)\n",
        sim.ready("url")
    );
    let vmha = sim.vmha(&bin);
    // The password in its own 0600 file, so that every printed command can be pasted as it is.
    let dir = tempfile::tempdir().expect("a temporary directory");
    let pw = dir.path().join("password");
    std::fs::write(&pw, format!("{}\n", sim.ready("password"))).expect("write the password file");
    std::fs::set_permissions(&pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
    let paste = format!(
        "--url {} --user {} --password-file {} --ca-file {}",
        sim.ready("url"),
        sim.ready("user"),
        pw.display(),
        sim.ready("ca_file")
    );
    println!(
        "(each command below can be pasted while the drill runs; `cargo run --example sim` keeps a simulator up)\n"
    );
    let mut d = Drill {
        sim,
        vmha,
        paste,
        results: vec![],
        samples: 0,
        twice: 0,
    };
    let sel = ["--name", VM];
    let with = |cmd: &[&'static str]| -> Vec<&'static str> { cmd.iter().copied().chain(sel).collect() };

    d.step(
        "0. hand the VM to the cluster: deactivate it",
        &with(&["stop", "--host", H1]),
        0,
        off,
    );
    d.step(
        &format!("1. start the group on {H1}"),
        &with(&["start", "--host", H1]),
        0,
        on(H1),
    );
    d.step(
        &format!("2. monitor on {H1}"),
        &with(&["monitor", "--host", H1]),
        0,
        on(H1),
    );
    d.step(
        &format!("3a. move the group: stop on {H1}"),
        &with(&["stop", "--host", H1]),
        0,
        off,
    );
    d.step(
        &format!("3b. move the group: start on {H2}"),
        &with(&["start", "--host", H2]),
        0,
        on(H2),
    );
    d.step(
        &format!("4. live-migrate the group back to {H1}"),
        &with(&["migrate", "--to-host", H1]),
        0,
        on(H1),
    );

    // 5: the guest shuts down by itself while monitor --watch runs.
    println!(
        "== 5. the guest shuts itself down; monitor --watch catches it\n   $ vmha {} monitor --watch --name {VM} --host {H1}",
        d.paste
    );
    d.sim.reset_stats();
    let started = Instant::now();
    let watch = d.vmha.spawn(&["monitor", "--watch", "--name", VM, "--host", H1]);
    d.sim.wait_for_calls("WaitForUpdatesEx", 2, Duration::from_secs(10));
    std::thread::sleep(Duration::from_millis(500));
    println!("    (simulator: guest OS shuts down)");
    let shutdown_at = Instant::now();
    d.sim.guest_shutdown(VM);
    let r = watch.wait();
    let exited_after = shutdown_at.elapsed();
    show(&r);
    println!(
        "    monitor --watch exited {:.3} s after the guest powered off",
        exited_after.as_secs_f64()
    );
    let ok = off(&d.sim.vm(VM));
    d.record(
        "5. guest shutdown caught by monitor --watch",
        r.code,
        EXIT_NOT_POWERED_ON,
        started,
        ok,
    );

    d.step(
        &format!("6. the cluster restarts the group on {H2}"),
        &with(&["start", "--host", H2]),
        0,
        on(H2),
    );

    // 7: H2 stops responding; its lock on the files lasts a few seconds more; the VM comes up on H1.
    println!(
        "   (simulator: {H2} stops responding; its lock on the VM's files expires after 3 s; ESX will ask \"moved or copied?\")"
    );
    let vmx = encode(&format!("[LocalDS_0] {VM}/{VM}.vmx"));
    d.sim
        .post(&format!("/host/{H2}/connection"), json!({"state": "notResponding"}));
    d.sim
        .post(&format!("/lock?vmx={vmx}"), json!({"held": true, "expire_ms": 3000}));
    d.sim.post(&format!("/vmx/question?vmx={vmx}"), json!({"once": true}));
    d.step(
        &format!("7. {H2} fails: start on {H1} takes the VM over"),
        &with(&["start", "--host", H1]),
        0,
        on(H1),
    );
    d.step(
        &format!("8. monitor on {H1}"),
        &with(&["monitor", "--host", H1]),
        0,
        on(H1),
    );

    // 9: vCenter goes away (its restart for a patch): with a local ESXi user configured, every node acts
    // through its own host, and the cluster keeps its VM.
    let host_pw = dir.path().join("host-password");
    std::fs::write(&host_pw, format!("{}\n", d.sim.host_password())).expect("write the host password file");
    std::fs::set_permissions(&host_pw, std::os::unix::fs::PermissionsExt::from_mode(0o600)).expect("chmod 600");
    let addresses: Vec<String> = d.sim.hosts().iter().map(|h| format!("{}={}", h.name, h.url)).collect();
    let host_flags = [
        "--host-user".to_string(),
        d.sim.host_user().to_string(),
        "--host-password-file".to_string(),
        host_pw.display().to_string(),
        "--host-address".to_string(),
        format!("'{}'", addresses.join(";")),
        "--fallback-after".to_string(),
        "3".to_string(),
    ];
    d.paste = format!("{} {}", d.paste, host_flags.join(" "));
    d.vmha
        .flags
        .extend(host_flags.iter().map(|f| f.trim_matches('\'').to_string()));
    println!("   (simulator: vCenter stops answering: connections refused, as during its restart)");
    d.sim.vcenter("down");
    d.step(
        &format!("9a. vCenter is down: monitor on {H1} through {H1} itself"),
        &with(&["monitor", "--host", H1]),
        0,
        on(H1),
    );
    d.step(
        &format!("9b. vCenter is down: stop on {H1} through the host"),
        &with(&["stop", "--host", H1]),
        0,
        off,
    );
    d.step(
        &format!("9c. vCenter is down: start on {H1} through the host"),
        &with(&["start", "--host", H1]),
        0,
        on(H1),
    );
    println!("   (simulator: vCenter is back)");
    d.sim.vcenter("up");
    d.step(
        &format!("9d. vCenter is back: monitor on {H1} through vCenter"),
        &with(&["monitor", "--host", H1]),
        0,
        on(H1),
    );

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
    println!(
        "the VM's files ran on two hosts in {} of {} samples (one after each step)",
        d.twice, d.samples
    );
    failed += d.twice as usize;
    if failed == 0 {
        println!("all {} steps passed", d.results.len());
        std::process::ExitCode::SUCCESS
    } else {
        println!("{failed} step(s) failed");
        std::process::ExitCode::FAILURE
    }
}
