//! What a script author and an administrator rely on: `--json` gives exactly one JSON object on stdout
//! for every outcome (each exit code), `thumbprint` reads the server's certificate, completions load in
//! bash and the man page renders.

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use serde_json::Value;

use run::{Run, Vmha};
use sim::Sim;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const H2: &str = "DC0_C0_H1";
const UNREGISTERED_VMX: &str = "[LocalDS_0] vmha-unreg/vmha-unreg.vmx";

fn bin() -> &'static std::path::Path {
    std::path::Path::new(env!("CARGO_BIN_EXE_vmha"))
}

/// Runs with `--json` and checks the contract: one JSON object on stdout, `exit_code` equal to the
/// process's, `ok` true exactly for 0, `error` set exactly on failure. Returns the object.
fn json_run(v: &Vmha, a: &[&str], want: i32) -> Value {
    let mut argv: Vec<&str> = a.to_vec();
    argv.push("--json");
    let r: Run = v.run(&argv);
    assert_eq!(r.code, want, "{a:?}: {r:?}");
    let mut lines = r.stdout.lines().filter(|l| !l.trim().is_empty());
    let line = lines
        .next()
        .unwrap_or_else(|| panic!("{a:?}: nothing on stdout: {r:?}"));
    assert!(
        lines.next().is_none(),
        "{a:?}: more than one line on stdout: {}",
        r.stdout
    );
    let o: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{a:?}: not JSON ({e}): {line}"));
    assert!(o.is_object(), "{a:?}: {o}");
    assert_eq!(o["exit_code"], want, "{a:?}: {o}");
    assert_eq!(o["ok"], want == 0, "{a:?}: {o}");
    assert_eq!(o["error"].is_null(), want == 0, "{a:?}: {o}");
    assert!(o.get("hint").is_some(), "{a:?}: {o}");
    if let Some(pw) = &v.password {
        assert!(
            !r.stdout.contains(pw.as_str()) && !r.stderr.contains(pw.as_str()),
            "password leaked"
        );
    }
    o
}

#[test]
fn json_on_every_command_and_every_exit_code() {
    let sim = Sim::start("vcenter");
    let v = sim.vmha(bin());
    let name = ["--name", VM];
    let with = |cmd: &[&'static str]| -> Vec<&str> { cmd.iter().copied().chain(name).collect() };
    let post = |path: &str, body: Value| {
        sim.post(path, body);
    };

    let o = json_run(&v, &["check"], 0);
    assert_eq!(o["about"]["api_type"], "VirtualCenter", "{o}");
    let o = json_run(&v, &with(&["status"]), 0);
    assert_eq!(
        (o["registered"].clone(), o["host"].clone()),
        (true.into(), H1.into()),
        "{o}"
    );
    let o = json_run(&v, &with(&["start", "--host", H2]), 5);
    assert!(
        o["error"].as_str().unwrap().contains("start on DC0_C0_H1 refused"),
        "{o}"
    );
    let o = json_run(&v, &with(&["monitor", "--host", H2, "--migration-wait", "0"]), 14);
    assert_eq!(o["failure"], "migrated", "{o}");
    let o = json_run(&v, &with(&["monitor", "--host", H1]), 0);
    assert_eq!(o["healthy"], true, "{o}");
    post(&format!("/vm/{VM}/heartbeat"), serde_json::json!({"status": "red"}));
    json_run(&v, &with(&["monitor", "--host", H1]), 12);
    post(&format!("/vm/{VM}/heartbeat"), serde_json::json!({"status": "green"}));
    json_run(&v, &["monitor", "--vmx", UNREGISTERED_VMX, "--host", H1], 10);
    post(
        &format!("/host/{H1}/connection"),
        serde_json::json!({"state": "notResponding"}),
    );
    json_run(&v, &with(&["monitor", "--host", H1]), 15);
    post(
        &format!("/host/{H1}/connection"),
        serde_json::json!({"state": "connected"}),
    );
    let o = json_run(&v, &with(&["migrate", "--to-host", H2]), 0);
    assert_eq!(o["to_host"], H2, "{o}");
    json_run(&v, &with(&["migrate", "--to-host", H1]), 0);
    let o = json_run(&v, &with(&["stop", "--host", H1]), 0);
    assert_eq!(o["plan"], "deactivate", "{o}");
    json_run(&v, &with(&["monitor", "--host", H1]), 11);
    // A question vmha may not answer: start fails (1), and monitor reports it (13).
    post(
        &format!("/vm/{VM}/question"),
        serde_json::json!({"once": true, "text": "The disk is full. Retry or cancel?", "message_id": "msg.hbacommon.outofspace",
               "choices": [{"key": "0", "label": "button.retry", "summary": "_Retry"},
                           {"key": "1", "label": "button.abort", "summary": "_Cancel"}],
               "default": 0, "cancel_key": "1"}),
    );
    let o = json_run(&v, &with(&["start", "--host", H1]), 1);
    assert!(o["error"].as_str().unwrap().contains("The disk is full"), "{o}");
    json_run(&v, &with(&["monitor", "--host", H1]), 13);

    let wrong = Vmha {
        password: Some("not-the-password".into()),
        ..sim.vmha(bin())
    };
    let o = json_run(&wrong, &["check"], 3);
    assert!(o["hint"].as_str().unwrap().contains("--user"), "{o}");
    // Configuration errors (2) are reported before connecting, as JSON too; so is clap's refusal.
    let o = json_run(&v, &["status"], 2);
    assert!(o["error"].as_str().unwrap().contains("which VM?"), "{o}");
    json_run(&v, &["no-such-command"], 2);
    // Every session was logged out; the refused login opened none.
    let stats = sim.stats();
    let count = |m: &str| stats["by_method"][m].as_u64().unwrap_or(0);
    assert_eq!(count("Login"), count("Logout") + 1, "{stats}");
}

/// A launcher for a server that is not there.
fn nowhere(password: &str) -> Vmha {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}/sdk", listener.local_addr().unwrap().port());
    drop(listener);
    Vmha {
        bin: bin().to_path_buf(),
        url,
        user: "u".into(),
        password: Some(password.into()),
        flags: vec![],
        stdin: None,
    }
}

