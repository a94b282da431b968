//! Logging set-up: `RUST_LOG` filters (default `info`), text or JSON lines
//! on standard error.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

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
        LogFormat::Text if terminal => builder.init(),
        LogFormat::Text => builder.event_format(PlainText).init(),
        LogFormat::Json => builder.json().init(),
    }
}
