use std::process::ExitCode;

use anyhow::Context;
use mtls::cli::ServeArgs;
use mtls::config::ServeConfig;
use mtls::reload::Reloader;
use mtls::server::Server;
use std::sync::Arc;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let config = ServeConfig::from_args(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        let hangups = tokio::spawn(reload_on_sighup(server.reloader()));
        server.run(shutdown_signal()).await;
        hangups.abort();
        Ok(ExitCode::SUCCESS)
    })
}

/// Reloads on every SIGHUP; a failed reload keeps the running material.
async fn reload_on_sighup(reloader: Arc<Reloader>) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hangup) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot install the SIGHUP handler; reload by file change only");
        return;
    };
    while hangup.recv().await.is_some() {
        let reloader = reloader.clone();
        let _ = tokio::task::spawn_blocking(move || reloader.reload("SIGHUP")).await;
    }
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
    tracing::info!("received {name}; a second signal exits at once");
    tokio::spawn(async move {
        tokio::select! {
            _ = interrupt.recv() => {},
            _ = terminate.recv() => {},
        }
        tracing::warn!("second signal: exiting without waiting for in-flight requests");
        std::process::exit(1);
    });
}
