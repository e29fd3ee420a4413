//! Issue 9's side-by-side benchmark: vmha against two independent peers, a small govmomi program
//! (`benches/peers/govmomi`, built offline from Debian's golang-github-vmware-govmomi-dev as the
//! simulator is) and a pyVmomi script (`benches/peers/pyvmomi_peer.py`, pyVmomi 9.1.1 from PyPI), on the
//! same extended vcsim in one run, alternating (vmha, govmomi, pyVmomi, vmha, ...). It prints median wall
//! times, ratios, SOAP requests and Logins per call (the simulator's `/stats`), TCP connections per
//! process, peak RSS per child (wait4), and a PASS/FAIL line per done-when bound. A FAIL is reported,
//! never fatal. Nothing printed is hard-coded: every figure is measured in this run.
//!
//! Run: `cargo bench --bench side_by_side` (without `--bench`, e.g. under `cargo test`, it returns at once).
//!
//! Sections:
//! * (a) one-shot `status`, `start` (registered, powered off, on this host), `stop` (guest shutdown) and
//!   `monitor` of `DC0_C0_RP0_VM0` on the default inventory.
//! * (b) `status` by name, vmx and uuid at each inventory size (registered VMs; the default inventory has
//!   4, so size N starts the simulator with `--vms N-4`, and the VM asked for is the last one added).
//! * (c) a cluster-like loop: 20 resources (`bench-vm-00001..20`, started first with `vmha start` on the
//!   host each one is on), each monitored with `vmha monitor --name X --host H` every 2 s, the 20 of a
//!   round concurrently, all sharing one session directory as 20 Pacemaker resources of one node would.
//!
//! vmha runs as: "warm" (`--session-dir` already holding a session and the VM's lookup), "cold" (a new,
//! empty `--session-dir` per call: one Login, kept; the session is logged out untimed afterwards) and
//! "no cache" (`--no-session-cache`: Login and Logout per call, as the peers do).
//!
//! Environment:
//! * `VMHA_BENCH_RUNS` runs per client and command (default 11).
//! * `VMHA_BENCH_SIZES` inventory sizes for (b) (default `10,500,5000`; each at least 5).
//! * `VMHA_BENCH_LOOP_SECS` length of the loop (c) in seconds (default 300).
//! * `VMHA_BENCH_SECTIONS` which sections to run (default `a,b,c`).
//! * `VMHA_BENCH_PYTHON` a python that has pyVmomi; otherwise the bench makes `target/pyvmomi-venv` with
//!   `pip install pyvmomi==9.1.1` (network on first use). `VMHA_BENCH_PYTHON=none` leaves pyVmomi out.
//! * `VMHA_SIM_GOPATH` the GOPATH for the simulator and the govmomi peer (default `/usr/share/gocode`).

#[path = "support/measure.rs"]
pub mod measure;
#[path = "../tests/support/run.rs"]
pub mod run;
#[path = "../tests/support/sim.rs"]
pub mod sim;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use measure::{env_or, median, ms, percentile, reap, rotated, target_dir};
use sim::Sim;

const VM: &str = "DC0_C0_RP0_VM0";
const H1: &str = "DC0_C0_H0";
const DEFAULT_VMS: usize = 4;
const LOOP_RESOURCES: usize = 20;
const LOOP_INTERVAL: Duration = Duration::from_secs(2);
/// Quiet time before each measured run (see `Bench::run`).
const SETTLE: Duration = Duration::from_millis(50);

fn bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_vmha"))
}

// ---- the peers ---------------------------------------------------------------------

