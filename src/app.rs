//! Runs one parsed command: settings, session, work, output. Returns the exit code.

use crate::cli::{Cli, Command};
use crate::config::{self, Waits};
use crate::error::{Error, ExitCode};
use crate::log::StepLog;
use crate::ops::{self, AnswerPolicy, Ctx, with_session};

pub async fn run(cli: Cli, log: &StepLog) -> Result<ExitCode, Error> {
    if let Command::Ocf { action } = &cli.command {
        std::process::exit(
            crate::ocf::run(action.as_deref(), &crate::ocf::process_env, log)
                .await
                .code(),
        );
    }
    let file = config::load_file(&cli.global)?;
    // Settings are checked before any connection, so a typo never touches the server.
    let resource = match &cli.command {
        Command::Check => None,
        Command::Status { vm, .. } => Some(config::resource(vm, None, waits(None, None, None), &file)?),
        Command::Start {
            vm, host, start_wait, ..
        } => Some(config::resource(
            vm,
            host.host.as_deref(),
            waits(*start_wait, None, None),
            &file,
        )?),
        Command::Stop { vm, stop_wait, .. } => Some(config::resource(vm, None, waits(None, *stop_wait, None), &file)?),
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
        Command::Migrate { vm, .. } => Some(config::resource(vm, None, waits(None, None, None), &file)?),
        Command::Ocf { .. } => unreachable!("handled above"),
    };
    let answers = match &cli.command {
        Command::Start { answers, .. } | Command::Stop { answers, .. } => AnswerPolicy::parse(answers)?,
        _ => AnswerPolicy::default(),
    };
    if let Some(r) = &resource {
        log.set_label(&match &r.vm {
            crate::client::VmSelector::Name(n) => n.clone(),
            crate::client::VmSelector::Vmx(p) => p.rsplit('/').next().unwrap_or(p).trim_end_matches(".vmx").to_string(),
            crate::client::VmSelector::Uuid(u) => u.clone(),
        });
    }
    let conn = config::connection(&cli.global, &file)?;
    for w in &conn.warnings {
        eprintln!("vmha: warning: {w}");
    }
    let command = cli.command;
    with_session(conn, async move |session: &crate::client::Session| {
        let Some(settings) = resource.as_ref() else {
            println!("{}", ops::check::run(session));
            return Ok(ExitCode::Ok);
        };
        let ctx = Ctx::new(session, settings, log).await?;
        match command {
            Command::Check | Command::Ocf { .. } => unreachable!("handled above"),
            Command::Status { json, .. } => {
                let report = ops::status::run(&ctx).await?;
                if json {
                    println!(
                        "{}",
                        serde_json::to_string(&report).map_err(|e| crate::error::OpError::Failed(e.to_string()))?
                    );
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
                ops::stop::run(
                    &ctx,
                    &ops::stop::StopOptions {
                        keep_registered,
                        unregister,
                        answers,
                    },
                )
                .await?;
                Ok(ExitCode::Ok)
            }
            Command::Monitor {
                watch,
                require_heartbeat,
                ..
            } => {
                let (code, why) = ops::monitor::run(
                    &ctx,
                    &ops::monitor::MonitorOptions {
                        watch,
                        require_heartbeat,
                    },
                )
                .await?;
                if code == ExitCode::Ok {
                    log.info(why);
                } else {
                    log.error(format!("{why} (exit {})", code.code()));
                }
                Ok(code)
            }
            Command::Migrate { to_host, .. } => {
                ops::migrate::run(&ctx, &to_host).await?;
                Ok(ExitCode::Ok)
            }
        }
    })
    .await
}

fn waits(start_wait: Option<u64>, stop_wait: Option<u64>, migration_wait: Option<u64>) -> Waits {
    Waits {
        start_wait,
        stop_wait,
        migration_wait,
    }
}
