//! The session cache against the simulator: one Login for a loop of one-shot commands and for a stampede
//! of concurrent ones, a re-login that rewrites the file when the server ended the session, `vmha logout`,
//! the opt-out, a private file that never holds the password, and a cookie that is never sent to another
//! certificate.

#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use run::Vmha;
use sim::Sim;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

/// A launcher whose session cache lives in `dir`.
fn cached(sim: &Sim, dir: &Path) -> Vmha {
    let mut v = sim.vmha(bin());
    v.flags.push("--session-dir".into());
    v.flags.push(dir.display().to_string());
    v
}

fn count(stats: &Value, m: &str) -> u64 {
    stats["by_method"][m].as_u64().unwrap_or(0)
}

fn session_files(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "session"))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_loop_of_one_shot_commands_logs_in_once_and_never_out() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    sim.reset_stats();
    // 20 resources' monitors, three rounds, and a status by name between them.
    for round in 0..3 {
        for i in 0..20 {
            let r = if i % 2 == 0 {
                v.run(&["monitor", "--name", VM, "--host", H1])
            } else {
                v.run(&["status", "--name", VM])
            };
            assert_eq!(r.code, 0, "round {round}, call {i}: {r:?}");
        }
    }
    let stats = sim.stats();
    assert_eq!(count(&stats, "Login"), 1, "{stats}");
    assert_eq!(count(&stats, "Logout"), 0, "{stats}");
    assert_eq!(sim.live_sessions(), 1);

    // 0700 directory, one 0600 file, holding no password.
    assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
    let files = session_files(&dir);
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(
        std::fs::metadata(&files[0]).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let text = std::fs::read_to_string(&files[0]).unwrap();
    assert!(
        !text.contains(sim.ready("password")),
        "the password is in {}",
        files[0].display()
    );
    let entry: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(entry["url"], v.url.as_str());
    assert_eq!(entry["user"], v.user.as_str());
    let pinned = sim.ready("thumbprint").replace(':', "").to_lowercase();
    assert_eq!(entry["server_sha256"], pinned.as_str(), "{text}");

    // `vmha logout` ends it: one Logout, no file, no live session; a second one has nothing to do.
    let r = v.run(&["logout", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let o: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(o["ended"], true, "{o}");
    assert_eq!(count(&sim.stats(), "Logout"), 1);
    assert!(session_files(&dir).is_empty());
    assert_eq!(sim.live_sessions(), 0);
    let r = v.run(&["logout", "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    let o: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    assert_eq!(o["ended"], false, "{o}");
    assert_eq!(count(&sim.stats(), "Logout"), 1);
    assert_eq!(count(&sim.stats(), "Login"), 1, "logout must never log in");
}

#[test]
fn concurrent_calls_on_a_cold_cache_make_one_login() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    sim.reset_stats();
    let running: Vec<_> = (0..20)
        .map(|_| v.spawn(&["monitor", "--name", VM, "--host", H1]))
        .collect();
    for r in running {
        let r = r.wait();
        assert_eq!(r.code, 0, "{r:?}");
    }
    let stats = sim.stats();
    assert_eq!(count(&stats, "Login"), 1, "{stats}");
    assert_eq!(count(&stats, "Logout"), 0, "{stats}");
}

#[test]
fn an_ended_session_is_replaced_once_and_the_file_rewritten() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    let before = std::fs::read_to_string(&session_files(&dir)[0]).unwrap();
    sim.post("/sessions/expire", Value::Null);
    sim.reset_stats();
    let r = v.run(&["monitor", "--name", VM, "--host", H1]);
    assert_eq!(r.code, 0, "{r:?}");
    let after = std::fs::read_to_string(&session_files(&dir)[0]).unwrap();
    let cookie = |t: &str| serde_json::from_str::<Value>(t).unwrap()["cookie"].clone();
    assert_ne!(cookie(&before), cookie(&after), "the file must hold the new session");
    // Several processes meeting the ended session at once: still one new Login between them.
    sim.post("/sessions/expire", Value::Null);
    let running: Vec<_> = (0..10).map(|_| v.spawn(&["status", "--name", VM])).collect();
    for r in running {
        assert_eq!(r.wait().code, 0);
    }
    for _ in 0..5 {
        assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    }
    let stats = sim.stats();
    assert_eq!(count(&stats, "Login"), 2, "{stats}");
    assert_eq!(count(&stats, "Logout"), 0, "{stats}");
}

#[test]
fn opting_out_and_check_log_in_and_out_every_time() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let mut v = cached(&sim, &dir);
    sim.reset_stats();
    // `check` proves the credentials: always a Login of its own, logged out.
    assert_eq!(v.run(&["check"]).code, 0);
    let stats = sim.stats();
    assert_eq!((count(&stats, "Login"), count(&stats, "Logout")), (1, 1), "{stats}");
    v.flags.push("--no-session-cache".into());
    for _ in 0..3 {
        assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    }
    let stats = sim.stats();
    assert_eq!((count(&stats, "Login"), count(&stats, "Logout")), (4, 4), "{stats}");
    assert!(session_files(&dir).is_empty());
    let r = v.run(&["logout"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("nothing to log out"), "{r:?}");
}

#[test]
fn a_cookie_is_not_sent_to_another_certificate() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    let file = session_files(&dir).remove(0);
    let mut entry: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    entry["server_sha256"] = "00".repeat(32).into();
    std::fs::write(&file, entry.to_string()).unwrap();
    sim.reset_stats();
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    assert_eq!(
        count(&sim.stats(), "Login"),
        1,
        "a session of another certificate must not be used"
    );
    // The old session stays the server's to expire: vmha never sent its cookie here again.
    assert_eq!(sim.live_sessions(), 2);
}

#[test]
fn a_directory_others_can_read_is_not_used() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("open");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let v = cached(&sim, &dir);
    sim.reset_stats();
    let r = v.run(&["status", "--name", VM]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(
        r.stderr.contains("session cache not used") && r.stderr.contains("chmod 700"),
        "{r:?}"
    );
    let stats = sim.stats();
    assert_eq!((count(&stats, "Login"), count(&stats, "Logout")), (1, 1), "{stats}");
    assert!(session_files(&dir).is_empty());
}
