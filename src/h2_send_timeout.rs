//! The send timeout of HTTP/2 streams.
//!
//! Over HTTP/1.1, src/parking.rs closes a connection whose client takes none
//! of an answer for `--send-timeout`. Over h2 the client stalls one stream
//! at a time, with flow control: it stops granting window to the stream
//! (or gives none from the start) and goes on answering pings, so the
//! connection looks alive while the stream, its buffered answer and the
//! upstream's answer behind it are held for ever. nginx applies its
//! `send_timeout` to such a stream; so does this module.
//!
//! hyper runs every h2 stream as a task of its own, through the executor
//! the connection was built with. [`StreamExecutor`] wraps each one: the
//! stream's answer body ([`SentBody`], which finds the stream through a
//! task-local) reports when the answer is ready and each time hyper takes
//! a piece of it ([`SendProgress`]). hyper takes the next piece once the
//! client has granted window for the one before, so pieces are cut to
//! [`PIECE`] bytes at most: a client must take that much per timeout.
//! Once the answer is ready, a stream that is waiting while its body is not
//! (hyper does not poll a body when the client granted no window) is
//! waiting for the client. If that lasts `--send-timeout` with no piece
//! taken, the task ends and hyper's stream is dropped, which resets it
//! (RST_STREAM, CANCEL); the connection and its other streams go on.
//!
//! A stream that waits for the app (the upstream has not answered, or its
//! answer body has nothing more yet: a long poll, server-sent events) is
//! not under the timeout. A stream answered in one piece, as every
//! built-in answer is when the client grants window, never arms a timer.

use std::future::{Future, poll_fn};
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering::Relaxed};
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use tokio::time::{Instant, Sleep};
use tracing::debug;

tokio::task_local! {
    /// The progress of the h2 stream whose task is running.
    static STREAM: Arc<SendProgress>;
}

/// hyper's executor for the tasks of h2 streams: each runs under the send
/// timeout.
#[derive(Clone, Copy, Debug)]
pub struct StreamExecutor {
    pub send_timeout: Duration,
}

impl<F> hyper::rt::Executor<F> for StreamExecutor
where
    F: Future<Output = ()> + Send + 'static,
{
    fn execute(&self, stream: F) {
        tokio::spawn(under_send_timeout(stream, self.send_timeout));
    }
}

/// The largest piece of an answer handed to hyper at once: one h2 DATA
/// frame at the default maximum frame size. An upstream's body arrives in
/// pieces as large as hyper's read buffer grows (hundreds of KiB).
pub const PIECE: usize = 16 * 1024;

/// What the answer of one h2 stream reports to its task. Atomics only
/// because hyper wants `Send`: only the stream's task touches them.
#[derive(Debug, Default)]
pub struct SendProgress {
    /// The answer's head is ready: from now on the stream waits either for
    /// its body or for the client.
    answering: AtomicBool,
    /// The body's last poll, in the task's current poll, found nothing yet.
    body_waits: AtomicBool,
    /// Pieces of the body hyper took: a new value means the client reads.
    taken: AtomicU32,
}

impl SendProgress {
    /// After each poll of the answer's body.
    fn body_polled<T>(&self, polled: &Poll<Option<T>>) {
        self.body_waits.store(polled.is_pending(), Relaxed);
        if let Poll::Ready(Some(_)) = polled {
            self.taken
                .store(self.taken.load(Relaxed).wrapping_add(1), Relaxed);
        }
    }

    /// The stream waits for the client, not for the app.
    fn waits_for_client(&self) -> bool {
        self.answering.load(Relaxed) && !self.body_waits.load(Relaxed)
    }
}

