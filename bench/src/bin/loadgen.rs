//! The load generator of scripts/bench.sh: an mTLS client (tokio + rustls
//! on one thread) that sends the same load to any server.
//!
//! Modes:
//! - `full`: a new TCP connection and a full mTLS handshake per request
//!   (resumption disabled), `Connection: close`.
//! - `resumed`: the same, resuming a TLS 1.3 session each time; every
//!   handshake is checked and the ones that did not resume are counted.
//! - `keepalive`: requests on persistent connections (HTTP/1.1, or h2 with
//!   `--http h2`).
//! - `hold`: opens `--hold` connections (handshake and one request each),
//!   keeps them idle, and reports the server's memory per connection
//!   (HTTP/1.1, or h2 with `--http h2`).
//! - `startup`: starts the server command given after `--` and reports the
//!   time from exec to its first answered mTLS request.
//!
//! With `--server-pid`, the server's CPU time (from /proc) over the measured
//! window is reported per operation: that number holds even when the client
//! is the bottleneck. The result is one JSON line on standard output.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use clap::{Parser, ValueEnum};
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls_bench::latency::Latencies;
use mtls_bench::tickets::TicketStore;
use mtls_bench::{Provider, http1, load_certs, load_key, load_roots, procfs, x25519_only};
use rustls::client::Resumption;
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, HandshakeKind};
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Mode {
    Full,
    Resumed,
    Keepalive,
    Hold,
    Startup,
}

/// How keep-alive requests are written and read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HttpClient {
    /// A fixed request and a response read by Content-Length (cheapest).
    Raw,
    /// hyper's HTTP/1.1 client connection.
    Hyper,
    /// hyper's HTTP/2 client connection (ALPN "h2"), one request at a time
    /// per connection.
    H2,
}

#[derive(Parser)]
#[command(about = "mTLS load generator for scripts/bench.sh")]
struct Args {
    #[arg(long, value_enum)]
    mode: Mode,
    /// The server to load (loopback only in the benchmark).
    #[arg(long, default_value = "127.0.0.1:5001")]
    addr: SocketAddr,
    /// TLS server name (SNI) and Host header.
    #[arg(long, default_value = "api.flaskmtlsauth.com")]
    sni: String,
    #[arg(long, default_value = "/")]
    path: String,
    /// CA that signed the server certificate.
    #[arg(long)]
    ca: PathBuf,
    /// Client certificate (PEM).
    #[arg(long)]
    cert: PathBuf,
    /// Client private key (PEM).
    #[arg(long)]
    key: PathBuf,
    /// Concurrent connections (in `hold` mode: connections being opened at once).
    #[arg(long, default_value_t = 32)]
    connections: usize,
    /// Seconds measured (in `hold` mode: seconds held after measuring).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Seconds of load before the measurement starts.
    #[arg(long, default_value_t = 2.0)]
    warmup: f64,
    /// Offer only the X25519 key exchange (as OpenSSL and rustls servers
    /// then do the same exchange).
    #[arg(long)]
    x25519_only: bool,
    /// The client's crypto provider.
    #[arg(long, value_enum, default_value_t = Provider::AwsLcRs)]
    provider: Provider,
    /// Server process(es) whose CPU time (and in `hold` mode memory) is
    /// measured; give nginx's master and worker.
    #[arg(long = "server-pid")]
    server_pids: Vec<u32>,
    /// HTTP client for `keepalive` mode; `h2` also in `hold` mode.
    #[arg(long, value_enum, default_value_t = HttpClient::Raw)]
    http: HttpClient,
    /// Connections to open and hold in `hold` mode.
    #[arg(long, default_value_t = 10_000)]
    hold: usize,
    /// Text the response body must contain.
    #[arg(long, default_value = "Welcome to the mTLS Flask App!")]
    expect: String,
    /// Free text copied into the JSON result (e.g. the server's name).
    #[arg(long)]
    label: Option<String>,
    /// Seconds one operation may take before it counts as an error.
    #[arg(long, default_value_t = 10.0)]
    timeout: f64,
    /// `startup` mode: the server command to start and time.
    #[arg(last = true)]
    command: Vec<String>,
}

/// What every worker needs to reach the server.
struct Target {
    addr: SocketAddr,
    server_name: ServerName<'static>,
    connector: TlsConnector,
    host: String,
    path: String,
    request: Vec<u8>,
    expect: Vec<u8>,
    timeout: Duration,
    http: HttpClient,
}

