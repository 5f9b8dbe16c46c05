//! Input loading and validation (SPEC §2): the template
//! `config.template.<instance>.toml` with its `client_configs`, and the
//! executor files `<instance>/*.toml`.
//!
//! Everything here happens before any network traffic. Every problem is
//! reported with the file, the key and (where the file has one) the line and
//! column; messages never quote a secret's value. The result is an
//! [`Inputs`] value that holds only valid state: client configs with their
//! secrets loaded, executors split into the keys this tool consumes and the
//! gitlab-runner settings passed through unchanged.

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use toml_edit::{DocumentMut, Item, Table, Value};

use crate::fsutil;
use crate::secret::Secret;

/// Keys of an executor file that the tool consumes; never written out.
const TOOL_KEYS: &[&str] = &[
    "url",
    "executor",
    "name",
    "token",
    "env_tags",
    "tags",
    "run_untagged",
    "locked",
    "paused",
    "access_level",
    "maximum_timeout",
    "maintenance_note",
];

/// Keys the tool writes into each `[[runners]]` itself.
const GENERATED_KEYS: &[&str] = &["id", "token_obtained_at", "token_expires_at", "description"];

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

/// Server-side runner settings, sent on create and kept in sync with a PAT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerSettings {
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: Option<bool>,
    pub access_level: Option<String>,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: Option<String>,
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

/// Loads and validates the template and all executor files.
pub fn load(env: &LoadEnv) -> Result<Inputs> {
    check_instance_name(&env.instance)?;
    fsutil::check_owner_only_dir(&env.prefix)?;
    let template = load_template(env)?;
    let dir = env.prefix.join(&env.instance);
    let files = match executor_files(&dir) {
        Ok(files) => {
            fsutil::check_owner_only_dir(&dir)?;
            files
        }
        Err(e) if !dir.exists() && env.allow_missing_executor_dir => {
            tracing::warn!("{e:#}; --allow-empty: treating it as empty");
            Vec::new()
        }
        Err(e) => return Err(e),
    };
    let mut executors = Vec::with_capacity(files.len());
    let mut names: HashMap<String, PathBuf> = HashMap::new();
    for file in files {
        let executor = load_executor(&file, &template, env)?;
        if let Some(other) = names.get(&executor.name) {
            bail!(
                "`{}` and `{}` both name their runner `{}`: give one of them another `name`",
                other.display(),
                file.display(),
                executor.name
            );
        }
        names.insert(executor.name.clone(), file.clone());
        executors.push(executor);
    }
    for client in &template.clients {
        let needs_credential = executors
            .iter()
            .any(|e| e.url == client.url && e.token.is_none());
        if needs_credential
            && client.personal_access_token.is_none()
            && client.registration_token.is_none()
        {
            bail!(
                "`{}`: client_configs entry for `{}` has neither `personal_access_token` nor `registration_token`, \
                 and not every executor on it has its own `token`",
                template.path.display(),
                client.url
            );
        }
    }
    // The last output is input too: a broken one must stop the run here,
    // before the lock file or `.runner_system_id` is written.
    crate::store::check(&output_path(&env.prefix, &env.instance))?;
    Ok(Inputs {
        executor_dir_empty: executors.is_empty(),
        template,
        executors,
    })
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

/// A parsed TOML file that can point at its own lines in error messages.
struct TomlSource {
    path: PathBuf,
    text: String,
}

impl TomlSource {
    fn read(path: &Path) -> Result<(TomlSource, toml_edit::Document<String>)> {
        let text = fsutil::read_input(path)?;
        let source = TomlSource {
            path: path.to_path_buf(),
            text,
        };
        let doc = toml_edit::Document::parse(source.text.clone()).map_err(|e| {
            // Only the parser's message and position: the offending line
            // might hold a secret, so it is not quoted.
            anyhow!(
                "`{}`{}: invalid TOML: {}",
                source.path.display(),
                source.position(e.span()),
                e.message().trim_end()
            )
        })?;
        Ok((source, doc))
    }

    /// ` line L, column C` for a byte span, or nothing.
    fn position(&self, span: Option<Range<usize>>) -> String {
        let Some(span) = span else {
            return String::new();
        };
        let mut start = span.start.min(self.text.len());
        while !self.text.is_char_boundary(start) {
            start -= 1;
        }
        let before = &self.text[..start];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
        format!(" line {line}, column {column}")
    }

    fn error(&self, key: &str, item: &Item, message: impl std::fmt::Display) -> anyhow::Error {
        anyhow!(
            "`{}`{}: key `{key}`: {message}",
            self.path.display(),
            self.position(item.span())
        )
    }

    fn string(&self, table: &Table, key: &str) -> Result<Option<String>> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_str() {
                Some(s) => Ok(Some(s.to_string())),
                None => Err(self.error(
                    key,
                    item,
                    format!("expected a string, found {}", kind(item)),
                )),
            },
        }
    }

    fn non_empty_string(&self, table: &Table, key: &str) -> Result<Option<String>> {
        match self.string(table, key)? {
            Some(s) if s.trim().is_empty() => {
                Err(self.error(key, &table[key], "must not be empty"))
            }
            other => Ok(other),
        }
    }

    fn bool(&self, table: &Table, key: &str) -> Result<Option<bool>> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_bool() {
                Some(b) => Ok(Some(b)),
                None => Err(self.error(
                    key,
                    item,
                    format!("expected true or false, found {}", kind(item)),
                )),
            },
        }
    }

    fn integer(&self, table: &Table, key: &str) -> Result<Option<u64>> {
        match table.get(key) {
            None => Ok(None),
            Some(item) => match item.as_integer() {
                Some(i) if i > 0 => Ok(Some(i as u64)),
                Some(_) => Err(self.error(key, item, "must be a positive integer")),
                None => Err(self.error(
                    key,
                    item,
                    format!("expected an integer, found {}", kind(item)),
                )),
            },
        }
    }

    fn strings(&self, table: &Table, key: &str) -> Result<Vec<String>> {
        let Some(item) = table.get(key) else {
            return Ok(Vec::new());
        };
        let Some(array) = item.as_array() else {
            return Err(self.error(
                key,
                item,
                format!("expected an array of strings, found {}", kind(item)),
            ));
        };
        array
            .iter()
            .map(|v| match v.as_str() {
                Some(s) if !s.trim().is_empty() => Ok(s.trim().to_string()),
                Some(_) => Err(self.error(key, item, "holds an empty string")),
                None => {
                    Err(self.error(key, item, format!("holds {}, not a string", value_kind(v))))
                }
            })
            .collect()
    }
}