/// Builds `benches/peers/govmomi` into `target/govmomi-peer` when a source is newer than the binary.
fn build_govmomi_peer() -> Result<PathBuf, String> {
    let manifest = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let src = manifest.join("benches/peers/govmomi/main.go");
    let out = target_dir().join("govmomi-peer");
    let newer = |a: &Path, b: &Path| -> bool {
        match (
            fs::metadata(a).and_then(|m| m.modified()),
            fs::metadata(b).and_then(|m| m.modified()),
        ) {
            (Ok(a), Ok(b)) => a > b,
            _ => true,
        }
    };
    if out.is_file() && !newer(&src, &out) {
        return Ok(out);
    }
    let gopath = std::env::var_os("VMHA_SIM_GOPATH").unwrap_or_else(|| "/usr/share/gocode".into());
    let started = Instant::now();
    let o = Command::new("go")
        .args(["build", "-o"])
        .arg(&out)
        .arg("./benches/peers/govmomi")
        .current_dir(&manifest)
        .env("GO111MODULE", "off")
        .env("GOPATH", gopath)
        .env("GOCACHE", target_dir().join("go-cache"))
        .env("GOFLAGS", "")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run go: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "go build ./benches/peers/govmomi failed: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    eprintln!("[bench] built {} in {:.1?}", out.display(), started.elapsed());
    Ok(out)
}

/// A python that imports pyVmomi: `VMHA_BENCH_PYTHON`, or `target/pyvmomi-venv` (made on first use).
fn pyvmomi_python() -> Result<PathBuf, String> {
    let imports = |py: &Path| {
        Command::new(py)
            .args(["-c", "import pyVmomi"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    };
    if let Some(py) = std::env::var_os("VMHA_BENCH_PYTHON") {
        if py == "none" {
            return Err("VMHA_BENCH_PYTHON=none".into());
        }
        let py = PathBuf::from(py);
        return if imports(&py) {
            Ok(py)
        } else {
            Err(format!("{} cannot import pyVmomi", py.display()))
        };
    }
    let venv = target_dir().join("pyvmomi-venv");
    let py = venv.join("bin/python");
    if py.is_file() && imports(&py) {
        return Ok(py);
    }
    eprintln!("[bench] making {} with pyvmomi==9.1.1 from PyPI ...", venv.display());
    let ok = Command::new("python3")
        .args(["-m", "venv"])
        .arg(&venv)
        .status()
        .is_ok_and(|s| s.success())
        && Command::new(venv.join("bin/pip"))
            .args(["install", "-q", "pyvmomi==9.1.1"])
            .status()
            .is_ok_and(|s| s.success());
    if ok && imports(&py) {
        Ok(py)
    } else {
        Err(format!(
            "could not install pyvmomi==9.1.1 into {} (python3 -m venv, pip); set VMHA_BENCH_PYTHON",
            venv.display()
        ))
    }
}

// ---- clients and one measured run ------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Client {
    VmhaWarm,
    VmhaCold,
    VmhaNoCache,
    Govmomi,
    Pyvmomi,
}

impl Client {
    fn label(self) -> &'static str {
        match self {
            Client::VmhaWarm => "vmha warm",
            Client::VmhaCold => "vmha cold",
            Client::VmhaNoCache => "vmha no cache",
            Client::Govmomi => "govmomi",
            Client::Pyvmomi => "pyVmomi",
        }
    }
    fn is_vmha(self) -> bool {
        matches!(self, Client::VmhaWarm | Client::VmhaCold | Client::VmhaNoCache)
    }
}

struct Peers {
    govmomi: Result<PathBuf, String>,
    python: Result<PathBuf, String>,
}

impl Peers {
    /// The clients that can run here, in the order they alternate.
    fn clients(&self, vmha: &[Client]) -> Vec<Client> {
        let mut out = vmha.to_vec();
        if self.govmomi.is_ok() {
            out.push(Client::Govmomi);
        }
        if self.python.is_ok() {
            out.push(Client::Pyvmomi);
        }
        out
    }
}

/// What one child did.
struct Sample {
    wall: Duration,
    rss_kib: u64,
    code: i32,
    stderr: String,
    requests: u64,
    logins: u64,
    connections: u64,
}

/// One simulator and the ways to run each client against it.
struct Bench<'a> {
    sim: &'a Sim,
    peers: &'a Peers,
    /// The warm session directory (one per simulator).
    warm_dir: PathBuf,
    scratch: PathBuf,
    cold_counter: std::cell::Cell<u64>,
}

