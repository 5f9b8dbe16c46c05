//! Test support: a runner host laid out in a temp dir, the real binary run
//! against it with a scrubbed environment, and helpers over the simulator's
//! request log.

#![allow(dead_code)]

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::SystemTime;

use gitlab_sim::{RequestRecord, RunnerState, Sim};

pub const HOSTNAME: &str = "ci-node01";
pub const INSTANCE: &str = "main";
/// hostname, hostname without digits, managed, instance
pub const IDENTIFYING: [&str; 4] = ["ci-node01", "ci-node", "managed", "main"];

/// A prefix like `/etc/gitlab-runner` in a temp dir.
pub struct Host {
    pub dir: tempfile::TempDir,
    pub prefix: PathBuf,
    pub instance: String,
    pub hostname: String,
}

pub struct Run {
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    pub fn all_output(&self) -> String {
        format!("{}\n{}", self.stdout, self.stderr)
    }
}

impl std::fmt::Debug for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {}\n--- stdout\n{}\n--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// The executor files of [`Host::fresh`].
pub enum Executors {
    /// `shell.toml` ([`Host::shell_executor`]).
    Shell,
    /// shell, docker and custom ([`Host::three_executors`]).
    Three,
}

impl Host {
    pub fn new() -> Host {
        Host::with_hostname(HOSTNAME)
    }

    /// The usual opening: a fresh host whose template names `sim` with the
    /// admin PAT ([`Host::template_with_pat`]) and whose executor files
    /// are `executors`, all on `sim`.
    pub fn fresh(sim: &Sim, executors: Executors) -> Host {
        let host = Host::new();
        host.template_with_pat(&sim.url(), gitlab_sim::ADMIN_PAT);
        match executors {
            Executors::Shell => host.shell_executor(&sim.url()),
            Executors::Three => host.three_executors(&sim.url()),
        }
        host
    }

    pub fn with_hostname(hostname: &str) -> Host {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("gitlab-runner");
        fs::create_dir(&prefix).unwrap();
        fs::set_permissions(&prefix, fs::Permissions::from_mode(0o700)).unwrap();
        let host = Host {
            dir,
            prefix,
            instance: INSTANCE.into(),
            hostname: hostname.into(),
        };
        fs::create_dir(host.executor_dir()).unwrap();
        fs::set_permissions(host.executor_dir(), fs::Permissions::from_mode(0o700)).unwrap();
        host
    }

    /// A second host sharing nothing but the GitLab.
    pub fn executor_dir(&self) -> PathBuf {
        self.prefix.join(&self.instance)
    }

    pub fn template_path(&self) -> PathBuf {
        self.prefix
            .join(format!("config.template.{}.toml", self.instance))
    }

    pub fn config_path(&self) -> PathBuf {
        self.prefix.join(format!("config.{}.toml", self.instance))
    }

    pub fn system_id_path(&self) -> PathBuf {
        self.prefix.join(".runner_system_id")
    }

    /// Gives this host its own `.runner_system_id`: hosts simulated on one
    /// machine would otherwise share the machine-id derived one.
    pub fn set_system_id(&self, id: &str) {
        fs::write(self.system_id_path(), id).unwrap();
        fs::set_permissions(self.system_id_path(), fs::Permissions::from_mode(0o600)).unwrap();
    }

    pub fn write_template(&self, text: &str) {
        fs::write(self.template_path(), text).unwrap();
    }

    /// The usual template: global settings with a comment, one GitLab with a PAT.
    pub fn template_with_pat(&self, url: &str, pat: &str) {
        self.write_template(&format!(
            "# Global settings for gitlab-runner\nconcurrent = 4\ncheck_interval = 3\n\n\
             [session_server]\n  listen_address = \"[::]:8093\"\n\n\
             [[client_configs]]\nurl = \"{url}\"\npersonal_access_token = \"{pat}\"\n"
        ));
    }

    pub fn template_with_registration_token(&self, url: &str, token: &str) {
        self.write_template(&format!(
            "concurrent = 2\n\n[[client_configs]]\nurl = \"{url}\"\nregistration_token = \"{token}\"\n"
        ));
    }

