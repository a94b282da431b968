//! The admin endpoint: plain HTTP on a private address (loopback by
//! default), apart from the public mTLS port, so probes and Prometheus need
//! no certificate.
//! `mtls health` is its client, for container health checks.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Full};
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tracing::{debug, warn};

use crate::audit::Audit;
use crate::http::{Body, json_response};
use crate::metrics::Metrics;

/// Default address of the admin endpoint.
pub const DEFAULT_ADMIN_LISTEN: &str = "127.0.0.1:9090";

/// Parses `--admin-listen`: an address, or `off`.
pub fn parse_admin_listen(text: &str) -> Result<Option<SocketAddr>, String> {
    if text.eq_ignore_ascii_case("off") {
        return Ok(None);
    }
    text.parse().map(Some).map_err(|_| {
        format!("`{text}` is not an address; write e.g. 127.0.0.1:9090, or off to disable")
    })
}

/// Serves `/healthz`, `/readyz` and `/metrics` on `listener` until
/// `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    metrics: Arc<Metrics>,
    audit: Arc<Audit>,
    shutdown: impl Future<Output = ()>,
) {
    let mut http = auto::Builder::new(TokioExecutor::new());
    http.http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(10));
    let graceful = GracefulShutdown::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((tcp, _)) => {
                    let metrics = metrics.clone();
                    let audit = audit.clone();
                    let conn = http.serve_connection(TokioIo::new(tcp), service_fn(move |req| {
                        let response = route(&req, &metrics, &audit);
                        async move { Ok::<_, Infallible>(response) }
                    }));
                    let watched = graceful.watch(conn.into_owned());
                    tokio::spawn(async move {
                        if let Err(err) = watched.await {
                            debug!(error = %err, "admin connection ended with an error");
                        }
                    });
                }
                Err(err) => {
                    warn!(error = %err, "admin accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            },
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let _ = tokio::time::timeout(Duration::from_secs(1), graceful.shutdown()).await;
}

fn route<B>(req: &Request<B>, metrics: &Metrics, audit: &Audit) -> Response<Body> {
    match req.uri().path() {
        "/failures" => json_response(StatusCode::OK, &json!({ "failures": audit.failures() })),
        "/clients" => json_response(StatusCode::OK, &json!({ "clients": audit.clients() })),
        "/metrics" => {
            let mut response = Response::new(Full::new(Bytes::from(metrics.encode())));
            response.headers_mut().insert(
                hyper::header::CONTENT_TYPE,
                hyper::header::HeaderValue::from_static(
                    "application/openmetrics-text; version=1.0.0; charset=utf-8",
                ),
            );
            response
        }
        "/healthz" => json_response(StatusCode::OK, &json!({ "status": "ok" })),
        "/readyz" => json_response(StatusCode::OK, &json!({ "status": "ready" })),
        path => json_response(
            StatusCode::NOT_FOUND,
            &json!({ "error": "not found", "path": path }),
        ),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error(
        "cannot connect to the admin endpoint {addr}: {cause}; is `mtls serve` running with --admin-listen {addr}?"
    )]
    Connect { addr: SocketAddr, cause: String },
    #[error("no answer from the admin endpoint {addr} within {secs}s")]
    Timeout { addr: SocketAddr, secs: f32 },
    #[error("the admin endpoint {addr} answered {status}: {body}")]
    Unhealthy {
        addr: SocketAddr,
        status: StatusCode,
        body: String,
    },
}

/// Asks the admin endpoint at `addr` for `/healthz`; returns its body.
pub async fn probe(addr: SocketAddr, timeout: Duration) -> Result<String, ProbeError> {
    let addr = loopback_for_unspecified(addr);
    tokio::time::timeout(timeout, probe_once(addr))
        .await
        .unwrap_or(Err(ProbeError::Timeout {
            addr,
            secs: timeout.as_secs_f32(),
        }))
}

async fn probe_once(addr: SocketAddr) -> Result<String, ProbeError> {
    let connect = |cause: String| ProbeError::Connect { addr, cause };
    let tcp = TcpStream::connect(addr)
        .await
        .map_err(|err| connect(err.to_string()))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|err| connect(err.to_string()))?;
    tokio::spawn(conn);
    let request = Request::get("/healthz")
        .header(hyper::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .map_err(|err| connect(err.to_string()))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|err| connect(err.to_string()))?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_owned())
        .unwrap_or_default();
    if status == StatusCode::OK {
        Ok(body)
    } else {
        Err(ProbeError::Unhealthy { addr, status, body })
    }
}

/// A server listening on 0.0.0.0 or [::] is reached on loopback.
fn loopback_for_unspecified(addr: SocketAddr) -> SocketAddr {
    match addr {
        SocketAddr::V4(v4) if v4.ip().is_unspecified() => {
            SocketAddr::from(([127, 0, 0, 1], v4.port()))
        }
        SocketAddr::V6(v6) if v6.ip().is_unspecified() => {
            SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, v6.port()))
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_listen_accepts_addresses_and_off() {
        assert_eq!(parse_admin_listen("off"), Ok(None));
        assert_eq!(parse_admin_listen("OFF"), Ok(None));
        assert_eq!(
            parse_admin_listen("127.0.0.1:9090"),
            Ok(Some(SocketAddr::from(([127, 0, 0, 1], 9090))))
        );
        assert!(parse_admin_listen("localhost").is_err());
    }
}
