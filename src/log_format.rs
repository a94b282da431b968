//! The plain-text log line, written without colours: what goes to a file,
//! a pipe or a container log. It reads like tracing-subscriber's default
//! (`2026-11-22T16:35:00.123456Z  INFO target: message key=value ...`) but
//! costs a fraction of it, which matters because every request writes one
//! (the access log): the default styles each field name through an ANSI
//! painter even when colours are off, and formats the date on every line.
//!
//! Values are written as the event recorded them: `?value` with `Debug`,
//! so strings are quoted and control characters escaped, and a certificate
//! field cannot break the line.

use std::cell::RefCell;
use std::fmt;
use std::time::{SystemTime, UNIX_EPOCH};

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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
        write_timestamp(&mut writer)?;
        let metadata = event.metadata();
        writer.write_str(level_label(metadata.level()))?;
        writer.write_str(metadata.target())?;
        writer.write_str(":")?;
        let mut fields = Fields {
            writer: &mut writer,
            result: Ok(()),
        };
        event.record(&mut fields);
        fields.result?;
        writer.write_char('\n')
    }
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

struct Fields<'a, 'w> {
    writer: &'a mut Writer<'w>,
    result: fmt::Result,
}

impl Visit for Fields<'_, '_> {
    fn record_debug(&mut self, field: &Field, value: &dyn fmt::Debug) {
        if self.result.is_err() {
            return;
        }
        self.result = if field.name() == "message" {
            write!(self.writer, " {value:?}")
        } else {
            write!(self.writer, " {}={value:?}", field.name())
        };
    }
}

thread_local! {
    /// The last second formatted on this thread, as `YYYY-MM-DDTHH:MM:SS`.
    static SECOND: RefCell<(u64, String)> = const { RefCell::new((u64::MAX, String::new())) };
}

/// RFC 3339 UTC with microseconds; the date part is formatted once a second.
fn write_timestamp(writer: &mut Writer<'_>) -> fmt::Result {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    SECOND.with(|cached| {
        let mut cached = cached.borrow_mut();
        if cached.0 != secs {
            let formatted = i64::try_from(secs)
                .ok()
                .and_then(|s| OffsetDateTime::from_unix_timestamp(s).ok())
                .and_then(|t| t.format(&Rfc3339).ok())
                .unwrap_or_default();
            // "…:SSZ" without the "Z", which follows the fraction.
            *cached = (secs, formatted.trim_end_matches('Z').to_owned());
        }
        write!(writer, "{}.{:06}Z", cached.1, now.subsec_micros())
    })
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
}
