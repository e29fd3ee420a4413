use clap::Parser;

fn main() -> std::process::ExitCode {
    // Read before any thread exists: the only time the local offset can be read soundly.
    let offset = time::UtcOffset::current_local_offset().unwrap_or(time::UtcOffset::UTC);
    let cli = match vmha::cli::Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return std::process::ExitCode::from(if e.use_stderr() {
                vmha::error::ExitCode::Usage.code()
            } else {
                0
            });
        }
    };
    let filter = match cli.global.verbose {
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
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("vmha: cannot start: {e}");
            return std::process::ExitCode::from(vmha::error::ExitCode::Failure.code());
        }
    };
    let log = vmha::log::StepLog::new(offset, "vmha");
    match runtime.block_on(vmha::app::run(cli, &log)) {
        Ok(code) => std::process::ExitCode::from(code.code()),
        Err(e) => {
            let code = e.exit_code();
            eprintln!("vmha: error: {e}");
            if let Some(h) = e.hint() {
                eprintln!("vmha: hint: {h}");
            }
            std::process::ExitCode::from(code.code())
        }
    }
}
