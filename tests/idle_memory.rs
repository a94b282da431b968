//! What a parked connection keeps on the heap: rustls' state and the
//! connection's task, not hyper's buffers. A counting allocator measures the
//! bytes the server's runtime thread holds for 100 parked connections, so a
//! buffer kept through the park by mistake (hyper's 8 KiB read buffer once
//! was) fails here instead of only showing in the benchmark's memory table.
//!
//! Its own test binary: the allocator is global to the process.

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

/// Counts the live bytes allocated (and freed) on threads marked `COUNTED`:
/// the server runtime's worker, not the test's clients.
struct CountingAllocator;

thread_local! {
    static COUNTED: Cell<bool> = const { Cell::new(false) };
}

static LIVE_BYTES: AtomicIsize = AtomicIsize::new(0);

fn count(delta: isize) {
    // `try_with`: the allocator also runs while a thread's locals are torn down.
    if COUNTED.try_with(Cell::get).unwrap_or(false) {
        LIVE_BYTES.fetch_add(delta, Relaxed);
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
    let mut config = pki.config(ClientAuthMode::Required);
    config.admin_listen = Some("127.0.0.1:0".parse().unwrap());
    let server_runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .on_thread_start(|| COUNTED.with(|counted| counted.set(true)))
        .enable_all()
        .build()
        .unwrap();
    let server = server_runtime.block_on(TestServer::start(config));
    let admin = server.admin.unwrap();

    let clients = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    clients.block_on(async {
        // One connection first, so one-time allocations (session cache,
        // metrics series, lazily built state) are not counted per connection.
        let warm_up = open_answered(&server, &pki).await;
        wait_parked(admin, 1).await;
        let before = LIVE_BYTES.load(Relaxed);

        let mut held = Vec::new();
        for _ in 0..CONNECTIONS {
            held.push(open_answered(&server, &pki).await);
        }
        wait_parked(admin, CONNECTIONS as u64 + 1).await;
        let per_connection = (LIVE_BYTES.load(Relaxed) - before) / CONNECTIONS as isize;
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
