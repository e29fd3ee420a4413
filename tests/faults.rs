//! Fault-injection tier: the built `vmha` binary against the simulator behind our fault-injecting proxy
//! (`tests/support/faultproxy.rs`), plus server death (kill, freeze, restart) mid-command.
//!
//! One table (`cases()`), one runner. Every case asserts the exit code, the time to exit after the fault
//! (request timeout + 2 s unless stated), the cause named in the output, no password anywhere (stdout,
//! stderr at `-vv`, the `--record` directory) and balanced Login/Logout in the simulator's own statistics
//! wherever a session was opened and the server is still alive. Cases run in parallel worker threads,
//! each with its own simulator and proxy.

#[path = "support/faultproxy.rs"]
pub mod faultproxy;
#[path = "support/run.rs"]
pub mod run;
#[path = "support/sim.rs"]
pub mod sim;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use faultproxy::{Fault, FaultProxy, ProxyHandle, Rule};
use run::{Run, Vmha};
use sim::Sim;

/// The simulator's password (tests/vcsim/README.md), checked for in every output.
const PASSWORD: &str = "vmha-sim-password";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    VCenter,
    Esx,
}

impl Mode {
    fn as_str(self) -> &'static str {
        match self {
            Mode::VCenter => "vcenter",
            Mode::Esx => "esx",
        }
    }
}

/// Waits until the simulator reports `vm` in `power` state.
fn wait_power(sim: &Sim, vm: &str, power: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while sim.vm(vm)["power_state"] != power {
        assert!(Instant::now() < deadline, "{vm} did not become {power}: {}", sim.vm(vm));
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// `--request-timeout` for every case.
const TIMEOUT: u64 = 5;
/// A command must end within this long after the fault (request timeout + 2 s).
const BOUND: u64 = TIMEOUT + 2;
const WORKERS: usize = 6;

/// (a VM powered on, a VM the case powers off first, their host) in each mode.
fn vms(mode: Mode) -> (&'static str, &'static str, &'static str) {
    match mode {
        Mode::VCenter => ("DC0_H0_VM0", "DC0_H0_VM1", "DC0_H0"),
        Mode::Esx => ("ha-host_VM0", "ha-host_VM1", "localhost.localdomain"),
    }
}

const TIMED_OUT: &[&str] = &["timed out", "no answer within"];
const CUT: &[&str] = &[
    "connection closed",
    "connection reset",
    "connection was reset",
    "connection lost",
    "closed the connection",
    "cut",
    "incomplete",
    "end of file before",
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Cmd {
    Check,
    Status,
    Monitor,
    Start,
    Stop,
    /// `monitor --watch`; with `shutdown`, the guest shuts down 1 s after the fault and the watch must
    /// report it (exit 11) within the bound of that moment.
    Watch {
        shutdown: bool,
    },
}

impl Cmd {
    fn args(self, mode: Mode) -> Vec<&'static str> {
        let (on, off, host) = vms(mode);
        match self {
            Cmd::Check => vec!["check"],
            Cmd::Status => vec!["status", "--name", on],
            Cmd::Monitor => vec!["monitor", "--name", on, "--host", host],
            Cmd::Start => vec!["start", "--name", off, "--host", host, "--start-wait", "10"],
            Cmd::Stop => vec!["stop", "--name", on, "--host", host, "--stop-wait", "10"],
            Cmd::Watch { .. } => vec!["monitor", "--watch", "--name", on, "--host", host],
        }
    }
}

/// What happens at the Nth call.
#[derive(Clone)]
enum Act {
    Fault(Fault),
    /// SIGKILL the simulator, then forward (to nobody).
    Kill,
    /// SIGSTOP the simulator; SIGCONT after this many seconds (None: at the end of the case).
    Freeze(Option<u64>),
    /// Kill the simulator and start a fresh one behind the same proxy address.
    Restart,
    /// Expire every session on the simulator, then forward (a real NotAuthenticated).
    Expire,
}

#[derive(Clone)]
struct Inject {
    method: &'static str,
    nth: u64,
    times: u64,
    act: Act,
}

#[derive(Clone, Copy, Debug)]
enum Balance {
    /// Login == Logout.
    Check,
    /// The server cannot have seen a Logout (or may hold a session vmha never learned of): not checked.
    Skip,
}

#[derive(Clone)]
struct Case {
    name: &'static str,
    mode: Mode,
    cmd: Cmd,
    inject: Vec<Inject>,
    code: i32,
    /// At least one of these (case-insensitive) in stdout or stderr.
    cause: &'static [&'static str],
    /// None of these.
    forbid: &'static [&'static str],
    balance: Balance,
    /// Seconds from the fault (or from the watch's shutdown) to exit; without a fault, from the start.
    bound: u64,
    /// At most this many TCP connections to the server.
    connections: Option<u64>,
}

