//! Hostile clients beyond tests/limits.rs: a ClientHello dribbled one byte
//! (or one TLS record) at a time, 10,000 headers, a 1 MB header line, an
//! HTTP/2 rapid-reset burst (CVE-2023-44487) and an HTTP/2 CONTINUATION
//! flood. Each attack runs over mutual TLS against the real server; the
//! server must refuse it within its limits, and a real client must still be
//! served within a second. The attacks run one at a time (so that the
//! one-second bound and the memory figures mean something on a small
//! machine), and every wait is bounded.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use common::{ClientOptions, DOMAIN, TestPki, TestServer, timed_request};
use hyper::StatusCode;
use mtls::config::ClientAuthMode;
use tokio::io::{AsyncReadExt, AsyncWriteExt, ReadHalf, WriteHalf};
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::client::TlsStream;

/// One attack at a time: they share the process (and its memory figures).
static ONE_ATTACK_AT_A_TIME: Mutex<()> = Mutex::const_new(());

/// Upper bound for any single wait in this file.
const PATIENCE: Duration = Duration::from_secs(15);

fn assert_served_within_a_second(elapsed: Duration, during: &str) {
    eprintln!("a real client was served in {elapsed:?} {during}");
    assert!(
        elapsed < Duration::from_secs(1),
        "a real client waited {elapsed:?} {during}"
    );
}

async fn start_server(pki: &TestPki) -> TestServer {
    TestServer::start(pki.config(ClientAuthMode::Required)).await
}

/// This process's memory figures from /proc, in KiB: the resident set
/// (`VmRSS`) or its peak so far (`VmHWM`). The server runs in-process.
fn memory_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|rest| rest.trim().trim_end_matches(" kB").parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/self/status"))
}

async fn mtls_connect(addr: SocketAddr, options: &ClientOptions) -> TlsStream<TcpStream> {
    let connector = tokio_rustls::TlsConnector::from(Arc::new(options.rustls_config()));
    let tcp = TcpStream::connect(addr).await.unwrap();
    connector
        .connect(DOMAIN.try_into().unwrap(), tcp)
        .await
        .unwrap()
}

// ---------------------------------------------------------------------------
// A ClientHello dribbled one byte at a time
// ---------------------------------------------------------------------------

/// How the ClientHello reaches the server.
#[derive(Clone, Copy, Debug)]
enum Dribble {
    /// The record as rustls wrote it, one byte per TCP write.
    Bytes,
    /// Re-framed into TLS records of one byte of handshake data each (which
    /// TLS allows), one record per TCP write.
    Records,
}

const DRIBBLE_DELAY: Duration = Duration::from_millis(3);

/// A real rustls client whose ClientHello is taken from the connection
/// as bytes and sent split up, slowly; then the handshake and a request
/// continue normally. Returns the response head.
fn dribbled_request(addr: SocketAddr, config: Arc<rustls::ClientConfig>, how: Dribble) -> String {
    use std::io::{Read, Write};
    let mut tcp = std::net::TcpStream::connect(addr).unwrap();
    tcp.set_nodelay(true).unwrap();
    tcp.set_read_timeout(Some(PATIENCE)).unwrap();
    tcp.set_write_timeout(Some(PATIENCE)).unwrap();
    let mut conn = rustls::ClientConnection::new(config, DOMAIN.try_into().unwrap()).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    assert_eq!(hello[0], 0x16, "a handshake record comes first");
    let writes: Vec<Vec<u8>> = match how {
        Dribble::Bytes => hello.iter().map(|&b| vec![b]).collect(),
        Dribble::Records => one_byte_records(&hello),
    };
    for piece in writes {
        tcp.write_all(&piece).unwrap();
        std::thread::sleep(DRIBBLE_DELAY);
    }
    let mut tls = rustls::Stream::new(&mut conn, &mut tcp);
    tls.write_all(
        format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    while !response.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tls.read(&mut buf).unwrap();
        assert!(n > 0, "closed before answering: {response:?}");
        response.extend_from_slice(&buf[..n]);
    }
    String::from_utf8_lossy(&response).into_owned()
}

