//! `vmha fence`, installed as `fence_vmha`: a fence agent speaking fence-agents' interface (the options
//! and `name=value` stdin lines of fence-agents' `fencing.py`, its actions, output lines and exit codes),
//! so it drops in where `fence_vmware_soap` is configured. It parses that interface, then acts through
//! `crate::ops::power` on the same (cached) session as the other commands.
//!
//! Exit codes, as fencing.py: 0 success (status: on), 2 status off, 1 anything else (bad arguments
//! included: fencing.py's `fail_usage` exits 1 too).

use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

use crate::cli::GlobalArgs;
use crate::client::{Session, VimError};
use crate::config::{self, FileSettings};
use crate::error::Error;
use crate::log::StepLog;
use crate::ops::OpError;
use crate::ops::power::{self, Power, PowerLimits};
use crate::soap::{FaultKind, SoapError};

pub const AGENT: &str = "fence_vmha";

/// fence-agents' exit codes (fencing.py: `EC_OK`, any failure 1, `status` of an off plug 2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FenceCode {
    Ok = 0,
    Failed = 1,
    StatusOff = 2,
}

impl FenceCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// What an option holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Flag,
    Text,
    /// A whole number (fencing.py's "integer" and "second").
    Number,
}

/// One option of the interface. `name` is the metadata and stdin name (fencing.py: the long option
/// with `-` as `_`); `old` is fencing.py's older stdin name for it, still accepted (and listed as
/// deprecated in the metadata, as fence-agents do).
struct Opt {
    name: &'static str,
    old: Option<&'static str>,
    short: Option<char>,
    long: &'static str,
    kind: Kind,
    default: Option<&'static str>,
    required: bool,
    shortdesc: &'static str,
    /// Accepted for compatibility but without effect here: a note says so when it is given.
    ignored: Option<&'static str>,
}

const fn opt(name: &'static str, short: Option<char>, long: &'static str, kind: Kind, shortdesc: &'static str) -> Opt {
    Opt {
        name,
        old: None,
        short,
        long,
        kind,
        default: None,
        required: false,
        shortdesc,
        ignored: None,
    }
}

impl Opt {
    const fn old(mut self, old: &'static str) -> Opt {
        self.old = Some(old);
        self
    }
    const fn default(mut self, d: &'static str) -> Opt {
        self.default = Some(d);
        self
    }
    const fn required(mut self) -> Opt {
        self.required = true;
        self
    }
    const fn ignored(mut self, why: &'static str) -> Opt {
        self.ignored = Some(why);
        self
    }
    /// Listed in the metadata (help and version are command-line only, as in fence-agents).
    fn in_metadata(&self) -> bool {
        !matches!(self.name, "help" | "version")
    }
}

/// The options, in metadata order.
const OPTS: &[Opt] = &[
    opt("action", Some('o'), "action", Kind::Text, "Fencing action")
        .default("reboot")
        .required(),
    opt(
        "ip",
        Some('a'),
        "ip",
        Kind::Text,
        "vCenter or ESXi host name or IP address",
    )
    .old("ipaddr")
    .required(),
    opt(
        "ipport",
        Some('u'),
        "ipport",
        Kind::Number,
        "TCP port of the vSphere API",
    )
    .default("443"),
    opt("username", Some('l'), "username", Kind::Text, "Login name")
        .old("login")
        .required(),
    opt(
        "password",
        Some('p'),
        "password",
        Kind::Text,
        "Login password (visible in ps on the command line; prefer password_script or stdin)",
    )
    .old("passwd"),
    opt(
        "password_script",
        Some('S'),
        "password-script",
        Kind::Text,
        "Script to run to retrieve the password (first line of its output)",
    )
    .old("passwd_script"),
    opt(
        "plug",
        Some('n'),
        "plug",
        Kind::Text,
        "VM name, BIOS UUID or instance UUID",
    )
    .old("port")
    .required(),
    opt(
        "ssl",
        Some('z'),
        "ssl",
        Kind::Flag,
        "Use TLS with certificate verification (always on: the vSphere API is https)",
    ),
    opt(
        "ssl_secure",
        None,
        "ssl-secure",
        Kind::Flag,
        "Use TLS with certificate verification (the default)",
    ),
    opt(
        "ssl_insecure",
        None,
        "ssl-insecure",
        Kind::Flag,
        "Use TLS without verifying the certificate (warns; prefer thumbprint or ca_file)",
    ),
    opt(
        "notls",
        Some('t'),
        "notls",
        Kind::Flag,
        "Not supported: vmha speaks TLS 1.2 and 1.3 only; refused when set",
    ),
    opt(
        "ca_file",
        None,
        "ca-file",
        Kind::Text,
        "Trusted root certificates (PEM) instead of the system store",
    ),
    opt(
        "thumbprint",
        None,
        "thumbprint",
        Kind::Text,
        "Accept only the server certificate with this SHA-256 thumbprint",
    ),
    opt(
        "session_dir",
        None,
        "session-dir",
        Kind::Text,
        "Directory of vmha's session cache (0700) [default: $XDG_RUNTIME_DIR/vmha, else /run/vmha]",
    ),
    opt(
        "separator",
        Some('C'),
        "separator",
        Kind::Text,
        "Separator for the CSV lines of list and list-status",
    )
    .default(","),
    opt(
        "delay",
        None,
        "delay",
        Kind::Number,
        "Wait X seconds before an off or reboot",
    )
    .default("0"),
    opt(
        "login_timeout",
        None,
        "login-timeout",
        Kind::Number,
        "Seconds each request may take (connect and login included)",
    )
    .default("5"),
    opt(
        "power_timeout",
        None,
        "power-timeout",
        Kind::Number,
        "Seconds for a power change to be done and confirmed",
    )
    .default("20"),
    opt(
        "power_wait",
        None,
        "power-wait",
        Kind::Number,
        "Wait X seconds after a power change before reading the state back",
    )
    .default("0"),
    opt(
        "shell_timeout",
        None,
        "shell-timeout",
        Kind::Number,
        "Seconds each request after login may take (the larger of this and login_timeout applies)",
    )
    .default("3"),
    opt(
        "retry_on",
        None,
        "retry-on",
        Kind::Number,
        "Count of attempts to retry power on",
    )
    .default("1"),
    opt(
        "stonith_status_sleep",
        None,
        "stonith-status-sleep",
        Kind::Number,
        "Ignored: the state is watched, not polled",
    )
    .default("1")
    .ignored("vmha watches the power state instead of polling it"),
    opt(
        "disable_timeout",
        None,
        "disable-timeout",
        Kind::Text,
        "Ignored: this agent is always bounded",
    )
    .ignored("vmha fence is always bounded (see the README)"),
    opt(
        "plug_separator",
        None,
        "plug-separator",
        Kind::Text,
        "Ignored: one plug per call",
    )
    .default(",")
    .ignored("one plug per call: a VM name may contain any separator"),
    opt(
        "inet4_only",
        Some('4'),
        "inet4-only",
        Kind::Flag,
        "Ignored: the address family follows the name's resolution",
    )
    .ignored("the address family follows the host name's resolution"),
    opt(
        "inet6_only",
        Some('6'),
        "inet6-only",
        Kind::Flag,
        "Ignored: the address family follows the name's resolution",
    )
    .ignored("the address family follows the host name's resolution"),
    opt(
        "quiet",
        Some('q'),
        "quiet",
        Kind::Flag,
        "No progress lines on stderr (errors are still shown)",
    ),
    opt(
        "verbose",
        Some('v'),
        "verbose",
        Kind::Flag,
        "Verbose mode (repeat for more)",
    ),
    opt(
        "verbose_level",
        None,
        "verbose-level",
        Kind::Number,
        "Level of debugging detail in output",
    ),
    opt(
        "debug_file",
        Some('D'),
        "debug-file",
        Kind::Text,
        "Ignored: vmha logs to stderr, which Pacemaker records",
    )
    .ignored("vmha logs to stderr, which the fencer records"),
    opt("help", Some('h'), "help", Kind::Flag, "Display help and exit"),
    opt(
        "version",
        Some('V'),
        "version",
        Kind::Flag,
        "Display version information and exit",
    ),
];

