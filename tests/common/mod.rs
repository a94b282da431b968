//! Test harness: a PKI in a temporary directory, the real server on
//! 127.0.0.1:0, and real TLS clients (rustls + hyper, or the system curl).
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod raw;
pub mod upstream;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::{Request, StatusCode, Version};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mtls::config::{ClientAuthMode, ServeConfig};
use mtls::pki::{self, Authority, Issued, LeafSpec, Validity};
use mtls::server::Server;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tempfile::TempDir;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_rustls::TlsConnector;

pub const DOMAIN: &str = "api.flaskmtlsauth.com";

/// The dev PKI of `mtls pki init` plus certificates that must be rejected.
pub struct TestPki {
    pub dir: TempDir,
    pub other_ca_client: Issued,
    pub expired_client: Issued,
    pub server_auth_only_client: Issued,
}

impl TestPki {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        pki::init(&pki::InitOptions {
            dir: dir.path().to_owned(),
            domain: DOMAIN.to_owned(),
            clients: Vec::new(),
            force: false,
            p12: None,
        })
        .expect("pki init");

        let ca = authority_from(dir.path());
        let expired = LeafSpec {
            validity: Validity {
                not_before: time::OffsetDateTime::now_utc() - time::Duration::days(30),
                not_after: time::OffsetDateTime::now_utc() - time::Duration::days(1),
            },
            ..LeafSpec::client("expired")
        };
        let server_auth_only = LeafSpec {
            extended_key_usages: vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth],
            ..LeafSpec::client("server-auth-only")
        };
        let other_ca = Authority::generate("some other CA").expect("other CA");
        TestPki {
            other_ca_client: other_ca.issue(&LeafSpec::client("stranger")).unwrap(),
            expired_client: ca.issue(&expired).unwrap(),
            server_auth_only_client: ca.issue(&server_auth_only).unwrap(),
            dir,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    pub fn config(&self, mode: ClientAuthMode) -> ServeConfig {
        ServeConfig::with_pki_dir(self.dir.path(), mode)
    }

    /// The default client identity (`client.crt` / `client.key`).
    pub fn client(&self) -> Issued {
        Issued {
            cert_pem: std::fs::read_to_string(self.path("client.crt")).unwrap(),
            key_pem: std::fs::read_to_string(self.path("client.key")).unwrap(),
        }
    }

    /// Writes an identity to files, for clients that need paths (curl);
    /// the key 0600, as `mtls serve` insists.
    pub fn write(&self, stem: &str, issued: &Issued) -> (PathBuf, PathBuf) {
        let cert = self.path(&format!("{stem}.crt"));
        let key = self.path(&format!("{stem}.key"));
        std::fs::write(&cert, &issued.cert_pem).unwrap();
        write_secret(&key, issued.key_pem.as_bytes());
        (cert, key)
    }
}

/// Writes a secret file (key, ticket key, signing key) readable by its
/// owner only, as `mtls serve` requires of secrets.
pub fn write_secret(path: &Path, contents: &[u8]) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::write(path, contents).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).unwrap();
}

/// Re-creates an issuer from the CA files `pki init` wrote.
pub fn authority_from(dir: &Path) -> Authority {
    let cert = std::fs::read_to_string(dir.join("ca.crt")).unwrap();
    let key = std::fs::read_to_string(dir.join("ca.key")).unwrap();
    Authority::from_pem(&cert, &key).expect("load CA")
}

