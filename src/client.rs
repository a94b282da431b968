//! `mtls client`: one HTTPS request, curl-like, with an optional client
//! certificate (PEM files or a PKCS#12 bundle), and every TLS failure
//! explained in one sentence.
//!
//! The server's certificate is verified with rustls' WebPKI verifier against
//! `--cacert` or the system's roots; only an explicit `-k/--insecure` skips
//! that (with [`DangerAcceptAnyServerChain`], which still checks the
//! handshake signature).

use std::fmt::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::header::{self, HeaderName, HeaderValue};
use hyper::{HeaderMap, Method, Request, StatusCode, Uri, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ResolvesClientCert, WebPkiServerVerifier};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{
    AlertDescription, CertificateError, ClientConfig, DigitallySignedStruct, InconsistentKeys,
    RootCertStore, SignatureScheme,
};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;

use crate::cert::{CertDetails, dn_der_to_rfc4514};
use crate::check::alert_name;
use crate::input;
use crate::tls::{self, danger::DangerAcceptAnyServerChain};

/// Where the client identity comes from.
#[derive(Debug, Clone)]
pub enum Identity {
    /// A certificate file (PEM chain, leaf first, or DER) and its private
    /// key (PEM: PKCS#8, SEC1 or PKCS#1; or DER).
    Files { cert: PathBuf, key: PathBuf },
    /// A PKCS#12 bundle and its password; read into memory only.
    Pkcs12 { path: PathBuf, password: String },
}

/// One request, as given on the command line.
#[derive(Debug, Clone)]
pub struct ClientRequest {
    /// `https://HOST[:PORT][/PATH][?QUERY]`.
    pub url: String,
    /// Trusted CA certificates (PEM bundle or DER); `None`: the system's roots.
    pub cacert: Option<PathBuf>,
    pub identity: Option<Identity>,
    /// `-X`; default POST with a body, else GET.
    pub method: Option<String>,
    /// `-d`: the body, or `@FILE` for a file's bytes (`@-`: standard input).
    pub data: Option<String>,
    /// `-H`: `Name: value`, repeatable.
    pub headers: Vec<String>,
    /// `-k`: do not verify the server's certificate chain or name.
    pub insecure: bool,
    /// The name sent as SNI and checked in the certificate (default: the URL's host).
    pub servername: Option<String>,
    /// `--resolve HOST:PORT:ADDR[,ADDR...]`: connect there instead of asking DNS.
    pub resolve: Vec<String>,
    /// For the whole exchange: connection, handshake, request and body.
    pub timeout: Duration,
}

/// The server's answer.
#[derive(Debug)]
pub struct Response {
    pub status: StatusCode,
    pub version: Version,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Response {
    /// A 2xx or 3xx answer.
    pub fn succeeded(&self) -> bool {
        self.status.is_success() || self.status.is_redirection()
    }

    /// `HTTP/1.1 200 OK`, `HTTP/2 200`.
    pub fn status_line(&self) -> String {
        status_line(self.version, self.status)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// Bad arguments or unusable files (exit status 2).
    #[error("{0}")]
    Usage(String),
    /// The exchange failed: no connection, a refused handshake, a broken
    /// answer or a timeout (exit status 1).
    #[error("{0}")]
    Failed(String),
}

impl ClientError {
    pub fn is_usage(&self) -> bool {
        matches!(self, ClientError::Usage(_))
    }
}

/// Makes the request. `trace` receives the `-v` lines (`*` connection
/// facts, `>` request head, `<` response head) as they happen.
pub async fn send(
    request: &ClientRequest,
    trace: &mut dyn FnMut(&str),
) -> Result<Response, ClientError> {
    let plan = Plan::new(request)?;
    let tls = TlsSetup::new(request, trace)?;
    let authority = format!("{}:{}", plan.target.host, plan.target.port);
    match tokio::time::timeout(request.timeout, exchange(&plan, &tls, trace)).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Failed(format!(
            "no answer from {authority} within {:?} (--timeout)",
            request.timeout
        ))),
    }
}

/// The URL taken apart.
#[derive(Debug)]
struct Target {
    host: String,
    port: u16,
    /// As written in the URL, for `Host` / `:authority`.
    authority: String,
    path_and_query: String,
}

/// Everything checked before the network is touched.
struct Plan {
    target: Target,
    server_name: ServerName<'static>,
    resolved: Option<Vec<IpAddr>>,
    method: Method,
    headers: HeaderMap,
    body: Bytes,
}

