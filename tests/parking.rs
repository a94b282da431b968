//! Idle HTTP/1.1 connections are parked without hyper's buffers
//! (src/parking.rs) and still behave as one ordinary keep-alive connection:
//! the next request, pipelined bytes, request bodies (one still uploading
//! after its answer), the header-read timeout and shutdown all work across
//! a park. Real server, real TLS.

mod common;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use common::raw::{connect, idle_connections, read_response, wait_parked};
use common::{TestPki, TestServer};
use mtls::config::ClientAuthMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// A server with client certificates required and the admin endpoint on.
async fn server(pki: &TestPki, header_read_timeout: Duration) -> TestServer {
    let mut config = pki.config(ClientAuthMode::Required);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.limits.header_read_timeout = header_read_timeout;
    TestServer::start(config).await
}

/// A server, and a connection whose `request` (`GET /`, maybe with more
/// headers or bytes after it) was answered with the welcome.
async fn answered_connection(
    pki: &TestPki,
    header_read_timeout: Duration,
    request: &[u8],
) -> (TestServer, TlsStream<TcpStream>, Vec<u8>) {
    let server = server(pki, header_read_timeout).await;
    let mut tls = connect(&server, pki).await;
    let mut pending = Vec::new();
    tls.write_all(request).await.unwrap();
    let (status, body) = read_response(&mut tls, &mut pending).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("Welcome to the mTLS Flask App!"), "{body}");
    (server, tls, pending)
}

const GET: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n";
/// An ordinary request that happens to carry `Upgrade`: answered 200, but
/// hyper keeps a pending upgrade for it, so the connection is never parked.
const GET_WITH_UPGRADE: &[u8] = b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n\r\n";

/// A server, and a connection answered once (`GET /`) and now parked.
async fn parked_connection(
    pki: &TestPki,
    header_read_timeout: Duration,
) -> (TestServer, TlsStream<TcpStream>, Vec<u8>) {
    let answered = answered_connection(pki, header_read_timeout, GET).await;
    wait_parked(answered.0.admin.unwrap(), 1).await;
    answered
}

/// The header-read timeout of the tests that time it.
const ONE_SECOND: Duration = Duration::from_secs(1);

/// `took` is [`ONE_SECOND`], give or take scheduling.
fn assert_about_one_second(took: Duration) {
    assert!(took >= Duration::from_millis(900), "after {took:?}");
    assert!(took < Duration::from_millis(1800), "after {took:?}");
}

/// Whether the server closed the connection within `within`.
async fn closed_within(tls: &mut TlsStream<TcpStream>, within: Duration) -> bool {
    let mut buf = [0u8; 256];
    match tokio::time::timeout(within, tls.read(&mut buf)).await {
        Ok(Ok(0)) | Ok(Err(_)) => true,
        Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
        Err(_) => false,
    }
}

