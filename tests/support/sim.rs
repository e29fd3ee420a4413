//! The extended vSphere simulator in `tests/vcsim` (a Go program built on govmomi's vcsim; its README
//! documents the inventory and the control API), started from Rust.
//!
//! * The Go program is built once per `cargo test` process (and shared by all test binaries) into
//!   `target/vcsim-ext` (`$CARGO_TARGET_DIR` if set). A lock file `target/vcsim-ext.lock` serialises
//!   concurrent builds; the binary is rebuilt when a `tests/vcsim/*.go` file is newer than it.
//!   `VMHA_VCSIM_BIN=/path/to/vcsim-ext` skips the build; `VMHA_SIM_GOPATH` overrides the GOPATH
//!   (default `/usr/share/gocode`, where Debian's golang-github-vmware-govmomi-dev installs govmomi).
//! * Without `go`, or if the build fails, this PANICS: the end-to-end tier must never pass silently.
//! * Every `Sim` runs in its own temporary directory (datastore, CA, log); its stderr goes to
//!   `vcsim.log` there. `Drop` closes the simulator's stdin (it exits on EOF), kills it if it is still
//!   alive after 3 s and waits for it. If the test is panicking, the log tail is printed and the
//!   directory is kept.
//! * The control surface is spoken with a tiny blocking HTTP/1.1 client over `std::net::TcpStream`.
//!
//! Include it next to `run.rs` (it hands out a configured launcher):
//! `#[path = "support/run.rs"] mod run;` and `#[path = "support/sim.rs"] mod sim;`.

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant, SystemTime};

use serde_json::Value;

use crate::run::Vmha;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const BUILD_LOCK_TIMEOUT: Duration = Duration::from_secs(900);
const HTTP_TIMEOUT: Duration = Duration::from_secs(30);

const INSTALL_HINT: &str = "end-to-end tier needs golang-go and golang-github-vmware-govmomi-dev; \
     run .ci/run or `apt-get install golang-go golang-github-vmware-govmomi-dev`";

// ---- building the Go program ---------------------------------------------------

fn manifest_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => {
            let dir = PathBuf::from(dir);
            if dir.is_relative() {
                manifest_dir().join(dir)
            } else {
                dir
            }
        }
        None => manifest_dir().join("target"),
    }
}

/// Path of the simulator binary, building it first if needed (once per process).
pub fn binary() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(build_binary)
}

fn build_binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("VMHA_VCSIM_BIN") {
        let bin = PathBuf::from(bin);
        assert!(bin.is_file(), "VMHA_VCSIM_BIN={} is not a file", bin.display());
        return bin;
    }
    let src = manifest_dir().join("tests").join("vcsim");
    let target = target_dir();
    fs::create_dir_all(&target).unwrap_or_else(|e| panic!("cannot create {}: {e}", target.display()));
    let bin = target.join("vcsim-ext");
    if !needs_rebuild(&bin, &src) {
        return bin;
    }
    let _lock = BuildLock::acquire(&target.join("vcsim-ext.lock"));
    // Another test binary may have built it while we waited for the lock.
    if !needs_rebuild(&bin, &src) {
        return bin;
    }

    let gopath = std::env::var_os("VMHA_SIM_GOPATH").unwrap_or_else(|| "/usr/share/gocode".into());
    let tmp = target.join(format!("vcsim-ext.tmp-{}", std::process::id()));
    let started = Instant::now();
    eprintln!("[sim] building {} from {} ...", bin.display(), src.display());
    let output = Command::new("go")
        .arg("build")
        .arg("-o")
        .arg(&tmp)
        .arg("./tests/vcsim")
        .current_dir(manifest_dir())
        .env("GO111MODULE", "off")
        .env("GOPATH", &gopath)
        .env("GOCACHE", target.join("go-cache"))
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .output();
    let output = match output {
        Ok(o) => o,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
            "\n\n*** `go` is not on PATH: cannot build the vSphere simulator (tests/vcsim).\n*** {INSTALL_HINT}\n\n"
        ),
        Err(e) => panic!("\n\n*** cannot run `go build` for tests/vcsim: {e}\n*** {INSTALL_HINT}\n\n"),
    };
    if !output.status.success() {
        let _ = fs::remove_file(&tmp);
        panic!(
            "\n\n*** building the vSphere simulator (tests/vcsim) failed ({}):\n{}{}\n*** {INSTALL_HINT}\n\n",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr),
        );
    }
    fs::rename(&tmp, &bin).unwrap_or_else(|e| panic!("cannot move {} to {}: {e}", tmp.display(), bin.display()));
    eprintln!("[sim] built {} in {:.1?}", bin.display(), started.elapsed());
    bin
}