fn case(
    name: &'static str,
    cmd: Cmd,
    method: &'static str,
    nth: u64,
    act: Act,
    code: i32,
    cause: &'static [&'static str],
) -> Case {
    Case {
        name,
        mode: Mode::VCenter,
        cmd,
        inject: vec![Inject {
            method,
            nth,
            times: 1,
            act,
        }],
        code,
        cause,
        forbid: &[],
        balance: Balance::Check,
        bound: BOUND,
        connections: None,
    }
}

/// No fault at all: the command's own figures (exit, time, sessions, connections).
fn clean(name: &'static str, cmd: Cmd, code: i32, cause: &'static [&'static str], bound: u64) -> Case {
    Case {
        inject: Vec::new(),
        bound,
        ..case(name, cmd, "-", 1, Act::Fault(Fault::Pass), code, cause)
    }
}

impl Case {
    fn forbid(mut self, words: &'static [&'static str]) -> Case {
        self.forbid = words;
        self
    }
    fn no_balance(mut self) -> Case {
        self.balance = Balance::Skip;
        self
    }
    /// Against the simulator's ESXi (HostAgent) model instead of vCenter.
    fn esx(mut self) -> Case {
        self.mode = Mode::Esx;
        self
    }
    fn connections(mut self, n: u64) -> Case {
        self.connections = Some(n);
        self
    }
    fn times(mut self, times: u64) -> Case {
        self.inject[0].times = times;
        self
    }
}

fn f(fault: Fault) -> Act {
    Act::Fault(fault)
}

