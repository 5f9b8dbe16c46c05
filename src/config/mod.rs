//! Input loading and validation (SPEC §2): the template
//! `config.template.<instance>.toml` with its `client_configs`, and the
//! executor files `<instance>/*.toml`.
//!
//! Everything here happens before any network traffic. Every file is read
//! under [`crate::fsutil`]'s rules (regular, capped, owned by root or the
//! running user and not writable by others); a token must be one word of
//! printable ASCII, since a PAT travels as an HTTP header. Every problem is
//! reported with the file, the key and (where the file has one) the line and
//! column; messages never quote a secret's value. The result is an
//! [`Inputs`] value that holds only valid state: client configs with their
//! secrets loaded, executors split into the keys this tool consumes and the
//! gitlab-runner settings passed through unchanged.
//!
//! The parts: `template` (the template and its `client_configs`),
//! `executor` (one executor file), `server` (the server-side runner
//! settings, one row each of [`SERVER_SETTINGS`]), `secret_file` (secrets
//! given literally or in `*_file`s), `keys` (which keys the tool reads or
//! writes, and their spelling), `source` (a parsed file that names its own
//! lines) and `toml10` (what gitlab-runner's TOML 1.0 reader cannot read).

mod executor;
mod keys;
pub mod known_keys;
mod secret_file;
mod server;
mod source;
mod template;
mod toml10;

#[cfg(test)]
mod tests;

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use toml_edit::{DocumentMut, Table};

use crate::fsutil;
use crate::secret::Secret;

pub use keys::folded_key;
pub use server::{Rule, SERVER_SETTINGS, ServerSetting, ServerSettings, Setting};