    pub fn write_executor(&self, file: &str, text: &str) {
        fs::write(self.executor_dir().join(file), text).unwrap();
    }

    /// `shell.toml`: the plainest executor on `url`.
    pub fn shell_executor(&self, url: &str) {
        self.write_executor(
            "shell.toml",
            &format!("url = \"{url}\"\nexecutor = \"shell\"\n"),
        );
    }

    pub fn remove_executor(&self, file: &str) {
        fs::remove_file(self.executor_dir().join(file)).unwrap();
    }

    /// shell, docker (with `[docker]`) and custom executors on `url`.
    pub fn three_executors(&self, url: &str) {
        self.write_executor("10-shell.toml", &format!("url = \"{url}\"\nexecutor = \"shell\"\nenv_tags = [\"SITE_TAG\"]\ntags = [\"fast\"]\n"));
        self.write_executor(
            "20-docker.toml",
            &format!("url = \"{url}/\"\nexecutor = \"docker\"\nlimit = 2\n\n[docker]\nimage = \"alpine:3\"\nprivileged = false\n"),
        );
        self.write_executor(
            "30-custom.toml",
            &format!("url = \"{url}\"\nexecutor = \"custom\"\nbuilds_dir = \"/scratch/builds\"\n\n[custom]\nrun_exec = \"/usr/bin/jacamar\"\n"),
        );
    }

    pub fn command(&self, args: &[&str]) -> Command {
        self.command_of(Path::new(env!("CARGO_BIN_EXE_register-runner")), args)
    }

    /// As [`Host::command`], running `program` (a link to the binary placed
    /// elsewhere, say with the capture adapter beside it).
    pub fn command_of(&self, program: &Path, args: &[&str]) -> Command {
        let mut cmd = Command::new(program);
        cmd.arg("--prefix")
            .arg(&self.prefix)
            .arg("--service-instance")
            .arg(&self.instance)
            .arg("--hostname")
            .arg(&self.hostname)
            .args(args)
            .env_remove("RUST_LOG")
            .env_remove("JOURNAL_STREAM")
            .env_remove("CREDENTIALS_DIRECTORY")
            .env("SITE_TAG", "site-a")
            .env("REGISTER_RUNNER_NO_RETRY_DELAY", "1")
            .stdin(Stdio::null());
        cmd
    }

    pub fn run(&self, args: &[&str]) -> Run {
        let mut all = vec!["--timeout", "20"];
        all.extend_from_slice(args);
        run_command(self.command(&all))
    }

    pub fn config(&self) -> String {
        fs::read_to_string(self.config_path()).unwrap()
    }

    pub fn config_doc(&self) -> toml_edit::DocumentMut {
        self.config().parse().unwrap()
    }

    /// The `[[runners]]` of the config written (none if there is no file).
    pub fn config_runners(&self) -> Vec<toml_edit::Table> {
        if !self.config_path().exists() {
            return vec![];
        }
        match self.config_doc().get("runners") {
            Some(toml_edit::Item::ArrayOfTables(a)) => a.iter().cloned().collect(),
            _ => vec![],
        }
    }

    pub fn config_mtime(&self) -> SystemTime {
        fs::metadata(self.config_path())
            .unwrap()
            .modified()
            .unwrap()
    }

    pub fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    pub fn system_id(&self) -> String {
        fs::read_to_string(self.system_id_path()).unwrap()
    }

    /// Files under the prefix (names), sorted.
    pub fn files(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(&self.prefix)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }
}

pub fn run_command(mut cmd: Command) -> Run {
    let Output {
        status,
        stdout,
        stderr,
    } = cmd.output().expect("run register-runner");
    Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    }
}

/// Requests that change GitLab state (not reads, not verify).
pub fn mutating(requests: &[RequestRecord]) -> Vec<String> {
    requests
        .iter()
        .filter(|r| r.method != "GET" && r.path != "/api/v4/runners/verify")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect()
}

pub fn count(requests: &[RequestRecord], method: &str, path: &str) -> usize {
    requests
        .iter()
        .filter(|r| r.method == method && r.path == path)
        .count()
}

