//! A raw TLS connection to the test server and what parking tests need
//! around it: one HTTP/1.1 response read by hand, and the
//! `mtls_idle_connections` gauge.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

use super::{ClientOptions, TestPki, TestServer, plain_get};

/// A TLS connection presenting the test client certificate.
pub async fn connect(server: &TestServer, pki: &TestPki) -> TlsStream<TcpStream> {
    connect_to(server.addr, pki).await
}

/// The same, to a server at `addr` (one run as a process, say).
pub async fn connect_to(addr: SocketAddr, pki: &TestPki) -> TlsStream<TcpStream> {
    let options = ClientOptions::new(pki).identity(pki.client());
    let connector = tokio_rustls::TlsConnector::from(Arc::new(options.rustls_config()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(super::DOMAIN.try_into().unwrap(), tcp)
        .await
        .unwrap()
}

/// Reads one response with a Content-Length body; returns the status line
/// and the body. `pending` keeps bytes read past the response.
pub async fn read_response(
    tls: &mut TlsStream<TcpStream>,
    pending: &mut Vec<u8>,
) -> (String, String) {
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).into_owned();
            let length: usize = head
                .lines()
                .find_map(|line| {
                    let (name, value) = line.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().unwrap())
                })
                .expect("a Content-Length");
            if pending.len() >= end + 4 + length {
                let body =
                    String::from_utf8_lossy(&pending[end + 4..end + 4 + length]).into_owned();
                pending.drain(..end + 4 + length);
                let status = head.lines().next().unwrap().to_owned();
                return (status, body);
            }
        }
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        let n = tokio::time::timeout(left, tls.read(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        assert!(n > 0, "connection closed mid-response: {pending:?}");
        pending.extend_from_slice(&buf[..n]);
    }
}

/// The `mtls_idle_connections` gauge: connections parked now.
pub async fn idle_connections(admin: SocketAddr) -> u64 {
    let metrics = plain_get(admin, "/metrics").await;
    metrics
        .lines()
        .find_map(|line| line.strip_prefix("mtls_idle_connections "))
        .expect("the mtls_idle_connections gauge")
        .trim()
        .parse()
        .unwrap()
}

/// Waits (at most 3 s) until `want` connections are parked.
pub async fn wait_parked(admin: SocketAddr, want: u64) {
    let deadline = Instant::now() + Duration::from_secs(3);
    while idle_connections(admin).await != want {
        assert!(Instant::now() < deadline, "never {want} parked connections");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
