//! `mtls serve --upstream`: forwarding to a real upstream app, identity
//! headers, anti-spoofing, streaming, upgrades, 502/504.

mod common;

use std::time::Duration;

use base64::Engine;
use common::upstream::{EchoUpstream, received};
use common::{
    ClientOptions, ServeProcess, TestPki, TestServer, get, h2_connect, h2_get, mtls_command,
    request_with_headers,
};
use hyper::StatusCode;
use mtls::cert::CertDetails;
use mtls::config::{ClientAuthMode, ServeConfig, UpstreamConfig};
use mtls::proxy::identity_headers::{ApacheOptions, HeaderFormat};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn proxied(pki: &TestPki, mode: ClientAuthMode, upstream: &str, formats: &str) -> ServeConfig {
    let mut config = pki.config(mode);
    config.upstream = Some(UpstreamConfig {
        url: upstream.parse().unwrap(),
        timeout: Duration::from_secs(5),
        formats: HeaderFormat::parse_list(formats).unwrap(),
        apache: ApacheOptions::default(),
        ca: None,
        identity: None,
        signing_key_file: None,
        max_body_bytes: 1 << 30,
    });
    config
}

/// `mtls serve --upstream` as a child process, with the test PKI's server
/// certificate and client auth off.
fn serve_proxied(pki: &TestPki, upstream: &EchoUpstream) -> ServeProcess {
    let mut command = mtls_command(pki.dir.path());
    command
        .args(["serve", "--listen", "127.0.0.1:0", "--upstream"])
        .arg(upstream.url())
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key");
    ServeProcess::start(command)
}

fn client_der(pki: &TestPki) -> CertificateDer<'static> {
    CertificateDer::from_pem_slice(pki.client().cert_pem.as_bytes()).unwrap()
}

/// Headers a client might send to impersonate someone, in every spelling.
const SPOOFED: [(&str, &str); 8] = [
    ("SSL_CLIENT_S_DN", "CN=admin"),
    ("ssl-client-verify", "SUCCESS"),
    ("X-ARR-ClientCert", "ZXZpbA=="),
    ("x-forwarded-client-cert", "Hash=evil"),
    ("X-SSL-Client-S-DN", "CN=admin"),
    ("X-Forwarded-Tls-Client-Cert", "evil"),
    ("X-Client-Identity", "evil"),
    ("X-Forwarded-For", "6.6.6.6"),
];