/// TLS records carrying one byte of payload each, from whole records.
fn one_byte_records(records: &[u8]) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut rest = records;
    while !rest.is_empty() {
        let (header, body) = rest.split_at(5);
        let len = u16::from_be_bytes([header[3], header[4]]) as usize;
        for &byte in &body[..len] {
            out.push(vec![header[0], header[1], header[2], 0, 1, byte]);
        }
        rest = &body[len..];
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_hello_split_into_single_bytes_still_completes() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let config = Arc::new(
        ClientOptions::new(&pki)
            .identity(pki.client())
            .rustls_config(),
    );

    let mut dribblers = Vec::new();
    for how in [
        Dribble::Bytes,
        Dribble::Bytes,
        Dribble::Bytes,
        Dribble::Records,
        Dribble::Records,
    ] {
        let (addr, config) = (server.addr, config.clone());
        let started = Instant::now();
        dribblers.push(tokio::task::spawn_blocking(move || {
            (how, dribbled_request(addr, config, how), started.elapsed())
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "while five ClientHellos dribbled in");

    for dribbler in dribblers {
        let (how, response, took) = tokio::time::timeout(PATIENCE, dribbler)
            .await
            .expect("a dribbling client was never answered")
            .unwrap();
        assert!(response.starts_with("HTTP/1.1 200"), "{how:?}: {response}");
        eprintln!("dribbled ClientHello ({how:?}): answered 200 after {took:?}");
    }
}

// ---------------------------------------------------------------------------
// Oversized request heads over HTTP/1.1
// ---------------------------------------------------------------------------

/// What a raw HTTP/1.1 exchange ended with.
#[derive(Debug)]
struct RawOutcome {
    /// Everything the server sent, as text.
    response: String,
    /// The server ended the connection (EOF or reset) rather than waiting.
    closed: bool,
}

/// Sends `head` over mTLS while reading whatever the server answers, until
/// it closes the connection.
async fn raw_http1(server: &TestServer, pki: &TestPki, head: Vec<u8>) -> RawOutcome {
    let options = ClientOptions::new(pki).identity(pki.client());
    let tls = mtls_connect(server.addr, &options).await;
    let (mut reader, mut writer) = tokio::io::split(tls);
    let writing = tokio::spawn(async move {
        for chunk in head.chunks(16 * 1024) {
            if writer.write_all(chunk).await.is_err() {
                return;
            }
        }
        let _ = writer.flush().await;
        // Keep the write half open: the server decides when this ends.
        tokio::time::sleep(PATIENCE).await;
    });
    let mut response = Vec::new();
    let mut buf = [0u8; 4096];
    let closed = loop {
        match tokio::time::timeout(PATIENCE, reader.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => break true,
            Ok(Ok(n)) => response.extend_from_slice(&buf[..n]),
            Err(_) => break false,
        }
    };
    writing.abort();
    RawOutcome {
        response: String::from_utf8_lossy(&response).into_owned(),
        closed,
    }
}

fn request_head(extra: &[u8]) -> Vec<u8> {
    let mut head = format!("GET / HTTP/1.1\r\nHost: {DOMAIN}\r\n").into_bytes();
    head.extend_from_slice(extra);
    head.extend_from_slice(b"\r\n");
    head
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_http1_headers_get_431_and_the_server_stays_responsive() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    // 50 kB in all, under the 64 KiB head limit: the header count is what
    // is refused here, not the size.
    let head = request_head(&b"a:b\r\n".repeat(10_000));
    let started = Instant::now();
    let outcome = raw_http1(&server, &pki, head).await;
    eprintln!(
        "10,000 HTTP/1.1 headers: {outcome:?} after {:?}",
        started.elapsed()
    );
    assert!(outcome.response.starts_with("HTTP/1.1 431"), "{outcome:?}");
    assert!(outcome.closed, "the connection stayed open: {outcome:?}");
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "after 10,000 headers");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_http1_header_line_gets_431_and_the_server_stays_responsive() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let mut line = b"x-big: ".to_vec();
    line.extend(std::iter::repeat_n(b'a', 1 << 20));
    line.extend_from_slice(b"\r\n");
    let started = Instant::now();
    let outcome = raw_http1(&server, &pki, request_head(&line)).await;
    eprintln!(
        "1 MB HTTP/1.1 header line: {outcome:?} after {:?}",
        started.elapsed()
    );
    assert!(outcome.response.starts_with("HTTP/1.1 431"), "{outcome:?}");
    assert!(outcome.closed, "the connection stayed open: {outcome:?}");
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "after a 1 MB header line");
}

// ---------------------------------------------------------------------------
// Oversized request heads over HTTP/2 (with the h2 crate as the client)
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ten_thousand_h2_headers_get_431_and_the_connection_lives_on() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let options = ClientOptions::new(&pki).identity(pki.client()).alpn_h2();
    let tls = mtls_connect(server.addr, &options).await;
    assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
    let (client, connection) = h2::client::handshake(tls).await.unwrap();
    let driver = tokio::spawn(connection);
    let get = |headers: usize| {
        let mut request = hyper::Request::get(format!("https://{DOMAIN}/"));
        for i in 0..headers {
            request = request.header(format!("x-h{i}"), "v");
        }
        let client = client.clone();
        async move {
            let mut client = client.ready().await?;
            let (response, _) = client.send_request(request.body(()).unwrap(), true)?;
            Ok::<_, h2::Error>(response.await?.status())
        }
    };

    let started = Instant::now();
    let status = tokio::time::timeout(PATIENCE, get(10_000))
        .await
        .expect("no answer to 10,000 h2 headers");
    eprintln!(
        "10,000 h2 headers: {status:?} after {:?}",
        started.elapsed()
    );
    assert_eq!(status.unwrap(), StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE);
    // Only the stream was refused: the same connection still serves.
    let status = tokio::time::timeout(PATIENCE, get(1)).await.unwrap();
    assert_eq!(status.unwrap(), StatusCode::OK);
    driver.abort();
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "after 10,000 h2 headers");
}

