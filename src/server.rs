//! The accept loop: TLS handshake under a timeout, one task per connection,
//! HTTP/1.1 and h2 on the same port, graceful shutdown.

use std::convert::Infallible;
use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use hyper::server::conn::{http1, http2};
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode, Version};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::{debug, info, warn};

use crate::admin;
use crate::audit::Audit;
use crate::config::{ClientAuthMode, ServeConfig};
use crate::drain::{Drain, Stop};
use crate::h2_send_timeout::{SentBody, StreamExecutor};
use crate::hsts;
use crate::http::Body;
use crate::http::json_response;
use crate::identity::{ConnectionInfo, PeerIdentity};
use crate::logging::{self, AccessRecord};
use crate::metrics::{Metrics, route_label};
use crate::parking::{self, ParkState, RequestBody, TrackedBody};
use crate::proxy::forward::{ProxyBody, Upstream, UpstreamError, UpstreamSettings};
use crate::proxy::forwarded_cert::{Forwarded, ForwardedTrust, MalformedHeader};
use crate::proxy::signed_identity::{SigningKey, SigningKeyError};
use crate::proxy_protocol::read_header as read_proxy_header;
use crate::rejection::Rejection;
use crate::reload::{Material, ReloadError, Reloader};
use crate::secrets::{self, InsecurePermissions};
use crate::tls::client_auth::ClientTrust;
use crate::tls::{self, TlsConfigError};

