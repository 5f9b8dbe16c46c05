//! The command line (SPEC §1): flags, their defaults and their help text.
//!
//! The original tool's flags (`--prefix`, `--service-instance`,
//! `--tag-schema`, `--capture-tags`) keep their names and meaning so that
//! existing systemd units keep working. Parsing only: nothing here reads a
//! file or the environment beyond what clap does for `--help`.
//!
//! The long help (`--help`) and the man page share one text: [`HELP_SECTIONS`]
//! (files, exit codes, environment). The man page and the shell completions
//! are generated from [`Cli`] by `examples/gen-docs.rs` (`packaging/build.sh`
//! runs it), so a flag or subcommand added here appears in both.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// `--version`: the version, the git revision and the build target, as
/// gitlab-runner's `--version` shows its revision and platform (`-V` prints
/// the first line only). `build.rs` records the last two.
pub const LONG_VERSION: &str = concat!(
    env!("CARGO_PKG_VERSION"),
    "\nGit revision: ",
    env!("REGISTER_RUNNER_GIT_REVISION"),
    "\nBuild target: ",
    env!("REGISTER_RUNNER_BUILD_TARGET"),
);

/// What `--help` and the man page say beyond the options: a title and its
/// (term, description) entries, rendered as plain text by [`long_help`] and
/// as man page sections by `examples/gen-docs.rs`.
pub const HELP_SECTIONS: &[(&str, &[(&str, &str)])] = &[
    (
        "FILES",
        &[
            (
                "<prefix>/config.template.<instance>.toml",
                "Input: gitlab-runner's global settings and one [[client_configs]] table per GitLab.",
            ),
            (
                "<prefix>/<instance>/*.toml",
                "Input: one file per executor, read in file-name order (names starting with '.' are skipped).",
            ),
            (
                "<prefix>/config.<instance>.toml",
                "Output: what `gitlab-runner run --config` reads; also the store of the runner tokens. Written atomically, mode 0600.",
            ),
            (
                "<prefix>/.runner_system_id",
                "Output: this host's system id, shared with gitlab-runner.",
            ),
            (
                "<prefix>/.register-runner.<instance>.lock",
                "Lock file: runs on one prefix and instance queue.",
            ),
            (
                "/etc/gitlab-runner/<instance>.env",
                "Environment of the systemd units (variables named by env_tags).",
            ),
            (
                "/etc/gitlab-runner/gitlab-pat",
                "Where the packaged units load the credential \"gitlab-pat\" from; personal_access_token_file = \"gitlab-pat\" reads this file under systemd and by hand.",
            ),
        ],
    ),
    (
        "EXIT STATUS",
        &[
            ("0", "Success (with --dry-run: nothing to change)."),
            ("1", "Any failure: bad input, GitLab refused, I/O."),
            ("2", "--dry-run found changes to make."),
            ("64", "Command-line usage error."),
        ],
    ),
    (
        "ENVIRONMENT",
        &[
            (
                "CREDENTIALS_DIRECTORY",
                "Set by systemd's LoadCredential=: a relative *_file path in the template resolves against it, else against the prefix.",
            ),
            (
                "JOURNAL_STREAM",
                "Set by systemd when stderr is the journal: log lines then carry no timestamps and no colour.",
            ),
            (
                "RUST_LOG",
                "Log filter (e.g. debug, or register_runner=trace); overrides -v and -q. Secrets never appear at any level.",
            ),
        ],
    ),
];

/// [`HELP_SECTIONS`] as the text after the options in `--help`.
pub fn long_help() -> String {
    let mut text = String::new();
    for (title, entries) in HELP_SECTIONS {
        if !text.is_empty() {
            text.push('\n');
        }
        text.push_str(&format!("{}:\n", title_case(title)));
        for (term, description) in *entries {
            text.push_str(&format!("  {term}\n          {description}\n"));
        }
    }
    text
}

fn title_case(title: &str) -> String {
    let lower = title.to_lowercase();
    let mut chars = lower.chars();
    chars
        .next()
        .map(|c| c.to_uppercase().chain(chars).collect())
        .unwrap_or_default()
}

