//! Logging set-up: `RUST_LOG` filters (default `info`), text or JSON lines
//! on standard error. Nothing secret is logged at any level: keys and
//! passwords never are, and certificates appear only as names and digests.

use std::io::{self, IsTerminal, Write};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::Duration;

use hyper::{Method, Version};
use tracing::level_filters::LevelFilter;
use tracing::{Level, Metadata};
use tracing_core::callsite::{DefaultCallsite, Identifier};
use tracing_core::field::FieldSet;
use tracing_core::metadata::Kind;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::identity::ConnectionInfo;
use crate::log_format::{PlainText, with_access_line};

/// Sets up logging; the returned guard writes out pending access-log lines
/// when dropped (keep it until the end of `main`).
pub fn init(format: LogFormat) -> FlushOnDrop {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let ceiling = secret_safe_levels(filter.max_level_hint().unwrap_or(LevelFilter::TRACE));
    let terminal = std::io::stderr().is_terminal();
    // A person at a terminal sees each line at once; otherwise access-log
    // lines are batched (one write for many requests, as nginx's
    // `access_log ... buffer=` and Envoy's file logs do).
    let writer = StderrWriter {
        access: (!terminal).then(|| AccessBuffer::start(ACCESS_FLUSH_INTERVAL)),
    };
    let guard = FlushOnDrop(writer.access.clone());
    if let (LogFormat::Text, Some(access)) = (format, &writer.access) {
        // Plain text and batched: access lines skip tracing's dispatch.
        let _ = DIRECT_ACCESS.set(access.clone());
    }
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(writer)
        .with_ansi(terminal);
    match format {
        // Colours for a person at a terminal; otherwise the cheaper plain
        // line (one per request, see log_format).
        LogFormat::Text if terminal => builder.finish().with(ceiling).init(),
        LogFormat::Text => builder
            .event_format(PlainText)
            .finish()
            .with(ceiling)
            .init(),
        LogFormat::Json => builder.json().finish().with(ceiling).init(),
    }
    guard
}

/// The target of the per-request access-log line.
pub const ACCESS_TARGET: &str = "mtls::access";

/// One request, as the access log records it.
pub struct AccessRecord<'a> {
    pub conn: &'a ConnectionInfo,
    pub method: &'a Method,
    pub path: &'a str,
    pub version: Version,
    pub status: u16,
    pub duration: Duration,
}

impl AccessRecord<'_> {
    pub fn duration_us(&self) -> u64 {
        u64::try_from(self.duration.as_micros()).unwrap_or(u64::MAX)
    }
}

/// The batch plain-text access lines are written to directly, when logs
/// are plain text on a standard error that is not a terminal.
static DIRECT_ACCESS: OnceLock<Arc<AccessBuffer>> = OnceLock::new();

/// Logs one request (`RUST_LOG` decides, as for any line: the target is
/// [`ACCESS_TARGET`], the level INFO). Plain-text batched logs get the line
/// written straight into the batch; JSON logs and a terminal get a tracing
/// event with the same fields ([`access_event`]).
pub fn access(record: &AccessRecord<'_>) {
    if !access_enabled() {
        return;
    }
    match DIRECT_ACCESS.get() {
        Some(batch) => with_access_line(record, |line| batch.append(line.as_bytes())),
        None => access_event(record),
    }
}

/// The access line's callsite, with the event's target, level and fields,
/// so that `RUST_LOG` decides for it as for the event itself, directives
/// naming fields (`target[{field}]=level`) included.
static ACCESS_CALLSITE: DefaultCallsite = DefaultCallsite::new(&ACCESS_METADATA);
static ACCESS_METADATA: Metadata<'static> = Metadata::new(
    "access line",
    ACCESS_TARGET,
    Level::INFO,
    Some(file!()),
    // Of this definition: the check has no line of its own in the code.
    Some(line!()),
    Some(module_path!()),
    FieldSet::new(&ACCESS_FIELDS, Identifier(&ACCESS_CALLSITE)),
    Kind::EVENT,
);
const ACCESS_FIELDS: [&str; 9] = [
    "message",
    "peer",
    "client_cn",
    "client_cert",
    "method",
    "path",
    "version",
    "status",
    "duration_us",
];