/// `GET /healthz` on the connection is answered, with its JSON.
async fn healthz_answers(tls: &mut TlsStream<TcpStream>, pending: &mut Vec<u8>, context: &str) {
    tls.write_all(b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(tls, pending).await;
    assert_eq!(status, "HTTP/1.1 200 OK", "{context}");
    assert!(body.contains("\"ok\""), "{context}: {body}");
}

#[tokio::test]
async fn an_idle_connection_is_parked_then_serves_its_next_request() {
    let pki = TestPki::new();
    let (server, mut tls, mut pending) = parked_connection(&pki, Duration::from_secs(30)).await;
    let admin = server.admin.unwrap();
    // The same connection, the same verified identity, after the park.
    tls.write_all(b"GET /whoami HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(&mut tls, &mut pending).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("client"), "{body}");
    // And it parks again.
    wait_parked(admin, 1).await;
    drop(tls);
    wait_parked(admin, 0).await;
}

#[tokio::test]
async fn a_pipelined_request_cut_across_a_park_is_answered_in_order() {
    let pki = TestPki::new();
    let server = server(&pki, Duration::from_secs(30)).await;
    let mut tls = connect(&server, &pki).await;
    let mut pending = Vec::new();

    // The first request whole, the second cut in its head: hyper holds the
    // cut head when the connection goes idle, and must get it back.
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET /healthz HTTP/1.1\r\nHo")
        .await
        .unwrap();
    let (status, body) = read_response(&mut tls, &mut pending).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("Welcome"), "{body}");
    // Longer than two grace periods.
    tokio::time::sleep(Duration::from_millis(300)).await;
    tls.write_all(b"st: a\r\n\r\n").await.unwrap();
    let (status, body) = read_response(&mut tls, &mut pending).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    assert!(body.contains("\"ok\""), "{body}");
}

#[tokio::test]
async fn requests_with_bodies_and_pauses_share_one_connection() {
    let pki = TestPki::new();
    let server = server(&pki, Duration::from_secs(30)).await;
    let admin = server.admin.unwrap();
    let mut tls = connect(&server, &pki).await;
    let mut pending = Vec::new();

    for round in 0..3 {
        // A body the built-in routes do not read (hyper drains it), a
        // pause long enough to park, then a GET.
        tls.write_all(b"POST /headers HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello")
            .await
            .unwrap();
        let (status, _) = read_response(&mut tls, &mut pending).await;
        assert!(status.starts_with("HTTP/1.1 "), "round {round}: {status}");
        wait_parked(admin, 1).await;
        healthz_answers(&mut tls, &mut pending, &format!("round {round}")).await;
    }
    wait_parked(admin, 1).await;
}

#[tokio::test]
async fn a_built_in_route_leaves_a_chunked_body_for_hyper_to_drain() {
    let pki = TestPki::new();
    let server = server(&pki, Duration::from_secs(30)).await;
    let mut tls = connect(&server, &pki).await;
    let mut pending = Vec::new();

    // A body the route does not read, arrived with its head: hyper drains
    // it and keeps the connection, as long as the body is still wanted when
    // hyper reads it (the answer holds it until hyper polls for it).
    for path in ["/", "/headers", "/nowhere"] {
        let request = format!(
            "POST {path} HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n\
             5\r\nhello\r\n0\r\n\r\n"
        );
        tls.write_all(request.as_bytes()).await.unwrap();
        let (status, _) = read_response(&mut tls, &mut pending).await;
        assert!(status.starts_with("HTTP/1.1 4"), "{path}: {status}");
        healthz_answers(&mut tls, &mut pending, &format!("after {path}")).await;
    }
}

#[tokio::test]
async fn a_parked_connection_is_closed_after_the_header_read_timeout() {
    let pki = TestPki::new();
    let (_server, mut tls, _) = parked_connection(&pki, Duration::from_millis(700)).await;
    let idle_from = Instant::now();
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    // Parked after 50-100 ms of the 700 ms.
    let idle = idle_from.elapsed();
    assert!(idle >= Duration::from_millis(500), "closed after {idle:?}");
}

#[tokio::test]
async fn a_slow_head_after_a_park_still_times_out() {
    let pki = TestPki::new();
    let (_server, mut tls, _) = parked_connection(&pki, ONE_SECOND).await;

    // A head that never ends, one byte per 250 ms, on a parked connection:
    // pauses longer than the grace period, yet the header-read timeout runs
    // from the head's first bytes and cuts it off.
    let started = Instant::now();
    tls.write_all(b"GET / HTTP/1.1\r\n").await.unwrap();
    let mut answer = Vec::new();
    loop {
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "a slow head was not cut off"
        );
        let _ = tls.write_all(b"X").await;
        let mut buf = [0u8; 512];
        match tokio::time::timeout(Duration::from_millis(250), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => answer.extend_from_slice(&buf[..n]),
            Err(_) => continue,
        }
    }
    assert_about_one_second(started.elapsed());
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}

#[tokio::test]
async fn a_pipelined_head_that_never_ends_is_cut_off() {
    let pki = TestPki::new();
    // A whole request and the start of a second one in one write, then
    // silence: the cut head waits in hyper's buffer across a park.
    let request = b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHo";
    let (_server, mut tls, _) = answered_connection(&pki, ONE_SECOND, request).await;
    let started = Instant::now();
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    assert_about_one_second(started.elapsed());
}

