//! Graceful shutdown: every connection holds a [`Stop`]; the server signals
//! them all through its [`Drain`], then waits until the last one is gone.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Waker};

use tokio::sync::watch;

pub struct Drain {
    signal: watch::Sender<()>,
    /// Set before the signal is sent; see [`StopGate`].
    requested: Arc<AtomicBool>,
}

impl Default for Drain {
    fn default() -> Self {
        Drain {
            signal: watch::channel(()).0,
            requested: Arc::default(),
        }
    }
}

impl Drain {
    pub fn stop_signal(&self) -> Stop {
        Stop {
            signal: self.signal.subscribe(),
            requested: self.requested.clone(),
        }
    }

    /// Connections still open.
    pub fn connections(&self) -> usize {
        self.signal.receiver_count()
    }

    /// Signals every connection, then waits until all are closed.
    pub async fn shutdown(&self) {
        self.requested.store(true, Ordering::Release);
        self.signal.send_replace(());
        self.signal.closed().await;
    }
}

impl Drop for Drain {
    /// A server gone without `shutdown` is a stop as well (see
    /// [`Stop::requested`]); the flag lets [`StopGate`] see it.
    fn drop(&mut self) {
        self.requested.store(true, Ordering::Release);
    }
}

/// Held by a connection; the connection counts as open until it is dropped.
pub struct Stop {
    signal: watch::Receiver<()>,
    requested: Arc<AtomicBool>,
}

impl Stop {
    /// Completes when the server begins to shut down. Borrows: the
    /// connection stays counted when the signal arrives.
    pub async fn requested(&mut self) {
        // An error means the server is gone, which is a stop as well.
        let _ = self.signal.changed().await;
    }

    /// A [`StopGate`] for [`Stop::requested`].
    pub fn gate(&self) -> StopGate {
        StopGate {
            requested: self.requested.clone(),
            registered: None,
        }
    }
}

/// Polls the future of [`Stop::requested`] only when it may be ready. A
/// connection driver is polled on every wake; once the future has
/// registered the task, polling tokio's watch again costs a lock each time
/// (callgrind: 600 instructions per keep-alive request), this gate a load.
pub struct StopGate {
    requested: Arc<AtomicBool>,
    /// The waker the future last registered.
    registered: Option<Waker>,
}

impl StopGate {
    /// Whether `stop` (from [`Stop::requested`]) has completed.
    pub fn poll_stopped<F: Future<Output = ()>>(
        &mut self,
        stop: Pin<&mut F>,
        cx: &mut Context<'_>,
    ) -> bool {
        let current = self
            .registered
            .as_ref()
            .is_some_and(|waker| waker.will_wake(cx.waker()));
        if current && !self.requested.load(Ordering::Acquire) {
            // Still registered with this task's waker: the signal will
            // wake the task, and the next poll sees `requested`.
            return false;
        }
        if stop.poll(cx).is_ready() {
            return true;
        }
        if !current {
            self.registered = Some(cx.waker().clone());
        }
        false
    }
}
