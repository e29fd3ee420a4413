//! Runs one parsed command: settings, session, work, output. Returns the exit code.

/// A thumbprint read needs only a TCP and TLS handshake: no reason to wait a whole request timeout.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

use std::time::Duration;

use clap::CommandFactory;
use serde_json::{Map, Value, json};

use crate::cli::{Cli, Command};
use crate::client::VimError;
use crate::client::cache::{HostMemo, Memo, SessionCache, VmMemo};
use crate::client::{ConnectOptions, Credentials, Session, VmSelector, server_thumbprint};
use crate::config::{self, ConnectionSettings, Waits};
use crate::error::{Error, ExitCode, SessionEnd};
use crate::log::StepLog;
use crate::ops::{self, AnswerPolicy, Ctx};
use crate::soap::FaultKind;

/// What a command produced: its exit code, its human output, and its own fields for `--json`.
#[derive(Debug)]
pub struct Outcome {
    pub code: ExitCode,
    /// Printed on stdout without `--json` (status's report, check's line, a completion script).
    pub text: Option<String>,
    pub fields: Map<String, Value>,
}

impl Outcome {
    fn ok(text: Option<String>, fields: Value) -> Outcome {
        Outcome {
            code: ExitCode::Ok,
            text,
            fields: match fields {
                Value::Object(m) => m,
                _ => Map::new(),
            },
        }
    }
}

/// Runs the command and reports it: human text, or exactly one JSON object on stdout with `--json`
/// (failures included). Returns the exit code.
pub async fn run(cli: Cli, log: &StepLog) -> ExitCode {
    let json = wants_json(&cli.global);
    if json {
        log.use_stderr();
    }
    let command = cli.command.name();
    let result = execute(cli, log).await;
    report(command, json, &result)
}

/// `--json` from the flag or variable, else from the config file.
fn wants_json(g: &crate::cli::GlobalArgs) -> bool {
    g.json
        .or_else(|| config::load_file(g).ok().and_then(|f| f.json))
        .unwrap_or(false)
}

/// Prints the outcome or the error, and returns the exit code.
pub fn report(command: &str, json: bool, result: &Result<Outcome, Error>) -> ExitCode {
    let code = match result {
        Ok(o) => o.code,
        Err(e) => e.exit_code(),
    };
    if json {
        println!("{}", json_report(command, result));
        return code;
    }
    match result {
        Ok(o) => {
            if let Some(t) = &o.text {
                print!("{t}");
            }
        }
        Err(e) => {
            eprintln!("vmha: error: {e}");
            if let Some(h) = e.hint() {
                eprintln!("vmha: hint: {h}");
            }
        }
    }
    code
}

/// The `--json` object: `command`, `ok`, `exit_code`, `error`, `hint`, then the command's own fields.
pub fn json_report(command: &str, result: &Result<Outcome, Error>) -> Value {
    let mut out = Map::new();
    out.insert("command".into(), command.into());
    let (code, error, hint, fields) = match result {
        Ok(o) => {
            let why = o.fields.get("reason").cloned().filter(|_| o.code != ExitCode::Ok);
            (o.code, why.unwrap_or(Value::Null), Value::Null, o.fields.clone())
        }
        Err(e) => (
            e.exit_code(),
            e.to_string().into(),
            e.hint().map_or(Value::Null, Value::from),
            Map::new(),
        ),
    };
    out.insert("ok".into(), (code == ExitCode::Ok).into());
    out.insert("exit_code".into(), code.code().into());
    out.insert("error".into(), error);
    out.insert("hint".into(), hint);
    for (k, v) in fields {
        out.entry(k).or_insert(v);
    }
    Value::Object(out)
}

/// The JSON object for a command line clap refused (exit 2).
pub fn usage_error_json(message: &str) -> Value {
    json!({"command": null, "ok": false, "exit_code": ExitCode::Usage.code(), "error": message.trim(),
           "hint": "see vmha --help"})
}

