//! The plain-text log line, written without colours: what goes to a file,
//! a pipe or a container log. It reads like tracing-subscriber's default
//! (`2026-11-22T16:35:00.123456Z  INFO target: message key=value ...`) but
//! costs a fraction of it, which matters because every request writes one
//! (the access log): the default styles each field name through an ANSI
//! painter even when colours are off, and formats the date on every line.
//! Here the line is assembled in a buffer of this thread's, the date part
//! once a second and numbers without `core::fmt`, and handed to the writer
//! in one piece.
//!
//! Values are written as the event recorded them: `?value` with `Debug`,
//! so strings are quoted and control characters escaped, and a certificate
//! field cannot break the line.

use std::cell::RefCell;
use std::fmt::{self, Write as _};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::logging::AccessRecord;

pub struct PlainText;

impl<S, N> FormatEvent<S, N> for PlainText
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        _ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> fmt::Result {
        with_line(|line, second, now| {
            format_line(line, second, now, event)?;
            writer.write_str(line)
        })
    }
}

/// Runs `format` on this thread's line buffer, emptied, with the time now.
fn with_line<R>(format: impl FnOnce(&mut String, &mut Second, Duration) -> R) -> R {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    BUFFERS.with(|buffers| match buffers.try_borrow_mut() {
        Ok(mut buffers) => {
            let Buffers { second, line } = &mut *buffers;
            line.clear();
            let result = format(line, second, now);
            // An unusually long line (a huge path, say) is not kept.
            if line.capacity() > KEPT_LINE_CAPACITY {
                *line = String::new();
            }
            result
        }
        // Only if formatting a value formatted another line on this thread
        // (tracing itself does not dispatch events while one is being
        // dispatched); tracing-subscriber's buffer falls back the same way.
        Err(_) => format(&mut String::new(), &mut Second::new(), now),
    })
}

/// What each thread keeps from one line to the next.
struct Buffers {
    second: Second,
    line: String,
}

const KEPT_LINE_CAPACITY: usize = 16 * 1024;

thread_local! {
    static BUFFERS: RefCell<Buffers> = const {
        RefCell::new(Buffers {
            second: Second::new(),
            line: String::new(),
        })
    };
}

/// The last second formatted, as `YYYY-MM-DDTHH:MM:SS.`.
struct Second {
    secs: u64,
    text: String,
}

impl Second {
    const fn new() -> Self {
        Second {
            secs: u64::MAX,
            text: String::new(),
        }
    }
}

fn format_line(
    line: &mut String,
    second: &mut Second,
    now: Duration,
    event: &Event<'_>,
) -> fmt::Result {
    push_timestamp(line, second, now);
    let metadata = event.metadata();
    line.push_str(level_label(metadata.level()));
    line.push_str(metadata.target());
    line.push(':');
    let mut fields = Fields {
        line: &mut *line,
        result: Ok(()),
    };
    event.record(&mut fields);
    fields.result?;
    line.push('\n');
    Ok(())
}

/// The level, right-aligned as tracing-subscriber does, between spaces.
fn level_label(level: &Level) -> &'static str {
    match *level {
        Level::ERROR => " ERROR ",
        Level::WARN => "  WARN ",
        Level::INFO => "  INFO ",
        Level::DEBUG => " DEBUG ",
        Level::TRACE => " TRACE ",
    }
}

/// RFC 3339 UTC with microseconds; the date part is formatted once a second.
fn push_timestamp(line: &mut String, second: &mut Second, now: Duration) {
    let secs = now.as_secs();
    if second.secs != secs {
        let formatted = i64::try_from(secs)
            .ok()
            .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_default();
        second.secs = secs;
        second.text.clear();
        // "…:SS" without the "Z", which follows the fraction.
        second.text.push_str(formatted.trim_end_matches('Z'));
        second.text.push('.');
    }
    line.push_str(&second.text);
    // Six digits with leading zeros: those of 1_000_000 + µs after its "1".
    line.push_str(&itoa::Buffer::new().format(1_000_000 + now.subsec_micros())[1..]);
    line.push('Z');
}

struct Fields<'a> {
    line: &'a mut String,
    result: fmt::Result,
}

impl Fields<'_> {
    /// ` name=`, or ` ` alone before the message.
    fn push_name(&mut self, field: &Field) {
        self.line.push(' ');
        if field.name() != "message" {
            self.line.push_str(field.name());
            self.line.push('=');
        }
    }

    /// Numbers as `Debug` writes them, without `core::fmt`.
    fn push_integer(&mut self, field: &Field, value: impl itoa::Integer) {
        if self.result.is_ok() {
            self.push_name(field);
            self.line.push_str(itoa::Buffer::new().format(value));
        }
    }
}