impl Plan {
    fn new(request: &ClientRequest) -> Result<Plan, ClientError> {
        let target = parse_url(&request.url)?;
        let name = request.servername.as_deref().unwrap_or(&target.host);
        let server_name = ServerName::try_from(name.to_owned()).map_err(|_| {
            ClientError::Usage(format!(
                "`{name}` is not a valid server name (a DNS name or an IP address){}",
                if request.servername.is_some() {
                    " (--servername)"
                } else {
                    ""
                }
            ))
        })?;
        let mut resolved = None;
        for entry in &request.resolve {
            let (host, port, addrs) = parse_resolve(entry)?;
            if resolved.is_none()
                && port == target.port
                && (host == "*" || host.eq_ignore_ascii_case(&target.host))
            {
                resolved = Some(addrs);
            }
        }
        let body = match &request.data {
            None => Bytes::new(),
            Some(data) => read_data(data)?,
        };
        let method = match &request.method {
            Some(text) => Method::from_bytes(text.as_bytes()).map_err(|_| {
                ClientError::Usage(format!("-X `{text}` is not a valid HTTP method"))
            })?,
            None if request.data.is_some() => Method::POST,
            None => Method::GET,
        };
        let mut headers = HeaderMap::new();
        for line in &request.headers {
            let (name, value) = parse_header(line)?;
            headers.append(name, value);
        }
        if !headers.contains_key(header::USER_AGENT) {
            let agent = concat!("mtls/", env!("CARGO_PKG_VERSION"));
            headers.insert(header::USER_AGENT, HeaderValue::from_static(agent));
        }
        if !headers.contains_key(header::ACCEPT) {
            headers.insert(header::ACCEPT, HeaderValue::from_static("*/*"));
        }
        if request.data.is_some() && !headers.contains_key(header::CONTENT_TYPE) {
            // What curl sends with -d.
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/x-www-form-urlencoded"),
            );
        }
        Ok(Plan {
            target,
            server_name,
            resolved,
            method,
            headers,
            body,
        })
    }
}

fn parse_url(url: &str) -> Result<Target, ClientError> {
    let usage = |why: &str| {
        ClientError::Usage(format!(
            "`{url}` {why}; write e.g. https://api.flaskmtlsauth.com:5001/"
        ))
    };
    let uri: Uri = url.parse().map_err(|_| usage("is not a URL"))?;
    match uri.scheme_str() {
        Some(scheme) if scheme.eq_ignore_ascii_case("https") => {}
        Some(_) => {
            return Err(usage(
                "is not an https:// URL (mtls client speaks HTTPS only)",
            ));
        }
        None => return Err(usage("has no scheme")),
    }
    let authority = uri.authority().ok_or_else(|| usage("has no host"))?;
    if authority.as_str().contains('@') {
        return Err(usage("has user information, which is not supported"));
    }
    let host = authority.host();
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.is_empty() {
        return Err(usage("has no host"));
    }
    Ok(Target {
        host: host.to_owned(),
        port: authority.port_u16().unwrap_or(443),
        authority: authority.as_str().to_owned(),
        path_and_query: uri
            .path_and_query()
            .map(|p| p.as_str())
            .filter(|p| !p.is_empty())
            .unwrap_or("/")
            .to_owned(),
    })
}

/// `HOST:PORT:ADDR[,ADDR...]`; IPv6 addresses may be in brackets.
pub fn parse_resolve(entry: &str) -> Result<(String, u16, Vec<IpAddr>), ClientError> {
    let usage = || {
        ClientError::Usage(format!(
            "--resolve `{entry}` is not HOST:PORT:ADDR, e.g. api.flaskmtlsauth.com:5001:127.0.0.1"
        ))
    };
    let (host, rest) = match entry.strip_prefix('[') {
        Some(bracketed) => {
            let (host, rest) = bracketed.split_once("]:").ok_or_else(usage)?;
            (host, rest)
        }
        None => entry.split_once(':').ok_or_else(usage)?,
    };
    let (port, addrs) = rest.split_once(':').ok_or_else(usage)?;
    let port: u16 = port.parse().map_err(|_| usage())?;
    let addrs = addrs
        .split(',')
        .map(|addr| {
            let addr = addr.trim();
            let addr = addr
                .strip_prefix('[')
                .and_then(|a| a.strip_suffix(']'))
                .unwrap_or(addr);
            addr.parse::<IpAddr>().map_err(|_| usage())
        })
        .collect::<Result<Vec<_>, _>>()?;
    if host.is_empty() {
        return Err(usage());
    }
    Ok((host.to_owned(), port, addrs))
}

