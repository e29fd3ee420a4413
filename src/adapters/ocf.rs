//! `vmha ocf ACTION`: the Pacemaker (OCF 1.1) resource agent.
//!
//! The parameters come from `OCF_RESKEY_<name>` variables, are checked here, and drive the ordinary commands
//! in-process (a [`Cli`] handed to [`crate::app::run`]); their vmha exit codes map to OCF's in [`ocf_code`].
//! The VM counts as running on a node only when it runs on that node's ESX host (`host`, or the node's entry in
//! `hostmap`), so monitor asks with `--migration-wait 0`: a VM elsewhere is "not running here" at once.

use std::io::Write;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use secrecy::SecretString;

use crate::cli::{Cli, Command, GlobalArgs, HostArg, VmArgs};
use crate::error::{Error, ExitCode};
use crate::log::StepLog;

/// OCF return codes (OCF 1.1, "Return codes").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OcfCode {
    Success = 0,
    ErrGeneric = 1,
    ErrArgs = 2,
    Unimplemented = 3,
    NotInstalled = 5,
    ErrConfigured = 6,
    NotRunning = 7,
}

impl OcfCode {
    pub fn code(self) -> u8 {
        self as u8
    }
}

/// The actions this agent implements; anything else answers `OCF_ERR_UNIMPLEMENTED`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Action {
    MetaData,
    ValidateAll,
    Start,
    Stop,
    Monitor,
    MigrateTo,
    MigrateFrom,
    Usage,
}

impl Action {
    pub fn parse(s: &str) -> Option<Action> {
        Some(match s {
            "meta-data" => Action::MetaData,
            "validate-all" => Action::ValidateAll,
            "start" => Action::Start,
            "stop" => Action::Stop,
            // `status` is the pre-OCF name of monitor; some tools still send it.
            "monitor" | "status" => Action::Monitor,
            "migrate_to" => Action::MigrateTo,
            "migrate_from" => Action::MigrateFrom,
            "usage" | "help" => Action::Usage,
            _ => return None,
        })
    }
}

/// A parameter problem: the OCF code to answer and what to tell the administrator.
#[derive(Debug, PartialEq, Eq)]
pub struct ParamError {
    pub code: OcfCode,
    pub message: String,
}

fn configured(message: impl Into<String>) -> ParamError {
    ParamError {
        code: OcfCode::ErrConfigured,
        message: message.into(),
    }
}

/// The agent's parameters, read from `OCF_RESKEY_*`. Debug never shows the password (SecretString redacts it).
#[derive(Debug, Default)]
pub struct Params {
    /// vCenter (or an ESXi host); `None` in an ESX-only cluster, where each node uses its host's address.
    pub url: Option<String>,
    /// The vCenter (or `url`) user; in an ESX-only cluster `host_user` may stand alone.
    pub user: Option<String>,
    pub password_file: Option<PathBuf>,
    pub password: Option<SecretString>,
    pub vm: VmArgs,
    pub host: Option<String>,
    pub hostmap: Vec<(String, String)>,
    pub thumbprint: Option<String>,
    pub ca_file: Option<PathBuf>,
    pub insecure: bool,
    pub request_timeout: Option<u64>,
    pub start_wait: Option<u64>,
    pub stop_wait: Option<u64>,
    /// `esx1=10.0.0.11;esx2=10.0.0.12`: each host's own endpoint.
    pub host_addresses: Vec<String>,
    pub host_user: Option<String>,
    pub host_password_file: Option<PathBuf>,
    pub host_thumbprints: Vec<String>,
    pub fallback_after: Option<u64>,
}

/// Parses `node1:esx1;node2:esx2` (fence-agents' `pcmk_host_map` syntax: entries separated by `;` or white
/// space, node and host by `:` or `=`). One host per node: a node named twice is an error.
pub fn parse_hostmap(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut map: Vec<(String, String)> = Vec::new();
    for entry in text
        .split(|c: char| c == ';' || c.is_whitespace())
        .filter(|e| !e.is_empty())
    {
        let Some((node, host)) = entry.split_once([':', '=']) else {
            return Err(format!(
                "hostmap entry '{entry}' has no ':' between node and host: write node1:esx1;node2:esx2"
            ));
        };
        let (node, host) = (node.trim(), host.trim());
        if node.is_empty() || host.is_empty() {
            return Err(format!(
                "hostmap entry '{entry}' lacks a node or a host: write node1:esx1;node2:esx2"
            ));
        }
        if host.contains(',') {
            return Err(format!(
                "hostmap entry '{entry}' names several hosts for node {node}: a node stands for exactly one ESX host"
            ));
        }
        if map.iter().any(|(n, _)| n == node) {
            return Err(format!("hostmap names node {node} twice"));
        }
        map.push((node.to_string(), host.to_string()));
    }
    Ok(map)
}