/// Counters shared by the workers of one run.
#[derive(Default)]
struct Run {
    /// Set during the measured window only.
    measuring: AtomicBool,
    stop: AtomicBool,
    ops: AtomicU64,
    errors: AtomicU64,
    /// Handshakes of the other kind than the mode asks for (a full one in
    /// `resumed` mode, a resumed one in `full` mode).
    wrong_kind: AtomicU64,
    reconnects: AtomicU64,
    first_error: Mutex<Option<String>>,
}

impl Run {
    fn measuring(&self) -> bool {
        self.measuring.load(Ordering::Relaxed)
    }

    fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    fn error(&self, err: anyhow::Error) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        let mut first = self.first_error.lock().unwrap();
        if first.is_none() {
            *first = Some(format!("{err:#}"));
        }
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // One thread: the load generator is pinned to one core.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the runtime")?;
    let result = runtime.block_on(run(&args))?;
    println!("{result}");
    Ok(())
}

async fn run(args: &Args) -> anyhow::Result<Value> {
    let target = Arc::new(target(args)?);
    let mut result = match args.mode {
        Mode::Full | Mode::Resumed | Mode::Keepalive => measure(args, target).await?,
        Mode::Hold => hold(args, target).await?,
        Mode::Startup => startup(args, target).await?,
    };
    result["mode"] = json!(format!("{:?}", args.mode).to_lowercase());
    result["label"] = json!(args.label);
    result["addr"] = json!(args.addr.to_string());
    result["client_provider"] = json!(args.provider.name());
    result["x25519_only"] = json!(args.x25519_only);
    Ok(result)
}

fn target(args: &Args) -> anyhow::Result<Target> {
    let mut provider = args.provider.crypto();
    if args.x25519_only {
        provider = x25519_only(provider)?;
    }
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])?
        .with_root_certificates(load_roots(&args.ca)?)
        .with_client_auth_cert(load_certs(&args.cert)?, load_key(&args.key)?)
        .context("the client certificate and key do not fit together")?;
    // Only the protocol spoken is offered.
    config.alpn_protocols = match args.http {
        HttpClient::H2 => vec![b"h2".to_vec()],
        HttpClient::Raw | HttpClient::Hyper => vec![b"http/1.1".to_vec()],
    };
    config.resumption = match args.mode {
        Mode::Resumed => Resumption::store(Arc::new(TicketStore::new(4096))),
        _ => Resumption::disabled(),
    };
    let server_name = ServerName::try_from(args.sni.clone())
        .with_context(|| format!("--sni `{}` is not a valid server name", args.sni))?;
    let close = matches!(args.mode, Mode::Full | Mode::Resumed | Mode::Startup);
    Ok(Target {
        addr: args.addr,
        server_name,
        connector: TlsConnector::from(Arc::new(config)),
        host: args.sni.clone(),
        path: args.path.clone(),
        request: http1::request(&args.sni, &args.path, close),
        expect: args.expect.clone().into_bytes(),
        timeout: Duration::from_secs_f64(args.timeout),
        http: args.http,
    })
}

async fn tcp_connect(target: &Target) -> anyhow::Result<TcpStream> {
    let tcp = TcpStream::connect(target.addr)
        .await
        .with_context(|| format!("connecting to {}", target.addr))?;
    tcp.set_nodelay(true)?;
    Ok(tcp)
}

async fn tls_over(target: &Target, tcp: TcpStream) -> anyhow::Result<TlsStream<TcpStream>> {
    target
        .connector
        .connect(target.server_name.clone(), tcp)
        .await
        .context("TLS handshake")
}

async fn connect(target: &Target) -> anyhow::Result<TlsStream<TcpStream>> {
    tls_over(target, tcp_connect(target).await?).await
}

/// One connection, one handshake, one request; the server closes the
/// connection after the response and the client waits for that, so every
/// connection ends cleanly.
async fn one_shot(target: &Target, buf: &mut Vec<u8>) -> anyhow::Result<HandshakeKind> {
    one_shot_over(target, tcp_connect(target).await?, buf).await
}