/// Writes vmha(1) and one page per visible subcommand (vmha-start(1), ...) into `dir`, as the packages
/// install them; returns the files written, vmha.1 first.
fn write_man_pages(dir: &std::path::Path) -> Result<Vec<std::path::PathBuf>, Error> {
    let fail = |e: std::io::Error| {
        Error::Output(format!(
            "man pages into {}: {e} (give an existing, writable directory)",
            dir.display()
        ))
    };
    // Built once so each subcommand's page is titled and named `vmha-SUB`; the version propagates so each
    // page's header carries it, as vmha(1)'s does.
    let mut cmd = Cli::command().disable_help_subcommand(true).propagate_version(true);
    cmd.build();
    let mut files = vec![clap_mangen::Man::new(cmd.clone()).generate_to(dir).map_err(fail)?];
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        files.push(clap_mangen::Man::new(sub.clone()).generate_to(dir).map_err(fail)?);
    }
    Ok(files)
}

/// Carries out one command. Prints nothing on stdout but the step log.
pub async fn execute(cli: Cli, log: &StepLog) -> Result<Outcome, Error> {
    let file = config::load_file(&cli.global)?;
    match &cli.command {
        Command::Completions { shell } => {
            let mut buf = Vec::new();
            clap_complete::generate(*shell, &mut Cli::command(), "vmha", &mut buf);
            let script = String::from_utf8_lossy(&buf).into_owned();
            return Ok(Outcome::ok(
                Some(script.clone()),
                json!({"shell": shell.to_string(), "output": script}),
            ));
        }
        Command::Man { dir: Some(dir) } => {
            let files = write_man_pages(dir)?;
            let text: String = files.iter().map(|f| format!("{}\n", f.display())).collect();
            return Ok(Outcome::ok(
                Some(text),
                json!({"dir": dir.display().to_string(), "files": files}),
            ));
        }
        Command::Man { dir: None } => {
            let mut buf = Vec::new();
            clap_mangen::Man::new(Cli::command())
                .render(&mut buf)
                .map_err(|e| Error::Output(e.to_string()))?;
            let page = String::from_utf8_lossy(&buf).into_owned();
            return Ok(Outcome::ok(Some(page.clone()), json!({"output": page})));
        }
        // The agents speak their managers' exit codes, not vmha's: `main` runs them through
        // `crate::adapters::ocf::run` and `crate::adapters::fence::run`.
        Command::Ocf { .. } | Command::Fence { .. } => {
            return Err(Error::Config(config::ConfigError::Invalid(
                "the OCF and fence agents run as their own entry points (vmha ocf ACTION, vmha fence ...), not as commands of this library call"
                    .into(),
            )));
        }
        Command::Thumbprint => {
            let url = config::server_url(&cli.global, &file)?;
            let timeout = config::request_timeout(&cli.global, &file)?.min(CONNECT_LIMIT);
            let thumbprint = server_thumbprint(&url, timeout).await?;
            eprintln!(
                "vmha: warning: nothing vouches for this certificate yet: compare the thumbprint with the one the host's console (DCUI) or vCenter shows before you pin it"
            );
            return Ok(Outcome::ok(
                Some(format!("{thumbprint}\n")),
                json!({"url": url, "thumbprint": thumbprint}),
            ));
        }
        Command::Role { mode, name } => {
            use crate::cli::RoleMode;
            use ops::privileges::Mode;
            let modes: &[Mode] = match mode {
                None => &[Mode::Vcenter, Mode::Esx],
                Some(RoleMode::Vcenter) => &[Mode::Vcenter],
                Some(RoleMode::Esx) => &[Mode::Esx],
            };
            // --user (VMHA_USER), when set, is the principal the commands grant the role to: vCenter's user,
            // or the local ESXi user's when only the ESXi role is asked for (a vCenter user is no ESXi user).
            let user = cli.global.user.clone().or_else(|| file.user.clone());
            let (text, fields) = ops::privileges::role(modes, name, user.as_deref(), modes.len() == 1);
            return Ok(Outcome::ok(Some(text), fields));
        }
        _ => {}
    }
    // Settings are checked before any connection, so a typo never touches the server.
    let resource = match &cli.command {
        // Plain `check` ignores VM settings (VMHA_NAME may well be set): only --privileges needs them.
        Command::Check {
            privileges: true,
            vm,
            host,
        }
        | Command::Status { vm, host } => Some(config::resource(
            vm,
            host.host.as_deref(),
            waits(None, None, None),
            &file,
        )?),
        Command::Migrate { vm, .. } => Some(config::resource(vm, None, waits(None, None, None), &file)?),
        Command::Start {
            vm, host, start_wait, ..
        } => Some(config::resource(
            vm,
            host.host.as_deref(),
            waits(*start_wait, None, None),
            &file,
        )?),
        Command::Stop {
            vm, host, stop_wait, ..
        } => Some(config::resource(
            vm,
            host.host.as_deref(),
            waits(None, *stop_wait, None),
            &file,
        )?),
        Command::Monitor {
            vm,
            host,
            migration_wait,
            ..
        } => Some(config::resource(
            vm,
            host.host.as_deref(),
            waits(None, None, *migration_wait),
            &file,
        )?),
        _ => None,
    };
    let answers = match &cli.command {
        Command::Start { answers, .. } | Command::Stop { answers, .. } => {
            let given = if answers.is_empty() {
                file.answer.clone().unwrap_or_default()
            } else {
                answers.clone()
            };
            AnswerPolicy::parse(&given)?
        }
        _ => AnswerPolicy::default(),
    };
    if let Some(r) = &resource {
        log.set_label(&match &r.vm {
            VmSelector::Name(n) => n.clone(),
            VmSelector::Vmx(p) => p.rsplit('/').next().unwrap_or(p).trim_end_matches(".vmx").to_string(),
            VmSelector::Uuid(u) => u.clone(),
        });
    }
    let node_host = resource.as_ref().and_then(|r| r.host.clone());
    let conn = config::connection(&cli.global, &file, node_host.as_deref())?;
    for w in &conn.warnings {
        eprintln!("vmha: warning: {w}");
    }
    if matches!(cli.command, Command::Logout) {
        return logout(conn).await;
    }
    // `check` proves the credentials, so it always logs in; a watch lives long and keeps its own session.
    let cached = match &cli.command {
        Command::Check { .. } => false,
        Command::Monitor { watch, .. } => !watch.or(file.watch).unwrap_or(false),
        _ => true,
    };
    let Some(settings) = resource else {
        let direct_hosts = conn.hosts.enabled();
        let command = &cli.command;
        return with_session(connect_options(&conn, cached), async |session: &Session| {
            if let Command::HostShutdown { host, force } | Command::HostReboot { host, force } = command {
                let action = if matches!(command, Command::HostShutdown { .. }) {
                    ops::host_power::HostPower::Shutdown
                } else {
                    ops::host_power::HostPower::Reboot
                };
                let limit = session.request_timeout();
                // The host from --host (VMHA_HOST), else the config file's `host` (a CLUSTERPRO server's own).
                let host = host.host.clone().or_else(|| file.host.clone());
                let name = ops::host_power::run(session, host.as_deref(), action, *force, limit, log).await?;
                return Ok(Outcome::ok(None, json!({"host": name, "action": action, "force": force})));
            }
            if session.is_vcenter() && !direct_hosts {
                eprintln!(
                    "vmha: warning: no --host-user: while vCenter is down the cluster can neither monitor nor fail over its VMs (vCenter is a single point of failure); give a local ESXi user (--host-user, --host-password-file) so vmha can go through each node's host"
                );
            }
            let about = &session.content().about;
            Ok(Outcome::ok(
                Some(format!("{}\n", ops::check::check_line(about))),
                json!({ "about": about }),
            ))
        })
        .await;
    };
    let job = Job {
        command: cli.command,
        settings,
        answers,
        file,
        learn_hosts: conn.hosts.enabled(),
        user: conn.user.clone(),
    };
    run_resource(&conn, cached, &job, log).await
}