/// The real server, running on 127.0.0.1:0 until dropped.
pub struct TestServer {
    pub addr: SocketAddr,
    /// The admin endpoint, when the config turned it on.
    pub admin: Option<SocketAddr>,
    pub reloader: std::sync::Arc<mtls::reload::Reloader>,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl TestServer {
    pub async fn start(config: ServeConfig) -> Self {
        let server = Server::bind(config).await.expect("server binds");
        let addr = server.local_addr();
        let admin = server.admin_addr();
        let reloader = server.reloader();
        let (tx, rx) = oneshot::channel();
        let task = tokio::spawn(server.run(async {
            let _ = rx.await;
        }));
        TestServer {
            addr,
            admin,
            reloader,
            shutdown: Some(tx),
            task: Some(task),
        }
    }

    /// Stops accepting, lets connections finish, and waits for the server.
    pub async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(task) = self.task.take() {
            task.await.unwrap();
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// A rustls client configuration trusting the test CA.
pub struct ClientOptions {
    pub ca_pem: String,
    pub identity: Option<Issued>,
    pub alpn: Vec<Vec<u8>>,
    pub server_name: String,
    pub tls12_only: bool,
}

impl ClientOptions {
    pub fn new(pki: &TestPki) -> Self {
        ClientOptions {
            ca_pem: std::fs::read_to_string(pki.path("ca.crt")).unwrap(),
            identity: None,
            alpn: vec![b"http/1.1".to_vec()],
            server_name: DOMAIN.to_owned(),
            tls12_only: false,
        }
    }

    pub fn tls12_only(mut self) -> Self {
        self.tls12_only = true;
        self
    }

    pub fn identity(mut self, issued: Issued) -> Self {
        self.identity = Some(issued);
        self
    }

    pub fn alpn_h2(mut self) -> Self {
        self.alpn = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        self
    }

    pub fn server_name(mut self, name: &str) -> Self {
        self.server_name = name.to_owned();
        self
    }

    /// The rustls client configuration these options describe.
    pub fn rustls_config(&self) -> ClientConfig {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(self.ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let versions: &[&rustls::SupportedProtocolVersion] = if self.tls12_only {
            &[&rustls::version::TLS12]
        } else {
            rustls::DEFAULT_VERSIONS
        };
        let builder = ClientConfig::builder_with_provider(mtls::tls::provider())
            .with_protocol_versions(versions)
            .unwrap()
            .with_root_certificates(roots);
        let mut config = match &self.identity {
            Some(issued) => builder
                .with_client_auth_cert(
                    CertificateDer::pem_slice_iter(issued.cert_pem.as_bytes())
                        .map(Result::unwrap)
                        .collect(),
                    PrivateKeyDer::from_pem_slice(issued.key_pem.as_bytes()).unwrap(),
                )
                .unwrap(),
            None => builder.with_no_client_auth(),
        };
        config.alpn_protocols = self.alpn.clone();
        config
    }
}

/// What a client saw: the response, or the error that ended the exchange.
#[derive(Debug)]
pub struct Answer {
    pub status: StatusCode,
    pub version: Version,
    pub headers: hyper::HeaderMap,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).expect("JSON body")
    }
}

/// An h2 connection to `addr` with hyper's client: the sender, and the
/// connection's task (it answers pings; it ends when the server closes).
/// `stream_window`: the client's initial stream window (SETTINGS), when not
/// h2's default of 64 KiB.
pub async fn h2_connect(
    addr: SocketAddr,
    pki: &TestPki,
    stream_window: Option<u32>,
) -> (
    hyper::client::conn::http2::SendRequest<Empty<Bytes>>,
    tokio::task::JoinHandle<hyper::Result<()>>,
) {
    let options = ClientOptions::new(pki).alpn_h2();
    let connector = TlsConnector::from(Arc::new(options.rustls_config()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from(options.server_name.clone()).unwrap();
    let tls = connector.connect(name, tcp).await.unwrap();
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (sender, connection) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .initial_stream_window_size(stream_window)
        .handshake(TokioIo::new(tls))
        .await
        .unwrap();
    (sender, tokio::spawn(connection))
}

/// A GET of `path` for [`h2_connect`]'s sender.
pub fn h2_get(path: &str) -> Request<Empty<Bytes>> {
    Request::get(format!("https://{DOMAIN}{path}"))
        .body(Empty::new())
        .unwrap()
}

/// One GET over a fresh TLS connection. Errors keep their source chain, so
/// tests can find the rustls error (and the TLS alert) inside.
pub async fn get(
    addr: SocketAddr,
    options: &ClientOptions,
    path: &str,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    request(addr, options, "GET", path).await
}

pub async fn request(
    addr: SocketAddr,
    options: &ClientOptions,
    method: &str,
    path: &str,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    request_with_headers(addr, options, method, path, &[]).await
}

pub async fn request_with_headers(
    addr: SocketAddr,
    options: &ClientOptions,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    let connector = TlsConnector::from(Arc::new(options.rustls_config()));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(options.server_name.clone())?;
    let tls = connector.connect(name, tcp).await?;
    let h2 = tls.get_ref().1.alpn_protocol() == Some(b"h2");
    let io = TokioIo::new(tls);
    let mut builder = Request::builder()
        .method(method)
        .uri(format!("https://{}{path}", options.server_name));
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let request = builder.body(Empty::<Bytes>::new())?;
    let response = if h2 {
        let (mut sender, conn) =
            hyper::client::conn::http2::handshake(TokioExecutor::new(), io).await?;
        tokio::spawn(conn);
        sender.send_request(request).await?
    } else {
        let (mut sender, conn) = hyper::client::conn::http1::handshake(io).await?;
        tokio::spawn(conn);
        let mut request = request;
        *request.uri_mut() = path.parse()?;
        request
            .headers_mut()
            .insert(hyper::header::HOST, options.server_name.parse()?);
        sender.send_request(request).await?
    };
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        version,
        headers,
        body: String::from_utf8(body.to_vec())?,
    })
}

/// How long a real client with the default identity waits for `GET /`
/// (asserting it gets 200), for "still served within a second" checks.
pub async fn timed_request(server: &TestServer, pki: &TestPki) -> std::time::Duration {
    let started = std::time::Instant::now();
    let answer = get(
        server.addr,
        &ClientOptions::new(pki).identity(pki.client()),
        "/",
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    started.elapsed()
}

/// The rustls error somewhere in an error's source chain.
pub fn rustls_error<'a>(err: &'a (dyn std::error::Error + 'static)) -> Option<&'a rustls::Error> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(err);
    while let Some(err) = current {
        if let Some(tls) = err.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        if let Some(io) = err.downcast_ref::<std::io::Error>()
            && let Some(inner) = io.get_ref()
            && let Some(tls) = inner.downcast_ref::<rustls::Error>()
        {
            return Some(tls);
        }
        current = err.source();
    }
    None
}

/// The alert the server sent, found in a failed exchange.
pub fn received_alert(
    result: &Result<Answer, Box<dyn std::error::Error + Send + Sync>>,
) -> Option<rustls::AlertDescription> {
    let err = result.as_ref().err()?;
    match rustls_error(err.as_ref())? {
        rustls::Error::AlertReceived(alert) => Some(*alert),
        _ => None,
    }
}

/// The system curl, or `None` (and a note in the test output) when absent.
pub fn system_curl() -> Option<PathBuf> {
    let found = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        Some(PathBuf::from("curl"))
    } else {
        eprintln!("SKIPPED: curl is not installed; the curl part of this test did not run");
        None
    }
}

/// The system openssl, or `None` (and a note in the test output) when absent.
pub fn system_openssl() -> Option<PathBuf> {
    let found = Command::new("openssl")
        .arg("version")
        .output()
        .is_ok_and(|out| out.status.success());
    if found {
        Some(PathBuf::from("openssl"))
    } else {
        eprintln!("SKIPPED: openssl is not installed; this test did not run");
        None
    }
}

/// Environment variables `mtls` reads; cleared so the developer's own
/// environment cannot change what a test sees.
const MTLS_VARIABLES: [&str; 14] = [
    "WORKER_THREADS",
    "ADMIN_LISTEN",
    "LISTEN",
    "SERVER_CERT",
    "SERVER_KEY",
    "CLIENT_AUTH",
    "MTLS_ENABLED",
    "CLIENT_CA",
    "WELCOME_MESSAGE",
    "HANDSHAKE_TIMEOUT",
    "SHUTDOWN_TIMEOUT",
    "ENV_FILE",
    "LOG_FORMAT",
    "RUST_LOG",
];

/// The `mtls` binary, run in `dir` with a clean mtls environment.
pub fn mtls_command(dir: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_mtls"));
    command.current_dir(dir);
    for name in MTLS_VARIABLES {
        command.env_remove(name);
    }
    // Tests run in parallel: the default admin port would collide.
    command.env("ADMIN_LISTEN", "off");
    command
}

/// `mtls serve` on 127.0.0.1:0 in the test PKI's directory, with its
/// server certificate, its CA for clients and `--client-auth client_auth`.
pub fn serve_command(pki: &TestPki, client_auth: &str) -> Command {
    let mut command = mtls_command(pki.dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--client-auth"])
        .arg(client_auth)
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .env("CLIENT_CA", "ca.crt");
    command
}

/// The socket address that follows `prefix` in a log line.
fn address_after(line: &str, prefix: &str) -> SocketAddr {
    let addr: String = line
        .rsplit(prefix)
        .next()
        .unwrap()
        .chars()
        .take_while(|c| c.is_ascii_hexdigit() || matches!(c, '.' | ':' | '[' | ']'))
        .collect();
    addr.parse()
        .unwrap_or_else(|_| panic!("no address after {prefix} in {line}"))
}

/// `mtls serve` as a child process, with its log lines collected.
pub struct ServeProcess {
    pub child: std::process::Child,
    pub addr: SocketAddr,
    lines: std::sync::mpsc::Receiver<String>,
    pub log: Vec<String>,
}

impl ServeProcess {
    /// Starts `command` (an `mtls serve` with `--listen 127.0.0.1:0`) and
    /// waits for its "listening on" line; panics with the log if it exits.
    pub fn start(mut command: Command) -> Self {
        use std::io::BufRead;
        command
            .stderr(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null());
        let mut child = command.spawn().expect("spawn mtls");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut process = ServeProcess {
            child,
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            lines,
            log: Vec::new(),
        };
        let line = process.wait_for("listening on https://");
        process.addr = address_after(&line, "https://");
        process
    }

    /// The admin endpoint's address, from its start-up line.
    pub fn admin_addr(&mut self) -> SocketAddr {
        let line = self.wait_for("admin endpoint on http://");
        address_after(&line, "http://")
    }

    /// The next log line containing `needle`, within 10 seconds.
    pub fn wait_for(&mut self, needle: &str) -> String {
        if let Some(line) = self.log.iter().find(|l| l.contains(needle)) {
            return line.clone();
        }
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.log.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                }
                Err(_) => panic!(
                    "no log line with {needle:?}; log so far:\n{}",
                    self.log.join("\n")
                ),
            }
        }
    }

