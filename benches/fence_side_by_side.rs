//! Issue 14's side-by-side: `vmha fence` against fence-agents' `fence_vmware_soap` on one extended vcsim,
//! for `status`, `off`, `on`, `reboot` and `list` of one VM. Each agent gets the same `name=value` lines
//! on standard input, as Pacemaker's fencer sends them (the password never in argv), and verifies the
//! simulator's TLS certificate against its CA. The agents alternate in a rotating order, and each run
//! starts from a known VM state (on for status, off and reboot; off for on), set up untimed. For each
//! action and agent it prints the median wall time (spawn to exit), CPU time and peak RSS (wait4), the
//! simulator's count of requests (SOAP calls plus the WSDL and schema GETs) and TCP connections per call,
//! and the ratios. A run counts as failed unless it exits as fence-agents specifies (status: 0 for on)
//! and leaves the VM as the action says, checked against the simulator itself.
//!
//! Run: `cargo bench --bench fence_side_by_side` (without `--bench`, e.g. under `cargo test`, it returns
//! at once).
//!
//! Prerequisites, each skipped with the reason when missing:
//! * fence_vmware_soap: Debian's `fence-agents` (`/usr/sbin/fence_vmware_soap`, Python 3 with suds and
//!   requests). It downloads `/sdk/vimService.wsdl` and the schema files before every call, so the
//!   simulator serves vSphere 5.1's (`--wsdl-dir`), which `benches/peers/fetch-vsphere-wsdl` fetches into
//!   `target/vsphere-5.1-wsdl` on first use (pip, network). Trust in the simulator's CA: `ssl_secure=1`
//!   with `SSL_CERT_FILE` (suds' WSDL downloads through urllib) and `REQUESTS_CA_BUNDLE` (its SOAP calls
//!   through requests).
//! * `vmha fence`: the vmha this bench is built with (`cargo bench` builds it with the release settings);
//!   trust through one more stdin line, `ca_file=`.
//!
//! vmha fence always keeps its session in its cache (`session_dir=`), so it runs twice over: warm (one
//! directory, filled once before measuring: how it runs under Pacemaker after its first call) and cold
//! (a new, empty directory per call: one Login, as fence_vmware_soap makes; the session is logged out
//! untimed afterwards, where fence_vmware_soap's own Logout is in its time).
//!
//! Environment:
//! * `VMHA_BENCH_RUNS` runs per agent and action (default 10).
//! * `VMHA_BENCH_FENCE_ACTIONS` the actions to measure (default `status,off,on,reboot,list`).
//! * `VMHA_BENCH_FENCE_VMWARE_SOAP` the agent to compare with (default `/usr/sbin/fence_vmware_soap`, else
//!   `fence_vmware_soap` on PATH); `none` leaves it out.
//! * `VMHA_BENCH_WSDL_DIR` a directory holding vimService.wsdl and its files, instead of the fetch.
//! * `VMHA_SIM_GOPATH` the GOPATH for building the simulator (default `/usr/share/gocode`).

#[path = "support/measure.rs"]
pub mod measure;
#[path = "../tests/support/run.rs"]
pub mod run;
#[path = "../tests/support/sim.rs"]
pub mod sim;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use measure::{Reaped, env_or, median, ms, reap, rotated, target_dir};
use sim::Sim;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const DEFAULT_ACTIONS: &str = "status,off,on,reboot,list";
/// Quiet time before each measured run, so the previous run's tail (a Python process's exit, the
/// simulator's garbage collection) does not land on the next one's clock.
const SETTLE: Duration = Duration::from_millis(50);
/// No fence here takes nearly this long: past it the agent hangs, and the bench stops.
const NO_HANG: Duration = Duration::from_secs(120);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Agent {
    VmhaWarm,
    VmhaCold,
    Soap,
}