/// Runs one stream's task, and ends it once its answer has waited for the
/// client `send_timeout` with nothing taken.
async fn under_send_timeout<F: Future<Output = ()>>(stream: F, send_timeout: Duration) {
    let progress = Arc::new(SendProgress::default());
    let stream = STREAM.scope(progress.clone(), stream);
    tokio::pin!(stream);
    // On the heap, and only for a stream that ever waits for its client.
    let mut deadline: Option<Pin<Box<Sleep>>> = None;
    let mut armed = false;
    let mut taken_when_armed = 0;
    poll_fn(|cx| {
        // Whether the body waits is known only if hyper polls it in this
        // poll. hyper does not when the client granted no window; then the
        // stream waits for the client whatever the body has.
        progress.body_waits.store(false, Relaxed);
        if stream.as_mut().poll(cx).is_ready() {
            return Poll::Ready(());
        }
        if !progress.waits_for_client() {
            armed = false;
            return Poll::Pending;
        }
        let taken = progress.taken.load(Relaxed);
        if let Some(sleep) = deadline
            .as_mut()
            .filter(|_| armed && taken == taken_when_armed)
        {
            if sleep.as_mut().poll(cx).is_ready() {
                debug!(
                    "the client took none of an HTTP/2 answer within the send timeout: stream reset"
                );
                // Ending the task drops the stream: hyper resets it.
                return Poll::Ready(());
            }
            return Poll::Pending;
        }
        // Waiting anew, or the client took a piece since the timer was set.
        armed = true;
        taken_when_armed = taken;
        let at = Instant::now() + send_timeout;
        match &mut deadline {
            Some(sleep) => sleep.as_mut().reset(at),
            None => deadline = Some(Box::pin(tokio::time::sleep_until(at))),
        }
        if let Some(sleep) = &mut deadline {
            // Registers the timer; it cannot have fired yet.
            let _ = sleep.as_mut().poll(cx);
        }
        Poll::Pending
    })
    .await
}

/// An answer's body; over h2, reports to its stream's send timeout.
#[derive(Debug)]
pub struct SentBody<B> {
    body: B,
    /// Set for the answer of an h2 stream.
    progress: Option<Arc<SendProgress>>,
    /// What is left of a data frame cut to [`PIECE`].
    rest: Bytes,
}

impl<B> SentBody<B> {
    /// The answer of an HTTP/1.1 exchange: passed through as it is.
    pub fn http1(body: B) -> Self {
        SentBody {
            body,
            progress: None,
            rest: Bytes::new(),
        }
    }

    /// The answer of an h2 stream, made in the stream's task (hyper polls
    /// the service's future there): from now on the stream is answering.
    /// Outside a stream's task, as [`SentBody::http1`].
    pub fn h2(body: B) -> Self {
        let progress = STREAM.try_with(Arc::clone).ok();
        if let Some(progress) = &progress {
            progress.answering.store(true, Relaxed);
        }
        SentBody {
            body,
            progress,
            rest: Bytes::new(),
        }
    }
}

impl<B: Body<Data = Bytes> + Unpin> Body for SentBody<B> {
    type Data = Bytes;
    type Error = B::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, B::Error>>> {
        let this = &mut *self;
        let Some(progress) = &this.progress else {
            return Pin::new(&mut this.body).poll_frame(cx);
        };
        let polled = if this.rest.is_empty() {
            Pin::new(&mut this.body).poll_frame(cx).map(|frame| {
                frame.map(|frame| {
                    frame.map(|frame| match frame.into_data() {
                        Ok(mut data) if data.len() > PIECE => {
                            this.rest = data.split_off(PIECE);
                            Frame::data(data)
                        }
                        Ok(data) => Frame::data(data),
                        Err(other) => other,
                    })
                })
            })
        } else {
            let piece = this.rest.split_to(this.rest.len().min(PIECE));
            Poll::Ready(Some(Ok(Frame::data(piece))))
        };
        progress.body_polled(&polled);
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.rest.is_empty() && self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        let hint = self.body.size_hint();
        if self.rest.is_empty() {
            return hint;
        }
        let rest = self.rest.len() as u64;
        let mut sized = SizeHint::new();
        sized.set_lower(hint.lower() + rest);
        if let Some(upper) = hint.upper() {
            sized.set_upper(upper + rest);
        }
        sized
    }
}