// ---------------------------------------------------------------------------
// Hand-made HTTP/2 frames: what no client library would send
// ---------------------------------------------------------------------------

mod frame {
    pub const HEADERS: u8 = 0x1;
    pub const RST_STREAM: u8 = 0x3;
    pub const SETTINGS: u8 = 0x4;
    pub const GOAWAY: u8 = 0x7;
    pub const CONTINUATION: u8 = 0x9;

    pub const END_STREAM: u8 = 0x1;
    pub const END_HEADERS: u8 = 0x4;
    pub const ACK: u8 = 0x1;

    pub const CANCEL: u32 = 0x8;
    pub const ENHANCE_YOUR_CALM: u32 = 0xb;

    pub fn encode(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len() as u32;
        let mut out = Vec::with_capacity(9 + payload.len());
        out.extend_from_slice(&len.to_be_bytes()[1..]);
        out.push(kind);
        out.push(flags);
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    /// `GET https://DOMAIN/` in HPACK: static-table entries for the method,
    /// scheme and path, and the authority as a literal without indexing.
    pub fn get_request_block() -> Vec<u8> {
        let mut block = vec![0x82, 0x87, 0x84, 0x01];
        block.push(super::DOMAIN.len() as u8);
        block.extend_from_slice(super::DOMAIN.as_bytes());
        block
    }

    /// An HPACK integer with an `prefix`-bit prefix; `flags` fills the
    /// bits above it in the first byte.
    pub fn integer(out: &mut Vec<u8>, value: usize, prefix: u32, flags: u8) {
        let max = (1usize << prefix) - 1;
        if value < max {
            out.push(flags | value as u8);
            return;
        }
        out.push(flags | max as u8);
        let mut rest = value - max;
        while rest >= 128 {
            out.push(0x80 | (rest % 128) as u8);
            rest /= 128;
        }
        out.push(rest as u8);
    }

    /// A literal header field without indexing, with a new name.
    pub fn literal_header(name: &[u8], value: &[u8]) -> Vec<u8> {
        let mut out = vec![0x00];
        integer(&mut out, name.len(), 7, 0);
        out.extend_from_slice(name);
        integer(&mut out, value.len(), 7, 0);
        out.extend_from_slice(value);
        out
    }

    /// A header block as HEADERS plus CONTINUATION frames of at most
    /// 16 KiB (the default SETTINGS_MAX_FRAME_SIZE).
    pub fn header_block_frames(stream: u32, block: &[u8]) -> Vec<u8> {
        let pieces: Vec<&[u8]> = block.chunks(16 * 1024).collect();
        let mut out = Vec::new();
        for (i, piece) in pieces.iter().enumerate() {
            let kind = if i == 0 { HEADERS } else { CONTINUATION };
            let mut flags = if i == 0 { END_STREAM } else { 0 };
            if i == pieces.len() - 1 {
                flags |= END_HEADERS;
            }
            out.extend(encode(kind, flags, stream, piece));
        }
        out
    }

    #[derive(Debug)]
    pub struct Frame {
        pub kind: u8,
        pub flags: u8,
        pub payload: Vec<u8>,
    }
}

/// What the server sent on a raw h2 connection until it closed it.
#[derive(Debug, Default)]
struct ServerFrames {
    /// `(last stream id, error code)` of the GOAWAY, if one came.
    go_away: Option<(u32, u32)>,
    /// The GOAWAY's debug data (h2 names the limit there).
    go_away_text: String,
    headers: usize,
    resets: usize,
    /// The server closed the connection (EOF or reset).
    closed: bool,
}

/// An HTTP/2 connection over mTLS that writes frames as given.
struct RawH2 {
    writer: WriteHalf<TlsStream<TcpStream>>,
    reading: tokio::task::JoinHandle<ServerFrames>,
    /// Set once the server's GOAWAY arrived or the connection ended.
    ended: Arc<AtomicBool>,
}

impl RawH2 {
    /// Connects, sends the preface and empty SETTINGS, and acknowledges the
    /// server's SETTINGS.
    async fn connect(server: &TestServer, pki: &TestPki) -> RawH2 {
        let options = ClientOptions::new(pki).identity(pki.client()).alpn_h2();
        let tls = mtls_connect(server.addr, &options).await;
        assert_eq!(tls.get_ref().1.alpn_protocol(), Some(&b"h2"[..]));
        let (mut reader, mut writer) = tokio::io::split(tls);
        let mut hello = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
        hello.extend(frame::encode(frame::SETTINGS, 0, 0, &[]));
        writer.write_all(&hello).await.unwrap();
        loop {
            let next = tokio::time::timeout(PATIENCE, read_frame(&mut reader)).await;
            let f = next.expect("no SETTINGS from the server").unwrap().unwrap();
            if f.kind == frame::SETTINGS && f.flags & frame::ACK == 0 {
                break;
            }
        }
        writer
            .write_all(&frame::encode(frame::SETTINGS, frame::ACK, 0, &[]))
            .await
            .unwrap();
        let ended = Arc::new(AtomicBool::new(false));
        let reading = tokio::spawn(collect_frames(reader, ended.clone()));
        RawH2 {
            writer,
            reading,
            ended,
        }
    }

