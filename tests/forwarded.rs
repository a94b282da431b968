//! `mtls serve` behind another TLS terminator: a client certificate in a
//! header is read only from trusted proxies and validated like a direct one.

mod common;

use std::time::Duration;

use common::upstream::{EchoUpstream, received};
use common::{ClientOptions, TestPki, TestServer, request_with_headers};
use hyper::StatusCode;
use mtls::cert::CertDetails;
use mtls::config::{ClientAuthMode, ServeConfig, UpstreamConfig};
use mtls::proxy::forwarded_cert::{ForwardedFormat, ForwardedTrust, parse_proxy};
use mtls::proxy::identity_headers::{
    ApacheOptions, ClientCertificate, HeaderFormat, VerifyState, identity_headers,
};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

fn behind(pki: &TestPki, format: ForwardedFormat, proxy: &str) -> ServeConfig {
    let mut config = pki.config(ClientAuthMode::Optional);
    config.forwarded_trust = Some(ForwardedTrust {
        format,
        proxies: vec![parse_proxy(proxy).unwrap()],
    });
    config
}

/// The header a terminator of `format` would send for `pem`, made with our
/// own (separately tested) writer of that format.
fn forwarded_header(format: HeaderFormat, pem: &str) -> (String, String) {
    let chain = vec![CertificateDer::from_pem_slice(pem.as_bytes()).unwrap()];
    let details = CertDetails::from_der(&chain[0]).unwrap();
    let state = VerifyState::Success(ClientCertificate {
        chain: &chain,
        details: &details,
    });
    let wanted = match format {
        HeaderFormat::Azure => "x-arr-clientcert",
        HeaderFormat::Xfcc => "x-forwarded-client-cert",
        _ => "x-ssl-client-cert",
    };
    identity_headers(&[format], &ApacheOptions::default(), &state, None)
        .into_iter()
        .find(|(name, _)| name.as_str() == wanted)
        .map(|(name, value)| (name.to_string(), value.to_str().unwrap().to_owned()))
        .unwrap()
}

async fn whoami(
    server: &TestServer,
    pki: &TestPki,
    header: &(String, String),
) -> (StatusCode, serde_json::Value) {
    let answer = request_with_headers(
        server.addr,
        &ClientOptions::new(pki),
        "GET",
        "/whoami",
        &[(header.0.as_str(), header.1.as_str())],
    )
    .await
    .unwrap();
    (answer.status, serde_json::from_str(&answer.body).unwrap())
}

#[tokio::test]
async fn a_trusted_proxy_forwards_the_identity_in_each_format() {
    let pki = TestPki::new();
    for (format, writer) in [
        (ForwardedFormat::Azure, HeaderFormat::Azure),
        (ForwardedFormat::Xfcc, HeaderFormat::Xfcc),
        (ForwardedFormat::Nginx, HeaderFormat::Nginx),
    ] {
        let server = TestServer::start(behind(&pki, format, "127.0.0.1/32")).await;
        let header = forwarded_header(writer, &pki.client().cert_pem);
        let (status, json) = whoami(&server, &pki, &header).await;
        assert_eq!(status, StatusCode::OK, "{format:?}: {json}");
        assert_eq!(json["identity"]["common_name"], "client", "{format:?}");
    }
}

#[tokio::test]
async fn a_forwarded_identity_reaches_the_upstream_in_its_format() {
    let pki = TestPki::new();
    let upstream = EchoUpstream::start().await;
    let mut config = behind(&pki, ForwardedFormat::Azure, "127.0.0.1/32");
    config.upstream = Some(UpstreamConfig {
        url: upstream.url().parse().unwrap(),
        timeout: Duration::from_secs(5),
        formats: vec![HeaderFormat::Apache],
        apache: ApacheOptions::default(),
        ca: None,
        identity: None,
        signing_key_file: None,
        max_body_bytes: 1024,
    });
    let server = TestServer::start(config).await;
    let header = forwarded_header(HeaderFormat::Azure, &pki.client().cert_pem);
    let answer = request_with_headers(
        server.addr,
        &ClientOptions::new(&pki),
        "GET",
        "/app",
        &[(header.0.as_str(), header.1.as_str())],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::OK, "{}", answer.body);
    let echo = answer.json();
    assert_eq!(echo["path"], "/app");
    // The proxy's certificate became the identity; its header did not
    // travel on as such.
    assert_eq!(received(&echo, "ssl-client-s-dn"), ["CN=client"]);
    assert_eq!(received(&echo, "ssl-client-verify"), ["SUCCESS"]);
    assert!(received(&echo, "x-arr-clientcert").is_empty(), "{echo}");
}