fn find_long(name: &str) -> Result<&'static Opt, String> {
    if let Some(o) = OPTS.iter().find(|o| o.long == name) {
        return Ok(o);
    }
    // getopt's long options may be abbreviated to a unique prefix.
    let matches: Vec<&Opt> = OPTS.iter().filter(|o| o.long.starts_with(name)).collect();
    match matches.as_slice() {
        [one] => Ok(one),
        [] => Err(format!("option --{name} not recognized")),
        many => Err(format!(
            "option --{name} is ambiguous ({})",
            many.iter()
                .map(|o| format!("--{}", o.long))
                .collect::<Vec<_>>()
                .join(", ")
        )),
    }
}

/// The stdin name (or its older spelling, `-` or `_`) to the option.
fn find_key(name: &str) -> Option<&'static Opt> {
    let n = name.trim().replace('-', "_");
    OPTS.iter()
        .find(|o| o.name == n || o.old == Some(n.as_str()))
        .filter(|o| !matches!(o.name, "help" | "version"))
}

/// The parsed options, as given (defaults applied later). Debug never shows the password.
#[derive(Debug, Default)]
pub struct Given {
    values: Vec<(&'static str, String)>,
    password: Option<SecretString>,
    /// `-v` counted on the command line, or `verbose=1` on stdin.
    pub verbose: u8,
    /// Notes for stderr: unknown keys, ignored options, the password on the command line.
    pub notes: Vec<String>,
    /// Whether the options came from standard input (Pacemaker's fencer) or the command line.
    pub from_stdin: bool,
}

impl Given {
    fn set(&mut self, o: &'static Opt, value: String) {
        if let Some(why) = o.ignored {
            self.notes.push(format!("{} is accepted but ignored: {why}", o.name));
        }
        match o.name {
            "password" => self.password = Some(SecretString::from(value)),
            "verbose" => self.verbose = self.verbose.saturating_add(u8::from(value != "0")),
            _ => {
                self.values.retain(|(k, _)| *k != o.name);
                self.values.push((o.name, value));
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.values.iter().find(|(k, _)| *k == name).map(|(_, v)| v.as_str())
    }

    fn flag(&self, name: &str) -> bool {
        self.get(name).is_some_and(|v| v != "0")
    }
}

/// Parses the command line after `fence` as fencing.py's `getopt.gnu_getopt` does: clustered short
/// options (`-vv`, `-ooff`), `--long=value` and `--long value`, unique prefixes of long options,
/// options anywhere, `--` ending them.
pub fn parse_args(args: &[String]) -> Result<Given, String> {
    let mut g = Given::default();
    let mut rest = Vec::new();
    let mut i = 0;
    while i < args.len() {
        let a = &args[i];
        i += 1;
        if a == "--" {
            rest.extend(args[i..].iter().cloned());
            break;
        }
        if let Some(body) = a.strip_prefix("--") {
            let (name, inline) = match body.split_once('=') {
                Some((n, v)) => (n, Some(v.to_string())),
                None => (body, None),
            };
            let o = find_long(name)?;
            let value = match (o.kind, inline) {
                (Kind::Flag, Some(_)) => return Err(format!("option --{} must not have an argument", o.long)),
                (Kind::Flag, None) => "1".to_string(),
                (_, Some(v)) => v,
                (_, None) => {
                    let v = args
                        .get(i)
                        .ok_or_else(|| format!("option --{} requires argument", o.long))?;
                    i += 1;
                    v.clone()
                }
            };
            g.set(o, value);
            continue;
        }
        if let Some(cluster) = a.strip_prefix('-').filter(|c| !c.is_empty()) {
            let chars: Vec<char> = cluster.chars().collect();
            let mut j = 0;
            while j < chars.len() {
                let c = chars[j];
                j += 1;
                let o = OPTS
                    .iter()
                    .find(|o| o.short == Some(c))
                    .ok_or_else(|| format!("option -{c} not recognized"))?;
                if o.kind == Kind::Flag {
                    g.set(o, "1".into());
                    continue;
                }
                let value = if j < chars.len() {
                    let v: String = chars[j..].iter().collect();
                    j = chars.len();
                    v
                } else {
                    let v = args.get(i).ok_or_else(|| format!("option -{c} requires argument"))?;
                    i += 1;
                    v.clone()
                };
                g.set(o, value);
            }
            continue;
        }
        rest.push(a.clone());
    }
    if !rest.is_empty() {
        g.notes
            .push(format!("unused arguments on the command line: {}", rest.join(" ")));
    }
    if g.password.is_some() {
        g.notes.push(
            "the password on the command line is visible to every user (ps, /proc): use -S/--password-script, or password= on standard input"
                .into(),
        );
    }
    Ok(g)
}

/// Parses `name=value` lines as Pacemaker's fencer writes them to standard input (fencing.py's
/// `_parse_input_stdin`): `#` comments and blank lines skipped, one pair of surrounding double quotes
/// removed, `-` and `_` alike in names, older names accepted, `nodename` ignored silently, other
/// unknown names ignored with a note. Flags take 1/yes/on/true or 0/no/off/false.
pub fn parse_stdin(text: &str) -> Given {
    let mut g = Given {
        from_stdin: true,
        ..Default::default()
    };
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (name, value) = line.split_once('=').unwrap_or((line, ""));
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .unwrap_or(value);
        let Some(o) = find_key(name) else {
            if name.trim() != "nodename" {
                // Only the name: the value may be a secret of some other agent's.
                g.notes.push(format!("ignoring unknown option '{}'", name.trim()));
            }
            continue;
        };
        if o.kind == Kind::Flag || o.name == "verbose" {
            match value.to_ascii_lowercase().as_str() {
                "1" | "yes" | "on" | "true" => g.set(o, "1".into()),
                "0" | "no" | "off" | "false" => g.set(o, "0".into()),
                _ => g
                    .notes
                    .push(format!("ignoring option '{}' because it does not have a value", o.name)),
            }
            continue;
        }
        g.set(o, value.to_string());
    }
    g
}

/// An action of the agent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    On,
    Off,
    Reboot,
    Status,
    List,
    ListStatus,
    Monitor,
    Metadata,
    ValidateAll,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "on" => Action::On,
            "off" => Action::Off,
            "reboot" => Action::Reboot,
            "status" => Action::Status,
            "list" => Action::List,
            "list-status" => Action::ListStatus,
            "monitor" => Action::Monitor,
            // OCF's spelling, as fencing.py accepts it.
            "metadata" | "meta-data" => Action::Metadata,
            "validate-all" => Action::ValidateAll,
            _ => return None,
        })
    }

    fn needs_plug(self) -> bool {
        matches!(self, Action::On | Action::Off | Action::Reboot | Action::Status)
    }
}

