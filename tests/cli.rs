//! What a script author and an administrator rely on: `--json` gives exactly one JSON object on stdout
//! for every outcome (each exit code), `thumbprint` reads the server's certificate, completions load in
//! bash and the man page renders.

mod support;

use serde_json::Value;
use support::run::{Run, Target, vmha};
use support::scenarios::{H1, H2, VM};
use support::sim::{Mode, Sim, UNREGISTERED_VM, vmx_path};

fn target(sim: &Sim) -> Target<'_> {
    Target {
        url: &sim.url,
        user: &sim.user,
        password: &sim.password,
        trust: vec!["--ca-file".into(), sim.ca_file.display().to_string()],
        record: None,
    }
}

fn args(a: &[&str]) -> Vec<String> {
    a.iter().map(|s| s.to_string()).collect()
}

/// Runs with `--json` and checks the contract: one JSON object on stdout, `exit_code` equal to the
/// process's, `ok` true exactly for 0, `error` set exactly on failure. Returns the object.
fn json_run(t: &Target<'_>, a: &[&str], want: i32) -> Value {
    let mut argv = args(a);
    argv.push("--json".into());
    let r: Run = vmha(t, &argv);
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
    let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("{a:?}: not JSON ({e}): {line}"));
    assert!(v.is_object(), "{a:?}: {v}");
    assert_eq!(v["exit_code"], want, "{a:?}: {v}");
    assert_eq!(v["ok"], want == 0, "{a:?}: {v}");
    assert_eq!(v["error"].is_null(), want == 0, "{a:?}: {v}");
    assert!(v.get("hint").is_some(), "{a:?}: {v}");
    assert!(
        !r.stdout.contains(t.password) && !r.stderr.contains(t.password),
        "password leaked"
    );
    v
}

#[test]
fn json_on_every_command_and_every_exit_code() {
    let sim = Sim::start(Mode::VCenter);
    let t = target(&sim);
    let name = ["--name", VM];
    let with = |cmd: &[&'static str]| -> Vec<&str> { cmd.iter().copied().chain(name).collect() };

    let v = json_run(&t, &["check"], 0);
    assert_eq!(v["about"]["api_type"], "VirtualCenter", "{v}");
    let v = json_run(&t, &with(&["status"]), 0);
    assert_eq!(
        (v["registered"].clone(), v["host"].clone()),
        (true.into(), H1.into()),
        "{v}"
    );
    let v = json_run(&t, &with(&["start", "--host", H2]), 5);
    assert!(
        v["error"].as_str().unwrap().contains("start on DC0_C0_H1 refused"),
        "{v}"
    );
    let v = json_run(&t, &with(&["monitor", "--host", H2, "--migration-wait", "0"]), 14);
    assert_eq!(v["failure"], "migrated", "{v}");
    let v = json_run(&t, &with(&["monitor", "--host", H1]), 0);
    assert_eq!(v["healthy"], true, "{v}");
    sim.set_heartbeat(VM, "red");
    json_run(&t, &with(&["monitor", "--host", H1]), 12);
    sim.set_heartbeat(VM, "green");
    json_run(&t, &["monitor", "--vmx", &vmx_path(UNREGISTERED_VM), "--host", H1], 10);
    sim.set_host_connection(H1, "notResponding");
    json_run(&t, &with(&["monitor", "--host", H1]), 15);
    sim.set_host_connection(H1, "connected");
    let v = json_run(&t, &with(&["migrate", "--to-host", H2]), 0);
    assert_eq!(v["to_host"], H2, "{v}");
    json_run(&t, &with(&["migrate", "--to-host", H1]), 0);
    let v = json_run(&t, &with(&["stop", "--host", H1]), 0);
    assert_eq!(v["plan"], "deactivate", "{v}");
    json_run(&t, &with(&["monitor", "--host", H1]), 11);
    // A question vmha may not answer: start fails (1), and monitor reports it (13).
    sim.post(
        &format!("/vm/{VM}/question"),
        serde_json::json!({"once": true, "text": "The disk is full. Retry or cancel?", "message_id": "msg.hbacommon.outofspace",
               "choices": [{"key": "0", "label": "button.retry", "summary": "_Retry"},
                           {"key": "1", "label": "button.abort", "summary": "_Cancel"}],
               "default": 0, "cancel_key": "1"}),
    );
    let v = json_run(&t, &with(&["start", "--host", H1]), 1);
    assert!(v["error"].as_str().unwrap().contains("The disk is full"), "{v}");
    json_run(&t, &with(&["monitor", "--host", H1]), 13);

    let mut wrong = target(&sim);
    wrong.password = "not-the-password";
    let v = json_run(&wrong, &["check"], 3);
    assert!(v["hint"].as_str().unwrap().contains("--user"), "{v}");
    // Configuration errors (2) are reported before connecting, as JSON too; so is clap's refusal.
    let v = json_run(&t, &["status"], 2);
    assert!(v["error"].as_str().unwrap().contains("which VM?"), "{v}");
    json_run(&t, &["no-such-command"], 2);
    assert_eq!(sim.soap_calls("Login"), sim.soap_calls("Logout") + 1, "{}", sim.stats());
}

#[test]
fn json_when_the_server_cannot_be_reached() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("https://127.0.0.1:{}/sdk", listener.local_addr().unwrap().port());
    drop(listener);
    let t = Target {
        url: &url,
        user: "u",
        password: "unreachable-secret-pw",
        trust: vec![],
        record: None,
    };
    let v = json_run(&t, &["check", "--request-timeout", "5"], 4);
    assert!(v["error"].as_str().unwrap().contains("cannot connect"), "{v}");
}

#[test]
fn thumbprint_matches_the_servers_certificate() {
    let sim = Sim::start(Mode::Esx);
    let t = Target {
        trust: vec![],
        ..target(&sim)
    };
    let r = vmha(&t, &args(&["thumbprint"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(r.stdout.trim(), sim.thumbprint, "{r:?}");
    assert!(r.stderr.contains("compare the thumbprint"), "{}", r.stderr);
    // What it prints is what --thumbprint takes: pinned, the same server is accepted.
    let pinned = Target {
        trust: vec!["--thumbprint".into(), r.stdout.trim().into()],
        ..target(&sim)
    };
    assert_eq!(vmha(&pinned, &args(&["check"])).code, 0);
    assert_eq!(sim.soap_calls("Login"), 1, "thumbprint itself must not log in");
}

fn offline() -> Target<'static> {
    Target {
        url: "https://127.0.0.1:9/sdk",
        user: "u",
        password: "offline-secret-pw",
        trust: vec![],
        record: None,
    }
}

#[test]
fn bash_completion_loads_and_completes_subcommands() {
    let r = vmha(&offline(), &args(&["completions", "bash"]));
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
    let r = vmha(&offline(), &args(&["man"]));
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stdout.starts_with(".ie") || r.stdout.contains(".TH vmha"),
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
