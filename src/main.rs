#![forbid(unsafe_code)]

use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use mtls::cli::{Cli, Command, PkiCommand};
use mtls::logging;

mod commands;

/// Exit code for bad usage or configuration.
const EXIT_CONFIG: u8 = 2;

fn main() -> ExitCode {
    // The dotenv file must be in the environment before clap reads it, and
    // before any thread exists (setting variables is unsound once threads run).
    let first = Cli::parse();
    if let Err(err) = load_env_file(first.env_file.as_deref()) {
        eprintln!("error: {err:#}");
        return ExitCode::from(EXIT_CONFIG);
    }
    let cli = Cli::parse();
    let _flush_logs = logging::init(cli.log_format);
    match run(cli) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::from(EXIT_CONFIG)
        }
    }
}

/// Loads `--env-file`, or `./.env` when present. Variables already set in
/// the environment are kept, so flags and the environment win over the file.
fn load_env_file(explicit: Option<&Path>) -> anyhow::Result<()> {
    let path = match explicit {
        Some(path) => path,
        None if Path::new(".env").is_file() => Path::new(".env"),
        None => return Ok(()),
    };
    dotenvy::from_path(path).with_context(|| {
        format!(
            "cannot load the env file `{}` (--env-file / ENV_FILE); check that it exists and has KEY=value lines",
            path.display()
        )
    })
}

fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::Serve(args) => commands::serve::run(*args),
        Command::Pki(PkiCommand::Init(args)) => commands::pki::init(args),
        Command::Pki(PkiCommand::Client(args)) => commands::pki::client(args),
        Command::Pki(PkiCommand::Revoke(args)) => commands::pki::revoke(args),
        Command::Pki(PkiCommand::Crl(args)) => commands::pki::crl(args),
        Command::Health(args) => commands::health::run(args),
        Command::Inspect(args) => commands::inspect::run(args),
        Command::Verify(args) => commands::verify::run(args),
        Command::Client(args) => commands::client::run(args),
        Command::Check(args) => commands::check::run(args),
    }
}
