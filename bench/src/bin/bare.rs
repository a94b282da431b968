//! The "bare" baseline of scripts/bench.sh: hyper + tokio-rustls with
//! rustls' `WebPkiClientVerifier` (client certificate required) and nothing
//! else: no logging, no metrics, no policy, no timeouts. It answers every
//! request with the welcome JSON. What mtls costs beyond this server is what
//! its features cost.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use bytes::Bytes;
use clap::Parser;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use mtls_bench::{Provider, WELCOME_BODY, load_certs, load_key, load_roots};
use rustls::ServerConfig;
use rustls::server::WebPkiClientVerifier;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

#[derive(Parser)]
#[command(about = "Minimal hyper + tokio-rustls mTLS server (benchmark baseline)")]
struct Args {
    #[arg(long, default_value = "127.0.0.1:5002")]
    listen: SocketAddr,
    #[arg(long)]
    cert: PathBuf,
    #[arg(long)]
    key: PathBuf,
    /// Trusted CA bundle for client certificates (required).
    #[arg(long)]
    client_ca: PathBuf,
    #[arg(long, value_enum, default_value_t = Provider::Ring)]
    provider: Provider,
    /// Runtime worker threads; by default one per CPU the process may run on
    /// (so one under `taskset -c 0`, like mtls).
    #[arg(long)]
    workers: Option<usize>,
    /// tokio's single-threaded runtime, the one mtls picks on one core (the
    /// benchmark keeps the default, as a minimal server is written; this
    /// shows what the runtime's shape alone is worth).
    #[arg(long, conflicts_with = "workers")]
    current_thread: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let tls = Arc::new(server_config(&args)?);
    let mut runtime = if args.current_thread {
        tokio::runtime::Builder::new_current_thread()
    } else {
        tokio::runtime::Builder::new_multi_thread()
    };
    if let Some(workers) = args.workers {
        runtime.worker_threads(workers.max(1));
    }
    let runtime = runtime
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    runtime.block_on(serve(args.listen, tls))
}

fn server_config(args: &Args) -> anyhow::Result<ServerConfig> {
    // The same suite choice as mtls (AES-128-GCM first, by the server's
    // order), so that the comparison shows what mtls's features cost and
    // not a different key schedule hash.
    let mut provider = args.provider.crypto();
    provider.cipher_suites.sort_by_key(|suite| {
        !matches!(
            suite.suite(),
            rustls::CipherSuite::TLS13_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | rustls::CipherSuite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256
        )
    });
    let provider = Arc::new(provider);
    let roots = Arc::new(load_roots(&args.client_ca)?);
    let verifier = WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
        .build()
        .context("cannot build the client verifier")?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_client_cert_verifier(verifier)
        .with_single_cert(load_certs(&args.cert)?, load_key(&args.key)?)
        .context("the server certificate and key do not fit together")?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    config.ignore_client_order = true;
    Ok(config)
}

async fn serve(listen: SocketAddr, tls: Arc<ServerConfig>) -> anyhow::Result<()> {
    let listener = TcpListener::bind(listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    eprintln!("bare: listening on https://{}", listener.local_addr()?);
    let acceptor = TlsAcceptor::from(tls);
    let http = Arc::new(auto::Builder::new(TokioExecutor::new()));
    loop {
        let (tcp, _) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // EMFILE and the like: wait instead of spinning.
                tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                continue;
            }
        };
        let acceptor = acceptor.clone();
        let http = http.clone();
        tokio::spawn(async move {
            let _ = tcp.set_nodelay(true);
            let Ok(stream) = acceptor.accept(tcp).await else {
                return;
            };
            let service = service_fn(|_request| async {
                let mut response =
                    Response::new(Full::new(Bytes::from_static(WELCOME_BODY.as_bytes())));
                response
                    .headers_mut()
                    .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
                Ok::<_, Infallible>(response)
            });
            let _ = http.serve_connection(TokioIo::new(stream), service).await;
        });
    }
}