/// One resource command, settled before connecting.
struct Job {
    command: Command,
    settings: config::ResourceSettings,
    answers: AnswerPolicy,
    file: config::FileSettings,
    /// Host logins are configured: keep the hosts' certificates and lockdown modes while vCenter is up.
    learn_hosts: bool,
    /// Who logs in (whose privileges `check --privileges` reads).
    user: String,
}

impl Job {
    /// Commands that can be answered through this node's host when vCenter is down. A live migration
    /// needs vCenter; a watch lives for days and reports a lost vCenter (exit 4) to be restarted.
    fn may_go_through_host(&self) -> bool {
        match &self.command {
            Command::Status { .. } | Command::Start { .. } | Command::Stop { .. } => true,
            Command::Monitor { watch, .. } => !watch.or(self.file.watch).unwrap_or(false),
            _ => false,
        }
    }
}

/// Runs a resource command through vCenter, or through this node's host: when there is no vCenter at all,
/// or when vCenter cannot be reached (refused, reset, 5xx, or no answer within `--fallback-after`) and a
/// host user is configured.
async fn run_resource(conn: &ConnectionSettings, cached: bool, job: &Job, log: &StepLog) -> Result<Outcome, Error> {
    if let Some(host) = &conn.direct_host {
        let route = ops::Route::Host {
            name: host.clone(),
            vcenter_down: None,
        };
        return on_host(connect_options(conn, cached), host, None, async |s: &Session| {
            let peers = peer_probe(conn, cached, job, host, None, log);
            act(s, job, route, None, Some(peers), log).await
        })
        .await;
    }
    let host_allowed = conn.hosts.enabled() && job.may_go_through_host();
    let host = job.settings.host.as_deref().filter(|_| host_allowed);
    let vcenter_cache = conn
        .session_dir
        .as_ref()
        .filter(|_| cached)
        .and_then(|dir| SessionCache::open(dir, &conn.url, &conn.user).ok());
    // vCenter failed a moment ago: go to the host at once rather than wait out a frozen vCenter again on
    // every monitor. It is asked again after UNREACHABLE_MEMORY.
    if let (Some(host), Some((ago, why))) = (
        host,
        vcenter_cache
            .as_ref()
            .and_then(|c| c.unreachable_within(UNREACHABLE_MEMORY)),
    ) {
        let why = format!(
            "vCenter could not be reached {ago} s ago ({why}); asked again after {} s",
            UNREACHABLE_MEMORY.as_secs()
        );
        log.warn(format!("{why}; asking host {host} directly"));
        return through_host(conn, cached, job, host, why, log).await;
    }
    let mut opts = connect_options(conn, cached);
    if host.is_some() {
        opts.transport.first_answer_timeout = Some(conn.hosts.fallback_after);
    }
    let result = with_session(opts, async |s: &Session| {
        act(s, job, ops::Route::Server, None, None, log).await
    })
    .await;
    let (Err(e), Some(host)) = (&result, host) else {
        if let Some(c) = &vcenter_cache {
            c.clear_unreachable();
        }
        return result;
    };
    if !e.server_unreachable() {
        if let Some(c) = &vcenter_cache {
            c.clear_unreachable();
        }
        return result;
    }
    let why = e.to_string();
    if let Some(c) = &vcenter_cache {
        c.mark_unreachable(&why);
    }
    log.warn(format!(
        "vCenter cannot be reached ({why}); asking host {host} directly"
    ));
    through_host(conn, cached, job, host, why, log).await
}