impl<'a> Bench<'a> {
    fn new(sim: &'a Sim, peers: &'a Peers, scratch: &Path) -> Bench<'a> {
        let stamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let scratch = scratch.join(format!("sim-{stamp}"));
        fs::create_dir_all(&scratch).expect("scratch dir");
        Bench {
            sim,
            peers,
            warm_dir: scratch.join("warm"),
            scratch,
            cold_counter: std::cell::Cell::new(0),
        }
    }

    fn vmha_with_dir(&self, dir: Option<&Path>) -> run::Vmha {
        let mut v = self.sim.vmha(bin());
        match dir {
            Some(d) => {
                v.flags.push("--session-dir".into());
                v.flags.push(d.display().to_string());
            }
            None => v.flags.push("--no-session-cache".into()),
        }
        v
    }

    fn peer_command(&self, client: Client) -> Command {
        let mut cmd = match client {
            Client::Govmomi => Command::new(self.peers.govmomi.as_ref().expect("govmomi peer")),
            Client::Pyvmomi => {
                let mut c = Command::new(self.peers.python.as_ref().expect("pyVmomi"));
                c.arg(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("benches/peers/pyvmomi_peer.py"));
                c
            }
            _ => unreachable!("not a peer"),
        };
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("VMHA_") {
                cmd.env_remove(k);
            }
        }
        cmd.env("VMHA_URL", self.sim.ready("url"))
            .env("VMHA_USER", self.sim.ready("user"))
            .env("VMHA_PASSWORD", self.sim.ready("password"))
            .arg("--ca-file")
            .arg(self.sim.ready("ca_file"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        cmd
    }

    /// Starts `client ARGS` and waits for it; `dir` is the session directory of a vmha client.
    fn spawn_and_reap(&self, client: Client, args: &[&str], dir: Option<&Path>) -> measure::Reaped {
        let started = Instant::now();
        let child = if client.is_vmha() {
            self.vmha_with_dir(dir).spawn(args).child
        } else {
            self.peer_command(client)
                .args(args)
                .spawn()
                .unwrap_or_else(|e| panic!("cannot start {}: {e}", client.label()))
        };
        reap(child, started)
    }

    /// One measured run, with the simulator's counts for it alone.
    fn run(&self, client: Client, args: &[&str]) -> Sample {
        let cold_dir = (client == Client::VmhaCold).then(|| {
            let n = self.cold_counter.get() + 1;
            self.cold_counter.set(n);
            self.scratch.join(format!("cold-{n}"))
        });
        let dir = match client {
            Client::VmhaWarm => Some(self.warm_dir.as_path()),
            Client::VmhaCold => cold_dir.as_deref(),
            _ => None,
        };
        self.sim.reset_stats();
        // Every client starts on a quiet machine: the previous run's work (a pyVmomi process's exit, the
        // simulator's garbage collection, a guest shutdown's tail) must not land on the next one's clock.
        std::thread::sleep(SETTLE);
        let measure::Reaped {
            wall,
            rss_kib,
            code,
            stderr,
            ..
        } = self.spawn_and_reap(client, args, dir);
        let stats = self.sim.stats();
        if let Some(d) = &cold_dir {
            // Untimed: end the session the cold call kept, so sessions do not pile up.
            let _ = self.vmha_with_dir(Some(d)).run(&["logout"]);
            let _ = fs::remove_dir_all(d);
        }
        Sample {
            wall,
            rss_kib,
            code,
            stderr,
            requests: stats["total"].as_u64().unwrap_or(0),
            logins: stats["by_method"]["Login"].as_u64().unwrap_or(0),
            connections: stats["connections"].as_u64().unwrap_or(0),
        }
    }

    /// Untimed vmha call through the warm directory (fills it, or prepares the VM's state).
    fn prepare(&self, args: &[&str]) {
        let r = self.vmha_with_dir(Some(&self.warm_dir)).run(args);
        if r.code != 0 {
            eprintln!(
                "[bench] preparing with vmha {}: exit {}\n{}",
                args.join(" "),
                r.code,
                r.stderr
            );
        }
    }

    fn power_off(&self, vm: &str) {
        if self.sim.vm(vm)["power_state"] == "poweredOn" {
            self.sim.guest_shutdown(vm);
            self.sim
                .wait_vm(vm, Duration::from_secs(20), |v| v["power_state"] == "poweredOff");
        }
    }

    fn power_on(&self, vm: &str, host: &str) {
        if self.sim.vm(vm)["power_state"] != "poweredOn" {
            self.prepare(&["start", "--name", vm, "--host", host]);
        }
    }
}

