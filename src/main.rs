use std::path::Path;
use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;

use mtls::cli::{Cli, Command, HealthArgs, PkiCommand, PkiInitArgs, ServeArgs};
use mtls::config::ServeConfig;
use mtls::server::Server;
use mtls::{admin, logging, pki};

/// Exit code when the checked thing failed.
const EXIT_FAILED: u8 = 1;
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
    logging::init(cli.log_format);
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
        Command::Serve(args) => serve(args),
        Command::Pki(PkiCommand::Init(args)) => pki_init(args),
        Command::Health(args) => health(args),
    }
}

fn health(args: HealthArgs) -> anyhow::Result<ExitCode> {
    let Some(addr) = admin::parse_admin_listen(&args.admin_listen)
        .map_err(|err| anyhow::anyhow!("--admin-listen / ADMIN_LISTEN: {err}"))?
    else {
        anyhow::bail!(
            "the admin endpoint is off (ADMIN_LISTEN=off); `mtls health` probes it, so set --admin-listen to an address"
        );
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    match runtime.block_on(admin::probe(addr, args.timeout)) {
        Ok(body) => {
            println!("healthy: {body}");
            Ok(ExitCode::SUCCESS)
        }
        Err(err) => {
            println!("unhealthy: {err}");
            Ok(ExitCode::from(EXIT_FAILED))
        }
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        server.run(shutdown_signal()).await;
        Ok(ExitCode::SUCCESS)
    })
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut interrupt), Ok(mut terminate)) = (
        signal(SignalKind::interrupt()),
        signal(SignalKind::terminate()),
    ) else {
        tracing::warn!("cannot install signal handlers; stop the server with SIGKILL");
        return std::future::pending().await;
    };
    let name = tokio::select! {
        _ = interrupt.recv() => "SIGINT",
        _ = terminate.recv() => "SIGTERM",
    };
    tracing::info!("received {name}");
}

fn pki_init(args: PkiInitArgs) -> anyhow::Result<ExitCode> {
    let options = pki::InitOptions {
        dir: args.dir,
        domain: args.domain,
        clients: args.clients,
        force: args.force,
    };
    let written = pki::init(&options)?;
    for file in &written {
        if file.private {
            println!("wrote {} (private key, mode 0600)", file.path.display());
        } else {
            println!("wrote {}", file.path.display());
        }
    }
    println!(
        "development PKI ready: CA `{}`, server certificate for {}",
        pki::CA_COMMON_NAME,
        options.domain
    );
    Ok(ExitCode::SUCCESS)
}