fn parse_bool(name: &str, v: &str) -> Result<bool, ParamError> {
    match v.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" | "y" => Ok(true),
        "0" | "false" | "no" | "off" | "n" | "" => Ok(false),
        other => Err(configured(format!(
            "{name}='{other}' is not a boolean: use true or false"
        ))),
    }
}

fn parse_secs(name: &str, v: &str) -> Result<u64, ParamError> {
    let t = v.trim();
    // Pacemaker-style times ("30s") are accepted as well as plain seconds.
    let digits = t.strip_suffix('s').unwrap_or(t);
    digits
        .parse::<u64>()
        .map_err(|_| configured(format!("{name}='{v}' is not a number of seconds")))
}

/// Reads the parameters through `env` (a lookup of variable names, so tests need no real environment).
pub fn params(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<Params, ParamError> {
    let get = |name: &str| env(&format!("OCF_RESKEY_{name}")).filter(|v| !v.trim().is_empty());
    let host_addresses: Vec<String> = get("host_addresses")
        .map(|t| {
            t.split(|c: char| c == ';' || c.is_whitespace())
                .filter(|e| !e.is_empty())
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    let url = get("url");
    if url.is_none() && host_addresses.is_empty() {
        return Err(configured(
            "parameter url is required (https://VCENTER/sdk); with no vCenter at all, give host_addresses instead (esx1=ADDRESS;esx2=ADDRESS) and hostmap",
        ));
    }
    // Without vCenter the host user logs in to each node's host; user and password are then optional.
    let esx_only_with_host_user = url.is_none() && get("host_user").is_some();
    let user = get("user");
    if user.is_none() && !esx_only_with_host_user {
        return Err(configured("parameter user is required"));
    }
    let password_file = get("password_file").map(PathBuf::from);
    let password = env("OCF_RESKEY_password")
        .filter(|v| !v.is_empty())
        .map(SecretString::from);
    match (&password_file, &password) {
        (Some(_), Some(_)) => {
            return Err(configured(
                "both password and password_file are set: keep only password_file (password is visible in the CIB)",
            ));
        }
        (None, None) if !esx_only_with_host_user => {
            return Err(configured(
                "no password: set password_file to a root-only file holding it (or password, visible in the CIB)",
            ));
        }
        _ => {}
    }
    let vm = VmArgs {
        vmx: get("vmx"),
        name: get("name"),
        uuid: get("uuid"),
        datacenter: get("datacenter"),
    };
    let chosen = [&vm.vmx, &vm.name, &vm.uuid].iter().filter(|v| v.is_some()).count();
    if chosen != 1 {
        return Err(configured(format!(
            "name the VM with exactly one of vmx, name, uuid ({chosen} given)"
        )));
    }
    let hostmap = match get("hostmap") {
        Some(t) => parse_hostmap(&t).map_err(configured)?,
        None => Vec::new(),
    };
    let insecure = match get("insecure") {
        Some(v) => parse_bool("insecure", &v)?,
        None => false,
    };
    let secs = |name: &str| get(name).map(|v| parse_secs(name, &v)).transpose();
    Ok(Params {
        url,
        user,
        password_file,
        password,
        vm,
        host: get("host"),
        hostmap,
        thumbprint: get("thumbprint"),
        ca_file: get("ca_file").map(PathBuf::from),
        insecure,
        request_timeout: secs("request_timeout")?,
        start_wait: secs("start_wait")?,
        stop_wait: secs("stop_wait")?,
        host_thumbprints: get("host_thumbprints")
            .map(|t| {
                t.split([';', ' '])
                    .filter(|e| !e.is_empty())
                    .map(str::to_string)
                    .collect()
            })
            .unwrap_or_default(),
        host_addresses,
        host_user: get("host_user"),
        host_password_file: get("host_password_file").map(PathBuf::from),
        fallback_after: secs("fallback_after")?,
    })
}

/// The ESX host a cluster node stands for: `hostmap`'s entry for it.
pub fn host_of_node(params: &Params, node: &str) -> Option<String> {
    params
        .hostmap
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(node))
        .map(|(_, h)| h.clone())
}

/// This node's ESX host: `host` if given, else this node's `hostmap` entry, else none (ESX-direct: the
/// connected host). `local_node` is asked only when it is needed.
pub async fn local_host(
    params: &Params,
    local_node: impl AsyncFnOnce() -> Result<String, String>,
) -> Result<Option<String>, ParamError> {
    if let Some(h) = &params.host {
        return Ok(Some(h.clone()));
    }
    if params.hostmap.is_empty() {
        return Ok(None);
    }
    let node = local_node().await.map_err(|e| ParamError {
        code: OcfCode::ErrGeneric,
        message: format!("cannot tell this node's name for hostmap: {e}"),
    })?;
    host_of_node(params, &node).map(Some).ok_or_else(|| ParamError {
        // Another node may be listed; this one is not, so the resource cannot run here.
        code: OcfCode::ErrArgs,
        message: format!("hostmap has no entry for this node ({node}): add {node}:ESXHOST"),
    })
}

/// This node's cluster name: Pacemaker's `OCF_RESKEY_CRM_meta_on_node`, else `crm_node -n`, which gets
/// [`CRM_NODE_WAIT`] to answer and is killed after that.
async fn local_node(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Result<String, String> {
    if let Some(n) = env("OCF_RESKEY_CRM_meta_on_node").filter(|n| !n.is_empty()) {
        return Ok(n);
    }
    let child = tokio::process::Command::new("crm_node")
        .arg("-n")
        .env_remove("OCF_RESKEY_password") // never hand the secret to a child
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        // Dropped when the wait below gives up: the child is killed, not left behind.
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("crm_node -n: {e}"))?;
    let out = match tokio::time::timeout(CRM_NODE_WAIT, child.wait_with_output()).await {
        Ok(r) => r.map_err(|e| format!("crm_node -n: {e}"))?,
        Err(_) => {
            return Err(format!(
                "crm_node -n did not answer within {} s",
                CRM_NODE_WAIT.as_secs()
            ));
        }
    };
    let name = String::from_utf8_lossy(&out.stdout).trim().to_string();
    if out.status.success() && !name.is_empty() {
        Ok(name)
    } else {
        Err(format!("crm_node -n failed ({})", out.status))
    }
}

/// How long `crm_node -n` may take (it asks the local cluster daemons).
const CRM_NODE_WAIT: Duration = Duration::from_secs(10);

/// The OCF answer for a vmha exit code. `probe` is a monitor with interval 0.
///
/// Decision for a probe that cannot reach the server (vmha 4): "not running" (7). A probe answers "is it
/// running here?" before Pacemaker acts; the resource-agents convention is to answer 7 when the state cannot be
/// read (e.g. shared storage not mounted), because an error would make Pacemaker stop the resource on every node
/// that cannot reach vCenter, and a failed stop fences: a vCenter outage at cluster start would fence the whole
/// cluster. Answering 7 cannot run the VM twice: every start also goes through the server, refuses a VM that
/// runs on another connected host (vmha 5), and ESX's file locks refuse a second power-on. A recurring monitor
/// (interval > 0) that cannot connect answers a generic error, since the resource was known to run here.
pub fn ocf_code(action: Action, probe: bool, code: ExitCode) -> OcfCode {
    use ExitCode as V;
    match (action, code) {
        (_, V::Ok) => OcfCode::Success,
        // Wrong credentials are wrong on every node; a failing stop must stay a plain failure (it fences).
        (Action::Stop, V::LoginRefused) => OcfCode::ErrGeneric,
        (_, V::LoginRefused) => OcfCode::ErrConfigured,
        // Settings checked here first; what remains (VM or host not in the inventory) is local to this node.
        (_, V::Usage) => OcfCode::ErrArgs,
        (Action::Monitor, V::CannotConnect) if probe => OcfCode::NotRunning,
        (Action::Monitor, V::NotRegistered | V::NotPoweredOn | V::Migrated) => OcfCode::NotRunning,
        _ => OcfCode::ErrGeneric,
    }
}

/// What the agent's own checks find wrong before vmha runs (the same checks as validate-all).
fn check_local_files(p: &Params) -> Result<(), ParamError> {
    for (name, path) in [
        ("password_file", &p.password_file),
        ("ca_file", &p.ca_file),
        ("host_password_file", &p.host_password_file),
    ] {
        if let Some(path) = path
            && let Err(e) = std::fs::metadata(path)
        {
            // Files are per node: missing here is OCF_ERR_ARGS ("not valid on this node"), not a bad configuration.
            return Err(ParamError {
                code: OcfCode::ErrArgs,
                message: format!("{name} {}: {e}", path.display()),
            });
        }
    }
    if p.insecure && (p.thumbprint.is_some() || p.ca_file.is_some()) {
        return Err(configured(
            "insecure cannot be combined with thumbprint or ca_file: pick one way to trust the server",
        ));
    }
    if let Some(t) = &p.thumbprint {
        crate::soap::tls::parse_thumbprint(t).map_err(|e| configured(format!("thumbprint: {e}")))?;
    }
    if let Some(url) = &p.url {
        crate::config::normalize_url(url).map_err(|e| configured(e.to_string()))?;
    }
    if p.host_user.is_some() != p.host_password_file.is_some() {
        return Err(configured(
            "host_user and host_password_file go together: the local ESXi user vmha logs in to hosts as, and its password file",
        ));
    }
    crate::config::vm_selector(&p.vm, &Default::default()).map_err(|e| configured(e.to_string()))?;
    Ok(())
}

fn global(p: &Params, request_timeout: Option<u64>, fallback_after: Option<u64>) -> GlobalArgs {
    GlobalArgs {
        url: p.url.clone(),
        host_address: p.host_addresses.clone(),
        host_user: p.host_user.clone(),
        host_password_file: p.host_password_file.clone(),
        host_thumbprint: p.host_thumbprints.clone(),
        fallback_after,
        user: p.user.clone(),
        password_file: p.password_file.clone(),
        password: p.password.clone(),
        insecure: p.insecure,
        thumbprint: p.thumbprint.clone(),
        ca_file: p.ca_file.clone(),
        request_timeout,
        record_label: "recorded by vmha ocf".into(),
        ..Default::default()
    }
}

/// `OCF_RESKEY_CRM_meta_timeout` (ms) bounds every request: a hung server must be answered before Pacemaker
/// kills the agent, so one request may take at most half the action's timeout.
fn bounded_request_timeout(p: &Params, env: &(dyn Fn(&str) -> Option<String> + Sync), cap: Option<u64>) -> Option<u64> {
    let meta = env("OCF_RESKEY_CRM_meta_timeout")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|ms| (ms / 2000).max(1));
    [p.request_timeout, meta, cap].into_iter().flatten().min()
}

/// How long vCenter may take before this node's host is asked: at most a quarter of the action's timeout, so
/// that the host still has the rest (a 30 s monitor gives vCenter 7 s).
fn bounded_fallback(p: &Params, env: &(dyn Fn(&str) -> Option<String> + Sync)) -> Option<u64> {
    let meta = env("OCF_RESKEY_CRM_meta_timeout")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .map(|ms| (ms / 4000).max(1));
    let default = Some(crate::config::DEFAULT_FALLBACK_AFTER);
    [p.fallback_after.or(default), meta].into_iter().flatten().min()
}

fn usage_text() -> &'static str {
    "usage: vmha ocf {start|stop|monitor|migrate_to|migrate_from|validate-all|meta-data|usage}\n\
     Parameters come from OCF_RESKEY_* variables; `vmha ocf meta-data` lists them."
}

