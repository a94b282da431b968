//! HTTP/1.1 connections that give hyper's buffers back while they wait.
//!
//! hyper holds an 8 KiB read buffer, an 8 KiB write buffer and about 3 KB of
//! connection state for the whole life of an HTTP/1.1 connection, idle or
//! not, and most keep-alive connections are idle most of the time. nginx
//! frees its buffers on an idle keep-alive connection; this module does the
//! same with hyper's public API:
//!
//! - hyper serves requests on a [`ParkingIo`] around the TLS stream;
//! - when hyper's last read found nothing to read, no request or response
//!   is in flight and the last answer is flushed, the connection is idle;
//! - after one to two [`PARK_AFTER`] idle, the driver asks hyper to close
//!   the idle connection (`graceful_shutdown`, which on an idle connection
//!   writes nothing), skips the TLS shutdown and takes the stream back with
//!   any bytes hyper had read but not used (`into_parts`): the start of a
//!   pipelined or slow request head, which the next hyper gets first;
//! - the parked connection waits for the socket to become readable, under
//!   the header-read timeout, then hyper starts again on the same stream.
//!
//! Not parked: a hyper connection that has read bytes but dispatched
//! nothing, one that saw `Upgrade` or CONNECT, and one whose request or
//! response body is still alive. Bytes that carry no request (TLS records
//! without plaintext) do not move a parked connection's idle deadline.
//!
//! The driver, not hyper, enforces the header-read timeout: a request head
//! must be complete within it from when the driver first sees it waiting
//! (its first bytes; for a head pipelined behind another request, the end
//! of that exchange or the park after it), parks included. A connection
//! that cannot park (it saw `Upgrade`, or its client does not read) is
//! closed after that long idle. hyper's own timer costs an allocation and
//! a timer-wheel entry on every request (callgrind: 1.5k of 20.7k
//! instructions per keep-alive request); this one is armed only when a
//! head arrives in pieces or an unparkable connection waits.
//!
//! The driver enforces the send timeout too: while hyper cannot write
//! because the client takes nothing (a client that stopped reading a large
//! answer), the connection is closed once the client has taken no bytes
//! for that long, as nginx's `send_timeout` does. Without it, such a
//! client would hold its connection, and the upstream's, for ever.
//!
//! The client sees one ordinary keep-alive connection. The grace period
//! keeps busy connections from paying for a new hyper connection on every
//! request (callgrind: about 7k instructions a park, a quarter of a
//! request).

use std::future::{Future, poll_fn};
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::{Buf, Bytes};
use hyper::body::{Body, Frame, Incoming, SizeHint};
use hyper::server::conn::http1;
use hyper::service::HttpService;
use hyper_util::rt::TokioIo;
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::server::TlsStream;
use tracing::{debug, trace};

use crate::drain::Stop;

/// How long an HTTP/1.1 connection waits idle before it is parked.
pub const PARK_AFTER: Duration = Duration::from_millis(50);

/// What the IO, the service and the driver of one connection know about
/// whether hyper is idle. Atomics only because hyper wants `Send`: all three
/// run on the connection's task.
#[derive(Debug, Default)]
pub struct ParkState {
    /// Request and response bodies not dropped yet (two per request).
    in_flight: AtomicU32,
    /// The running hyper connection dispatched a request. Until then, hyper
    /// closes at `graceful_shutdown` only if it has read nothing (otherwise
    /// it would finish the request with `Connection: close`), and a head cut
    /// by a park must not restart hyper's header-read timeout again and again.
    dispatched: AtomicBool,
    /// The running hyper connection was given request bytes.
    got_any: AtomicBool,
    /// The running hyper connection saw a request with `Upgrade` or a
    /// CONNECT: hyper keeps a pending upgrade for it even when the answer
    /// is not 101, and would hand the stream to it when closed, so such a
    /// connection is never parked.
    upgrade_seen: AtomicBool,
    /// Bytes were written since the last successful flush.
    unflushed: AtomicBool,
    /// hyper's last read of the stream found nothing to read: hyper waits
    /// for the client (the read registered the task for the socket).
    read_blocked: AtomicBool,
    /// Request bytes arrived outside an exchange (no body alive) and hyper
    /// has not dispatched a request since: a head is arriving, and the
    /// header-read timeout applies.
    head_started: AtomicBool,
    /// Reads that returned request bytes: a new value means new activity.
    reads: AtomicU32,
    /// Writes that took bytes: a new value means the client reads.
    writes: AtomicU32,
    /// hyper's last write or flush could not go on: the client is not
    /// taking bytes (the send timeout applies).
    write_blocked: AtomicBool,
    /// The driver is parking: the IO's shutdown must not end the TLS stream.
    parking: AtomicBool,
}