    /// Writes `bytes`; false once the server has ended the connection.
    async fn send(&mut self, bytes: &[u8]) -> bool {
        !self.ended.load(Ordering::SeqCst) && self.writer.write_all(bytes).await.is_ok()
    }

    /// What the server sent, once it closed the connection.
    async fn server_frames(self) -> ServerFrames {
        let RawH2 {
            writer, reading, ..
        } = self;
        let frames = tokio::time::timeout(PATIENCE, reading)
            .await
            .expect("the server never closed the connection")
            .unwrap();
        drop(writer);
        frames
    }
}

async fn read_frame(
    reader: &mut ReadHalf<TlsStream<TcpStream>>,
) -> std::io::Result<Option<frame::Frame>> {
    let mut head = [0u8; 9];
    match reader.read_exact(&mut head).await {
        Ok(_) => {}
        Err(err) if err.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(err) => return Err(err),
    }
    let len = u32::from_be_bytes([0, head[0], head[1], head[2]]) as usize;
    let mut payload = vec![0u8; len];
    reader.read_exact(&mut payload).await?;
    Ok(Some(frame::Frame {
        kind: head[3],
        flags: head[4],
        payload,
    }))
}

async fn collect_frames(
    mut reader: ReadHalf<TlsStream<TcpStream>>,
    ended: Arc<AtomicBool>,
) -> ServerFrames {
    let mut seen = ServerFrames::default();
    loop {
        match read_frame(&mut reader).await {
            Ok(Some(f)) => match f.kind {
                frame::GOAWAY => {
                    let word =
                        |i: usize| u32::from_be_bytes(f.payload[i..i + 4].try_into().unwrap());
                    seen.go_away = Some((word(0) & 0x7fff_ffff, word(4)));
                    seen.go_away_text = String::from_utf8_lossy(&f.payload[8..]).into_owned();
                    ended.store(true, Ordering::SeqCst);
                }
                frame::HEADERS => seen.headers += 1,
                frame::RST_STREAM => seen.resets += 1,
                _ => {}
            },
            Ok(None) | Err(_) => {
                seen.closed = true;
                ended.store(true, Ordering::SeqCst);
                return seen;
            }
        }
    }
}

/// Process CPU time (user + system) so far, in clock ticks.
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_rapid_reset_burst_gets_goaway_and_the_server_stays_responsive() {
    const PAIRS: u32 = 10_000;
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let mut conn = RawH2::connect(&server, &pki).await;
    let block = frame::get_request_block();

    let ticks_before = cpu_ticks();
    let started = Instant::now();
    let burst = async {
        let mut sent = 0;
        'burst: for batch in 0..PAIRS / 100 {
            let mut bytes = Vec::new();
            for i in 0..100 {
                let stream = 2 * (batch * 100 + i) + 1;
                let flags = frame::END_STREAM | frame::END_HEADERS;
                bytes.extend(frame::encode(frame::HEADERS, flags, stream, &block));
                let cancel = frame::CANCEL.to_be_bytes();
                bytes.extend(frame::encode(frame::RST_STREAM, 0, stream, &cancel));
            }
            if !conn.send(&bytes).await {
                break 'burst;
            }
            sent += 100;
        }
        sent
    };
    let during = async {
        tokio::time::sleep(Duration::from_millis(5)).await;
        timed_request(&server, &pki).await
    };
    let (sent, elapsed_during) = tokio::join!(burst, during);
    let frames = conn.server_frames().await;
    let took = started.elapsed();
    let ticks = cpu_ticks() - ticks_before;
    eprintln!(
        "rapid reset: {sent} of {PAIRS} HEADERS+RST_STREAM pairs written before the \
         connection ended; server sent {frames:?}; {took:?}; process CPU {ticks} ticks"
    );
    assert_served_within_a_second(elapsed_during, "during a rapid-reset burst");
    let (last_stream, code) = frames.go_away.expect("no GOAWAY after the burst");
    assert_eq!(code, frame::ENHANCE_YOUR_CALM, "{frames:?}");
    assert_eq!(frames.go_away_text, "too_many_resets");
    assert!(
        last_stream < 2 * PAIRS,
        "the server accepted every stream: {frames:?}"
    );
    assert!(frames.closed);
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "after a rapid-reset burst");
}

