//! Strict-Transport-Security on every HTTPS answer of `mtls serve`: the
//! built-in routes, refusals (403, 400, 413), proxied answers (keeping an
//! upstream's own header), never on the plain-HTTP admin port; `--hsts`
//! changes or disables it.

mod common;

use std::time::Duration;

use common::upstream::EchoUpstream;
use common::{
    ClientOptions, ServeProcess, TestPki, TestServer, get, mtls_command, request_with_headers,
};
use hyper::StatusCode;
use hyper::header::{HeaderValue, STRICT_TRANSPORT_SECURITY};
use mtls::config::{ClientAuthMode, ServeConfig, UpstreamConfig};
use mtls::proxy::forwarded_cert::{ForwardedFormat, ForwardedTrust, parse_proxy};
use mtls::proxy::identity_headers::ApacheOptions;

const DEFAULT: &str = "max-age=31536000";

fn sts(answer: &common::Answer) -> Vec<&str> {
    answer
        .headers
        .get_all(STRICT_TRANSPORT_SECURITY)
        .iter()
        .map(|v| v.to_str().unwrap())
        .collect()
}

fn proxied(pki: &TestPki, upstream: &str) -> ServeConfig {
    let mut config = pki.config(ClientAuthMode::Off);
    config.upstream = Some(UpstreamConfig {
        url: upstream.parse().unwrap(),
        timeout: Duration::from_secs(5),
        formats: Vec::new(),
        apache: ApacheOptions::default(),
        ca: Some(pki.path("ca.crt")),
        identity: None,
        signing_key_file: None,
        max_body_bytes: 1024,
    });
    config
}

#[tokio::test]
async fn built_in_routes_and_refusals_carry_the_default_header() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Optional);
    config.forwarded_trust = Some(ForwardedTrust {
        format: ForwardedFormat::Azure,
        proxies: vec![parse_proxy("127.0.0.1/32").unwrap()],
    });
    let server = TestServer::start(config).await;
    let anonymous = ClientOptions::new(&pki);
    let with_cert = ClientOptions::new(&pki).identity(pki.client());

    let ok = get(server.addr, &with_cert, "/").await.unwrap();
    assert_eq!(ok.status, StatusCode::OK);
    assert_eq!(sts(&ok), [DEFAULT]);

    let h2_client = ClientOptions::new(&pki).identity(pki.client()).alpn_h2();
    let h2 = get(server.addr, &h2_client, "/whoami").await.unwrap();
    assert_eq!(h2.version, hyper::Version::HTTP_2);
    assert_eq!(sts(&h2), [DEFAULT]);

    let forbidden = get(server.addr, &anonymous, "/").await.unwrap();
    assert_eq!(forbidden.status, StatusCode::FORBIDDEN);
    assert_eq!(sts(&forbidden), [DEFAULT]);

    let not_found = get(server.addr, &with_cert, "/nowhere").await.unwrap();
    assert_eq!(not_found.status, StatusCode::NOT_FOUND);
    assert_eq!(sts(&not_found), [DEFAULT]);

    let bad = request_with_headers(
        server.addr,
        &anonymous,
        "GET",
        "/whoami",
        &[("X-ARR-ClientCert", "not base64!")],
    )
    .await
    .unwrap();
    assert_eq!(bad.status, StatusCode::BAD_REQUEST);
    assert_eq!(sts(&bad), [DEFAULT]);

    // mtls's own answers are never sniffed or framed.
    for answer in [&ok, &h2, &forbidden, &not_found, &bad] {
        assert_eq!(answer.headers["x-content-type-options"], "nosniff");
        assert_eq!(answer.headers["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn proxied_answers_get_ours_unless_the_upstream_sent_its_own() {
    let pki = TestPki::new();
    let echo = EchoUpstream::start().await;
    let server = TestServer::start(proxied(&pki, &echo.url())).await;
    let client = ClientOptions::new(&pki);

    let answer = get(server.addr, &client, "/api").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(sts(&answer), [DEFAULT]);

    let too_large = common::request_with_body(server.addr, &client, "/up", vec![b'a'; 5000], true)
        .await
        .unwrap();
    assert_eq!(too_large.status, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(sts(&too_large), [DEFAULT]);

    let down = TestServer::start(proxied(&pki, "http://127.0.0.1:1")).await;
    let bad_gateway = get(down.addr, &client, "/").await.unwrap();
    assert_eq!(bad_gateway.status, StatusCode::BAD_GATEWAY);
    assert_eq!(sts(&bad_gateway), [DEFAULT]);

    // An upstream with a policy of its own (here another mtls with a short
    // max-age) keeps it: one header, the upstream's.
    let mut backend_config = pki.config(ClientAuthMode::Off);
    backend_config.hsts = Some(HeaderValue::from_static("max-age=60; includeSubDomains"));
    let backend = TestServer::start(backend_config).await;
    let front = TestServer::start(proxied(
        &pki,
        &format!("https://127.0.0.1:{}", backend.addr.port()),
    ))
    .await;
    let answer = get(front.addr, &client, "/").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    assert_eq!(sts(&answer), ["max-age=60; includeSubDomains"]);
}

#[tokio::test]
async fn the_flag_sets_or_disables_it_and_the_admin_port_never_has_it() {
    let pki = TestPki::new();
    let client = ClientOptions::new(&pki);

    let mut process = ServeProcess::start({
        let mut command = serve(&pki);
        command
            .args(["--admin-listen", "127.0.0.1:0"])
            .env("HSTS", "max-age=63072000; includeSubDomains");
        command
    });
    let answer = get(process.addr, &client, "/").await.unwrap();
    assert_eq!(sts(&answer), ["max-age=63072000; includeSubDomains"]);
    let admin = process.admin_addr();
    let head = admin_head(admin).await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(
        !head
            .to_ascii_lowercase()
            .contains("strict-transport-security"),
        "{head}"
    );
    drop(process);

    let off = ServeProcess::start({
        let mut command = serve(&pki);
        command.args(["--hsts", "off"]);
        command
    });
    let answer = get(off.addr, &client, "/").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(sts(&answer).is_empty(), "{:?}", answer.headers);
}

#[test]
fn a_value_without_max_age_stops_start_up_with_exit_2() {
    let pki = TestPki::new();
    let out = serve(&pki)
        .args(["--hsts", "includeSubDomains"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("--hsts / HSTS `includeSubDomains`"),
        "{stderr}"
    );
    assert!(stderr.contains("max-age=31536000"), "{stderr}");
}

/// `mtls serve` on 127.0.0.1:0 with the test PKI.
fn serve(pki: &TestPki) -> std::process::Command {
    let mut command = mtls_command(pki.dir.path());
    command.args(["serve", "--listen", "127.0.0.1:0", "--cert"]);
    command
        .arg(pki.path("server.crt"))
        .arg("--key")
        .arg(pki.path("server.key"));
    command
}

/// The status line and headers of the admin port's /healthz.
async fn admin_head(addr: std::net::SocketAddr) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tcp.read_to_string(&mut response).await.unwrap();
    response
        .split_once("\r\n\r\n")
        .map(|(head, _)| head.to_owned())
        .unwrap_or(response)
}
