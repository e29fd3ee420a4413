use clap::Parser;

fn main() -> std::process::ExitCode {
    // Read before any thread exists: the only time the local offset can be read soundly.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    // The fence agent parses fence-agents' own options (`-o`, `-a`, `-v`, ... or stdin), which vmha's
    // global options would otherwise take: it is dispatched before clap sees the line.
    let args: Vec<String> = std::env::args().collect();
    if args.get(1).map(String::as_str) == Some("fence") {
        return fence(&args[2..], offset);
    }
    let cli = match vmha::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => return usage(e),
    };
    // `vmha -v fence ...`: clap took the global options; the fence agent still parses its own.
    if let vmha::cli::Command::Fence { args } = &cli.command {
        return fence(args, offset);
    }
    init_tracing(cli.global.verbose);
    let Some(runtime) = runtime() else {
        return std::process::ExitCode::from(vmha::error::ExitCode::Failure.code());
    };
    let log = vmha::log::StepLog::new(offset, "vmha");
    // The OCF agent answers with OCF's exit codes (0-7), decided in crate::adapters::ocf from vmha's own.
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

fn init_tracing(verbose: u8) {
    let filter = match verbose {
        0 => "warn",
        1 => "vmha=info",
        _ => "vmha=debug",
    };
    // Colour codes only for a person at a terminal; a cluster log file must get plain text.
    let colour = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
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
    init_tracing(given.verbose);
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
