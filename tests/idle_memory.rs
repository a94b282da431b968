//! What the server's thread keeps and takes on the heap, measured with a
//! counting allocator:
//! - a parked connection keeps rustls' state and the connection's task, not
//!   hyper's buffers (hyper's 8 KiB read buffer once was kept through the
//!   park);
//! - a keep-alive request takes no new read buffer (it once did, because a
//!   request still alive when hyper read again pinned the old one).
//!
//! Either would otherwise show only in the benchmark's tables.
//!
//! Its own test binary: the allocator is global to the process. The tests
//! run side by side, so each counts the threads of its own server.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, Ordering::Relaxed};

use common::raw::{connect, read_response, wait_parked};
use common::{TestPki, TestServer};
use mtls::config::ClientAuthMode;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio_rustls::client::TlsStream;

/// Counts, per test, the bytes allocated and freed on the threads that test
/// marked in `COUNTED`: its server runtime's worker, not its clients.
struct CountingAllocator;

/// One slot per test.
const PARKED: usize = 0;
const KEEP_ALIVE: usize = 1;

thread_local! {
    static COUNTED: Cell<Option<usize>> = const { Cell::new(None) };
}

/// Bytes allocated minus bytes freed.
static LIVE_BYTES: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];
/// Bytes allocated (a growing `realloc` counts its growth).
static ALLOCATED_BYTES: [AtomicIsize; 2] = [AtomicIsize::new(0), AtomicIsize::new(0)];

fn count(delta: isize) {
    // `try_with`: the allocator also runs while a thread's locals are torn down.
    if let Some(slot) = COUNTED.try_with(Cell::get).ok().flatten() {
        LIVE_BYTES[slot].fetch_add(delta, Relaxed);
        if delta > 0 {
            ALLOCATED_BYTES[slot].fetch_add(delta, Relaxed);
        }
    }
}

unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            count(layout.size() as isize);
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            count(new_size as isize - layout.size() as isize);
        }
        new
    }
}

/// A server whose runtime's threads count into `slot`.
fn counted_server(slot: usize, pki: &TestPki) -> (tokio::runtime::Runtime, TestServer) {
    let mut config = pki.config(ClientAuthMode::Required);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(move || COUNTED.with(|counted| counted.set(Some(slot))))
        .enable_all()
        .build()
        .unwrap();
    let server = server_runtime.block_on(TestServer::start(config));
    (server_runtime, server)
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[global_allocator]
static ALLOCATOR: CountingAllocator = CountingAllocator;

/// Each connection also leaves a session-cache entry (rustls keeps 256),
/// part of the per-connection figure: far more connections than that would
/// lower it.
const CONNECTIONS: usize = 100;

/// Measured: about 13.0 KB in a debug build (rustls' 4 KiB receive buffer,
/// its keys and connection state, the task, the session cache entry), 21 KB
/// when hyper's 8 KiB read buffer was kept through the park.
const PARKED_BYTES_BOUND: isize = 16_000;

#[test]
fn a_parked_connection_keeps_rustls_state_not_hyper_buffers() {
    let pki = TestPki::new();
    let (server_runtime, server) = counted_server(PARKED, &pki);
    let admin = server.admin.unwrap();
    client_runtime().block_on(async {
        // One connection first, so one-time allocations (session cache,
        // metrics series, lazily built state) are not counted per connection.
        let warm_up = open_answered(&server, &pki).await;
        wait_parked(admin, 1).await;
        let before = LIVE_BYTES[PARKED].load(Relaxed);

        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            held.push(open_answered(&server, &pki).await);
        }
        wait_parked(admin, CONNECTIONS as u64 + 1).await;
        let per_connection = (LIVE_BYTES[PARKED].load(Relaxed) - before) / CONNECTIONS as isize;
        eprintln!("live bytes per parked connection: {per_connection}");
        assert!(
            per_connection < PARKED_BYTES_BOUND,
            "a parked connection holds {per_connection} bytes, more than {PARKED_BYTES_BOUND}: \
             is a hyper buffer kept through the park?"
        );
        assert!(
            per_connection > 4096,
            "{per_connection} bytes per connection is less than rustls' receive buffer: \
             the counting allocator does not see the server's thread"
        );
        drop((held, warm_up));
    });
    server_runtime.block_on(server.stop());
}

/// Requests measured on one connection, after as many to warm up.
const REQUESTS: usize = 200;

/// Measured in a debug build: about 0.9 KB per request (the answer's header
/// map and body, rustls' plaintext and record buffers); 9.3 KB when the
/// service's future kept the request's headers until hyper polled it, so
/// that each request took a new 8 KiB read buffer.
const REQUEST_BYTES_BOUND: isize = 4_000;

#[test]
fn a_keep_alive_request_takes_no_new_read_buffer() {
    let pki = TestPki::new();
    let (server_runtime, server) = counted_server(KEEP_ALIVE, &pki);
    client_runtime().block_on(async {
        let mut tls = open_answered(&server, &pki).await;
        let mut pending = Vec::new();
        let mut exchange = async |tls: &mut TlsStream<TcpStream>| {
            tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
                .await
                .unwrap();
            let (status, _) = read_response(tls, &mut pending).await;
            assert_eq!(status, "HTTP/1.1 200 OK");
        };
        for _ in 0..REQUESTS {
            exchange(&mut tls).await;
        }
        let before = ALLOCATED_BYTES[KEEP_ALIVE].load(Relaxed);
        for _ in 0..REQUESTS {
            exchange(&mut tls).await;
        }
        let per_request = (ALLOCATED_BYTES[KEEP_ALIVE].load(Relaxed) - before) / REQUESTS as isize;
        eprintln!("bytes allocated per keep-alive request: {per_request}");
        assert!(
            per_request < REQUEST_BYTES_BOUND,
            "a keep-alive request allocates {per_request} bytes, more than {REQUEST_BYTES_BOUND}: \
             does hyper take a new read buffer for each request?"
        );
        assert!(
            per_request > 100,
            "{per_request} bytes per request: the counting allocator does not see the server's thread"
        );
    });
    server_runtime.block_on(server.stop());
}

/// A connection that was answered once (`GET /`) and is left open.
async fn open_answered(server: &TestServer, pki: &TestPki) -> TlsStream<TcpStream> {
    let mut tls = connect(server, pki).await;
    tls.write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .unwrap();
    let (status, _) = read_response(&mut tls, &mut Vec::new()).await;
    assert_eq!(status, "HTTP/1.1 200 OK");
    tls
}