fn parse_header(line: &str) -> Result<(HeaderName, HeaderValue), ClientError> {
    let usage = || ClientError::Usage(format!("-H `{line}` is not `Name: value`"));
    let (name, value) = line.split_once(':').ok_or_else(usage)?;
    let name = HeaderName::from_bytes(name.trim().as_bytes()).map_err(|_| usage())?;
    let value = HeaderValue::from_str(value.trim()).map_err(|_| usage())?;
    Ok((name, value))
}

fn read_data(data: &str) -> Result<Bytes, ClientError> {
    let Some(file) = data.strip_prefix('@') else {
        return Ok(Bytes::from(data.to_owned()));
    };
    input::read(Path::new(file))
        .map(Bytes::from)
        .map_err(|err| ClientError::Usage(format!("-d @{file}: {err}")))
}

/// The rustls client configuration and the probes that watch it.
struct TlsSetup {
    config: Arc<ClientConfig>,
    server_chain: Arc<ChainRecorder>,
    client_cert: Arc<ClientCertChoice>,
    /// What the server certificate was checked against, for `-v`.
    trust: String,
}

impl TlsSetup {
    fn new(request: &ClientRequest, trace: &mut dyn FnMut(&str)) -> Result<TlsSetup, ClientError> {
        let provider = tls::provider();
        let (verifier, trust): (Arc<dyn ServerCertVerifier>, String) = if request.insecure {
            let danger_verifier = Arc::new(DangerAcceptAnyServerChain::new(provider.clone()));
            (danger_verifier, "NOT verified (-k/--insecure)".to_owned())
        } else {
            let (roots, trust) = trust_roots(request.cacert.as_deref())?;
            let verifier =
                WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                    .build()
                    .map_err(|err| {
                        ClientError::Usage(format!("cannot use the trusted CAs: {err}"))
                    })?;
            (verifier, trust)
        };
        if request.insecure {
            trace("* WARNING: -k/--insecure: the server's certificate will not be verified");
        }
        let identity = match &request.identity {
            None => None,
            Some(identity) => Some(load_identity(&provider, identity)?),
        };
        let server_chain = Arc::new(ChainRecorder::new(verifier));
        let client_cert = Arc::new(ClientCertChoice {
            identity,
            outcome: Mutex::new(None),
        });
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|err| {
                ClientError::Usage(format!("cannot build the TLS configuration: {err}"))
            })?
            .dangerous()
            .with_custom_certificate_verifier(server_chain.clone())
            .with_client_cert_resolver(client_cert.clone());
        config.alpn_protocols = tls::ALPN_PROTOCOLS.iter().map(|p| p.to_vec()).collect();
        Ok(TlsSetup {
            config: Arc::new(config),
            server_chain,
            client_cert,
            trust,
        })
    }
}

/// The trust anchors: `--cacert`, or the system's roots.
fn trust_roots(cacert: Option<&Path>) -> Result<(RootCertStore, String), ClientError> {
    let mut roots = RootCertStore::empty();
    match cacert {
        Some(path) => {
            let bytes =
                input::read(path).map_err(|err| ClientError::Usage(format!("--cacert: {err}")))?;
            let certs = input::certificates(path, &bytes, &|| None)
                .map_err(|err| ClientError::Usage(format!("--cacert: {err}")))?;
            for (index, cert) in certs.into_iter().enumerate() {
                roots.add(cert).map_err(|err| {
                    ClientError::Usage(format!(
                        "--cacert `{}`: certificate #{} cannot be a trust anchor: {err}",
                        path.display(),
                        index + 1
                    ))
                })?;
            }
            let count = roots.len();
            Ok((
                roots,
                format!(
                    "--cacert {} ({count} certificate{})",
                    path.display(),
                    if count == 1 { "" } else { "s" }
                ),
            ))
        }
        None => {
            // Unreadable system certificates are skipped, as curl does.
            for cert in rustls_native_certs::load_native_certs().certs {
                let _ = roots.add(cert);
            }
            if roots.is_empty() {
                return Err(ClientError::Usage(
                    "no trusted CA certificates found on this system; pass the server's CA with --cacert FILE".to_owned(),
                ));
            }
            let count = roots.len();
            Ok((
                roots,
                format!("the system's roots ({count} CA certificates)"),
            ))
        }
    }
}

