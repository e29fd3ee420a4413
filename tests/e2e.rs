//! End-to-end tier: the built binary against the extended vcsim (tests/vcsim), in vCenter and ESX mode.
//! Every scenario checks the simulator's own state afterwards, not only vmha's exit code.

mod support;

use std::time::{Duration, Instant};

use support::run::{Target, vmha};
use support::scenarios::{self, H1, VM, check_step};
use support::sim::{Mode, Sim};

fn target(sim: &Sim) -> Target<'_> {
    Target {
        url: &sim.url,
        user: &sim.user,
        password: &sim.password,
        trust: vec!["--ca-file".into(), sim.ca_file.display().to_string()],
        record: None,
    }
}

/// Starts `vmha ARGS` in the background against the simulator, output captured.
fn spawn_vmha(sim: &Sim, a: &[&str]) -> std::process::Child {
    let t = target(sim);
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"));
    cmd.env("VMHA_URL", t.url)
        .env("VMHA_USER", t.user)
        .env("VMHA_PASSWORD", t.password);
    cmd.args(&t.trust).args(a);
    cmd.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    cmd.spawn().unwrap()
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

fn run_scenario(name: &str) {
    let sc = scenarios::all()
        .into_iter()
        .find(|s| s.name == name)
        .expect("scenario exists");
    let sim = Sim::start(sc.mode);
    (sc.setup)(&sim);
    sim.reset_stats();
    let recording = tempfile::tempdir().unwrap();
    for (i, st) in sc.steps.iter().enumerate() {
        let mut t = target(&sim);
        t.record = Some(recording.path());
        if st.bad_password {
            t.password = "not-the-password";
        }
        let r = vmha(&t, &st.args);
        check_step(sc.name, i, st, &r);
        assert!(
            !r.stdout.contains(&sim.password) && !r.stderr.contains(&sim.password),
            "password leaked"
        );
    }
    (sc.verify)(&sim);
    for f in std::fs::read_dir(recording.path()).unwrap().flatten() {
        let text = std::fs::read_to_string(f.path()).unwrap();
        assert!(
            !text.contains(&sim.password),
            "{}: password in recording {}",
            sc.name,
            f.path().display()
        );
    }
    // VMHA_UPDATE_RECORDINGS=1 refreshes recordings/ from this run (see README).
    if std::env::var_os("VMHA_UPDATE_RECORDINGS").is_some() {
        let dest = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("recordings")
            .join(sc.name);
        let _ = std::fs::remove_dir_all(&dest);
        std::fs::create_dir_all(&dest).unwrap();
        for f in std::fs::read_dir(recording.path()).unwrap().flatten() {
            std::fs::copy(f.path(), dest.join(f.file_name())).unwrap();
        }
    }
    // Every session opened was logged out (a refused login opens none).
    if !sc.steps.iter().any(|s| s.bad_password) {
        let stats = sim.stats();
        assert_eq!(
            stats["by_method"]["Login"], stats["by_method"]["Logout"],
            "{}: sessions left open: {stats}",
            sc.name
        );
    }
}

macro_rules! scenario_tests {
    ($($f:ident => $name:literal),* $(,)?) => { $( #[test] fn $f() { run_scenario($name); } )* };
}

scenario_tests! {
    vc_check => "vc-check",
    esx_check => "esx-check",
    vc_bad_password => "vc-bad-password",
    vc_status => "vc-status",
    esx_status => "esx-status",
    vc_start_unregistered => "vc-start-unregistered",
    vc_start_idempotent => "vc-start-idempotent",
    vc_start_off_on_host => "vc-start-off-on-host",
    vc_start_relocate => "vc-start-relocate",
    vc_start_takeover => "vc-start-takeover",
    vc_start_refused => "vc-start-refused",
    vc_start_question => "vc-start-question",
    vc_start_other_question => "vc-start-other-question",
    vc_start_lock_expires => "vc-start-lock-expires",
    vc_start_lock_held => "vc-start-lock-held",
    vc_start_no_heartbeat => "vc-start-no-heartbeat",
    vc_stop_guest => "vc-stop-guest",
    vc_stop_tools_unavailable => "vc-stop-tools-unavailable",
    vc_stop_ignored => "vc-stop-ignored",
    vc_stop_idempotent => "vc-stop-idempotent",
    vc_stop_unregister => "vc-stop-unregister",
    esx_start_unregistered => "esx-start-unregistered",
    esx_group_move => "esx-group-move",
    esx_stop_keep_registered => "esx-stop-keep-registered",
    vc_monitor => "vc-monitor",
    vc_monitor_off => "vc-monitor-off",
    vc_monitor_heartbeat => "vc-monitor-heartbeat",
    vc_monitor_gray => "vc-monitor-gray",
    vc_monitor_question => "vc-monitor-question",
    vc_monitor_migrated => "vc-monitor-migrated",
    vc_monitor_host_down => "vc-monitor-host-down",
    esx_monitor_and_migrate => "esx-monitor-and-migrate",
}

#[test]
fn every_scenario_has_a_test() {
    let src = include_str!("e2e.rs");
    for sc in scenarios::all() {
        assert!(
            src.contains(&format!("=> \"{}\"", sc.name)),
            "scenario {} is not run by e2e.rs",
            sc.name
        );
    }
}

#[test]
fn tls_trust_rules() {
    let sim = Sim::start(Mode::VCenter);
    let check = args(&["check"]);
    let mut t = target(&sim);
    // Pinned thumbprint, colons or not: connects without any CA.
    t.trust = vec!["--thumbprint".into(), sim.thumbprint.clone()];
    let r = vmha(&t, &check);
    assert_eq!(r.code, 0, "{r:?}");
    t.trust = vec!["--thumbprint".into(), sim.thumbprint.replace(':', "").to_lowercase()];
    assert_eq!(vmha(&t, &check).code, 0);
    // A wrong pin is refused.
    let mut wrong = sim.thumbprint.clone();
    wrong.replace_range(0..2, if wrong.starts_with("00") { "11" } else { "00" });
    t.trust = vec!["--thumbprint".into(), wrong];
    let r = vmha(&t, &check);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("differs from the pinned one"), "{}", r.stderr);
    // Self-signed CA, no pin, no --insecure: refused.
    t.trust = vec![];
    let r = vmha(&t, &check);
    assert_eq!(r.code, 4, "{r:?}");
    assert!(
        r.stderr.contains("--ca-file") && r.stderr.contains("--thumbprint"),
        "{}",
        r.stderr
    );
    // --insecure connects, and warns.
    t.trust = vec!["--insecure".into()];
    let r = vmha(&t, &check);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stderr.contains("TLS verification is OFF"), "{}", r.stderr);
    let stats = sim.stats();
    assert_eq!(stats["by_method"]["Login"], stats["by_method"]["Logout"]);
}

#[test]
fn unreachable_server_exits_4_quickly() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    let url = format!("https://127.0.0.1:{port}/sdk");
    let t = Target {
        url: &url,
        user: "u",
        password: "p",
        trust: vec![],
        record: None,
    };
    let r = vmha(&t, &args(&["check", "--request-timeout", "5"]));
    assert_eq!(r.code, 4, "{r:?}");
    assert!(r.stderr.contains("cannot connect"), "{}", r.stderr);
}