impl ParkState {
    /// Called when hyper hands a request to the service. Returns two
    /// guards, for the request body and for the response body: the
    /// connection is busy until both bodies are dropped. `may_upgrade`: the
    /// request is a CONNECT or carries `Upgrade`.
    pub fn dispatched(self: &Arc<Self>, may_upgrade: bool) -> [InFlight; 2] {
        self.in_flight.fetch_add(2, Relaxed);
        self.dispatched.store(true, Relaxed);
        self.head_started.store(false, Relaxed);
        if may_upgrade {
            self.upgrade_seen.store(true, Relaxed);
        }
        [InFlight(self.clone()), InFlight(self.clone())]
    }

    /// For an h2 connection, which is never parked: true when no stream is
    /// open and none was started since the last look.
    pub fn idle_since_last_look(&self) -> bool {
        let started = self.dispatched.swap(false, Relaxed);
        !started && self.in_flight.load(Relaxed) == 0
    }

    fn got_bytes(&self) {
        self.got_any.store(true, Relaxed);
        if self.in_flight.load(Relaxed) == 0 {
            self.head_started.store(true, Relaxed);
        }
        // Only this connection's task touches it: no need for a locked add.
        self.reads
            .store(self.reads.load(Relaxed).wrapping_add(1), Relaxed);
    }

    /// After a write of hyper's: unflushed until the next flush, and
    /// progress if the stream took bytes.
    fn wrote(&self, written: &Poll<io::Result<usize>>) {
        self.unflushed.store(true, Relaxed);
        self.write_blocked.store(written.is_pending(), Relaxed);
        if matches!(written, Poll::Ready(Ok(n)) if *n > 0) {
            self.writes
                .store(self.writes.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }

    /// hyper waits for the client (to send, or to read what is unflushed)
    /// with no exchange in flight.
    fn waiting(&self) -> bool {
        self.read_blocked.load(Relaxed) && self.in_flight.load(Relaxed) == 0
    }

    /// A waiting hyper connection that may be closed and parked.
    fn parkable(&self) -> bool {
        (self.dispatched.load(Relaxed) || !self.got_any.load(Relaxed))
            && !self.upgrade_seen.load(Relaxed)
            && !self.unflushed.load(Relaxed)
    }
}

/// A request's body as the service sees it: holds an [`InFlight`] guard
/// (on HTTP/1.1) until the body is dropped, so that a connection whose
/// request body is still being read (a proxied upload the upstream
/// answered early) does not count as idle.
pub type RequestBody = TrackedBody<Incoming>;

/// A request or response body in flight; see [`ParkState::dispatched`].
#[derive(Debug)]
pub struct InFlight(Arc<ParkState>);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Relaxed);
    }
}

/// A request or response body that holds an [`InFlight`] guard (none on
/// h2, which is not parked) until it is dropped.
#[derive(Debug)]
pub struct TrackedBody<B> {
    body: B,
    _in_flight: Option<InFlight>,
}

impl<B> TrackedBody<B> {
    pub fn new(body: B, in_flight: Option<InFlight>) -> Self {
        TrackedBody {
            body,
            _in_flight: in_flight,
        }
    }
}

impl<B: Body + Unpin> Body for TrackedBody<B> {
    type Data = B::Data;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.body).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