impl Visit for Fields<'_> {
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.push_integer(field, value);
    }

    fn record_u64(&mut self, field: &Field, value: u64) {
        self.push_integer(field, value);
    }

    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_ok() {
            self.push_name(field);
            self.result = write!(self.line, "{value:?}");
        }
    }
}

/// Writes the access line of one request, as [`PlainText`] writes the
/// tracing event `logging::access_event` emits for it, into this thread's
/// line buffer and hands it to `write`. The plain-text log calls this for
/// every request instead of dispatching the event: tracing records each
/// field through `core::fmt`, which cost a quarter of mtls's own share of a
/// keep-alive request (callgrind).
pub fn with_access_line(record: &AccessRecord<'_>, write: impl FnOnce(&str)) {
    with_line(|line, second, now| {
        format_access_line(line, second, now, record);
        write(line);
    })
}

/// Keep in step with `logging::access_event` (a unit test compares them).
fn format_access_line(
    line: &mut String,
    second: &mut Second,
    now: Duration,
    record: &AccessRecord<'_>,
) {
    push_timestamp(line, second, now);
    line.push_str(level_label(&Level::INFO));
    line.push_str(crate::logging::ACCESS_TARGET);
    line.push_str(": request peer=");
    line.push_str(&record.conn.remote_label);
    line.push_str(" client_cn=");
    push_quoted(line, record.conn.peer.log_name());
    line.push_str(" client_cert=");
    line.push_str(&record.conn.peer.log_state());
    line.push_str(" method=");
    line.push_str(record.method.as_str());
    line.push_str(" path=");
    push_quoted(line, record.path);
    line.push_str(" version=");
    push_version(line, record.version);
    line.push_str(" status=");
    line.push_str(itoa::Buffer::new().format(record.status));
    line.push_str(" duration_us=");
    line.push_str(itoa::Buffer::new().format(record.duration_us()));
    line.push('\n');
}

/// `version` as `Debug` writes it, without the formatting machinery.
fn push_version(line: &mut String, version: hyper::Version) {
    let text = match version {
        hyper::Version::HTTP_09 => "HTTP/0.9",
        hyper::Version::HTTP_10 => "HTTP/1.0",
        hyper::Version::HTTP_11 => "HTTP/1.1",
        hyper::Version::HTTP_2 => "HTTP/2.0",
        hyper::Version::HTTP_3 => "HTTP/3.0",
        other => {
            let _ = write!(line, "{other:?}");
            return;
        }
    };
    line.push_str(text);
}