/// Checked settings: what an action runs with.
#[derive(Debug)]
pub struct Settings {
    pub action: Action,
    pub ip: String,
    pub port: u16,
    pub username: String,
    pub password: Option<SecretString>,
    pub password_script: Option<String>,
    pub plug: Option<String>,
    pub insecure: bool,
    pub ca_file: Option<PathBuf>,
    pub thumbprint: Option<String>,
    pub session_dir: Option<PathBuf>,
    pub separator: String,
    pub delay: Duration,
    /// Each request's timeout: the larger of login_timeout and shell_timeout.
    pub request_timeout: Duration,
    pub power: PowerLimits,
    pub retry_on: u32,
    pub quiet: bool,
}

impl Settings {
    /// `https://IP:PORT/sdk`; an IPv6 literal in brackets.
    pub fn url(&self) -> String {
        let host = if self.ip.contains(':') && !self.ip.starts_with('[') {
            format!("[{}]", self.ip)
        } else {
            self.ip.clone()
        };
        format!("https://{host}:{}/sdk", self.port)
    }

    /// The most an action may take after `--delay`, as the README documents: three requests' worth for
    /// connecting and finding the VM, then per power change its wait and timeout, plus the password script.
    pub fn bound(&self) -> Duration {
        let changes = match self.action {
            Action::Reboot => 2,
            Action::On | Action::Off => 1,
            _ => 0,
        };
        let script = if self.password_script.is_some() {
            PASSWORD_SCRIPT_LIMIT
        } else {
            Duration::ZERO
        };
        self.request_timeout * 3 + (self.power.wait + self.power.timeout) * changes + script
    }
}

/// A password script gets this long to print the password.
const PASSWORD_SCRIPT_LIMIT: Duration = Duration::from_secs(10);
/// fence_vmware_soap's per-request timeout when login_timeout is 0.
const ZERO_TIMEOUT_MEANS: u64 = 15;

fn number(g: &Given, name: &str) -> Result<u64, String> {
    let o = OPTS
        .iter()
        .find(|o| o.name == name)
        .ok_or_else(|| format!("no option {name}"))?;
    let raw = g.get(name).or(o.default).unwrap_or("0");
    raw.trim().parse::<u64>().map_err(|_| {
        format!(
            "the value you have entered for --{} ('{raw}') is not a valid whole number{}",
            o.long,
            if name.ends_with("timeout") || name.ends_with("wait") || name == "delay" {
                " of seconds"
            } else {
                ""
            }
        )
    })
}