// ---- statistics and printing -------------------------------------------------------------

/// All samples of one (command, client).
#[derive(Default)]
struct Series(Vec<Sample>);

impl Series {
    fn ok(&self) -> impl Iterator<Item = &Sample> {
        self.0.iter().filter(|s| s.code == 0)
    }
    fn failures(&self) -> usize {
        self.0.iter().filter(|s| s.code != 0).count()
    }
    fn median_wall(&self) -> Option<Duration> {
        median(&self.ok().map(|s| s.wall).collect::<Vec<_>>())
    }
    fn median_rss_kib(&self) -> Option<u64> {
        median(&self.ok().map(|s| s.rss_kib).collect::<Vec<_>>())
    }
    fn max_of(&self, f: impl Fn(&Sample) -> u64) -> Option<u64> {
        self.ok().map(f).max()
    }
    fn range(&self, f: impl Fn(&Sample) -> u64) -> String {
        measure::range(self.ok().map(f))
    }
}

type Table = BTreeMap<(String, Client), Series>;

fn print_table(table: &Table, commands: &[String], clients: &[Client]) {
    println!(
        "  {:<22} {:<14} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6} {:>9} {:>5}",
        "command", "client", "median ms", "min ms", "max ms", "reqs", "Logins", "conns", "RSS MiB", "fail"
    );
    for cmd in commands {
        for &c in clients {
            let Some(s) = table.get(&(cmd.clone(), c)) else {
                continue;
            };
            let walls: Vec<Duration> = s.ok().map(|x| x.wall).collect();
            let f = |d: Option<Duration>| d.map_or("-".into(), |d| format!("{:.1}", ms(d)));
            println!(
                "  {:<22} {:<14} {:>9} {:>9} {:>9} {:>6} {:>6} {:>6} {:>9} {:>5}",
                cmd,
                c.label(),
                f(s.median_wall()),
                f(walls.iter().min().copied()),
                f(walls.iter().max().copied()),
                s.range(|x| x.requests),
                s.range(|x| x.logins),
                s.range(|x| x.connections),
                s.median_rss_kib()
                    .map_or("-".into(), |k| format!("{:.1}", k as f64 / 1024.0)),
                s.failures()
            );
            if let Some(bad) = s.0.iter().find(|x| x.code != 0) {
                let tail: Vec<&str> = bad.stderr.lines().rev().take(3).collect();
                println!(
                    "      ! exit {}: {}",
                    bad.code,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                );
            }
        }
    }
}

fn ratio(table: &Table, cmd: &str, a: Client, b: Client) -> Option<f64> {
    let x = table.get(&(cmd.to_string(), a))?.median_wall()?;
    let y = table.get(&(cmd.to_string(), b))?.median_wall()?;
    Some(x.as_secs_f64() / y.as_secs_f64())
}

fn print_ratios(table: &Table, commands: &[String], vmha: &[Client], peers: &[Client]) {
    for cmd in commands {
        let mut parts = vec![];
        for &v in vmha {
            for &p in peers {
                if let Some(r) = ratio(table, cmd, v, p) {
                    parts.push(format!("{}/{} {:.2}x", v.label(), p.label(), r));
                }
            }
        }
        if !parts.is_empty() {
            println!("  ratio {:<22} {}", cmd, parts.join(", "));
        }
    }
}

/// The done-when lines, gathered from every section and printed at the end.
#[derive(Default)]
struct Verdicts(Vec<(bool, String)>);