/// The reverse of rapid reset (CVE-2025-8671, "MadeYouReset"): requests
/// that make the server reset the stream itself. Each is malformed (a
/// `connection` header, which HTTP/2 forbids); the server resets them
/// with PROTOCOL_ERROR, and after its limit of such resets sends GOAWAY.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_burst_of_malformed_requests_gets_goaway_after_the_reset_limit() {
    const REQUESTS: u32 = 5_000;
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let mut conn = RawH2::connect(&server, &pki).await;
    let mut block = frame::get_request_block();
    block.extend(frame::literal_header(b"connection", b"close"));

    let started = Instant::now();
    let mut sent = 0;
    for batch in 0..REQUESTS / 100 {
        let mut bytes = Vec::new();
        for i in 0..100 {
            let stream = 2 * (batch * 100 + i) + 1;
            let flags = frame::END_STREAM | frame::END_HEADERS;
            bytes.extend(frame::encode(frame::HEADERS, flags, stream, &block));
        }
        if !conn.send(&bytes).await {
            break;
        }
        sent += 100;
    }
    let frames = conn.server_frames().await;
    eprintln!(
        "malformed-request burst: {sent} of {REQUESTS} written before the connection ended; \
         server sent {frames:?}; {:?}",
        started.elapsed()
    );
    let (_, code) = frames.go_away.expect("no GOAWAY after the malformed burst");
    assert_eq!(code, frame::ENHANCE_YOUR_CALM, "{frames:?}");
    assert_eq!(frames.headers, 0, "a malformed request was served");
    assert_eq!(frames.go_away_text, "too_many_internal_resets");
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "after a malformed-request burst");
}