/// The client identity, checked: rustls can sign with the key and it
/// belongs to the leaf.
fn load_identity(
    provider: &rustls::crypto::CryptoProvider,
    identity: &Identity,
) -> Result<Arc<CertifiedKey>, ClientError> {
    let (chain, key) = match identity {
        Identity::Pkcs12 { path, password } => tls::client_identity_from_pkcs12(path, password)
            .map_err(|err| ClientError::Usage(format!("--p12: {err}")))?,
        Identity::Files { cert, key } => {
            let bytes =
                input::read(cert).map_err(|err| ClientError::Usage(format!("--cert: {err}")))?;
            let chain = input::certificates(cert, &bytes, &|| None)
                .map_err(|err| ClientError::Usage(format!("--cert: {err}")))?;
            (chain, read_private_key(key)?)
        }
    };
    let signing_key = provider.key_provider.load_private_key(key).map_err(|err| {
        ClientError::Usage(format!(
            "the client private key is not usable: {err}; use an ECDSA P-256/P-384, Ed25519 or RSA (2048 bits or more) key"
        ))
    })?;
    let certified = CertifiedKey::new(chain, signing_key);
    match certified.keys_match() {
        Ok(()) | Err(rustls::Error::InconsistentKeys(InconsistentKeys::Unknown)) => {
            Ok(Arc::new(certified))
        }
        Err(rustls::Error::InconsistentKeys(InconsistentKeys::KeyMismatch)) => {
            Err(ClientError::Usage(match identity {
                Identity::Files { cert, key } => format!(
                    "the private key `{}` (--key) does not match the certificate `{}` (--cert); pass the key that was generated with this certificate",
                    key.display(),
                    cert.display()
                ),
                Identity::Pkcs12 { path, .. } => format!(
                    "--p12 `{}`: the private key does not match the certificate",
                    path.display()
                ),
            }))
        }
        Err(other) => Err(ClientError::Usage(format!(
            "the client identity is not usable: {other}"
        ))),
    }
}

fn read_private_key(path: &Path) -> Result<PrivateKeyDer<'static>, ClientError> {
    input::private_key(path).map_err(ClientError::Usage)
}

/// Delegates every decision to the real verifier, and keeps the chain the
/// server presented with the verdict (for `-v`, `mtls check`, and for the
/// reason when it is rejected).
#[derive(Debug)]
pub(crate) struct ChainRecorder {
    inner: Arc<dyn ServerCertVerifier>,
    seen: Mutex<Option<ServerSeen>>,
}

/// The chain the server presented, and the verifier's verdict on it.
pub(crate) type ServerSeen = (Vec<CertificateDer<'static>>, Result<(), rustls::Error>);

impl ChainRecorder {
    pub(crate) fn new(inner: Arc<dyn ServerCertVerifier>) -> Self {
        ChainRecorder {
            inner,
            seen: Mutex::new(None),
        }
    }

    pub(crate) fn seen(&self) -> Option<ServerSeen> {
        self.seen.lock().ok().and_then(|s| s.clone())
    }

    fn chain(&self) -> Vec<CertificateDer<'static>> {
        self.seen().map(|(chain, _)| chain).unwrap_or_default()
    }
}

impl ServerCertVerifier for ChainRecorder {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.inner.verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        );
        if let Ok(mut seen) = self.seen.lock() {
            let chain = std::iter::once(end_entity)
                .chain(intermediates)
                .map(|c| c.clone().into_owned())
                .collect();
            *seen = Some((chain, verdict.as_ref().map(|_| ()).map_err(Clone::clone)));
        }
        verdict
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }

    fn requires_raw_public_keys(&self) -> bool {
        self.inner.requires_raw_public_keys()
    }

    fn root_hint_subjects(&self) -> Option<&[rustls::DistinguishedName]> {
        self.inner.root_hint_subjects()
    }
}

/// What happened when the server asked for a client certificate.
#[derive(Debug, Clone)]
struct ClientCertRequest {
    /// Whether ours was sent (an identity exists and its key can sign
    /// with a scheme the server accepts).
    sent: bool,
    /// The CA names the server said it accepts.
    acceptable_issuers: Vec<String>,
}