#[tokio::test]
async fn shutdown_closes_a_parked_connection_at_once() {
    let pki = TestPki::new();
    let (server, mut tls, _) = parked_connection(&pki, Duration::from_secs(30)).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("shutdown waited for a parked connection");
    assert!(closed_within(&mut tls, Duration::from_secs(1)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn shutdown_closes_a_connection_hyper_still_holds_at_once() {
    let pki = TestPki::new();
    // Unparkable, so only the stop signal can end it early.
    let (server, mut tls, _) =
        answered_connection(&pki, Duration::from_secs(30), GET_WITH_UPGRADE).await;
    tokio::time::sleep(Duration::from_millis(200)).await;

    let started = Instant::now();
    tokio::time::timeout(Duration::from_secs(5), server.stop())
        .await
        .expect("shutdown waited for an idle connection");
    assert!(closed_within(&mut tls, Duration::from_secs(1)).await);
    assert!(started.elapsed() < Duration::from_secs(2));
}

#[tokio::test]
async fn a_head_sent_in_pieces_keeps_the_connection_alive() {
    let pki = TestPki::new();
    let server = server(&pki, Duration::from_secs(30)).await;
    let mut tls = connect(&server, &pki).await;
    let mut pending = Vec::new();

    // Pauses longer than the grace period inside the first head and then
    // inside a later one: hyper must not be asked to close in either.
    for round in 0..2 {
        tls.write_all(b"GET /healthz HTTP/1.1\r\nHo").await.unwrap();
        tokio::time::sleep(Duration::from_millis(300)).await;
        tls.write_all(b"st: a\r\n\r\n").await.unwrap();
        let (status, body) = read_response(&mut tls, &mut pending).await;
        assert_eq!(status, "HTTP/1.1 200 OK", "round {round}");
        assert!(body.contains("\"ok\""), "round {round}: {body}");
    }
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response(&mut tls, &mut pending).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
}

#[tokio::test]
async fn a_request_with_an_upgrade_header_keeps_its_connection() {
    let pki = TestPki::new();
    // Refused or ignored `Upgrade`: a non-101 answer, and keep-alive.
    let (_server, mut tls, mut pending) =
        answered_connection(&pki, Duration::from_secs(30), GET_WITH_UPGRADE).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let closed = closed_within(&mut tls, Duration::from_millis(10)).await;
    assert!(
        !closed,
        "keep-alive connection closed 300 ms after a response (timeout is 30 s)"
    );
    healthz_answers(&mut tls, &mut pending, "after 300 ms").await;
}

#[tokio::test]
async fn a_connection_that_cannot_park_still_closes_when_idle() {
    let pki = TestPki::new();
    let (server, mut tls, _) = answered_connection(&pki, ONE_SECOND, GET_WITH_UPGRADE).await;
    let idle_from = Instant::now();
    // Open and not parked after several grace periods...
    assert!(!closed_within(&mut tls, Duration::from_millis(300)).await);
    assert_eq!(idle_connections(server.admin.unwrap()).await, 0);
    // ...and closed after the timeout.
    assert!(closed_within(&mut tls, Duration::from_secs(5)).await);
    assert_about_one_second(idle_from.elapsed());
}

#[tokio::test]
async fn a_head_trickled_right_after_an_answer_is_cut_off() {
    let pki = TestPki::new();
    let (_server, mut tls, _) = answered_connection(&pki, ONE_SECOND, GET).await;
    // The next head at once, a byte per 20 ms: faster than the grace
    // period, so the connection never goes idle; only the head's own
    // deadline can end it.
    let started = Instant::now();
    tls.write_all(b"GET / HTTP/1.1\r\nX-Slow: ").await.unwrap();
    loop {
        let took = started.elapsed();
        assert!(
            took < Duration::from_secs(5),
            "a trickled head was not cut off"
        );
        if tls.write_all(b"a").await.is_err() {
            break;
        }
        let mut buf = [0u8; 256];
        match tokio::time::timeout(Duration::from_millis(20), tls.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break,
            Ok(Ok(n)) => panic!("unexpected bytes: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(_) => continue,
        }
    }
    assert_about_one_second(started.elapsed());
}

#[tokio::test]
async fn a_tls_record_trickled_a_byte_at_a_time_is_still_timed_out() {
    let pki = TestPki::new();
    let (_server, mut tls, _) = parked_connection(&pki, Duration::from_millis(700)).await;
    // Start of an application-data record claiming 16 KiB, then one byte
    // per 400 ms: never any plaintext, so no request head ever starts.
    let raw = &mut tls.get_mut().0;
    let record = [0x17u8, 0x03, 0x03, 0x40, 0x00];
    let started = Instant::now();
    for i in 0..10 {
        tokio::time::sleep(Duration::from_millis(400)).await;
        let byte = [record.get(i).copied().unwrap_or(0)];
        if raw.write_all(&byte).await.is_err() {
            break;
        }
        let mut buf = [0u8; 64];
        match tokio::time::timeout(Duration::from_millis(1), raw.read(&mut buf)).await {
            Err(_) => continue, // still open
            Ok(_) => return,    // closed
        }
    }
    panic!(
        "still open after {:?} with a 700 ms header-read timeout",
        started.elapsed()
    );
}

/// An upstream that answers a request as soon as its head arrives and only
/// then reads the body, as an app that refuses or accepts an upload early
/// does. Reports each request's body length as it finishes.
async fn early_answering_upstream() -> (SocketAddr, tokio::sync::mpsc::UnboundedReceiver<usize>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (report, reports) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut tcp, _)) = listener.accept().await {
            let report = report.clone();
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    // One request: its head, the early answer, then its body.
                    let end = loop {
                        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                            break end;
                        }
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    };
                    let head = String::from_utf8_lossy(&pending[..end]).to_lowercase();
                    let length: usize = head
                        .lines()
                        .find_map(|line| line.strip_prefix("content-length:"))
                        .map_or(0, |value| value.trim().parse().unwrap());
                    pending.drain(..end + 4);
                    let answer = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                    if tcp.write_all(answer).await.is_err() {
                        return;
                    }
                    while pending.len() < length {
                        match tcp.read(&mut buf).await {
                            Ok(0) | Err(_) => return,
                            Ok(n) => pending.extend_from_slice(&buf[..n]),
                        }
                    }
                    pending.drain(..length);
                    let _ = report.send(length);
                }
            });
        }
    });
    (addr, reports)
}

