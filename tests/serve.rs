//! `mtls serve` over real TLS: client auth off, optional and required.

mod common;

use std::process::Command;

use common::{ClientOptions, TestPki, TestServer, get, received_alert, request, rustls_error};
use hyper::{StatusCode, Version};
use mtls::config::ClientAuthMode;
use rustls::AlertDescription;

const WELCOME: &str = "{\"message\":\"Welcome to the mTLS Flask App!\"}\n";

#[tokio::test]
async fn off_serves_clients_without_a_certificate() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;

    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, WELCOME);
    assert_eq!(answer.headers["content-type"], "application/json");

    let health = get(server.addr, &ClientOptions::new(&pki), "/healthz")
        .await
        .unwrap();
    assert_eq!(health.json(), serde_json::json!({"status": "ok"}));
    server.stop().await;
}

#[tokio::test]
async fn the_server_certificate_is_valid_for_the_domain_only() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;

    let wrong = ClientOptions::new(&pki).server_name("wrong.example.com");
    let result = get(server.addr, &wrong, "/").await;
    let err = result.expect_err("a wrong host name must fail verification");
    assert!(
        matches!(
            rustls_error(err.as_ref()),
            Some(rustls::Error::InvalidCertificate(
                rustls::CertificateError::NotValidForNameContext { .. }
            ))
        ),
        "unexpected error: {err:?}"
    );

    for name in ["localhost", "127.0.0.1"] {
        let options = ClientOptions::new(&pki).server_name(name);
        let answer = get(server.addr, &options, "/").await.unwrap();
        assert_eq!(answer.status, StatusCode::OK, "server name {name}");
    }
}

#[tokio::test]
async fn required_without_a_certificate_gets_the_certificate_required_alert() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    // In TLS 1.3 the client learns of the rejection on its first read.
    let result = get(server.addr, &ClientOptions::new(&pki), "/").await;
    assert_eq!(
        received_alert(&result),
        Some(AlertDescription::CertificateRequired),
        "{result:?}"
    );
}

#[tokio::test]
async fn required_with_a_valid_certificate_is_welcomed() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    let options = ClientOptions::new(&pki).identity(pki.client());
    let answer = get(server.addr, &options, "/").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(answer.body, WELCOME);
}

#[tokio::test]
async fn required_rejects_each_bad_certificate_with_its_alert() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    let cases = [
        (
            "another CA",
            &pki.other_ca_client,
            AlertDescription::UnknownCA,
        ),
        (
            "expired",
            &pki.expired_client,
            AlertDescription::CertificateExpired,
        ),
        (
            "serverAuth EKU only",
            &pki.server_auth_only_client,
            AlertDescription::UnsupportedCertificate,
        ),
    ];
    for (what, identity, alert) in cases {
        let options = ClientOptions::new(&pki).identity(identity.clone());
        let result = get(server.addr, &options, "/").await;
        assert_eq!(received_alert(&result), Some(alert), "{what}: {result:?}");
    }
    // The accept loop survived every failure.
    let options = ClientOptions::new(&pki).identity(pki.client());
    assert_eq!(get(server.addr, &options, "/").await.unwrap().status, 200);
}

#[tokio::test]
async fn optional_serves_public_paths_to_all_and_the_rest_to_verified_clients() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Optional)).await;

    let health = get(server.addr, &ClientOptions::new(&pki), "/healthz")
        .await
        .unwrap();
    assert_eq!(health.status, StatusCode::OK);

    let anonymous = get(server.addr, &ClientOptions::new(&pki), "/cert")
        .await
        .unwrap();
    assert_eq!(anonymous.status, StatusCode::FORBIDDEN);
    assert_eq!(anonymous.json()["reason"], "no_certificate");

    let options = ClientOptions::new(&pki).identity(pki.client());
    let answer = get(server.addr, &options, "/cert").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert_eq!(
        answer.json()["client_certificate"]["subject"]["rfc4514"],
        "CN=client"
    );

    // A presented certificate is still verified: the handshake completes,
    // the request is refused with the reason.
    let stranger = ClientOptions::new(&pki).identity(pki.other_ca_client.clone());
    let refused = get(server.addr, &stranger, "/").await.unwrap();
    assert_eq!(refused.status, StatusCode::FORBIDDEN);
    assert_eq!(refused.json()["reason"], "unknown_issuer");
}