/// How long, and how much, a rejected client is read from before closing.
const LINGER_TIMEOUT: Duration = Duration::from_secs(2);
const LINGER_MAX_BYTES: usize = 64 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Tls(#[from] TlsConfigError),
    #[error(transparent)]
    Reload(#[from] ReloadError),
    #[error(transparent)]
    Upstream(#[from] UpstreamError),
    #[error(transparent)]
    SigningKey(#[from] SigningKeyError),
    #[error(transparent)]
    InsecureKey(#[from] InsecurePermissions),
    #[error("cannot listen on {addr} ({flag}): {cause}; {hint}")]
    Bind {
        addr: SocketAddr,
        flag: &'static str,
        cause: io::Error,
        hint: &'static str,
    },
}

/// A server whose configuration is validated and whose socket is bound.
pub struct Server {
    reloader: Arc<Reloader>,
    listener: TcpListener,
    local_addr: SocketAddr,
    admin: Option<(TcpListener, SocketAddr)>,
    shared: Arc<Shared>,
    config: ServeConfig,
}

/// What every connection task needs.
struct Shared {
    /// Certificates, trust and routes; replaced whole by a reload.
    material: Arc<ArcSwap<Material>>,
    /// Optional mode: the chain is verified after the handshake.
    deferred_verification: bool,
    /// h2 connections (ALPN "h2").
    http2: http2::Builder<StreamExecutor>,
    /// HTTP/1.1 connections, parked while idle (src/parking.rs).
    http1: http1::Builder,
    /// How long an HTTP/1.1 connection waits for its next request, and
    /// for the rest of a request head.
    http1_timeouts: parking::Timeouts,
    metrics: Arc<Metrics>,
    /// Recent refusals and the clients seen, for the admin endpoint.
    audit: Arc<Audit>,
    /// When set, admitted requests go to the app instead of `routes`.
    upstream: Option<Arc<Upstream>>,
    /// When set, trusted proxies may forward the client certificate.
    forwarded_trust: Option<ForwardedTrust>,
    /// When set, every connection starts with a PROXY protocol header from
    /// one of these networks.
    proxy_protocol: Option<Vec<ipnet::IpNet>>,
    /// One permit per open connection (`--max-connections`), taken before
    /// the handshake so that idle or hostile clients cannot exhaust memory.
    connection_slots: Arc<Semaphore>,
    handshake_timeout: Duration,
    /// An h2 connection without an open stream this long is closed.
    h2_idle_timeout: Duration,
    /// Strict-Transport-Security for every answer, unless already set.
    hsts: Option<HeaderValue>,
}

impl Server {
    /// Loads and checks all TLS material, then binds the listening socket, so
    /// every configuration error surfaces before the first connection.
    pub async fn bind(config: ServeConfig) -> Result<Server, ServeError> {
        let metrics = Arc::new(Metrics::default());
        let material = Arc::new(ArcSwap::from_pointee(Material::load(&config, &metrics)?));
        let (listener, local_addr) = bind(config.listen, "--listen / LISTEN").await?;
        let admin = match config.admin_listen {
            Some(addr) => Some(bind(addr, "--admin-listen / ADMIN_LISTEN").await?),
            None => None,
        };

        let limits = &config.limits;
        let mut http1 = http1::Builder::new();
        // src/parking.rs enforces the header-read timeout, more cheaply.
        http1
            .header_read_timeout(None)
            // How hyper hands an answer to rustls. Without an upstream every
            // answer is small and built here: one flat buffer costs less than
            // hyper's queue of buffers (callgrind, keep-alive `GET /`: 0.7k
            // of 17.6k instructions). Proxied bodies can be large, and a flat
            // buffer is one more copy of each byte (user CPU +40 % on 64 MB
            // downloads), so they keep the queue.
            .writev(config.upstream.is_some())
            .max_buf_size(limits.max_header_bytes.max(8192));
        // hyper's default limit of 100 header fields applies (more get 431,
        // tests/hostile.rs). It is not set explicitly: with an explicit
        // `max_headers` hyper allocates and fills the header array on every
        // request instead of using its stack array (callgrind: 2.7k
        // instructions of 32k per keep-alive request).
        // Every stream's task runs under the send timeout.
        let mut http2 = http2::Builder::new(StreamExecutor {
            send_timeout: limits.send_timeout,
        });
        http2
            .timer(TokioTimer::new())
            .max_header_list_size(limits.max_header_bytes as u32)
            .max_concurrent_streams(limits.max_streams)
            // The library defaults, pinned so an upgrade cannot loosen them:
            // GOAWAY after 20 streams reset by the client before they were
            // served (rapid reset, CVE-2023-44487) and after 1,024 streams
            // the server had to reset for client errors (CVE-2025-8671).
            // tests/hostile.rs runs both attacks.
            .max_pending_accept_reset_streams(20)
            .max_local_error_reset_streams(1024)
            .keep_alive_interval(Some(limits.idle_timeout))
            .keep_alive_timeout(Duration::from_secs(20));

        if let Some(upstream) = &config.upstream {
            for (path, role) in upstream.secret_files() {
                secrets::check(path, role, config.allow_insecure_key_permissions)?;
            }
        }
        let upstream = match &config.upstream {
            Some(upstream) => Some(Arc::new(Upstream::new(
                metrics.clone(),
                UpstreamSettings {
                    url: upstream.url.clone(),
                    timeout: upstream.timeout,
                    formats: upstream.formats.clone(),
                    apache: upstream.apache,
                    tls: tls::upstream_client_config(
                        upstream.ca.as_deref(),
                        upstream.identity.as_ref(),
                    )?,
                    max_body_bytes: upstream.max_body_bytes,
                    signing_key: match &upstream.signing_key_file {
                        Some(path) => Some(Arc::new(SigningKey::from_file(path)?)),
                        None => None,
                    },
                },
            )?)),
            None => None,
        };
        let reloader = Arc::new(Reloader::new(
            config.clone(),
            material.clone(),
            metrics.clone(),
        ));
        let shared = Arc::new(Shared {
            material,
            deferred_verification: config.client_auth == ClientAuthMode::Optional,
            http1,
            http2,
            http1_timeouts: parking::Timeouts {
                idle: limits.header_read_timeout,
                head: limits.header_read_timeout,
                send: limits.send_timeout,
            },
            metrics,
            audit: Arc::new(Audit::default()),
            upstream,
            forwarded_trust: config.forwarded_trust.clone(),
            proxy_protocol: config.proxy_protocol.clone(),
            connection_slots: Arc::new(Semaphore::new(config.limits.max_connections)),
            handshake_timeout: config.handshake_timeout,
            h2_idle_timeout: limits.idle_timeout,
            hsts: config.hsts.clone(),
        });
        Ok(Server {
            reloader,
            listener,
            local_addr,
            admin,
            shared,
            config,
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Reloads certificates, CAs, CRLs and policy (SIGHUP does this).
    pub fn reloader(&self) -> Arc<Reloader> {
        self.reloader.clone()
    }

    /// The bound admin address, when the admin endpoint is on.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin.as_ref().map(|(_, addr)| *addr)
    }

    /// Serves until `shutdown` completes, then stops accepting and gives
    /// in-flight requests up to the shutdown timeout to finish.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        log_startup(&self.config, self.local_addr);
        let (stop_admin, admin_stopped) = tokio::sync::oneshot::channel::<()>();
        if let Some((listener, addr)) = self.admin {
            info!("admin endpoint on http://{addr} (/healthz, /readyz)");
            tokio::spawn(admin::serve(
                listener,
                self.shared.metrics.clone(),
                self.shared.audit.clone(),
                async {
                    let _ = admin_stopped.await;
                },
            ));
        }
        let watcher = self
            .config
            .watch
            .map(|interval| self.reloader.clone().watch(interval));
        let drain = Drain::default();
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                accepted = self.listener.accept() => match accepted {
                    Ok((tcp, peer)) => match self.shared.connection_slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let shared = self.shared.clone();
                            let stop = drain.stop_signal();
                            tokio::spawn(serve_connection(shared, tcp, peer, stop, slot));
                        }
                        Err(_) => {
                            // Refused before any TLS work: closing is the cheapest answer.
                            self.shared.metrics.connection_refused();
                            debug!(peer = %peer, "connection refused: --max-connections reached");
                            drop(tcp);
                        }
                    },
                    Err(err) => {
                        // Typically EMFILE; back off instead of spinning, keep serving.
                        warn!(error = %err, "accept failed");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
                () = &mut shutdown => break,
            }
        }
        drop(self.listener);
        if let Some(watcher) = watcher {
            watcher.abort();
        }
        let _ = stop_admin.send(());
        let timeout = self.config.shutdown_timeout;
        info!(
            connections = drain.connections(),
            "shutting down: no new connections; waiting up to {}s for in-flight requests",
            timeout.as_secs_f32()
        );
        tokio::select! {
            () = drain.shutdown() => info!("all connections closed; bye"),
            () = tokio::time::sleep(timeout) => warn!("shutdown timeout reached; closing the remaining connections"),
        }
    }
}

fn log_startup(config: &ServeConfig, addr: SocketAddr) {
    // Said first and last of the start-up lines, so nobody misses it.
    warn_keylog(config);
    let workers = tokio::runtime::Handle::current().metrics().num_workers();
    let plural = if workers == 1 { "" } else { "s" };
    info!("listening on https://{addr} ({workers} worker thread{plural})");
    if let Some(upstream) = &config.upstream {
        let mut formats: Vec<&str> = upstream.formats.iter().map(|f| f.name()).collect();
        if upstream.signing_key_file.is_some() {
            formats.push("signed");
        }
        info!(
            "forwarding to {} (identity headers: {})",
            upstream.url,
            if formats.is_empty() {
                "none".to_owned()
            } else {
                formats.join(", ")
            }
        );
    }
    let ca = config.client_ca.display();
    match config.client_auth {
        ClientAuthMode::Required => {
            info!("mTLS is enabled (client certificates required; trusted CAs: {ca})")
        }
        ClientAuthMode::Optional => info!(
            "mTLS is optional (client certificates requested and verified when presented; trusted CAs: {ca})"
        ),
        ClientAuthMode::Off => info!("client auth is disabled"),
    }
    warn_keylog(config);
}

fn warn_keylog(config: &ServeConfig) {
    if let Some(path) = &config.keylog {
        warn!(
            "--keylog: TLS secrets are being written to {}; anyone with it can decrypt traffic; never in production",
            path.display()
        );
    }
}

async fn bind(
    addr: SocketAddr,
    flag: &'static str,
) -> Result<(TcpListener, SocketAddr), ServeError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|cause| bind_error(addr, flag, cause))?;
    let local_addr = listener
        .local_addr()
        .map_err(|cause| bind_error(addr, flag, cause))?;
    Ok((listener, local_addr))
}

fn bind_error(addr: SocketAddr, flag: &'static str, cause: io::Error) -> ServeError {
    let hint = match cause.kind() {
        io::ErrorKind::AddrInUse => {
            "another process is listening there; stop it or pick another port"
        }
        io::ErrorKind::PermissionDenied => {
            "ports below 1024 need root or CAP_NET_BIND_SERVICE; pick a port above 1023"
        }
        io::ErrorKind::AddrNotAvailable => {
            "this machine has no such address; use 0.0.0.0 for all IPv4 addresses or 127.0.0.1 for loopback"
        }
        _ => "check the address",
    };
    ServeError::Bind {
        addr,
        flag,
        cause,
        hint,
    }
}

async fn serve_connection(
    shared: Arc<Shared>,
    mut tcp: TcpStream,
    mut peer: SocketAddr,
    mut stop: Stop,
    slot: OwnedSemaphorePermit,
) {
    let _ = tcp.set_nodelay(true);
    if let Some(trusted) = &shared.proxy_protocol {
        if !trusted.iter().any(|net| net.contains(&peer.ip())) {
            info!(peer = %peer, "connection refused: --proxy-protocol expects connections from --trusted-proxy peers only");
            return;
        }
        let header = tokio::time::timeout(shared.handshake_timeout, read_proxy_header(&mut tcp));
        match header.await {
            Ok(Ok(Some(client))) => peer = client,
            Ok(Ok(None)) => {}
            Ok(Err(err)) => {
                info!(peer = %peer, error = %err, "connection refused: bad PROXY protocol header");
                return;
            }
            Err(_) => {
                info!(peer = %peer, "connection refused: no PROXY protocol header in time");
                return;
            }
        }
    }
    // The connection keeps this material to its end, whatever reloads do.
    let material = shared.material.load_full();
    let accept = material.acceptor.accept(tcp).into_fallible();
    // Boxed: the handshake's state lives on the heap only while it runs,
    // instead of enlarging the connection task for its whole life; so does
    // the TLS stream it yields (1.2 KB, rustls' state), which would take
    // that room twice in the task (async state machines keep a slot for a
    // matched value and for each binding).
    let handshake_timeout = shared.handshake_timeout;
    let handshake = Box::pin(async move {
        let accepted = tokio::time::timeout(handshake_timeout, accept).await;
        accepted.map(|accepted| accepted.map(Box::new))
    });
    let stream = match handshake.await {
        Ok(Ok(stream)) => stream,
        Ok(Err((err, tcp))) => {
            let failure = handshake_failure(&err, material.client_trust.as_deref());
            match failure {
                HandshakeFailure::Client(rejection) => {
                    shared.metrics.handshake("refused");
                    shared.metrics.refused("handshake", rejection.reason);
                    shared
                        .audit
                        .refused(&peer.to_string(), "handshake", &rejection);
                    info!(
                    peer = %peer,
                    reason = %rejection.reason,
                    detail = %rejection.detail,
                    "TLS handshake failed: client certificate refused"
                    )
                }
                HandshakeFailure::Other(text) => {
                    shared.metrics.handshake("failed");
                    info!(peer = %peer, reason = %text, "TLS handshake failed")
                }
            }
            linger_close(tcp).await;
            return;
        }
        Err(_) => {
            shared.metrics.handshake("timeout");
            info!(
                peer = %peer,
                "TLS handshake timed out after {}s",
                shared.handshake_timeout.as_secs_f32()
            );
            return;
        }
    };
    let conn_info = Arc::new(ConnectionInfo::from_handshake(
        peer,
        stream.get_ref().1,
        material.client_trust.as_deref(),
        shared.deferred_verification,
    ));
    debug!(
        peer = %peer,
        client_cn = ?conn_info.peer.log_name(),
        tls_version = %conn_info.tls.version,
        cipher_suite = %conn_info.tls.cipher_suite,
        alpn = ?conn_info.tls.alpn,
        sni = ?conn_info.tls.sni,
        "TLS handshake complete"
    );

    if let PeerIdentity::Verified(client) = &conn_info.peer
        && let Some(details) = client.details()
    {
        shared.audit.seen(details);
    }
    shared.metrics.handshake_ok();
    shared.metrics.active_connections.inc();
    // HTTP/1.1 unless the client asked for h2: over TLS, h2 needs ALPN
    // (RFC 9113, section 3.2).
    let h2 = stream.get_ref().1.alpn_protocol() == Some(b"h2");
    // HTTP/1.1: parked between requests. h2: counts the open streams, so an
    // idle connection can be closed.
    let park = Arc::new(ParkState::default());
    let service_park = park.clone();
    let service_shared = shared.clone();
    let service = service_fn(move |req: Request<Incoming>| {
        // Marked when hyper calls the service, not when it first polls the
        // future: hyper may read in between.
        let may_upgrade = !h2
            && (req.method() == hyper::Method::CONNECT
                || req.headers().contains_key(hyper::header::UPGRADE));
        let [reading, answering] = service_park.dispatched(may_upgrade);
        let (reading, answering) = (Some(reading), Some(answering));
        let req = req.map(|body| TrackedBody::new(body, reading));
        let answer = service_shared.respond(req, &conn_info, &material);
        async move {
            let response = match answer {
                Answer::Ready(response, body) => {
                    drop(body);
                    response
                }
                Answer::Upstream(exchange) => exchange.await,
            };
            // Over h2, in the stream's task: under the send timeout.
            let sent = if h2 { SentBody::h2 } else { SentBody::http1 };
            Ok::<_, Infallible>(response.map(|body| TrackedBody::new(sent(body), answering)))
        }
    });
    if h2 {
        // In a task of its own, sized for h2's state: this task keeps room
        // for the HTTP/1.1 driver (1.7 KB in all) that an h2 connection
        // would hold unused for its whole life.
        tokio::spawn(async move {
            let idle = (&*park, shared.h2_idle_timeout);
            let served = serve_h2(&shared.http2, stream, service, idle, stop).await;
            connection_ended(&shared, peer, served);
            drop(slot);
        });
        return;
    }
    let served = parking::serve(
        &shared.http1,
        stream,
        service,
        park,
        shared.http1_timeouts,
        &shared.metrics.idle_connections,
        &mut stop,
    )
    .await;
    connection_ended(&shared, peer, served.map_err(Into::into));
}

/// The end of a connection that got past its handshake.
fn connection_ended(
    shared: &Shared,
    peer: SocketAddr,
    served: Result<(), Box<dyn std::error::Error + Send + Sync>>,
) {
    if let Err(err) = served {
        debug!(peer = %peer, error = %err, "connection ended with an error");
    }
    shared.metrics.active_connections.dec();
}

/// Serves an h2 connection until it ends, the server stops or it has been
/// idle (no stream open) for `idle_timeout`, then lets the streams in
/// flight finish (after idleness, for at most one more `idle_timeout`).
async fn serve_h2<S>(
    http: &http2::Builder<StreamExecutor>,
    stream: Box<tokio_rustls::server::TlsStream<TcpStream>>,
    service: S,
    (streams, idle_timeout): (&ParkState, Duration),
    mut stop: Stop,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>>
where
    S: hyper::service::HttpService<Incoming> + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: Send + 'static,
    <S::ResBody as hyper::body::Body>::Data: Send,
    <S::ResBody as hyper::body::Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let conn = http.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    tokio::select! {
        served = conn.as_mut() => return served.map_err(Into::into),
        () = stop.requested() => conn.as_mut().graceful_shutdown(),
        () = h2_idle(streams, idle_timeout) => {
            debug!("closing an HTTP/2 connection idle for --idle-timeout");
            conn.as_mut().graceful_shutdown();
            // No stream task is left, but h2 may still hold the unsent end
            // of an answer (hyper's stream ends once h2 has taken its last
            // piece, sent or not), which a client that grants no window
            // never takes: closed after one more --idle-timeout.
            return match tokio::time::timeout(idle_timeout, conn).await {
                Ok(served) => served.map_err(Into::into),
                Err(_) => {
                    debug!("closing an HTTP/2 connection whose client takes none of its last answers");
                    Ok(())
                }
            };
        }
    }
    conn.await.map_err(Into::into)
}

/// Returns once an h2 connection has had no stream open for a whole
/// `idle_timeout`: between one and two of them after its last stream
/// ended. A look per period, instead of a timer reset per request.
async fn h2_idle(streams: &ParkState, idle_timeout: Duration) {
    loop {
        tokio::time::sleep(idle_timeout).await;
        if streams.idle_since_last_look() {
            return;
        }
    }
}

/// Closes a connection whose handshake failed so that the alert rustls
/// already sent reaches the client. Closing with unread data (a TLS 1.3
/// client sends its request before it learns of the rejection) would make
/// the kernel send a reset that can destroy the alert in flight, and the
/// client would see "connection reset" instead of the reason.
async fn linger_close(mut tcp: TcpStream) {
    if tcp.shutdown().await.is_err() {
        return;
    }
    // On the heap: an array here would be part of every connection task's
    // state (async state machines are as large as their largest await).
    let mut sink = vec![0u8; 4096];
    let drain = async {
        let mut drained = 0usize;
        while drained < LINGER_MAX_BYTES {
            match tcp.read(&mut sink).await {
                Ok(0) | Err(_) => break,
                Ok(n) => drained += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// A request's answer as decided when hyper hands the request over.
enum Answer {
    /// Finished: a built-in route, a refusal, a bad forwarded header. With
    /// the request's body, which the future drops when hyper polls it: a
    /// body dropped at once makes hyper give up a chunked body it could
    /// still drain, and close the connection.
    Ready(Response<ProxyBody>, RequestBody),
    /// The upstream exchange, still to run.
    Upstream(Pin<Box<dyn Future<Output = Response<ProxyBody>> + Send>>),
}

/// nginx's status for a request whose client went away before the answer.
const CLIENT_CLOSED_REQUEST: u16 = 499;

/// A proxied request while the upstream has not answered. hyper drops the
/// exchange when the client goes away (it closes the connection, resets
/// the h2 stream) or when shutdown's timeout ends the connection; the
/// request is then counted and logged with status 499, as nginx does.
struct Unanswered<'a> {
    shared: &'a Shared,
    seen: &'a Seen<'a>,
    conn: &'a ConnectionInfo,
    answered: bool,
}

impl Drop for Unanswered<'_> {
    fn drop(&mut self) {
        if !self.answered {
            self.shared
                .record(self.seen, self.conn, CLIENT_CLOSED_REQUEST, true);
        }
    }
}

/// A request as its access line and its metrics see it.
struct Seen<'a> {
    started: Instant,
    method: &'a Method,
    path: &'a str,
    version: Version,
}

impl<'a> Seen<'a> {
    fn of<B>(req: &'a Request<B>, started: Instant) -> Self {
        Seen {
            started,
            method: req.method(),
            path: req.uri().path(),
            version: req.version(),
        }
    }
}

impl Shared {
    /// Answers one request: admission, then the built-in routes or the
    /// upstream.
    ///
    /// Everything but the upstream exchange runs here, when hyper hands the
    /// request over, not in the future hyper polls later: in between, hyper
    /// reads once more (to notice a client hanging up), and a request head
    /// still alive then pins hyper's read buffer, so that read would take a
    /// new 8 KiB buffer for every request. (With h2 this moves the built-in
    /// routes' work from the stream's task to the connection's.)
    fn respond(
        self: &Arc<Self>,
        mut req: Request<RequestBody>,
        conn_info: &Arc<ConnectionInfo>,
        material: &Material,
    ) -> Answer {
        let routes = &material.routes;
        let started = Instant::now();
        let mut forwarded_conn = None;
        let conn: &ConnectionInfo = match self.forwarded_identity(&mut req, conn_info, material) {
            Ok(Some(forwarded)) => forwarded_conn.insert(forwarded),
            Ok(None) => conn_info,
            Err(malformed) => {
                warn!(peer = %conn_info.remote_addr, error = %malformed, "bad forwarded certificate header");
                let seen = Seen::of(&req, started);
                // The connection's own identity: the forwarded one is what
                // could not be read.
                self.record(&seen, conn_info, 400, false);
                let response = self.with_hsts(boxed(json_response(
                    StatusCode::BAD_REQUEST,
                    &serde_json::json!({ "error": "bad request", "detail": malformed.to_string() }),
                )));
                return Answer::Ready(response, req.into_body());
            }
        };
        let response = match routes.admit_request(&req, conn) {
            Err(rejection) => {
                self.audit
                    .refused(&conn.remote_addr.to_string(), "request", &rejection);
                boxed(routes.refuse(&req, &rejection))
            }
            Ok(admission) => match &self.upstream {
                Some(upstream) => {
                    // Shared with the exchange; a forwarded identity is put
                    // on the heap only here.
                    let conn = match forwarded_conn {
                        Some(forwarded) => Arc::new(forwarded),
                        None => Arc::clone(conn_info),
                    };
                    return Answer::Upstream(Box::pin(Self::forward(
                        Arc::clone(self),
                        Arc::clone(upstream),
                        req,
                        conn,
                        started,
                    )));
                }
                None => boxed(routes.route(&req, conn, &admission)),
            },
        };
        let seen = Seen::of(&req, started);
        // No `with_hsts`: the built-in answers and refusals carry HSTS from
        // the header maps they start from (`http::AnswerHeaders`).
        debug_assert!(
            self.hsts.is_none() || response.headers().contains_key(STRICT_TRANSPORT_SECURITY),
            "a built-in answer without HSTS"
        );
        let response = self.finish(&seen, conn, response, false);
        Answer::Ready(response, req.into_body())
    }

    /// The upstream exchange of an admitted request.
    async fn forward(
        self: Arc<Self>,
        upstream: Arc<Upstream>,
        req: Request<RequestBody>,
        conn: Arc<ConnectionInfo>,
        started: Instant,
    ) -> Response<ProxyBody> {
        // Kept for the log after the request went upstream; a clone shares
        // the request's bytes instead of copying the path.
        let method = req.method().clone();
        let uri = req.uri().clone();
        let seen = Seen {
            started,
            method: &method,
            path: uri.path(),
            version: req.version(),
        };
        let mut unanswered = Unanswered {
            shared: &self,
            seen: &seen,
            conn: &conn,
            answered: false,
        };
        let response = upstream.forward(req, &conn).await;
        unanswered.answered = true;
        self.with_hsts(self.finish(&seen, &conn, response, true))
    }

    /// Counts an answered request and writes its access line.
    fn finish(
        &self,
        seen: &Seen<'_>,
        conn: &ConnectionInfo,
        response: Response<ProxyBody>,
        proxied: bool,
    ) -> Response<ProxyBody> {
        self.record(seen, conn, response.status().as_u16(), proxied);
        response
    }

    /// Counts a request and writes its access line.
    fn record(&self, seen: &Seen<'_>, conn: &ConnectionInfo, status: u16, proxied: bool) {
        let elapsed = seen.started.elapsed();
        self.metrics.request(
            status,
            route_label(seen.path, proxied),
            elapsed.as_secs_f64(),
        );
        logging::access(&AccessRecord {
            conn,
            method: seen.method,
            path: seen.path,
            version: seen.version,
            status,
            duration: elapsed,
        });
    }

    /// HSTS, when it is on, for the answers not built by the routes (which
    /// carry it already): proxied ones and the forwarded-header 400.
    fn with_hsts(&self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        if let Some(hsts) = &self.hsts {
            hsts::apply(response.headers_mut(), hsts);
        }
        response
    }
}

impl Shared {
    /// With `--trust-forwarded-cert`: the identity a trusted proxy forwarded,
    /// verified exactly like a direct certificate. The header is removed in
    /// every case, so it never reaches the app as such.
    fn forwarded_identity(
        &self,
        req: &mut Request<RequestBody>,
        conn: &ConnectionInfo,
        material: &Material,
    ) -> Result<Option<ConnectionInfo>, MalformedHeader> {
        let (Some(trust), Some(client_trust)) = (&self.forwarded_trust, &material.client_trust)
        else {
            return Ok(None);
        };
        match trust.take(req.headers_mut(), conn.remote_addr.ip())? {
            Forwarded::Absent => Ok(None),
            Forwarded::Untrusted => {
                warn!(
                    peer = %conn.remote_addr,
                    header = %trust.format.header(),
                    "forwarded certificate header from a peer that is not a trusted proxy: ignored"
                );
                Ok(None)
            }
            Forwarded::Chain(chain) => {
                let peer = match client_trust.identify(&chain, false) {
                    Ok(client) => PeerIdentity::Verified(client),
                    Err(rejection) => PeerIdentity::Rejected(Box::new(rejection)),
                };
                Ok(Some(ConnectionInfo {
                    remote_addr: conn.remote_addr,
                    remote_label: conn.remote_label.clone(),
                    tls: conn.tls.clone(),
                    peer,
                }))
            }
        }
    }
}

fn boxed(response: Response<Body>) -> Response<ProxyBody> {
    response.map(|body| body.map_err(|never| match never {}).boxed())
}

enum HandshakeFailure {
    /// The client's certificate (or its absence) was refused.
    Client(Rejection),
    /// Anything else: protocol errors, the client hanging up, ...
    Other(String),
}

/// Classifies a failed handshake; certificate refusals get the same reason
/// codes as the 403 answers of optional mode.
fn handshake_failure(err: &io::Error, trust: Option<&ClientTrust>) -> HandshakeFailure {
    let Some(tls_error) = err
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    else {
        return HandshakeFailure::Other(err.to_string());
    };
    match (tls_error, trust) {
        (rustls::Error::NoCertificatesPresented, _) => {
            HandshakeFailure::Client(Rejection::no_certificate())
        }
        (rustls::Error::InvalidCertificate(_), Some(trust)) => {
            HandshakeFailure::Client(trust.explain(tls_error, None))
        }
        _ => HandshakeFailure::Other(tls_error.to_string()),
    }
}