impl Verdicts {
    fn check(&mut self, pass: Option<bool>, what: String) {
        match pass {
            Some(p) => self.0.push((p, what)),
            None => self.0.push((false, format!("{what} (not measured)"))),
        }
    }
    fn print(&self) {
        println!("\nDone-when bounds (issue 9), measured in this run:");
        for (pass, what) in &self.0 {
            println!("  {} {what}", if *pass { "PASS" } else { "FAIL" });
        }
    }
}

// ---- (a) one-shot commands --------------------------------------------------------------

fn section_a(peers: &Peers, runs: usize, scratch: &Path, verdicts: &mut Verdicts) {
    println!(
        "\n(a) One-shot commands on the default vCenter inventory ({DEFAULT_VMS} VMs), {VM} on {H1}, {runs} runs each"
    );
    let sim = Sim::start("vcenter");
    let b = Bench::new(&sim, peers, scratch);
    let vmha = [Client::VmhaWarm, Client::VmhaCold, Client::VmhaNoCache];
    let clients = peers.clients(&vmha);
    let by = ["--name", VM];
    let cmds: Vec<(String, Vec<&str>)> = vec![
        ("status".into(), [&["status"][..], &by].concat()),
        (
            "start (powered off)".into(),
            [&["start"][..], &by, &["--host", H1]].concat(),
        ),
        ("monitor".into(), [&["monitor"][..], &by, &["--host", H1]].concat()),
        (
            "stop (guest shutdown)".into(),
            [&["stop"][..], &by, &["--host", H1]].concat(),
        ),
    ];
    b.prepare(&["status", "--name", VM]); // the warm directory: a session and the VM's lookup
    let table = measure_rounds(&b, &cmds, &clients, &vmha, runs, |name| match name {
        "start (powered off)" => b.power_off(VM),
        "stop (guest shutdown)" | "monitor" => b.power_on(VM, H1),
        _ => {}
    });

    print_floor(&b, runs);

    let r = ratio(&table, "status", Client::VmhaWarm, Client::Govmomi);
    verdicts.check(
        r.map(|r| r <= 0.35),
        format!(
            "one-shot status, warm cache, at <= 0.35x govmomi's wall time: {}",
            r.map_or("-".into(), |r| format!("{r:.2}x"))
        ),
    );
    let reqs = |cmd: &str, c: Client| table.get(&(cmd.to_string(), c)).and_then(|s| s.max_of(|x| x.requests));
    for (cmd, c, bound, what) in [
        (
            "start (powered off)",
            Client::VmhaCold,
            10,
            "start of a registered powered-off VM, cold cache",
        ),
        (
            "start (powered off)",
            Client::VmhaWarm,
            8,
            "start of a registered powered-off VM, warm cache",
        ),
        ("stop (guest shutdown)", Client::VmhaWarm, 8, "stop, warm cache"),
        ("monitor", Client::VmhaWarm, 3, "one-shot monitor, warm cache"),
    ] {
        let n = reqs(cmd, c);
        verdicts.check(
            n.map(|n| n <= bound),
            format!(
                "{what}: <= {bound} requests: {} (most in {runs} runs)",
                n.map_or("-".into(), |n| n.to_string())
            ),
        );
    }
    if let Some(n) = reqs("start (powered off)", Client::VmhaNoCache) {
        println!("  (start without the cache, Login and Logout included: at most {n} requests)");
    }
    let conns: Vec<u64> = table
        .iter()
        .filter(|((_, c), _)| c.is_vmha())
        .flat_map(|(_, s)| s.ok().map(|x| x.connections))
        .collect();
    verdicts.check(
        (!conns.is_empty()).then(|| conns.iter().all(|&n| n == 1)),
        format!(
            "one TCP connection per vmha process: {} vmha runs, connections per run {:?}",
            conns.len(),
            conns.iter().collect::<std::collections::BTreeSet<_>>()
        ),
    );
}

