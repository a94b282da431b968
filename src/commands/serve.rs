use std::num::NonZeroUsize;
use std::process::ExitCode;

use anyhow::Context;
use mtls::cli::ServeArgs;
use mtls::config::ServeConfig;
use mtls::reload::Reloader;
use mtls::server::Server;
use std::sync::Arc;

pub fn run(args: ServeArgs) -> anyhow::Result<ExitCode> {
    let worker_threads = args.worker_threads;
    let config = ServeConfig::from_args(args)?;
    let runtime = runtime(worker_threads).context("cannot start the async runtime")?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        let hangups = tokio::spawn(reload_on_sighup(server.reloader()));
        server.run(shutdown_signal()).await;
        hangups.abort();
        Ok(ExitCode::SUCCESS)
    })
}

/// One worker thread per usable core unless told otherwise. One thread
/// gets tokio's single-threaded runtime: connections then run on the main
/// thread with the accept loop, and nothing is woken across threads (the
/// multi-threaded runtime with one worker costs about 4 % more instructions
/// per keep-alive request and a futex call every few new connections).
/// Reloads and the upstream's DNS lookups run on tokio's blocking threads,
/// which carry the same name.
fn runtime(worker_threads: Option<u16>) -> std::io::Result<tokio::runtime::Runtime> {
    let threads = match worker_threads {
        Some(threads) => usize::from(threads),
        None => std::thread::available_parallelism().map_or(1, NonZeroUsize::get),
    };
    let mut builder = if threads == 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut builder = tokio::runtime::Builder::new_multi_thread();
        builder.worker_threads(threads).thread_name("mtls-worker");
        builder
    };
    builder.enable_all().build()
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
