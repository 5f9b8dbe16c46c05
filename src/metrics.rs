//! `--metrics-file`: the last run as a Prometheus text-format file for
//! node_exporter's textfile collector (issue 12). It owns the metric names,
//! their rendering and the file's atomic write; it is fed the run's values
//! by `app` (the summary counts, each GitLab client's request counts, the
//! tokens the output file holds) and decides nothing about the run.
//!
//! Every series is a gauge of the last run, not a counter: the file is
//! replaced whole after each run. Times are Unix timestamps
//! (`_timestamp_seconds`), so a file written at boot stays true and an
//! alert computes `… - time()`. A token that never expires has no expiry
//! series. Label values are escaped as the text format asks (`\\`, `\"`,
//! `\n`); no secret is among them (names, urls, ids only).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result};
use time::OffsetDateTime;

use crate::report::Counts;

/// What one run leaves for monitoring.
#[derive(Debug, Clone)]
pub struct RunMetrics {
    /// The `--service-instance`, a label on every series.
    pub instance: String,
    pub finished_at: OffsetDateTime,
    pub success: bool,
    pub duration: Duration,
    /// Runners by what the run did with them; `None` when the run failed
    /// before it applied anything (no series then).
    pub counts: Option<Counts>,
    /// Requests sent, per GitLab url, by HTTP status (`error`: no answer).
    pub requests: Vec<(String, BTreeMap<String, u64>)>,
    /// Every token the output file holds that expires.
    pub tokens: Vec<TokenExpiry>,
}

/// A held token's expiry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenExpiry {
    pub gitlab: String,
    pub runner: String,
    pub id: u64,
    pub expires_at: OffsetDateTime,
}

/// The metrics as Prometheus text format 0.0.4.
pub fn render(m: &RunMetrics) -> String {
    let mut out = String::new();
    let instance = format!("service_instance=\"{}\"", escape(&m.instance));
    let mut gauge = |name: &str, help: &str, samples: &[(String, String)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} gauge");
        for (labels, value) in samples {
            let _ = writeln!(out, "{name}{{{labels}}} {value}");
        }
    };
    gauge(
        "register_runner_last_run_timestamp_seconds",
        "When the last run of register-runner ended, as a Unix timestamp.",
        &[(instance.clone(), m.finished_at.unix_timestamp().to_string())],
    );
    gauge(
        "register_runner_last_run_success",
        "1 if the last run succeeded, 0 if it failed.",
        &[(instance.clone(), u8::from(m.success).to_string())],
    );
    gauge(
        "register_runner_last_run_duration_seconds",
        "How long the last run took.",
        &[(instance.clone(), format!("{:.3}", m.duration.as_secs_f64()))],
    );
    if let Some(counts) = &m.counts {
        let samples: Vec<(String, String)> = counts
            .by_state()
            .into_iter()
            .map(|(state, n)| (format!("{instance},state=\"{state}\""), n.to_string()))
            .collect();
        gauge(
            "register_runner_last_run_runners",
            "Runners by what the last run did with them.",
            &samples,
        );
    }
    let samples: Vec<(String, String)> = m
        .requests
        .iter()
        .flat_map(|(gitlab, by_status)| {
            let instance = &instance;
            by_status.iter().map(move |(status, n)| {
                (
                    format!(
                        "{instance},gitlab=\"{}\",status=\"{}\"",
                        escape(gitlab),
                        escape(status)
                    ),
                    n.to_string(),
                )
            })
        })
        .collect();
    gauge(
        "register_runner_last_run_requests",
        "HTTP requests the last run sent, by GitLab and status (error: no answer).",
        &samples,
    );
    let samples: Vec<(String, String)> = m
        .tokens
        .iter()
        .map(|t| {
            (
                format!(
                    "{instance},gitlab=\"{}\",runner=\"{}\",id=\"{}\"",
                    escape(&t.gitlab),
                    escape(&t.runner),
                    t.id
                ),
                t.expires_at.unix_timestamp().to_string(),
            )
        })
        .collect();
    gauge(
        "register_runner_token_expires_at_timestamp_seconds",
        "When each runner token in the config expires, as a Unix timestamp (none for a token that never expires).",
        &samples,
    );
    out
}

/// A label value escaped for the text format.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Writes the metrics atomically (temp file in the same directory, mode
/// 0644 so that node_exporter can read it, fsync, rename): the collector
/// never reads half a file.
pub fn write(path: &Path, m: &RunMetrics) -> Result<()> {
    let context = || format!("cannot write the metrics file `{}`", path.display());
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".register-runner-metrics.")
        .tempfile_in(dir)
        .with_context(context)?;
    tmp.as_file()
        .set_permissions(std::fs::Permissions::from_mode(0o644))
        .with_context(context)?;
    tmp.write_all(render(m).as_bytes()).with_context(context)?;
    tmp.as_file().sync_all().with_context(context)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(context)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunMetrics {
        RunMetrics {
            instance: "main".into(),
            finished_at: OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap(),
            success: true,
            duration: Duration::from_millis(1234),
            counts: Some(Counts {
                created: 1,
                kept: 2,
                ..Counts::default()
            }),
            requests: vec![(
                "https://gitlab.example.com".into(),
                BTreeMap::from([("200".into(), 5), ("201".into(), 1)]),
            )],
            tokens: vec![TokenExpiry {
                gitlab: "https://gitlab.example.com".into(),
                runner: "node \"1\"".into(),
                id: 7,
                expires_at: OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap(),
            }],
        }
    }

    #[test]
    fn renders_gauges_with_escaped_labels() {
        let text = render(&sample());
        for line in [
            "# TYPE register_runner_last_run_success gauge",
            "register_runner_last_run_timestamp_seconds{service_instance=\"main\"} 1700000000",
            "register_runner_last_run_success{service_instance=\"main\"} 1",
            "register_runner_last_run_duration_seconds{service_instance=\"main\"} 1.234",
            "register_runner_last_run_runners{service_instance=\"main\",state=\"created\"} 1",
            "register_runner_last_run_runners{service_instance=\"main\",state=\"kept\"} 2",
            "register_runner_last_run_requests{service_instance=\"main\",gitlab=\"https://gitlab.example.com\",status=\"201\"} 1",
            "register_runner_token_expires_at_timestamp_seconds{service_instance=\"main\",gitlab=\"https://gitlab.example.com\",runner=\"node \\\"1\\\"\",id=\"7\"} 1800000000",
        ] {
            assert!(text.lines().any(|l| l == line), "{line}\n{text}");
        }
    }

    #[test]
    fn a_run_that_failed_early_has_no_runner_series() {
        let mut m = sample();
        m.counts = None;
        m.success = false;
        let text = render(&m);
        assert!(
            !text.contains("register_runner_last_run_runners{"),
            "{text}"
        );
        assert!(text.contains("register_runner_last_run_success{service_instance=\"main\"} 0"));
    }
}
