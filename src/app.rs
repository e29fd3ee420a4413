//! Runs one parsed command: settings, session, work, output. Returns the exit code.

/// A thumbprint read needs only a TCP and TLS handshake: no reason to wait a whole request timeout.
const CONNECT_LIMIT: Duration = Duration::from_secs(10);

use std::time::Duration;

use clap::CommandFactory;
use serde_json::{Map, Value, json};

use crate::cli::{Cli, Command};
use crate::client::cache::SessionCache;
use crate::client::{ConnectOptions, Credentials, Session, VmSelector, server_thumbprint};
use crate::config::{self, ConnectionSettings, Waits};
use crate::error::{Error, ExitCode};
use crate::log::StepLog;
use crate::ops::{self, AnswerPolicy, Ctx};

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
        // The agent speaks OCF's exit codes, not vmha's: `main` runs it through `crate::adapters::ocf::run`.
        Command::Ocf { .. } => {
            return Err(Error::Config(config::ConfigError::Invalid(
                "the OCF agent runs as its own entry point (vmha ocf ACTION), not as a command of this library call"
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
        _ => {}
    }
    // Settings are checked before any connection, so a typo never touches the server.
    let resource = match &cli.command {
        Command::Status { vm, .. } | Command::Migrate { vm, .. } => {
            Some(config::resource(vm, None, waits(None, None, None), &file)?)
        }
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
    let conn = config::connection(&cli.global, &file)?;
    for w in &conn.warnings {
        eprintln!("vmha: warning: {w}");
    }
    if matches!(cli.command, Command::Logout) {
        return logout(conn).await;
    }
    // `check` proves the credentials, so it always logs in; a watch lives long and keeps its own session.
    let cached = match &cli.command {
        Command::Check => false,
        Command::Monitor { watch, .. } => !watch.or(file.watch).unwrap_or(false),
        _ => true,
    };
    let command = cli.command;
    with_session(conn, cached, async move |session: &Session| {
        let Some(settings) = resource.as_ref() else {
            let about = &session.content().about;
            return Ok(Outcome::ok(
                Some(format!("{}\n", ops::check::check_line(about))),
                json!({ "about": about }),
            ));
        };
        let ctx = Ctx::new(session, settings, log).await?;
        match command {
            Command::Status { .. } => {
                let report = ops::status::run(&ctx).await?;
                Ok(Outcome::ok(Some(report.to_text()), json!(report)))
            }
            Command::Start { host, .. } => {
                let plan = ops::start::run(&ctx, &answers).await?;
                Ok(Outcome::ok(None, json!({"host": host.host, "plan": plan})))
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
                Ok(Outcome::ok(None, json!({"host": host.host, "plan": plan})))
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
                Ok(Outcome {
                    code,
                    text: None,
                    fields: match json!({"healthy": report.failure.is_none(), "failure": report.failure, "reason": report.why}) {
                        Value::Object(m) => m,
                        _ => Map::new(),
                    },
                })
            }
            Command::Migrate { to_host, .. } => {
                ops::migrate::run(&ctx, &to_host).await?;
                Ok(Outcome::ok(None, json!({"to_host": to_host})))
            }
            Command::Check
            | Command::Logout
            | Command::Thumbprint
            | Command::Completions { .. }
            | Command::Man { .. }
            | Command::Ocf { .. } => {
                Ok(Outcome::ok(None, json!({})))
            }
        }
    })
    .await
}

/// The connection options, with the session cache when `cached` and not opted out of. A cache that
/// cannot be used (a directory others can read, say) is warned about and left out.
fn connect_options(conn: ConnectionSettings, cached: bool) -> ConnectOptions {
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
        conn.tls,
        conn.request_timeout,
        Credentials {
            user: conn.user,
            password: conn.password,
        },
        conn.record.map(|d| (d, conn.record_label)),
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
    let opts = connect_options(conn, true);
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
async fn with_session<T>(
    conn: ConnectionSettings,
    cached: bool,
    work: impl AsyncFnOnce(&Session) -> Result<T, Error>,
) -> Result<T, Error> {
    let opts = connect_options(conn, cached);
    // Connecting is bounded by the request timeout; a signal during it only ends the process.
    let session = tokio::select! {
        s = Session::connect(opts) => s?,
        name = shutdown_signal() => return Err(Error::Interrupted(name)),
    };
    let result = tokio::select! {
        r = work(&session) => r,
        name = shutdown_signal() => Err(Error::Interrupted(name)),
    };
    // Only a successful run mentions an unconfirmed Logout: after a failure, the failure is the news.
    if !session.finish().await && result.is_ok() {
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
