//! The fence agent (`vmha fence`, installed as `fence_vmha`) end to end against the extended vcsim: every
//! action in fence-agents' command-line form and in the stdin form Pacemaker's fencer uses, checked
//! against the simulator's own state; an unreachable and a frozen server failing within the bound; and
//! `stonith_admin --metadata` accepting the metadata (root, under the Pacemaker lock).

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use sim::Sim;

const VM: &str = "DC0_H0_VM0";
const VM_UUID: &str = "265104de-1472-547c-b873-6dc7883fb6cb";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

#[derive(Debug)]
struct Out {
    code: i32,
    stdout: String,
    stderr: String,
    took: Duration,
}

/// Runs `vmha fence ARGS` with `stdin`, no VMHA_* variable inherited.
fn fence(args: &[&str], stdin: &str) -> Out {
    let mut cmd = Command::new(bin());
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("VMHA_") {
            cmd.env_remove(k);
        }
    }
    let started = Instant::now();
    let mut child = cmd
        .arg("fence")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run vmha fence");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(stdin.as_bytes())
        .expect("write stdin");
    let out = child.wait_with_output().expect("wait for vmha fence");
    Out {
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        took: started.elapsed(),
    }
}

/// The simulator's address as fence-agents name it: `-a IP -u PORT`.
fn ip_port(sim: &Sim) -> (String, String) {
    let url = sim.ready("url");
    let hostport = url.trim_start_matches("https://").trim_end_matches("/sdk");
    let (ip, port) = hostport.rsplit_once(':').expect("host:port");
    (ip.to_string(), port.to_string())
}

/// Command-line options for the simulator: address, user, password script, CA, a private session dir.
struct Device {
    args: Vec<String>,
    stdin_keys: String,
    _dir: tempfile::TempDir,
}

fn device(sim: &Sim) -> Device {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("pw.sh");
    std::fs::write(&script, format!("#!/bin/sh\necho '{}'\n", sim.ready("password"))).unwrap();
    let sessions = dir.path().join("sessions");
    std::fs::create_dir(&sessions).unwrap();
    set_mode(&sessions, 0o700);
    set_mode(&script, 0o700);
    let (ip, port) = ip_port(sim);
    let args = vec![
        "-a".into(),
        ip.clone(),
        "-u".into(),
        port.clone(),
        "-l".into(),
        sim.ready("user").into(),
        "-S".into(),
        script.display().to_string(),
        "--ca-file".into(),
        sim.ready("ca_file").into(),
        "--session-dir".into(),
        sessions.display().to_string(),
    ];
    // As pacemaker-fenced writes them, with fence-agents' older names.
    let stdin_keys = format!(
        "ipaddr={ip}\nipport={port}\nlogin={}\npasswd={}\nca_file={}\nsession_dir={}\nnodename=node1\n",
        sim.ready("user"),
        sim.ready("password"),
        sim.ready("ca_file"),
        sessions.display()
    );
    Device {
        args,
        stdin_keys,
        _dir: dir,
    }
}

fn set_mode(p: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap();
}

impl Device {
    fn run(&self, extra: &[&str]) -> Out {
        let mut a: Vec<&str> = self.args.iter().map(String::as_str).collect();
        a.extend_from_slice(extra);
        fence(&a, "")
    }

    fn stdin(&self, lines: &str) -> Out {
        fence(&[], &format!("{}{lines}", self.stdin_keys))
    }
}

fn power(sim: &Sim, vm: &str) -> String {
    sim.vm(vm)["power_state"].as_str().unwrap_or_default().to_string()
}

fn no_secret(sim: &Sim, o: &Out) {
    let pw = sim.ready("password");
    assert!(
        !o.stdout.contains(pw) && !o.stderr.contains(pw),
        "password leaked: {o:?}"
    );
}