#[test]
fn json_when_the_server_cannot_be_reached() {
    let o = json_run(
        &nowhere("unreachable-secret-pw"),
        &["check", "--request-timeout", "5"],
        4,
    );
    assert!(o["error"].as_str().unwrap().contains("cannot connect"), "{o}");
}

#[test]
fn thumbprint_matches_the_servers_certificate() {
    let sim = Sim::start("esx");
    let untrusting = Vmha {
        flags: vec![],
        ..sim.vmha(bin())
    };
    let r = untrusting.run(&["thumbprint"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), sim.ready("thumbprint"), "{r:?}");
    assert!(r.stderr.contains("compare the thumbprint"), "{}", r.stderr);
    // What it prints is what --thumbprint takes: pinned, the same server is accepted.
    let pinned = Vmha {
        flags: vec!["--thumbprint".into(), r.stdout.trim().into()],
        ..sim.vmha(bin())
    };
    assert_eq!(pinned.run(&["check"]).code, 0);
    assert_eq!(sim.soap_calls("Login"), 1, "thumbprint itself must not log in");
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let r = nowhere("offline-secret-pw").run(&["completions", "bash"]);
    assert_eq!(r.code, 0, "{r:?}");
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("vmha.bash");
    std::fs::write(&script, &r.stdout).unwrap();
    // Load it and ask the completion function what follows `vmha st`.
    let probe = format!(
        "source {}; COMP_WORDS=(vmha st); COMP_CWORD=1; COMP_LINE='vmha st'; COMP_POINT=7; \
         f=$(complete -p vmha | sed -E 's/.*-F ([^ ]+).*/\\1/'); $f vmha st vmha; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display()
    );
    let out = std::process::Command::new("bash")
        .args(["-c", &probe])
        .output()
        .unwrap();
    let words = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for w in ["start", "status", "stop"] {
        assert!(words.lines().any(|l| l == w), "no '{w}' in {words}");
    }
}

#[test]
fn man_page_renders() {
    let r = nowhere("offline-secret-pw").run(&["man"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.contains(".TH vmha"),
        "not roff: {}",
        &r.stdout[..200.min(r.stdout.len())]
    );
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("vmha.1");
    std::fs::write(&page, &r.stdout).unwrap();
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .expect("man (Debian's man-db) is installed by .ci/deps");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    for want in ["vmha", "start", "monitor", "thumbprint"] {
        assert!(text.contains(want), "man page lacks '{want}':\n{text}");
    }
}

/// `man --dir` writes vmha.1 and one page per subcommand, as the packages install them; each renders.
#[test]
fn man_dir_writes_one_page_per_subcommand() {
    let dir = tempfile::tempdir().unwrap();
    let r = nowhere("offline-secret-pw").run(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert_eq!(r.code, 0, "{r:?}");
    let mut names: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    for want in ["vmha.1", "vmha-start.1", "vmha-stop.1", "vmha-monitor.1", "vmha-ocf.1"] {
        assert!(names.iter().any(|n| n == want), "{want} missing from {names:?}");
    }
    // stdout names every file written, and nothing else.
    assert_eq!(r.stdout.lines().count(), names.len(), "{}", r.stdout);
    let page = dir.path().join("vmha-start.1");
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .output()
        .expect("run man");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("--start-wait"), "{text}");
    // A directory that does not exist: exit 1, naming it.
    let r = nowhere("offline-secret-pw").run(&["man", "--dir", "/nonexistent/vmha-man"]);
    assert_eq!(r.code, 1, "{r:?}");
    assert!(r.stderr.contains("/nonexistent/vmha-man"), "{r:?}");
}

#[test]
fn example_config_has_every_key_and_loads() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/vmha.toml");
    let f = vmha::config::FileSettings::load(&path).expect("examples/vmha.toml loads");
    let set = [
        f.url.is_some(),
        f.user.is_some(),
        f.password_file.is_some(),
        f.insecure.is_some(),
        f.ca_file.is_some(),
        f.request_timeout.is_some(),
        f.vmx.is_some(),
        f.datacenter.is_some(),
        f.host.is_some(),
        f.start_wait.is_some(),
        f.stop_wait.is_some(),
        f.migration_wait.is_some(),
        f.json.is_some(),
        f.watch.is_some(),
        f.require_heartbeat.is_some(),
        f.keep_registered.is_some(),
        f.unregister.is_some(),
        f.answer.is_some(),
        f.no_session_cache.is_some(),
    ];
    assert!(
        set.iter().all(|b| *b),
        "a key is missing from examples/vmha.toml: {set:?}"
    );
    // The alternatives shown commented out are keys too.
    let text = std::fs::read_to_string(&path).unwrap();
    for key in ["# thumbprint = ", "# name = ", "# uuid = "] {
        assert!(text.contains(key), "{key}");
    }
    assert_eq!(f.request_timeout, Some(vmha::config::DEFAULT_REQUEST_TIMEOUT));
    assert_eq!(f.start_wait, Some(vmha::config::DEFAULT_START_WAIT));
    assert_eq!(f.stop_wait, Some(vmha::config::DEFAULT_STOP_WAIT));
    assert_eq!(f.migration_wait, Some(vmha::config::DEFAULT_MIGRATION_WAIT));
}
