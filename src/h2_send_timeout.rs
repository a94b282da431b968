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
//! stream's answer body ([`SentBody`], polled inside the stream's task,
//! which lends it the stream's progress through a thread-local) reports
//! when the answer is ready and each time hyper takes a piece of it.
//! hyper takes the next piece once the client has granted window for the
//! one before, so pieces are cut to [`PIECE`] bytes at most: a client must
//! take that much per timeout.
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
//!
//! Not covered here: the last piece of an answer. hyper hands it to h2 as
//! soon as the client granted any window, then the stream's task ends, and
//! h2 holds the unsent rest (a client with a window of one byte gets one
//! byte of `GET /`). Such a connection is idle by the streams' count, and
//! src/server.rs closes it 2–3 × `--idle-timeout` after its last stream.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use hyper::body::{Body, Frame, SizeHint};
use pin_project_lite::pin_project;
use tokio::time::{Instant, Sleep};
use tracing::debug;

thread_local! {
    /// The progress of the h2 stream being polled on this thread, if any:
    /// moved in before each poll of a stream's task and back out after.
    /// A plain value, not shared: no allocation, no atomics.
    static POLLED_STREAM: Cell<Option<SendProgress>> = const { Cell::new(None) };
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
        tokio::spawn(UnderSendTimeout {
            stream,
            send_timeout: self.send_timeout,
            progress: SendProgress::default(),
            deadline: None,
            taken_when_armed: None,
        });
    }
}

/// The largest piece of an answer handed to hyper at once: one h2 DATA
/// frame at the default maximum frame size. An upstream's body arrives in
/// pieces as large as hyper's read buffer grows (hundreds of KiB).
pub const PIECE: usize = 16 * 1024;

/// What the answer of one h2 stream reports to its task.
#[derive(Clone, Copy, Debug, Default)]
struct SendProgress {
    /// The answer's head is ready: from now on the stream waits either for
    /// its body or for the client.
    answering: bool,
    /// The body's last poll, in the task's current poll, found nothing yet.
    body_waits: bool,
    /// Pieces of the body hyper took: a new value means the client reads.
    taken: u32,
}

impl SendProgress {
    /// Updates the progress of the stream being polled on this thread; false
    /// outside an h2 stream's task.
    fn update(change: impl FnOnce(&mut SendProgress)) -> bool {
        POLLED_STREAM.with(|polled| match polled.get() {
            Some(mut progress) => {
                change(&mut progress);
                polled.set(Some(progress));
                true
            }
            None => false,
        })
    }

    /// The stream waits for the client, not for the app.
    fn waits_for_client(&self) -> bool {
        self.answering && !self.body_waits
    }
}

pin_project! {
    /// One stream's task, ended once its answer has waited for the client
    /// `send_timeout` with nothing taken.
    struct UnderSendTimeout<F> {
        #[pin]
        stream: F,
        send_timeout: Duration,
        progress: SendProgress,
        // On the heap, and only for a stream that ever waits for its client.
        deadline: Option<Pin<Box<Sleep>>>,
        // Set while the deadline runs: the pieces taken when it was set.
        taken_when_armed: Option<u32>,
    }
}

impl<F: Future<Output = ()>> Future for UnderSendTimeout<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let this = self.project();
        // Whether the body waits is known only if hyper polls it in this
        // poll. hyper does not when the client granted no window; then the
        // stream waits for the client whatever the body has.
        this.progress.body_waits = false;
        let outer = POLLED_STREAM.replace(Some(*this.progress));
        let polled = this.stream.poll(cx);
        if let Some(progress) = POLLED_STREAM.replace(outer) {
            *this.progress = progress;
        }
        if polled.is_ready() {
            return Poll::Ready(());
        }
        if !this.progress.waits_for_client() {
            *this.taken_when_armed = None;
            return Poll::Pending;
        }
        let taken = this.progress.taken;
        if let (Some(sleep), Some(armed)) = (this.deadline.as_mut(), *this.taken_when_armed)
            && armed == taken
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
        *this.taken_when_armed = Some(taken);
        let at = Instant::now() + *this.send_timeout;
        let sleep = match this.deadline {
            Some(sleep) => {
                sleep.as_mut().reset(at);
                sleep
            }
            None => this.deadline.insert(Box::pin(tokio::time::sleep_until(at))),
        };
        // Registers the timer; it cannot have fired yet.
        let _ = sleep.as_mut().poll(cx);
        Poll::Pending
    }
}

/// An answer's body; over h2, reports to its stream's send timeout.
#[derive(Debug)]
pub struct SentBody<B> {
    body: B,
    /// The answer of an h2 stream: reports its progress.
    h2: bool,
    /// What is left of a data frame cut to [`PIECE`].
    rest: Bytes,
}

impl<B> SentBody<B> {
    /// The answer of an HTTP/1.1 exchange: passed through as it is.
    pub fn http1(body: B) -> Self {
        SentBody {
            body,
            h2: false,
            rest: Bytes::new(),
        }
    }

    /// The answer of an h2 stream, made in the stream's task (hyper polls
    /// the service's future there): from now on the stream is answering.
    /// Outside a stream's task, as [`SentBody::http1`].
    pub fn h2(body: B) -> Self {
        SentBody {
            body,
            h2: SendProgress::update(|progress| progress.answering = true),
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
        if !this.h2 {
            return Pin::new(&mut this.body).poll_frame(cx);
        }
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
        SendProgress::update(|progress| {
            progress.body_waits = polled.is_pending();
            if let Poll::Ready(Some(_)) = polled {
                progress.taken = progress.taken.wrapping_add(1);
            }
        });
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