/// Offers the configured identity, and remembers whether the server asked.
#[derive(Debug)]
struct ClientCertChoice {
    identity: Option<Arc<CertifiedKey>>,
    outcome: Mutex<Option<ClientCertRequest>>,
}

impl ClientCertChoice {
    fn outcome(&self) -> Option<ClientCertRequest> {
        self.outcome.lock().ok().and_then(|o| o.clone())
    }
}

impl ResolvesClientCert for ClientCertChoice {
    fn resolve(
        &self,
        root_hint_subjects: &[&[u8]],
        sigschemes: &[SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        let sent = self
            .identity
            .as_ref()
            .is_some_and(|id| id.key.choose_scheme(sigschemes).is_some());
        if let Ok(mut outcome) = self.outcome.lock() {
            *outcome = Some(ClientCertRequest {
                sent,
                acceptable_issuers: root_hint_subjects
                    .iter()
                    .map(|dn| dn_der_to_rfc4514(dn))
                    .collect(),
            });
        }
        self.identity.clone()
    }

    fn has_certs(&self) -> bool {
        self.identity.is_some()
    }
}

/// A stream that remembers the first TLS error seen on it, so a failure
/// that surfaces later (an alert read by the HTTP layer) keeps its cause.
struct Watched<T> {
    inner: T,
    tls_error: Arc<Mutex<Option<rustls::Error>>>,
}

impl<T> Watched<T> {
    fn note<R>(&self, result: Poll<std::io::Result<R>>) -> Poll<std::io::Result<R>> {
        if let Poll::Ready(Err(err)) = &result
            && let Some(tls) = err
                .get_ref()
                .and_then(|e| e.downcast_ref::<rustls::Error>())
            && let Ok(mut slot) = self.tls_error.lock()
            && slot.is_none()
        {
            *slot = Some(tls.clone());
        }
        result
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for Watched<T> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_read(cx, buf);
        self.note(result)
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for Watched<T> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let result = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.note(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_flush(cx);
        self.note(result)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let result = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.note(result)
    }
}

async fn exchange(
    plan: &Plan,
    tls: &TlsSetup,
    trace: &mut dyn FnMut(&str),
) -> Result<Response, ClientError> {
    let target = &plan.target;
    let addrs: Vec<SocketAddr> = match &plan.resolved {
        Some(ips) => {
            let addrs: Vec<SocketAddr> = ips
                .iter()
                .map(|ip| SocketAddr::new(*ip, target.port))
                .collect();
            trace(&format!(
                "* Resolved {}:{} to {} (--resolve)",
                target.host,
                target.port,
                join(ips.iter().map(IpAddr::to_string))
            ));
            addrs
        }
        None => tokio::net::lookup_host((target.host.as_str(), target.port))
            .await
            .map_err(|err| ClientError::Failed(format!("cannot resolve `{}`: {err}", target.host)))?
            .collect(),
    };
    let mut tcp = None;
    let mut last_error = None;
    for addr in &addrs {
        trace(&format!("* Trying {addr}..."));
        match TcpStream::connect(addr).await {
            Ok(stream) => {
                tcp = Some((stream, *addr));
                break;
            }
            Err(err) => {
                last_error = Some(format!(
                    "cannot connect to {}:{} ({addr}): {err}",
                    target.host, target.port
                ))
            }
        }
    }
    let Some((tcp, addr)) = tcp else {
        return Err(ClientError::Failed(last_error.unwrap_or_else(|| {
            format!("`{}` resolved to no address", target.host)
        })));
    };
    trace(&format!(
        "* Connected to {} ({}) port {}",
        target.host,
        addr.ip(),
        addr.port()
    ));
    if let ServerName::DnsName(name) = &plan.server_name {
        trace(&format!("* SNI: {}", name.as_ref()));
    }

    let tls_error = Arc::new(Mutex::new(None));
    let stream = match TlsConnector::from(tls.config.clone())
        .connect(plan.server_name.clone(), tcp)
        .await
    {
        Ok(stream) => stream,
        Err(err) => {
            trace_chain(trace, &tls.server_chain.chain(), "as presented");
            return Err(ClientError::Failed(explain(&err, plan, tls)));
        }
    };
    let (_, conn) = stream.get_ref();
    let version = conn
        .protocol_version()
        .map(protocol_name)
        .unwrap_or("unknown");
    let suite = conn
        .negotiated_cipher_suite()
        .and_then(|s| s.suite().as_str())
        .unwrap_or("unknown");
    let h2 = conn.alpn_protocol() == Some(b"h2");
    let alpn = conn
        .alpn_protocol()
        .map(|p| String::from_utf8_lossy(p).into_owned())
        .unwrap_or_else(|| "none (HTTP/1.1)".to_owned());
    trace(&format!(
        "* TLS: {version}, cipher suite {suite}, ALPN {alpn}"
    ));
    let chain: Vec<CertificateDer<'static>> = conn
        .peer_certificates()
        .map(|c| c.iter().map(|c| c.clone().into_owned()).collect())
        .unwrap_or_else(|| tls.server_chain.chain());
    trace_chain(trace, &chain, &format!("checked against {}", tls.trust));
    trace(&client_cert_line(tls));

    let io = TokioIo::new(Watched {
        inner: stream,
        tls_error: tls_error.clone(),
    });
    let mut builder = Request::builder().method(plan.method.clone());
    if h2 {
        builder = builder.version(Version::HTTP_2).uri(format!(
            "https://{}{}",
            target.authority, target.path_and_query
        ));
    } else {
        builder = builder.uri(target.path_and_query.as_str());
    }
    let mut request = builder
        .body(Full::new(plan.body.clone()))
        .map_err(|err| ClientError::Usage(format!("cannot build the request: {err}")))?;
    let headers = request.headers_mut();
    if !h2 {
        let host = HeaderValue::from_str(&target.authority).map_err(|_| {
            ClientError::Usage(format!("`{}` is not a valid Host", target.authority))
        })?;
        headers.insert(header::HOST, host);
    }
    for (name, value) in &plan.headers {
        headers.append(name, value.clone());
    }
    trace(&format!(
        "> {} {} {}",
        plan.method,
        target.path_and_query,
        if h2 { "HTTP/2" } else { "HTTP/1.1" }
    ));
    if h2 {
        trace(&format!("> :authority: {}", target.authority));
    }
    for (name, value) in request.headers() {
        trace(&format!(
            "> {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    if !plan.body.is_empty() {
        trace(&format!("> ({} bytes of body)", plan.body.len()));
    }
    trace(">");

    let fail = |err: &(dyn std::error::Error + 'static), conn_err: Option<&hyper::Error>| {
        let seen = tls_error.lock().ok().and_then(|e| e.clone());
        let message = match (&seen, conn_err) {
            (Some(tls_err), _) => explain_rustls(tls_err, plan, tls),
            (None, Some(conn_err)) => explain(conn_err, plan, tls),
            (None, None) => explain(err, plan, tls),
        };
        ClientError::Failed(message)
    };
    let (response, connection) = if h2 {
        let (mut sender, connection) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io)
                .await
                .map_err(|err| fail(&err, None))?;
        let connection = tokio::spawn(connection);
        (sender.send_request(request).await, connection)
    } else {
        let (mut sender, connection) = hyper::client::conn::http1::handshake(io)
            .await
            .map_err(|err| fail(&err, None))?;
        let connection = tokio::spawn(connection);
        (sender.send_request(request).await, connection)
    };
    let response = match response {
        Ok(response) => response,
        Err(err) => {
            // The connection task often holds the real cause.
            let conn_err = match tokio::time::timeout(Duration::from_secs(1), connection).await {
                Ok(Ok(Err(conn_err))) => Some(conn_err),
                _ => None,
            };
            return Err(fail(&err, conn_err.as_ref()));
        }
    };
    let status = response.status();
    let version = response.version();
    trace(&format!("< {}", status_line(version, status)));
    for (name, value) in response.headers() {
        trace(&format!(
            "< {name}: {}",
            String::from_utf8_lossy(value.as_bytes())
        ));
    }
    trace("<");
    let headers = response.headers().clone();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|err| fail(&err, None))?
        .to_bytes();
    Ok(Response {
        status,
        version,
        headers,
        body,
    })
}

fn trace_chain(trace: &mut dyn FnMut(&str), chain: &[CertificateDer<'_>], how: &str) {
    if chain.is_empty() {
        return;
    }
    trace(&format!("* Server certificate chain ({how}):"));
    for (depth, der) in chain.iter().enumerate() {
        match CertDetails::from_der(der) {
            Ok(details) => {
                trace(&format!(
                    "*  {depth} subject:   {}",
                    details.subject.rfc4514
                ));
                trace(&format!("*    issuer:    {}", details.issuer.rfc4514));
                trace(&format!(
                    "*    not after: {} ({})",
                    details.not_after,
                    if details.valid_now {
                        format!("expires in {} days", details.expires_in_days)
                    } else {
                        "not valid now".to_owned()
                    }
                ));
            }
            Err(err) => trace(&format!("*  {depth} (undecodable: {err})")),
        }
    }
}

fn client_cert_line(tls: &TlsSetup) -> String {
    let leaf_subject = || {
        tls.client_cert
            .identity
            .as_ref()
            .and_then(|id| id.cert.first())
            .and_then(|der| CertDetails::from_der(der).ok())
            .map(|d| d.subject.rfc4514)
            .unwrap_or_else(|| "(undecodable)".to_owned())
    };
    match tls.client_cert.outcome() {
        None if tls.client_cert.identity.is_some() => format!(
            "* Client certificate: not sent (the server did not ask for one; {} was ready)",
            leaf_subject()
        ),
        None => "* Client certificate: not sent (the server did not ask for one)".to_owned(),
        Some(request) => {
            let mut line = if request.sent {
                format!(
                    "* Client certificate: sent {} (the server asked for one)",
                    leaf_subject()
                )
            } else if tls.client_cert.identity.is_some() {
                "* Client certificate: NOT sent: the server asked for one, but the key cannot sign with any scheme it accepts".to_owned()
            } else {
                "* Client certificate: none sent (the server asked for one; pass --cert/--key or --p12)".to_owned()
            };
            if !request.acceptable_issuers.is_empty() {
                let _ = write!(
                    line,
                    "; it accepts certificates issued by: {}",
                    request.acceptable_issuers.join("; ")
                );
            }
            line
        }
    }
}

/// One sentence for a failed exchange, from the TLS error inside it if any.
fn explain(err: &(dyn std::error::Error + 'static), plan: &Plan, tls: &TlsSetup) -> String {
    if let Some(tls_err) = find_rustls_error(err) {
        return explain_rustls(tls_err, plan, tls);
    }
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            let _ = write!(text, ": {cause_text}");
        }
        source = cause.source();
    }
    format!(
        "the exchange with {}:{} failed: {text}",
        plan.target.host, plan.target.port
    )
}

fn find_rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(tls) = io.get_ref().and_then(|e| e.downcast_ref::<rustls::Error>())
        {
            return Some(tls);
        }
        current = err.source();
    }
    None
}