async fn one_shot_over(
    target: &Target,
    tcp: TcpStream,
    buf: &mut Vec<u8>,
) -> anyhow::Result<HandshakeKind> {
    let mut tls = tls_over(target, tcp).await?;
    let kind = tls
        .get_ref()
        .1
        .handshake_kind()
        .context("handshake without a kind")?;
    http1::exchange(&mut tls, &target.request, &target.expect, buf).await?;
    let mut rest = [0u8; 256];
    match tls.read(&mut rest).await {
        Ok(0) => Ok(kind),
        Ok(_) => bail!("data after the response"),
        // A server that closes without close_notify: the response was whole.
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => Ok(kind),
        Err(err) => Err(err).context("waiting for the server to close"),
    }
}

async fn handshake_worker(target: Arc<Target>, run: Arc<Run>, want: HandshakeKind) -> Latencies {
    let mut latencies = Latencies::default();
    let mut buf = Vec::with_capacity(4096);
    // A worker's first handshake is never counted: in `resumed` mode it is
    // the full one that brings the first tickets, whatever the warm-up.
    let mut primed = false;
    while !run.stopped() {
        let started = Instant::now();
        match tokio::time::timeout(target.timeout, one_shot(&target, &mut buf)).await {
            Ok(Ok(kind)) => {
                if !std::mem::replace(&mut primed, true) {
                    continue;
                }
                if run.measuring() {
                    run.ops.fetch_add(1, Ordering::Relaxed);
                    latencies.record(started.elapsed().as_micros() as u64);
                    if kind != want {
                        run.wrong_kind.fetch_add(1, Ordering::Relaxed);
                    }
                }
            }
            Ok(Err(err)) => {
                run.error(err);
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            Err(_) => run.error(anyhow::anyhow!("no response within the --timeout")),
        }
    }
    latencies
}

async fn keepalive_worker(target: Arc<Target>, run: Arc<Run>) -> Latencies {
    let mut latencies = Latencies::default();
    let mut first = true;
    while !run.stopped() {
        if !first {
            run.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        first = false;
        let tls = match tokio::time::timeout(target.timeout, connect(&target)).await {
            Ok(Ok(tls)) => tls,
            Ok(Err(err)) => {
                run.error(err);
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            }
            Err(_) => {
                run.error(anyhow::anyhow!("no handshake within the --timeout"));
                continue;
            }
        };
        let ended = match target.http {
            HttpClient::Raw => keepalive_raw(&target, &run, tls, &mut latencies).await,
            HttpClient::Hyper | HttpClient::H2 => {
                keepalive_hyper(&target, &run, tls, &mut latencies).await
            }
        };
        if let Err(err) = ended {
            run.error(err);
        }
    }
    latencies
}

/// Requests on one connection until the run stops or the connection fails.
async fn keepalive_raw(
    target: &Target,
    run: &Run,
    mut tls: TlsStream<TcpStream>,
    latencies: &mut Latencies,
) -> anyhow::Result<()> {
    let mut buf = Vec::with_capacity(4096);
    while !run.stopped() {
        let started = Instant::now();
        tokio::time::timeout(
            target.timeout,
            http1::exchange(&mut tls, &target.request, &target.expect, &mut buf),
        )
        .await
        .context("no response within the --timeout")??;
        if run.measuring() {
            run.ops.fetch_add(1, Ordering::Relaxed);
            latencies.record(started.elapsed().as_micros() as u64);
        }
    }
    Ok(())
}

/// hyper's client side of one connection, for `--http hyper` and `h2`.
enum Sender {
    H1(hyper::client::conn::http1::SendRequest<Empty<Bytes>>),
    H2(hyper::client::conn::http2::SendRequest<Empty<Bytes>>),
}

impl Sender {
    /// The HTTP handshake over `tls`; the connection's task runs until the
    /// connection ends.
    async fn handshake(
        target: &Target,
        tls: TlsStream<TcpStream>,
    ) -> anyhow::Result<(Sender, JoinHandle<()>)> {
        let io = TokioIo::new(tls);
        Ok(match target.http {
            HttpClient::H2 => {
                let (sender, connection) =
                    hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
                (Sender::H2(sender), tokio::spawn(ignore_end(connection)))
            }
            HttpClient::Raw | HttpClient::Hyper => {
                let (sender, connection) = hyper::client::conn::http1::handshake(io).await?;
                (Sender::H1(sender), tokio::spawn(ignore_end(connection)))
            }
        })
    }

    /// One GET of `--path`, its answer checked.
    async fn get(&mut self, target: &Target) -> anyhow::Result<()> {
        let response = match self {
            Sender::H1(sender) => {
                let request = Request::get(target.path.as_str())
                    .header(hyper::header::HOST, target.host.as_str())
                    .body(Empty::new())?;
                sender.send_request(request).await?
            }
            Sender::H2(sender) => {
                // h2 names the host in :authority, taken from the URI.
                let uri = format!("https://{}{}", target.host, target.path);
                sender
                    .send_request(Request::get(uri).body(Empty::new())?)
                    .await?
            }
        };
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if status != hyper::StatusCode::OK {
            bail!("status {status} instead of 200");
        }
        if !body
            .windows(target.expect.len())
            .any(|w| w == target.expect)
        {
            bail!("unexpected body: {}", String::from_utf8_lossy(&body));
        }
        Ok(())
    }
}

/// A connection task's end: how it ended shows in the requests.
async fn ignore_end<F: Future>(connection: F) {
    let _ = connection.await;
}

async fn keepalive_hyper(
    target: &Target,
    run: &Run,
    tls: TlsStream<TcpStream>,
    latencies: &mut Latencies,
) -> anyhow::Result<()> {
    let (mut sender, connection) = Sender::handshake(target, tls).await?;
    while !run.stopped() {
        let started = Instant::now();
        tokio::time::timeout(target.timeout, sender.get(target))
            .await
            .context("no response within the --timeout")??;
        if run.measuring() {
            run.ops.fetch_add(1, Ordering::Relaxed);
            latencies.record(started.elapsed().as_micros() as u64);
        }
    }
    connection.abort();
    Ok(())
}

/// CPU seconds of this process and of the server at one moment.
struct CpuSnapshot {
    at: Instant,
    client: f64,
    server: f64,
}

fn cpu_snapshot(server_pids: &[u32]) -> anyhow::Result<CpuSnapshot> {
    Ok(CpuSnapshot {
        at: Instant::now(),
        client: procfs::cpu_seconds(std::process::id())?,
        server: procfs::cpu_seconds_sum(server_pids)?,
    })
}

/// `full`, `resumed` and `keepalive`: load for warm-up + duration, count
/// and time only the operations that end in the measured window.
async fn measure(args: &Args, target: Arc<Target>) -> anyhow::Result<Value> {
    if args.connections == 0 || args.duration <= 0.0 {
        bail!("--connections and --duration must be above zero");
    }
    let run = Arc::new(Run::default());
    let workers: Vec<_> = (0..args.connections)
        .map(|_| {
            let (target, run) = (target.clone(), run.clone());
            match args.mode {
                Mode::Full => tokio::spawn(handshake_worker(target, run, HandshakeKind::Full)),
                Mode::Resumed => {
                    tokio::spawn(handshake_worker(target, run, HandshakeKind::Resumed))
                }
                _ => tokio::spawn(keepalive_worker(target, run)),
            }
        })
        .collect();
    tokio::time::sleep(Duration::from_secs_f64(args.warmup)).await;
    let start = cpu_snapshot(&args.server_pids)?;
    run.measuring.store(true, Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    run.measuring.store(false, Ordering::Relaxed);
    let end = cpu_snapshot(&args.server_pids)?;
    run.stop.store(true, Ordering::Relaxed);

    let mut latencies = Latencies::default();
    let deadline = tokio::time::Instant::now() + target.timeout + Duration::from_secs(1);
    for worker in workers {
        let abort = worker.abort_handle();
        match tokio::time::timeout_at(deadline, worker).await {
            Ok(Ok(worker_latencies)) => latencies.merge(worker_latencies),
            Ok(Err(err)) => bail!("a worker failed: {err}"),
            Err(_) => abort.abort(),
        }
    }

    let elapsed = end.at.duration_since(start.at).as_secs_f64();
    let ops = run.ops.load(Ordering::Relaxed);
    let per_op_us = |seconds: f64| match ops {
        0 => Value::Null,
        n => json!(round2(seconds * 1e6 / n as f64)),
    };
    let server_cpu = end.server - start.server;
    let client_cpu = end.client - start.client;
    let result = json!({
        "connections": args.connections,
        "http": format!("{:?}", args.http).to_lowercase(),
        "duration_s": round2(elapsed),
        "ops": ops,
        "ops_per_s": round2(ops as f64 / elapsed),
        "errors": run.errors.load(Ordering::Relaxed),
        "first_error": run.first_error.lock().unwrap().clone(),
        "wrong_handshake_kind": run.wrong_kind.load(Ordering::Relaxed),
        "reconnects": run.reconnects.load(Ordering::Relaxed),
        "latency": latencies.summary(),
        "client_cpu_s": round2(client_cpu),
        "client_cpu_us_per_op": per_op_us(client_cpu),
        "client_cpu_util": round2(client_cpu / elapsed),
        "server_pids": args.server_pids,
        "server_cpu_s": if args.server_pids.is_empty() { Value::Null } else { json!(round2(server_cpu)) },
        "server_cpu_us_per_op": if args.server_pids.is_empty() { Value::Null } else { per_op_us(server_cpu) },
        "server_cpu_util": if args.server_pids.is_empty() { Value::Null } else { json!(round2(server_cpu / elapsed)) },
    });
    if ops == 0 {
        bail!(
            "no operation completed in the measured window: {}",
            run.first_error
                .lock()
                .unwrap()
                .as_deref()
                .unwrap_or("no error was seen either")
        );
    }
    Ok(result)
}

/// `hold`: opens `--hold` connections, each with a full handshake and one
/// request, leaves them idle, and measures the server's memory before and
/// after. Then holds them `--duration` seconds more and counts the ones the
/// server closed.
async fn hold(args: &Args, target: Arc<Target>) -> anyhow::Result<Value> {
    if args.server_pids.is_empty() {
        bail!("hold mode measures the server's memory: give --server-pid");
    }
    let before = procfs::memory_sum(&args.server_pids)?;
    let run = Arc::new(Run::default());
    let opening = Arc::new(Semaphore::new(args.connections.max(1)));
    let opened = Arc::new(AtomicU64::new(0));
    let dropped = Arc::new(AtomicU64::new(0));
    let (release, released) = watch::channel(false);
    let started = Instant::now();
    let holders: Vec<_> = (0..args.hold)
        .map(|_| {
            let (target, run, opening) = (target.clone(), run.clone(), opening.clone());
            let (opened, dropped, mut released) =
                (opened.clone(), dropped.clone(), released.clone());
            tokio::spawn(async move {
                let permit = opening.acquire_owned().await;
                let mut held = match tokio::time::timeout(target.timeout, Held::open(&target)).await
                {
                    Ok(Ok(held)) => held,
                    Ok(Err(err)) => return run.error(err),
                    Err(_) => return run.error(anyhow::anyhow!("not opened within the --timeout")),
                };
                drop(permit);
                opened.fetch_add(1, Ordering::Relaxed);
                tokio::select! {
                    _ = held.closed() => {
                        dropped.fetch_add(1, Ordering::Relaxed);
                    }
                    _ = released.wait_for(|released| *released) => {}
                }
            })
        })
        .collect();
    let all_settled =
        || opened.load(Ordering::Relaxed) + run.errors.load(Ordering::Relaxed) >= args.hold as u64;
    while !all_settled() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let open_s = started.elapsed().as_secs_f64();
    // Let the server finish what the last handshakes started.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = procfs::memory_sum(&args.server_pids)?;
    let held_at_measure = opened.load(Ordering::Relaxed) - dropped.load(Ordering::Relaxed);
    tokio::time::sleep(Duration::from_secs_f64(args.duration)).await;
    let dropped_total = dropped.load(Ordering::Relaxed);
    release.send_replace(true);
    for holder in holders {
        let _ = holder.await;
    }
    let per_conn = |after: u64, before: u64| match held_at_measure {
        0 => Value::Null,
        n => json!(((after as f64 - before as f64) / n as f64).round()),
    };
    Ok(json!({
        "hold": args.hold,
        "opened": opened.load(Ordering::Relaxed),
        "held_at_measure": held_at_measure,
        "errors": run.errors.load(Ordering::Relaxed),
        "first_error": run.first_error.lock().unwrap().clone(),
        "dropped_by_server": dropped_total,
        "open_s": round2(open_s),
        "held_s": args.duration,
        "server_pids": args.server_pids,
        "server_rss_before": before.rss,
        "server_rss_after": after.rss,
        "server_pss_before": before.pss,
        "server_pss_after": after.pss,
        "rss_per_conn_bytes": per_conn(after.rss, before.rss),
        "pss_per_conn_bytes": per_conn(after.pss, before.pss),
    }))
}

/// An idle connection of `hold` mode.
enum Held {
    /// Read from only to notice the server closing it.
    H1(Box<TlsStream<TcpStream>>),
    /// The sender keeps the connection open; the connection's task ends
    /// when the server closes it (it answers the server's pings meanwhile).
    H2 {
        _sender: Sender,
        connection: JoinHandle<()>,
    },
}

impl Held {
    /// A handshake and one request.
    async fn open(target: &Target) -> anyhow::Result<Held> {
        let mut tls = connect(target).await?;
        if target.http == HttpClient::H2 {
            let (mut sender, connection) = Sender::handshake(target, tls).await?;
            sender.get(target).await?;
            return Ok(Held::H2 {
                _sender: sender,
                connection,
            });
        }
        let mut buf = Vec::new();
        http1::exchange(&mut tls, &target.request, &target.expect, &mut buf).await?;
        Ok(Held::H1(Box::new(tls)))
    }

    /// Returns when the server has closed the connection.
    async fn closed(&mut self) {
        match self {
            Held::H1(tls) => {
                let _ = tls.read(&mut [0u8; 1]).await;
            }
            Held::H2 { connection, .. } => {
                let _ = connection.await;
            }
        }
    }
}

/// `startup`: exec the server command, then try a full mTLS request every
/// millisecond until one is answered.
async fn startup(args: &Args, target: Arc<Target>) -> anyhow::Result<Value> {
    let Some((program, rest)) = args.command.split_first() else {
        bail!("startup mode needs the server command after `--`");
    };
    warm_up_client_crypto(args)?;
    let started = Instant::now();
    let mut child = Command::new(program)
        .args(rest)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .spawn()
        .with_context(|| format!("cannot start `{program}`"))?;
    let mut attempts = 0u64;
    let mut buf = Vec::new();
    let mut first_connect = None;
    let mut last_error = None;
    let outcome = loop {
        attempts += 1;
        let attempt = async {
            let tcp = tcp_connect(&target).await?;
            first_connect.get_or_insert(started.elapsed());
            one_shot_over(&target, tcp, &mut buf).await
        };
        match tokio::time::timeout(target.timeout, attempt).await {
            Ok(Ok(_)) => break Ok(started.elapsed()),
            Ok(Err(err)) => last_error = Some(format!("{err:#}")),
            Err(_) => last_error = Some("no answer within the --timeout".to_owned()),
        }
        if let Some(status) = child.try_wait()? {
            break Err(anyhow::anyhow!(
                "the server exited ({status}) before answering"
            ));
        }
        if started.elapsed() > target.timeout {
            break Err(anyhow::anyhow!(
                "no answer within {:?}; last error: {}",
                target.timeout,
                last_error.as_deref().unwrap_or("none")
            ));
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    };
    terminate(&mut child)?;
    let elapsed = outcome?;
    let ms = |d: Duration| round2(d.as_secs_f64() * 1e3);
    Ok(json!({
        "startup_ms": ms(elapsed),
        "first_connect_ms": first_connect.map(ms),
        "attempts": attempts,
        "last_failed_attempt": last_error,
        "command": args.command,
    }))
}

/// The crypto library's one-time set-up (aws-lc-rs takes tens of
/// milliseconds on first use) must not count as the server's start-up: a
/// key share and a signature with the client key trigger it beforehand.
fn warm_up_client_crypto(args: &Args) -> anyhow::Result<()> {
    let target = target(args)?;
    rustls::ClientConnection::new(
        target.connector.config().clone(),
        target.server_name.clone(),
    )
    .context("warming up the client's TLS")?;
    let signer = args
        .provider
        .crypto()
        .key_provider
        .load_private_key(load_key(&args.key)?)
        .context("the client key is not usable")?;
    let schemes = [
        rustls::SignatureScheme::ECDSA_NISTP256_SHA256,
        rustls::SignatureScheme::ECDSA_NISTP384_SHA384,
        rustls::SignatureScheme::ED25519,
        rustls::SignatureScheme::RSA_PSS_SHA256,
    ];
    if let Some(signer) = signer.choose_scheme(&schemes) {
        signer
            .sign(b"warm-up")
            .context("warming up the client's signatures")?;
    }
    Ok(())
}

/// SIGTERM (nginx's master then stops its workers), then SIGKILL after 5 s.
fn terminate(child: &mut Child) -> anyhow::Result<()> {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

fn round2(value: f64) -> f64 {
    (value * 100.0).round() / 100.0
}