/// The TLS stream as hyper sees it: first the bytes hyper had read before
/// the connection was parked, then the stream; reports idleness to the
/// driver and keeps the stream open when the driver parks.
pub struct ParkingIo {
    /// Boxed: the stream (rustls' state is most of it) moves in and out of
    /// hyper on every park, and a pointer is cheaper to move.
    stream: Box<TlsStream<TcpStream>>,
    unread: Bytes,
    state: Arc<ParkState>,
}

impl AsyncRead for ParkingIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.unread.is_empty() {
            let n = this.unread.len().min(buf.remaining());
            buf.put_slice(&this.unread[..n]);
            this.unread.advance(n);
            this.state.got_bytes();
            return Poll::Ready(Ok(()));
        }
        let before = buf.filled().len();
        let polled = Pin::new(&mut this.stream).poll_read(cx, buf);
        match polled {
            Poll::Pending => this.state.read_blocked.store(true, Relaxed),
            Poll::Ready(ref result) => {
                this.state.read_blocked.store(false, Relaxed);
                if result.is_ok() && buf.filled().len() > before {
                    this.state.got_bytes();
                }
            }
        }
        polled
    }
}

impl AsyncWrite for ParkingIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write(cx, buf);
        self.state.wrote(&written);
        written
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let written = Pin::new(&mut self.stream).poll_write_vectored(cx, bufs);
        self.state.wrote(&written);
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.stream.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let flushed = Pin::new(&mut self.stream).poll_flush(cx);
        self.state
            .write_blocked
            .store(flushed.is_pending(), Relaxed);
        ready!(flushed)?;
        self.state.unflushed.store(false, Relaxed);
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        if self.state.parking.load(Relaxed) {
            return Poll::Ready(Ok(()));
        }
        // The close_notify is written too: a client that does not read it
        // is under the send timeout.
        let shut = Pin::new(&mut self.stream).poll_shutdown(cx);
        self.state.write_blocked.store(shut.is_pending(), Relaxed);
        shut
    }
}

/// How long a connection may wait for the client.
#[derive(Debug, Clone, Copy)]
pub struct Timeouts {
    /// From the end of an exchange (measured from the park) to the first
    /// bytes of the next request.
    pub idle: Duration,
    /// From the first bytes of a request head to its end.
    pub head: Duration,
    /// While an answer waits for the client to take more of it, from the
    /// last bytes it took.
    pub send: Duration,
}

/// What the driver waits for the client to do, under a deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// Take more of an answer.
    Send,
    /// Send the rest of a request head.
    Head,
    /// Send a next request on a connection that cannot park.
    Idle,
}

impl Wait {
    /// What the connection waits for now, if anything. A client that takes
    /// nothing comes first: the end of an answer (hyper holds it after the
    /// body is gone, with its read blocked) and a head pipelined behind it
    /// wait on that client too.
    fn now(write_blocked: bool, head_started: bool, stuck: bool) -> Option<Wait> {
        if write_blocked {
            Some(Wait::Send)
        } else if head_started {
            Some(Wait::Head)
        } else if stuck {
            Some(Wait::Idle)
        } else {
            None
        }
    }

    /// Whether this wait needs a new deadline, given the armed one and the
    /// writes that took bytes so far.
    fn must_arm(self, armed: Option<&WaitArmed>, writes: u32) -> bool {
        match armed {
            None => true,
            Some(armed) if armed.wait != self => true,
            // A head keeps its deadline, parks included.
            Some(_) if self == Wait::Head => false,
            // A client that takes more of an answer waits anew.
            Some(armed) => armed.writes != writes,
        }
    }
}

/// What the driver's wait deadline was armed for.
struct WaitArmed {
    wait: Wait,
    /// `ParkState::writes` when it was armed.
    writes: u32,
}

