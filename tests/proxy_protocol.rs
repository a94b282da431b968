//! `--proxy-protocol`: the client address from a v1 or v2 header sent by a
//! trusted TCP load balancer, before the TLS handshake.

mod common;

use std::sync::Arc;

use common::{TestPki, TestServer};
use hyper::StatusCode;
use mtls::config::ClientAuthMode;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

fn behind_balancer(pki: &TestPki, trusted: &str) -> mtls::config::ServeConfig {
    let mut config = pki.config(ClientAuthMode::Off);
    config.proxy_protocol = Some(vec![trusted.parse().unwrap()]);
    config
}

/// Sends `header`, then GET /headers over TLS on the same connection.
async fn headers_after(
    server: &TestServer,
    pki: &TestPki,
    header: &[u8],
) -> Result<serde_json::Value, String> {
    let mut tcp = TcpStream::connect(server.addr).await.unwrap();
    tcp.write_all(header).await.unwrap();
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_file(pki.path("ca.crt")).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(mtls::tls::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(common::DOMAIN.try_into().unwrap(), tcp)
        .await
        .map_err(|err| err.to_string())?;
    tls.write_all(
        b"GET /headers HTTP/1.1\r\nHost: api.flaskmtlsauth.com\r\nConnection: close\r\n\r\n",
    )
    .await
    .map_err(|err| err.to_string())?;
    let mut response = String::new();
    tls.read_to_string(&mut response)
        .await
        .map_err(|err| err.to_string())?;
    let (head, body) = response.split_once("\r\n\r\n").ok_or("no response")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    serde_json::from_str(body).map_err(|err| err.to_string())
}

#[tokio::test]
async fn the_client_address_comes_from_a_v1_or_v2_header() {
    let pki = TestPki::new();
    let server = TestServer::start(behind_balancer(&pki, "127.0.0.0/8")).await;

    let v1 = headers_after(
        &server,
        &pki,
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n",
    )
    .await
    .unwrap();
    assert_eq!(v1["remote_addr"], "203.0.113.7:51234");

    let addresses: ppp::v2::Addresses = (
        "198.51.100.9:40000"
            .parse::<std::net::SocketAddr>()
            .unwrap(),
        "192.0.2.1:443".parse::<std::net::SocketAddr>().unwrap(),
    )
        .into();
    let v2 = ppp::v2::Builder::with_addresses(
        ppp::v2::Version::Two | ppp::v2::Command::Proxy,
        ppp::v2::Protocol::Stream,
        addresses,
    )
    .build()
    .unwrap();
    let json = headers_after(&server, &pki, &v2).await.unwrap();
    assert_eq!(json["remote_addr"], "198.51.100.9:40000");

    let unknown = headers_after(&server, &pki, b"PROXY UNKNOWN\r\n")
        .await
        .unwrap();
    assert!(
        unknown["remote_addr"]
            .as_str()
            .unwrap()
            .starts_with("127.0.0.1:")
    );
}

#[tokio::test]
async fn connections_without_a_header_or_from_untrusted_peers_are_refused() {
    let pki = TestPki::new();
    let server = TestServer::start(behind_balancer(&pki, "127.0.0.0/8")).await;
    let plain = common::get(server.addr, &common::ClientOptions::new(&pki), "/").await;
    assert!(
        plain.is_err(),
        "a TLS client without the header must be refused"
    );
    assert!(
        headers_after(&server, &pki, b"PROXY TCP4 not-an-ip 192.0.2.1 1 2\r\n")
            .await
            .is_err()
    );

    let elsewhere = TestServer::start(behind_balancer(&pki, "10.0.0.0/8")).await;
    assert!(
        headers_after(
            &elsewhere,
            &pki,
            b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 443\r\n"
        )
        .await
        .is_err()
    );

    // A server without --proxy-protocol is unaffected.
    let direct = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let answer = common::get(direct.addr, &common::ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}
