//! Session resumption across replicas sharing --session-ticket-key-file,
//! and the identity of a resumed session checked again.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;

use common::{TestPki, TestServer};
use mtls::config::ClientAuthMode;
use mtls::pki::{LeafSpec, Validity};
use rustls::HandshakeKind;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// One client configuration, so its session cache is shared by all calls.
fn client(pki: &TestPki) -> Arc<rustls::ClientConfig> {
    client_with(pki, "client")
}

/// Like `client`, with the identity `<stem>.crt` / `<stem>.key`.
fn client_with(pki: &TestPki, stem: &str) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.crt")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(mtls::tls::provider())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(
            vec![CertificateDer::from_pem_file(pki.path(&format!("{stem}.crt"))).unwrap()],
            PrivateKeyDer::from_pem_file(pki.path(&format!("{stem}.key"))).unwrap(),
        )
        .unwrap();
    Arc::new(config)
}

/// GET /whoami; returns how the handshake went and the response head+body.
async fn whoami(addr: SocketAddr, config: &Arc<rustls::ClientConfig>) -> (HandshakeKind, String) {
    let tcp = TcpStream::connect(addr).await.unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config.clone())
        .connect(common::DOMAIN.try_into().unwrap(), tcp)
        .await
        .unwrap();
    let kind = tls.get_ref().1.handshake_kind().unwrap();
    tls.write_all(
        b"GET /whoami HTTP/1.1\r\nHost: api.flaskmtlsauth.com\r\nConnection: close\r\n\r\n",
    )
    .await
    .unwrap();
    let mut response = String::new();
    let _ = tls.read_to_string(&mut response).await;
    (kind, response)
}

#[tokio::test]
async fn a_session_from_one_replica_resumes_on_another_with_the_shared_key() {
    let pki = TestPki::new();
    common::write_secret(&pki.path("tickets.key"), &[42u8; 32]);
    let replica = |key: Option<&str>| {
        let mut config = pki.config(ClientAuthMode::Required);
        config.session_ticket_key_files = key.map(|k| pki.path(k)).into_iter().collect();
        config
    };
    let a = TestServer::start(replica(Some("tickets.key"))).await;
    let b = TestServer::start(replica(Some("tickets.key"))).await;

    let config = client(&pki);
    let (first, body) = whoami(a.addr, &config).await;
    assert_eq!(first, HandshakeKind::Full);
    assert!(body.contains("\"common_name\":\"client\""), "{body}");
    let (second, body) = whoami(b.addr, &config).await;
    assert_eq!(
        second,
        HandshakeKind::Resumed,
        "replica B did not resume A's session"
    );
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    assert!(
        body.contains("\"common_name\":\"client\""),
        "the resumed identity is served: {body}"
    );

    // A replica with another key cannot read the ticket: a full handshake.
    common::write_secret(&pki.path("other.key"), &[7u8; 32]);
    let c = TestServer::start(replica(Some("other.key"))).await;
    let config = client(&pki);
    let _ = whoami(a.addr, &config).await;
    let (kind, _) = whoami(c.addr, &config).await;
    assert_ne!(kind, HandshakeKind::Resumed);
}

#[test]
fn a_short_ticket_key_is_refused_at_start_up() {
    let pki = TestPki::new();
    common::write_secret(&pki.path("short.key"), b"short");
    let out = common::mtls_command(pki.dir.path())
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--session-ticket-key-file",
            "short.key",
        ])
        .env("SERVER_CERT", "server.crt")
        .env("SERVER_KEY", "server.key")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("has 5 bytes; use at least 32 random bytes")
    );
}

/// A resumed session restores the client certificate without running the
/// verifier; mtls verifies it again, so a revocation since then counts.
#[tokio::test]
async fn a_resumed_session_of_a_since_revoked_client_is_refused() {
    let pki = TestPki::new();
    common::write_secret(&pki.path("tickets.key"), &[42u8; 32]);
    let mut config = pki.config(ClientAuthMode::Required);
    config.session_ticket_key_files = vec![pki.path("tickets.key")];
    let before = TestServer::start(config.clone()).await;

    let client_config = client(&pki);
    let (kind, body) = whoami(before.addr, &client_config).await;
    assert_eq!(kind, HandshakeKind::Full);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");

    mtls::pki::revoke(pki.dir.path(), "client").unwrap();
    config.crls = vec![pki.path("crl.pem")];
    let after = TestServer::start(config).await;
    let (kind, body) = whoami(after.addr, &client_config).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert!(body.starts_with("HTTP/1.1 403"), "{body}");
    assert!(body.contains("\"reason\":\"revoked\""), "{body}");
}

/// Rotation: a replica with the new key first and the old key second
/// resumes sessions sealed under the old key.
#[tokio::test]
async fn rotated_keys_keep_old_tickets_working() {
    let pki = TestPki::new();
    common::write_secret(&pki.path("old.key"), &[1u8; 32]);
    common::write_secret(&pki.path("new.key"), &[2u8; 32]);
    let with_keys = |keys: &[&str]| {
        let mut config = pki.config(ClientAuthMode::Required);
        config.session_ticket_key_files = keys.iter().map(|k| pki.path(k)).collect();
        config
    };
    let before = TestServer::start(with_keys(&["old.key"])).await;
    let rotated = TestServer::start(with_keys(&["new.key", "old.key"])).await;
    let config = client(&pki);
    let _ = whoami(before.addr, &config).await;
    let (kind, body) = whoami(rotated.addr, &config).await;
    assert_eq!(kind, HandshakeKind::Resumed, "an old ticket still opens");
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
}

/// Verified chains are remembered so that returning clients are not
/// verified again, but never past the certificate's notAfter.
#[tokio::test]
async fn a_session_resumed_after_the_certificate_expired_is_refused() {
    let pki = TestPki::new();
    let now = time::OffsetDateTime::now_utc();
    let not_after = now + time::Duration::seconds(3);
    let spec = LeafSpec {
        validity: Validity {
            not_before: now - time::Duration::hours(1),
            not_after,
        },
        ..LeafSpec::client("short-lived")
    };
    let issued = common::authority_from(pki.dir.path()).issue(&spec).unwrap();
    pki.write("short-lived", &issued);
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let config = client_with(&pki, "short-lived");

    let (kind, body) = whoami(server.addr, &config).await;
    assert_eq!(kind, HandshakeKind::Full);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");
    let (kind, body) = whoami(server.addr, &config).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert!(body.starts_with("HTTP/1.1 200"), "{body}");

    // notAfter has whole seconds; wait until it is surely past.
    let wait = not_after - time::OffsetDateTime::now_utc() + time::Duration::milliseconds(1500);
    tokio::time::sleep(wait.try_into().unwrap()).await;
    let (kind, body) = whoami(server.addr, &config).await;
    assert_eq!(kind, HandshakeKind::Resumed);
    assert!(body.starts_with("HTTP/1.1 403"), "{body}");
    assert!(body.contains("\"reason\":\"expired\""), "{body}");
}