/// Checks the options as fencing.py's `_validate_input` does, and vmha's own rules (TLS settings, the
/// bounds). Reads no file and runs no script.
pub fn check(g: &Given) -> Result<Settings, String> {
    let action_text = g.get("action").unwrap_or("reboot");
    let action = Action::parse(action_text).ok_or_else(|| {
        format!(
            "unrecognised action '{action_text}': use on, off, reboot, status, list, list-status, monitor, metadata or validate-all"
        )
    })?;
    let mut problems = Vec::new();
    let text = |name: &str| g.get(name).map(str::trim).filter(|v| !v.is_empty()).map(str::to_string);
    let username = text("username");
    if username.is_none() {
        problems.push("you have to set login name (-l/--username, username=)".to_string());
    }
    let ip = text("ip");
    if ip.is_none() {
        problems.push("you have to enter fence address (-a/--ip, ip=)".to_string());
    }
    let password_script = text("password_script");
    if g.password.is_none() && password_script.is_none() {
        problems.push("you have to enter password or password script (-p, -S, password=, password_script=)".into());
    }
    let plug = text("plug");
    if plug.is_none() && action.needs_plug() {
        problems.push("you have to enter plug number or machine identification (-n/--plug, plug=)".into());
    }
    if g.flag("notls") {
        problems.push("--notls (SSL 3.0 / TLS 1.0) is not supported: vmha speaks TLS 1.2 and 1.3 only".into());
    }
    let insecure = g.flag("ssl_insecure");
    let thumbprint = text("thumbprint");
    let ca_file = text("ca_file").map(PathBuf::from);
    if insecure && (thumbprint.is_some() || ca_file.is_some()) {
        problems.push(
            "ssl_insecure cannot be combined with thumbprint or ca_file: pick one way to trust the server".into(),
        );
    }
    if let Some(t) = &thumbprint
        && let Err(e) = crate::soap::tls::parse_thumbprint(t)
    {
        problems.push(format!("thumbprint: {e}"));
    }
    let mut num = |name: &str| match number(g, name) {
        Ok(n) => n,
        Err(e) => {
            problems.push(e);
            0
        }
    };
    let port = num("ipport");
    let delay = num("delay");
    let login = num("login_timeout");
    let shell = num("shell_timeout");
    let power_timeout = num("power_timeout");
    let power_wait = num("power_wait");
    let retry_on = num("retry_on");
    if g.get("verbose_level").is_some() {
        num("verbose_level");
    }
    let port = match u16::try_from(port) {
        Ok(p) if p > 0 => p,
        _ => {
            problems.push(format!("ipport {port} is not a TCP port (1-65535)"));
            443
        }
    };
    if !problems.is_empty() {
        return Err(problems.join("; "));
    }
    let login = if login == 0 { ZERO_TIMEOUT_MEANS } else { login };
    Ok(Settings {
        action,
        ip: ip.unwrap_or_default(),
        port,
        username: username.unwrap_or_default(),
        password: g.password.clone(),
        password_script,
        plug,
        insecure,
        ca_file,
        thumbprint,
        session_dir: text("session_dir").map(PathBuf::from),
        separator: g.get("separator").unwrap_or(",").to_string(),
        delay: Duration::from_secs(delay.min(3600)),
        request_timeout: Duration::from_secs(login.max(shell).clamp(1, 3600)),
        power: PowerLimits {
            wait: Duration::from_secs(power_wait.min(3600)),
            // 0 means "no limit" to fencing.py; a fence here is always bounded, so 0 gets the default.
            timeout: Duration::from_secs(if power_timeout == 0 {
                20
            } else {
                power_timeout.min(3600)
            }),
        },
        retry_on: u32::try_from(retry_on.min(10)).unwrap_or(1),
        quiet: g.flag("quiet"),
    })
}

/// Runs the password script (`sh -c`, as fencing.py's `os.popen`): the first line of its output, within
/// [`PASSWORD_SCRIPT_LIMIT`]. Its stderr passes through; the password never reaches a child's argv or
/// environment.
async fn run_password_script(script: &str) -> Result<SecretString, String> {
    use tokio::io::AsyncReadExt;
    let mut child = tokio::process::Command::new("/bin/sh")
        .arg("-c")
        .arg(script)
        .env_remove("VMHA_PASSWORD")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // A script still running when the limit passes is killed with its handle.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run the password script: {e}"))?;
    let mut out = child.stdout.take();
    let finished = async {
        let mut buf = Vec::new();
        if let Some(o) = out.as_mut() {
            let _ = o.take(64 * 1024).read_to_end(&mut buf).await;
        }
        child.wait().await.map(|status| (buf, status))
    };
    let (buf, status) = match tokio::time::timeout(PASSWORD_SCRIPT_LIMIT, finished).await {
        Ok(Ok(done)) => done,
        Ok(Err(e)) => return Err(format!("password script: {e}")),
        Err(_) => {
            return Err(format!(
                "the password script did not finish within {} s",
                PASSWORD_SCRIPT_LIMIT.as_secs()
            ));
        }
    };
    if !status.success() {
        return Err(format!("the password script failed ({status})"));
    }
    let text = String::from_utf8_lossy(&buf);
    let first = text.lines().next().unwrap_or("").trim_end_matches('\r').to_string();
    if first.is_empty() {
        return Err("the password script printed no password".into());
    }
    Ok(SecretString::from(first))
}