/// Newest modification time of the Go sources that make up the binary.
fn newest_source(src: &Path) -> SystemTime {
    let entries =
        fs::read_dir(src).unwrap_or_else(|e| panic!("cannot read the simulator sources in {}: {e}", src.display()));
    let mut newest = None;
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if !name.ends_with(".go") || name.ends_with("_test.go") {
            continue;
        }
        if let Ok(t) = entry.metadata().and_then(|m| m.modified()) {
            newest = Some(newest.map_or(t, |n: SystemTime| n.max(t)));
        }
    }
    newest.unwrap_or_else(|| panic!("no .go files in {}", src.display()))
}

fn needs_rebuild(bin: &Path, src: &Path) -> bool {
    match fs::metadata(bin).and_then(|m| m.modified()) {
        Ok(built) => newest_source(src) > built,
        Err(_) => true,
    }
}

/// Cross-process build lock: a file created with `create_new`.
struct BuildLock(PathBuf);

impl BuildLock {
    fn acquire(path: &Path) -> BuildLock {
        let started = Instant::now();
        let mut announced = false;
        loop {
            match OpenOptions::new().write(true).create_new(true).open(path) {
                Ok(mut f) => {
                    let _ = writeln!(f, "{}", std::process::id());
                    return BuildLock(path.to_path_buf());
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                    if Self::stale(path) {
                        let _ = fs::remove_file(path);
                        continue;
                    }
                    if started.elapsed() > BUILD_LOCK_TIMEOUT {
                        panic!(
                            "timed out waiting for {} (another test process building the simulator?); remove it if stale",
                            path.display()
                        );
                    }
                    if !announced {
                        eprintln!("[sim] waiting for {} ...", path.display());
                        announced = true;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("cannot create {}: {e}", path.display()),
            }
        }
    }

    /// A lock whose owner is gone (Linux: no /proc/<pid>) or that is very old.
    fn stale(path: &Path) -> bool {
        if let Ok(text) = fs::read_to_string(path)
            && let Ok(pid) = text.trim().parse::<u32>()
            && Path::new("/proc/self").exists()
            && !Path::new(&format!("/proc/{pid}")).exists()
        {
            return true;
        }
        fs::metadata(path)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(1200))
    }
}

impl Drop for BuildLock {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.0);
    }
}

// ---- the running simulator ---------------------------------------------------------

/// A running simulator. Dropping it stops the process.
pub struct Sim {
    /// The simulator's ready line (tests/vcsim/README.md: url, user, password, thumbprint, ca_file, ...).
    ready: Value,
    /// The simulator's stderr.
    log_file: PathBuf,
    dir: PathBuf,
    child: Child,
    stdin: Option<ChildStdin>,
}

static SIM_COUNTER: AtomicU64 = AtomicU64::new(0);

/// The simulator's two inventories (tests/vcsim/README.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    VCenter,
    Esx,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::VCenter => "vcenter",
            Mode::Esx => "esx",
        }
    }
}

/// One host's own ESX-direct endpoint (ready line `hosts`, tests/vcsim/README.md "Host endpoints").
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimHost {
    /// The HostSystem's name, e.g. `DC0_C0_H1`.
    pub name: String,
    /// `https://127.0.0.1:PORT/sdk`; log in with `host_user()` / `host_password()`.
    pub url: String,
    /// SHA-256 of its own leaf certificate, `AB:CD:...` (the CA in `ca_file` signs it too).
    pub thumbprint: String,
}