#[tokio::test]
async fn off_mode_cert_says_none_was_presented() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let anonymous = get(server.addr, &ClientOptions::new(&pki), "/cert")
        .await
        .unwrap();
    assert_eq!(anonymous.status, StatusCode::NOT_FOUND);
    assert_eq!(
        anonymous.json(),
        serde_json::json!({"error": "no client certificate presented"})
    );
}

#[tokio::test]
async fn cert_describes_the_verified_client_certificate() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    let options = ClientOptions::new(&pki).identity(pki.client());
    let answer = get(server.addr, &options, "/cert").await.unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    let json = answer.json();
    let cert = &json["client_certificate"];
    assert_eq!(cert["subject"]["rfc4514"], "CN=client");
    assert_eq!(cert["issuer"]["rfc4514"], "CN=mtls development CA");
    assert_eq!(json["chain"][0], *cert, "the chain starts with the leaf");
    assert_eq!(json["tls"]["version"], "TLSv1.3");
    assert_eq!(json["tls"]["sni"], common::DOMAIN);
    assert!(cert["not_before"].as_str().unwrap().ends_with('Z'));
    assert!(cert["not_after"].as_str().unwrap().ends_with('Z'));

    // Cross-check serial and fingerprint with OpenSSL's own reading.
    if let Some(openssl) = common::system_openssl() {
        let out = Command::new(openssl)
            .args([
                "x509",
                "-noout",
                "-serial",
                "-fingerprint",
                "-sha256",
                "-in",
            ])
            .arg(pki.path("client.crt"))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let serial = format!("serial={}", cert["serial_hex"].as_str().unwrap());
        assert!(text.contains(&serial), "{text} lacks {serial}");
        let fingerprint = text
            .lines()
            .find_map(|l| l.strip_prefix("sha256 Fingerprint="))
            .unwrap()
            .replace(':', "");
        assert_eq!(cert["fingerprints"]["sha256"], fingerprint);
    }
}

#[tokio::test]
async fn h2_is_negotiated_by_alpn() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    let options = ClientOptions::new(&pki).identity(pki.client()).alpn_h2();
    let answer = get(server.addr, &options, "/cert").await.unwrap();
    assert_eq!(answer.version, Version::HTTP_2);
    assert_eq!(
        answer.json()["client_certificate"]["subject"]["rfc4514"],
        "CN=client"
    );

    let http1 = ClientOptions::new(&pki).identity(pki.client());
    let answer = get(server.addr, &http1, "/").await.unwrap();
    assert_eq!(answer.version, Version::HTTP_11);
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_errors() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let options = ClientOptions::new(&pki);

    let missing = get(server.addr, &options, "/nope").await.unwrap();
    assert_eq!(missing.status, StatusCode::NOT_FOUND);
    assert_eq!(missing.headers["content-type"], "application/json");
    assert_eq!(missing.json()["error"], "not found");

    let post = request(server.addr, &options, "POST", "/").await.unwrap();
    assert_eq!(post.status, StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(post.headers["allow"], "GET, HEAD");
    assert_eq!(post.headers["content-type"], "application/json");

    let head = request(server.addr, &options, "HEAD", "/").await.unwrap();
    assert_eq!(head.status, StatusCode::OK);
    assert_eq!(head.body, "");
}

#[tokio::test]
async fn the_welcome_message_is_configurable() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.welcome_message = "Hello \"quoted\"".to_owned();
    let server = TestServer::start(config).await;

    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(
        answer.json(),
        serde_json::json!({"message": "Hello \"quoted\""})
    );
}

#[tokio::test]
async fn required_works_over_tls_1_2_too() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    let options = ClientOptions::new(&pki).identity(pki.client()).tls12_only();
    let answer = get(server.addr, &options, "/cert").await.unwrap();
    assert_eq!(
        answer.json()["client_certificate"]["subject"]["rfc4514"],
        "CN=client"
    );

    let anonymous = ClientOptions::new(&pki).tls12_only();
    let result = get(server.addr, &anonymous, "/").await;
    assert!(result.is_err(), "TLS 1.2 without a certificate must fail");
}

#[tokio::test]
async fn the_server_picks_aes_128_gcm_whatever_the_client_prefers() {
    // rustls clients, like OpenSSL's, list the AES-256 suites first.
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    for (options, expected) in [
        (ClientOptions::new(&pki), "TLS13_AES_128_GCM_SHA256"),
        (
            ClientOptions::new(&pki).tls12_only(),
            "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256",
        ),
    ] {
        let answer = get(server.addr, &options.identity(pki.client()), "/cert")
            .await
            .unwrap();
        assert_eq!(answer.json()["tls"]["cipher_suite"], expected);
    }
    server.stop().await;
}
