//! The command line (SPEC §1): flags, their defaults and their help text.
//!
//! The original tool's flags (`--prefix`, `--service-instance`,
//! `--tag-schema`, `--capture-tags`) keep their names and meaning so that
//! existing systemd units keep working. Parsing only: nothing here reads a
//! file or the environment beyond what clap does for `--help`.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// Make this host's GitLab runners match the executor files under a prefix,
/// then write gitlab-runner's config.<instance>.toml and .runner_system_id.
#[derive(Debug, Clone, Parser)]
#[command(name = "register-runner", version, about, long_about = None)]
pub struct Cli {
    /// Runner config directory.
    #[arg(
        short = 'p',
        long,
        value_name = "DIR",
        default_value = "/etc/gitlab-runner"
    )]
    pub prefix: PathBuf,

    /// Instance name, as in the systemd unit (gitlab-runner@<instance>).
    #[arg(long, value_name = "NAME", default_value = "main", value_parser = instance_name)]
    pub service_instance: String,

    /// Plan only: print the API actions and the config diff; change nothing.
    /// Exits 0 when there is nothing to change, 2 when there is.
    #[arg(long)]
    pub dry_run: bool,

    /// JSON Schema that the tag properties must satisfy.
    #[arg(long, value_name = "FILE")]
    pub tag_schema: Option<PathBuf>,

    /// Executable that prints extra tag properties as a JSON object
    /// ("builtin": the built-in capture of os, architecture and scheduler).
    #[arg(long, value_name = "PROGRAM")]
    pub capture_tags: Option<String>,

    /// Host name to use instead of the system's (containers, tests).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,

    /// Deadline for all GitLab traffic of this run, in seconds.
    #[arg(long, value_name = "SECONDS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub timeout: u64,

    /// Fail instead of keeping the last good config when GitLab is unreachable.
    #[arg(long)]
    pub strict: bool,

    /// Allow deleting every runner of this host on a GitLab when its executor
    /// directory is empty or missing.
    #[arg(long)]
    pub allow_empty: bool,

    /// Format of the log lines on stderr.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,

    /// Format of the dry-run plan on stdout.
    #[arg(long, value_enum, value_name = "FORMAT", default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,

    /// More log detail (-v debug, -vv trace). RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Only errors in the log. RUST_LOG overrides.
    #[arg(short, long)]
    pub quiet: bool,

    /// After every run (not a dry-run), write its metrics to this file in
    /// Prometheus text format, atomically, for node_exporter's textfile
    /// collector (name it `*.prom`).
    #[arg(long, value_name = "PATH")]
    pub metrics_file: Option<PathBuf>,

    /// `check`: validate the inputs only (without it: a run).
    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Subcommands; a run needs none, so every flag works without one.
#[derive(Debug, Clone, Subcommand)]
pub enum Command {
    /// Validate every input of a prefix (or a config-repo directory laid
    /// out like one) and print every problem, each naming file, line and
    /// key: no network, no lock, nothing written. Exit 0 when there is no
    /// problem, 1 otherwise. Warnings do not fail it.
    Check(CheckArgs),
}

/// `check`'s own flags: the same as the run's, so that they may follow
/// the subcommand too (`register-runner check -p DIR`).
#[derive(Debug, Clone, Default, Args)]
pub struct CheckArgs {
    /// Directory to check (default: the run's --prefix).
    #[arg(short = 'p', long, value_name = "DIR")]
    pub prefix: Option<PathBuf>,

    /// Instance name (default: the run's --service-instance).
    #[arg(long, value_name = "NAME", value_parser = instance_name)]
    pub service_instance: Option<String>,

    /// JSON Schema that the tag properties must satisfy.
    #[arg(long, value_name = "FILE")]
    pub tag_schema: Option<PathBuf>,

    /// Host name to check the tags with (default: the run's --hostname, or the system's).
    #[arg(long, value_name = "NAME")]
    pub hostname: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

/// Instance names become file names: a bad one is a usage error (64).
fn instance_name(value: &str) -> Result<String, String> {
    crate::config::check_instance_name(value)
        .map(|()| value.to_string())
        .map_err(|e| e.to_string())
}

impl Cli {
    pub fn timeout(&self) -> Duration {
        Duration::from_secs(self.timeout)
    }

    /// The command line a `check` applies to: its own flags over the run's.
    pub fn for_check(&self, check: &CheckArgs) -> Cli {
        let mut cli = self.clone();
        if let Some(prefix) = &check.prefix {
            cli.prefix = prefix.clone();
        }
        if let Some(instance) = &check.service_instance {
            cli.service_instance = instance.clone();
        }
        if check.tag_schema.is_some() {
            cli.tag_schema = check.tag_schema.clone();
        }
        if check.hostname.is_some() {
            cli.hostname = check.hostname.clone();
        }
        cli
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_original() {
        let cli = Cli::try_parse_from(["register-runner"]).unwrap();
        assert_eq!(cli.prefix, PathBuf::from("/etc/gitlab-runner"));
        assert_eq!(cli.service_instance, "main");
        assert_eq!(cli.timeout, 60);
        assert!(!cli.dry_run && !cli.strict);
    }

    #[test]
    fn original_flags_parse() {
        let cli = Cli::try_parse_from([
            "register-runner",
            "-p",
            "/srv/runner",
            "--service-instance",
            "batch",
            "--tag-schema",
            "/srv/schema.json",
            "--capture-tags",
            "builtin",
        ])
        .unwrap();
        assert_eq!(cli.prefix, PathBuf::from("/srv/runner"));
        assert_eq!(cli.service_instance, "batch");
        assert_eq!(cli.capture_tags.as_deref(), Some("builtin"));
    }

    #[test]
    fn zero_timeout_is_a_usage_error() {
        assert!(Cli::try_parse_from(["register-runner", "--timeout", "0"]).is_err());
    }
}