fn kind(item: &Item) -> &'static str {
    match item {
        Item::None => "nothing",
        Item::Value(v) => value_kind(v),
        Item::Table(_) => "a table",
        Item::ArrayOfTables(_) => "an array of tables",
    }
}

fn value_kind(value: &Value) -> &'static str {
    match value {
        Value::String(_) => "a string",
        Value::Integer(_) => "an integer",
        Value::Float(_) => "a float",
        Value::Boolean(_) => "a boolean",
        Value::Datetime(_) => "a datetime",
        Value::Array(_) => "an array",
        Value::InlineTable(_) => "a table",
    }
}

fn load_template(env: &LoadEnv) -> Result<Template> {
    let path = template_path(&env.prefix, &env.instance);
    if !path.exists() && fs::symlink_metadata(&path).is_err() {
        bail!(
            "template `{}` does not exist: it holds the gitlab-runner global settings and `[[client_configs]]`",
            path.display()
        );
    }
    let (source, doc) = TomlSource::read(&path)?;
    if let Some(item) = doc.get("runners") {
        return Err(source.error(
            "runners",
            item,
            "the template must not hold `[[runners]]`: executors live in one file each under the instance directory",
        ));
    }
    let Some(item) = doc.get("client_configs") else {
        bail!(
            "`{}`: no `[[client_configs]]`: add one per GitLab, with at least `url`",
            path.display()
        );
    };
    let tables: Vec<Table> = match item {
        Item::ArrayOfTables(array) => array.iter().cloned().collect(),
        Item::Value(Value::Array(array)) => array
            .iter()
            .map(|v| match v {
                Value::InlineTable(t) => Ok(t.clone().into_table()),
                other => Err(source.error(
                    "client_configs",
                    item,
                    format!("expected tables, found {}", value_kind(other)),
                )),
            })
            .collect::<Result<_>>()?,
        other => {
            return Err(source.error(
                "client_configs",
                other,
                format!(
                    "expected an array of tables (`[[client_configs]]`), found {}",
                    kind(other)
                ),
            ));
        }
    };
    if tables.is_empty() {
        bail!("`{}`: `client_configs` is empty", path.display());
    }
    let mut clients: Vec<ClientConfig> = Vec::new();
    for table in &tables {
        let client = load_client_config(&source, table, env)?;
        if clients.iter().any(|c| c.url == client.url) {
            bail!(
                "`{}`: two client_configs entries have url `{}`",
                path.display(),
                client.url
            );
        }
        clients.push(client);
    }
    let mut globals = doc.into_mut();
    globals.remove("client_configs");
    Ok(Template {
        path,
        globals,
        clients,
    })
}