fn explain_rustls(err: &rustls::Error, plan: &Plan, tls: &TlsSetup) -> String {
    let server = format!("{}:{}", plan.target.host, plan.target.port);
    match err {
        rustls::Error::InvalidCertificate(cert_err) => {
            let chain = tls.server_chain.chain();
            let reason = match chain.first() {
                Some(leaf) => crate::verify::reason(err, leaf),
                None => err.to_string(),
            };
            let hint = match cert_err {
                CertificateError::UnknownIssuer => {
                    " (with --cacert FILE; -k/--insecure skips verification, for testing only)"
                }
                CertificateError::NotValidForName
                | CertificateError::NotValidForNameContext { .. } => {
                    " (connect with a name the certificate lists, using --resolve HOST:PORT:ADDR or --servername NAME)"
                }
                _ => "",
            };
            format!("the server certificate of {server} was rejected: {reason}{hint}")
        }
        rustls::Error::AlertReceived(alert) => explain_alert(*alert, &server, tls),
        other => format!("TLS with {server} failed: {other}"),
    }
}

const HOW_TO_SEND: &str = "pass one with --cert FILE --key FILE, or --p12 FILE --password-env VAR";

fn explain_alert(alert: AlertDescription, server: &str, tls: &TlsSetup) -> String {
    let name = alert_name(alert);
    let request = tls.client_cert.outcome();
    let have_identity = tls.client_cert.identity.is_some();
    let accepted = request
        .as_ref()
        .filter(|r| !r.acceptable_issuers.is_empty())
        .map(|r| {
            format!(
                " (it accepts certificates issued by: {})",
                r.acceptable_issuers.join("; ")
            )
        })
        .unwrap_or_default();
    match alert {
        AlertDescription::CertificateRequired if have_identity => format!(
            "{server} requires a client certificate and ours was not sent (TLS alert {name}): its key cannot sign with any scheme the server accepts"
        ),
        AlertDescription::CertificateRequired => {
            format!("{server} requires a client certificate (TLS alert {name}); {HOW_TO_SEND}")
        }
        AlertDescription::HandshakeFailure if request.as_ref().is_some_and(|r| !r.sent) => {
            format!(
                "{server} ended the handshake (TLS alert {name}) after asking for a client certificate that was not sent; it probably requires one: {HOW_TO_SEND}"
            )
        }
        AlertDescription::UnknownCA => format!(
            "{server} does not trust the issuer of our client certificate (TLS alert {name}){accepted}; use a certificate from a CA the server trusts"
        ),
        AlertDescription::CertificateExpired => format!(
            "{server} refused our client certificate as expired or not yet valid (TLS alert {name}); renew it"
        ),
        AlertDescription::CertificateRevoked => {
            format!("{server} refused our client certificate: it is revoked (TLS alert {name})")
        }
        AlertDescription::UnsupportedCertificate => format!(
            "{server} refused our client certificate (TLS alert {name}); it probably lacks the clientAuth extended key usage"
        ),
        AlertDescription::BadCertificate => format!(
            "{server} refused our client certificate as malformed or unacceptable (TLS alert {name})"
        ),
        AlertDescription::AccessDenied => format!(
            "{server} verified our client certificate but its policy does not admit it (TLS alert {name})"
        ),
        AlertDescription::ProtocolVersion => format!(
            "{server} has no TLS version in common with us (TLS alert {name}); mtls client speaks TLS 1.2 and 1.3"
        ),
        AlertDescription::NoApplicationProtocol => {
            format!("{server} speaks neither h2 nor http/1.1 (TLS alert {name})")
        }
        AlertDescription::UnrecognisedName => format!(
            "{server} does not serve this name (TLS alert {name}); check the URL or --servername"
        ),
        _ => format!("{server} ended the TLS connection with the alert {name}"),
    }
}