pub fn has_identifying_tags(runner: &RunnerState) -> bool {
    IDENTIFYING
        .iter()
        .all(|t| runner.tag_list.iter().any(|x| x == t))
}

/// Every secret the sim knows, plus the runners' current tokens.
pub fn secrets(sim: &Sim) -> Vec<String> {
    let mut all = vec![
        gitlab_sim::ADMIN_PAT.to_string(),
        gitlab_sim::USER_PAT.to_string(),
        gitlab_sim::REGISTRATION_TOKEN.to_string(),
    ];
    all.extend(sim.runners().into_iter().map(|r| r.token));
    all
}

/// Fails if any known secret appears in the run's stdout or stderr.
pub fn assert_no_secret(run: &Run, secrets: &[String]) {
    let text = run.all_output();
    for secret in secrets {
        assert!(
            !text.contains(secret.as_str()),
            "secret {}… leaked in output:\n{run:?}",
            &secret[..6]
        );
    }
}

pub fn table_str(table: &toml_edit::Table, key: &str) -> String {
    table
        .get(key)
        .and_then(|i| i.as_str())
        .unwrap_or_default()
        .to_string()
}

pub fn table_int(table: &toml_edit::Table, key: &str) -> i64 {
    table
        .get(key)
        .and_then(|i| i.as_integer())
        .unwrap_or_default()
}

/// Polls `cond` every 2 ms for up to 20 s; false if it never held.
pub fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while std::time::Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    cond()
}

/// How long GitLab accepts a token issued by [`sim_issuing_due_tokens`].
pub const DUE_TOKEN_LIFETIME: std::time::Duration = std::time::Duration::from_secs(60);

/// A simulator whose runner tokens are due for rotation the moment they are
/// issued, instead of waiting for a short-lived token to age: tokens live
/// [`DUE_TOKEN_LIFETIME`], but GitLab's clock lags that much behind this
/// host's, so the `token_expires_at` it answers is the time of issue on the
/// tool's clock (past 75 % of the token's life: rotate), while GitLab itself
/// accepts the token for that long in real time.
pub fn sim_issuing_due_tokens() -> Sim {
    let sim = Sim::start_with(gitlab_sim::SimOptions {
        token_lifetime: Some(DUE_TOKEN_LIFETIME),
        ..Default::default()
    });
    sim.set_clock_lag(DUE_TOKEN_LIFETIME);
    sim
}

/// Escapes `text` for use as a literal in an insta filter (a regex).
fn regex_literal(text: &str) -> String {
    text.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '/' || c == '_' || c == '-' {
                c.to_string()
            } else {
                format!("\\{c}")
            }
        })
        .collect()
}

/// insta settings for what a run on `host` prints: what varies from run to
/// run is replaced by a placeholder (the host's temp dir, other temp dirs,
/// the simulator's port, timestamps, the visible start of runner tokens),
/// so that the snapshot holds only what the tool decides to say.
pub fn snapshot_settings(host: &Host) -> insta::Settings {
    let mut settings = insta::Settings::clone_current();
    settings.add_filter(
        &regex_literal(&host.dir.path().display().to_string()),
        "[HOST]",
    );
    settings.add_filter(r"/tmp/\.tmp[A-Za-z0-9]+", "[TMP]");
    settings.add_filter(r"127\.0\.0\.1:\d+", "127.0.0.1:[PORT]");
    // Times of this run (not `0001-01-01T00:00:00Z`, "never expires").
    settings.add_filter(
        r"\b[12]\d{3}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)",
        "[TIME]",
    );
    settings.add_filter(r"(glrtr?-)[A-Za-z0-9_-]{1,4}…", "${1}[TOKEN]…");
    settings
}

/// A fresh host with one shell executor and only a registration token, on
/// a GitLab where registration tokens are disabled (410): every create fails.
pub fn host_whose_creates_fail() -> (Sim, Host) {
    let sim = Sim::start_with(gitlab_sim::SimOptions {
        registration_disabled: true,
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), gitlab_sim::REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    (sim, host)
}
