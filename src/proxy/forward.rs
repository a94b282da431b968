//! Forwarding admitted requests to the upstream app: bodies streamed both
//! ways, a keep-alive pool, HTTP/1.1 upgrades (WebSocket) spliced through,
//! hop-by-hop headers removed (RFC 9110 section 7.6.1), `X-Forwarded-*` and
//! `Forwarded` set, identity headers replaced, timeouts mapped to 502/504.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Limited};
use hyper::header::{self, HeaderMap, HeaderName, HeaderValue};
use hyper::{Request, Response, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::json;
use tracing::{info, warn};

use super::identity_headers::{
    ApacheOptions, ClientCertificate, HeaderFormat, VerifyState, identity_headers,
    strip_identity_headers,
};
use super::signed_identity::{self, SigningKey};
use crate::http::json_response;
use crate::identity::{ConnectionInfo, PeerIdentity};
use crate::metrics::Metrics;
use crate::parking::RequestBody;

/// The body type of every response the server sends.
pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Where and how to forward.
#[derive(Debug, Clone)]
pub struct UpstreamSettings {
    /// `http://host:port` or `https://host:port`.
    pub url: Uri,
    /// Time to wait for the upstream's response head.
    pub timeout: Duration,
    pub formats: Vec<HeaderFormat>,
    pub apache: ApacheOptions,
    /// TLS settings for an https upstream (trust and client identity).
    pub tls: Arc<rustls::ClientConfig>,
    /// With the `signed` format: the key for `X-Client-Identity`.
    pub signing_key: Option<Arc<SigningKey>>,
    /// Largest request body forwarded; more gets `413`.
    pub max_body_bytes: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("--upstream / UPSTREAM `{0}` must be http://HOST:PORT or https://HOST:PORT (no path)")]
    BadUrl(String),
}

/// The upstream app and the pooled client that reaches it.
pub struct Upstream {
    settings: UpstreamSettings,
    metrics: Arc<Metrics>,
    client: Client<HttpsConnector<HttpConnector>, Limited<RequestBody>>,
}

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never forwarded as such.
const HOP_BY_HOP: [&str; 7] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "te",
    "transfer-encoding",
    "upgrade",
    "trailer",
];

impl Upstream {
    pub fn new(metrics: Arc<Metrics>, settings: UpstreamSettings) -> Result<Self, UpstreamError> {
        let url = &settings.url;
        let valid_scheme = matches!(url.scheme_str(), Some("http" | "https"));
        let no_path = url.path_and_query().is_none_or(|p| p.as_str() == "/");
        if !valid_scheme || url.authority().is_none() || !no_path {
            return Err(UpstreamError::BadUrl(url.to_string()));
        }
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(5)));
        http.set_nodelay(true);
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config((*settings.tls).clone())
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(60))
            .build(connector);
        Ok(Upstream {
            settings,
            metrics,
            client,
        })
    }

    pub fn url(&self) -> &Uri {
        &self.settings.url
    }

    /// Forwards one admitted request and returns the upstream's answer, or
    /// a 502/504 JSON answer when the upstream fails.
    pub async fn forward(
        &self,
        mut req: Request<RequestBody>,
        conn: &ConnectionInfo,
    ) -> Response<ProxyBody> {
        let limit = self.settings.max_body_bytes;
        let declared = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u64>().ok());
        if declared.is_some_and(|len| len > limit as u64) {
            return too_large(limit);
        }
        let spoofed = strip_identity_headers(req.headers_mut());
        if !spoofed.is_empty() {
            self.metrics.spoof_attempt();
            warn!(
                peer = %conn.remote_addr,
                headers = ?spoofed,
                "identity header spoof attempt: the client sent identity headers; removed"
            );
        }
        let upgrade = wants_upgrade(req.headers());
        let client_upgrade = upgrade.as_ref().map(|_| hyper::upgrade::on(&mut req));
        let original_authority = authority_of(&req);

        remove_hop_by_hop(req.headers_mut());
        if let Some(protocol) = &upgrade {
            req.headers_mut()
                .insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
            req.headers_mut().insert(header::UPGRADE, protocol.clone());
        }
        set_forwarded(
            req.headers_mut(),
            conn.remote_addr,
            original_authority.as_deref(),
        );
        let state = verify_state(&conn.peer);
        for (name, value) in
            identity_headers(&self.settings.formats, &self.settings.apache, &state, None)
        {
            req.headers_mut().append(name, value);
        }
        if let (Some(key), VerifyState::Success(client)) = (&self.settings.signing_key, &state)
            && let Some(leaf) = client.chain.first()
        {
            let target = req
                .uri()
                .path_and_query()
                .map(|p| p.as_str())
                .unwrap_or("/");
            if let Some((name, value)) = signed_identity::identity_header(
                key,
                client.details,
                leaf,
                req.method().as_str(),
                target,
            ) {
                req.headers_mut().insert(name, value);
            }
        }
        if let Some(authority) = &original_authority
            && !req.headers().contains_key(header::HOST)
            && let Ok(value) = HeaderValue::from_str(authority)
        {
            req.headers_mut().insert(header::HOST, value);
        }
        *req.uri_mut() = self.upstream_uri(req.uri());
        // The upstream connection decides its own HTTP version.
        *req.version_mut() = hyper::Version::HTTP_11;

        // A body without a length is cut off at the limit while streaming.
        let req = req.map(|body| Limited::new(body, limit));
        let sent = tokio::time::timeout(self.settings.timeout, self.client.request(req)).await;
        let mut response = match sent {
            Ok(Ok(response)) => response,
            Ok(Err(err)) if error_chain(&err).contains("length limit exceeded") => {
                return too_large(limit);
            }
            Ok(Err(err)) => {
                warn!(peer = %conn.remote_addr, upstream = %self.settings.url, error = %error_chain(&err), "upstream request failed");
                return gateway_error(
                    StatusCode::BAD_GATEWAY,
                    "bad gateway",
                    format!(
                        "the upstream {} could not be reached: {}",
                        self.settings.url,
                        error_chain(&err)
                    ),
                );
            }
            Err(_) => {
                warn!(peer = %conn.remote_addr, upstream = %self.settings.url, "upstream timed out");
                return gateway_error(
                    StatusCode::GATEWAY_TIMEOUT,
                    "gateway timeout",
                    format!(
                        "the upstream {} did not answer within {}s",
                        self.settings.url,
                        self.settings.timeout.as_secs_f32()
                    ),
                );
            }
        };

        if response.status() == StatusCode::SWITCHING_PROTOCOLS
            && let Some(client_upgrade) = client_upgrade
        {
            let upstream_upgrade = hyper::upgrade::on(&mut response);
            let peer = conn.remote_addr;
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, upstream_upgrade) {
                    Ok((client, upstream)) => {
                        let mut client = TokioIo::new(client);
                        let mut upstream = TokioIo::new(upstream);
                        if let Err(err) =
                            tokio::io::copy_bidirectional(&mut client, &mut upstream).await
                        {
                            info!(peer = %peer, error = %err, "upgraded connection ended");
                        }
                    }
                    Err(err) => warn!(peer = %peer, error = %err, "upgrade failed"),
                }
            });
            return response.map(|body| body.boxed());
        }
        remove_hop_by_hop(response.headers_mut());
        response.map(|body| body.boxed())
    }

    fn upstream_uri(&self, original: &Uri) -> Uri {
        let path = original.path_and_query().map(|p| p.as_str()).unwrap_or("/");
        let mut parts = self.settings.url.clone().into_parts();
        parts.path_and_query = path.parse().ok();
        Uri::from_parts(parts).unwrap_or_else(|_| self.settings.url.clone())
    }
}