#[tokio::test]
async fn forwards_with_identity_headers_in_every_format_and_strips_spoofed_ones() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let config = proxied(
        &pki,
        ClientAuthMode::Required,
        &upstream.url(),
        "apache,azure,xfcc,nginx,traefik",
    );
    let server = TestServer::start(config).await;

    let options = ClientOptions::new(&pki).identity(pki.client());
    let answer = request_with_headers(server.addr, &options, "POST", "/api/items?x=1", &SPOOFED)
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let echo = answer.json();
    assert_eq!(echo["method"], "POST");
    assert_eq!(echo["path"], "/api/items");
    assert_eq!(echo["query"], "x=1");

    let details = CertDetails::from_der(&client_der(&pki)).unwrap();
    let der_b64 = base64::engine::general_purpose::STANDARD.encode(client_der(&pki));
    assert_eq!(received(&echo, "ssl-client-s-dn"), ["CN=client"]);
    assert_eq!(received(&echo, "ssl-client-verify"), ["SUCCESS"]);
    assert_eq!(received(&echo, "ssl-client-s-dn-cn"), ["client"]);
    assert_eq!(received(&echo, "x-arr-clientcert"), [der_b64.as_str()]);
    assert_eq!(received(&echo, "x-ssl-client-verify"), ["SUCCESS"]);
    assert_eq!(received(&echo, "x-ssl-client-s-dn"), ["CN=client"]);
    assert_eq!(
        received(&echo, "x-ssl-client-fingerprint"),
        [details.fingerprints.sha1.to_lowercase().as_str()]
    );
    let xfcc = received(&echo, "x-forwarded-client-cert");
    assert_eq!(xfcc.len(), 1, "{xfcc:?}");
    assert!(
        xfcc[0].starts_with(&format!(
            "Hash={};Cert=",
            details.fingerprints.sha256.to_lowercase()
        )),
        "{}",
        xfcc[0]
    );
    assert!(xfcc[0].contains("Subject=\"CN=client\""), "{}", xfcc[0]);
    assert_eq!(received(&echo, "x-forwarded-tls-client-cert").len(), 1);

    // Nothing the client sent about identity reached the app.
    let all = echo["headers"].to_string();
    for (_, value) in SPOOFED.iter().filter(|(_, v)| *v != "SUCCESS") {
        assert!(
            !all.contains(value),
            "spoofed value {value} reached the upstream: {all}"
        );
    }
    assert!(received(&echo, "ssl_client_s_dn").is_empty());
    assert!(received(&echo, "x-client-identity").is_empty());

    // The edge sets the forwarding headers.
    assert_eq!(received(&echo, "x-forwarded-for"), ["127.0.0.1"]);
    assert_eq!(received(&echo, "x-forwarded-proto"), ["https"]);
    assert_eq!(received(&echo, "x-forwarded-host"), [common::DOMAIN]);
    assert_eq!(
        received(&echo, "forwarded"),
        [format!("for=127.0.0.1;proto=https;host=\"{}\"", common::DOMAIN).as_str()]
    );
    assert_eq!(received(&echo, "host"), [common::DOMAIN]);
}

#[tokio::test]
async fn h2_clients_are_forwarded_too() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let server = TestServer::start(proxied(
        &pki,
        ClientAuthMode::Required,
        &upstream.url(),
        "azure",
    ))
    .await;
    let options = ClientOptions::new(&pki).identity(pki.client()).alpn_h2();
    let answer = get(server.addr, &options, "/x").await.unwrap();
    assert_eq!(answer.version, hyper::Version::HTTP_2);
    let echo = answer.json();
    assert_eq!(echo["path"], "/x");
    assert_eq!(received(&echo, "host"), [common::DOMAIN]);
    assert_eq!(received(&echo, "x-arr-clientcert").len(), 1);
}

#[tokio::test]
async fn refused_clients_never_reach_the_upstream_and_public_paths_say_failed() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let server = TestServer::start(proxied(
        &pki,
        ClientAuthMode::Optional,
        &upstream.url(),
        "apache,nginx,azure",
    ))
    .await;

    let expired = ClientOptions::new(&pki).identity(pki.expired_client.clone());
    let refused = get(server.addr, &expired, "/app").await.unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["reason"], "expired");

    // A public path is forwarded, with the failure and no certificate data.
    let health = get(server.addr, &expired, "/healthz").await.unwrap();
    let echo = health.json();
    assert_eq!(echo["path"], "/healthz");
    assert_eq!(received(&echo, "ssl-client-verify"), ["FAILED:expired"]);
    assert_eq!(received(&echo, "x-ssl-client-verify"), ["FAILED:expired"]);
    assert!(received(&echo, "ssl-client-s-dn").is_empty());
    assert!(received(&echo, "x-arr-clientcert").is_empty());

    let anonymous = get(server.addr, &ClientOptions::new(&pki), "/healthz")
        .await
        .unwrap();
    assert_eq!(received(&anonymous.json(), "ssl-client-verify"), ["NONE"]);
}