    /// Sends SIGTERM and returns the exit status.
    pub fn terminate(mut self) -> (std::process::ExitStatus, Vec<String>) {
        let pid = self.child.id().to_string();
        Command::new("kill").args(["-TERM", &pid]).status().unwrap();
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(2)) {
            self.log.push(line);
        }
        (status, std::mem::take(&mut self.log))
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A plain HTTP/1.0 GET (for the admin endpoint); returns the body.
pub async fn plain_get(addr: SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(format!("GET {path} HTTP/1.0\r\nHost: admin\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// A POST with `body` over HTTP/1.1, sent with a `Content-Length` when
/// `declared`, else chunked (a streamed body of unknown length).
pub async fn request_with_body(
    addr: SocketAddr,
    options: &ClientOptions,
    path: &str,
    body: Vec<u8>,
    declared: bool,
) -> Result<Answer, Box<dyn std::error::Error + Send + Sync>> {
    use http_body_util::combinators::BoxBody;
    let connector = TlsConnector::from(Arc::new(options.rustls_config()));
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from(options.server_name.clone())?;
    let tls = connector.connect(name, tcp).await?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls)).await?;
    tokio::spawn(conn);
    let body: BoxBody<Bytes, std::convert::Infallible> = if declared {
        http_body_util::Full::new(Bytes::from(body)).boxed()
    } else {
        Chunked(body.chunks(512).map(Bytes::copy_from_slice).collect()).boxed()
    };
    let request = Request::post(path)
        .header(hyper::header::HOST, options.server_name.as_str())
        .body(body)?;
    let response = sender.send_request(request).await?;
    let status = response.status();
    let version = response.version();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await?.to_bytes();
    Ok(Answer {
        status,
        version,
        headers,
        body: String::from_utf8(body.to_vec())?,
    })
}

/// A body of unknown length: hyper sends it chunked.
struct Chunked(std::collections::VecDeque<Bytes>);

impl hyper::body::Body for Chunked {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::task::Poll::Ready(self.0.pop_front().map(|b| Ok(hyper::body::Frame::data(b))))
    }
}
