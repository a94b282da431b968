//! The README's curl walkthrough, run with the system curl against the real
//! server. Skipped (and said so) when curl is not installed.

mod common;

use std::process::{Command, Output};

use common::{DOMAIN, TestPki, TestServer};
use mtls::config::ClientAuthMode;

const WELCOME: &str = "{\"message\":\"Welcome to the mTLS Flask App!\"}\n";

/// Runs curl against the server with `--resolve` standing in for /etc/hosts.
async fn curl(pki: &TestPki, server: &TestServer, path: &str, args: &[&str]) -> Output {
    let mut command = Command::new("curl");
    command
        .current_dir(pki.dir.path())
        .args(["--silent", "--show-error", "--max-time", "10"])
        .arg("--resolve")
        .arg(format!("{DOMAIN}:{}:127.0.0.1", server.addr.port()))
        .args(args)
        .arg(format!("https://{DOMAIN}:{}{path}", server.addr.port()));
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[tokio::test]
async fn curl_walkthrough_with_client_auth_off() {
    if common::system_curl().is_none() {
        return;
    }
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;

    let untrusted = curl(&pki, &server, "/", &[]).await;
    assert_eq!(untrusted.status.code(), Some(60), "{}", stderr(&untrusted));

    let insecure = curl(&pki, &server, "/", &["-k"]).await;
    assert_eq!(stdout(&insecure), WELCOME, "{}", stderr(&insecure));

    let trusted = curl(&pki, &server, "/", &["--cacert", "ca.crt"]).await;
    assert_eq!(stdout(&trusted), WELCOME, "{}", stderr(&trusted));
}

#[tokio::test]
async fn curl_walkthrough_with_client_auth_required() {
    if common::system_curl().is_none() {
        return;
    }
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;

    let anonymous = curl(&pki, &server, "/", &["--cacert", "ca.crt"]).await;
    assert_eq!(anonymous.status.code(), Some(56), "{}", stderr(&anonymous));
    assert!(
        stderr(&anonymous).contains("alert certificate required"),
        "{}",
        stderr(&anonymous)
    );

    let identified = [
        "--cacert",
        "ca.crt",
        "--cert",
        "client.crt",
        "--key",
        "client.key",
    ];
    let welcomed = curl(&pki, &server, "/", &identified).await;
    assert_eq!(stdout(&welcomed), WELCOME, "{}", stderr(&welcomed));

    let mut h2 = identified.to_vec();
    h2.extend(["--http2", "--write-out", "\n%{http_version}"]);
    let cert = curl(&pki, &server, "/cert", &h2).await;
    let text = stdout(&cert);
    let (body, version) = text.rsplit_once('\n').unwrap();
    assert_eq!(version, "2", "{text}");
    let json: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(
        json["client_certificate"]["subject"]["rfc4514"],
        "CN=client"
    );

    let (cert, key) = pki.write("expired", &pki.expired_client);
    let expired = curl(
        &pki,
        &server,
        "/",
        &[
            "--cacert",
            "ca.crt",
            "--cert",
            cert.to_str().unwrap(),
            "--key",
            key.to_str().unwrap(),
        ],
    )
    .await;
    assert_ne!(expired.status.code(), Some(0));
    assert!(
        stderr(&expired).contains("certificate expired"),
        "{}",
        stderr(&expired)
    );
}

/// `openssl s_client` against the server; returns (success, all output).
async fn s_client(server: &TestServer, args: &[&str]) -> (bool, String) {
    let mut command = Command::new("openssl");
    command
        .args(["s_client", "-connect", &server.addr.to_string()])
        .args(args)
        .stdin(std::process::Stdio::null());
    let out = tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap();
    let text = format!("{}{}", stdout(&out), stderr(&out));
    (out.status.success(), text)
}

#[tokio::test]
async fn only_tls_1_2_and_1_3_are_offered() {
    if common::system_openssl().is_none() {
        return;
    }
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;

    let (ok, text) = s_client(&server, &["-tls1_2"]).await;
    assert!(ok && text.contains("New, TLSv1.2, Cipher is"), "{text}");
    let (ok, text) = s_client(&server, &["-tls1_3"]).await;
    assert!(ok && text.contains("New, TLSv1.3, Cipher is"), "{text}");
    // SECLEVEL=0 makes OpenSSL 3 really send a TLS 1.1 ClientHello.
    let (ok, text) = s_client(&server, &["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"]).await;
    assert!(!ok && text.contains("alert handshake failure"), "{text}");
}