#[tokio::test]
async fn a_forwarded_certificate_is_validated_like_a_direct_one() {
    let pki = TestPki::new();
    let server = TestServer::start(behind(&pki, ForwardedFormat::Azure, "127.0.0.1")).await;
    for (pem, reason) in [
        (&pki.expired_client.cert_pem, "expired"),
        (&pki.other_ca_client.cert_pem, "unknown_issuer"),
        (&pki.server_auth_only_client.cert_pem, "bad_key_usage"),
    ] {
        let header = forwarded_header(HeaderFormat::Azure, pem);
        let (status, json) = whoami(&server, &pki, &header).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{reason}");
        assert_eq!(json["reason"], reason);
    }
}

#[tokio::test]
async fn the_header_is_ignored_from_untrusted_peers_and_malformed_is_400() {
    let pki = TestPki::new();
    let header = forwarded_header(HeaderFormat::Azure, &pki.client().cert_pem);
    let elsewhere = TestServer::start(behind(&pki, ForwardedFormat::Azure, "10.0.0.0/8")).await;
    let (status, json) = whoami(&elsewhere, &pki, &header).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert_eq!(json["reason"], "no_certificate");

    let server = TestServer::start(behind(&pki, ForwardedFormat::Azure, "127.0.0.1/32")).await;
    let bad = ("x-arr-clientcert".to_owned(), "not base64!".to_owned());
    let (status, json) = whoami(&server, &pki, &bad).await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        json["detail"]
            .as_str()
            .unwrap()
            .starts_with("malformed x-arr-clientcert header: not base64 DER"),
        "{json}"
    );

    let truncated = (
        "x-arr-clientcert".to_owned(),
        "MIIBpjCCAUygAwIBAgIU".to_owned(),
    );
    let (status, json) = whoami(&server, &pki, &truncated).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{json}");
    assert_eq!(json["reason"], "invalid_certificate", "{json}");
}

#[tokio::test]
async fn a_malformed_header_is_logged_as_a_400_request() {
    let pki = TestPki::new();
    let mut command = common::serve_command(&pki, "optional");
    command
        .args(["--trust-forwarded-cert", "azure"])
        .args(["--trusted-proxy", "127.0.0.1/32"]);
    let mut server = common::ServeProcess::start(command);
    let answer = request_with_headers(
        server.addr,
        &ClientOptions::new(&pki),
        "GET",
        "/whoami",
        &[("x-arr-clientcert", "not base64!")],
    )
    .await
    .unwrap();
    assert_eq!(answer.status, StatusCode::BAD_REQUEST);
    let line = server.wait_for("mtls::access");
    assert!(line.contains("path=\"/whoami\""), "{line}");
    assert!(line.contains("status=400"), "{line}");
    server.terminate();
}

#[test]
fn trusting_forwarded_certificates_needs_proxies_and_client_auth() {
    let pki = TestPki::new();
    let run = |args: &[&str]| {
        common::mtls_command(pki.dir.path())
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .env("SERVER_CERT", "server.crt")
            .env("SERVER_KEY", "server.key")
            .env("CLIENT_CA", "ca.crt")
            .output()
            .unwrap()
    };
    let out = run(&[
        "--client-auth",
        "optional",
        "--trust-forwarded-cert",
        "azure",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("needs --trusted-proxy"));
    let out = run(&[
        "--trust-forwarded-cert",
        "azure",
        "--trusted-proxy",
        "10.0.0.0/8",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("CLIENT_AUTH=optional"));
    let out = run(&[
        "--client-auth",
        "optional",
        "--trust-forwarded-cert",
        "haproxy",
        "--trusted-proxy",
        "10.0.0.0/8",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown format `haproxy`"));
    let out = run(&[
        "--client-auth",
        "optional",
        "--trust-forwarded-cert",
        "azure",
        "--trusted-proxy",
        "somewhere",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("`somewhere` is not an address or CIDR"));
}