/// `[LocalDS_0] name/name.vmx`, the vmx path of every simulator VM.
pub fn vmx_path(vm: &str) -> String {
    format!("[LocalDS_0] {vm}/{vm}.vmx")
}

impl Sim {
    /// Builds (if needed) and starts a simulator in `mode` (`vcenter` or `esx`); waits for its ready line.
    pub fn start(mode: &str) -> Sim {
        Sim::start_with(mode, &[])
    }

    /// As `start`, with more of the simulator's flags, e.g. `&["--vms", "5000"]` (tests/vcsim/README.md).
    pub fn start_with(mode: &str, args: &[&str]) -> Sim {
        let bin = binary();
        let dir = std::env::temp_dir().join(format!(
            "vmha-sim-{}-{}-{}",
            std::process::id(),
            SIM_COUNTER.fetch_add(1, Ordering::SeqCst),
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map(|d| d.subsec_nanos())
                .unwrap_or(0)
        ));
        fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("cannot create {}: {e}", dir.display()));
        let log_file = dir.join("vcsim.log");
        let log = File::create(&log_file).unwrap_or_else(|e| panic!("cannot create {}: {e}", log_file.display()));
        let ca_out = dir.join("ca.pem");

        let mut child = Command::new(bin)
            .arg("--mode")
            .arg(mode)
            .arg("--ca-out")
            .arg(&ca_out)
            .args(args)
            .env("TMPDIR", &dir) // datastore directories land in our dir
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::from(log))
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().expect("child stdout");

        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut reader = BufReader::new(stdout);
            let mut line = String::new();
            let res = reader.read_line(&mut line).map(|_| line);
            let _ = tx.send(res);
            // Keep reading so the simulator never writes into a closed pipe.
            let mut sink = Vec::new();
            let _ = reader.read_to_end(&mut sink);
        });

        let line = match rx.recv_timeout(READY_TIMEOUT) {
            Ok(Ok(line)) if !line.trim().is_empty() => line,
            other => {
                let _ = child.kill();
                let _ = child.wait();
                let why = match other {
                    Ok(Ok(_)) => "it exited without printing its ready line".to_string(),
                    Ok(Err(e)) => format!("reading its stdout failed: {e}"),
                    Err(_) => format!("no ready line within {READY_TIMEOUT:?}"),
                };
                panic!(
                    "vSphere simulator ({} --mode {mode} {}) did not start: {why}\n--- {} ---\n{}",
                    bin.display(),
                    args.join(" "),
                    log_file.display(),
                    log_tail(&log_file, 60)
                );
            }
        };
        let mut ready: Value = serde_json::from_str(line.trim())
            .unwrap_or_else(|e| panic!("bad ready line from the simulator ({e}): {line}"));
        // Every field reads as text through ready(), the pid included.
        if let Some(fields) = ready.as_object_mut() {
            for v in fields.values_mut() {
                if let Some(n) = v.as_u64() {
                    *v = Value::String(n.to_string());
                }
            }
        }
        Sim {
            ready,
            log_file,
            dir,
            child,
            stdin,
        }
    }

    /// An ESX-only cluster (`--mode esx --hosts n`, 2 <= n <= 3): hosts `DC0_C0_H0`... serve their own
    /// endpoints over one datastore, with file locks between them; no vCenter. `url`, `user`,
    /// `password` and `thumbprint` of the ready line are the first host's.
    pub fn start_esx_hosts(n: usize) -> Sim {
        Sim::start_with("esx", &["--hosts", &n.to_string()])
    }

    /// The hosts that serve their own endpoint (all four in vCenter mode; in plain ESX mode the one
    /// host, whose URL is `url`).
    pub fn hosts(&self) -> Vec<SimHost> {
        let list = self.ready["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("the simulator's ready line lacks \"hosts\": {}", self.ready));
        list.iter()
            .map(|h| {
                let field = |k: &str| {
                    h[k].as_str()
                        .unwrap_or_else(|| panic!("ready line host without {k:?}: {h}"))
                        .to_string()
                };
                SimHost {
                    name: field("name"),
                    url: field("url"),
                    thumbprint: field("thumbprint"),
                }
            })
            .collect()
    }

    /// The host called `name` (panics if it serves no endpoint of its own).
    pub fn host(&self, name: &str) -> SimHost {
        self.hosts()
            .into_iter()
            .find(|h| h.name == name)
            .unwrap_or_else(|| panic!("no host endpoint {name:?} in {}", self.ready["hosts"]))
    }

    /// User that logs in on the host endpoints (`root`; in plain ESX mode the one endpoint takes it
    /// besides the ready line's `user`).
    pub fn host_user(&self) -> &str {
        self.ready("host_user")
    }

    /// Password of `host_user()` on the host endpoints.
    pub fn host_password(&self) -> &str {
        self.ready("host_password")
    }

    /// A vmha launcher for host `name`'s own endpoint (root credentials, TLS verified against the CA).
    pub fn vmha_host(&self, bin: &Path, name: &str) -> Vmha {
        Vmha {
            bin: bin.to_path_buf(),
            url: self.host(name).url,
            user: self.host_user().to_string(),
            password: Some(self.host_password().to_string()),
            flags: vec!["--ca-file".into(), self.ready("ca_file").to_string()],
            stdin: None,
        }
    }

    /// Takes the vCenter endpoint `"down"` (connections refused), `"frozen"` (connections accepted,
    /// nothing answered) or back `"up"` on the same port; host endpoints are unaffected. Returns
    /// `{"vcenter": state, "hosts": {name: state}}`.
    pub fn vcenter(&self, state: &str) -> Value {
        self.call("POST", &format!("/control?vcenter={}", encode(state)), None)
    }

    /// `up`, `down` or `frozen` (`none` in an ESX-only cluster).
    pub fn vcenter_state(&self) -> String {
        self.call("GET", "/control", None)["vcenter"]
            .as_str()
            .unwrap_or("")
            .to_string()
    }

    /// Sets host `name`'s lockdown mode (`lockdownDisabled`, `lockdownNormal`, `lockdownStrict`):
    /// its endpoint then refuses every login but `exceptions` (`InvalidLogin`).
    pub fn host_lockdown(&self, name: &str, mode: &str, exceptions: &[&str]) -> Value {
        self.post(
            &format!("/host/{}/lockdown", encode(name)),
            serde_json::json!({"mode": mode, "exception_users": exceptions}),
        )
    }

    /// Takes only host `name`'s own endpoint away (`up == false`: connections refused) or brings it
    /// back; vCenter's view of the host does not change.
    pub fn host_endpoint(&self, name: &str, up: bool) -> Value {
        self.host_endpoint_state(name, if up { "up" } else { "down" })
    }

    /// As `host_endpoint`, with `"frozen"` too.
    pub fn host_endpoint_state(&self, name: &str, state: &str) -> Value {
        self.post(
            &format!("/host/{}/endpoint", encode(name)),
            serde_json::json!({ "state": state }),
        )
    }

    /// Host `name`'s connection state as vCenter sees it: `notResponding` (the host is dead: its
    /// endpoint refuses connections too), `disconnected` (only vCenter lost it: its endpoint
    /// serves), `connected`; `rebooted` (with connected/disconnected): it crashed, so its VMs are
    /// powered off and its sessions gone.
    pub fn host_connection(&self, name: &str, state: &str, rebooted: bool) -> Value {
        self.post(
            &format!("/host/{}/connection", encode(name)),
            serde_json::json!({"state": state, "rebooted": rebooted}),
        )
    }

    /// `GET /sessions`: `{"live": N, "sessions": [{"endpoint": "vcenter"|host, "user", "age_ms"}]}`.
    pub fn sessions(&self) -> Value {
        self.call("GET", "/sessions", None)
    }

    /// A field of the ready line, e.g. `url`, `password`, `thumbprint`, `ca_file`.
    pub fn ready(&self, field: &str) -> &str {
        self.ready[field]
            .as_str()
            .unwrap_or_else(|| panic!("the simulator's ready line lacks {field:?}: {}", self.ready))
    }

    /// A vmha launcher for this simulator: its URL and credentials, TLS verified against its CA.
    pub fn vmha(&self, bin: &Path) -> Vmha {
        Vmha {
            bin: bin.to_path_buf(),
            url: self.ready("url").to_string(),
            user: self.ready("user").to_string(),
            password: Some(self.ready("password").to_string()),
            flags: vec!["--ca-file".into(), self.ready("ca_file").to_string()],
            stdin: None,
        }
    }

    // ---- control surface --------------------------------------------------------

    fn call(&self, method: &str, path: &str, body: Option<&Value>) -> Value {
        let (code, value) = http_request(self.ready("control"), method, path, body)
            .unwrap_or_else(|e| panic!("control {method} {path}: {e}\n{}", log_tail(&self.log_file, 30)));
        if !(200..300).contains(&code) {
            panic!("control {method} {path} -> HTTP {code}: {value}");
        }
        value
    }

    /// `POST` to the control surface (routes in tests/vcsim/README.md); returns the JSON answer.
    pub fn post(&self, path: &str, body: Value) -> Value {
        self.call("POST", path, Some(&body))
    }

    /// `DELETE` on the control surface (e.g. `/privileges`: every privilege granted again).
    pub fn delete(&self, path: &str) -> Value {
        self.call("DELETE", path, None)
    }

    /// `POST` that may be refused (e.g. 409 for a VM not powered on): `Err` names the status and answer.
    pub fn try_post(&self, path: &str, body: Value) -> Result<Value, String> {
        match http_request(self.ready("control"), "POST", path, Some(&body))? {
            (200..=299, v) => Ok(v),
            (code, v) => Err(format!("HTTP {code}: {v}")),
        }
    }

    /// `GET /vm/{name}` (also works for an unregistered VM).
    pub fn vm(&self, name: &str) -> Value {
        self.call("GET", &format!("/vm/{}", encode(name)), None)
    }

    /// `{"total": N, "by_method": {"Login": 1, ...}}` since start or last reset.
    pub fn stats(&self) -> Value {
        self.call("GET", "/stats", None)
    }

    /// `GET /host/{name}`: `{"name","moref","connection_state","compute_resource","vms"}`.
    pub fn host_state(&self, name: &str) -> Value {
        self.call("GET", &format!("/host/{}", encode(name)), None)
    }

    /// `GET /sessions`: how many SOAP sessions are live.
    pub fn live_sessions(&self) -> u64 {
        self.call("GET", "/sessions", None)["live"].as_u64().unwrap_or(0)
    }

    pub fn reset_stats(&self) {
        self.post("/stats/reset", Value::Null);
    }

    /// Number of SOAP calls of `method` (e.g. "WaitForUpdatesEx") counted so far.
    pub fn soap_calls(&self, method: &str) -> u64 {
        self.stats()["by_method"][method].as_u64().unwrap_or(0)
    }

    /// Powers the VM off as if its guest OS had shut down by itself.
    pub fn guest_shutdown(&self, vm: &str) {
        self.post(&format!("/vm/{}/guest-shutdown", encode(vm)), Value::Null);
    }

    /// Arms, for the VM's next power-on, a question vmha must not answer by itself (ESXi's "disk full",
    /// choices Retry and Cancel).
    pub fn arm_disk_full_question(&self, vm: &str) {
        self.post(
            &format!("/vm/{}/question", encode(vm)),
            serde_json::json!({"once": true, "text": "The disk is full. Retry or cancel?",
                   "message_id": "msg.hbacommon.outofspace",
                   "choices": [{"key": "0", "label": "button.retry", "summary": "_Retry"},
                               {"key": "1", "label": "button.abort", "summary": "_Cancel"}],
                   "default": 0, "cancel_key": "1"}),
        );
    }

    /// `GET /hosts`: every host with its connection state, endpoint state and VMs.
    pub fn hosts_state(&self) -> Vec<Value> {
        self.call("GET", "/hosts", None).as_array().cloned().unwrap_or_default()
    }

    /// `GET /vms`: every VM the simulator knows, with its power state and host.
    pub fn vms(&self) -> Value {
        self.call("GET", "/vms", None)
    }

    /// The last `lines` lines of the simulator's log.
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log_file, lines)
    }

    /// Polls `GET /vm/{name}` until `pred` holds; returns that state.
    pub fn wait_vm(&self, name: &str, timeout: Duration, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let v = self.vm(name);
            if pred(&v) {
                return v;
            }
            if Instant::now() >= deadline {
                panic!("timed out after {timeout:?} waiting on {name}: {v}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Waits until the simulator has counted `n` SOAP calls of `method` (e.g. a watch is in place).
    pub fn wait_for_calls(&self, method: &str, n: u64, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.soap_calls(method) < n {
            if Instant::now() >= deadline {
                panic!(
                    "timed out after {timeout:?} waiting for {n} {method} calls: {}",
                    self.stats()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        drop(self.stdin.take()); // the simulator exits on stdin EOF
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match self.child.try_wait() {
                Ok(Some(_)) => break,
                Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
                _ => {
                    let _ = self.child.kill();
                    let _ = self.child.wait();
                    break;
                }
            }
        }
        if std::thread::panicking() {
            eprintln!(
                "--- vSphere simulator log ({}), last lines ---\n{}\n--- (kept {}) ---",
                self.log_file.display(),
                log_tail(&self.log_file, 80),
                self.dir.display()
            );
        } else {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

fn log_tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

// ---- tiny HTTP/1.1 client -------------------------------------------------------------

/// Percent-encodes everything but RFC 3986 unreserved characters.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => out.push(b as char),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn dechunk(mut b: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(pos) = find(b, b"\r\n") {
        let size_text = String::from_utf8_lossy(&b[..pos]);
        let size = usize::from_str_radix(size_text.split(';').next().unwrap_or("0").trim(), 16).unwrap_or(0);
        b = &b[pos + 2..];
        if size == 0 || b.len() < size {
            out.extend_from_slice(&b[..size.min(b.len())]);
            break;
        }
        out.extend_from_slice(&b[..size]);
        b = &b[size..];
        if b.starts_with(b"\r\n") {
            b = &b[2..];
        }
    }
    out
}

/// `GET` a control route from another thread (the `Sim` stays with its owner): the answer's JSON.
pub fn get_json(control: &str, path: &str) -> Result<Value, String> {
    match http_request(control, "GET", path, None)? {
        (200..=299, v) => Ok(v),
        (code, v) => Err(format!("HTTP {code}: {v}")),
    }
}

fn http_request(base: &str, method: &str, path: &str, body: Option<&Value>) -> Result<(u16, Value), String> {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    stream.set_read_timeout(Some(HTTP_TIMEOUT)).map_err(|e| e.to_string())?;
    stream
        .set_write_timeout(Some(HTTP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let payload = match body {
        Some(Value::Null) | None => Vec::new(),
        Some(v) => serde_json::to_vec(v).map_err(|e| e.to_string())?,
    };
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
        payload.len()
    );
    stream.write_all(head.as_bytes()).map_err(|e| format!("write: {e}"))?;
    stream.write_all(&payload).map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;

    let split =
        find(&raw, b"\r\n\r\n").ok_or_else(|| format!("malformed HTTP response: {}", String::from_utf8_lossy(&raw)))?;
    let head = String::from_utf8_lossy(&raw[..split]).to_string();
    let mut rest = &raw[split + 4..];
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| format!("bad status line in: {head}"))?;
    let mut chunked = false;
    let mut length = None;
    for line in lines {
        if let Some((k, v)) = line.split_once(':') {
            let (k, v) = (k.trim().to_ascii_lowercase(), v.trim());
            if k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked") {
                chunked = true;
            } else if k == "content-length" {
                length = v.parse::<usize>().ok();
            }
        }
    }
    let body = if chunked {
        dechunk(rest)
    } else {
        if let Some(n) = length {
            rest = &rest[..n.min(rest.len())];
        }
        rest.to_vec()
    };
    let value = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()))
    };
    Ok((status, value))
}