/// Runs one OCF action and returns its OCF code. `env` reads the process environment (a parameter for tests).
pub async fn run(action: Option<&str>, env: &(dyn Fn(&str) -> Option<String> + Sync), log: &StepLog) -> OcfCode {
    let Some(name) = action else {
        eprintln!("{}", usage_text());
        return OcfCode::ErrArgs;
    };
    let Some(action) = Action::parse(name) else {
        eprintln!("vmha ocf: action '{name}' is not implemented\n{}", usage_text());
        return OcfCode::Unimplemented;
    };
    match action {
        Action::MetaData => {
            let mut out = std::io::stdout().lock();
            let _ = out.write_all(meta_data().as_bytes());
            let _ = out.flush();
            return OcfCode::Success;
        }
        Action::Usage => {
            println!("{}", usage_text());
            return OcfCode::Success;
        }
        _ => {}
    }
    let params = match params(env).and_then(|p| check_local_files(&p).map(|()| p)) {
        Ok(p) => p,
        Err(e) => {
            // A probe on a node whose parameters cannot be used here (e.g. no password file on this node) must
            // still answer "not running", as OCF asks; a bad configuration stays a bad configuration.
            let probe = action == Action::Monitor && is_probe(env);
            eprintln!("vmha ocf {name}: {}", e.message);
            return if probe && e.code == OcfCode::ErrArgs {
                OcfCode::NotRunning
            } else {
                e.code
            };
        }
    };
    let probe = action == Action::Monitor && is_probe(env);
    let here = match local_host(&params, async || local_node(env).await).await {
        Ok(h) => h,
        Err(e) => {
            eprintln!("vmha ocf {name}: {}", e.message);
            // A node that hostmap does not list cannot run the resource: a probe says so plainly.
            return if probe && e.code == OcfCode::ErrArgs {
                OcfCode::NotRunning
            } else {
                e.code
            };
        }
    };
    let command = match action {
        Action::ValidateAll => {
            log.info(format!(
                "parameters valid; this node's ESX host: {}",
                here.as_deref().unwrap_or("the connected host (ESX-direct)")
            ));
            if params.url.is_some() && params.host_user.is_none() {
                log.warn(
                    "no host_user: while vCenter is down this resource can be neither monitored nor failed over (vCenter is a single point of failure); set host_user and host_password_file (a local ESXi user) so each node can act through its own host",
                );
            }
            return OcfCode::Success;
        }
        Action::Start => Command::Start {
            vm: params.vm.clone(),
            host: HostArg { host: here },
            start_wait: params.start_wait,
            answers: Vec::new(),
        },
        Action::Stop => Command::Stop {
            vm: params.vm.clone(),
            host: HostArg { host: here },
            stop_wait: params.stop_wait,
            keep_registered: None,
            unregister: None,
            answers: Vec::new(),
        },
        Action::Monitor | Action::MigrateFrom => Command::Monitor {
            vm: params.vm.clone(),
            host: HostArg { host: here },
            watch: None,
            migration_wait: Some(0),
            require_heartbeat: None,
        },
        Action::MigrateTo => {
            let Some(target) = env("OCF_RESKEY_CRM_meta_migrate_target").filter(|t| !t.is_empty()) else {
                eprintln!("vmha ocf migrate_to: OCF_RESKEY_CRM_meta_migrate_target is not set (Pacemaker sets it)");
                return OcfCode::ErrGeneric;
            };
            let Some(to_host) = host_of_node(&params, &target) else {
                eprintln!(
                    "vmha ocf migrate_to: hostmap has no entry for the target node {target}: add {target}:ESXHOST"
                );
                return OcfCode::ErrConfigured;
            };
            Command::Migrate {
                vm: params.vm.clone(),
                to_host,
            }
        }
        // Printed before the parameters were read (they need none).
        Action::MetaData | Action::Usage => return OcfCode::Success,
    };
    // A probe must be quick: one request may take at most 20 s.
    let cap = if action == Action::Monitor { Some(20) } else { None };
    let cli = Cli {
        global: global(
            &params,
            bounded_request_timeout(&params, env, cap),
            bounded_fallback(&params, env),
        ),
        command,
    };
    let result = dispatch(cli, log).await;
    let code = match &result {
        Ok(c) => *c,
        Err(e) => {
            eprintln!("vmha ocf {name}: error: {e}");
            if let Some(h) = e.hint() {
                eprintln!("vmha ocf {name}: hint: {h}");
            }
            e.exit_code()
        }
    };
    let answer = if action == Action::MigrateFrom {
        // migrate_from only confirms that the VM arrived on this node's host.
        if code == ExitCode::Ok {
            OcfCode::Success
        } else {
            OcfCode::ErrGeneric
        }
    } else {
        ocf_code(action, probe, code)
    };
    if answer != OcfCode::Success {
        eprintln!("vmha ocf {name}: vmha exit {} -> OCF {}", code.code(), answer.code());
    }
    answer
}