/// The identity state to forward; a refused certificate only ever yields
/// "failed", never its contents.
fn verify_state(peer: &PeerIdentity) -> VerifyState<'_> {
    match peer {
        PeerIdentity::Verified(client) => match client.details() {
            Some(details) => VerifyState::Success(ClientCertificate {
                chain: &client.chain,
                details,
            }),
            None => VerifyState::None,
        },
        PeerIdentity::Rejected(rejection) => VerifyState::Failed(rejection),
        PeerIdentity::None => VerifyState::None,
    }
}

/// The protocol of an HTTP/1.1 upgrade request (`Connection: upgrade`).
fn wants_upgrade(headers: &HeaderMap) -> Option<HeaderValue> {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|token| token.trim().eq_ignore_ascii_case("upgrade"));
    if connection_upgrade {
        headers.get(header::UPGRADE).cloned()
    } else {
        None
    }
}

fn remove_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
}

/// The client's idea of the host: `Host`, or the h2 `:authority`.
fn authority_of<B>(req: &Request<B>) -> Option<String> {
    req.headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.to_string()))
}

/// We are the edge: what the client claims about earlier hops is not
/// trusted, so these are replaced, not appended to.
fn set_forwarded(headers: &mut HeaderMap, peer: SocketAddr, host: Option<&str>) {
    let ip = peer.ip();
    let for_value = match ip {
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("\"[{v6}]\""),
    };
    let mut forwarded = format!("for={for_value};proto=https");
    if let Ok(value) = HeaderValue::from_str(&ip.to_string()) {
        headers.insert(HeaderName::from_static("x-forwarded-for"), value);
    }
    headers.insert(
        HeaderName::from_static("x-forwarded-proto"),
        HeaderValue::from_static("https"),
    );
    headers.remove(HeaderName::from_static("x-forwarded-host"));
    if let Some(host) = host.filter(|h| !h.contains(['"', '\\']))
        && let Ok(value) = HeaderValue::from_str(host)
    {
        headers.insert(HeaderName::from_static("x-forwarded-host"), value);
        forwarded.push_str(&format!(";host=\"{host}\""));
    }
    if let Ok(value) = HeaderValue::from_str(&forwarded) {
        headers.insert(header::FORWARDED, value);
    }
}

fn too_large(limit: usize) -> Response<ProxyBody> {
    gateway_error(
        StatusCode::PAYLOAD_TOO_LARGE,
        "payload too large",
        format!(
            "the request body is larger than {limit} bytes (--max-body-bytes / MAX_BODY_BYTES)"
        ),
    )
}

fn gateway_error(status: StatusCode, error: &str, detail: String) -> Response<ProxyBody> {
    json_response(status, &json!({ "error": error, "detail": detail }))
        .map(|body| body.map_err(|never| match never {}).boxed())
}

/// `err` and its causes on one line.
fn error_chain(err: &(dyn std::error::Error + 'static)) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