/// Make this host's GitLab runners match the executor files under a prefix,
/// then write gitlab-runner's `config.<instance>.toml` and `.runner_system_id`.
///
/// It runs before gitlab-runner starts (the packaged register-runner@.service,
/// or ExecStartPre= of a gitlab-runner unit), by hand, and as --dry-run before
/// a rollout. -h shows a summary, --help everything.
#[derive(Debug, Clone, Parser)]
#[command(
    name = "register-runner",
    version,
    long_version = LONG_VERSION,
    about,
    after_long_help = long_help()
)]
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
    // This doc comment is clap's --help text, where `<instance>` is meant.
    #[allow(rustdoc::invalid_html_tags)]
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
    /// ("builtin": archspec's architecture and ancestors, and the scheduler;
    /// a Python module name or `.py` file: the original's capture module,
    /// run through capture-tags-python).
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

    /// With --dry-run or `check` only: read this staged template instead of
    /// the prefix's (the token store and outputs stay the prefix's).
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,

    /// With --dry-run or `check` only: read the executor files from this
    /// staged directory instead of <prefix>/<instance>.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, value_name = "DIR")]
    pub executor_dir: Option<PathBuf>,

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

    /// Staged template to check instead of the prefix's.
    #[arg(long, value_name = "FILE")]
    pub template: Option<PathBuf>,

    /// Staged executor directory to check instead of <prefix>/<instance>.
    #[allow(rustdoc::invalid_html_tags)]
    #[arg(long, value_name = "DIR")]
    pub executor_dir: Option<PathBuf>,
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
        if check.template.is_some() {
            cli.template = check.template.clone();
        }
        if check.executor_dir.is_some() {
            cli.executor_dir = check.executor_dir.clone();
        }
        cli
    }

    /// What clap cannot say: `--template` and `--executor-dir` read staged
    /// files, and a run that applied them would put this host's runners out
    /// of step with its prefix, so they go with --dry-run or `check` only.
    pub fn check_usage(&self) -> Result<(), clap::Error> {
        use clap::CommandFactory;
        let staged = [
            ("--template", self.template.is_some()),
            ("--executor-dir", self.executor_dir.is_some()),
        ];
        let Some((flag, _)) = staged.iter().find(|(_, given)| *given) else {
            return Ok(());
        };
        if self.dry_run || self.command.is_some() {
            return Ok(());
        }
        Err(Cli::command().error(
            clap::error::ErrorKind::ArgumentConflict,
            format!(
                "{flag} reads staged files and is accepted only with --dry-run or `check`: \
                 put the files into the prefix to apply them"
            ),
        ))
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
    fn long_help_has_files_exit_codes_and_environment_and_short_help_does_not() {
        use clap::CommandFactory;
        let mut cmd = Cli::command();
        let long = cmd.render_long_help().to_string();
        for needle in [
            "Files:",
            "config.template.<instance>.toml",
            "Exit status:",
            "64",
            "Environment:",
            "CREDENTIALS_DIRECTORY",
            "JOURNAL_STREAM",
            "RUST_LOG",
        ] {
            assert!(long.contains(needle), "--help lacks {needle:?}:\n{long}");
        }
        let short = cmd.render_help().to_string();
        assert!(!short.contains("JOURNAL_STREAM"), "-h grew:\n{short}");
    }

    #[test]
    fn long_version_names_revision_and_target() {
        use clap::CommandFactory;
        let version = Cli::command().render_long_version();
        let lines: Vec<&str> = version.lines().collect();
        assert_eq!(
            lines[0],
            concat!("register-runner ", env!("CARGO_PKG_VERSION"))
        );
        assert!(lines[1].starts_with("Git revision: "), "{version}");
        assert!(lines[1].len() > "Git revision: ".len(), "{version}");
        assert_eq!(
            lines[2],
            concat!("Build target: ", env!("REGISTER_RUNNER_BUILD_TARGET"))
        );
        assert!(lines[2].contains("linux"), "{version}");
    }

    #[test]
    fn staged_inputs_only_with_dry_run_or_check() {
        let parse = |args: &[&str]| {
            let cli = Cli::try_parse_from(args).unwrap();
            cli.check_usage().map(|()| cli)
        };
        let err = parse(&["register-runner", "--executor-dir", "/tmp/s"]).unwrap_err();
        assert!(err.to_string().contains("--executor-dir"), "{err}");
        assert!(err.to_string().contains("--dry-run"), "{err}");
        let err = parse(&["register-runner", "--template", "/tmp/t.toml"]).unwrap_err();
        assert!(err.to_string().contains("--template"), "{err}");
        let cli = parse(&["register-runner", "--dry-run", "--executor-dir", "/tmp/s"]).unwrap();
        assert_eq!(cli.executor_dir, Some(PathBuf::from("/tmp/s")));
        let cli = parse(&["register-runner", "check", "--template", "/tmp/t.toml"]).unwrap();
        let Some(Command::Check(args)) = &cli.command else {
            panic!("no check")
        };
        assert_eq!(
            cli.for_check(args).template,
            Some(PathBuf::from("/tmp/t.toml"))
        );
        parse(&["register-runner", "--dry-run"]).unwrap();
    }

    #[test]
    fn zero_timeout_is_a_usage_error() {
        assert!(Cli::try_parse_from(["register-runner", "--timeout", "0"]).is_err());
    }
}