/// Runs every command `runs` times for every client, the clients in a rotating order, each run after
/// `before(command name)` has prepared the simulator; prints the table and the vmha/peer ratios.
fn measure_rounds(
    b: &Bench,
    cmds: &[(String, Vec<&str>)],
    clients: &[Client],
    vmha: &[Client],
    runs: usize,
    before: impl Fn(&str),
) -> Table {
    let mut table = Table::new();
    for run in 0..runs {
        for (name, args) in cmds {
            for c in rotated(clients, run) {
                before(name);
                let s = b.run(c, args);
                table.entry((name.clone(), c)).or_default().0.push(s);
            }
        }
    }
    let names: Vec<String> = cmds.iter().map(|(n, _)| n.clone()).collect();
    print_table(&table, &names, clients);
    let peer_clients: Vec<Client> = clients.iter().copied().filter(|c| !c.is_vmha()).collect();
    print_ratios(&table, &names, vmha, &peer_clients);
    table
}

/// What starting each program costs before it talks to a server: `vmha --version`, the govmomi peer
/// without a command (usage error, exit 2), pyVmomi's `import pyVmomi`.
fn print_floor(b: &Bench, runs: usize) {
    let mut parts = vec![];
    let mut time = |label: &str, mut cmd: Command| {
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
    time("vmha --version", v);
    if let Ok(g) = &b.peers.govmomi {
        time("govmomi peer (usage error)", Command::new(g));
    }
    if let Ok(py) = &b.peers.python {
        let mut c = Command::new(py);
        c.args(["-c", "import pyVmomi"]);
        time("python -c 'import pyVmomi'", c);
    }
    println!("  process start-up alone (median, no server): {}", parts.join(", "));
}

// ---- (b) lookups at inventory sizes -------------------------------------------------------

fn section_b(peers: &Peers, runs: usize, sizes: &[usize], scratch: &Path, verdicts: &mut Verdicts) {
    println!(
        "\n(b) status by name, vmx and uuid at {sizes:?} registered VMs ({DEFAULT_VMS} of the default inventory + --vms N-{DEFAULT_VMS}; the VM asked for is the last added), {runs} runs each"
    );
    let vmha = [Client::VmhaWarm, Client::VmhaCold, Client::VmhaNoCache];
    let clients = peers.clients(&vmha);
    let mut by_name_warm: BTreeMap<usize, (Option<Duration>, Option<u64>)> = BTreeMap::new();
    for &size in sizes {
        let extra = size.saturating_sub(DEFAULT_VMS).max(1);
        let started = Instant::now();
        let sim = Sim::start_with("vcenter", &["--vms", &extra.to_string()]);
        let startup = started.elapsed();
        let b = Bench::new(&sim, peers, scratch);
        let vm = format!("bench-vm-{extra:05}");
        let info = sim.vm(&vm);
        let vmx = info["vmx"].as_str().unwrap_or_default().to_string();
        let uuid = info["uuid"].as_str().unwrap_or_default().to_string();
        println!(
            "\n  {} VMs (simulator --vms {extra}, started in {:.1} s), VM {vm}",
            DEFAULT_VMS + extra,
            startup.as_secs_f64()
        );
        let cmds: Vec<(String, Vec<&str>)> = vec![
            ("status --name".into(), vec!["status", "--name", &vm]),
            ("status --vmx".into(), vec!["status", "--vmx", &vmx]),
            ("status --uuid".into(), vec!["status", "--uuid", &uuid]),
        ];
        // Warm: a session, and each way of naming the VM looked up once.
        for (_, args) in &cmds {
            b.prepare(args);
        }
        let table = measure_rounds(&b, &cmds, &clients, &vmha, runs, |_| {});
        let s = table.get(&("status --name".to_string(), Client::VmhaWarm));
        by_name_warm.insert(
            DEFAULT_VMS + extra,
            (s.and_then(|s| s.median_wall()), s.and_then(|s| s.max_of(|x| x.rss_kib))),
        );
        let cold = table.get(&("status --name".to_string(), Client::VmhaCold));
        if let Some(k) = cold.and_then(|s| s.max_of(|x| x.rss_kib)) {
            println!(
                "  vmha cold status --name: peak RSS at most {:.1} MiB",
                k as f64 / 1024.0
            );
        }
    }
    let (Some((&small, &(t_small, _))), Some((&large, &(t_large, rss_large)))) =
        (by_name_warm.iter().next(), by_name_warm.iter().next_back())
    else {
        return;
    };
    if small == large {
        return;
    }
    let r = t_small.zip(t_large).map(|(a, b)| b.as_secs_f64() / a.as_secs_f64());
    verdicts.check(
        r.map(|r| r <= 1.5),
        format!(
            "status --name, warm, at {large} VMs within 1.5x of its time at {small}: {}",
            r.map_or("-".into(), |r| format!("{r:.2}x"))
        ),
    );
    verdicts.check(
        rss_large.map(|k| k <= 10 * 1024),
        format!(
            "status --name, warm, at {large} VMs: peak RSS <= 10 MiB: {}",
            rss_large.map_or("-".into(), |k| format!(
                "{:.1} MiB (most in {runs} runs)",
                k as f64 / 1024.0
            ))
        ),
    );
}

// ---- (c) the cluster loop -------------------------------------------------------------------

fn section_c(peers: &Peers, loop_secs: u64, scratch: &Path, verdicts: &mut Verdicts) {
    println!(
        "\n(c) Cluster loop: {LOOP_RESOURCES} resources, each `vmha monitor --name X --host H` every {} s for {loop_secs} s, a round's {LOOP_RESOURCES} concurrently, one shared session directory",
        LOOP_INTERVAL.as_secs()
    );
    let sim = Sim::start_with("vcenter", &["--vms", &LOOP_RESOURCES.to_string()]);
    let b = Bench::new(&sim, peers, scratch);
    let resources: Vec<(String, String)> = (1..=LOOP_RESOURCES)
        .map(|i| {
            let vm = format!("bench-vm-{i:05}");
            let host = sim.vm(&vm)["host"].as_str().unwrap_or_default().to_string();
            (vm, host)
        })
        .collect();
    // Start them (not counted: its own session directory, logged out afterwards).
    let start_dir = b.scratch.join("start");
    for (vm, host) in &resources {
        let r = b
            .vmha_with_dir(Some(&start_dir))
            .run(&["start", "--name", vm, "--host", host]);
        if r.code != 0 {
            println!(
                "  ! vmha start {vm} --host {host}: exit {}: {}",
                r.code,
                r.stderr.trim()
            );
        }
    }
    let _ = b.vmha_with_dir(Some(&start_dir)).run(&["logout"]);

    let dir = b.scratch.join("node");
    let until = Instant::now() + Duration::from_secs(loop_secs);
    sim.reset_stats();
    let mut latencies = vec![];
    let mut rss = vec![];
    let mut failures: BTreeMap<i32, usize> = BTreeMap::new();
    let mut first_failure = None;
    let (mut rounds, mut late_rounds) = (0u64, 0u64);
    let mut next = Instant::now();
    while Instant::now() < until {
        let now = Instant::now();
        if now < next {
            std::thread::sleep(next - now);
        } else if rounds > 0 && now > next + Duration::from_millis(100) {
            late_rounds += 1;
        }
        next += LOOP_INTERVAL;
        rounds += 1;
        let handles: Vec<_> = resources
            .iter()
            .map(|(vm, host)| {
                let v = b.vmha_with_dir(Some(&dir));
                let args: Vec<OsString> = ["monitor", "--name", vm, "--host", host]
                    .iter()
                    .map(OsString::from)
                    .collect();
                std::thread::spawn(move || {
                    let started = Instant::now();
                    reap(v.spawn(&args).child, started)
                })
            })
            .collect();
        for h in handles {
            let r = h.join().expect("monitor thread");
            latencies.push(r.wall);
            rss.push(r.rss_kib);
            if r.code != 0 {
                *failures.entry(r.code).or_default() += 1;
                first_failure.get_or_insert(r.stderr);
            }
        }
    }
    let stats = sim.stats();
    let calls = latencies.len() as u64;
    let total = stats["total"].as_u64().unwrap_or(0);
    let logins = stats["by_method"]["Login"].as_u64().unwrap_or(0);
    let conns = stats["connections"].as_u64().unwrap_or(0);
    let nfail: usize = failures.values().sum();
    println!("  {rounds} rounds ({late_rounds} started late), {calls} monitor calls, {nfail} failed {failures:?}");
    if let Some(e) = first_failure {
        println!("  ! first failure: {}", e.trim().lines().last().unwrap_or_default());
    }
    println!(
        "  Logins {logins} in total; {total} SOAP requests = {:.2} per monitor call; {conns} TCP connections = {:.2} per call",
        total as f64 / calls.max(1) as f64,
        conns as f64 / calls.max(1) as f64
    );
    println!("  by method: {}", stats["by_method"]);
    println!(
        "  latency p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms; peak RSS median {:.1} MiB, max {:.1} MiB",
        ms(percentile(&latencies, 50.0)),
        ms(percentile(&latencies, 99.0)),
        ms(latencies.iter().max().copied().unwrap_or_default()),
        median(&rss).unwrap_or(0) as f64 / 1024.0,
        rss.iter().max().copied().unwrap_or(0) as f64 / 1024.0
    );
    verdicts.check(
        Some(logins == 1),
        format!("the {LOOP_RESOURCES}-resource loop makes exactly 1 Login in total: {logins} in {calls} calls"),
    );
    verdicts.check(
        Some(conns == calls),
        format!("one TCP connection per vmha process in the loop: {conns} connections for {calls} processes"),
    );
    let _ = b.vmha_with_dir(Some(&dir)).run(&["logout"]);
}

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        // `cargo test` and `--list`: nothing to do.
        return;
    }
    let runs: usize = env_or("VMHA_BENCH_RUNS", 11).max(1);
    let loop_secs: u64 = env_or("VMHA_BENCH_LOOP_SECS", 300);
    let sizes: Vec<usize> = env_or("VMHA_BENCH_SIZES", "10,500,5000".to_string())
        .split(',')
        .filter(|s| !s.trim().is_empty())
        .map(|s| s.trim().parse().expect("VMHA_BENCH_SIZES: numbers separated by commas"))
        .collect();
    let sections = env_or("VMHA_BENCH_SECTIONS", "a,b,c".to_string());
    let want = |s: &str| sections.split(',').any(|x| x.trim() == s);

    sim::binary(); // build the simulator first, so its build time is not in any figure
    let peers = Peers {
        govmomi: build_govmomi_peer(),
        python: pyvmomi_python(),
    };
    println!("vmha side by side with govmomi and pyVmomi against the extended vcsim (issue 9)");
    println!("  vmha:    {}", bin().display());
    match &peers.govmomi {
        Ok(p) => println!(
            "  govmomi: {} (benches/peers/govmomi, Debian's govmomi 0.24.2)",
            p.display()
        ),
        Err(e) => println!("  govmomi: SKIPPED: {e}"),
    }
    match &peers.python {
        Ok(p) => println!("  pyVmomi: {} benches/peers/pyvmomi_peer.py", p.display()),
        Err(e) => println!("  pyVmomi: SKIPPED: {e}"),
    }
    println!(
        "  median wall time per client (spawn to exit), SOAP requests / Logins / TCP connections per call (range over runs), median peak RSS"
    );
    let scratch = tempfile::Builder::new()
        .prefix("vmha-bench-")
        .tempdir()
        .expect("temporary directory");
    let mut verdicts = Verdicts::default();
    if want("a") {
        section_a(&peers, runs, scratch.path(), &mut verdicts);
    }
    if want("b") {
        section_b(&peers, runs, &sizes, scratch.path(), &mut verdicts);
    }
    if want("c") {
        section_c(&peers, loop_secs, scratch.path(), &mut verdicts);
    }
    verdicts.print();
}