#[tokio::test]
async fn upstream_down_is_502_and_slow_is_504() {
    let pki = TestPki::new();
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}", closed.local_addr().unwrap());
    drop(closed);
    let server = TestServer::start(proxied(&pki, ClientAuthMode::Off, &dead, "")).await;
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_GATEWAY);
    assert_eq!(answer.json()["error"], "bad gateway");
    assert!(
        answer.json()["detail"]
            .as_str()
            .unwrap()
            .contains("could not be reached"),
        "{}",
        answer.body
    );

    let upstream = EchoUpstream::start().await;
    let mut config = proxied(&pki, ClientAuthMode::Off, &upstream.url(), "");
    config.upstream.as_mut().unwrap().timeout = Duration::from_millis(300);
    let server = TestServer::start(config).await;
    let started = std::time::Instant::now();
    let answer = get(server.addr, &ClientOptions::new(&pki), "/slow")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::GATEWAY_TIMEOUT);
    assert_eq!(answer.json()["error"], "gateway timeout");
    assert!(started.elapsed() < Duration::from_secs(2));
}

/// A client that stops reading a proxied answer is disconnected after
/// `--send-timeout` instead of holding its connection, and the upstream's,
/// for ever.
#[tokio::test]
async fn a_client_that_stops_reading_is_closed_after_the_send_timeout() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut config = proxied(&pki, ClientAuthMode::Off, &upstream.url(), "");
    config.limits.send_timeout = Duration::from_millis(500);
    let server = TestServer::start(config).await;
    let mut tls = common::raw::connect(&server, &pki).await;
    tls.write_all(b"GET /big HTTP/1.1\r\nHost: api.flaskmtlsauth.com\r\n\r\n")
        .await
        .unwrap();
    // Reads nothing for four send timeouts: the buffers on the way fill up
    // and the server cannot write.
    tokio::time::sleep(Duration::from_secs(2)).await;
    // The upstream's answer was dropped with the connection.
    assert_eq!(
        upstream.open_connections(),
        0,
        "the upstream is still sending"
    );

    // Then what was buffered arrives, and the end of the connection.
    let mut received = 0;
    let mut buf = vec![0u8; 1 << 16];
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Ok(n @ 1..) = tls.read(&mut buf).await {
            received += n;
        }
    })
    .await;
    assert!(ended.is_ok(), "still open after {received} bytes");
    assert!(
        received < common::upstream::BIG,
        "the whole answer arrived ({received} bytes)"
    );
}

/// A proxied request whose client hangs up before the upstream answers is
/// logged with status 499, as nginx does; an answered one with its status.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_hangs_up_before_the_answer_is_logged_as_499() {
    use tokio::io::AsyncWriteExt;
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut server = serve_proxied(&pki, &upstream);
    server.wait_for("forwarding to");

    let answered = get(server.addr, &ClientOptions::new(&pki), "/answered")
        .await
        .unwrap();
    assert_eq!(answered.status, StatusCode::OK);
    let line = server.wait_for("path=\"/answered\"");
    assert!(line.contains("status=200"), "{line}");

    // The upstream takes 3 s on /slow; the client leaves after 300 ms.
    let mut tls = common::raw::connect_to(server.addr, &pki).await;
    tls.write_all(b"GET /slow HTTP/1.1\r\nHost: api.flaskmtlsauth.com\r\n\r\n")
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    drop(tls);
    let line = server.wait_for("path=\"/slow\"");
    assert!(line.contains("status=499"), "{line}");
    let duration_us: u64 = line
        .rsplit("duration_us=")
        .next()
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|number| number.parse().ok())
        .unwrap_or_else(|| panic!("no duration in {line}"));
    assert!(duration_us < 3_000_000, "{line}");

    // An h2 client that gives up on its stream.
    let h2 = ClientOptions::new(&pki).alpn_h2();
    let gave_up = tokio::time::timeout(
        Duration::from_millis(300),
        get(server.addr, &h2, "/slow-h2"),
    )
    .await;
    assert!(gave_up.is_err(), "answered: {gave_up:?}");
    let line = server.wait_for("path=\"/slow-h2\"");
    assert!(
        line.contains("status=499") && line.contains("version=HTTP/2.0"),
        "{line}"
    );
}

