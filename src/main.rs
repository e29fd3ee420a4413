use clap::Parser;

fn main() -> std::process::ExitCode {
    // Read before any thread exists: the only time the local offset can be read soundly.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    // The fence agent parses fence-agents' own options (`-o`, `-a`, `-v`, ... or stdin), which vmha's
    // global options would otherwise take: it is dispatched before clap sees the line.
    if args.get(1).is_some_and(|a| a == "fence") {
        let rest: Vec<String> = args[2..].iter().map(|a| a.to_string_lossy().into_owned()).collect();
        return fence(&rest, offset);
    }
    // The OCF agent (`vmha ocf ACTION`, as its shim runs it) reads only OCF_RESKEY_*: it must not go through
    // clap, whose `env` attributes would read every VMHA_* variable of the environment Pacemaker started in.
    if let Some(action) = ocf_action(&args) {
        return ocf(action.as_deref(), offset);
    }
    let mut cli = match vmha::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    // `vmha -v fence ...`: clap took the global options; the fence agent still parses its own.
    if let vmha::cli::Command::Fence { args } = &cli.command {
        return fence(args, offset);
    }
    cli.global.read_password_variable();
    init_tracing(cli.global.verbose, true);
    let Some(runtime) = runtime() else {
        return std::process::ExitCode::from(vmha::error::ExitCode::Failure.code());
    };
    let log = vmha::log::StepLog::new(offset, "vmha");
    // `vmha -v ocf ACTION` and the like: still the agent, with its OCF_RESKEY_* settings and OCF's codes.
    if let vmha::cli::Command::Ocf { action } = &cli.command {
        let code = runtime.block_on(vmha::adapters::ocf::run(
            action.as_deref(),
            &vmha::adapters::ocf::process_env,
            &log,
        ));
        return std::process::ExitCode::from(code.code());
    }
    let code = runtime.block_on(vmha::app::run(cli, &log));
    std::process::ExitCode::from(code.code())
}

/// Logs to stderr. Colour codes only for a person at a terminal; a cluster log file must get plain text.
fn init_tracing(verbose: u8, colour_if_terminal: bool) {
    let filter = match verbose {
        0 => "warn",
        1 => "vmha=info",
        _ => "vmha=debug",
    };
    let colour = colour_if_terminal
        && std::io::IsTerminal::is_terminal(&std::io::stderr())
        && std::env::var_os("NO_COLOR").is_none();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .with_env_filter(filter)
        .with_target(false)
        .init();
}

fn runtime() -> Option<tokio::runtime::Runtime> {
    match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(r) => Some(r),
        Err(e) => {
            eprintln!("vmha: cannot start: {e}");
            None
        }
    }
}

/// `vmha ocf [ACTION]` exactly (no flags): the agent's own entry. `Some(None)` when no action is given.
/// Anything else (`vmha ocf --help`, flags) goes through clap as usual.
fn ocf_action(args: &[std::ffi::OsString]) -> Option<Option<String>> {
    if args.get(1).is_none_or(|a| a != "ocf") || args.len() > 3 {
        return None;
    }
    match args.get(2).map(|a| a.to_str()) {
        None => Some(None),
        Some(Some(a)) if !a.starts_with('-') => Some(Some(a.to_string())),
        _ => None,
    }
}

/// Runs the OCF agent, which answers with OCF's exit codes (0-7), decided in vmha::adapters::ocf.
fn ocf(action: Option<&str>, offset: time::UtcOffset) -> std::process::ExitCode {
    init_tracing(0, false);
    let Some(runtime) = runtime() else {
        return std::process::ExitCode::from(1);
    };
    let log = vmha::log::StepLog::new(offset, "vmha");
    let code = runtime.block_on(vmha::adapters::ocf::run(
        action,
        &vmha::adapters::ocf::process_env,
        &log,
    ));
    std::process::ExitCode::from(code.code())
}

/// `vmha fence ...` (the `fence_vmha` shim): fence-agents' interface and exit codes (0, 1, 2 for status off).
fn fence(args: &[String], offset: time::UtcOffset) -> std::process::ExitCode {
    use vmha::adapters::fence;
    let failed = std::process::ExitCode::from(fence::FenceCode::Failed.code());
    let given = match fence::read_options(args) {
        Ok(g) => g,
        Err(e) => {
            eprintln!("{}: ERROR: Parse error: {e}", fence::AGENT);
            eprintln!("{}: ERROR: Please use '-h' for usage", fence::AGENT);
            return failed;
        }
    };
    init_tracing(given.verbose, true);
    let Some(runtime) = runtime() else {
        return failed;
    };
    let log = vmha::log::StepLog::new(offset, fence::AGENT);
    let code = runtime.block_on(fence::run(given, &log));
    std::process::ExitCode::from(code.code())
}

/// clap refused the command line (exit 2), or printed --help or --version (exit 0). With `--json`
/// (or VMHA_JSON) a refusal is one JSON object on stdout too.
fn usage(e: clap::Error) -> std::process::ExitCode {
    if !e.use_stderr() {
        let _ = e.print();
        return std::process::ExitCode::from(0);
    }
    let json_flag = std::env::args().any(|a| a == "--json" || a == "--json=true");
    let json_env = std::env::var("VMHA_JSON").is_ok_and(|v| matches!(v.as_str(), "1" | "true" | "yes" | "on"));
    if json_flag || json_env {
        println!("{}", vmha::app::usage_error_json(&e.kind().to_string()));
        eprintln!("{}", e.render());
    } else {
        let _ = e.print();
    }
    std::process::ExitCode::from(vmha::error::ExitCode::Usage.code())
}
