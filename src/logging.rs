//! Logging set-up: `RUST_LOG` filters (default `info`), text or JSON lines
//! on standard error. Nothing secret is logged at any level: keys and
//! passwords never are, and certificates appear only as names and digests.

use std::io::IsTerminal;

use tracing::level_filters::LevelFilter;
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::cli::LogFormat;
use crate::log_format::PlainText;

pub fn init(format: LogFormat) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let terminal = std::io::stderr().is_terminal();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(terminal);
    match format {
        // Colours for a person at a terminal; otherwise the cheaper plain
        // line (one per request, see log_format).
        LogFormat::Text if terminal => builder.finish().with(secret_safe_levels()).init(),
        LogFormat::Text => builder
            .event_format(PlainText)
            .finish()
            .with(secret_safe_levels())
            .init(),
        LogFormat::Json => builder.json().finish().with(secret_safe_levels()).init(),
    }
}

/// A ceiling on top of `RUST_LOG`: rustls traces every handshake message,
/// certificates included, in full, so it never logs below debug whatever
/// `RUST_LOG` asks. (To see a handshake, use `--keylog` and a capture.)
pub fn secret_safe_levels() -> Targets {
    Targets::new()
        .with_default(LevelFilter::TRACE)
        .with_target("rustls", LevelFilter::DEBUG)
}
