//! Logging to stderr with `tracing` (SPEC §1 "Streams").
//!
//! Plain text by default; when `JOURNAL_STREAM` is set (journald adds its
//! own timestamps) no timestamp, no colour, no padding, and each line opens
//! with its sd-daemon priority (`<3>` error, `<4>` warning, `<6>` info,
//! `<7>` debug; see [`JournaldFormat`]) so that `journalctl -p err` finds
//! the errors; one JSON object per line with `--log-format json`. `-q` keeps errors only, `-v` adds debug, `-vv`
//! trace; `RUST_LOG` overrides both. Other crates stay at `warn` so that no
//! HTTP library ever logs a header carrying a token.
//!
//! Text from outside (GitLab's runner names, tags, system ids and error
//! text; operators' files) never reaches the terminal raw: in text logs
//! every field has its control characters escaped ([`escape_control`]), so
//! that a runner name can neither forge a log line nor send the terminal
//! an escape sequence; JSON logs are escaped by JSON itself. Every line, in
//! either format, has each secret of the run and each token-shaped word in
//! short form ([`crate::secret::redact`]) on its way to stderr.
//! [`sanitize`] does both to a message printed some other way.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::io::{self, IsTerminal, Write};

use tracing_subscriber::EnvFilter;
use tracing_subscriber::field::MakeExt;
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

use crate::cli::{Cli, LogFormat};
use crate::env::Env;

pub fn init(cli: &Cli, env: &Env) {
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
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(RedactingStderr)
        .with_target(false);
    // The default text layout (message, then `name=value` fields), with
    // every value escaped.
    let fields = debug_fn(|w: &mut Writer<'_>, field, value| {
        let text = format!("{value:?}");
        let text = escape_control(&text);
        if field.name() == "message" {
            w.write_str(&text)
        } else {
            write!(w, "{}={}", field.name(), text)
        }
    })
    .delimited(" ");
    let result = match cli.log_format {
        LogFormat::Json => builder.json().with_current_span(false).try_init(),
        LogFormat::Text if env.under_journald => builder
            .fmt_fields(fields)
            .event_format(JournaldFormat)
            .try_init(),
        LogFormat::Text => builder
            .fmt_fields(fields)
            .with_ansi(io::stderr().is_terminal())
            .try_init(),
    };
    // A second init (only possible in tests) keeps the first subscriber.
    let _ = result;
}

/// Prints the error a run ended with on stderr, bypassing the log filter
/// (as ripgrep does), in the active format: `ERROR …` as text, one JSON
/// object shaped like the other log lines with `--log-format json`, and
/// with journald's `<3>` (err) priority prefix under journald; made safe
/// by [`sanitize`].
pub fn print_final_error(cli: &Cli, env: &Env, message: &str) {
    use std::io::Write;
    let message = sanitize(message);
    let line = match cli.log_format {
        LogFormat::Json => serde_json::json!({
            "timestamp": time::OffsetDateTime::now_utc()
                .format(&time::format_description::well_known::Rfc3339)
                .unwrap_or_default(),
            "level": "ERROR",
            "fields": {"message": message},
        })
        .to_string(),
        LogFormat::Text if env.under_journald => {
            format!(
                "<{}>ERROR {message}",
                journald_priority(tracing::Level::ERROR)
            )
        }
        LogFormat::Text => format!("ERROR {message}"),
    };
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// A message made safe for stderr outside `tracing` (the final error):
/// secrets and token-shaped words masked, control characters escaped.
pub fn sanitize(text: &str) -> String {
    escape_control(&crate::secret::redact(text)).into_owned()
}

/// The text with every control character (C0 but tab, DEL, C1) and every
/// bidirectional-override character escaped: `\n`, `\r`, `\e`, or
/// `\u{…}`. Escaping is idempotent (a backslash is left as it is), and
/// text without such characters comes back borrowed.
///
/// ```
/// use register_runner::logging::escape_control;
/// assert_eq!(escape_control("ok\tfine"), "ok\tfine");
/// assert_eq!(
///     escape_control("a\u{1b}]0;owned\u{7}\nINFO forged\u{9b}"),
///     "a\\e]0;owned\\u{7}\\nINFO forged\\u{9b}"
/// );
/// ```
pub fn escape_control(text: &str) -> Cow<'_, str> {
    let unsafe_char = |c: char| {
        (c.is_control() && c != '\t')
            || matches!(c, '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    };
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\u{1b}' => out.push_str("\\e"),
            c if unsafe_char(c) => {
                let _ = write!(out, "\\u{{{:x}}}", c as u32);
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The line format under journald: `<N>LEVEL message field=value…`, where
/// `<N>` is the syslog priority sd-daemon(3) reads off the start of a line
/// written to a journal stream (journald strips it and files the line under
/// that priority). No timestamp (journald adds its own) and no padding.
pub struct JournaldFormat;

/// The sd-daemon priority of a tracing level: `<3>` err, `<4>` warning,
/// `<6>` info, `<7>` debug (trace too: syslog has nothing below debug).
pub fn journald_priority(level: tracing::Level) -> u8 {
    match level {
        tracing::Level::ERROR => 3,
        tracing::Level::WARN => 4,
        tracing::Level::INFO => 6,
        _ => 7,
    }
}

impl<S, N> FormatEvent<S, N> for JournaldFormat
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &tracing::Event<'_>,
    ) -> std::fmt::Result {
        let level = *event.metadata().level();
        write!(writer, "<{}>{level} ", journald_priority(level))?;
        ctx.field_format().format_fields(writer.by_ref(), event)?;
        writeln!(writer)
    }
}

/// Stderr, one event at a time: the formatted event is collected and
/// written redacted when the subscriber drops the writer (it makes one per
/// event).
struct RedactingStderr;

impl<'a> MakeWriter<'a> for RedactingStderr {
    type Writer = EventBuffer;

    fn make_writer(&'a self) -> Self::Writer {
        EventBuffer(Vec::new())
    }
}

struct EventBuffer(Vec<u8>);

impl EventBuffer {
    fn emit(&mut self) -> io::Result<()> {
        if self.0.is_empty() {
            return Ok(());
        }
        let bytes = std::mem::take(&mut self.0);
        let text = String::from_utf8_lossy(&bytes);
        let redacted = crate::secret::redact(&text);
        let mut stderr = io::stderr().lock();
        stderr.write_all(redacted.as_bytes())?;
        stderr.flush()
    }
}

impl Write for EventBuffer {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.emit()
    }
}

impl Drop for EventBuffer {
    fn drop(&mut self) {
        let _ = self.emit();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_is_idempotent_and_keeps_plain_text() {
        let once = escape_control("x\u{1b}[2J\r\n\u{0}\u{7f}\u{202e}y");
        assert_eq!(once, "x\\e[2J\\r\\n\\u{0}\\u{7f}\\u{202e}y");
        assert_eq!(escape_control(&once), once);
        assert!(matches!(escape_control("plain é"), Cow::Borrowed(_)));
    }

    #[test]
    fn sanitize_masks_and_escapes() {
        assert_eq!(
            sanitize("key client_configs.glpat-0123456789abcdef:\n unknown"),
            "key client_configs.glpat-0123…:\\n unknown"
        );
    }
}
