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
    let api_type =
        |t: &str| serde_json::from_str::<Value>(t).unwrap()["service"]["content"]["about"]["api_type"].clone();
    assert_eq!(
        api_type(&after),
        "VirtualCenter",
        "the service content is kept with it: {after}"
    );
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

// ---- names remembered beside the session: checked on every state read ----

/// The managed object id the cache remembers for `status --name NAME` (no --datacenter).
fn remembered(dir: &Path, name: &str) -> Option<String> {
    let file = session_files(dir).into_iter().next()?;
    let entry: Value = serde_json::from_str(&std::fs::read_to_string(file).ok()?).ok()?;
    entry["names"][format!("name {name} in *")].as_str().map(str::to_string)
}

/// Points the cache's memory of `name` at `moref`, as a cache gone stale would.
fn remember(dir: &Path, name: &str, moref: &str) {
    let file = session_files(dir).remove(0);
    let mut entry: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
    entry["names"][format!("name {name} in *")] = moref.into();
    std::fs::write(&file, entry.to_string()).unwrap();
}

/// Renames a VM over the SOAP API (Rename_Task), as an administrator would in vCenter.
fn rename(sim: &Sim, moref: &str, new_name: &str) {
    use vmha::soap::tls::TlsPolicy;
    use vmha::soap::{SoapClient, TransportOptions};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let pem = std::fs::read(sim.ready("ca_file")).unwrap();
        let opts = TransportOptions::new(
            sim.ready("url"),
            TlsPolicy::Verify {
                extra_roots_pem: vec![pem],
            },
            std::time::Duration::from_secs(10),
        );
        let c = SoapClient::new(opts, None).unwrap();
        let sc = vmha::vim::methods::retrieve_service_content(&c).await.unwrap();
        let sm = sc.session_manager.clone().unwrap();
        let pw = secrecy::SecretString::from(sim.ready("password").to_string());
        vmha::vim::methods::login(&c, &sm, sim.ready("user"), &pw)
            .await
            .unwrap();
        c.call(
            "Rename_Task",
            &format!("<_this type=\"VirtualMachine\">{moref}</_this><newName>{new_name}</newName>"),
        )
        .await
        .unwrap();
        vmha::vim::methods::logout(&c, &sm).await.unwrap();
    });
}

#[test]
fn a_name_lookup_costs_one_state_read_once_remembered() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    let moref = sim.vm(VM)["moref"].as_str().unwrap().to_string();
    assert_eq!(remembered(&dir, VM).as_deref(), Some(moref.as_str()));
    sim.reset_stats();
    let r = v.run(&["status", "--name", VM]);
    assert_eq!(r.code, 0, "{r:?}");
    let stats = sim.stats();
    // The one state read: no listing of every VM's name, and no RetrieveServiceContent (the service
    // content is kept beside the session).
    assert_eq!(count(&stats, "RetrievePropertiesEx"), 1, "{stats}");
    assert_eq!(stats["total"], 1, "{stats}");
}

#[test]
fn a_vm_registered_again_under_a_new_managed_object_is_still_found() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    let old = remembered(&dir, VM).unwrap();
    let r = v.run(&["stop", "--name", VM, "--host", H1, "--unregister", "--stop-wait", "5"]);
    assert_eq!(r.code, 0, "{r:?}");
    // Unregistered: the stale memory must not make it look registered.
    let r = v.run(&["status", "--name", VM, "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains("\"registered\":false"), "{r:?}");
    assert_eq!(remembered(&dir, VM), None, "a VM not found is forgotten");
    let r = v.run(&["start", "--vmx", &sim::vmx_path(VM), "--host", H1]);
    assert_eq!(r.code, 0, "{r:?}");
    let new = sim.vm(VM)["moref"].as_str().unwrap().to_string();
    assert_ne!(new, old, "the simulator registers under a new managed object");
    // The memory from before points at the old object: a lookup by name still finds the new one.
    remember(&dir, VM, &old);
    let r = v.run(&["monitor", "--name", VM, "--host", H1]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(remembered(&dir, VM).as_deref(), Some(new.as_str()));
}

#[test]
fn a_renamed_vm_is_not_taken_for_its_old_name() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["monitor", "--name", VM, "--host", H1]).code, 0);
    let moref = remembered(&dir, VM).unwrap();
    rename(&sim, &moref, "vmha-renamed");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let r = v.run(&["monitor", "--name", VM, "--host", H1]);
        if r.code == 10 {
            assert!(
                r.stdout.contains("not registered") || r.stderr.contains("not registered"),
                "{r:?}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "still found by its old name: {r:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(remembered(&dir, VM), None);
    // Under its new name it is found, and remembered.
    let r = v.run(&["monitor", "--name", "vmha-renamed", "--host", H1]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(remembered(&dir, "vmha-renamed").as_deref(), Some(moref.as_str()));
}

#[test]
fn a_memory_pointing_at_another_or_no_vm_is_searched_again() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    let right = remembered(&dir, VM).unwrap();
    // Another VM's object: its name does not match, so the search runs and finds the right one.
    let other = sim.vm("DC0_C0_RP0_VM1")["moref"].as_str().unwrap().to_string();
    remember(&dir, VM, &other);
    let r = v.run(&["status", "--name", VM, "--json"]);
    assert_eq!(r.code, 0, "{r:?}");
    assert!(r.stdout.contains(&format!("\"name\":\"{VM}\"")), "{r:?}");
    assert_eq!(remembered(&dir, VM).as_deref(), Some(right.as_str()));
    // An object the server does not know (deleted): searched again, found.
    remember(&dir, VM, "vm-999999");
    let r = v.run(&["monitor", "--name", VM, "--host", H1]);
    assert_eq!(r.code, 0, "{r:?}");
    assert_eq!(remembered(&dir, VM).as_deref(), Some(right.as_str()));
}

#[test]
fn a_wrong_password_is_refused_even_with_a_cached_session() {
    let sim = Sim::start("vcenter");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("vmha");
    let v = cached(&sim, &dir);
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    let mut wrong = cached(&sim, &dir);
    wrong.password = Some("not-the-password".into());
    let r = wrong.run(&["status", "--name", VM]);
    assert_eq!(r.code, 3, "{r:?}");
    // The session of the right password is still there for the calls that have it.
    sim.reset_stats();
    assert_eq!(v.run(&["status", "--name", VM]).code, 0);
    assert_eq!(count(&sim.stats(), "Login"), 0, "{}", sim.stats());
    let text = std::fs::read_to_string(&session_files(&dir)[0]).unwrap();
    assert!(!text.contains(sim.ready("password")) && !text.contains("not-the-password"));
}
