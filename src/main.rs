//! The `coldkeep` binary: parse arguments, set up logging, run the command, exit.

use clap::Parser;
use coldkeep::cli::{Cli, Command, LogFormat};
use coldkeep::error::exit_for;

fn main() {
    // The node helper that sudo runs (`coldkeep node-helper ...`): its own strict argv, no clap,
    // no config, no environment, no logging setup; it hardens itself first.
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "node-helper") {
        std::process::exit(coldkeep::nodehelper::main(&args));
    }
    // Before anything reads a secret: no core file may ever hold plaintext keys.
    let hardening = coldkeep::harden::at_start();
    coldkeep::memory::tune_allocator();
    let cli = Cli::parse();
    // The daemon reports its schedule and each run: info by default.
    let verbose = if matches!(cli.command, Command::Daemon(_)) {
        cli.verbose.max(1)
    } else {
        cli.verbose
    };
    init_logging(cli.log_format, verbose);
    if hardening.dumpable != 0 || hardening.core_limit != (0, 0) {
        tracing::warn!(
            "core dumps could not be disabled (dumpable {}, core limit {:?}); a crash may write keys to disk",
            hardening.dumpable,
            hardening.core_limit
        );
    } else {
        tracing::debug!("process hardening: dumpable 0, core limit 0");
    }
    let code = match coldkeep::commands::run(cli) {
        Ok(exit) => exit as i32,
        Err(err) => {
            eprintln!("error: {err:#}");
            exit_for(&err) as i32
        }
    };
    std::process::exit(code);
}

fn init_logging(format: LogFormat, verbose: u8) {
    let default = match verbose {
        0 => "warn",
        1 => "info",
        _ => "debug",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(format!("coldkeep={default}")));
    // Colours only on a terminal: log files and journald get plain text.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
