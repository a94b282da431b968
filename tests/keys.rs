//! Server keys in every PEM form people have: PKCS#8, SEC1 and PKCS#1.
//! The SEC1 and PKCS#1 files are made by the system openssl, as users make them.

mod common;

use std::path::Path;
use std::process::Command;

use common::{ClientOptions, TestPki, TestServer, authority_from};
use mtls::config::ClientAuthMode;
use mtls::pki::LeafSpec;

/// `openssl pkey -traditional`: SEC1 for EC keys, PKCS#1 for RSA keys.
fn to_traditional(openssl: &Path, from: &Path, to: &Path) -> String {
    let out = Command::new(openssl)
        .args(["pkey", "-traditional", "-in"])
        .arg(from)
        .arg("-out")
        .arg(to)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::fs::read_to_string(to).unwrap()
}

async fn serves_with_key(pki: &TestPki, cert: &str, key: &str) {
    let mut config = pki.config(ClientAuthMode::Required);
    config.cert = pki.path(cert);
    config.key = pki.path(key);
    let server = TestServer::start(config).await;
    let options = ClientOptions::new(pki).identity(pki.client());
    let answer = common::get(server.addr, &options, "/").await.unwrap();
    assert_eq!(answer.status, 200);
}

#[tokio::test]
async fn pkcs8_ec_key_is_accepted() {
    let pki = TestPki::new();
    let pem = std::fs::read_to_string(pki.path("server.key")).unwrap();
    assert!(pem.starts_with("-----BEGIN PRIVATE KEY-----"));
    serves_with_key(&pki, "server.crt", "server.key").await;
}

#[tokio::test]
async fn sec1_ec_key_is_accepted() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let pem = to_traditional(
        &openssl,
        &pki.path("server.key"),
        &pki.path("server-sec1.key"),
    );
    assert!(pem.starts_with("-----BEGIN EC PRIVATE KEY-----"), "{pem}");
    serves_with_key(&pki, "server.crt", "server-sec1.key").await;
}

#[tokio::test]
async fn pkcs1_rsa_key_is_accepted() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let pkcs8 = pki.path("rsa.pk8");
    let out = Command::new(&openssl)
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&pkcs8)
        .output()
        .unwrap();
    assert!(out.status.success());
    let key = rcgen::KeyPair::from_pem(&std::fs::read_to_string(&pkcs8).unwrap()).unwrap();
    let cert = authority_from(pki.dir.path())
        .issue_for_key(&LeafSpec::server(common::DOMAIN), &key)
        .unwrap();
    std::fs::write(pki.path("rsa.crt"), cert).unwrap();
    let pem = to_traditional(&openssl, &pkcs8, &pki.path("rsa-pkcs1.key"));
    assert!(pem.starts_with("-----BEGIN RSA PRIVATE KEY-----"), "{pem}");
    serves_with_key(&pki, "rsa.crt", "rsa-pkcs1.key").await;
}

#[test]
fn an_rsa_key_with_an_ec_certificate_is_a_mismatch() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let key = pki.path("rsa.key");
    let out = Command::new(&openssl)
        .args([
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
        ])
        .arg(&key)
        .output()
        .unwrap();
    assert!(out.status.success());
    let err =
        mtls::tls::load_server_identity(&mtls::tls::provider(), &pki.path("server.crt"), &key)
            .expect_err("mismatch");
    assert!(
        err.to_string().contains("does not match the certificate"),
        "{err}"
    );
}