#[tokio::test]
async fn an_upload_still_read_after_its_answer_keeps_the_connection() {
    use mtls::config::UpstreamConfig;
    use mtls::proxy::identity_headers::{ApacheOptions, HeaderFormat};

    let pki = TestPki::new();
    let (upstream, mut uploads) = early_answering_upstream().await;
    let mut config = pki.config(ClientAuthMode::Required);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    config.upstream = Some(UpstreamConfig {
        url: format!("http://{upstream}").parse().unwrap(),
        timeout: Duration::from_secs(5),
        formats: HeaderFormat::parse_list("apache").unwrap(),
        apache: ApacheOptions::default(),
        ca: None,
        identity: None,
        signing_key_file: None,
        max_body_bytes: 1 << 20,
    });
    let server = TestServer::start(config).await;
    let admin = server.admin.unwrap();
    let mut tls = connect(&server, &pki).await;
    let mut pending = Vec::new();
    tls.write_all(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 3000\r\n\r\n")
        .await
        .unwrap();
    tls.write_all(&[b'x'; 1000]).await.unwrap();
    let (status, body) = read_response(&mut tls, &mut pending).await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));

    // The answer is out, the upload is not: several grace periods pass with
    // the connection busy reading it, which is not idle.
    tokio::time::sleep(mtls::parking::PARK_AFTER * 4).await;
    assert_eq!(idle_connections(admin).await, 0, "parked mid-upload");
    for _ in 0..2 {
        tls.write_all(&[b'x'; 1000]).await.unwrap();
        tokio::time::sleep(mtls::parking::PARK_AFTER * 2).await;
    }
    let uploaded = tokio::time::timeout(Duration::from_secs(5), uploads.recv())
        .await
        .expect("the upload reaches the upstream");
    assert_eq!(uploaded, Some(3000));

    // Still one keep-alive connection: the next request is answered on it.
    tls.write_all(b"GET /next HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, body) = read_response(&mut tls, &mut pending).await;
    assert_eq!((status.as_str(), body.as_str()), ("HTTP/1.1 200 OK", "ok"));
}