/// fence-agents' failure line for an error, chosen by type, with vmha's own message after it.
pub fn failure_line(e: &Error, action: Action) -> &'static str {
    const STATUS: &str = "Failed: Unable to obtain correct plug status or plug is not available";
    const LOGIN: &str = "Unable to connect/login to fencing device";
    let vim = match e {
        Error::Vim(v) | Error::Op(OpError::Vim(v)) => Some(v),
        _ => None,
    };
    if vim
        .and_then(VimError::fault)
        .is_some_and(|f| matches!(&f.kind, FaultKind::Other(n) if n == "NoPermission"))
    {
        return "Failed: The user does not have the correct privileges to do the requested action.";
    }
    match (e, vim) {
        (_, Some(VimError::LoginRefused { .. })) => LOGIN,
        (_, Some(VimError::Soap(SoapError::Timeout { .. } | SoapError::ConnectTimeout { .. }))) => {
            "Connection timed out"
        }
        (_, Some(VimError::Soap(SoapError::ConnectionLost { .. }))) => "Connection lost",
        (
            _,
            Some(VimError::Soap(
                SoapError::Connect { .. }
                | SoapError::Tls { .. }
                | SoapError::PinMismatch { .. }
                | SoapError::Redirect { .. }
                | SoapError::NotSdk { .. }
                | SoapError::TlsSetup(_),
            )),
        ) => LOGIN,
        (Error::Op(OpError::PlugNotFound { .. } | OpError::StateUnseen { .. }), _)
        | (_, Some(VimError::AmbiguousName { .. })) => STATUS,
        _ => match action {
            Action::On => "Failed: Timed out waiting to power ON",
            Action::Off | Action::Reboot => "Failed: Timed out waiting to power OFF",
            Action::Status => STATUS,
            _ => "Failed: Generic error",
        },
    }
}

fn say(quiet: bool, level: &str, msg: &str) {
    if !quiet || level != "INFO" {
        let _ = writeln!(std::io::stderr().lock(), "{AGENT}: {level}: {msg}");
    }
}

fn report_error(e: &Error, action: Action) {
    say(false, "ERROR", failure_line(e, action));
    say(false, "ERROR", &e.to_string());
    if let Some(h) = e.hint() {
        say(false, "ERROR", &format!("hint: {h}"));
    }
}

/// Reads the options: the command line when there is one, else standard input (fencing.py's rule).
pub fn read_options(args: &[String]) -> Result<Given, String> {
    if !args.is_empty() {
        return parse_args(args);
    }
    let mut text = String::new();
    std::io::stdin()
        .lock()
        .take(1024 * 1024)
        .read_to_string(&mut text)
        .map_err(|e| format!("cannot read options from standard input: {e}"))?;
    Ok(parse_stdin(&text))
}

/// Runs the agent on already-read options; prints fence-agents' output lines on stdout.
pub async fn run(g: Given, log: &StepLog) -> FenceCode {
    log.use_stderr();
    log.set_label(AGENT);
    for n in &g.notes {
        say(false, "WARNING", n);
    }
    if g.flag("help") {
        print!("{}", usage());
        return FenceCode::Ok;
    }
    if g.flag("version") {
        println!("{}", env!("CARGO_PKG_VERSION"));
        return FenceCode::Ok;
    }
    if g.get("action").and_then(Action::parse) == Some(Action::Metadata) {
        print!("{}", metadata());
        return FenceCode::Ok;
    }
    let mut s = match check(&g) {
        Ok(s) => s,
        Err(e) => {
            say(false, "ERROR", &format!("Failed: {e}"));
            say(
                false,
                "ERROR",
                &format!("Please use '-h' for usage ({AGENT} -h, or {AGENT} -o metadata)"),
            );
            return FenceCode::Failed;
        }
    };
    // As fence-agents: progress only with -v (the fencer logs every stderr line as a warning).
    if g.verbose == 0 {
        s.quiet = true;
    }
    if s.quiet {
        log.quiet_info();
    }
    if s.action == Action::ValidateAll {
        if let Some(p) = &s.ca_file
            && let Err(e) = std::fs::metadata(p)
        {
            say(false, "ERROR", &format!("Failed: ca_file {}: {e}", p.display()));
            return FenceCode::Failed;
        }
        say(s.quiet, "INFO", "parameters valid");
        return FenceCode::Ok;
    }
    if s.insecure {
        say(
            false,
            "WARNING",
            "TLS verification is OFF (ssl_insecure): anyone on the path can read the password; pin the certificate with thumbprint instead",
        );
    }
    if !s.delay.is_zero() && matches!(s.action, Action::Off | Action::Reboot) {
        say(
            s.quiet,
            "INFO",
            &format!(
                "Delay {} second(s) before logging in to the fence device",
                s.delay.as_secs()
            ),
        );
        tokio::time::sleep(s.delay).await;
    }
    let bound = s.bound();
    let action = s.action;
    match tokio::time::timeout(bound, act(s, log)).await {
        Ok(Ok(code)) => code,
        Ok(Err(e)) => {
            report_error(&e, action);
            FenceCode::Failed
        }
        Err(_) => {
            say(false, "ERROR", "Connection timed out");
            say(
                false,
                "ERROR",
                &format!(
                    "the {action:?} action did not finish within its bound of {} s",
                    bound.as_secs()
                ),
            );
            FenceCode::Failed
        }
    }
}

fn global(s: &Settings, password: SecretString) -> GlobalArgs {
    GlobalArgs {
        url: Some(s.url()),
        user: Some(s.username.clone()),
        password: Some(password),
        insecure: s.insecure,
        thumbprint: s.thumbprint.clone(),
        ca_file: s.ca_file.clone(),
        request_timeout: Some(s.request_timeout.as_secs()),
        session_dir: s.session_dir.clone(),
        record_label: "recorded by vmha fence".into(),
        ..Default::default()
    }
}

async fn act(s: Settings, log: &StepLog) -> Result<FenceCode, Error> {
    let password = match (&s.password, &s.password_script) {
        (Some(p), _) => p.clone(),
        (None, Some(script)) => run_password_script(script)
            .await
            .map_err(config::ConfigError::Invalid)?,
        (None, None) => return Err(config::ConfigError::Invalid("no password".into()).into()),
    };
    if password.expose_secret().is_empty() {
        return Err(config::ConfigError::Invalid("the password is empty".into()).into());
    }
    let conn = config::connection(&global(&s, password), &FileSettings::default(), None)?;
    for w in &conn.warnings {
        // The insecure-TLS warning was given already, in fence-agents' words.
        if !s.insecure {
            say(false, "WARNING", w);
        }
    }
    let (code, out) = crate::app::with_session(
        crate::app::connect_options(&conn, true),
        async move |session: &Session| work(session, &s, log).await,
    )
    .await?;
    let mut stdout = std::io::stdout().lock();
    for l in out {
        let _ = writeln!(stdout, "{l}");
    }
    let _ = stdout.flush();
    Ok(code)
}