/// What the environment contributes to loading (kept explicit for tests).
#[derive(Debug, Clone)]
pub struct LoadEnv {
    pub prefix: PathBuf,
    pub instance: String,
    pub hostname: String,
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`), if set.
    pub credentials_directory: Option<PathBuf>,
    /// `--allow-empty`: a missing executor directory counts as empty.
    pub allow_missing_executor_dir: bool,
    /// `--template FILE` (dry-run and `check` only): a staged template read
    /// instead of the prefix's; the token store and outputs stay the prefix's.
    pub template: Option<PathBuf>,
    /// `--executor-dir DIR` (dry-run and `check` only): a staged executor
    /// directory read instead of `<prefix>/<instance>`.
    pub executor_dir: Option<PathBuf>,
}

impl LoadEnv {
    /// The template to read: the staged one, else the prefix's.
    pub fn template_path(&self) -> PathBuf {
        self.template
            .clone()
            .unwrap_or_else(|| template_path(&self.prefix, &self.instance))
    }

    /// The executor directory to read: the staged one, else the prefix's.
    pub fn executor_dir(&self) -> PathBuf {
        self.executor_dir
            .clone()
            .unwrap_or_else(|| self.prefix.join(&self.instance))
    }
}

/// All validated input of one run.
#[derive(Debug)]
pub struct Inputs {
    pub template: Template,
    /// In file-name order.
    pub executors: Vec<Executor>,
    /// The executor directory was missing or held no executor file.
    pub executor_dir_empty: bool,
}

#[cfg(test)]
impl Inputs {
    /// Unit-test input: one GitLab at `url` ([`ClientConfig::for_test`]),
    /// `executors` as given.
    pub fn for_test(url: &str, pat: bool, executors: Vec<Executor>) -> Inputs {
        Inputs {
            template: Template {
                path: PathBuf::from("/etc/gitlab-runner/config.template.main.toml"),
                globals: DocumentMut::new(),
                clients: vec![ClientConfig::for_test(url, pat)],
            },
            executor_dir_empty: executors.is_empty(),
            executors,
        }
    }
}

#[derive(Debug)]
pub struct Template {
    pub path: PathBuf,
    /// The template without `client_configs`: gitlab-runner global settings,
    /// comments and order kept.
    pub globals: DocumentMut,
    pub clients: Vec<ClientConfig>,
}

/// One GitLab instance (`[[client_configs]]`).
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// As written, trailing `/` removed: the key executors choose by.
    pub url: String,
    pub personal_access_token: Option<Secret>,
    pub registration_token: Option<Secret>,
    pub scope: RunnerScope,
    /// Extra CA bundle (PEM) for this GitLab, with its path for messages.
    pub tls_ca: Option<(PathBuf, Vec<u8>)>,
}

#[cfg(test)]
impl ClientConfig {
    /// Unit-test GitLab at `url`: an instance-runner PAT, or else a
    /// registration token; no `tls_ca_file`.
    pub fn for_test(url: &str, pat: bool) -> ClientConfig {
        ClientConfig {
            url: url.into(),
            personal_access_token: pat.then(|| Secret::new("glpat-0000000000000000")),
            registration_token: (!pat).then(|| Secret::new("GR1348941registration")),
            scope: RunnerScope::Instance,
            tls_ca: None,
        }
    }
}

/// Where PAT-created runners live (`runner_type` and its id).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RunnerScope {
    Instance,
    Group(u64),
    Project(u64),
}

/// One executor file.
#[derive(Debug, Clone)]
pub struct Executor {
    pub file: PathBuf,
    /// Normalised (trailing `/` removed); equals a [`ClientConfig::url`].
    pub url: String,
    pub executor: String,
    pub name: String,
    /// A runner token made in GitLab's UI: verified and used, never created
    /// or deleted.
    pub token: Option<Secret>,
    pub env_tags: Vec<String>,
    pub tags: Vec<String>,
    pub server: ServerSettings,
    /// Every other key: gitlab-runner `[[runners]]` settings, unchanged.
    pub settings: Table,
}

pub fn template_path(prefix: &Path, instance: &str) -> PathBuf {
    prefix.join(format!("config.template.{instance}.toml"))
}

pub fn output_path(prefix: &Path, instance: &str) -> PathBuf {
    prefix.join(format!("config.{instance}.toml"))
}

/// Removes the trailing `/` that executors may or may not write.
pub fn normalize_url(url: &str) -> String {
    url.trim_end_matches('/').to_string()
}

/// Instance names become file names: keep them to a safe alphabet.
pub fn check_instance_name(instance: &str) -> Result<()> {
    let ok = !instance.is_empty()
        && !instance.starts_with('.')
        && instance
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '@'));
    if !ok {
        bail!(
            "--service-instance `{instance}`: use letters, digits, `-`, `_`, `.` or `@` (it names files under the prefix)"
        );
    }
    Ok(())
}

/// Loads and validates the template and all executor files; logs what is
/// worth a warning (unknown keys and executors).
pub fn load(env: &LoadEnv) -> Result<Inputs> {
    let mut warnings = Vec::new();
    let inputs = load_collecting(env, &mut warnings);
    for warning in &warnings {
        tracing::warn!("{warning}");
    }
    inputs
}

/// [`load`], with the warnings pushed onto `warnings` instead of logged:
/// the first problem [`check_all`] finds is the error.
pub fn load_collecting(env: &LoadEnv, warnings: &mut Vec<String>) -> Result<Inputs> {
    let (inputs, problems) = check_all(env, warnings);
    match (inputs, problems.into_iter().next()) {
        (Some(inputs), None) => Ok(inputs),
        (_, Some(first)) => Err(anyhow::anyhow!(first)),
        (None, None) => bail!("the template could not be loaded"),
    }
}

/// Every problem of the inputs at once, for `check`: each file is
/// validated on its own (a file stops at its first problem), and the
/// checks across files (duplicate names, missing credentials) run on the
/// files that passed. Warnings go onto `warnings`. The inputs that passed
/// come back too (`None` when the template did not).
pub fn check_all(env: &LoadEnv, warnings: &mut Vec<String>) -> (Option<Inputs>, Vec<String>) {
    let mut problems = Vec::new();
    if let Err(e) = check_instance_name(&env.instance) {
        return (None, vec![format!("{e:#}")]);
    }
    if let Err(e) = fsutil::check_owner_only_dir(&env.prefix) {
        problems.push(format!("{e:#}"));
    }
    let template = template::load_template(env, warnings)
        .map_err(|e| problems.push(format!("{e:#}")))
        .ok();
    // A staged directory gets the same owner/mode check as the prefix's
    // (its parents, such as /tmp, do not: they are not the prefix's).
    let dir = env.executor_dir();
    let files = match executor_files(&dir) {
        Ok(files) => {
            if let Err(e) = fsutil::check_owner_only_dir(&dir) {
                problems.push(format!("{e:#}"));
            }
            files
        }
        Err(e) if env.allow_missing_executor_dir && !dir.exists() => {
            warnings.push(format!("{e:#}; --allow-empty: treating it as empty"));
            Vec::new()
        }
        Err(e) => {
            problems.push(format!("{e:#}"));
            Vec::new()
        }
    };
    let Some(template) = template else {
        if !files.is_empty() {
            problems.push(format!(
                "the {} executor file(s) in `{}` were not checked: the template has a problem",
                files.len(),
                dir.display()
            ));
        }
        return (None, problems);
    };
    let mut executors: Vec<Executor> = Vec::new();
    for file in files {
        match executor::load_executor(&file, &template, env, warnings) {
            Ok(executor) => {
                if let Some(other) = executors.iter().find(|e| e.name == executor.name) {
                    // The original named every runner after its executor
                    // type, so two executors of one type collapsed into one
                    // runner there.
                    let since_the_original = if executor.name
                        == executor::default_runner_name(env, &executor.executor)
                    {
                        format!(
                            " (the original register-runner named runners after their executor type, so two `{}` \
                             executors became one runner; here each needs a name of its own)",
                            executor.executor
                        )
                    } else {
                        String::new()
                    };
                    problems.push(format!(
                        "`{}` and `{}` both name their runner `{}`{since_the_original}: give one of them another `name`",
                        other.file.display(),
                        file.display(),
                        executor.name
                    ));
                } else {
                    executors.push(executor);
                }
            }
            Err(e) => problems.push(format!("{e:#}")),
        }
    }
    for client in &template.clients {
        let needs_credential = executors
            .iter()
            .any(|e| e.url == client.url && e.token.is_none());
        if needs_credential
            && client.personal_access_token.is_none()
            && client.registration_token.is_none()
        {
            problems.push(format!(
                "`{}`: client_configs entry for `{}` has neither `personal_access_token` nor `registration_token`, \
                 and not every executor on it has its own `token`",
                template.path.display(),
                client.url
            ));
        }
    }
    let inputs = Inputs {
        executor_dir_empty: executors.is_empty(),
        template,
        executors,
    };
    (Some(inputs), problems)
}

/// `<dir>/*.toml` in file-name order (dot files and other names ignored).
fn executor_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = fs::read_dir(dir).with_context(|| {
        format!(
            "cannot read executor directory `{}` (create it, with one .toml file per executor)",
            dir.display()
        )
    })?;
    let mut files = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read `{}`", dir.display()))?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        if name.starts_with('.') || !name.ends_with(".toml") {
            continue;
        }
        files.push(entry.path());
    }
    files.sort();
    Ok(files)
}