/// The live table: every case here passes today.
#[rustfmt::skip]
fn cases() -> Vec<Case> {
    use Act::{Expire, Freeze, Kill, Restart};
    use Cmd::*;
    const RSC: &str = "RetrieveServiceContent";
    const RPX: &str = "RetrievePropertiesEx";
    const WFU: &str = "WaitForUpdatesEx";
    let watch = Watch { shutdown: true };
    let watch_dies = Watch { shutdown: false };
    vec![
        // ---- no fault: the figures every fault case is compared with ----
        clean("check/no fault", Check, 0, &["apiType="], BOUND).connections(1),
        clean("status/no fault", Status, 0, &["poweredOn"], BOUND).connections(1),
        clean("monitor/no fault", Monitor, 0, &["healthy"], BOUND).connections(1),
        clean("stop/no fault", Stop, 0, &["stopped", "powered off"], 10 + 2).connections(1),
        // ---- check: transport faults on the first call (nothing logged in yet) ----
        case("check/refuse RSC", Check, RSC, 1, f(Fault::Refuse), 4, &["connect", "closed"]),
        case("check/stall RSC", Check, RSC, 1, f(Fault::Stall), 4, TIMED_OUT),
        case("check/headers-only RSC", Check, RSC, 1, f(Fault::HeadersOnly), 4, TIMED_OUT),
        case("check/drip RSC", Check, RSC, 1, f(Fault::Drip), 4, TIMED_OUT),
        // ---- check: answers that are not vim25 ----
        case("check/503 html RSC", Check, RSC, 1, f(Fault::Html503), 1, &["503"]),
        case("check/entity bomb RSC", Check, RSC, 1, f(Fault::EntityBomb), 1, &["document type", "DTD"]),
        case("check/xxe RSC", Check, RSC, 1, f(Fault::Xxe), 1, &["document type", "DTD"])
        .forbid(&["root:"]),
        case("check/oversize declared RSC", Check, RSC, 1, f(Fault::OversizeDeclared), 1, &["larger than"]),
        case("check/oversize chunked RSC", Check, RSC, 1, f(Fault::OversizeChunked), 1, &["larger than"]),
        case("check/deep nesting RSC", Check, RSC, 1, f(Fault::DeepNesting), 1, &["deeper than", "nesting"]),
        case("check/invalid utf-8 RSC", Check, RSC, 1, f(Fault::InvalidUtf8), 1, &["UTF-8"]),
        case("check/wrong element RSC", Check, RSC, 1, f(Fault::WrongResponse), 1, &["UnexpectedThing", "unexpected", "returnval"]),
        // ---- check: Login ----
        case("check/InvalidLogin Login", Check, "Login", 1, f(Fault::soap("InvalidLogin")), 3, &["InvalidLogin", "login"]),
        case("check/unknown fault Login", Check, "Login", 1, f(Fault::soap("VmhaMysteryFault")), 1, &["VmhaMysteryFault"]),
        case("check/stall Login", Check, "Login", 1, f(Fault::Stall), 4, TIMED_OUT).no_balance(),
        case("check/html 503 Login", Check, "Login", 1, f(Fault::Html503), 1, &["503"]),
        // ---- check: Logout (the answer is already printed) ----
        case("check/stall Logout", Check, "Logout", 1, f(Fault::Stall), 0, &["apiType="]),
        case("check/close Logout", Check, "Logout", 1, f(Fault::Close), 0, &["apiType="]),
        case("check/unknown fault Logout", Check, "Logout", 1, f(Fault::soap("VmhaMysteryFault")), 0, &["apiType="])
        .no_balance(),
        // ---- status: faults after login; the session must still be logged out ----
        case("status/refuse RPX#1", Status, RPX, 1, f(Fault::Refuse), 4, &["connect", "closed"]),
        case("status/stall RPX#1", Status, RPX, 1, f(Fault::Stall), 4, TIMED_OUT),
        case("status/headers-only RPX#2", Status, RPX, 2, f(Fault::HeadersOnly), 4, TIMED_OUT),
        case("status/503 html RPX#1", Status, RPX, 1, f(Fault::Html503), 1, &["503"]),
        case("status/entity bomb RPX#1", Status, RPX, 1, f(Fault::EntityBomb), 1, &["document type", "DTD"]),
        case("status/xxe RPX#2", Status, RPX, 2, f(Fault::Xxe), 1, &["document type", "DTD"])
        .forbid(&["root:"]),
        case("status/deep nesting RPX#2", Status, RPX, 2, f(Fault::DeepNesting), 1, &["deeper than", "nesting"]),
        case("status/invalid utf-8 RPX#1", Status, RPX, 1, f(Fault::InvalidUtf8), 1, &["UTF-8"]),
        case("status/oversize chunked RPX#1", Status, RPX, 1, f(Fault::OversizeChunked), 1, &["larger than"]),
        case("status/drip RPX#1", Status, RPX, 1, f(Fault::Drip), 4, TIMED_OUT),
        case("status/unknown fault RPX#1", Status, RPX, 1, f(Fault::soap("VmhaMysteryFault")), 1, &["VmhaMysteryFault"]),
        case("status/echo fault RPX#1", Status, RPX, 1, f(Fault::Echo), 1, &["SystemError", "Request rejected"]),
        // The proxy's NotAuthenticated leaves the simulator's real session alive, while vmha rightly takes
        // it for gone and logs in again: Login/Logout cannot balance on the simulator.
        case("status/NotAuthenticated twice RPX", Status, RPX, 1, f(Fault::soap("NotAuthenticated")), 1, &["NotAuthenticated", "not authenticated"])
        .times(4)
        .no_balance(),
        // ---- monitor (once) ----
        case("monitor/stall RPX#2", Monitor, RPX, 2, f(Fault::Stall), 4, TIMED_OUT),
        case("monitor/entity bomb RPX#2", Monitor, RPX, 2, f(Fault::EntityBomb), 1, &["document type", "DTD"]),
        // ---- start ----
        case("start/stall PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::Stall), 4, TIMED_OUT),
        case("start/refuse PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::Refuse), 4, &["connect", "closed"]),
        case("start/503 html PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::Html503), 1, &["503"]),
        case("start/unknown fault PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::soap("VmhaMysteryFault")), 1, &["VmhaMysteryFault"]),
        // A role without VirtualMachine.Interact.PowerOn (README: the vSphere user's privileges).
        case("start/NoPermission PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::soap("NoPermission")), 1, &["PowerOnVM_Task", "NoPermission"]),
        case("start/deep nesting CreateFilter", Start, "CreateFilter", 1, f(Fault::DeepNesting), 1, &["deeper than", "nesting"]),
        case("start/invalid utf-8 WFU#1", Start, WFU, 1, f(Fault::InvalidUtf8), 1, &["UTF-8"]),
        case("start/oversize declared WFU#1", Start, WFU, 1, f(Fault::OversizeDeclared), 1, &["larger than"]),
        case("start/kill at PowerOn", Start, "PowerOnVM_Task", 1, Kill, 4, &["connect", "closed", "connection"])
        .no_balance(),
        case("start/freeze 2 s at PowerOn", Start, "PowerOnVM_Task", 1, Freeze(Some(2)), 0, &["powered on", "poweredOn"]),
        // ---- stop ----
        case("stop/stall ShutdownGuest", Stop, "ShutdownGuest", 1, f(Fault::Stall), 4, TIMED_OUT),
        case("stop/entity bomb WFU#2", Stop, WFU, 2, f(Fault::EntityBomb), 1, &["document type", "DTD"]),
        case("stop/drip RPX#1", Stop, RPX, 1, f(Fault::Drip), 4, TIMED_OUT),
        case("stop/kill at ShutdownGuest", Stop, "ShutdownGuest", 1, Kill, 4, &["connect", "closed", "connection"])
        .no_balance(),
        case("stop/freeze 2 s at ShutdownGuest", Stop, "ShutdownGuest", 1, Freeze(Some(2)), 0, &["stopped", "powered off", "poweredOff"]),
        // ---- monitor --watch: transport trouble is survived; the VM's death is still reported ----
        case("watch/close WFU#2", watch, WFU, 2, f(Fault::Close), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/reset WFU#2", watch, WFU, 2, f(Fault::Reset), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/stall WFU#2", watch, WFU, 2, f(Fault::Stall), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/session expired WFU#2", watch, WFU, 2, Expire, 11, &["poweredOff", "not powered on", "powered off"])
        .no_balance(),
        case("watch/NotAuthenticated WFU#2", watch, WFU, 2, f(Fault::soap("NotAuthenticated")), 11, &["poweredOff", "not powered on", "powered off"])
        .no_balance(),
        case("watch/freeze 2 s WFU#2", watch, WFU, 2, Freeze(Some(2)), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/restart WFU#2", watch, WFU, 2, Restart, 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/entity bomb WFU#2", watch_dies, WFU, 2, f(Fault::EntityBomb), 1, &["document type", "DTD"]),
        // ---- more: cut answers whose request the server carried out, cookies that arrived, cleanup ----
        case("status/503 html Login", Status, "Login", 1, f(Fault::Html503), 1, &["503"]),
        case("status/InvalidLogin Login", Status, "Login", 1, f(Fault::soap("InvalidLogin")), 3, &["login refused"]),
        case("monitor/503 html RPX#1", Monitor, RPX, 1, f(Fault::Html503), 1, &["503"]),
        case("monitor/headers-only RPX#1", Monitor, RPX, 1, f(Fault::HeadersOnly), 4, TIMED_OUT),
        case("start/stall CreateFilter", Start, "CreateFilter", 1, f(Fault::Stall), 4, TIMED_OUT),
        case("start/headers-only WFU#2", Start, WFU, 2, f(Fault::HeadersOnly), 4, TIMED_OUT),
        case("stop/ToolsUnavailable ShutdownGuest", Stop, "ShutdownGuest", 1, f(Fault::soap("ToolsUnavailable")), 0, &["stopped", "powered off", "poweredOff"]),
        case("stop/503 html RPX#2", Stop, RPX, 2, f(Fault::Html503), 1, &["503"]),
        case("stop/stall Logout", Stop, "Logout", 1, f(Fault::Stall), 0, &["stopped", "powered off", "poweredOff"]),
        case("watch/truncate WFU#2", watch, WFU, 2, f(Fault::Truncate), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/headers-only WFU#2", watch, WFU, 2, f(Fault::HeadersOnly), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/drip WFU#2", watch, WFU, 2, f(Fault::Drip), 11, &["poweredOff", "not powered on", "powered off"]),
        case("watch/503 html WFU#2", watch_dies, WFU, 2, f(Fault::Html503), 1, &["503"]),
        case("watch/oversize chunked WFU#2", watch_dies, WFU, 2, f(Fault::OversizeChunked), 1, &["larger than"]),
        case("watch/unknown fault WFU#2", watch_dies, WFU, 2, f(Fault::soap("VmhaMysteryFault")), 1, &["VmhaMysteryFault"]),
        // ---- ESXi direct (HostAgent): its own flows (stop unregisters, start registers) ----
        clean("esx/status/no fault", Status, 0, &["poweredOn"], BOUND).connections(1).esx(),
        case("esx/check/stall RSC", Check, RSC, 1, f(Fault::Stall), 4, TIMED_OUT).esx(),
        case("esx/check/entity bomb RSC", Check, RSC, 1, f(Fault::EntityBomb), 1, &["document type", "DTD"]).esx(),
        case("esx/status/deep nesting RPX#1", Status, RPX, 1, f(Fault::DeepNesting), 1, &["deeper than", "nesting"]).esx(),
        case("esx/start/unknown fault PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::soap("VmhaMysteryFault")), 1, &["VmhaMysteryFault"]).esx(),
        case("esx/start/stall PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::Stall), 4, TIMED_OUT).esx(),
        case("esx/stop/stall UnregisterVM", Stop, "UnregisterVM", 1, f(Fault::Stall), 4, TIMED_OUT).esx(),
        case("esx/stop/503 html UnregisterVM", Stop, "UnregisterVM", 1, f(Fault::Html503), 1, &["503"]).esx(),
        case("esx/stop/kill at ShutdownGuest", Stop, "ShutdownGuest", 1, Kill, 4, &["connect", "closed", "connection"]).no_balance().esx(),
        case("esx/watch/reset WFU#2", watch, WFU, 2, f(Fault::Reset), 11, &["poweredOff", "not powered on", "powered off"]).esx(),
        case("esx/watch/session expired WFU#2", watch, WFU, 2, Expire, 11, &["poweredOff", "not powered on", "powered off"]).esx(),
        // Cut answers, session expiry mid-command, a frozen or restarted server, a quoted password:
        case("esx/start/session expired at PowerOn", Start, "PowerOnVM_Task", 1, Expire, 0, &["powered on", "poweredOn"]).esx(),
        clean("start/no fault", Start, 0, &["powered on", "poweredOn"], 10 + 2).connections(1),
        case("check/reset RSC", Check, RSC, 1, f(Fault::Reset), 4, CUT).forbid(&["cannot connect"]),
        case("check/truncate RSC", Check, RSC, 1, f(Fault::Truncate), 4, CUT).forbid(&["cannot connect"]),
        case("check/200 html RSC", Check, RSC, 1, f(Fault::Html200), 4, &["not a vSphere SDK endpoint"]),
        case("check/redirect RSC", Check, RSC, 1, f(Fault::Redirect), 4, &["redirect"]),
        case("status/reset RPX#1", Status, RPX, 1, f(Fault::Reset), 4, CUT).forbid(&["cannot connect"]),
        case("status/truncate RPX#2", Status, RPX, 2, f(Fault::Truncate), 4, CUT).forbid(&["cannot connect"]),
        case("status/200 html RPX#1", Status, RPX, 1, f(Fault::Html200), 4, &["not a vSphere SDK endpoint"]),
        case("status/redirect RPX#1", Status, RPX, 1, f(Fault::Redirect), 4, &["redirect"]),
        case("status/session expired RPX#1", Status, RPX, 1, Expire, 0, &["poweredOn"])
        .no_balance(),
        case("monitor/truncate RPX#2", Monitor, RPX, 2, f(Fault::Truncate), 4, CUT)
        .forbid(&["cannot connect"]),
        case("monitor/session expired RPX#2", Monitor, RPX, 2, Expire, 0, &["healthy", "poweredOn"])
        .no_balance(),
        case("start/freeze at PowerOn", Start, "PowerOnVM_Task", 1, Freeze(None), 4, TIMED_OUT)
        .no_balance(),
        case("start/session expired at PowerOn", Start, "PowerOnVM_Task", 1, Expire, 0, &["powered on", "poweredOn"])
        .no_balance(),
        case("start/restart at PowerOn", Start, "PowerOnVM_Task", 1, Restart, 0, &["powered on", "poweredOn", "started"]),
        case("stop/reset ShutdownGuest", Stop, "ShutdownGuest", 1, f(Fault::Reset), 4, CUT)
        .forbid(&["cannot connect"]),
        case("stop/html 200 ShutdownGuest", Stop, "ShutdownGuest", 1, f(Fault::Html200), 4, &["not a vSphere SDK endpoint"]),
        case("stop/session expired at ShutdownGuest", Stop, "ShutdownGuest", 1, Expire, 0, &["stopped", "powered off", "poweredOff"])
        .no_balance(),
        case("watch/kill WFU#2", watch_dies, WFU, 2, Kill, 4, &["connect", "closed", "connection"])
        .no_balance(),
        case("watch/freeze WFU#2", watch_dies, WFU, 2, Freeze(None), 4, TIMED_OUT).no_balance(),
        case("check/echo fault Login", Check, "Login", 1, f(Fault::Echo), 1, &["SystemError", "Request rejected"]),
        case("check/truncate Login", Check, "Login", 1, f(Fault::Truncate), 4, CUT).forbid(&["cannot connect"]),
        case("check/headers-only Login", Check, "Login", 1, f(Fault::HeadersOnly), 4, TIMED_OUT),
        case("status/close RPX#2", Status, RPX, 2, f(Fault::Close), 4, CUT).forbid(&["cannot connect"]),
        case("start/truncate PowerOn", Start, "PowerOnVM_Task", 1, f(Fault::Truncate), 4, CUT)
        .forbid(&["cannot connect"]),
        case("start/redirect Login", Start, "Login", 1, f(Fault::Redirect), 4, &["redirect"]),
        case("stop/truncate ShutdownGuest", Stop, "ShutdownGuest", 1, f(Fault::Truncate), 4, CUT)
        .forbid(&["cannot connect"]),
    ]
}

// ---- the runner ------------------------------------------------------------------------------------

/// The simulator of one case, replaceable (restart) and killable from the proxy's hooks.
struct Server {
    mode: Mode,
    sim: Mutex<Sim>,
    /// Kept apart from `sim` so that signalling never waits for the simulator's lock.
    pid: AtomicU32,
    alive: AtomicBool,
    frozen: AtomicBool,
    /// Sessions the simulator ended itself (Expire): those cannot be logged out.
    expired: AtomicU32,
}

impl Server {
    fn signal(&self, sig: &str) {
        let pid = self.pid.load(Ordering::SeqCst);
        let _ = std::process::Command::new("kill")
            .arg(sig)
            .arg(pid.to_string())
            .status();
    }

    fn thaw(&self) {
        if self.frozen.swap(false, Ordering::SeqCst) {
            self.signal("-CONT");
        }
    }
}

fn hook_for(act: &Act, server: &Arc<Server>, proxy: &ProxyHandle) -> Fault {
    let server = server.clone();
    let proxy = proxy.clone();
    match act {
        Act::Fault(fault) => fault.clone(),
        Act::Kill => Fault::hook(move || {
            server.alive.store(false, Ordering::SeqCst);
            server.signal("-KILL");
        }),
        Act::Freeze(secs) => {
            let secs = *secs;
            Fault::hook(move || {
                server.frozen.store(true, Ordering::SeqCst);
                server.signal("-STOP");
                if let Some(s) = secs {
                    let server = server.clone();
                    std::thread::spawn(move || {
                        std::thread::sleep(Duration::from_secs(s));
                        server.thaw();
                    });
                }
            })
        }
        Act::Restart => Fault::hook(move || {
            let mut sim = server.sim.lock().unwrap();
            server.signal("-KILL");
            let fresh = Sim::start(server.mode.as_str());
            proxy.retarget(fresh.ready("url"), Path::new(fresh.ready("ca_file")));
            server.pid.store(pid_of(&fresh), Ordering::SeqCst);
            *sim = fresh;
        }),
        Act::Expire => Fault::hook(move || {
            server
                .sim
                .lock()
                .unwrap()
                .post("/sessions/expire", serde_json::Value::Null);
            // vmha holds one session at a time.
            server.expired.fetch_add(1, Ordering::SeqCst);
        }),
    }
}

struct Outcome {
    name: &'static str,
    category: String,
    run: Run,
    /// Seconds from the fault (or the watch's shutdown) to exit.
    after_fault: f64,
    trace: String,
    failures: Vec<String>,
}

fn category(c: &Case) -> String {
    let Some(first) = c.inject.first() else {
        return "no fault".into();
    };
    match &first.act {
        Act::Fault(f) => f.name().split(' ').next().unwrap_or("").to_string(),
        Act::Kill => "server killed".into(),
        Act::Freeze(Some(_)) => "server frozen briefly".into(),
        Act::Freeze(None) => "server frozen".into(),
        Act::Restart => "server restarted".into(),
        Act::Expire => "session expired".into(),
    }
}

fn files_containing(dir: &Path, needle: &str) -> Vec<String> {
    let mut hits = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                hits.extend(files_containing(&p, needle));
            } else if let Ok(bytes) = std::fs::read(&p)
                && String::from_utf8_lossy(&bytes).contains(needle)
            {
                hits.push(p.display().to_string());
            }
        }
    }
    hits
}

fn pid_of(sim: &Sim) -> u32 {
    sim.ready("pid").parse().expect("the simulator's pid")
}

fn run_case(c: &Case) -> Outcome {
    let sim = Sim::start(c.mode.as_str());
    let (vm_on, vm_off, _) = vms(c.mode);
    if c.cmd == Cmd::Start {
        sim.guest_shutdown(vm_off);
        wait_power(&sim, vm_off, "poweredOff");
    }
    sim.reset_stats();
    let proxy = FaultProxy::start(sim.ready("url"), Path::new(sim.ready("ca_file")), Vec::new());
    let server = Arc::new(Server {
        mode: c.mode,
        pid: AtomicU32::new(pid_of(&sim)),
        sim: Mutex::new(sim),
        alive: AtomicBool::new(true),
        frozen: AtomicBool::new(false),
        expired: AtomicU32::new(0),
    });
    for inj in &c.inject {
        let fault = hook_for(&inj.act, &server, &proxy.handle());
        proxy.add_rule(Rule::new(inj.method, inj.nth, fault).times(inj.times));
    }

    let record = tempfile::tempdir().expect("record dir");
    let record_path = record.path().to_path_buf();
    let proxy_url = proxy.url.clone();
    let mut args: Vec<String> = vec!["-vv".into(), "--request-timeout".into(), TIMEOUT.to_string()];
    args.extend(c.cmd.args(c.mode).iter().map(|s| s.to_string()));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let v = Vmha {
            bin: Path::new(env!("CARGO_BIN_EXE_vmha")).to_path_buf(),
            url: proxy_url,
            user: "vmha".into(),
            password: Some(PASSWORD.into()),
            flags: vec!["--record".into(), record_path.display().to_string()],
            stdin: None,
        };
        let started = Instant::now();
        let run = v.run(&args);
        let _ = tx.send((run, Instant::now(), started.elapsed()));
    });

    let mut shutdown_at = None;
    if let Cmd::Watch { shutdown: true } = c.cmd {
        let deadline = Instant::now() + Duration::from_secs(30);
        while proxy.first_fault().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        std::thread::sleep(Duration::from_secs(1));
        // A briefly frozen simulator cannot take the control call either.
        while server.frozen.load(Ordering::SeqCst) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        let sim = server.sim.lock().unwrap();
        shutdown_at = Some(Instant::now());
        sim.guest_shutdown(vm_on);
    }
    let (run, ended, took) = match rx.recv_timeout(Duration::from_secs(90)) {
        Ok(r) => r,
        Err(_) => {
            // Stop the simulator so the stuck vmha loses its connection, then give up on it.
            server.alive.store(false, Ordering::SeqCst);
            server.thaw();
            server.signal("-KILL");
            let (run, ended, took) = rx
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| panic!("{}: vmha did not exit 150 s after the start", c.name));
            (run, ended, took)
        }
    };
    server.thaw();

    let mut failures = Vec::new();
    if !c.inject.is_empty() && proxy.first_fault().is_none() {
        failures.push("the fault never fired".to_string());
    }
    let from = shutdown_at.or(proxy.first_fault());
    let after_fault = match from {
        Some(t) => ended.saturating_duration_since(t).as_secs_f64(),
        None => took.as_secs_f64(),
    };
    if run.code != c.code {
        failures.push(format!("exit {} (want {})", run.code, c.code));
    }
    if after_fault > c.bound as f64 {
        failures.push(format!(
            "exited {after_fault:.1} s after the fault (bound {} s)",
            c.bound
        ));
    }
    let text = format!("{}\n{}", run.stdout, run.stderr);
    let lower = text.to_lowercase();
    if !c.cause.is_empty() && !c.cause.iter().any(|w| lower.contains(&w.to_lowercase())) {
        failures.push(format!("message names none of {:?}", c.cause));
    }
    for w in c.forbid {
        if lower.contains(&w.to_lowercase()) {
            failures.push(format!("message says {w:?}"));
        }
    }
    if let Some(max) = c.connections
        && proxy.connections() > max
    {
        failures.push(format!(
            "{} connections to the server (at most {max})",
            proxy.connections()
        ));
    }
    if text.contains(PASSWORD) {
        failures.push("the password is on stdout/stderr".into());
    }
    let leaks = files_containing(record.path(), PASSWORD);
    if !leaks.is_empty() {
        failures.push(format!("the password is in the recording: {leaks:?}"));
    }
    if matches!(c.balance, Balance::Check) && server.alive.load(Ordering::SeqCst) {
        let stats = server.sim.lock().unwrap().stats();
        let n = |m: &str| stats["by_method"][m].as_u64().unwrap_or(0);
        let expired = u64::from(server.expired.load(Ordering::SeqCst));
        // A Logout sent with an expired session's cookie is harmless, so the expired ones may or may not
        // have one.
        if n("Logout") + expired < n("Login") || n("Logout") > n("Login") {
            failures.push(format!(
                "Login {} / Logout {} on the simulator ({expired} session(s) expired by the simulator)",
                n("Login"),
                n("Logout")
            ));
        }
    }
    Outcome {
        name: c.name,
        category: category(c),
        run,
        after_fault,
        trace: proxy.trace(),
        failures,
    }
}

fn run_all(table: Vec<Case>) -> Vec<Outcome> {
    let table = Arc::new(table);
    let next = Arc::new(AtomicUsize::new(0));
    let results = Arc::new(Mutex::new(Vec::new()));
    let workers: Vec<_> = (0..WORKERS)
        .map(|_| {
            let (table, next, results) = (table.clone(), next.clone(), results.clone());
            std::thread::spawn(move || {
                loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    let Some(c) = table.get(i) else { break };
                    let out = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run_case(c))).unwrap_or_else(
                        |panic| {
                            let why = panic
                                .downcast_ref::<String>()
                                .cloned()
                                .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
                                .unwrap_or_default();
                            Outcome {
                                name: c.name,
                                category: category(c),
                                run: Run {
                                    code: -1,
                                    stdout: String::new(),
                                    stderr: String::new(),
                                },
                                after_fault: 0.0,
                                trace: String::new(),
                                failures: vec![format!("the case itself panicked: {why}")],
                            }
                        },
                    );
                    results.lock().unwrap().push(out);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker panicked");
    }
    Arc::try_unwrap(results).ok().unwrap().into_inner().unwrap()
}

#[test]
fn fault_injection_tier() {
    let table = cases();
    assert!(
        table.len() >= 60,
        "the tier needs at least 60 cases, has {}",
        table.len()
    );
    let started = Instant::now();
    let mut outcomes = run_all(table);
    outcomes.sort_by(|a, b| a.name.cmp(b.name));

    let mut worst: std::collections::BTreeMap<String, (f64, &'static str)> = Default::default();
    let mut failed = Vec::new();
    for o in &outcomes {
        let w = worst.entry(o.category.clone()).or_insert((0.0, o.name));
        if o.after_fault > w.0 {
            *w = (o.after_fault, o.name);
        }
        let first_line = o
            .run
            .stderr
            .lines()
            .find(|l| l.contains("error") || l.contains("ERROR"))
            .unwrap_or("");
        println!(
            "{:<8} {:<40} exit {:>2} {:>5.1} s  {}",
            if o.failures.is_empty() { "ok" } else { "FAILED" },
            o.name,
            o.run.code,
            o.after_fault,
            first_line.trim()
        );
        if !o.failures.is_empty() {
            failed.push(format!(
                "{}: {}\n  calls: {}\n  stdout: {}\n  stderr: {}",
                o.name,
                o.failures.join("; "),
                o.trace,
                o.run.stdout.trim(),
                o.run.stderr.trim()
            ));
        }
    }
    println!("\nworst time from fault to exit, per category (bound {BOUND} s):");
    for (cat, (secs, name)) in &worst {
        println!("  {cat:<24} {secs:>5.1} s  ({name})");
    }
    println!(
        "\nfaults: {} passed, {} failed ({} cases in {:.1?})",
        outcomes.len() - failed.len(),
        failed.len(),
        outcomes.len(),
        started.elapsed()
    );
    assert!(
        failed.is_empty(),
        "{} case(s) failed:\n\n{}",
        failed.len(),
        failed.join("\n\n")
    );
}

#[test]
fn case_names_are_unique() {
    let mut names: Vec<&str> = cases().iter().map(|c| c.name).collect();
    let n = names.len();
    names.sort();
    names.dedup();
    assert_eq!(names.len(), n, "case names must be unique");
}