/// `value` as `Debug` writes it (as tracing records `?value`), without
/// `str`'s per-character escaping when there is nothing to escape.
fn push_quoted(line: &mut String, value: &str) {
    // Printable ASCII without quote or backslash is what `Debug` leaves as is.
    let plain = value
        .bytes()
        .all(|b| (b' '..=b'~').contains(&b) && b != b'"' && b != b'\\');
    if plain {
        line.push('"');
        line.push_str(value);
        line.push('"');
    } else {
        let _ = write!(line, "{value:?}");
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use tracing_subscriber::fmt::MakeWriter;

    use super::*;

    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl<'a> MakeWriter<'a> for Captured {
        type Writer = Captured;
        fn make_writer(&'a self) -> Self::Writer {
            self.clone()
        }
    }

    fn logged(emit: impl FnOnce()) -> String {
        let captured = Captured::default();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(captured.clone())
            .with_ansi(false)
            .event_format(PlainText)
            .finish();
        tracing::subscriber::with_default(subscriber, emit);
        String::from_utf8(captured.0.lock().unwrap().clone()).unwrap()
    }

    #[test]
    fn a_line_reads_like_the_default_format() {
        let peer = "127.0.0.1:4000".parse::<std::net::SocketAddr>().unwrap();
        let line = logged(
            || tracing::info!(target: "mtls::access", peer = %peer, path = ?"/", status = 200u16, "request"),
        );
        let (time, rest) = line.split_once(' ').unwrap();
        assert!(
            time.len() == "2026-11-22T16:35:00.123456Z".len() && time.ends_with('Z'),
            "{time}"
        );
        OffsetDateTime::parse(time, &Rfc3339).expect(time);
        assert_eq!(
            rest,
            " INFO mtls::access: request peer=127.0.0.1:4000 path=\"/\" status=200\n"
        );
    }

    #[test]
    fn control_characters_in_a_value_cannot_split_the_line() {
        let crafted = "CN=x\r\nINFO forged: line\0";
        let line = logged(|| tracing::warn!(client_cn = ?crafted, "refused"));
        assert_eq!(line.matches('\n').count(), 1, "{line}");
        assert!(line.ends_with("refused client_cn=\"CN=x\\r\\nINFO forged: line\\0\"\n"));
    }

    #[test]
    fn push_quoted_writes_what_str_debug_writes() {
        for value in [
            "",
            "/",
            "client",
            "/a b/c?d=e&f='g'~",
            "quote\" backslash\\",
            "CN=x\r\nINFO forged\0\u{7f}",
            "Łódź \u{202e}bidi",
        ] {
            let mut line = String::new();
            push_quoted(&mut line, value);
            assert_eq!(line, format!("{value:?}"));
        }
    }

    #[test]
    fn the_direct_access_line_reads_like_the_event() {
        use crate::identity::{ConnectionInfo, PeerIdentity, VerifiedClient};
        use crate::logging::{AccessRecord, access_event};
        use crate::rejection::{ReasonCode, Rejection};

        let remote_addr: std::net::SocketAddr = "[::1]:4000".parse().unwrap();
        let verified = |common_name: &str| {
            let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
            params
                .distinguished_name
                .push(rcgen::DnType::CommonName, common_name);
            let key = rcgen::KeyPair::generate().unwrap();
            let leaf = params.self_signed(&key).unwrap();
            PeerIdentity::Verified(Arc::new(VerifiedClient::new(&[leaf.der().clone()])))
        };
        let plain = verified("client");
        let crafted = verified("Ann \"x\"\nINFO forged");
        let rejected = PeerIdentity::Rejected(Box::new(Rejection {
            reason: ReasonCode::Expired,
            detail: String::new(),
            hint: String::new(),
        }));
        for (peer, method, path, version) in [
            (plain, hyper::Method::GET, "/", hyper::Version::HTTP_11),
            (
                crafted,
                hyper::Method::POST,
                "/a b?c=\"d\"\r\n",
                hyper::Version::HTTP_2,
            ),
            (
                rejected,
                hyper::Method::HEAD,
                "/ünï",
                hyper::Version::HTTP_10,
            ),
            (
                PeerIdentity::None,
                hyper::Method::OPTIONS,
                "*",
                hyper::Version::HTTP_09,
            ),
            (
                PeerIdentity::None,
                hyper::Method::GET,
                "/",
                hyper::Version::HTTP_3,
            ),
        ] {
            let conn = ConnectionInfo::for_tests(remote_addr, peer);
            let record = AccessRecord {
                conn: &conn,
                method: &method,
                path,
                version,
                status: 404,
                duration: Duration::from_micros(1234),
            };
            let event = logged(|| access_event(&record));
            let mut direct = String::new();
            with_access_line(&record, |line| direct.push_str(line));
            // The same line after the timestamp, which differs.
            let (_, event) = event.split_once(' ').unwrap();
            let (_, direct) = direct.split_once(' ').unwrap();
            assert_eq!(direct, event);
            assert_eq!(direct.matches('\n').count(), 1, "{direct}");
        }
    }

    #[test]
    fn numbers_read_as_debug_writes_them() {
        let line = logged(|| {
            tracing::info!(
                status = 200u16,
                small = -7i64,
                large = u64::MAX,
                flag = true,
                ratio = 0.5f64,
                "numbers"
            )
        });
        assert!(
            line.ends_with(&format!(
                "numbers status=200 small=-7 large={} flag=true ratio=0.5\n",
                u64::MAX
            )),
            "{line}"
        );
    }

    #[test]
    fn the_fraction_keeps_its_leading_zeros() {
        let mut second = Second::new();
        for (nanos, fraction) in [
            (0, "2026-11-22T16:35:00.000000Z"),
            (5_000, "2026-11-22T16:35:00.000005Z"),
            (999_999_999, "2026-11-22T16:35:00.999999Z"),
        ] {
            let mut line = String::new();
            push_timestamp(&mut line, &mut second, Duration::new(1_795_365_300, nanos));
            assert_eq!(line, fraction);
        }
        // The next second replaces the cached date part.
        let mut line = String::new();
        push_timestamp(&mut line, &mut second, Duration::new(1_795_365_301, 0));
        assert_eq!(line, "2026-11-22T16:35:01.000000Z");
    }
}