/// Serves HTTP/1.1 on `stream` until the client closes, an error, a
/// timeout, or `stop` (the server shutting down: the request in flight is
/// answered first, an idle connection is closed at once). `parked` counts
/// the connections waiting without hyper. `http` must have no header-read
/// timeout of its own.
pub async fn serve<S>(
    http: &http1::Builder,
    mut stream: Box<TlsStream<TcpStream>>,
    service: S,
    state: Arc<ParkState>,
    timeouts: Timeouts,
    parked: &Gauge,
    stop: &mut Stop,
) -> Result<(), hyper::Error>
where
    S: HttpService<Incoming> + Clone + Unpin + Send + 'static,
    S::Future: Send + 'static,
    S::ResBody: 'static,
    S::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
    <S::ResBody as Body>::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut stop_gate = stop.gate();
    let mut stop = std::pin::pin!(stop.requested());
    let mut stopping = false;
    // One timer for the connection's life: the grace period while hyper
    // runs, the idle timeout while parked.
    let mut timer = std::pin::pin!(tokio::time::sleep(PARK_AFTER));
    // While hyper runs: by when the client must have sent a whole request
    // head. Armed (a clock read) only when a head arrives in pieces, or when
    // a connection that cannot park waits for its next request; a head's
    // deadline is kept across parks.
    let mut wait_timer = std::pin::pin!(tokio::time::sleep(timeouts.head));
    let mut wait: Option<WaitArmed> = None;
    let mut timed_out = false;
    let mut unread = Bytes::new();
    // When a parked connection is closed. It moves only when a request's
    // bytes arrive: TLS records that carry none (a record trickled a byte
    // at a time, empty records) wake the connection but must not keep it.
    let mut idle_deadline: Option<Instant> = None;
    loop {
        for flag in [
            &state.parking,
            &state.read_blocked,
            &state.dispatched,
            &state.got_any,
            &state.upgrade_seen,
            &state.write_blocked,
        ] {
            flag.store(false, Relaxed);
        }
        let io = ParkingIo {
            stream,
            unread,
            state: state.clone(),
        };
        // Boxed: hyper's connection lives on the heap only while it runs.
        let mut conn = Box::new(
            http.serve_connection(TokioIo::new(io), service.clone())
                .with_upgrades(),
        );
        // The `reads` count when the grace timer was started, if it runs.
        let mut armed_at: Option<u32> = None;
        poll_fn(|cx| {
            if !stopping && stop_gate.poll_stopped(stop.as_mut(), cx) {
                stopping = true;
                Pin::new(&mut *conn).graceful_shutdown();
            }
            let polled = Pin::new(&mut *conn).poll(cx);
            if polled.is_ready() {
                return polled;
            }
            let waiting = state.waiting();
            let parkable = waiting && state.parkable();
            let writes = state.writes.load(Relaxed);
            match Wait::now(
                state.write_blocked.load(Relaxed),
                state.head_started.load(Relaxed),
                waiting && !parkable,
            ) {
                None => wait = None,
                Some(kind) if kind.must_arm(wait.as_ref(), writes) => {
                    let limit = match kind {
                        Wait::Send => timeouts.send,
                        Wait::Head => timeouts.head,
                        Wait::Idle => timeouts.idle,
                    };
                    wait_timer.as_mut().reset(Instant::now() + limit);
                    wait = Some(WaitArmed { wait: kind, writes });
                }
                Some(_) => {}
            }
            if wait.is_some() && wait_timer.as_mut().poll(cx).is_ready() {
                timed_out = true;
                return Poll::Ready(Ok(()));
            }
            if stopping || !parkable {
                return polled;
            }
            // Idle now. The timer is not moved on every request (that costs
            // a clock read each time): when it fires after activity, it is
            // started again, so a connection parks after one to two grace
            // periods idle, and a busy one wakes once a period.
            let reads = state.reads.load(Relaxed);
            let elapsed = armed_at.is_some() && timer.is_elapsed();
            if armed_at.is_none() || (elapsed && armed_at != Some(reads)) {
                armed_at = Some(reads);
                timer.as_mut().reset(Instant::now() + PARK_AFTER);
                let _ = timer.as_mut().poll(cx); // registers the waker
                return Poll::Pending;
            }
            if !elapsed {
                return Poll::Pending;
            }
            // Idle for the whole grace period: closing hyper writes
            // nothing, and ParkingIo keeps the TLS stream open.
            state.parking.store(true, Relaxed);
            Pin::new(&mut *conn).graceful_shutdown();
            let polled = Pin::new(&mut *conn).poll(cx);
            if polled.is_pending() {
                // Not idle after all (say, still reading a request body
                // after its answer): hyper will close after this exchange;
                // let it close the stream for real.
                state.parking.store(false, Relaxed);
                stopping = true;
            }
            polled
        })
        .await?;
        if timed_out {
            // As nginx does: no answer, the connection is closed.
            match wait.map(|armed| armed.wait) {
                Some(Wait::Head) => debug!(
                    "no complete request head within the header-read timeout: connection closed"
                ),
                Some(Wait::Send) => debug!(
                    "the client took none of the answer within the send timeout: connection closed"
                ),
                _ => debug!("idle for the header-read timeout: connection closed"),
            }
            return Ok(());
        }
        if !state.parking.load(Relaxed) {
            return Ok(()); // closed by the client, by hyper or by `stop`
        }
        let Some(parts) = conn.into_parts() else {
            return Ok(()); // upgraded (WebSocket): hyper handed the stream on
        };
        if state.got_any.load(Relaxed) || idle_deadline.is_none() {
            idle_deadline = Some(Instant::now() + timeouts.idle);
        }
        stream = parts.io.into_inner().stream;
        // A copy: `read_buf` may share hyper's whole 8 KiB read buffer,
        // which must not stay allocated for the park.
        unread = Bytes::copy_from_slice(&parts.read_buf);
        // Dropped here: `parts` is only partly moved, so its buffer would
        // otherwise live to the end of the loop body, through the park.
        drop(parts.read_buf);
        drop(parts.service);

        if unread.is_empty() {
            // Nothing was readable when hyper last read, so rustls holds no
            // plaintext and the socket's readiness is what to wait for. No
            // head is arriving either: hyper would have held its start.
            state.head_started.store(false, Relaxed);
            wait = None;
            trace!("idle: hyper's buffers released");
            parked.inc();
            timer
                .as_mut()
                .reset(idle_deadline.unwrap_or_else(|| Instant::now() + timeouts.idle));
            let resume = tokio::select! {
                ready = stream.get_ref().0.readable() => ready.is_ok(),
                () = timer.as_mut() => false,
                () = stop.as_mut(), if !stopping => false,
            };
            parked.dec();
            if !resume {
                close(stream).await;
                return Ok(());
            }
        }
    }
}

