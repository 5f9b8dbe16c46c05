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

/// Prints the error a run ended with on stderr, bypassing the log filter
/// (as ripgrep does), in the active format: `ERROR …` as text, one JSON
/// object shaped like the other log lines with `--log-format json`, and
/// with journald's `<3>` (err) priority prefix under journald. Any
/// token-shaped word is masked.
pub fn print_final_error(cli: &Cli, message: &str) {
    use std::io::Write;
    let message = crate::secret::mask_token_like(message);
    let line = match cli.log_format {
        LogFormat::Json => serde_json::json!({
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "level": "ERROR",
            "fields": {"message": message},
        })
        .to_string(),
        LogFormat::Text if std::env::var_os("JOURNAL_STREAM").is_some() => {
            format!("<3>ERROR {message}")
        }
        LogFormat::Text => format!("ERROR {message}"),
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}
