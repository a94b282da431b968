//! The TLS defaults scripts/security-scan.sh checks with testssl, checked
//! here too with the system openssl (so they hold where testssl is absent):
//! TLS 1.2 and 1.3 only, and the server's suite order wins.

mod common;

use std::net::SocketAddr;

use common::{TestPki, TestServer};
use mtls::config::ClientAuthMode;

/// `openssl s_client ARGS` against `addr`; the "Protocol"/"Cipher" summary
/// lines, or `None` when the handshake failed.
fn handshake(
    openssl: &std::path::Path,
    pki: &TestPki,
    addr: SocketAddr,
    args: &[&str],
) -> Option<String> {
    let out = std::process::Command::new(openssl)
        .args(["s_client", "-connect", &addr.to_string()])
        .args(["-servername", common::DOMAIN, "-CAfile"])
        .arg(pki.path("ca.crt"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    // "New, TLSv1.3, Cipher is X" on success, "New, (NONE), Cipher is (NONE)" on failure.
    let line = text.lines().find(|l| l.starts_with("New, "))?.to_owned();
    (!line.contains("(NONE)")).then_some(line)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_tls_1_2_and_1_3_and_the_servers_suite_order_wins() {
    let Some(openssl) = common::system_openssl() else {
        return;
    };
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let addr = server.addr;
    let result = tokio::task::spawn_blocking(move || {
        let run = |args: &[&str]| handshake(&openssl, &pki, addr, args);
        for old in ["-tls1", "-tls1_1"] {
            assert_eq!(
                run(&[old, "-cipher", "ALL:@SECLEVEL=0"]),
                None,
                "{old} was accepted"
            );
        }
        // The client prefers ChaCha20; the server's order puts AES-256-GCM first.
        let tls13 = run(&[
            "-tls1_3",
            "-ciphersuites",
            "TLS_CHACHA20_POLY1305_SHA256:TLS_AES_256_GCM_SHA384",
        ]);
        assert_eq!(
            tls13.as_deref(),
            Some("New, TLSv1.3, Cipher is TLS_AES_256_GCM_SHA384")
        );
        let tls12 = run(&[
            "-tls1_2",
            "-cipher",
            "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES256-GCM-SHA384",
        ]);
        assert_eq!(
            tls12.as_deref(),
            Some("New, TLSv1.2, Cipher is ECDHE-ECDSA-AES256-GCM-SHA384")
        );
        // A client offering only CBC or non-ephemeral suites finds nothing.
        let weak = run(&["-tls1_2", "-cipher", "AES256-SHA:ECDHE-ECDSA-AES256-SHA"]);
        assert_eq!(weak, None, "a CBC suite was accepted");
    });
    result.await.unwrap();
}