const CLIENT_KEYS: &[&str] = &[
    "url",
    "personal_access_token",
    "personal_access_token_file",
    "registration_token",
    "registration_token_file",
    "runner_type",
    "group_id",
    "project_id",
    "tls_ca_file",
];

fn load_client_config(source: &TomlSource, table: &Table, env: &LoadEnv) -> Result<ClientConfig> {
    for (key, item) in table.iter() {
        if !CLIENT_KEYS.contains(&key) {
            return Err(source.error(
                &format!("client_configs.{key}"),
                item,
                format!("unknown key (known: {})", CLIENT_KEYS.join(", ")),
            ));
        }
    }
    let url = source.non_empty_string(table, "url")?.ok_or_else(|| {
        anyhow!(
            "`{}`: a client_configs entry has no `url`",
            source.path.display()
        )
    })?;
    check_url(&url).map_err(|m| source.error("url", &table["url"], m))?;
    let url = normalize_url(&url);
    let personal_access_token = secret(source, table, "personal_access_token", env)?;
    let registration_token = secret(source, table, "registration_token", env)?;
    let group_id = source.integer(table, "group_id")?;
    let project_id = source.integer(table, "project_id")?;
    let runner_type = source.string(table, "runner_type")?;
    let scope = match runner_type.as_deref().unwrap_or("instance_type") {
        "instance_type" => RunnerScope::Instance,
        "group_type" => RunnerScope::Group(group_id.ok_or_else(|| {
            source.error(
                "runner_type",
                &table["runner_type"],
                "`group_type` needs `group_id`",
            )
        })?),
        "project_type" => RunnerScope::Project(project_id.ok_or_else(|| {
            source.error(
                "runner_type",
                &table["runner_type"],
                "`project_type` needs `project_id`",
            )
        })?),
        other => {
            return Err(source.error(
                "runner_type",
                &table["runner_type"],
                format!("`{other}` is not one of instance_type, group_type, project_type"),
            ));
        }
    };
    if group_id.is_some() && !matches!(scope, RunnerScope::Group(_)) {
        return Err(source.error(
            "group_id",
            &table["group_id"],
            "is used only with runner_type = \"group_type\"",
        ));
    }
    if project_id.is_some() && !matches!(scope, RunnerScope::Project(_)) {
        return Err(source.error(
            "project_id",
            &table["project_id"],
            "is used only with runner_type = \"project_type\"",
        ));
    }
    let tls_ca = match source.non_empty_string(table, "tls_ca_file")? {
        None => None,
        Some(file) => {
            let path = resolve(&env.prefix, None, &file);
            let pem = fsutil::read_input(&path).with_context(|| {
                format!("`{}`: key `tls_ca_file` of `{url}`", source.path.display())
            })?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                bail!(
                    "`{}`: key `tls_ca_file`: `{}` holds no PEM certificate",
                    source.path.display(),
                    path.display()
                );
            }
            check_ca_bundle(pem.as_bytes()).map_err(|e| {
                anyhow!(
                    "`{}`{}: key `tls_ca_file`: `{}` is not a valid PEM certificate bundle: {e}",
                    source.path.display(),
                    source.position(table["tls_ca_file"].span()),
                    path.display()
                )
            })?;
            Some((path, pem.into_bytes()))
        }
    };
    Ok(ClientConfig {
        url,
        personal_access_token,
        registration_token,
        scope,
        tls_ca,
    })
}