/// Whether `RUST_LOG` lets the access line through, decided as tracing's
/// `event!` decides: when the callsite's interest is `always` (the filter
/// has no directive that depends on spans or field values), the subscriber
/// is not asked again on every request. (`tracing::enabled!` always asks:
/// 0.6k instructions per request, callgrind.)
fn access_enabled() -> bool {
    // What `event!` checks first: the levels compiled in, then the
    // subscriber's most verbose one.
    if Level::INFO > tracing::level_filters::STATIC_MAX_LEVEL
        || Level::INFO > LevelFilter::current()
    {
        return false;
    }
    let interest = ACCESS_CALLSITE.interest();
    interest.is_always()
        || (!interest.is_never()
            && tracing::dispatcher::get_default(|current| current.enabled(&ACCESS_METADATA)))
}

/// The access line as a tracing event. Keep its fields in step with
/// `log_format::format_access_line` and with `ACCESS_FIELDS`, the
/// callsite `access` decides with (unit tests compare them).
pub fn access_event(record: &AccessRecord<'_>) {
    tracing::info!(
        target: ACCESS_TARGET,
        peer = %record.conn.remote_label,
        client_cn = ?record.conn.peer.log_name(),
        client_cert = %record.conn.peer.log_state(),
        method = %record.method,
        path = ?record.path,
        version = ?record.version,
        status = record.status,
        duration_us = record.duration_us(),
        "request"
    );
}

/// How long an access-log line may wait in the buffer.
pub const ACCESS_FLUSH_INTERVAL: Duration = Duration::from_millis(100);

/// Bytes of access-log lines written out at once, without waiting.
const ACCESS_BUFFER_BYTES: usize = 32 * 1024;

/// Standard error, with access-log lines batched in an [`AccessBuffer`].
/// Any other line first writes out the pending access lines, so the order
/// of lines on standard error is kept.
struct StderrWriter {
    access: Option<Arc<AccessBuffer>>,
}

impl<'a> MakeWriter<'a> for StderrWriter {
    type Writer = Line<'a>;

    fn make_writer(&'a self) -> Line<'a> {
        if let Some(access) = &self.access {
            access.write_pending();
        }
        Line::Stderr(io::stderr())
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Line<'a> {
        match &self.access {
            Some(access) if meta.target() == ACCESS_TARGET => Line::Access(access),
            _ => self.make_writer(),
        }
    }
}

/// Where one formatted line goes.
enum Line<'a> {
    Stderr(io::Stderr),
    Access(&'a AccessBuffer),
}

impl Write for Line<'_> {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        match self {
            Line::Stderr(stderr) => stderr.write(bytes),
            Line::Access(access) => {
                access.append(bytes);
                Ok(bytes.len())
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Line::Stderr(stderr) => stderr.flush(),
            Line::Access(_) => Ok(()),
        }
    }
}

/// Access-log lines waiting to be written: out when 32 KiB are pending,
/// and otherwise by a thread at most [`ACCESS_FLUSH_INTERVAL`] after the
/// first pending line. An idle server's thread sleeps on the condition
/// variable; it never polls.
pub struct AccessBuffer {
    pending: Mutex<Vec<u8>>,
    arrived: Condvar,
}