/// [`via_host`], its failure reported with why vCenter was not used.
async fn through_host(
    conn: &ConnectionSettings,
    cached: bool,
    job: &Job,
    host: &str,
    why: String,
    log: &StepLog,
) -> Result<Outcome, Error> {
    via_host(conn, cached, job, host, why.clone(), log)
        .await
        .map_err(|cause| Error::Fallback {
            host: host.to_string(),
            vcenter: why,
            cause: Box::new(cause),
        })
}

/// How long a node goes straight to its host after vCenter could not be reached: short enough that a
/// restarted vCenter is used again within half a minute, long enough that a frozen one costs one wait per
/// half minute, not one per monitor.
const UNREACHABLE_MEMORY: Duration = Duration::from_secs(30);

/// What the vCenter session's cache remembers (empty without the cache).
fn vcenter_memo(conn: &ConnectionSettings) -> Memo {
    conn.session_dir
        .as_ref()
        .and_then(|dir| SessionCache::open(dir, &conn.url, &conn.user).ok())
        .map(|c| c.memo())
        .unwrap_or_default()
}

/// Connection options for `host`'s own endpoint, with the host user, trusted as `--host-thumbprint`, the
/// certificate vCenter reported, or the `--ca-file` roots say.
fn host_options(conn: &ConnectionSettings, memo: &Memo, host: &str, cached: bool) -> Result<ConnectOptions, Error> {
    let url = conn.hosts.url_of(host)?;
    let remembered = memo
        .hosts
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(host))
        .and_then(|(_, h)| h.cert_sha256.as_deref())
        .and_then(|hex| crate::soap::tls::parse_thumbprint(hex).ok());
    let (Some(user), Some(password)) = (&conn.hosts.user, &conn.hosts.password) else {
        return Err(Error::Config(config::ConfigError::Invalid(
            "no host user: give --host-user and --host-password-file".into(),
        )));
    };
    let mut opts = ConnectOptions::new(
        &url,
        conn.hosts.tls_for(host, remembered),
        conn.request_timeout,
        Credentials {
            user: user.clone(),
            password: password.clone(),
        },
        conn.record.clone().map(|d| (d, conn.record_label.clone())),
    );
    opts.transport.first_answer_timeout = Some(conn.hosts.fallback_after);
    opts.cache = match (&conn.session_dir, cached) {
        (Some(dir), true) => SessionCache::open(dir, &url, user).ok(),
        _ => None,
    };
    Ok(opts)
}

