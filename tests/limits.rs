//! Slow and hostile clients: idle connections, slow headers, oversized
//! heads, too many connections. The server stays within its limits and a
//! real client is still served within a second. Bounded in time and count.

mod common;

use std::time::{Duration, Instant};

use common::{ClientOptions, TestPki, TestServer, get, timed_request};
use hyper::StatusCode;
use mtls::config::ClientAuthMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_silent_connections_do_not_delay_a_real_client() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Required)).await;
    let mut silent = Vec::new();
    for _ in 0..1000 {
        silent.push(TcpStream::connect(server.addr).await.unwrap());
    }
    let elapsed = timed_request(&server, &pki).await;
    assert!(elapsed < Duration::from_secs(1), "took {elapsed:?}");
    drop(silent);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_headers_do_not_delay_a_real_client_and_time_out() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.limits.header_read_timeout = Duration::from_millis(800);
    let server = TestServer::start(config).await;

    let tls_config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(mtls::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(
                        rustls::pki_types::CertificateDer::from_pem_file(pki.path("ca.crt"))
                            .unwrap(),
                    )
                    .unwrap();
                roots
            })
            .with_no_client_auth(),
    );
    let mut slow = Vec::new();
    for _ in 0..100 {
        let tcp = TcpStream::connect(server.addr).await.unwrap();
        let mut tls = tokio_rustls::TlsConnector::from(tls_config.clone())
            .connect(common::DOMAIN.try_into().unwrap(), tcp)
            .await
            .unwrap();
        tls.write_all(b"GET / HTTP/1.1\r\nHost: a").await.unwrap();
        slow.push(tls);
    }
    let started = Instant::now();
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );

    // Each slow client is cut off after the header-read timeout.
    let mut buf = [0u8; 256];
    for tls in slow.iter_mut().take(5) {
        let read = tokio::time::timeout(Duration::from_secs(5), tls.read(&mut buf)).await;
        let text = match read {
            Ok(Ok(n)) => String::from_utf8_lossy(&buf[..n]).into_owned(),
            Ok(Err(_)) => String::new(),
            Err(_) => panic!("a slow client was not cut off"),
        };
        assert!(
            text.is_empty() || text.starts_with("HTTP/1.1 408"),
            "{text}"
        );
    }
}

#[tokio::test]
async fn an_oversized_request_head_is_refused() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.limits.max_header_bytes = 16 * 1024;
    let server = TestServer::start(config).await;
    let big = "x".repeat(100 * 1024);
    let result = common::request_with_headers(
        server.addr,
        &ClientOptions::new(&pki),
        "GET",
        "/",
        &[("x-big", big.as_str())],
    )
    .await;
    let answer = result.expect("the server answers an oversized head");
    assert_eq!(answer.status, StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // The server is fine afterwards.
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}

#[tokio::test]
async fn connections_beyond_the_maximum_are_closed_and_counted() {
    let pki = TestPki::new();
    let mut config = pki.config(ClientAuthMode::Off);
    config.limits.max_connections = 5;
    config.admin_listen = Some(std::net::SocketAddr::from(([127, 0, 0, 1], 0)));
    let server = TestServer::start(config).await;

    let mut held = Vec::new();
    for _ in 0..5 {
        held.push(TcpStream::connect(server.addr).await.unwrap());
    }
    tokio::time::sleep(Duration::from_millis(100)).await;
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    let mut buf = [0u8; 16];
    let read = tokio::time::timeout(Duration::from_secs(2), extra.read(&mut buf))
        .await
        .expect("the extra connection was not closed");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    let metrics = common::plain_get(server.admin.unwrap(), "/metrics").await;
    assert!(
        metrics.contains("mtls_connections_refused_total 1"),
        "{metrics}"
    );

    drop(held);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
}

/// The slowloris pattern: 1,000 TLS connections sending their request head
/// one byte per second. A real client is still answered within a second.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_connections_trickling_headers_do_not_delay_a_real_client() {
    let pki = TestPki::new();
    let server = TestServer::start(pki.config(ClientAuthMode::Off)).await;
    let tls_config = std::sync::Arc::new(
        rustls::ClientConfig::builder_with_provider(mtls::tls::provider())
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates({
                use rustls::pki_types::pem::PemObject;
                let mut roots = rustls::RootCertStore::empty();
                roots
                    .add(
                        rustls::pki_types::CertificateDer::from_pem_file(pki.path("ca.crt"))
                            .unwrap(),
                    )
                    .unwrap();
                roots
            })
            .with_no_client_auth(),
    );
    let ready = std::sync::Arc::new(tokio::sync::Barrier::new(1001));
    let mut tricklers = Vec::new();
    for _ in 0..1000 {
        let (tls_config, ready, addr) = (tls_config.clone(), ready.clone(), server.addr);
        tricklers.push(tokio::spawn(async move {
            let tcp = TcpStream::connect(addr).await.unwrap();
            let mut tls = tokio_rustls::TlsConnector::from(tls_config)
                .connect(common::DOMAIN.try_into().unwrap(), tcp)
                .await
                .unwrap();
            ready.wait().await;
            for byte in b"GET / HTTP/1.1\r\nHost: slow\r\n" {
                if tls.write_all(&[*byte]).await.is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }));
    }
    ready.wait().await;
    tokio::time::sleep(Duration::from_millis(1500)).await; // a byte or two each
    let started = Instant::now();
    let answer = get(server.addr, &ClientOptions::new(&pki), "/")
        .await
        .unwrap();
    assert_eq!(answer.status, StatusCode::OK);
    assert!(
        started.elapsed() < Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
    for trickler in tricklers {
        trickler.abort();
    }
}