#[test]
fn every_action_on_the_command_line() {
    let sim = Sim::start("vcenter");
    let d = device(&sim);
    sim.reset_stats();

    let o = d.run(&["-o", "status", "-n", VM]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Status: ON\n"), "{o:?}");
    no_secret(&sim, &o);

    let o = d.run(&["-o", "off", "-n", VM]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Powered OFF\n"), "{o:?}");
    assert_eq!(power(&sim, VM), "poweredOff");
    assert_eq!(sim.soap_calls("ShutdownGuest"), 0, "off must be a hard power-off");

    let offs = sim.soap_calls("PowerOffVM_Task");
    let o = d.run(&["--action=off", "--plug", VM]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Already OFF\n"), "{o:?}");
    assert_eq!(
        sim.soap_calls("PowerOffVM_Task"),
        offs,
        "off on an off VM changes nothing"
    );

    let o = d.run(&["-o", "status", "-n", VM]);
    assert_eq!((o.code, o.stdout.as_str()), (2, "Status: OFF\n"), "{o:?}");

    let o = d.run(&["-o", "on", "-n", VM]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Powered ON\n"), "{o:?}");
    assert_eq!(power(&sim, VM), "poweredOn");

    // reboot of a running VM: off, then on; both seen by the simulator.
    let (offs, ons) = (sim.soap_calls("PowerOffVM_Task"), sim.soap_calls("PowerOnVM_Task"));
    let o = d.run(&["-o", "reboot", "-n", VM]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Rebooted\n"), "{o:?}");
    assert_eq!(sim.soap_calls("PowerOffVM_Task"), offs + 1);
    assert_eq!(sim.soap_calls("PowerOnVM_Task"), ons + 1);
    assert_eq!(power(&sim, VM), "poweredOn");

    // reboot of an off VM only powers it on (fence-agents' semantics).
    sim.guest_shutdown("DC0_H0_VM1");
    let offs = sim.soap_calls("PowerOffVM_Task");
    let o = d.run(&["-o", "reboot", "-n", "DC0_H0_VM1"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Rebooted\n"), "{o:?}");
    assert_eq!(sim.soap_calls("PowerOffVM_Task"), offs);
    assert_eq!(power(&sim, "DC0_H0_VM1"), "poweredOn");

    // The plug by BIOS UUID (any accepted form) and by instance UUID.
    let o = d.run(&["-o", "status", "-n", &VM_UUID.to_uppercase()]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Status: ON\n"), "{o:?}");
    let instance = sim.vm("DC0_C0_RP0_VM1")["instance_uuid"].as_str().unwrap().to_string();
    let o = d.run(&["-o", "off", "-n", &instance]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Powered OFF\n"), "{o:?}");
    assert_eq!(power(&sim, "DC0_C0_RP0_VM1"), "poweredOff");

    // list and list-status: plug,alias[,state] with the BIOS UUID as alias; no plug needed.
    let o = d.run(&["-o", "list"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.lines().any(|l| l == format!("{VM},{VM_UUID}")), "{}", o.stdout);
    assert_eq!(o.stdout.lines().count(), 4, "{}", o.stdout);
    let o = d.run(&["-o", "list-status", "-C", ";"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(
        o.stdout.lines().any(|l| l == format!("{VM};{VM_UUID};ON")),
        "{}",
        o.stdout
    );
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("DC0_C0_RP0_VM1;") && l.ends_with(";OFF")),
        "{}",
        o.stdout
    );

    let o = d.run(&["-o", "monitor"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, ""), "{o:?}");

    // A plug nobody has: fence-agents' "unable to obtain plug status", exit 1.
    let o = d.run(&["-o", "off", "-n", "no-such-vm"]);
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr
            .contains("Failed: Unable to obtain correct plug status or plug is not available")
            && o.stderr.contains("unable to find plug 'no-such-vm'"),
        "{}",
        o.stderr
    );

    // Every call above shared one session (the cache), and it is kept for the next.
    let stats = sim.stats();
    assert_eq!(stats["by_method"]["Login"], 1, "{stats}");
    assert_eq!(stats["by_method"]["Logout"], Value::Null, "{stats}");

    // Warm (cached session, plug remembered): status is one request, off of an off VM too.
    sim.reset_stats();
    let o = d.run(&["-o", "status", "-n", VM]);
    assert_eq!(o.code, 0, "{o:?}");
    assert_eq!(sim.stats()["total"], 1, "{}", sim.stats());
    sim.reset_stats();
    let o = d.run(&["-o", "off", "-n", "DC0_C0_RP0_VM1"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Already OFF\n"), "{o:?}");
    println!("warm off of an off VM: {}", sim.stats());
}

#[test]
fn a_vm_whose_host_is_not_responding_cannot_be_fenced() {
    let sim = Sim::start("vcenter");
    let d = device(&sim);
    sim.post("/host/DC0_H0/connection", json!({"state": "notResponding"}));
    for action in ["status", "off", "reboot"] {
        let o = d.run(&["-o", action, "-n", VM]);
        assert_eq!(o.code, 1, "{action}: {o:?}");
        assert!(
            // vCenter marks the VM disconnected with its host (the simulator does too).
            o.stderr.contains("the power state of DC0_H0_VM0 cannot be seen"),
            "{action}: {}",
            o.stderr
        );
        assert!(!o.stdout.contains("Success"), "{action}: {o:?}");
    }
    assert_eq!(sim.soap_calls("PowerOffVM_Task"), 0);
}

#[test]
fn stdin_form_as_pacemaker_sends_it() {
    let sim = Sim::start("vcenter");
    let d = device(&sim);
    let o = d.stdin(&format!("action=off\nport={VM}\nfoo=bar\n"));
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Powered OFF\n"), "{o:?}");
    assert!(o.stderr.contains("ignoring unknown option 'foo'"), "{}", o.stderr);
    assert!(!o.stderr.contains("nodename"), "{}", o.stderr);
    assert_eq!(power(&sim, VM), "poweredOff");
    no_secret(&sim, &o);

    let o = d.stdin(&format!("action=status\nplug={VM}\n"));
    assert_eq!((o.code, o.stdout.as_str()), (2, "Status: OFF\n"), "{o:?}");
    let o = d.stdin(&format!("action=reboot\nplug={VM}\npower_wait=1\n"));
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Rebooted\n"), "{o:?}");
    assert_eq!(power(&sim, VM), "poweredOn");
    let o = d.stdin("action=list-status\n");
    assert!(o.stdout.lines().any(|l| l == format!("{VM},{VM_UUID},ON")), "{o:?}");
    let o = d.stdin("action=monitor\n");
    assert_eq!(o.code, 0, "{o:?}");

    // A wrong password is refused, whatever the cache holds.
    let o = fence(
        &[],
        &d.stdin_keys
            .replace(sim.ready("password"), "wrong")
            .replace("nodename", "action=status\nplug=x\nnodename"),
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("Unable to connect/login to fencing device"),
        "{}",
        o.stderr
    );
}

#[test]
fn metadata_validate_all_and_usage() {
    let o = fence(&["-o", "metadata"], "");
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stdout.contains("<resource-agent name=\"fence_vmha\""), "{}", o.stdout);
    let o2 = fence(&[], "action=metadata\n");
    assert_eq!(o2.stdout, o.stdout);
    let xmllint = Command::new("xmllint")
        .args(["--noout", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn();
    if let Ok(mut x) = xmllint {
        x.stdin.take().unwrap().write_all(o.stdout.as_bytes()).unwrap();
        let r = x.wait_with_output().unwrap();
        assert!(r.status.success(), "xmllint: {}", String::from_utf8_lossy(&r.stderr));
    }

    let o = fence(&[], "action=validate-all\nip=vc\nusername=u\npassword=p\nplug=vm\n");
    assert_eq!(o.code, 0, "{o:?}");
    let o = fence(&[], "action=validate-all\nip=vc\n");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("login name") && o.stderr.contains("password"),
        "{}",
        o.stderr
    );
    let o = fence(
        &[
            "-o",
            "validate-all",
            "-a",
            "vc",
            "-l",
            "u",
            "-p",
            "p",
            "-n",
            "vm",
            "--ca-file",
            "/nonexistent",
        ],
        "",
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("visible to every user"), "{}", o.stderr);

    let o = fence(&["-h"], "");
    assert_eq!(o.code, 0);
    assert!(
        o.stdout.contains("-o, --action=[action]") && o.stdout.contains("Exit codes"),
        "{}",
        o.stdout
    );
    let o = fence(&["--no-such-option"], "");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("--no-such-option not recognized"), "{}", o.stderr);
}

#[test]
fn esx_direct() {
    let sim = Sim::start("esx");
    let d = device(&sim);
    let o = d.run(&["-o", "off", "-n", "ha-host_VM0"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Powered OFF\n"), "{o:?}");
    assert_eq!(power(&sim, "ha-host_VM0"), "poweredOff");
    let o = d.run(&["-o", "on", "-n", "b03b24de-847f-5b0d-85f4-221b300038a8"]);
    assert_eq!((o.code, o.stdout.as_str()), (0, "Success: Powered ON\n"), "{o:?}");
    assert_eq!(power(&sim, "ha-host_VM0"), "poweredOn");
}

/// A port nobody listens on, and one that accepts and never answers: both fail (exit 1) within the bound.
#[test]
fn unreachable_server_fails_within_the_bound() {
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = closed.local_addr().unwrap().port().to_string();
    drop(closed);
    let o = fence(
        &[
            "-o",
            "status",
            "-a",
            "127.0.0.1",
            "-u",
            &port,
            "-l",
            "u",
            "-S",
            "echo p",
            "-n",
            "vm",
        ],
        "",
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(
        o.stderr.contains("Unable to connect/login to fencing device"),
        "{}",
        o.stderr
    );
    assert!(o.took < Duration::from_secs(5), "{o:?}");

    // Accepts the TCP connection, never says a word (a hung load balancer).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port().to_string();
    let o = fence(
        &[
            "-o",
            "off",
            "-a",
            "127.0.0.1",
            "-u",
            &port,
            "-l",
            "u",
            "-S",
            "echo p",
            "-n",
            "vm",
            "--login-timeout",
            "2",
        ],
        "",
    );
    assert_eq!(o.code, 1, "{o:?}");
    assert!(o.stderr.contains("timed out"), "{}", o.stderr);
    // off's bound: 3 requests of 2 s + power_timeout 20 s; a silent server fails on the first request.
    assert!(o.took < Duration::from_secs(2 * 3 + 1), "{o:?}");
    drop(silent);
}

fn signal(sim: &Sim, sig: &str) {
    let st = Command::new("kill").args([sig, sim.ready("pid")]).status().unwrap();
    assert!(st.success());
}

/// The simulator frozen (SIGSTOP) before and in the middle of a fence: exit 1 within the bound, never success.
#[test]
fn frozen_server_fails_within_the_bound() {
    let sim = Sim::start("vcenter");
    let d = device(&sim);
    // Warm: the session is cached, so the frozen call is the first real request.
    assert_eq!(d.run(&["-o", "status", "-n", VM]).code, 0);
    signal(&sim, "-STOP");
    let o = d.run(&["-o", "status", "-n", VM, "--login-timeout", "2"]);
    // status: 3 requests of 2 s at most.
    let status_took = o.took;
    let o2 = d.run(&["-o", "off", "-n", VM, "--login-timeout", "2", "--power-timeout", "4"]);
    signal(&sim, "-CONT");
    assert_eq!(o.code, 1, "{o:?}");
    assert!(status_took < Duration::from_secs(6 + 1), "{o:?}");
    assert_eq!(o2.code, 1, "{o2:?}");
    assert!(!o2.stdout.contains("Success"), "{o2:?}");
    // off: 3 × 2 s + 4 s.
    assert!(o2.took < Duration::from_secs(10 + 1), "{o2:?}");
    println!(
        "frozen server: status failed after {status_took:?}, off after {:?}",
        o2.took
    );

    // Frozen in the middle: the power-off reached the server, whose answer never comes.
    sim.post("/settings", json!({"task_delay_ms": 2000}));
    let d2 = device(&sim);
    let pid = sim.ready("pid").to_string();
    let mut child = Command::new(bin())
        .arg("fence")
        .args(d2.args.iter().map(String::as_str))
        .args(["-o", "off", "-n", VM, "--login-timeout", "2", "--power-timeout", "4"])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let started = Instant::now();
    let deadline = started + Duration::from_secs(10);
    while sim.soap_calls("PowerOffVM_Task") == 0 && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(5));
    }
    Command::new("kill").args(["-STOP", &pid]).status().unwrap();
    let out = loop {
        if child.try_wait().unwrap().is_some() {
            break child.wait_with_output().unwrap();
        }
        if started.elapsed() > Duration::from_secs(30) {
            let _ = child.kill();
            break child.wait_with_output().unwrap();
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let took = started.elapsed();
    Command::new("kill").args(["-CONT", &pid]).status().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    // The task runs 2 s, so the freeze comes before it ends: the agent cannot confirm, and fails in time.
    assert_eq!(
        out.status.code(),
        Some(1),
        "{stdout} {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!stdout.contains("Success"), "{stdout}");
    assert!(took < Duration::from_secs(10 + 2), "{took:?}");
}

/// `stonith_admin --metadata --agent fence_vmha` (Pacemaker's fencer library) accepts the metadata. Needs
/// root to install the shim as /usr/sbin/fence_vmha; it is installed only while the Pacemaker lock is held.
#[test]
fn stonith_admin_accepts_the_metadata() {
    if unsafe { libc::geteuid() } != 0 {
        println!("stonith_admin_accepts_the_metadata: SKIPPED (needs root to install /usr/sbin/fence_vmha)");
        return;
    }
    if Command::new("stonith_admin").arg("--version").output().is_err() {
        println!("stonith_admin_accepts_the_metadata: SKIPPED (no stonith_admin: install pacemaker-cli-utils)");
        return;
    }
    let shim = PathBuf::from("/usr/sbin/fence_vmha");
    let script = format!(
        "set -e; [ ! -e {s} ] || {{ echo '{s} exists: not overwriting it' >&2; exit 3; }}; \
         printf '#!/bin/sh\\nexec %s fence \"$@\"\\n' '{b}' > {s}; chmod 755 {s}; \
         rc=0; stonith_admin --metadata --agent fence_vmha > {out} || rc=$?; \
         stonith_admin --list-installed | grep -qx 'fence_vmha' || rc=9; rm -f {s}; exit $rc",
        s = shim.display(),
        b = bin().display(),
        out = "/tmp/vmha-fence-metadata.xml"
    );
    // Other cluster tests may hold the lock for minutes; wait for it, but not forever. A run that itself holds
    // it (`flock /tmp/vmha-pacemaker.lock cargo test --test fence`) would wait on itself: busy -> SKIPPED.
    let st = Command::new("flock")
        .args(["-w", "300", "-E", "75", "/tmp/vmha-pacemaker.lock", "sh", "-c", &script])
        .status()
        .expect("flock");
    if st.code() == Some(75) {
        println!(
            "stonith_admin_accepts_the_metadata: SKIPPED (/tmp/vmha-pacemaker.lock busy for 300 s: another cluster test, or a flock around this run)"
        );
        return;
    }
    let xml = std::fs::read_to_string("/tmp/vmha-fence-metadata.xml").unwrap_or_default();
    let _ = std::fs::remove_file("/tmp/vmha-fence-metadata.xml");
    assert!(!shim.exists(), "the shim was left installed");
    assert!(st.success(), "stonith_admin --metadata failed ({st}): {xml}");
    assert!(xml.contains("<resource-agent name=\"fence_vmha\""), "{xml}");
    // Pacemaker adds its own pcmk_* parameters to an agent's metadata it accepted.
    assert!(xml.contains("plug") && xml.contains("<actions>"), "{xml}");
}

/// An off VM with a power-on in flight is not "already off": the fence waits for the power-on to end and
/// powers off what it left, so the fenced node cannot come back after the fence reported it off. A
/// power-on held up by a question is cancelled instead.
#[test]
fn off_is_not_fooled_by_a_power_on_in_flight() {
    let sim = Sim::start("vcenter");
    let d = device(&sim);
    assert_eq!(d.run(&["-o", "off", "-n", VM]).code, 0);
    // Someone else powers the VM on; every task takes 3 s, so the off below finds it still running.
    sim.post("/settings", json!({"task_delay_ms": 3000}));
    let on_args = d.args.clone();
    let other = std::thread::spawn(move || {
        let mut a: Vec<&str> = on_args.iter().map(String::as_str).collect();
        a.extend_from_slice(&["-o", "on", "-n", VM]);
        fence(&a, "")
    });
    sim.wait_for_calls("PowerOnVM_Task", 1, Duration::from_secs(20));
    assert_eq!(
        power(&sim, VM),
        "poweredOff",
        "the power-on ended too early for this test"
    );
    let o = d.run(&["-o", "off", "-n", VM, "-v"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("a power-on is in flight"), "{o:?}");
    assert!(o.stderr.contains("PowerOffVM_Task"), "{o:?}");
    assert_eq!(power(&sim, VM), "poweredOff");
    let _ = other.join();

    // A power-on waiting on a question nobody may answer: off cancels it.
    sim.post("/settings", json!({"task_delay_ms": 50}));
    sim.arm_disk_full_question(VM);
    assert_eq!(d.run(&["-o", "on", "-n", VM]).code, 1, "on must fail on that question");
    assert!(!sim.vm(VM)["question"].is_null(), "{}", sim.vm(VM));
    let o = d.run(&["-o", "off", "-n", VM, "-v"]);
    assert_eq!(o.code, 0, "{o:?}");
    assert!(o.stderr.contains("with \"Cancel\""), "{o:?}");
    let v = sim.vm(VM);
    assert!(v["power_state"] == "poweredOff" && v["question"].is_null(), "{v}");
}