#[tokio::test]
async fn websocket_upgrades_are_spliced_through() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let server = TestServer::start(proxied(&pki, ClientAuthMode::Off, &upstream.url(), "")).await;

    let config = rustls::ClientConfig::builder_with_provider(mtls::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates({
            let mut roots = rustls::RootCertStore::empty();
            roots
                .add(CertificateDer::from_pem_file(pki.path("ca.crt")).unwrap())
                .unwrap();
            roots
        })
        .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(server.addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(std::sync::Arc::new(config))
        .connect(common::DOMAIN.try_into().unwrap(), tcp)
        .await
        .unwrap();
    tls.write_all(
        b"GET /ws HTTP/1.1\r\nHost: api.flaskmtlsauth.com\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\r\n",
    )
    .await
    .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = tls.read(&mut buf).await.unwrap();
    let head = String::from_utf8_lossy(&buf[..n]);
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains("upgrade: websocket"),
        "{head}"
    );

    tls.write_all(b"hello through the tunnel").await.unwrap();
    let mut echoed = vec![0u8; 24];
    tokio::time::timeout(Duration::from_secs(5), tls.read_exact(&mut echoed))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&echoed, b"hello through the tunnel");
}

/// 100 MB through the proxy with the server's peak memory far below that.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_100_mb_upload_streams_with_bounded_memory() {
    if common::system_curl().is_none() {
        return;
    }
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut server = serve_proxied(&pki, &upstream);
    server.wait_for("forwarding to");
    let port = server.addr.port();
    let pid = server.child.id();

    const SIZE: u64 = 100 * 1024 * 1024;
    let file = pki.path("big.bin");
    let f = std::fs::File::create(&file).unwrap();
    f.set_len(SIZE).unwrap();
    let dir = pki.dir.path().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        std::process::Command::new("curl")
            .current_dir(dir)
            .args([
                "-sS",
                "--max-time",
                "60",
                "--cacert",
                "ca.crt",
                "-H",
                "Expect:",
                "--data-binary",
                "@big.bin",
            ])
            .arg("--resolve")
            .arg(format!("{}:{port}:127.0.0.1", common::DOMAIN))
            .arg(format!("https://{}:{port}/upload", common::DOMAIN))
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let echo: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(echo["body_len"], SIZE);

    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let peak_kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap();
    assert!(
        peak_kb < 64 * 1024,
        "peak RSS {peak_kb} kB: the body was buffered"
    );
}