/// Ends an idle connection with a TLS close_notify, bounded in time.
async fn close(mut stream: Box<TlsStream<TcpStream>>) {
    let _ = tokio::time::timeout(Duration::from_secs(1), stream.shutdown()).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_client_that_takes_nothing_is_under_the_send_timeout_first() {
        // The end of an answer: the body is gone, hyper's read is blocked
        // and the answer unflushed, so the connection also looks stuck.
        assert_eq!(Wait::now(true, false, true), Some(Wait::Send));
        // A head pipelined behind an answer the client does not read.
        assert_eq!(Wait::now(true, true, false), Some(Wait::Send));
        assert_eq!(Wait::now(false, true, true), Some(Wait::Head));
        assert_eq!(Wait::now(false, false, true), Some(Wait::Idle));
        assert_eq!(Wait::now(false, false, false), None);
    }

    #[test]
    fn progress_restarts_a_send_or_idle_wait_but_not_a_head() {
        let armed = |wait| WaitArmed { wait, writes: 7 };
        for wait in [Wait::Send, Wait::Head, Wait::Idle] {
            assert!(wait.must_arm(None, 7), "{wait:?}");
        }
        assert!(!Wait::Send.must_arm(Some(&armed(Wait::Send)), 7));
        assert!(Wait::Send.must_arm(Some(&armed(Wait::Send)), 8));
        assert!(!Wait::Idle.must_arm(Some(&armed(Wait::Idle)), 7));
        assert!(Wait::Idle.must_arm(Some(&armed(Wait::Idle)), 8));
        assert!(!Wait::Head.must_arm(Some(&armed(Wait::Head)), 8));
        // Another kind of wait starts its own deadline.
        assert!(Wait::Head.must_arm(Some(&armed(Wait::Idle)), 7));
        assert!(Wait::Send.must_arm(Some(&armed(Wait::Head)), 7));
    }
}