/// HEADERS without END_HEADERS, then CONTINUATION frames of `piece` bytes
/// of header block each (literal headers `x: aaa...`), until 10 MB are
/// written or the server ends the connection. Returns the bytes written.
async fn continuation_flood(
    server: &TestServer,
    pki: &TestPki,
    piece: usize,
) -> (usize, ServerFrames) {
    const BUDGET: usize = 10 << 20;
    let mut conn = RawH2::connect(server, pki).await;
    let mut block = std::iter::repeat(frame::literal_header(b"x", &[b'a'; 100])).flatten();
    let first = frame::encode(
        frame::HEADERS,
        frame::END_STREAM,
        1,
        &frame::get_request_block(),
    );
    let mut sent = 0;
    if conn.send(&first).await {
        while sent < BUDGET {
            let mut batch = Vec::new();
            while batch.len() < 64 * 1024 {
                let payload: Vec<u8> = block.by_ref().take(piece).collect();
                batch.extend(frame::encode(frame::CONTINUATION, 0, 1, &payload));
            }
            if !conn.send(&batch).await {
                break;
            }
            sent += batch.len();
        }
    }
    (sent, conn.server_frames().await)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h2_continuation_flood_is_cut_off_with_bounded_memory() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let (rss_before, peak_before) = (memory_kib("VmRSS"), memory_kib("VmHWM"));

    for piece in [16 * 1024, 1] {
        let started = Instant::now();
        let (sent, frames) = continuation_flood(&server, &pki, piece).await;
        eprintln!(
            "CONTINUATION flood ({piece}-byte frames): {sent} bytes written in whole \
             batches before the connection ended; server sent {frames:?}; {:?}",
            started.elapsed()
        );
        let (_, code) = frames.go_away.expect("no GOAWAY after the flood");
        assert_eq!(code, frame::ENHANCE_YOUR_CALM, "{frames:?}");
        assert_eq!(frames.go_away_text, "too_many_continuations");
        assert!(frames.closed);
        assert_eq!(frames.headers, 0, "the flooded request was served");
        let elapsed = timed_request(&server, &pki).await;
        assert_served_within_a_second(elapsed, "after a CONTINUATION flood");
    }

    let (rss_after, peak_after) = (memory_kib("VmRSS"), memory_kib("VmHWM"));
    eprintln!(
        "CONTINUATION flood memory: VmRSS {rss_before} -> {rss_after} KiB, \
         VmHWM {peak_before} -> {peak_after} KiB"
    );
    assert!(
        peak_after.saturating_sub(peak_before) < 64 * 1024,
        "peak memory grew by {} KiB",
        peak_after - peak_before
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_one_megabyte_h2_header_is_refused_and_the_server_stays_responsive() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let mut conn = RawH2::connect(&server, &pki).await;
    let mut block = frame::get_request_block();
    block.extend(frame::literal_header(b"x-big", &vec![b'a'; 1 << 20]));
    let started = Instant::now();
    let complete = conn.send(&frame::header_block_frames(1, &block)).await;
    let frames = conn.server_frames().await;
    eprintln!(
        "1 MB h2 header: all frames written: {complete}; server sent {frames:?}; {:?}",
        started.elapsed()
    );
    let (_, code) = frames.go_away.expect("no GOAWAY after a 1 MB header");
    assert_eq!(code, frame::ENHANCE_YOUR_CALM, "{frames:?}");
    assert_eq!(frames.go_away_text, "too_many_continuations");
    assert_eq!(frames.headers, 0, "the request was served");
    let elapsed = timed_request(&server, &pki).await;
    assert_served_within_a_second(elapsed, "after a 1 MB h2 header");
}

/// A real request over the raw connection, to show the frames are sound:
/// the same HEADERS without the abuse is answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hand_made_h2_request_is_answered() {
    let _turn = ONE_ATTACK_AT_A_TIME.lock().await;
    let pki = TestPki::new();
    let server = start_server(&pki).await;
    let mut conn = RawH2::connect(&server, &pki).await;
    let flags = frame::END_STREAM | frame::END_HEADERS;
    let request = frame::encode(frame::HEADERS, flags, 1, &frame::get_request_block());
    let goaway = frame::encode(frame::GOAWAY, 0, 0, &[0; 8]);
    assert!(conn.send(&request).await);
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(conn.send(&goaway).await);
    let frames = conn.server_frames().await;
    assert_eq!(frames.headers, 1, "{frames:?}");
    assert_eq!(frames.resets, 0, "{frames:?}");
}