/// The command through this node's host, vCenter being down: what vCenter remembered of the VM (its
/// files, where it ran) and of the hosts (their certificates) comes from the session cache.
async fn via_host(
    conn: &ConnectionSettings,
    cached: bool,
    job: &Job,
    host: &str,
    why: String,
    log: &StepLog,
) -> Result<Outcome, Error> {
    let memo = vcenter_memo(conn);
    let vm_memo = memo
        .vms
        .get(&ops::selector_key(&job.settings))
        .cloned()
        .unwrap_or_default();
    let opts = host_options(conn, &memo, host, cached)?;
    let route = ops::Route::Host {
        name: host.to_string(),
        vcenter_down: Some(why.clone()),
    };
    let lockdown = host_lockdown(&memo, host);
    let outcome = on_host(opts, host, lockdown, async |s: &Session| {
        let peers = peer_probe(conn, cached, job, host, vm_memo.host.clone(), log);
        act(s, job, route, vm_memo.vmx.clone(), Some(peers), log).await
    })
    .await?;
    let mut o = outcome;
    o.fields.insert("source".into(), "host".into());
    o.fields.insert("via_host".into(), host.into());
    o.fields.insert("fallback_reason".into(), why.into());
    Ok(o)
}

/// The lockdown mode vCenter last reported for `host`.
fn host_lockdown(memo: &Memo, host: &str) -> Option<String> {
    memo.hosts
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(host))
        .and_then(|(_, h)| h.lockdown.clone())
}

/// How long a host's refusal of a password keeps vmha from trying it again: ESXi's default
/// `Security.AccountUnlockTime` (900 s), so that a node never adds to the failures that lock the account.
const REFUSAL_WINDOW: Duration = Duration::from_secs(900);

/// Runs `work` on a session to a host's own endpoint. A host that refused this password within
/// [`REFUSAL_WINDOW`] is not asked again (ESXi locks a local account after a few refused logins, for every
/// node and every tool); a refusal is remembered beside the host's cached session and reported with the
/// host's lockdown mode when vCenter reported one.
async fn on_host<T>(
    opts: ConnectOptions,
    host: &str,
    lockdown: Option<String>,
    work: impl AsyncFnOnce(&Session) -> Result<T, Error>,
) -> Result<T, Error> {
    let user = opts.credentials.user.clone();
    let password = opts.credentials.password.clone();
    // A second handle on the host's cache file (the session takes the first).
    let guard = opts
        .cache
        .as_ref()
        .and_then(|c| SessionCache::open(c.path().parent()?, &opts.transport.url, &user).ok());
    let refused = |refused_ago, cause| Error::HostLoginRefused {
        host: host.to_string(),
        user: user.clone(),
        lockdown: lockdown.clone(),
        refused_ago,
        cause,
    };
    if let Some(ago) = guard.as_ref().and_then(|g| g.refused_within(&password, REFUSAL_WINDOW)) {
        return Err(refused(Some(ago), None));
    }
    match with_session(opts, work).await {
        Err(Error::Vim(v)) if login_refused(&v) => {
            if let Some(g) = &guard {
                g.record_refusal(&password);
            }
            Err(refused(None, Some(v)))
        }
        other => {
            if let Some(g) = &guard {
                g.clear_refusal();
            }
            other
        }
    }
}