/// The action's work on a session: its exit code and its stdout lines.
async fn work(session: &Session, s: &Settings, log: &StepLog) -> Result<(FenceCode, Vec<String>), Error> {
    let quiet_log = |msg: String| {
        if !s.quiet {
            log.info(msg);
        }
    };
    match s.action {
        Action::Monitor => {
            power::ping(session).await?;
            quiet_log("the device answers".into());
            return Ok((FenceCode::Ok, vec![]));
        }
        Action::List | Action::ListStatus => {
            let sep = &s.separator;
            let lines = power::list(session)
                .await?
                .into_iter()
                .map(|v| {
                    let alias = v.uuid.unwrap_or_default();
                    match s.action {
                        Action::List => format!("{}{sep}{alias}", v.name),
                        _ => {
                            let state = match power::as_power(&v.power_state) {
                                Some(Power::On) => "ON",
                                Some(Power::Off) => "OFF",
                                None => "UNKNOWN",
                            };
                            format!("{}{sep}{alias}{sep}{state}", v.name)
                        }
                    }
                })
                .collect();
            return Ok((FenceCode::Ok, lines));
        }
        _ => {}
    }
    let plug = s.plug.as_deref().unwrap_or_default();
    let (vm, seen) = power::find_plug(session, plug).await?;
    let mut seen = seen;
    let one = |line: &str| vec![line.to_string()];
    match s.action {
        Action::Status => {
            let (st, p) = power::state_or_read(&vm, seen).await?;
            log.set_label(&st.name);
            Ok(match p {
                Power::On => (FenceCode::Ok, one("Status: ON")),
                Power::Off => (FenceCode::StatusOff, one("Status: OFF")),
            })
        }
        Action::Off => {
            let changed = power::set(&vm, seen.take(), Power::Off, s.power, log).await?;
            Ok((
                FenceCode::Ok,
                one(if changed {
                    "Success: Powered OFF"
                } else {
                    "Success: Already OFF"
                }),
            ))
        }
        Action::On => {
            let mut last = None;
            for attempt in 0..=s.retry_on {
                match power::set(&vm, seen.take(), Power::On, s.power, log).await {
                    Ok(changed) => {
                        return Ok((
                            FenceCode::Ok,
                            one(if changed {
                                "Success: Powered ON"
                            } else {
                                "Success: Already ON"
                            }),
                        ));
                    }
                    Err(e) => {
                        quiet_log(format!("power on, attempt {}: {e}", attempt + 1));
                        last = Some(e);
                    }
                }
            }
            Err(last.map_or_else(|| Error::Output("power on was not tried".into()), Error::from))
        }
        Action::Reboot => {
            power::set(&vm, seen.take(), Power::Off, s.power, log).await?;
            // fence-agents: once off, the node is fenced; a failed power-on is logged, not a failure.
            let mut on = Err(None);
            for _ in 0..s.retry_on.max(1) {
                match power::set(&vm, seen.take(), Power::On, s.power, log).await {
                    Ok(_) => {
                        on = Ok(());
                        break;
                    }
                    Err(e) => on = Err(Some(e)),
                }
            }
            if let Err(e) = on {
                say(false, "ERROR", "Timed out waiting to power ON");
                if let Some(e) = e {
                    say(false, "ERROR", &e.to_string());
                }
            }
            Ok((FenceCode::Ok, one("Success: Rebooted")))
        }
        _ => Ok((FenceCode::Ok, vec![])),
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('"', "&quot;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('\'', "&apos;")
}

fn getopt_mixed(o: &Opt) -> String {
    let value = match o.kind {
        Kind::Flag => String::new(),
        _ => format!("=[{}]", o.name.replace('_', "-")),
    };
    match o.short {
        Some(c) => format!("-{c}, --{}{value}", o.long),
        None => format!("--{}{value}", o.long),
    }
}

/// fence-agents' metadata XML (fencing.py's `metadata()` layout): parameters with `getopt` and
/// `content`, the older names as `deprecated="1"` and the new ones with `obsoletes`, then the actions.
pub fn metadata() -> String {
    let mut x = String::from("<?xml version=\"1.0\" ?>\n");
    x.push_str(&format!(
        "<resource-agent name=\"{AGENT}\" shortdesc=\"Fence agent for VMware vSphere VMs over the vim25 SOAP API (vmha)\" >\n"
    ));
    x.push_str(
        "<longdesc>fence_vmha is a Power Fencing agent for virtual machines managed by VMware vCenter or ESXi \
(vSphere API 4.1 or later), through vmha. The plug is the VM's name, BIOS UUID or instance UUID; a name two VMs \
share is refused. off is a hard power-off (PowerOffVM_Task), confirmed by reading the power state back; a VM whose \
host is not connected cannot be confirmed and fails the fence. TLS is verified by default (pin a certificate with \
thumbprint or ca_file). Sessions are cached between calls (session_dir). Every request is bounded by the larger of \
login_timeout and shell_timeout, every power change by power_timeout.</longdesc>\n\
<vendor-url>https://www.vmware.com</vendor-url>\n<parameters>\n",
    );
    let mut param = |name: &str, o: &Opt, extra: &str| {
        x.push_str(&format!(
            "\t<parameter name=\"{name}\" unique=\"0\" required=\"{}\"{extra}>\n",
            u8::from(o.required && !extra.contains("deprecated"))
        ));
        x.push_str(&format!("\t\t<getopt mixed=\"{}\" />\n", xml_escape(&getopt_mixed(o))));
        let ty = match o.kind {
            Kind::Flag => "boolean",
            Kind::Text => "string",
            Kind::Number if o.name.contains("timeout") || o.name.contains("wait") || o.name == "delay" => "second",
            Kind::Number => "integer",
        };
        let default = o
            .default
            .map(|d| format!("default=\"{}\" ", xml_escape(d)))
            .unwrap_or_default();
        x.push_str(&format!("\t\t<content type=\"{ty}\" {default}/>\n"));
        x.push_str(&format!(
            "\t\t<shortdesc lang=\"en\">{}</shortdesc>\n\t</parameter>\n",
            xml_escape(o.shortdesc)
        ));
    };
    for o in OPTS.iter().filter(|o| o.in_metadata()) {
        match o.old {
            Some(old) => {
                param(o.name, o, &format!(" obsoletes=\"{old}\""));
                param(old, o, " deprecated=\"1\"");
            }
            None => param(o.name, o, ""),
        }
    }
    x.push_str("</parameters>\n<actions>\n\t<action name=\"on\" automatic=\"0\"/>\n");
    for a in [
        "off",
        "reboot",
        "status",
        "list",
        "list-status",
        "monitor",
        "metadata",
        "validate-all",
    ] {
        x.push_str(&format!("\t<action name=\"{a}\" />\n"));
    }
    x.push_str("</actions>\n</resource-agent>\n");
    x
}

/// `-h`: fencing.py's usage layout.
pub fn usage() -> String {
    let mut u = format!("Usage:\n\t{AGENT} [options]\nOptions:\n");
    for o in OPTS {
        u.push_str(&format!("   {:<36} {}\n", getopt_mixed(o), o.shortdesc));
    }
    u.push_str(
        "\nWith no options, name=value lines are read from standard input (as Pacemaker's fencer sends them).\n\
Actions: on, off, reboot (default), status, list, list-status, monitor, metadata, validate-all.\n\
Exit codes: 0 success (status: ON), 2 status OFF, 1 failure.\n",
    );
    u
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_line_forms() {
        let g = parse_args(&args(&[
            "-o",
            "off",
            "-a",
            "vc.example.com",
            "-l",
            "admin",
            "-S",
            "/bin/pw",
            "-n",
            "vm 1",
            "--ssl-insecure",
            "--power-timeout=30",
            "--login-timeout",
            "7",
            "-vv",
        ]))
        .unwrap();
        assert_eq!(g.get("action"), Some("off"));
        assert_eq!(g.get("ip"), Some("vc.example.com"));
        assert_eq!(g.get("plug"), Some("vm 1"));
        assert_eq!(g.get("password_script"), Some("/bin/pw"));
        assert_eq!(g.verbose, 2);
        let s = check(&g).unwrap();
        assert_eq!(s.action, Action::Off);
        assert!(s.insecure);
        assert_eq!(s.power.timeout, Duration::from_secs(30));
        assert_eq!(s.request_timeout, Duration::from_secs(7));
        assert_eq!(s.url(), "https://vc.example.com:443/sdk");
        // Clustered and attached values, unique long prefixes.
        let g = parse_args(&args(&[
            "-ostatus",
            "-avc",
            "-lroot",
            "-pX",
            "-nvm1",
            "--ipp=8443",
            "--plug-sep=;",
        ]))
        .unwrap();
        assert_eq!(g.get("action"), Some("status"));
        assert_eq!(check(&g).unwrap().port, 8443);
        assert!(
            g.notes.iter().any(|n| n.contains("visible to every user")),
            "{:?}",
            g.notes
        );
        assert!(
            g.notes
                .iter()
                .any(|n| n.contains("plug_separator is accepted but ignored"))
        );
    }

    #[test]
    fn command_line_refusals() {
        assert!(
            parse_args(&args(&["--bogus"]))
                .unwrap_err()
                .contains("--bogus not recognized")
        );
        assert!(parse_args(&args(&["-Y"])).unwrap_err().contains("-Y not recognized"));
        assert!(parse_args(&args(&["-o"])).unwrap_err().contains("requires argument"));
        assert!(
            parse_args(&args(&["--ssl=1"]))
                .unwrap_err()
                .contains("must not have an argument")
        );
        assert!(parse_args(&args(&["--p=x"])).unwrap_err().contains("ambiguous"));
        let unused = parse_args(&args(&["-o", "list", "extra"])).unwrap();
        assert!(unused.notes.iter().any(|n| n.contains("unused arguments")));
    }

    #[test]
    fn stdin_form_as_the_fencer_sends_it() {
        let g = parse_stdin(
            "# from pacemaker-fenced\naction=reboot\nipaddr=\"vc.example.com\"\nlogin=admin\npasswd=s3cret\nport=DC0_H0_VM0\n\
             nodename=node1\nssl_insecure=1\npower-timeout=9\nssl=yes\nfoo=bar\nverbose=1\nnotls=maybe\n\n",
        );
        assert!(g.from_stdin);
        assert_eq!(g.get("ip"), Some("vc.example.com"));
        assert_eq!(g.get("username"), Some("admin"));
        assert_eq!(g.get("plug"), Some("DC0_H0_VM0"));
        assert_eq!(g.verbose, 1);
        assert!(
            g.notes.iter().any(|n| n == "ignoring unknown option 'foo'"),
            "{:?}",
            g.notes
        );
        assert!(!g.notes.iter().any(|n| n.contains("nodename")));
        assert!(
            g.notes
                .iter()
                .any(|n| n.contains("'notls' because it does not have a value"))
        );
        let s = check(&g).unwrap();
        assert_eq!(s.action, Action::Reboot);
        assert_eq!(s.password.as_ref().unwrap().expose_secret(), "s3cret");
        assert!(s.insecure);
        assert_eq!(s.power.timeout, Duration::from_secs(9));
        // The new names work too, and the password never shows in Debug or notes.
        let g = parse_stdin("action=status\nip=h\nusername=u\npassword=hunter2\nplug=x\nssl_insecure=false\n");
        let s = check(&g).unwrap();
        assert!(!s.insecure);
        assert!(!format!("{g:?}{s:?}").contains("hunter2"));
    }

    #[test]
    fn validation_names_what_is_missing() {
        let e = check(&parse_stdin("action=off\n")).unwrap_err();
        for want in ["login name", "fence address", "password or password script", "plug"] {
            assert!(e.contains(want), "{want}: {e}");
        }
        // list, list-status and monitor need no plug.
        assert!(check(&parse_stdin("action=list\nip=h\nusername=u\npassword=p\n")).is_ok());
        let e = check(&parse_stdin("action=dance\n")).unwrap_err();
        assert!(e.contains("unrecognised action 'dance'"));
        let e = check(&parse_stdin(
            "action=off\nip=h\nusername=u\npassword=p\nplug=x\npower_timeout=soon\n",
        ))
        .unwrap_err();
        assert!(
            e.contains("--power-timeout ('soon') is not a valid whole number of seconds"),
            "{e}"
        );
        let e = check(&parse_stdin(
            "ip=h\nusername=u\npassword=p\nplug=x\nssl_insecure=1\nthumbprint=AB\n",
        ))
        .unwrap_err();
        assert!(e.contains("pick one way"), "{e}");
        let e = check(&parse_stdin("ip=h\nusername=u\npassword=p\nplug=x\nnotls=1\n")).unwrap_err();
        assert!(e.contains("TLS 1.2"), "{e}");
        let e = check(&parse_stdin("ip=h\nusername=u\npassword=p\nplug=x\nipport=70000\n")).unwrap_err();
        assert!(e.contains("not a TCP port"), "{e}");
    }

    #[test]
    fn defaults_and_bounds() {
        let s = check(&parse_stdin("ip=fe80::1\nusername=u\npassword=p\nplug=x\n")).unwrap();
        assert_eq!(s.action, Action::Reboot);
        assert_eq!(s.url(), "https://[fe80::1]:443/sdk");
        assert_eq!(s.request_timeout, Duration::from_secs(5));
        assert_eq!(s.power.timeout, Duration::from_secs(20));
        assert_eq!(s.retry_on, 1);
        // reboot: 3 requests + 2 power changes.
        assert_eq!(s.bound(), Duration::from_secs(3 * 5 + 2 * 20));
        let s = check(&parse_stdin(
            "action=status\nip=h\nusername=u\npassword=p\nplug=x\nlogin_timeout=0\npower_timeout=0\n",
        ))
        .unwrap();
        assert_eq!(s.request_timeout, Duration::from_secs(15));
        assert_eq!(s.power.timeout, Duration::from_secs(20));
        assert_eq!(s.bound(), Duration::from_secs(45));
    }

    #[test]
    fn actions_parse_as_fencing_py() {
        for (t, a) in [
            ("on", Action::On),
            ("OFF", Action::Off),
            ("reboot", Action::Reboot),
            ("status", Action::Status),
            ("list", Action::List),
            ("list-status", Action::ListStatus),
            ("monitor", Action::Monitor),
            ("metadata", Action::Metadata),
            ("meta-data", Action::Metadata),
            ("validate-all", Action::ValidateAll),
        ] {
            assert_eq!(Action::parse(t), Some(a), "{t}");
        }
        assert_eq!(Action::parse("enable"), None);
    }

    #[test]
    fn metadata_is_fence_agents_xml() {
        let m = metadata();
        let doc = crate::soap::xml::parse(&m, 16).expect("well-formed");
        assert_eq!(doc.name, "resource-agent");
        assert!(m.starts_with("<?xml version=\"1.0\" ?>\n<resource-agent name=\"fence_vmha\" shortdesc="));
        for p in [
            "action",
            "ip",
            "ipaddr",
            "ipport",
            "username",
            "login",
            "password",
            "passwd",
            "password_script",
            "passwd_script",
            "plug",
            "port",
            "ssl_insecure",
            "ca_file",
            "thumbprint",
            "power_timeout",
            "delay",
        ] {
            assert!(m.contains(&format!("<parameter name=\"{p}\" ")), "{p}");
        }
        assert!(m.contains("<parameter name=\"port\" unique=\"0\" required=\"0\" deprecated=\"1\">"));
        assert!(m.contains("<parameter name=\"plug\" unique=\"0\" required=\"1\" obsoletes=\"port\">"));
        assert!(m.contains("<getopt mixed=\"-n, --plug=[plug]\" />"));
        assert!(m.contains("<content type=\"boolean\" />"));
        assert!(m.contains("<content type=\"second\" default=\"20\" />"));
        for a in [
            "on\" automatic=\"0\"/>",
            "off\" />",
            "reboot\" />",
            "status\" />",
            "list\" />",
            "list-status\" />",
            "monitor\" />",
            "metadata\" />",
            "validate-all\" />",
        ] {
            assert!(m.contains(&format!("<action name=\"{a}")), "{a}");
        }
        assert!(!m.contains("name=\"help\""));
    }

    #[test]
    fn failures_get_fence_agents_lines() {
        let missing = Error::Op(OpError::PlugNotFound { plug: "x".into() });
        assert_eq!(
            failure_line(&missing, Action::Off),
            "Failed: Unable to obtain correct plug status or plug is not available"
        );
        let refused = Error::Vim(VimError::LoginRefused {
            user: "u".into(),
            fault: crate::soap::Fault {
                kind: FaultKind::InvalidLogin,
                type_name: "InvalidLogin".into(),
                message: String::new(),
                detail_text: None,
            },
        });
        assert_eq!(
            failure_line(&refused, Action::Status),
            "Unable to connect/login to fencing device"
        );
        let unconfirmed = Error::Op(OpError::PowerNotConfirmed {
            vm: "v".into(),
            wanted: "off",
            seen: "poweredOn".into(),
            secs: 20,
            method: "PowerOffVM_Task",
        });
        assert_eq!(
            failure_line(&unconfirmed, Action::Off),
            "Failed: Timed out waiting to power OFF"
        );
        assert_eq!(
            failure_line(&unconfirmed, Action::On),
            "Failed: Timed out waiting to power ON"
        );
    }
}