fn check_url(url: &str) -> std::result::Result<(), String> {
    let shown = shown_url(url);
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{shown}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{shown}` must start with https:// or http://"));
    }
    if parsed.query().is_some()
        || parsed.fragment().is_some()
        || !parsed.username().is_empty()
        || parsed.password().is_some()
    {
        return Err(format!(
            "`{shown}` must be a plain base URL (no user, password, query or fragment)"
        ));
    }
    Ok(())
}

/// A URL as it may appear in a message: a value that is not a URL at all
/// may be a secret put under the wrong key, so only its short form is
/// shown; user, password, query and fragment (which may carry tokens) are
/// masked.
fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() => {
            let masked = !parsed.username().is_empty()
                || parsed.password().is_some()
                || parsed.query().is_some()
                || parsed.fragment().is_some();
            if !masked {
                return url.to_string();
            }
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let text = parsed.to_string();
            match text.split_once("://") {
                Some((scheme, rest)) => format!("{scheme}://…@{rest}…"),
                None => crate::secret::short_form(url),
            }
        }
        _ => crate::secret::short_form(url),
    }
}

/// Decodes a PEM bundle and hands each certificate to a TLS client
/// builder (no network), as the GitLab client will later: a certificate
/// that decodes but is not one fails here, naming the file, instead of
/// after the lock with a bare "builder error".
fn check_ca_bundle(pem: &[u8]) -> std::result::Result<(), String> {
    let chain = |e: &dyn std::error::Error| {
        let mut text = e.to_string();
        let mut source = e.source();
        while let Some(s) = source {
            text.push_str(&format!(": {s}"));
            source = s.source();
        }
        text
    };
    let certs = reqwest::Certificate::from_pem_bundle(pem).map_err(|e| chain(&e))?;
    for (i, cert) in certs.into_iter().enumerate() {
        reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_root_certs(false)
            .add_root_certificate(cert)
            .build()
            .map_err(|e| format!("certificate #{}: {}", i + 1, chain(&e)))?;
    }
    Ok(())
}

/// A secret given literally (`key`) or in a file (`key_file`), never both.
fn secret(source: &TomlSource, table: &Table, key: &str, env: &LoadEnv) -> Result<Option<Secret>> {
    let file_key = format!("{key}_file");
    let literal = source.non_empty_string(table, key)?;
    let file = source.non_empty_string(table, &file_key)?;
    match (literal, file) {
        (Some(_), Some(_)) => Err(source.error(
            &file_key,
            &table[file_key.as_str()],
            format!("give either `{key}` or `{file_key}`, not both"),
        )),
        (Some(value), None) => Ok(Some(Secret::new(value.trim()))),
        (None, Some(file)) => {
            let path = resolve(&env.prefix, env.credentials_directory.as_deref(), &file);
            let text = read_secret_file(&path)
                .with_context(|| format!("`{}`: key `{file_key}`", source.path.display()))?;
            let value = text.trim();
            if value.is_empty() {
                bail!(
                    "`{}`: key `{file_key}`: `{}` is empty",
                    source.path.display(),
                    path.display()
                );
            }
            Ok(Some(Secret::new(value)))
        }
        (None, None) => Ok(None),
    }
}

/// Secret files may be links (systemd credentials, config management), but
/// otherwise follow the input rules.
fn read_secret_file(path: &Path) -> Result<String> {
    use std::io::Read;
    let context = || format!("cannot read `{}`", path.display());
    // Followed links must end at a regular file: a device, FIFO or
    // directory would block, never end or not be a token at all.
    let meta = fs::metadata(path).with_context(context)?;
    if !meta.is_file() {
        bail!("`{}` is not a regular file", path.display());
    }
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|f| f.take(fsutil::MAX_INPUT_BYTES + 1).read_to_end(&mut bytes))
        .with_context(context)?;
    if bytes.len() as u64 > fsutil::MAX_INPUT_BYTES {
        bail!("`{}` is too large for a token", path.display());
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("`{}` is not UTF-8 text", path.display()))
}

/// A relative `*_file` path resolves against `$CREDENTIALS_DIRECTORY` when
/// given, else against the prefix.
fn resolve(prefix: &Path, credentials_directory: Option<&Path>, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        credentials_directory.unwrap_or(prefix).join(path)
    }
}

fn load_executor(path: &Path, template: &Template, env: &LoadEnv) -> Result<Executor> {
    let (source, doc) = TomlSource::read(path)?;
    let table = doc.as_table();
    for key in GENERATED_KEYS {
        if let Some(item) = table.get(key) {
            let hint = if *key == "description" {
                "use `name` for the runner's name"
            } else {
                "register-runner writes it itself; remove it"
            };
            return Err(source.error(key, item, hint));
        }
    }
    let url = source
        .non_empty_string(table, "url")?
        .ok_or_else(|| anyhow!("`{}`: missing required key `url`", path.display()))?;
    let normalized = normalize_url(&url);
    if !template.clients.iter().any(|c| c.url == normalized) {
        let known: Vec<&str> = template.clients.iter().map(|c| c.url.as_str()).collect();
        return Err(source.error(
            "url",
            &table["url"],
            format!(
                "`{}` matches no client_configs url in `{}` (known: {})",
                shown_url(&url),
                template.path.display(),
                known.join(", ")
            ),
        ));
    }
    let executor = source
        .non_empty_string(table, "executor")?
        .ok_or_else(|| anyhow!("`{}`: missing required key `executor`", path.display()))?;
    let name = match source.non_empty_string(table, "name")? {
        Some(name) => name,
        None => format!("{} {} {} Runner", env.hostname, env.instance, executor),
    };
    if name.chars().count() > 1024 {
        return Err(source.error(
            "name",
            &table["name"],
            "is longer than GitLab's 1024 characters",
        ));
    }
    let token = source.non_empty_string(table, "token")?.map(Secret::new);
    let access_level = source.string(table, "access_level")?;
    if let Some(level) = &access_level
        && !matches!(level.as_str(), "not_protected" | "ref_protected")
    {
        return Err(source.error(
            "access_level",
            &table["access_level"],
            format!("`{level}` is not one of not_protected, ref_protected"),
        ));
    }
    let maximum_timeout = source.integer(table, "maximum_timeout")?;
    if let Some(t) = maximum_timeout
        && t < 600
    {
        return Err(source.error(
            "maximum_timeout",
            &table["maximum_timeout"],
            "GitLab requires at least 600 seconds",
        ));
    }
    let maintenance_note = source.string(table, "maintenance_note")?;
    if maintenance_note
        .as_ref()
        .is_some_and(|n| n.chars().count() > 1024)
    {
        return Err(source.error(
            "maintenance_note",
            &table["maintenance_note"],
            "is longer than GitLab's 1024 characters",
        ));
    }
    let server = ServerSettings {
        run_untagged: source.bool(table, "run_untagged")?.unwrap_or(false),
        locked: source.bool(table, "locked")?.unwrap_or(false),
        paused: source.bool(table, "paused")?,
        access_level,
        maximum_timeout,
        maintenance_note,
    };
    let env_tags = source.strings(table, "env_tags")?;
    let tags = source.strings(table, "tags")?;
    if token.is_some() {
        for key in [
            "run_untagged",
            "locked",
            "paused",
            "access_level",
            "maximum_timeout",
            "maintenance_note",
            "tags",
        ] {
            if let Some(item) = table.get(key) {
                return Err(source.error(
                    key,
                    item,
                    "is a server-side setting: a runner with its own `token` was made in GitLab's UI, set it there",
                ));
            }
        }
    }
    let mut settings = doc.into_mut().as_table().clone();
    for key in TOOL_KEYS {
        settings.remove(key);
    }
    Ok(Executor {
        file: path.to_path_buf(),
        url: normalized,
        executor,
        name,
        token,
        env_tags,
        tags,
        server,
        settings,
    })
}