#[test]
fn monitor_watch_catches_guest_shutdown_across_session_expiry() {
    let sim = Sim::start(Mode::VCenter);
    let child = spawn_vmha(&sim, &["monitor", "--watch", "--name", VM, "--host", H1]);
    sim.wait_vm(VM, Duration::from_secs(10), |_| sim.soap_calls("WaitForUpdatesEx") >= 2);
    // The session expires under the watch: it must log in again, not exit.
    sim.expire_sessions();
    sim.set_heartbeat(VM, "yellow");
    sim.wait_vm(VM, Duration::from_secs(10), |_| {
        sim.stats()["by_method"]["Login"].as_u64() >= Some(2)
    });
    let started = Instant::now();
    sim.guest_shutdown(VM);
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(11),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("yellow"), "{stdout}");
    assert!(stdout.contains("VM is poweredOff"), "{stdout}");
    assert!(started.elapsed() < Duration::from_secs(30));
    let stats = sim.stats();
    // The expired session could not be logged out; the new one was.
    assert_eq!(stats["by_method"]["Logout"], 1, "{stats}");
}

#[test]
fn watch_reports_unregistration() {
    let sim = Sim::start(Mode::Esx);
    let vmx = support::sim::vmx_path(scenarios::ESX_VM);
    let child = spawn_vmha(&sim, &["monitor", "--watch", "--vmx", &vmx]);
    sim.wait_vm(scenarios::ESX_VM, Duration::from_secs(10), |_| {
        sim.soap_calls("WaitForUpdatesEx") >= 2
    });
    // Another node's stop: power off and unregister.
    let r = vmha(&target(&sim), &args(&["stop", "--vmx", &vmx]));
    assert_eq!(r.code, 0, "{r:?}");
    let out = child.wait_with_output().unwrap();
    let code = out.status.code();
    // Power-off is seen first (11), or the unregistration (10) if both land in one update.
    assert!(
        matches!(code, Some(10) | Some(11)),
        "{code:?} {}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn bad_settings_exit_2_before_connecting() {
    let t = Target {
        url: "https://127.0.0.1:9/sdk",
        user: "u",
        password: "p",
        trust: vec![],
        record: None,
    };
    for (a, msg) in [
        (args(&["status"]), "which VM?"),
        (args(&["status", "--vmx", "vm1.vmx"]), "[datastore] dir/name.vmx"),
        (
            args(&[
                "status",
                "--name",
                "a",
                "--uuid",
                "4210aaaa-bbbb-cccc-dddd-eeeeffff0000",
            ]),
            "one way only",
        ),
        (args(&["start", "--name", "a", "--answer", "oops"]), "QUESTION=CHOICE"),
        (args(&["check", "--thumbprint", "abc"]), "--thumbprint"),
        (
            args(&["check", "--insecure", "--thumbprint", &"ab".repeat(32)]),
            "cannot be combined",
        ),
    ] {
        let r = vmha(&t, &a);
        assert_eq!(r.code, 2, "{a:?}: {r:?}");
        assert!(r.stderr.contains(msg), "{a:?}: {}", r.stderr);
        assert!(!r.stderr.contains("panicked"), "{}", r.stderr);
    }
}

#[test]
fn sigterm_logs_the_session_out() {
    let sim = Sim::start(Mode::VCenter);
    let child = spawn_vmha(&sim, &["monitor", "--watch", "--name", VM, "--host", H1]);
    sim.wait_vm(VM, Duration::from_secs(10), |_| sim.soap_calls("WaitForUpdatesEx") >= 2);
    let kill = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("interrupted by SIGTERM"), "{stderr}");
    assert_eq!(sim.soap_calls("Logout"), 1, "{}", sim.stats());
}

#[test]
fn password_from_file_or_stdin() {
    let sim = Sim::start(Mode::Esx);
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{}\n", sim.password)).unwrap();
    let base = |extra: &[&str]| {
        let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_vmha"));
        for (k, _) in std::env::vars() {
            if k.starts_with("VMHA_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("VMHA_URL", &sim.url)
            .env("VMHA_USER", &sim.user)
            .arg("--ca-file")
            .arg(&sim.ca_file)
            .args(extra);
        cmd
    };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out = base(&["--password-file", pw.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains("can be read by others") && stderr.contains("chmod 600"),
        "{stderr}"
    );
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let out = base(&["--password-file", pw.to_str().unwrap(), "check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(out.stderr.is_empty(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut child = base(&["--password-stdin", "check"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    use std::io::Write;
    writeln!(child.stdin.take().unwrap(), "{}", sim.password).unwrap();
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("apiType=HostAgent"));
    // No password at all: a usage error naming the three ways.
    let out = base(&["check"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("VMHA_PASSWORD"));
}