impl AccessBuffer {
    fn start(interval: Duration) -> Arc<AccessBuffer> {
        let buffer = Arc::new(AccessBuffer {
            pending: Mutex::new(Vec::with_capacity(ACCESS_BUFFER_BYTES)),
            arrived: Condvar::new(),
        });
        let flusher = buffer.clone();
        let spawned = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || flusher.flush_every(interval));
        if spawned.is_err() {
            eprintln!(
                "warning: no thread for the access log; its lines are written when 32 KiB are pending or at exit"
            );
        }
        buffer
    }

    fn lock(&self) -> MutexGuard<'_, Vec<u8>> {
        // A panic while holding the lock leaves whole lines or a cut one;
        // logging goes on either way.
        self.pending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn append(&self, line: &[u8]) {
        let mut pending = self.lock();
        let was_empty = pending.is_empty();
        pending.extend_from_slice(line);
        if pending.len() >= ACCESS_BUFFER_BYTES {
            self.write_out(&mut pending);
        } else if was_empty {
            self.arrived.notify_one();
        }
    }

    fn write_out(&self, pending: &mut Vec<u8>) {
        if !pending.is_empty() {
            // Nowhere to report a failed write to standard error.
            let _ = io::stderr().write_all(pending);
            pending.clear();
        }
    }

    fn flush_every(&self, interval: Duration) {
        loop {
            let pending = self.lock();
            let pending = self
                .arrived
                .wait_while(pending, |pending| pending.is_empty())
                .unwrap_or_else(PoisonError::into_inner);
            drop(pending);
            std::thread::sleep(interval);
            self.write_pending();
        }
    }

    fn write_pending(&self) {
        self.write_out(&mut self.lock());
    }
}

/// Writes out pending access-log lines when dropped.
pub struct FlushOnDrop(Option<Arc<AccessBuffer>>);

impl Drop for FlushOnDrop {
    fn drop(&mut self) {
        if let Some(access) = &self.0 {
            access.write_pending();
        }
    }
}

/// A ceiling on top of `RUST_LOG`, whose most verbose level is `max`:
/// rustls traces every handshake message, certificates included, in full,
/// so it never logs below debug whatever `RUST_LOG` asks. (To see a
/// handshake, use `--keylog` and a capture.)
///
/// Its default is `max`, not TRACE, so that the levels tracing and the
/// `log` crate check first stay at `RUST_LOG`'s: with TRACE, each of
/// rustls' `log` calls went through tracing's filters (callgrind: 3.9k
/// instructions per handshake).
pub fn secret_safe_levels(max: LevelFilter) -> Targets {
    Targets::new()
        .with_default(max)
        .with_target("rustls", max.min(LevelFilter::DEBUG))
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing::Subscriber;
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::Context;

    use super::*;
    use crate::identity::PeerIdentity;

    /// Records the metadata of every event.
    struct Events(Arc<Mutex<Vec<&'static Metadata<'static>>>>);

    impl<S: Subscriber> Layer<S> for Events {
        fn on_event(&self, event: &tracing::Event<'_>, _: Context<'_, S>) {
            self.0.lock().unwrap().push(event.metadata());
        }
    }

    /// `access` decides with its own callsite; `RUST_LOG` sees it as the
    /// event only if both have the same target, level and fields.
    #[test]
    fn the_access_callsite_describes_the_access_event() {
        let conn = ConnectionInfo::for_tests("127.0.0.1:4000".parse().unwrap(), PeerIdentity::None);
        let record = AccessRecord {
            conn: &conn,
            method: &Method::GET,
            path: "/",
            version: Version::HTTP_11,
            status: 200,
            duration: Duration::from_micros(10),
        };
        let seen = Arc::new(Mutex::new(Vec::new()));
        let subscriber = tracing_subscriber::registry().with(Events(seen.clone()));
        tracing::subscriber::with_default(subscriber, || access_event(&record));
        let seen = seen.lock().unwrap();
        let [event] = seen.as_slice() else {
            panic!("one event expected, got {}", seen.len());
        };
        let names = |metadata: &Metadata<'_>| -> Vec<String> {
            metadata
                .fields()
                .iter()
                .map(|field| field.name().to_owned())
                .collect()
        };
        assert_eq!(event.target(), ACCESS_METADATA.target());
        assert_eq!(event.level(), ACCESS_METADATA.level());
        assert_eq!(names(event), names(&ACCESS_METADATA));
        assert!(ACCESS_METADATA.is_event());
    }
}