impl Agent {
    fn label(self) -> &'static str {
        match self {
            Agent::VmhaWarm => "vmha fence, warm",
            Agent::VmhaCold => "vmha fence, cold",
            Agent::Soap => "fence_vmware_soap",
        }
    }
}

// ---- what can run here ----------------------------------------------------------------

/// `vmha fence` answers `-o metadata` with fence-agents' XML, or why not.
fn probe_vmha() -> Result<(), String> {
    let o = Command::new(bin())
        .args(["fence", "-o", "metadata"])
        .env_clear_vmha()
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin().display()))?;
    if o.status.success() && String::from_utf8_lossy(&o.stdout).contains("<resource-agent") {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    Err(format!(
        "`vmha fence` is not built yet: `{} fence -o metadata` exited {} ({})",
        bin().display(),
        o.status.code().unwrap_or(-1),
        err.lines().find(|l| !l.trim().is_empty()).unwrap_or("no output").trim()
    ))
}

/// fence_vmware_soap's path, when it is installed and its Python imports work.
fn probe_soap() -> Result<PathBuf, String> {
    let agent = match std::env::var_os("VMHA_BENCH_FENCE_VMWARE_SOAP") {
        Some(p) if p == "none" => return Err("VMHA_BENCH_FENCE_VMWARE_SOAP=none".into()),
        Some(p) => PathBuf::from(p),
        None => {
            let sbin = PathBuf::from("/usr/sbin/fence_vmware_soap");
            let on_path = std::env::var_os("PATH")
                .map(|p| {
                    std::env::split_paths(&p)
                        .map(|d| d.join("fence_vmware_soap"))
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default();
            std::iter::once(sbin)
                .chain(on_path)
                .find(|p| p.is_file())
                .ok_or("fence_vmware_soap is not installed (Debian: apt-get install fence-agents)")?
        }
    };
    let o = Command::new(&agent)
        .args(["-o", "metadata"])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", agent.display()))?;
    if !o.status.success() {
        return Err(format!(
            "{} -o metadata failed (exit {}): {}",
            agent.display(),
            o.status.code().unwrap_or(-1),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(agent)
}

/// The WSDL directory for the simulator: `VMHA_BENCH_WSDL_DIR`, or fetched into target/ on first use.
fn wsdl_dir() -> Result<PathBuf, String> {
    if let Some(d) = std::env::var_os("VMHA_BENCH_WSDL_DIR") {
        let d = PathBuf::from(d);
        return if d.join("vimService.wsdl").is_file() {
            Ok(d)
        } else {
            Err(format!("VMHA_BENCH_WSDL_DIR={}: no vimService.wsdl there", d.display()))
        };
    }
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/fetch-vsphere-wsdl");
    let dir = target_dir().join("vsphere-5.1-wsdl");
    let o = Command::new(&script)
        .arg(&dir)
        .stdin(Stdio::null())
        .stderr(Stdio::inherit())
        .output()
        .map_err(|e| format!("cannot run {}: {e}", script.display()))?;
    if o.status.success() && dir.join("vimService.wsdl").is_file() {
        Ok(dir)
    } else {
        Err(format!(
            "{} failed (exit {}); fence_vmware_soap needs the WSDL it fetches (or set VMHA_BENCH_WSDL_DIR)",
            script.display(),
            o.status.code().unwrap_or(-1)
        ))
    }
}

trait EnvClear {
    fn env_clear_vmha(&mut self) -> &mut Self;
}

impl EnvClear for Command {
    /// Drops inherited `VMHA_*` settings: a developer's own must not reach the agents.
    fn env_clear_vmha(&mut self) -> &mut Self {
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("VMHA_") {
                self.env_remove(k);
            }
        }
        self
    }
}

// ---- one measured run --------------------------------------------------------------------

struct Sample {
    r: Reaped,
    /// The exit code and the VM's state afterwards are what the action promises.
    ok: bool,
    why: String,
    requests: u64,
    gets: u64,
    get_bytes: u64,
    logins: u64,
    connections: u64,
}

struct Bench<'a> {
    sim: &'a Sim,
    soap: Option<&'a Path>,
    wsdl: Option<&'a Path>,
    port: String,
    scratch: PathBuf,
    cold_runs: std::cell::Cell<u64>,
}

impl Bench<'_> {
    /// The `name=value` lines both agents read, as Pacemaker's fencer writes them; vmha's session
    /// directory `dir` and the CA go in as two more.
    fn stdin_lines(&self, action: &str, dir: Option<&Path>) -> String {
        let mut lines = format!(
            "action={action}\nip=127.0.0.1\nipport={}\nusername={}\npassword={}\nplug={VM}\nssl_secure=1\n",
            self.port,
            self.sim.ready("user"),
            self.sim.ready("password")
        );
        if let Some(d) = dir {
            lines += &format!("ca_file={}\nsession_dir={}\n", self.sim.ready("ca_file"), d.display());
        }
        lines
    }

    fn warm_dir(&self) -> PathBuf {
        self.scratch.join("warm")
    }

    fn command(&self, agent: Agent) -> Command {
        let ca = self.sim.ready("ca_file");
        let mut cmd = match agent {
            Agent::Soap => {
                let mut c = Command::new(self.soap.expect("fence_vmware_soap"));
                c.env("SSL_CERT_FILE", ca).env("REQUESTS_CA_BUNDLE", ca);
                c
            }
            Agent::VmhaWarm | Agent::VmhaCold => {
                let mut c = Command::new(bin());
                c.arg("fence");
                c
            }
        };
        cmd.env_clear_vmha()
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Runs `agent` with `action` on its stdin, to the end (killed past `NO_HANG`); `dir` is vmha's
    /// session directory.
    fn spawn(&self, agent: Agent, action: &str, dir: Option<&Path>) -> Reaped {
        let started = Instant::now();
        let mut child = self
            .command(agent)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", agent.label()));
        if let Some(mut pipe) = child.stdin.take() {
            // Dropping the pipe closes it: the agent sees the end of its input.
            let _ = pipe.write_all(self.stdin_lines(action, dir).as_bytes());
        }
        let pid = child.id() as libc::pid_t;
        let (done, finished) = std::sync::mpsc::channel::<()>();
        let watchdog = std::thread::spawn(move || {
            if finished.recv_timeout(NO_HANG) == Err(std::sync::mpsc::RecvTimeoutError::Timeout) {
                // SAFETY: the child has not been reaped (reap() has not returned), so the pid is still ours.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        });
        let r = reap(child, started);
        let _ = done.send(());
        let _ = watchdog.join();
        if r.code == -1 {
            panic!("{} {action} did not exit within {NO_HANG:?}: killed", agent.label());
        }
        r
    }

    fn power_state(&self) -> String {
        self.sim.vm(VM)["power_state"].as_str().unwrap_or_default().to_string()
    }

    /// Untimed: ends the session vmha kept in `dir`, so sessions do not pile up.
    fn logout(&self, dir: &Path) {
        let dir = dir.display().to_string();
        let r = self.sim.vmha(bin()).run(&["--session-dir", dir.as_str(), "logout"]);
        if r.code != 0 {
            println!("  ! vmha logout of {dir}: exit {}: {}", r.code, r.stderr.trim());
        }
    }

    /// Untimed: the VM's state each action starts from.
    fn prepare(&self, action: &str) {
        let want = match action {
            "on" => "poweredOff",
            "status" | "off" | "reboot" => "poweredOn",
            _ => return,
        };
        if self.power_state() == want {
            return;
        }
        if want == "poweredOff" {
            self.sim.guest_shutdown(VM);
            self.sim
                .wait_vm(VM, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");
        } else {
            let r = self.sim.vmha(bin()).run(&["start", "--name", VM, "--host", H1]);
            assert_eq!(r.code, 0, "preparing: vmha start {VM}: {}", r.stderr);
        }
    }

    /// One measured run, with the simulator's counts for it alone, judged against the simulator.
    fn run(&self, agent: Agent, action: &str) -> Sample {
        let dir = match agent {
            Agent::VmhaWarm => Some(self.warm_dir()),
            Agent::VmhaCold => {
                self.cold_runs.set(self.cold_runs.get() + 1);
                Some(self.scratch.join(format!("cold-{}", self.cold_runs.get())))
            }
            Agent::Soap => None,
        };
        self.sim.reset_stats();
        std::thread::sleep(SETTLE);
        let r = self.spawn(agent, action, dir.as_deref());
        let stats = self.sim.stats();
        if let (Agent::VmhaCold, Some(d)) = (agent, &dir) {
            self.logout(d);
            let _ = std::fs::remove_dir_all(d);
        }
        let count = |m: &str| stats["by_method"][m].as_u64().unwrap_or(0);
        let got: Vec<(String, u64)> = stats["by_method"]
            .as_object()
            .map(|m| {
                m.iter()
                    .filter_map(|(k, v)| Some((k.strip_prefix("GET ")?.to_string(), v.as_u64()?)))
                    .collect()
            })
            .unwrap_or_default();
        // What the GETs carried, from the served files' sizes (vim-types.xsd is served a little larger).
        let get_bytes = got
            .iter()
            .map(|(name, n)| {
                n * self
                    .wsdl
                    .and_then(|d| std::fs::metadata(d.join(name)).ok())
                    .map_or(0, |m| m.len())
            })
            .sum();
        let (ok, why) = self.judge(action, &r);
        Sample {
            ok,
            why,
            requests: stats["total"].as_u64().unwrap_or(0),
            gets: got.iter().map(|(_, n)| n).sum(),
            get_bytes,
            logins: count("Login"),
            connections: stats["connections"].as_u64().unwrap_or(0),
            r,
        }
    }

    fn judge(&self, action: &str, r: &Reaped) -> (bool, String) {
        let want_state = match action {
            "off" => Some("poweredOff"),
            "on" | "reboot" | "status" => Some("poweredOn"),
            _ => None,
        };
        if r.code != 0 {
            return (false, format!("exit {}", r.code));
        }
        if action == "list" && !r.stdout.lines().any(|l| l.starts_with(&format!("{VM},"))) {
            return (false, format!("no line `{VM},...` in the list"));
        }
        if let Some(want) = want_state {
            let got = self.power_state();
            if got != want {
                return (false, format!("exit 0, but the simulator shows {VM} {got}"));
            }
        }
        (true, String::new())
    }
}

// ---- the table ------------------------------------------------------------------------------

type Table = BTreeMap<(String, Agent), Vec<Sample>>;

fn ok_samples<'a>(table: &'a Table, action: &str, agent: Agent) -> Vec<&'a Sample> {
    table
        .get(&(action.to_string(), agent))
        .map(|v| v.iter().filter(|s| s.ok).collect())
        .unwrap_or_default()
}

fn median_of(table: &Table, action: &str, agent: Agent, f: impl Fn(&Sample) -> Duration) -> Option<Duration> {
    median(&ok_samples(table, action, agent).into_iter().map(f).collect::<Vec<_>>())
}

fn print_table(table: &Table, actions: &[String], agents: &[Agent]) {
    println!(
        "  {:<7} {:<21} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6} {:>5} {:>6} {:>6} {:>5}",
        "action",
        "agent",
        "median ms",
        "min ms",
        "max ms",
        "CPU ms",
        "RSS MiB",
        "reqs",
        "GETs",
        "Logins",
        "conns",
        "fail"
    );
    for action in actions {
        for &a in agents {
            let Some(all) = table.get(&(action.clone(), a)) else {
                continue;
            };
            let ok = ok_samples(table, action, a);
            let f = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}", ms(d)));
            let walls: Vec<Duration> = ok.iter().map(|s| s.r.wall).collect();
            println!(
                "  {:<7} {:<21} {:>9} {:>9} {:>9} {:>8} {:>8} {:>6} {:>5} {:>6} {:>6} {:>5}",
                action,
                a.label(),
                f(median(&walls)),
                f(walls.iter().min().copied()),
                f(walls.iter().max().copied()),
                f(median_of(table, action, a, |s| s.r.cpu)),
                median(&ok.iter().map(|s| s.r.rss_kib).collect::<Vec<_>>())
                    .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                measure::range(ok.iter().map(|s| s.requests)),
                measure::range(ok.iter().map(|s| s.gets)),
                measure::range(ok.iter().map(|s| s.logins)),
                measure::range(ok.iter().map(|s| s.connections)),
                all.len() - ok.len()
            );
            if let Some(bad) = all.iter().find(|s| !s.ok) {
                let tail: Vec<&str> = bad.r.stderr.lines().rev().take(3).collect();
                println!(
                    "      ! {}: {}",
                    bad.why,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
        }
    }
}

fn print_ratios(table: &Table, actions: &[String], agents: &[Agent]) {
    if !agents.contains(&Agent::Soap) {
        return;
    }
    for action in actions {
        let mut parts = vec![];
        for &v in agents.iter().filter(|&&a| a != Agent::Soap) {
            let ratio = |f: fn(&Sample) -> Duration| {
                let s = median_of(table, action, Agent::Soap, f)?;
                let v = median_of(table, action, v, f)?;
                Some(s.as_secs_f64() / v.as_secs_f64().max(1e-6))
            };
            let x = |r: Option<f64>| {
                r.map_or("-".into(), |r| {
                    if r < 10.0 {
                        format!("{r:.1}x")
                    } else {
                        format!("{r:.0}x")
                    }
                })
            };
            parts.push(format!(
                "{} wall {}, CPU {}",
                v.label(),
                x(ratio(|s| s.r.wall)),
                x(ratio(|s| s.r.cpu))
            ));
        }
        println!("  fence_vmware_soap / {:<7} {}", action.clone() + ":", parts.join("; "));
    }
}

/// What starting each agent costs before it talks to a server (median of `runs`): `vmha --version`,
/// `fence_vmware_soap -o metadata` (Python, suds, requests and fencing.py imported).
fn print_floor(soap: Option<&Path>, runs: usize) {
    let mut parts = vec![];
    let mut time = |label: String, mut cmd: Command| {
        let mut walls = vec![];
        for _ in 0..runs {
            cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
            let started = Instant::now();
            match cmd.spawn() {
                Ok(child) => walls.push(reap(child, started).wall),
                Err(e) => {
                    parts.push(format!("{label}: cannot start: {e}"));
                    return;
                }
            }
        }
        if let Some(m) = median(&walls) {
            parts.push(format!("{label} {:.1} ms", ms(m)));
        }
    };
    let mut v = Command::new(bin());
    v.arg("--version");
    time("vmha --version".into(), v);
    if let Some(p) = soap {
        let mut c = Command::new(p);
        c.args(["-o", "metadata"]);
        time("fence_vmware_soap -o metadata".into(), c);
    }
    println!("  process start-up alone (median, no server): {}", parts.join(", "));
}

/// The machine's load average: the figures are only as quiet as the machine was.
fn print_load(when: &str) {
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        let l: Vec<&str> = l.split_whitespace().take(3).collect();
        println!(
            "  load average {when}: {} (1, 5, 15 min) on {} CPUs",
            l.join(" "),
            std::thread::available_parallelism().map_or(0, |n| n.get())
        );
    }
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test` and `--list`: nothing to do.
        return;
    }
    let runs: usize = env_or("VMHA_BENCH_RUNS", 10).max(1);
    let actions: Vec<String> = env_or("VMHA_BENCH_FENCE_ACTIONS", DEFAULT_ACTIONS.to_string())
        .split(',')
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .collect();
    for a in &actions {
        assert!(
            DEFAULT_ACTIONS.split(',').any(|x| x == a),
            "VMHA_BENCH_FENCE_ACTIONS: unknown action {a:?} (known: {DEFAULT_ACTIONS})"
        );
    }

    println!("vmha fence side by side with fence_vmware_soap against the extended vcsim (issue 14)");
    let vmha = probe_vmha();
    let soap = probe_soap().and_then(|p| wsdl_dir().map(|d| (p, d)));
    match &vmha {
        Ok(()) => println!("  vmha:              {} fence", bin().display()),
        Err(e) => println!("  vmha:              SKIPPED: {e}"),
    }
    match &soap {
        Ok((p, d)) => println!(
            "  fence_vmware_soap: {} (the simulator serves the WSDL of {})",
            p.display(),
            d.display()
        ),
        Err(e) => println!("  fence_vmware_soap: SKIPPED: {e}"),
    }
    let mut agents = vec![];
    if vmha.is_ok() {
        agents.extend([Agent::VmhaWarm, Agent::VmhaCold]);
    }
    if soap.is_ok() {
        agents.push(Agent::Soap);
    }
    if agents.is_empty() {
        println!("SKIPPED: neither agent can run here (see above)");
        return;
    }

    sim::binary(); // build the simulator first, so its build time is not in any figure
    print_load("before");
    let sim = match &soap {
        Ok((_, dir)) => Sim::start_with("vcenter", &["--wsdl-dir", &dir.display().to_string()]),
        Err(_) => Sim::start("vcenter"),
    };
    let port = sim
        .ready("url")
        .rsplit_once(':')
        .and_then(|(_, rest)| rest.split('/').next())
        .expect("the simulator's url has a port")
        .to_string();
    let scratch = tempfile::Builder::new()
        .prefix("vmha-fence-bench-")
        .tempdir()
        .expect("temporary directory");
    let b = Bench {
        sim: &sim,
        soap: soap.as_ref().ok().map(|(p, _)| p.as_path()),
        wsdl: soap.as_ref().ok().map(|(_, d)| d.as_path()),
        port,
        scratch: scratch.path().to_path_buf(),
        cold_runs: std::cell::Cell::new(0),
    };
    println!(
        "  {VM} on {H1} of the default vCenter inventory; {runs} runs per agent and action, agents in rotating order;\n  both agents read `action=, ip=, ipport=, username=, password=, plug={VM}, ssl_secure=1` on stdin (vmha also `ca_file=, session_dir=`)"
    );
    println!(
        "  median wall time (spawn to exit), median CPU time (user+system) and peak RSS (wait4); per call: requests to the simulator (SOAP + GETs), GETs, Logins, TCP connections (range over runs)"
    );
    if vmha.is_ok() {
        // Fill vmha's session cache: the state a fence agent is in after its first call.
        b.prepare("status");
        let r = b.spawn(Agent::VmhaWarm, "status", Some(&b.warm_dir()));
        if r.code != 0 {
            println!("  ! filling vmha's session cache: exit {}: {}", r.code, r.stderr.trim());
        }
    }

    let mut table = Table::new();
    for run in 0..runs {
        for action in &actions {
            for agent in rotated(&agents, run) {
                b.prepare(action);
                let s = b.run(agent, action);
                table.entry((action.clone(), agent)).or_default().push(s);
            }
        }
    }
    println!();
    print_table(&table, &actions, &agents);
    print_ratios(&table, &actions, &agents);
    if let Some(s) = ok_samples(&table, &actions[0], Agent::Soap).first() {
        println!(
            "  fence_vmware_soap downloads the WSDL and schema on every call: {} GETs, {:.1} MB",
            s.gets,
            s.get_bytes as f64 / 1e6
        );
    }
    print_floor(b.soap, runs);
    print_load("after");
    if vmha.is_ok() {
        b.logout(&b.warm_dir());
    }
}