/// A host refused the login itself: wrong user or password, or (ESXi's lockdown mode) not allowed.
fn login_refused(v: &VimError) -> bool {
    matches!(v, VimError::LoginRefused { .. })
        || v.fault().is_some_and(|f| match &f.kind {
            FaultKind::InvalidLogin => true,
            FaultKind::Other(name) => name == "NoPermission",
            _ => false,
        })
}

/// Asks the other hosts about the VM, each on its own endpoint: those in `--host-address`, and the one
/// vCenter last saw it on. Each is bounded by `--fallback-after`; one that does not answer says so.
fn peer_probe<'a>(
    conn: &'a ConnectionSettings,
    cached: bool,
    job: &'a Job,
    here: &str,
    last_host: Option<String>,
    log: &'a StepLog,
) -> ops::PeerProbe<'a> {
    let mut names: Vec<String> = conn.hosts.named().map(str::to_string).collect();
    if let Some(h) = last_host
        && !names.iter().any(|n| n.eq_ignore_ascii_case(&h))
    {
        names.push(h);
    }
    names.retain(|n| !n.eq_ignore_ascii_case(here));
    let names = std::rc::Rc::new(names);
    Box::new(move || {
        let names = names.clone();
        Box::pin(async move {
            if !conn.hosts.enabled() {
                return Vec::new();
            }
            let memo = vcenter_memo(conn);
            let asks = names.iter().map(|name| ask_peer(conn, &memo, cached, job, name, log));
            futures_util::future::join_all(asks).await
        })
    })
}

async fn ask_peer(
    conn: &ConnectionSettings,
    memo: &Memo,
    cached: bool,
    job: &Job,
    name: &str,
    log: &StepLog,
) -> ops::PeerSeen {
    let seen = async {
        let opts = host_options(conn, memo, name, cached)?;
        on_host(opts, name, host_lockdown(memo, name), async |s: &Session| {
            let ctx = Ctx::new(s, &job.settings, log).await?.with_route(
                ops::Route::Host {
                    name: name.to_string(),
                    vcenter_down: None,
                },
                None,
                None,
            );
            let (_, state) = ctx.observe().await?;
            Ok(state.map(|s| s.power_state))
        })
        .await
    };
    // Connecting and the first answer are bounded by --fallback-after; this bounds the rest.
    let limit = conn.hosts.fallback_after * 2;
    ops::PeerSeen {
        host: name.to_string(),
        seen: match tokio::time::timeout(limit, seen).await {
            Ok(Ok(power)) => Ok(power),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {} s", limit.as_secs())),
        },
    }
}

