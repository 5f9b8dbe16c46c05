//! Logging to stderr with `tracing` (SPEC §1 "Streams").
//!
//! Plain text by default, no timestamps or colour when `JOURNAL_STREAM` is
//! set (journald adds its own), one JSON object per line with
//! `--log-format json`. `-q` keeps errors only, `-v` adds debug, `-vv`
//! trace; `RUST_LOG` overrides both. Other crates stay at `warn` so that no
//! HTTP library ever logs a header carrying a token.

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

use crate::cli::{Cli, LogFormat};

pub fn init(cli: &Cli) {
    let level = if cli.quiet {
        "error"
    } else {
        match cli.verbose {
            0 => "info",
            1 => "debug",
            _ => "trace",
        }
    };
    let filter = EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| EnvFilter::new(format!("warn,register_runner={level}")));
    let under_journald = std::env::var_os("JOURNAL_STREAM").is_some();
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    let result = match cli.log_format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text if under_journald => builder.without_time().with_ansi(false).try_init(),
        LogFormat::Text => builder
            .with_ansi(std::io::stderr().is_terminal())
            .try_init(),
    };
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = result;
}
