//! Runs one parsed command: settings, session, work, output. Returns the exit code.

use crate::cli::{Cli, Command};
use crate::client::{ConnectOptions, Credentials, Session, VmSelector};
use crate::config::{self, ConnectionSettings, Waits};
use crate::error::{Error, ExitCode};
use crate::log::StepLog;
use crate::ops::{self, AnswerPolicy, Ctx};

pub async fn run(cli: Cli, log: &StepLog) -> Result<ExitCode, Error> {
    let file = config::load_file(&cli.global)?;
    // Settings are checked before any connection, so a typo never touches the server.
    let resource = match &cli.command {
        Command::Check => None,
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
    };
    let answers = match &cli.command {
        Command::Start { answers, .. } | Command::Stop { answers, .. } => AnswerPolicy::parse(answers)?,
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
    let command = cli.command;
    with_session(conn, async move |session: &Session| {
        let Some(settings) = resource.as_ref() else {
            println!("{}", ops::check::run(session));
            return Ok(ExitCode::Ok);
        };
        let ctx = Ctx::new(session, settings, log).await?;
        match command {
            Command::Check => Ok(ExitCode::Ok),
            Command::Status { json, .. } => {
                let report = ops::status::run(&ctx).await?;
                if json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.to_text());
                }
                Ok(ExitCode::Ok)
            }
            Command::Start { .. } => {
                ops::start::run(&ctx, &answers).await?;
                Ok(ExitCode::Ok)
            }
            Command::Stop {
                keep_registered,
                unregister,
                ..
            } => {
                let opts = ops::stop::StopOptions {
                    keep_registered,
                    unregister,
                    answers,
                };
                ops::stop::run(&ctx, &opts).await?;
                Ok(ExitCode::Ok)
            }
            Command::Monitor {
                watch,
                require_heartbeat,
                ..
            } => {
                let opts = ops::monitor::MonitorOptions {
                    watch,
                    require_heartbeat,
                };
                let report = ops::monitor::run(&ctx, &opts).await?;
                Ok(match report.failure {
                    None => {
                        log.info(report.why);
                        ExitCode::Ok
                    }
                    Some(failure) => {
                        let code = ExitCode::from(failure);
                        log.error(format!("{} (exit {})", report.why, code.code()));
                        code
                    }
                })
            }
            Command::Migrate { to_host, .. } => {
                ops::migrate::run(&ctx, &to_host).await?;
                Ok(ExitCode::Ok)
            }
        }
    })
    .await
}

/// Connects, runs `work`, and logs out whatever happens: success, error, timeout, SIGINT or SIGTERM.
async fn with_session<T>(
    conn: ConnectionSettings,
    work: impl AsyncFnOnce(&Session) -> Result<T, Error>,
) -> Result<T, Error> {
    let opts = ConnectOptions::new(
        &conn.url,
        conn.tls,
        conn.request_timeout,
        Credentials {
            user: conn.user,
            password: conn.password,
        },
        conn.record.map(|d| (d, conn.record_label)),
    );
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
    if !session.logout().await && result.is_ok() {
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