/// Carries out a resource command on a session: status, start, stop, monitor or migrate.
async fn act<'a>(
    session: &'a Session,
    job: &'a Job,
    route: ops::Route,
    remembered_vmx: Option<String>,
    peers: Option<ops::PeerProbe<'a>>,
    log: &'a StepLog,
) -> Result<Outcome, Error> {
    let settings = &job.settings;
    let file = &job.file;
    let answers = job.answers.clone();
    // Acting commands look for a VM's leftover entries until they are gone; the monitor, called every few
    // seconds, never scans the inventory for them.
    let acting = matches!(
        job.command,
        Command::Start { .. } | Command::Stop { .. } | Command::Status { .. }
    );
    let twins = acting
        && route == ops::Route::Server
        && session
            .memo()
            .vms
            .get(&ops::selector_key(settings))
            .is_some_and(|m| m.twins);
    let ctx = Ctx::new(session, settings, log)
        .await?
        .with_route(route, remembered_vmx, peers)
        .recheck_twins(twins);
    let outcome = match &job.command {
        Command::Status { .. } => {
            let report = ops::status::run(&ctx).await?;
            Outcome::ok(Some(report.to_text()), json!(report))
        }
        Command::Start { host, .. } => {
            let plan = ops::start::run(&ctx, &answers).await?;
            Outcome::ok(None, json!({"host": host.host, "plan": plan}))
        }
        Command::Stop {
            keep_registered,
            unregister,
            host,
            ..
        } => {
            let opts = ops::stop::StopOptions {
                keep_registered: keep_registered.or(file.keep_registered).unwrap_or(false),
                unregister: unregister.or(file.unregister).unwrap_or(false),
                answers,
            };
            let plan = ops::stop::run(&ctx, &opts).await?;
            Outcome::ok(None, json!({"host": host.host, "plan": plan}))
        }
        Command::Monitor {
            watch,
            require_heartbeat,
            ..
        } => {
            let opts = ops::monitor::MonitorOptions {
                watch: watch.or(file.watch).unwrap_or(false),
                require_heartbeat: require_heartbeat.or(file.require_heartbeat).unwrap_or(false),
            };
            let report = ops::monitor::run(&ctx, &opts).await?;
            let code = report.failure.map_or(ExitCode::Ok, ExitCode::from);
            if code == ExitCode::Ok {
                log.info(&report.why);
            } else {
                log.error(format!("{} (exit {})", report.why, code.code()));
            }
            Outcome {
                code,
                text: None,
                fields: match json!({"healthy": report.failure.is_none(), "failure": report.failure, "reason": report.why})
                {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
            }
        }
        Command::Migrate { to_host, .. } => {
            ops::migrate::run(&ctx, to_host).await?;
            Outcome::ok(None, json!({"to_host": to_host}))
        }
        Command::Check { .. } => {
            let report = ops::privileges::run(&ctx, &job.user).await?;
            let code = ExitCode::from(&report);
            let mut fields = json!({
                "about": session.content().about,
                "privileges": report,
                "missing": report.missing().collect::<Vec<_>>(),
                "reason": report.summary(),
            });
            if code == ExitCode::Ok
                && let Some(m) = fields.as_object_mut()
            {
                m.remove("reason");
            }
            Outcome {
                code,
                text: Some(format!(
                    "{}\n{}{}\n",
                    ops::check::check_line(&session.content().about),
                    report.to_text(),
                    report.summary()
                )),
                fields: match fields {
                    Value::Object(m) => m,
                    _ => Map::new(),
                },
            }
        }
        Command::Role { .. }
        | Command::Logout
        | Command::Thumbprint
        | Command::Completions { .. }
        | Command::Man { .. }
        | Command::Ocf { .. }
        | Command::Fence { .. }
        | Command::HostShutdown { .. }
        | Command::HostReboot { .. } => Outcome::ok(None, json!({})),
    };
    remember(&ctx, job.learn_hosts).await;
    Ok(outcome)
}

/// Keeps what vCenter said of the VM and of the hosts beside the cached session, for when vCenter is
/// down: the VM's files and host at every call (free: read anyway), the hosts' certificates and lockdown
/// modes once a day (one request per host).
async fn remember(ctx: &Ctx<'_>, learn_hosts: bool) {
    if ctx.route() != &ops::Route::Server || !ctx.vcenter() || !ctx.session.is_kept() {
        return;
    }
    let key = ops::selector_key(ctx.settings);
    let seen = ctx.last_seen();
    let twins = if ctx.looked_for_twins() {
        ctx.twins_left()
    } else {
        ctx.session.memo().vms.get(&key).is_some_and(|m| m.twins)
    };
    let memo = ctx.session.memo();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let stale_hosts =
        learn_hosts && (memo.hosts.is_empty() || memo.hosts.values().any(|h| now.saturating_sub(h.read_at) > 86_400));
    let mut trust = Vec::new();
    if stale_hosts && let Ok(inv) = ctx.inv().await {
        for h in &inv.hosts {
            match crate::client::host::Host::new(ctx.session, h.moref.clone())
                .trust()
                .await
            {
                Ok(t) => trust.push((h.name.clone(), t)),
                Err(e) => tracing::debug!("host {}: no certificate or lockdown mode read: {e}", h.name),
            }
        }
    }
    ctx.session
        .update_memo(|m| {
            if let Some((s, _)) = &seen {
                let vm = VmMemo {
                    vmx: s.vmx.clone(),
                    uuid: s.uuid.clone(),
                    host: s.host_name.clone(),
                    twins,
                };
                m.vms.insert(key, vm);
            }
            for (name, t) in trust {
                m.hosts.insert(
                    name,
                    HostMemo {
                        cert_sha256: t.cert_sha256.map(hex::encode),
                        lockdown: t.lockdown,
                        read_at: now,
                    },
                );
            }
        })
        .await;
}

/// The connection options, with the session cache when `cached` and not opted out of. A cache that
/// cannot be used (a directory others can read, say) is warned about and left out.
pub(crate) fn connect_options(conn: &ConnectionSettings, cached: bool) -> ConnectOptions {
    let cache = match (&conn.session_dir, cached) {
        (Some(dir), true) => match SessionCache::open(dir, &conn.url, &conn.user) {
            Ok(c) => Some(c),
            Err(e) => {
                eprintln!("vmha: warning: session cache not used: {e}");
                None
            }
        },
        _ => None,
    };
    let mut opts = ConnectOptions::new(
        &conn.url,
        conn.tls.clone(),
        conn.request_timeout,
        Credentials {
            user: conn.user.clone(),
            password: conn.password.clone(),
        },
        conn.record.clone().map(|d| (d, conn.record_label.clone())),
    );
    opts.cache = cache;
    opts
}

/// `vmha logout`: ends the cached session of this server and user, if there is one.
async fn logout(conn: ConnectionSettings) -> Result<Outcome, Error> {
    if conn.session_dir.is_none() {
        return Ok(Outcome::ok(
            Some("no session cache in use (--no-session-cache): nothing to log out\n".into()),
            json!({"ended": false}),
        ));
    }
    let opts = connect_options(&conn, true);
    let file = opts.cache.as_ref().map(|c| c.path().display().to_string());
    let Some(session) = Session::resume(opts).await? else {
        return Ok(Outcome::ok(
            Some("no cached session for this server and user\n".into()),
            json!({"ended": false, "file": file}),
        ));
    };
    // An expired session is refused by Logout: it is just as ended, and its file goes all the same.
    let confirmed = session.end_cached().await;
    Ok(Outcome::ok(
        Some(format!(
            "{}; removed {}\n",
            if confirmed {
                "logged out"
            } else {
                "the server had already ended the session"
            },
            file.as_deref().unwrap_or("")
        )),
        json!({"ended": true, "confirmed": confirmed, "file": file}),
    ))
}

/// Connects, runs `work`, and logs out whatever happens (success, error, timeout, SIGINT or SIGTERM),
/// unless the session is the cache's: that one is kept for the next command.
pub(crate) async fn with_session<T>(
    opts: ConnectOptions,
    work: impl AsyncFnOnce(&Session) -> Result<T, Error>,
) -> Result<T, Error> {
    // Connecting is bounded by the request timeout; a signal during it only ends the process.
    let session = tokio::select! {
        s = Session::connect(opts) => s?,
        signal = shutdown_signal() => return Err(Error::Interrupted { signal, session: SessionEnd::NotOpen }),
    };
    // Err(signal) when a signal ended the work.
    let ran = tokio::select! {
        r = work(&session) => Ok(r),
        signal = shutdown_signal() => Err(signal),
    };
    // Asked before finish(): a kept session stays the cache's, any other is logged out now.
    let kept = session.is_kept();
    let confirmed = session.finish().await;
    let result = match ran {
        Ok(r) => r,
        Err(signal) => {
            let session = match (kept, confirmed) {
                (true, _) => SessionEnd::KeptForReuse,
                (false, true) => SessionEnd::LoggedOut,
                (false, false) => SessionEnd::LogoutUnconfirmed,
            };
            return Err(Error::Interrupted { signal, session });
        }
    };
    // Only a successful run mentions an unconfirmed Logout: after a failure, the failure is the news.
    if !confirmed && result.is_ok() {
        tracing::warn!("Logout was not confirmed; the server ends the session when it expires");
    }
    result
}

async fn shutdown_signal() -> &'static str {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (signal(SignalKind::interrupt()), signal(SignalKind::terminate())) {
            (Ok(mut int), Ok(mut term)) => tokio::select! {
                _ = int.recv() => "SIGINT",
                _ = term.recv() => "SIGTERM",
            },
            _ => std::future::pending().await,
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
        "Ctrl-C"
    }
}

fn waits(start_wait: Option<u64>, stop_wait: Option<u64>, migration_wait: Option<u64>) -> Waits {
    Waits {
        start_wait,
        stop_wait,
        migration_wait,
    }
}