#[test]
fn forward_formats_need_an_upstream_and_known_names() {
    let pki = TestPki::new();
    let run = |args: &[&str]| {
        mtls_command(pki.dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("SERVER_CERT", "server.crt")
            .env("SERVER_KEY", "server.key")
            .output()
            .unwrap()
    };
    let out = run(&["--forward-client-cert", "apache"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("there is no --upstream"));
    let out = run(&[
        "--upstream",
        "http://127.0.0.1:9",
        "--forward-client-cert",
        "apache,bogus",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("bogus"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = run(&["--upstream", "ftp://x:1/path"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("must be http://HOST:PORT"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn a_spoof_attempt_is_logged_with_the_peer() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut server = serve_proxied(&pki, &upstream);
    let options = ClientOptions::new(&pki);
    let answer = request_with_headers(
        server.addr,
        &options,
        "GET",
        "/",
        &[("SSL_CLIENT_S_DN", "CN=admin")],
    )
    .await
    .unwrap();
    assert!(received(&answer.json(), "ssl_client_s_dn").is_empty());
    let line = server.wait_for("identity header spoof attempt");
    assert!(line.contains("peer=127.0.0.1:"), "{line}");
    assert!(
        line.to_ascii_lowercase().contains("ssl_client_s_dn"),
        "{line}"
    );
}

/// Outbound mTLS: the upstream is another `mtls serve` that requires a
/// client certificate; the proxy presents its own.
#[tokio::test]
async fn an_mtls_upstream_accepts_the_proxys_client_identity() {
    let pki = TestPki::new();
    let backend = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let backend_url = format!("https://127.0.0.1:{}", backend.addr.port());

    let mut without_identity = proxied(&pki, ClientAuthMode::Off, &backend_url, "");
    without_identity.upstream.as_mut().unwrap().ca = Some(pki.path("ca.crt"));
    let proxy = TestServer::start(without_identity).await;
    let refused = get(proxy.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(refused.status, StatusCode::BAD_GATEWAY, "{}", refused.body);

    let mut with_identity = proxied(&pki, ClientAuthMode::Off, &backend_url, "");
    let upstream = with_identity.upstream.as_mut().unwrap();
    upstream.ca = Some(pki.path("ca.crt"));
    upstream.identity = Some(mtls::tls::UpstreamIdentity::Files {
        cert: pki.path("client.crt"),
        key: pki.path("client.key"),
    });
    let proxy = TestServer::start(with_identity).await;
    let answer = get(proxy.addr, &ClientOptions::new(&pki), "/whoami")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["identity"]["common_name"], "client");
}

/// The Apache demo's Flask app, unchanged, behind mtls: it reads
/// `HTTP_SSL_CLIENT_S_DN` and splits the legacy DN on `/` to greet the CN.
const FLASK_APP: &str = r#"
import sys
from flask import Flask, request
from werkzeug.serving import make_server

app = Flask(__name__)

@app.route("/")
def hello():
    dn = request.environ.get("HTTP_SSL_CLIENT_S_DN")
    if not dn:
        return "no client certificate", 403
    cn = [part.split("=", 1)[1] for part in dn.split("/") if part.startswith("CN=")][0]
    return f"Hello {cn}!"

server = make_server("127.0.0.1", 0, app)
print(server.server_port, flush=True)
server.serve_forever()
"#;

#[tokio::test]
async fn the_apache_demo_flask_app_greets_the_client() {
    let has_flask = std::process::Command::new("python3")
        .args(["-c", "import flask"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_flask {
        eprintln!(
            "SKIPPED: Flask is not installed (pip install flask); the Flask test did not run"
        );
        return;
    }
    let pki = TestPki::new();
    std::fs::write(pki.path("app.py"), FLASK_APP).unwrap();
    let mut flask = std::process::Command::new("python3")
        .arg(pki.path("app.py"))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut port = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(flask.stdout.take().unwrap()),
        &mut port,
    )
    .unwrap();
    let upstream = format!("http://127.0.0.1:{}", port.trim());

    let mut config = proxied(&pki, ClientAuthMode::Required, &upstream, "apache");
    config.upstream.as_mut().unwrap().apache.legacy_dn = true;
    let server = TestServer::start(config).await;
    let answer = get(
        server.addr,
        &ClientOptions::new(&pki).identity(pki.client()),
        "/",
    )
    .await;
    let _ = flask.kill();
    let _ = flask.wait();
    let answer = answer.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.body, "Hello client!");
}

#[tokio::test]
async fn the_signed_identity_verifies_with_the_shared_key_in_rust_and_pyjwt() {
    let pki = TestPki::new();
    let key: Vec<u8> = (0u8..32)
        .map(|i| i.wrapping_mul(37).wrapping_add(11))
        .collect();
    common::write_secret(&pki.path("identity.key"), &key);
    let upstream = EchoUpstream::start().await;
    let mut config = proxied(&pki, ClientAuthMode::Required, &upstream.url(), "");
    config.upstream.as_mut().unwrap().signing_key_file = Some(pki.path("identity.key"));
    let server = TestServer::start(config).await;

    let options = ClientOptions::new(&pki).identity(pki.client());
    let answer = request_with_headers(server.addr, &options, "POST", "/api/items?x=1", &[])
        .await
        .unwrap();
    let echo = answer.json();
    let tokens = received(&echo, "x-client-identity");
    assert_eq!(tokens.len(), 1);
    let token = tokens[0];

    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::HS256);
    validation.required_spec_claims = ["exp", "iat", "sub", "iss"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let claims = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(&key),
        &validation,
    )
    .unwrap()
    .claims;
    let details = CertDetails::from_der(&client_der(&pki)).unwrap();
    assert_eq!(claims["iss"], "mtls");
    assert_eq!(claims["sub"], "CN=client");
    assert_eq!(claims["cert_issuer"], "CN=mtls development CA");
    assert_eq!(claims["fingerprint_sha256"], details.fingerprints.sha256);
    assert_eq!(claims["htm"], "POST");
    assert_eq!(claims["htu"], "/api/items?x=1");
    assert_eq!(
        claims["exp"].as_u64().unwrap() - claims["iat"].as_u64().unwrap(),
        30
    );

    // A wrong key does not verify.
    let wrong = jsonwebtoken::decode::<serde_json::Value>(
        token,
        &jsonwebtoken::DecodingKey::from_secret(b"another key of thirty-two bytes!"),
        &validation,
    );
    assert!(wrong.is_err());

    // The README's Python recipe, with PyJWT.
    let has_pyjwt = std::process::Command::new("python3")
        .args(["-c", "import jwt"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !has_pyjwt {
        eprintln!(
            "SKIPPED: PyJWT is not installed (pip install pyjwt); the Python check did not run"
        );
        return;
    }
    let out = std::process::Command::new("python3")
        .args([
            "-c",
            "import jwt, sys\nkey = open(sys.argv[2], 'rb').read().rstrip(b'\\r\\n')\nclaims = jwt.decode(sys.argv[1], key, algorithms=['HS256'])\nassert claims['htm'] == 'POST' and claims['htu'] == '/api/items?x=1'\nprint(claims['sub'])",
            token,
        ])
        .arg(pki.path("identity.key"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "CN=client");
}

#[test]
fn the_signed_format_needs_a_long_enough_key() {
    let pki = TestPki::new();
    common::write_secret(&pki.path("short.key"), b"tooshort");
    let run = |args: &[&str]| {
        mtls_command(pki.dir.path())
            .args([
                "serve",
                "--listen",
                "127.0.0.1:0",
                "--upstream",
                "http://127.0.0.1:9",
            ])
            .args(args)
            .env("SERVER_CERT", "server.crt")
            .env("SERVER_KEY", "server.key")
            .output()
            .unwrap()
    };
    let out = run(&["--forward-client-cert", "signed"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--identity-signing-key-file"));
    let out = run(&[
        "--forward-client-cert",
        "signed",
        "--identity-signing-key-file",
        "short.key",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has 8 bytes; use at least 32 random bytes"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[tokio::test]
async fn an_mtls_upstream_accepts_a_p12_identity_held_in_memory() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let out = std::process::Command::new(openssl)
        .current_dir(pki.dir.path())
        .args([
            "pkcs12",
            "-export",
            "-in",
            "client.crt",
            "-inkey",
            "client.key",
        ])
        .args(["-passout", "pass:s3cret", "-out", "client.p12"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let backend = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let backend_url = format!("https://127.0.0.1:{}", backend.addr.port());
    let mut config = proxied(&pki, ClientAuthMode::Off, &backend_url, "");
    let upstream = config.upstream.as_mut().unwrap();
    upstream.ca = Some(pki.path("ca.crt"));
    upstream.identity = Some(mtls::tls::UpstreamIdentity::Pkcs12 {
        path: pki.path("client.p12"),
        password: "s3cret".to_owned(),
    });
    let files_before: Vec<_> = std::fs::read_dir(pki.dir.path()).unwrap().collect();
    let proxy = TestServer::start(config).await;
    let answer = get(proxy.addr, &ClientOptions::new(&pki), "/whoami")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(answer.json()["identity"]["common_name"], "client");
    let files_after: Vec<_> = std::fs::read_dir(pki.dir.path()).unwrap().collect();
    assert_eq!(
        files_before.len(),
        files_after.len(),
        "no PEM written to disk"
    );
}

/// SIGTERM waits for in-flight requests; a second signal does not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_signal_exits_at_once() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut server = serve_proxied(&pki, &upstream);
    let addr = server.addr;
    let options = ClientOptions::new(&pki);
    let slow = tokio::spawn(async move { get(addr, &options, "/slow").await });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let pid = server.child.id().to_string();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    server.wait_for("a second signal exits at once");
    let started = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::task::spawn_blocking(move || server.child.wait().unwrap())
        .await
        .unwrap();
    assert_eq!(status.code(), Some(1));
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    assert!(
        slow.await.unwrap().is_err(),
        "the in-flight request was cut"
    );
}

#[tokio::test]
async fn a_body_over_the_limit_gets_413_declared_or_streamed() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut config = proxied(&pki, ClientAuthMode::Off, &upstream.url(), "");
    config.upstream.as_mut().unwrap().max_body_bytes = 1024;
    let server = TestServer::start(config).await;

    let small = common::request_with_body(
        server.addr,
        &ClientOptions::new(&pki),
        "/up",
        vec![b'a'; 1000],
        true,
    )
    .await
    .unwrap();
    assert_eq!(small.status, StatusCode::OK);
    assert_eq!(small.json()["body_len"], 1000);
    for declared in [true, false] {
        let big = common::request_with_body(
            server.addr,
            &ClientOptions::new(&pki),
            "/up",
            vec![b'a'; 5000],
            declared,
        )
        .await
        .unwrap();
        assert_eq!(
            big.status,
            StatusCode::PAYLOAD_TOO_LARGE,
            "content-length declared: {declared}"
        );
        assert!(
            big.json()["detail"]
                .as_str()
                .unwrap()
                .contains("larger than 1024 bytes")
        );
    }
}

/// `--idle-timeout` closes an h2 connection that has had no stream open
/// for that long, and never one whose stream is still being answered.
#[tokio::test]
async fn an_idle_h2_connection_is_closed_but_not_while_a_stream_is_open() {
    use http_body_util::BodyExt;

    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut config = proxied(
        &pki,
        ClientAuthMode::Off,
        &format!("http://{}", upstream.addr),
        "",
    );
    config.limits.idle_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let (mut sender, mut connection) = h2_connect(server.addr, &pki, None).await;

    // The upstream answers /slow after 3 s: three idle timeouts with the
    // stream open, and the connection must carry the answer.
    let response = sender.send_request(h2_get("/slow")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
    assert!(!connection.is_finished(), "closed while a stream was open");

    // Then idle: closed (GOAWAY) within two idle timeouts.
    let closed = tokio::time::timeout(Duration::from_secs(4), &mut connection).await;
    assert!(
        closed.is_ok(),
        "an idle h2 connection was still open after 4 s"
    );
    assert!(sender.send_request(h2_get("/")).await.is_err());
}

/// An h2 server with `--send-timeout 1s` in front of the test upstream.
async fn h2_send_timeout_server(pki: &TestPki, upstream: &EchoUpstream) -> TestServer {
    let mut config = proxied(pki, ClientAuthMode::Off, &upstream.url(), "");
    config.limits.send_timeout = Duration::from_secs(1);
    TestServer::start(config).await
}

/// An h2 stream whose client stops granting it window is reset after
/// `--send-timeout` (nginx's send_timeout), and the upstream's answer is
/// dropped with it; the connection stays open for other streams.
#[tokio::test]
async fn an_h2_stream_the_client_stops_reading_is_reset_after_the_send_timeout() {
    use http_body_util::BodyExt;

    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let server = h2_send_timeout_server(&pki, &upstream).await;
    let (mut sender, connection) = h2_connect(server.addr, &pki, Some(65_535)).await;

    // 64 MiB asked for, 64 KiB of window (h2's default) never given back.
    let response = sender.send_request(h2_get("/big")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    tokio::time::sleep(Duration::from_secs(3)).await;
    let mut body = response.into_body();
    let mut received = 0;
    let ended = tokio::time::timeout(Duration::from_secs(10), async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => received += frame.data_ref().map_or(0, |data| data.len()),
                Err(err) => return Err(err),
            }
        }
        Ok(())
    })
    .await
    .expect("the stream neither ended nor was reset within 10 s");
    let reset = ended.expect_err("the whole answer came: the stalled stream was not reset");
    assert!(
        format!("{reset:?}").contains("CANCEL"),
        "the stream should end with RST_STREAM CANCEL: {reset:?}"
    );
    assert!(
        received < 1 << 20,
        "{received} bytes received before the reset"
    );

    // The connection and its other streams go on.
    assert!(!connection.is_finished());
    let response = sender.send_request(h2_get("/other")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();
}

/// A client that grants no window at all holds even a built-in answer; the
/// stream is reset after `--send-timeout` all the same.
#[tokio::test]
async fn an_h2_stream_given_no_window_is_reset_after_the_send_timeout() {
    use http_body_util::BodyExt;

    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.limits.send_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let (mut sender, connection) = h2_connect(server.addr, &pki, Some(0)).await;

    let response = sender.send_request(h2_get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let body = tokio::time::timeout(Duration::from_secs(10), response.into_body().collect())
        .await
        .expect("the stream was not reset within 10 s");
    assert!(body.is_err(), "a body came through a window of 0");
    assert!(!connection.is_finished());
}

/// What the send timeout must leave alone: an answer that waits for the
/// app (the upstream's head after 3 s, a streamed body with a 3 s pause),
/// and a client that reads slowly but goes on reading.
#[tokio::test]
async fn the_h2_send_timeout_spares_a_waiting_app_and_a_slow_reader() {
    use common::upstream::DRIP_CHUNK;
    use http_body_util::BodyExt;

    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let server = h2_send_timeout_server(&pki, &upstream).await;
    // h2's default window of 64 KiB: the client grants more each time it
    // has read half of it.
    let (mut sender, _connection) = h2_connect(server.addr, &pki, Some(65_535)).await;

    let response = sender.send_request(h2_get("/slow")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    response.into_body().collect().await.unwrap();

    let response = sender.send_request(h2_get("/drip")).await.unwrap();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    assert_eq!(body, [DRIP_CHUNK, DRIP_CHUNK].concat());

    // 3 s of reading, a 16 KiB frame every 0.25 s: the client grants
    // window every 0.5 s, and never lets a whole second pass without taking
    // some of the answer.
    let response = sender.send_request(h2_get("/big")).await.unwrap();
    let mut body = response.into_body();
    for _ in 0..12 {
        tokio::time::sleep(Duration::from_millis(250)).await;
        let frame = body.frame().await.expect("the answer ended early");
        frame.expect("a slow reader's stream was reset");
    }
}

/// The end of an answer that h2 holds after hyper's stream task is done
/// (a window of 1 byte: hyper hands h2 the whole answer and finishes) is
/// not under the stream's send timeout; the idle connection is closed
/// after two more --idle-timeout all the same.
#[tokio::test]
async fn an_h2_connection_holding_an_unsent_answer_end_is_closed_when_idle() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.limits.idle_timeout = Duration::from_secs(1);
    let server = TestServer::start(config).await;
    let (mut sender, mut connection) = h2_connect(server.addr, &pki, Some(1)).await;

    let response = sender.send_request(h2_get("/")).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    // Idle after 1–2 s, then 1 s for the GOAWAY's streams to end.
    let closed = tokio::time::timeout(Duration::from_secs(6), &mut connection).await;
    assert!(
        closed.is_ok(),
        "a connection holding an unsent answer was still open after 6 s"
    );
    drop(response);
}