/// Runs one vmha command in-process; its exit code is what the OCF code is decided from.
async fn dispatch(cli: Cli, log: &StepLog) -> Result<ExitCode, Error> {
    crate::app::execute(cli, log).await.map(|o| o.code)
}

fn is_probe(env: &(dyn Fn(&str) -> Option<String> + Sync)) -> bool {
    env("OCF_RESKEY_CRM_meta_interval")
        .and_then(|v| v.trim().parse::<u64>().ok())
        .unwrap_or(0)
        == 0
}

/// Reads the real environment; passed to [`run`] by the dispatcher.
pub fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// (name, required, type, default, short, long) of every parameter, in meta-data order.
pub const PARAMETERS: &[(&str, bool, &str, &str, &str, &str)] = &[
    (
        "url",
        false,
        "string",
        "",
        "vCenter or ESXi SDK URL",
        "vCenter (or ESXi) endpoint: https://HOST[:PORT]/sdk or a bare HOST. Required, unless the cluster has no vCenter at all: then leave it out and give host_addresses; each node talks to its own host.",
    ),
    ("user", true, "string", "", "User name", "User to log in as."),
    (
        "password_file",
        false,
        "string",
        "",
        "File holding the password",
        "A file (mode 600, owned by root) whose first line is the password. Use this rather than password.",
    ),
    (
        "password",
        false,
        "string",
        "",
        "Password (visible in the CIB)",
        "The password itself. WARNING: it is stored in the CIB, readable by every cluster administrator and in CIB backups; prefer password_file.",
    ),
    (
        "vmx",
        false,
        "string",
        "",
        "The VM's .vmx path",
        "'[datastore] dir/x.vmx'. Give exactly one of vmx, name, uuid.",
    ),
    (
        "name",
        false,
        "string",
        "",
        "The VM's inventory name",
        "The VM's name in the inventory. Give exactly one of vmx, name, uuid.",
    ),
    (
        "uuid",
        false,
        "string",
        "",
        "The VM's UUID",
        "BIOS UUID (config.uuid) or instance UUID. Give exactly one of vmx, name, uuid.",
    ),
    (
        "datacenter",
        false,
        "string",
        "",
        "Datacenter",
        "Only look for the VM in this datacenter.",
    ),
    (
        "host",
        false,
        "string",
        "",
        "This node's ESX host",
        "The ESX host this cluster node stands for (vCenter). Overrides hostmap for this node; usually set per node, or use hostmap.",
    ),
    (
        "hostmap",
        false,
        "string",
        "",
        "Node to ESX host map",
        "node1:esx1;node2:esx2 (pcmk_host_map syntax): the ESX host of each cluster node. Gives this node's host when host is not set, and the target host of a live migration.",
    ),
    (
        "thumbprint",
        false,
        "string",
        "",
        "Server certificate SHA-256",
        "Accept only the server certificate with this SHA-256 thumbprint (hex, colons optional).",
    ),
    (
        "ca_file",
        false,
        "string",
        "",
        "Extra CA certificates",
        "PEM file with the trusted root certificates, used instead of the system store.",
    ),
    (
        "insecure",
        false,
        "boolean",
        "false",
        "Skip TLS verification",
        "Do not verify the server's certificate (not recommended; use thumbprint).",
    ),
    (
        "request_timeout",
        false,
        "integer",
        "120",
        "Seconds per request",
        "Seconds one request may take; also bounded by half the action's timeout.",
    ),
    (
        "start_wait",
        false,
        "integer",
        "30",
        "Seconds to wait on start",
        "Seconds start waits for the guest heartbeat and for locked files to be released. Keep the start timeout above start_wait + 90.",
    ),
    (
        "stop_wait",
        false,
        "integer",
        "240",
        "Seconds for guest shutdown",
        "Seconds stop waits for the guest to shut down before powering off. Keep the stop timeout above stop_wait + 60.",
    ),
    (
        "host_addresses",
        false,
        "string",
        "",
        "Each ESX host's own address",
        "esx1=10.0.0.11;esx2=10.0.0.12: how to reach each host directly (name as vCenter shows it, or as hostmap names it = host name, IP or https URL). Default: the host's name. Used when vCenter is down, and in clusters without vCenter.",
    ),
    (
        "host_user",
        false,
        "string",
        "",
        "Local ESXi user",
        "A local ESXi user on every host (with the privileges the README lists for ESX-direct; on the Exception Users list of hosts in lockdown mode). With it, monitor, status, start and stop act through this node's host when vCenter cannot be reached.",
    ),
    (
        "host_password_file",
        false,
        "string",
        "",
        "File holding the ESXi user's password",
        "A file (mode 600, owned by root) whose first line is host_user's password.",
    ),
    (
        "host_thumbprints",
        false,
        "string",
        "",
        "Host certificate SHA-256s",
        "esx1=SHA256;esx2=SHA256: accept only these certificates from the hosts. Without it a host is trusted by ca_file (VMCA signs host certificates) or by the certificate vCenter reported for it while it was up.",
    ),
    (
        "fallback_after",
        false,
        "integer",
        "10",
        "Seconds before asking the host",
        "How long vCenter may take to answer before this node's host is asked directly; at most a quarter of the action's timeout.",
    ),
];

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// OCF 1.1 meta-data. Timeouts cover the default waits: start 30 s + registration and power-on, stop 240 s + power-off.
pub fn meta_data() -> String {
    let mut x = String::from("<?xml version=\"1.0\"?>\n<!DOCTYPE resource-agent SYSTEM \"ra-api-1.dtd\">\n");
    x.push_str(&format!(
        "<resource-agent name=\"vm\" version=\"{}\">\n<version>1.1</version>\n",
        env!("CARGO_PKG_VERSION")
    ));
    x.push_str(
        "<longdesc lang=\"en\">A vSphere virtual machine as a cluster resource, through vCenter or ESXi (vmha). \
The VM counts as running on a node only when it runs on that node's ESX host (host or hostmap). \
start registers, relocates and powers it on there; stop shuts the guest down (power-off after stop_wait) and \
leaves a VM that runs on another host alone; migrate_to live-migrates it (vCenter).</longdesc>\n\
<shortdesc lang=\"en\">vSphere VM (vmha)</shortdesc>\n<parameters>\n",
    );
    for (name, required, ty, default, short, long) in PARAMETERS {
        x.push_str(&format!(
            "<parameter name=\"{name}\" required=\"{}\" unique=\"0\">\n<longdesc lang=\"en\">{}</longdesc>\n<shortdesc lang=\"en\">{}</shortdesc>\n<content type=\"{ty}\"{} />\n</parameter>\n",
            u8::from(*required),
            xml_escape(long),
            xml_escape(short),
            if default.is_empty() {
                String::new()
            } else {
                format!(" default=\"{default}\"")
            }
        ));
    }
    x.push_str(
        "</parameters>\n<actions>\n\
<action name=\"start\" timeout=\"120s\" />\n\
<action name=\"stop\" timeout=\"300s\" />\n\
<action name=\"monitor\" timeout=\"30s\" interval=\"10s\" depth=\"0\" />\n\
<action name=\"migrate_to\" timeout=\"300s\" />\n\
<action name=\"migrate_from\" timeout=\"60s\" />\n\
<action name=\"validate-all\" timeout=\"30s\" />\n\
<action name=\"meta-data\" timeout=\"5s\" />\n\
<action name=\"usage\" timeout=\"5s\" />\n\
</actions>\n</resource-agent>\n",
    );
    x
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |k: &str| map.get(k).cloned()
    }

    const BASE: &[(&str, &str)] = &[
        ("OCF_RESKEY_url", "https://vc/sdk"),
        ("OCF_RESKEY_user", "u"),
        ("OCF_RESKEY_password", "s3cret"),
        ("OCF_RESKEY_name", "vm1"),
    ];

    fn with(extra: &[(&'static str, &'static str)]) -> Vec<(&'static str, &'static str)> {
        let mut v: Vec<_> = BASE
            .iter()
            .copied()
            .filter(|(k, _)| !extra.iter().any(|(e, _)| e == k))
            .collect();
        v.extend(extra.iter().copied().filter(|(_, val)| !val.is_empty()));
        v
    }

    #[test]
    fn hostmap_parses_pcmk_syntax() {
        assert_eq!(
            parse_hostmap("node1:esx1;node2:esx2").unwrap(),
            vec![("node1".into(), "esx1".into()), ("node2".into(), "esx2".into())]
        );
        assert_eq!(parse_hostmap(" a=h1 ; b:h2\n").unwrap().len(), 2);
        assert_eq!(parse_hostmap("a:h1;").unwrap(), vec![("a".into(), "h1".into())]);
        assert!(parse_hostmap("a").unwrap_err().contains("':'"));
        assert!(parse_hostmap("a:").unwrap_err().contains("lacks"));
        assert!(parse_hostmap("a:h1;a:h2").unwrap_err().contains("twice"));
        assert!(parse_hostmap("a:h1,h2").unwrap_err().contains("exactly one"));
    }

    #[test]
    fn params_read_and_checked() {
        let p = params(&env_of(&with(&[
            ("OCF_RESKEY_hostmap", "n1:DC0_C0_H0;n2:DC0_C0_H1"),
            ("OCF_RESKEY_insecure", "yes"),
            ("OCF_RESKEY_stop_wait", "60s"),
        ])))
        .unwrap();
        assert_eq!(p.vm.name.as_deref(), Some("vm1"));
        assert!(p.insecure);
        assert_eq!(p.stop_wait, Some(60));
        assert_eq!(p.start_wait, None);
        assert_eq!(host_of_node(&p, "n2").as_deref(), Some("DC0_C0_H1"));
        // The password never shows in Debug.
        assert!(!format!("{p:?}").contains("s3cret"));

        let err = |extra: &[(&'static str, &'static str)]| params(&env_of(&with(extra))).unwrap_err();
        assert_eq!(err(&[("OCF_RESKEY_url", "")]).code, OcfCode::ErrConfigured);
        assert!(err(&[("OCF_RESKEY_password_file", "/x")]).message.contains("both"));
        assert!(err(&[("OCF_RESKEY_password", "")]).message.contains("no password"));
        assert!(err(&[("OCF_RESKEY_uuid", "4210")]).message.contains("exactly one"));
        assert!(err(&[("OCF_RESKEY_insecure", "maybe")]).message.contains("boolean"));
        assert!(err(&[("OCF_RESKEY_start_wait", "soon")]).message.contains("start_wait"));
        assert!(err(&[("OCF_RESKEY_hostmap", "n1")]).message.contains("hostmap"));
    }

    #[test]
    fn local_host_prefers_host_then_hostmap() {
        let p = params(&env_of(&with(&[("OCF_RESKEY_hostmap", "n1:H0;n2:H1")]))).unwrap();
        let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
        let local_host = |p: &Params, node: Result<String, String>, asked: bool| {
            rt.block_on(local_host(p, async || {
                assert!(asked, "the node name is not needed here");
                node
            }))
        };
        assert_eq!(local_host(&p, Ok("n2".into()), true).unwrap().as_deref(), Some("H1"));
        let missing = local_host(&p, Ok("n3".into()), true).unwrap_err();
        assert_eq!(missing.code, OcfCode::ErrArgs);
        assert!(missing.message.contains("n3"));
        assert_eq!(
            local_host(&p, Err("no cluster".into()), true).unwrap_err().code,
            OcfCode::ErrGeneric
        );
        let p = params(&env_of(&with(&[
            ("OCF_RESKEY_hostmap", "n1:H0"),
            ("OCF_RESKEY_host", "H9"),
        ])))
        .unwrap();
        assert_eq!(local_host(&p, Ok("n1".into()), false).unwrap().as_deref(), Some("H9"));
        let p = params(&env_of(BASE)).unwrap();
        assert_eq!(local_host(&p, Ok("n1".into()), false).unwrap(), None);
    }

    #[test]
    fn code_mapping() {
        use Action::*;
        use ExitCode as V;
        assert_eq!(ocf_code(Start, false, V::Ok), OcfCode::Success);
        assert_eq!(ocf_code(Monitor, false, V::NotPoweredOn), OcfCode::NotRunning);
        assert_eq!(ocf_code(Monitor, true, V::NotRegistered), OcfCode::NotRunning);
        assert_eq!(ocf_code(Monitor, true, V::Migrated), OcfCode::NotRunning);
        assert_eq!(ocf_code(Monitor, false, V::HeartbeatRed), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Monitor, false, V::QuestionPending), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Monitor, false, V::HostNotConnected), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Monitor, true, V::CannotConnect), OcfCode::NotRunning);
        assert_eq!(ocf_code(Monitor, false, V::CannotConnect), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Start, false, V::CannotConnect), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Start, false, V::RunningElsewhere), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Start, false, V::LoginRefused), OcfCode::ErrConfigured);
        assert_eq!(ocf_code(Stop, false, V::LoginRefused), OcfCode::ErrGeneric);
        assert_eq!(ocf_code(Stop, false, V::Usage), OcfCode::ErrArgs);
        assert_eq!(ocf_code(MigrateTo, false, V::Failure), OcfCode::ErrGeneric);
        // A stop never answers "not running": only success or failure.
        assert_eq!(ocf_code(Stop, false, V::NotPoweredOn), OcfCode::ErrGeneric);
    }

    #[test]
    fn actions() {
        assert_eq!(Action::parse("monitor"), Some(Action::Monitor));
        assert_eq!(Action::parse("status"), Some(Action::Monitor));
        assert_eq!(Action::parse("migrate_to"), Some(Action::MigrateTo));
        assert_eq!(Action::parse("promote"), None);
    }

    #[test]
    fn meta_data_lists_every_parameter_and_covers_waits() {
        let m = meta_data();
        for (name, ..) in PARAMETERS {
            assert!(m.contains(&format!("<parameter name=\"{name}\"")), "{name} missing");
        }
        for p in [
            "url",
            "user",
            "password_file",
            "password",
            "vmx",
            "name",
            "uuid",
            "datacenter",
            "host",
            "hostmap",
            "thumbprint",
            "ca_file",
            "insecure",
            "request_timeout",
            "start_wait",
            "stop_wait",
        ] {
            assert!(PARAMETERS.iter().any(|(n, ..)| *n == p), "{p} not in meta-data");
        }
        let timeout = |action: &str| -> u64 {
            let pattern = format!("<action name=\"{action}\" timeout=\"");
            let at = m.find(&pattern).unwrap() + pattern.len();
            m[at..].split('s').next().unwrap().parse().unwrap()
        };
        assert!(timeout("start") >= crate::config::DEFAULT_START_WAIT + 60);
        assert!(timeout("stop") >= crate::config::DEFAULT_STOP_WAIT + 30);
        assert!(m.contains("<version>1.1</version>"));
    }

    #[test]
    fn request_timeout_bounded_by_action_timeout() {
        let p = params(&env_of(&with(&[("OCF_RESKEY_request_timeout", "100")]))).unwrap();
        let e = env_of(&[("OCF_RESKEY_CRM_meta_timeout", "30000")]);
        assert_eq!(bounded_request_timeout(&p, &e, None), Some(15));
        assert_eq!(bounded_request_timeout(&p, &env_of(&[]), None), Some(100));
        assert_eq!(bounded_request_timeout(&p, &env_of(&[]), Some(20)), Some(20));
    }
}