fn protocol_name(version: rustls::ProtocolVersion) -> &'static str {
    match version {
        rustls::ProtocolVersion::TLSv1_3 => "TLSv1.3",
        rustls::ProtocolVersion::TLSv1_2 => "TLSv1.2",
        _ => "unknown",
    }
}

fn status_line(version: Version, status: StatusCode) -> String {
    let version = match version {
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_10 => "HTTP/1.0",
        _ => "HTTP/1.1",
    };
    match (version, status.canonical_reason()) {
        ("HTTP/2", _) | (_, None) => format!("{version} {}", status.as_u16()),
        (_, Some(reason)) => format!("{version} {} {reason}", status.as_u16()),
    }
}

fn join(items: impl Iterator<Item = String>) -> String {
    items.collect::<Vec<_>>().join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_taken_apart() {
        let t = parse_url("https://api.flaskmtlsauth.com:5001/cert?x=1").unwrap();
        assert_eq!(
            (
                t.host.as_str(),
                t.port,
                t.authority.as_str(),
                t.path_and_query.as_str()
            ),
            (
                "api.flaskmtlsauth.com",
                5001,
                "api.flaskmtlsauth.com:5001",
                "/cert?x=1"
            )
        );
        let t = parse_url("https://[::1]").unwrap();
        assert_eq!(
            (t.host.as_str(), t.port, t.path_and_query.as_str()),
            ("::1", 443, "/")
        );
        for bad in ["http://x/", "x:5001", "not a url", "https:///path"] {
            assert!(parse_url(bad).unwrap_err().is_usage(), "{bad}");
        }
    }

    #[test]
    fn resolve_entries_parse_like_curl() {
        let (host, port, addrs) = parse_resolve("api.flaskmtlsauth.com:5001:127.0.0.1").unwrap();
        assert_eq!((host.as_str(), port), ("api.flaskmtlsauth.com", 5001));
        assert_eq!(addrs, vec!["127.0.0.1".parse::<IpAddr>().unwrap()]);
        let (_, _, addrs) = parse_resolve("h:443:[::1],10.0.0.1").unwrap();
        assert_eq!(addrs.len(), 2);
        for bad in ["h:443", "h:port:127.0.0.1", "h:443:nope", ":443:127.0.0.1"] {
            assert!(parse_resolve(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn headers_need_a_colon() {
        let (name, value) = parse_header("X-Test:  yes ").unwrap();
        assert_eq!((name.as_str(), value.to_str().unwrap()), ("x-test", "yes"));
        assert!(parse_header("no colon").is_err());
        assert!(parse_header("bad name: x").is_err());
    }
}
