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

use std::collections::HashMap;
use std::fs;
use std::ops::Range;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use toml_edit::{DocumentMut, Item, Key, RawString, Table, Value};

use crate::fsutil;
use crate::secret::{Secret, TOKEN_MARKERS};

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
/// `Default` is the tool's defaults: `run_untagged` and `locked` false,
/// the rest left to GitLab.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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
        if let Some((span, what)) = toml_1_1_syntax(doc.as_table(), &source.text) {
            bail!(
                "`{}`{}: {what} is TOML 1.1, which gitlab-runner cannot read: write it as TOML 1.0",
                source.path.display(),
                source.position(Some(span)),
            );
        }
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

/// A key as gitlab-runner's config decoder compares it when no field
/// matches exactly: Go's `strings.EqualFold`, which for the ASCII keys
/// involved here also folds the Kelvin sign into `k` and the long s into `s`.
pub fn folded_key(key: &str) -> String {
    key.chars()
        .map(|c| match c {
            '\u{212A}' => 'k',
            '\u{017F}' => 's',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

/// The first TOML 1.1 construct in a parsed file, if any. The parser
/// accepts TOML 1.1, but gitlab-runner's (BurntSushi/toml) reads TOML 1.0,
/// and what is copied into config.toml must stay readable by it.
fn toml_1_1_syntax(table: &Table, text: &str) -> Option<(Range<usize>, &'static str)> {
    table.iter().find_map(|(name, item)| {
        let key = table.key(name).and_then(|k| key_1_1_syntax(k, text));
        key.or_else(|| match item {
            Item::Value(v) => value_1_1_syntax(v, text),
            Item::Table(t) => toml_1_1_syntax(t, text),
            Item::ArrayOfTables(a) => a.iter().find_map(|t| toml_1_1_syntax(t, text)),
            Item::None => None,
        })
    })
}

/// The text of a raw piece of the source (a decor or a key as written).
fn raw_text<'a>(raw: &'a RawString, text: &'a str) -> &'a str {
    raw.as_str()
        .or_else(|| raw.span().and_then(|s| text.get(s)))
        .unwrap_or("")
}

/// A quoted key with a TOML 1.1 escape.
fn key_1_1_syntax(key: &Key, text: &str) -> Option<(Range<usize>, &'static str)> {
    let raw = key.as_repr()?.as_raw();
    let span = raw.span()?;
    escape_1_1_syntax(raw_text(raw, text), span.start)
}

/// A TOML 1.1 escape in a basic string (or quoted key) as written.
fn escape_1_1_syntax(raw: &str, at: usize) -> Option<(Range<usize>, &'static str)> {
    if !raw.starts_with('"') {
        return None;
    }
    let mut chars = raw.char_indices();
    while let Some((i, c)) = chars.next() {
        if c == '\\'
            && let Some((_, escape)) = chars.next()
            && matches!(escape, 'e' | 'x')
        {
            let what = if escape == 'e' {
                "the escape `\\e`"
            } else {
                "an escape `\\xHH`"
            };
            return Some((at + i..at + i + 2, what));
        }
    }
    None
}

fn value_1_1_syntax(value: &Value, text: &str) -> Option<(Range<usize>, &'static str)> {
    let span = value.span()?;
    match value {
        Value::String(_) => escape_1_1_syntax(text.get(span.clone())?, span.start),
        Value::Datetime(d) if d.value().time.is_some_and(|t| t.second.is_none()) => {
            Some((span, "a time without seconds"))
        }
        Value::Array(array) => array.iter().find_map(|v| value_1_1_syntax(v, text)),
        Value::InlineTable(t) => {
            if t.trailing_comma() {
                return Some((span, "a trailing comma in an inline table"));
            }
            inline_table_1_1_syntax(t, &span, text)
        }
        _ => None,
    }
}

/// An inline table (or a dotted part of one) in TOML 1.0 has nothing but
/// spaces between its keys, `=`, `,` and values: no newline, no comment.
fn inline_table_1_1_syntax(
    table: &toml_edit::InlineTable,
    span: &Range<usize>,
    text: &str,
) -> Option<(Range<usize>, &'static str)> {
    let several_lines = Some((span.clone(), "an inline table over several lines"));
    if raw_text(table.trailing(), text).contains(['\n', '#']) {
        return several_lines;
    }
    for (name, value) in table.iter() {
        let key = table.key(name)?;
        if let Some(found) = key_1_1_syntax(key, text) {
            return Some(found);
        }
        let decors = [key.leaf_decor(), key.dotted_decor(), value.decor()];
        let gaps = decors
            .iter()
            .flat_map(|d| [d.prefix(), d.suffix()])
            .flatten()
            .map(|raw| raw_text(raw, text));
        if gaps.into_iter().any(|gap| gap.contains(['\n', '#'])) {
            return several_lines;
        }
        let found = match value {
            // `a.b = 1`: a dotted key makes an implicit inline table.
            Value::InlineTable(t) if t.is_dotted() => inline_table_1_1_syntax(t, span, text),
            other => value_1_1_syntax(other, text),
        };
        if found.is_some() {
            return found;
        }
    }
    None
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
    // Case-insensitively, as gitlab-runner reads keys (see load_executor).
    for (key, item) in doc.iter() {
        let lower = folded_key(key);
        if lower == "runners" {
            return Err(source.error(
                key,
                item,
                "the template must not hold `[[runners]]`: executors live in one file each under the instance directory",
            ));
        }
        if lower == "client_configs" && key != lower {
            return Err(source.error(
                key,
                item,
                "write `client_configs` in lower case: any other spelling would be copied into config.toml",
            ));
        }
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
        return Err(source.error("client_configs", item, "is empty: add one entry per GitLab"));
    }
    let mut clients: Vec<ClientConfig> = Vec::new();
    for table in &tables {
        let client = load_client_config(&source, table, env)?;
        if clients.iter().any(|c| c.url == client.url) {
            return Err(source.error(
                "url",
                &table["url"],
                format!("two client_configs entries have url `{}`", client.url),
            ));
        }
        clients.push(client);
    }
    let mut globals = doc.into_mut();
    drop_client_configs_comments(&mut globals);
    globals.remove("client_configs");
    Ok(Template {
        path,
        globals,
        clients,
    })
}

/// Comments below a `[[client_configs]]` entry's last key (an old token
/// commented out, say) belong, for the parser, to what follows: the next
/// table's header, the next top-level key (after `client_configs = [...]`)
/// or the end of the file. They would outlive the entries' removal, so
/// every comment between client_configs and what follows goes.
fn drop_client_configs_comments(doc: &mut DocumentMut) {
    fn headers(table: &Table, client: bool, out: &mut Vec<(isize, bool)>) {
        if let Some(p) = table.position() {
            out.push((p, client));
        }
        for (key, item) in table.iter() {
            match item {
                Item::Table(t) => headers(t, client, out),
                Item::ArrayOfTables(a) => {
                    let client = client || key == "client_configs";
                    a.iter().for_each(|t| headers(t, client, out));
                }
                _ => {}
            }
        }
    }
    fn uncomment(decor: &mut toml_edit::Decor) {
        let blank = decor
            .prefix()
            .and_then(|p| p.as_str())
            .is_some_and(|p| p.split_inclusive('\n').any(|l| l.trim().is_empty()));
        decor.set_prefix(if blank { "\n" } else { "" });
    }
    fn uncomment_key(table: &mut Table, name: &str) {
        match table.get_mut(name) {
            Some(Item::Table(dotted)) if dotted.is_dotted() => {
                let first = dotted.iter().next().map(|(k, _)| k.to_string());
                if let Some(first) = first {
                    uncomment_key(dotted, &first);
                }
            }
            _ => {
                if let Some(mut key) = table.key_mut(name) {
                    uncomment(key.leaf_decor_mut());
                }
            }
        }
    }
    fn clear_after(table: &mut Table, after: &[isize]) {
        if table.position().is_some_and(|p| after.contains(&p)) {
            uncomment(table.decor_mut());
        }
        for (_, item) in table.iter_mut() {
            match item {
                Item::Table(t) => clear_after(t, after),
                Item::ArrayOfTables(a) => a.iter_mut().for_each(|t| clear_after(t, after)),
                _ => {}
            }
        }
    }
    let mut all = Vec::new();
    headers(doc.as_table(), false, &mut all);
    all.sort();
    let mut after: Vec<isize> = all
        .windows(2)
        .filter(|w| w[0].1 && !w[1].1)
        .map(|w| w[1].0)
        .collect();
    let mut trailing = all.last().is_some_and(|(_, client)| *client);
    // The inline form, `client_configs = [{ ... }]`, among the top-level keys.
    let root = doc.as_table_mut();
    if root.get("client_configs").is_some_and(Item::is_value) {
        let names: Vec<String> = root.iter().map(|(k, _)| k.to_string()).collect();
        let at = names
            .iter()
            .position(|k| k == "client_configs")
            .unwrap_or(0);
        // The next key-value line: a value, or a dotted key (`a.b = 1`),
        // whose comments sit on its last part.
        let next_line = names[at + 1..].iter().find(|k| match root.get(k) {
            Some(Item::Value(_)) => true,
            Some(Item::Table(t)) => t.is_dotted(),
            _ => false,
        });
        match next_line {
            Some(name) => uncomment_key(root, name),
            None => match all.first() {
                Some((first, _)) => after.push(*first),
                None => trailing = true,
            },
        }
    }
    clear_after(root, &after);
    if trailing {
        doc.set_trailing("");
    }
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
            "`{}`{}: a client_configs entry has no `url`",
            source.path.display(),
            source.position(table.span())
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
                format!(
                    "`{}` is not one of instance_type, group_type, project_type",
                    shown(other)
                ),
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
            // A `*_file` like the secrets (SPEC §2): relative to
            // `$CREDENTIALS_DIRECTORY` when set, and it may be a link.
            let base = env.credentials_directory.as_deref().unwrap_or(&env.prefix);
            let path = resolve(&env.prefix, env.credentials_directory.as_deref(), &file);
            let shown = shown_path(base, &file, &path);
            let at = source.position(table["tls_ca_file"].span());
            let pem = read_secret_file(&path, &shown, false)
                .with_context(|| format!("`{}`{at}: key `tls_ca_file`", source.path.display()))?;
            if !pem.contains("-----BEGIN CERTIFICATE-----") {
                bail!(
                    "`{}`{at}: key `tls_ca_file`: `{shown}` holds no PEM certificate",
                    source.path.display(),
                );
            }
            check_ca_bundle(pem.as_bytes()).map_err(|e| {
                anyhow!(
                    "`{}`{at}: key `tls_ca_file`: `{shown}` is not a valid PEM certificate bundle: {e}",
                    source.path.display(),
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
    let parsed = reqwest::Url::parse(url).map_err(|e| {
        format!("`{shown}` is not a URL ({e}): write the GitLab base URL, like https://gitlab.example.com")
    })?;
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
            let user = !parsed.username().is_empty() || parsed.password().is_some();
            let query = parsed.query().is_some();
            let fragment = parsed.fragment().is_some();
            if !(user || query || fragment) {
                return url.to_string();
            }
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let mut text = parsed.to_string();
            if user && let Some(at) = text.find("://") {
                text.insert_str(at + 3, "…@");
            }
            if query {
                text.push_str("?…");
            }
            if fragment {
                text.push_str("#…");
            }
            text
        }
        // Not a URL with a host: show it only if it reads like an address
        // and carries nothing that may be a credential.
        _ => {
            let address_like = url.contains(['.', '/', ':']);
            let risky = url.contains(['@', '?', '#'])
                || url.chars().any(char::is_whitespace)
                || TOKEN_MARKERS.iter().any(|m| url.contains(m));
            if address_like && !risky {
                url.to_string()
            } else {
                crate::secret::short_form(url)
            }
        }
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
        (Some(value), None) => {
            let value = value.trim();
            if let Some(problem) = token_shape_problem(value) {
                return Err(source.error(key, &table[key], problem));
            }
            Ok(Some(Secret::new(value)))
        }
        (None, Some(file)) => {
            let base = env.credentials_directory.as_deref().unwrap_or(&env.prefix);
            let path = resolve(&env.prefix, env.credentials_directory.as_deref(), &file);
            let shown = shown_path(base, &file, &path);
            let at = source.position(table[file_key.as_str()].span());
            let text = read_secret_file(&path, &shown, true)
                .with_context(|| format!("`{}`{at}: key `{file_key}`", source.path.display()))?;
            let value = text.trim();
            if value.is_empty() {
                bail!(
                    "`{}`{at}: key `{file_key}`: `{shown}` is empty",
                    source.path.display(),
                );
            }
            if let Some(problem) = token_shape_problem(value) {
                bail!(
                    "`{}`{at}: key `{file_key}`: `{shown}`: {problem}",
                    source.path.display(),
                );
            }
            Ok(Some(Secret::new(value)))
        }
        (None, None) => Ok(None),
    }
}

/// Secret files and `tls_ca_file` may be links (systemd credentials,
/// config management); what they lead to follows the input rules and the
/// ownership rule ([`fsutil::check_trusted`]), checked on the opened
/// descriptor. A secret that others can read is used, with a warning:
/// refusing it would keep runners from starting, and the secret is out
/// already.
fn read_secret_file(path: &Path, shown: &str, secret: bool) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("cannot read `{shown}`");
    // Links are followed; a FIFO opens without blocking and is refused
    // below, as is a device or directory: they would block, never end or
    // not be a token at all.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(context)?;
    let meta = file.metadata().with_context(context)?;
    if !meta.is_file() {
        bail!(
            "`{shown}` is not a regular file ({})",
            fsutil::file_kind(&meta)
        );
    }
    // A link is fine; who owns and may write what it leads to matters.
    let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = fs::canonicalize(path)
        .ok()
        .filter(|_| link && shown == path.display().to_string())
        .map(|t| t.display().to_string());
    match &target {
        Some(target) => fsutil::check_trusted(target, &meta)
            .with_context(|| format!("`{shown}` is a link to `{target}`"))?,
        None => fsutil::check_trusted(shown, &meta)?,
    }
    let mode = fsutil::mode_of(&meta);
    if secret && mode & 0o004 != 0 {
        tracing::warn!(
            "`{shown}` holds a secret and others can read it (mode {mode:04o}): chmod o-r `{shown}`"
        );
    }
    let mut bytes = Vec::new();
    file.take(fsutil::MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(context)?;
    if bytes.len() as u64 > fsutil::MAX_INPUT_BYTES {
        bail!("`{shown}` is larger than {} bytes", fsutil::MAX_INPUT_BYTES);
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("`{shown}` is not UTF-8 text"))
}

/// Why a token cannot be sent as an HTTP header value (a PAT travels in
/// `PRIVATE-TOKEN`) or is no token at all: it must be one word of visible
/// ASCII. The message says where, never what.
fn token_shape_problem(value: &str) -> Option<String> {
    let (at, c) = value.char_indices().find(|(_, c)| !c.is_ascii_graphic())?;
    let what = match c {
        '\n' | '\r' => "a line break (only one line is read as the token)".to_string(),
        ' ' | '\t' => "a space".to_string(),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        _ => "a character that is not printable ASCII".to_string(),
    };
    Some(format!(
        "the token holds {what} at byte {at}: a token is one word of printable ASCII, \
         and it could not be sent to GitLab as an HTTP header"
    ))
}

/// Whether a value quoted in a message might be a token put under the
/// wrong key: it holds a GitLab token prefix, or it is a long run of
/// token characters (old registration tokens have no prefix).
fn looks_like_token(value: &str) -> bool {
    TOKEN_MARKERS.iter().any(|m| value.contains(m))
        || (value.len() >= 20
            && !value.contains(['/', '.'])
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
}

/// A value as it may appear in a message: one that might be a token shows
/// in short form only.
fn shown(value: &str) -> String {
    if looks_like_token(value) {
        crate::secret::short_form(value)
    } else {
        value.to_string()
    }
}

/// A `*_file` path as it may appear in a message. A value that looks like
/// a token rather than a file name (a token put under the `_file` key by
/// mistake) is shown in its short form only.
fn shown_path(base: &Path, file: &str, path: &Path) -> String {
    if !looks_like_token(file) {
        path.display().to_string()
    } else if Path::new(file).is_absolute() {
        crate::secret::short_form(file)
    } else {
        format!("{}/{}", base.display(), crate::secret::short_form(file))
    }
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
        // Without `name`, the default name is long because `executor` is.
        let (key, message) = if table.contains_key("name") {
            ("name", "is longer than GitLab's 1024 characters")
        } else {
            (
                "executor",
                "makes the default runner name longer than GitLab's 1024 characters",
            )
        };
        return Err(source.error(key, &table[key], message));
    }
    let token = source.non_empty_string(table, "token")?.map(Secret::new);
    // Only a runner made in GitLab's UI (or with POST /user/runners) has a
    // `glrt-` token; anything else here would later be deleted whole.
    if let Some(token) = &token
        && !token.is_created_runner_token()
    {
        return Err(source.error(
            "token",
            &table["token"],
            format!(
                "`{}` is not a runner authentication token made in GitLab's UI (they start with `glrt-`); \
                 for a registration token use `registration_token` in the template",
                token.short()
            ),
        ));
    }
    if let Some(token) = &token
        && let Some(problem) = token_shape_problem(token.expose())
    {
        return Err(source.error("token", &table["token"], problem));
    }
    let access_level = source.string(table, "access_level")?;
    if let Some(level) = &access_level
        && !matches!(level.as_str(), "not_protected" | "ref_protected")
    {
        return Err(source.error(
            "access_level",
            &table["access_level"],
            format!(
                "`{}` is not one of not_protected, ref_protected",
                shown(level)
            ),
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
    // gitlab-runner decodes config.toml with BurntSushi/toml, which matches
    // a key to a field case-insensitively when no exact match exists: a
    // `Token` or `[runners.docker]` copied through would compete with what
    // the tool writes. Such keys are mistakes; refuse them.
    for (key, item) in table.iter() {
        let lower = folded_key(key);
        if lower == "runners" {
            return Err(source.error(
                key,
                item,
                "an executor file holds the inside of one `[[runners]]` entry: \
                 write `[docker]`, `[cache]`, … rather than `[runners.docker]`",
            ));
        }
        let reserved = TOOL_KEYS.iter().chain(GENERATED_KEYS).any(|k| *k == lower);
        if reserved && key != lower {
            return Err(source.error(
                key,
                item,
                format!(
                    "differs only in case from `{lower}`, which register-runner reads or writes itself \
                     (gitlab-runner matches keys case-insensitively): write `{lower}`"
                ),
            ));
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

#[cfg(test)]
mod syntax_tests {
    use super::*;

    fn first_1_1(text: &str) -> Option<&'static str> {
        let doc = toml_edit::Document::parse(text.to_string()).unwrap();
        toml_1_1_syntax(doc.as_table(), text).map(|(_, what)| what)
    }

    #[test]
    fn tokens_are_one_word_of_printable_ascii() {
        assert_eq!(token_shape_problem("glpat-abc_DEF-123"), None);
        for (token, what) in [
            ("glpat-abc\nsecond", "a line break"),
            ("glpat-abc\r\n", "a line break"),
            ("glpat abc", "a space"),
            ("glpat-\u{7}abc", "U+0007"),
            ("glpat-\u{7f}", "U+007F"),
            ("glpat-é", "not printable ASCII"),
        ] {
            let problem = token_shape_problem(token).unwrap();
            assert!(problem.contains(what), "{token:?}: {problem}");
            assert!(!problem.contains("glpat"), "{problem}");
        }
    }

    #[test]
    fn toml_1_0_passes() {
        let text = r##"
a = "x\\e \\x41 \u001b"
b = 'C:\e\x'
c = """
\\e"""
t = { a = "#", b = [1,
  2] }
arr = [
  1, # comment
  2,
]
d = 1979-05-27T07:32:00Z
e = 07:32:00
[docker]
sysctls = { "net.ipv4.ip_forward" = "1" }
labels = { com.example.team = "ci", "x#y" = "#", a.b = [1,
  2], c.d = """x
y""" }
"a\\eb" = 'x'
'lit\e' = 1
"##;
        assert_eq!(first_1_1(text), None);
    }

    #[test]
    fn toml_1_1_is_found_at_any_depth() {
        for (text, what) in [
            ("a = \"\\e[0m\"\n", "the escape `\\e`"),
            ("[x]\na = [\"\\x41\"]\n", "an escape `\\xHH`"),
            ("a = 07:32\n", "a time without seconds"),
            ("a = 1979-05-27T07:32Z\n", "a time without seconds"),
            (
                "[[x]]\na = { b = 1, }\n",
                "a trailing comma in an inline table",
            ),
            (
                "a = { b = 1,\n c = 2 }\n",
                "an inline table over several lines",
            ),
            (
                "a = { b = { c = 1 # no\n } }\n",
                "an inline table over several lines",
            ),
            ("a = {\n}\n", "an inline table over several lines"),
            (
                "a = { b.c = 1,\n d = 2 }\n",
                "an inline table over several lines",
            ),
            ("a = { b.c = \"\\e\" }\n", "the escape `\\e`"),
            ("a = { b.c = 07:32 }\n", "a time without seconds"),
            (
                "a = { b.c = { d = 1, } }\n",
                "a trailing comma in an inline table",
            ),
            ("\"a\\eb\" = 1\n", "the escape `\\e`"),
            ("[\"a\\x41\"]\nb = 1\n", "an escape `\\xHH`"),
            ("[[\"a\\x41\"]]\nb = 1\n", "an escape `\\xHH`"),
            ("t = { \"a\\x41\" = 1 }\n", "an escape `\\xHH`"),
            ("t.\"a\\x41\" = 1\n", "an escape `\\xHH`"),
        ] {
            assert_eq!(first_1_1(text), Some(what), "{text}");
        }
    }

    #[test]
    fn comments_among_client_configs_are_dropped() {
        let mut doc: DocumentMut = "# global\nconcurrent = 4\n\n[[client_configs]]\nurl = \"a\"\n\
             # personal_access_token = \"glpat-old-secret\"\n# old\n\n# the session server\n\
             [session_server]\nlisten_address = \"x\"\n\n[[client_configs]]\nurl = \"b\"\n\
             # registration_token = \"GR1348941old\"\n"
            .parse()
            .unwrap();
        drop_client_configs_comments(&mut doc);
        doc.remove("client_configs");
        assert_eq!(
            doc.to_string(),
            "# global\nconcurrent = 4\n\n[session_server]\nlisten_address = \"x\"\n"
        );
        // Without a blank line; a legacy token has no prefix to spot.
        let mut doc: DocumentMut =
            "[[client_configs]]\nurl = \"a\"\n# 8HxyzOLDSECRETabcdef\n[session_server]\n"
                .parse()
                .unwrap();
        drop_client_configs_comments(&mut doc);
        doc.remove("client_configs");
        assert_eq!(doc.to_string(), "[session_server]\n");
        // The inline form: before a top-level key, a table, or the end.
        for (text, expected) in [
            (
                "a = 1\nclient_configs = [{ url = \"a\" }] # glpat-OLD0\n# glpat-OLD1\nb = 2\n",
                "a = 1\nb = 2\n",
            ),
            (
                "client_configs = [\n  { url = \"a\" }, # glpat-OLD0\n]\n# glpat-OLD1\n\n[s]\nx = 1\n",
                "\n[s]\nx = 1\n",
            ),
            (
                "a = 1\nclient_configs = [{ url = \"a\" }]\n# glpat-OLD1\n",
                "a = 1\n",
            ),
            (
                "client_configs = [{ url = \"a\" }]\n# 8HxyzOLDSECRET\ns.l.m = 1\n# t\n[t]\n",
                "s.l.m = 1\n# t\n[t]\n",
            ),
        ] {
            let mut doc: DocumentMut = text.parse().unwrap();
            drop_client_configs_comments(&mut doc);
            doc.remove("client_configs");
            assert_eq!(doc.to_string(), expected, "{text}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::os::unix::fs::PermissionsExt;

    const PAT: &str = "glpat-proptest-secret-0123456789";
    const REGISTRATION_TOKEN: &str = "GR1348941proptestsecret0123";

    fn template_text() -> String {
        format!(
            "# Global settings\nconcurrent = 4\ncheck_interval = 3\n\n\
             [session_server]\n  listen_address = \"[::]:8093\"\n\n\
             [[client_configs]]\nurl = \"https://gitlab.example.com/\"\n\
             personal_access_token = \"{PAT}\"\nrunner_type = \"group_type\"\ngroup_id = 10\n\n\
             [[client_configs]]\nurl = \"https://other.example.com\"\n\
             registration_token = \"{REGISTRATION_TOKEN}\"\n"
        )
    }

    const EXECUTOR: &str = "url = \"https://gitlab.example.com\"\nexecutor = \"docker\"\n\
        name = \"prop runner\"\nenv_tags = [\"SITE\"]\ntags = [\"fast\", \"big\"]\n\
        run_untagged = false\nlocked = true\naccess_level = \"ref_protected\"\n\
        maximum_timeout = 3600\nmaintenance_note = \"note\"\nlimit = 2\n\n\
        [docker]\nimage = \"alpine:3\"\nvolumes = [\"/cache\"]\n";

    const OTHER_EXECUTOR: &str = "url = \"https://other.example.com\"\nexecutor = \"shell\"\n";

    const LAST_OUTPUT: &str = "concurrent = 4\n\n[[runners]]\nname = \"prop runner\"\n\
        url = \"https://gitlab.example.com\"\nid = 7\ntoken = \"glrt-proptestrunnertoken01\"\n\
        token_obtained_at = 2026-01-01T00:00:00Z\ntoken_expires_at = 0001-01-01T00:00:00Z\n\
        executor = \"docker\"\n";

    /// A host laid out validly in a temp dir.
    struct Layout {
        _dir: tempfile::TempDir,
        env: LoadEnv,
        template: PathBuf,
        executor: PathBuf,
        output: PathBuf,
    }

    fn layout() -> Layout {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("prefix");
        let instance_dir = prefix.join("main");
        fs::create_dir_all(&instance_dir).unwrap();
        for d in [&prefix, &instance_dir] {
            fs::set_permissions(d, fs::Permissions::from_mode(0o700)).unwrap();
        }
        let template = template_path(&prefix, "main");
        let executor = instance_dir.join("10-docker.toml");
        let output = output_path(&prefix, "main");
        fs::write(&template, template_text()).unwrap();
        fs::write(&executor, EXECUTOR).unwrap();
        fs::write(instance_dir.join("20-shell.toml"), OTHER_EXECUTOR).unwrap();
        fs::write(&output, LAST_OUTPUT).unwrap();
        Layout {
            env: LoadEnv {
                prefix,
                instance: "main".into(),
                hostname: "ci-node01".into(),
                credentials_directory: None,
                allow_missing_executor_dir: false,
            },
            _dir: dir,
            template,
            executor,
            output,
        }
    }

    #[derive(Debug, Clone, Copy)]
    enum Target {
        Template,
        Executor,
        LastOutput,
    }

    #[derive(Debug, Clone)]
    enum Edit {
        Insert(usize, char),
        Delete(usize),
        Replace(usize, char),
        /// A raw byte: may make the file invalid UTF-8.
        InsertByte(usize, u8),
        /// Gives the n-th `key = value` line another value.
        Value(usize, &'static str),
        /// Gives the n-th `key = value` line another key.
        Key(usize, &'static str),
        /// Removes the n-th line.
        DropLine(usize),
    }

    /// Well-formed values of every TOML type, and some that break the rules
    /// of a particular key, so that mutations reach the validation too.
    const VALUES: &[&str] = &[
        "5",
        "-1",
        "0",
        "3.5",
        "true",
        "\"yes\"",
        "\"\"",
        "\"  \"",
        "[]",
        "[1, \"a\"]",
        "[\"a,b\"]",
        "{}",
        "{ a = 1 }",
        "1979-05-27T07:32:00Z",
        "\"1h\"",
        "\"ftp://x\"",
        "\"https://user:pw@gitlab.example.com\"",
        "\"https://gitlab.example.com\"",
        "\"https://other.example.com/\"",
        "\"group_type\"",
        "\"project_type\"",
        "\"instance_type\"",
        "\"everyone\"",
        "\"not_protected\"",
        "30",
        "600",
        "\"/dev/null\"",
        "\"/nonexistent\"",
        "\"glrt-proptesttoken\"",
        "\"shell\"",
    ];

    /// Keys the loader knows, in either file, and some it refuses.
    fn keys() -> Vec<&'static str> {
        [
            TOOL_KEYS,
            GENERATED_KEYS,
            CLIENT_KEYS,
            &["client_configs", "runners", "bogus"],
        ]
        .concat()
    }

    #[derive(Debug, Clone)]
    enum Content {
        Mutated(Vec<Edit>),
        Arbitrary(String),
        Bytes(Vec<u8>),
    }

    /// Characters that matter to TOML, so that mutations reach the parser's
    /// corners and the validation behind it more often than random ones.
    const TOML_CHARS: &[char] = &[
        '"', '\'', '[', ']', '{', '}', '=', '.', ',', '#', '\n', '\\', ' ', '\t', '\r', 't', 'f',
        '0', '9', '-', '+', ':', '_', 'e', 'x', 'é', '\u{0}', '\u{7f}', '\u{feff}',
    ];

    fn char_strategy() -> impl Strategy<Value = char> {
        prop_oneof![
            3 => proptest::sample::select(TOML_CHARS),
            1 => any::<char>(),
        ]
    }

    fn edit_strategy() -> impl Strategy<Value = Edit> {
        prop_oneof![
            3 => (any::<usize>(), char_strategy()).prop_map(|(i, c)| Edit::Insert(i, c)),
            3 => any::<usize>().prop_map(Edit::Delete),
            3 => (any::<usize>(), char_strategy()).prop_map(|(i, c)| Edit::Replace(i, c)),
            1 => (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Edit::InsertByte(i, b)),
            4 => (any::<usize>(), proptest::sample::select(VALUES))
                .prop_map(|(i, v)| Edit::Value(i, v)),
            2 => (any::<usize>(), proptest::sample::select(keys()))
                .prop_map(|(i, k)| Edit::Key(i, k)),
            2 => any::<usize>().prop_map(Edit::DropLine),
        ]
    }

    fn content_strategy() -> impl Strategy<Value = Content> {
        prop_oneof![
            6 => proptest::collection::vec(edit_strategy(), 1..8).prop_map(Content::Mutated),
            1 => any::<String>().prop_map(Content::Arbitrary),
            1 => "[\\[\\]a-z_=\"'{}., \n0-9#-]{0,80}".prop_map(Content::Arbitrary),
            1 => proptest::collection::vec(any::<u8>(), 0..200).prop_map(Content::Bytes),
        ]
    }

    fn mutate(text: &str, edits: &[Edit]) -> Vec<u8> {
        // Line edits first, on the well-formed text, then character edits.
        let mut lines: Vec<String> = text.lines().map(String::from).collect();
        for edit in edits {
            let assignments: Vec<usize> = (0..lines.len())
                .filter(|i| lines[*i].contains('='))
                .collect();
            match *edit {
                Edit::Value(n, value) if !assignments.is_empty() => {
                    let line = &mut lines[assignments[n % assignments.len()]];
                    let key = line.split('=').next().unwrap_or_default().to_string();
                    *line = format!("{key}= {value}");
                }
                Edit::Key(n, key) if !assignments.is_empty() => {
                    let line = &mut lines[assignments[n % assignments.len()]];
                    let value = line.split_once('=').map_or("", |(_, v)| v).to_string();
                    *line = format!("{key} ={value}");
                }
                Edit::DropLine(n) if !lines.is_empty() => {
                    let n = n % lines.len();
                    lines.remove(n);
                }
                _ => {}
            }
        }
        let text = lines.join("\n") + "\n";
        let mut chars: Vec<char> = text.chars().collect();
        let mut bytes_to_insert = Vec::new();
        for edit in edits {
            match *edit {
                Edit::Insert(i, c) => chars.insert(i % (chars.len() + 1), c),
                Edit::Delete(i) if !chars.is_empty() => {
                    let i = i % chars.len();
                    chars.remove(i);
                }
                Edit::Replace(i, c) if !chars.is_empty() => {
                    let i = i % chars.len();
                    chars[i] = c;
                }
                Edit::InsertByte(i, b) => bytes_to_insert.push((i, b)),
                Edit::Delete(_)
                | Edit::Replace(..)
                | Edit::Value(..)
                | Edit::Key(..)
                | Edit::DropLine(_) => {}
            }
        }
        let mut bytes = chars.into_iter().collect::<String>().into_bytes();
        for (i, b) in bytes_to_insert {
            bytes.insert(i % (bytes.len() + 1), b);
        }
        bytes
    }

    #[test]
    fn the_base_layout_is_valid() {
        let layout = layout();
        let inputs = load(&layout.env).unwrap();
        assert_eq!(inputs.executors.len(), 2);
        assert_eq!(inputs.template.clients.len(), 2);
    }

    proptest! {
        #![proptest_config(ProptestConfig {
            cases: 256,
            failure_persistence: None,
            ..ProptestConfig::default()
        })]

        /// Whatever the bytes of the template, an executor file or the last
        /// output, loading returns Ok or an Err that names that file, never
        /// panics, and never quotes a secret.
        #[test]
        fn load_never_panics_and_names_the_file(
            target in prop_oneof![
                Just(Target::Template),
                Just(Target::Executor),
                Just(Target::LastOutput),
            ],
            content in content_strategy(),
        ) {
            let layout = layout();
            let (path, base) = match target {
                Target::Template => (&layout.template, template_text()),
                Target::Executor => (&layout.executor, EXECUTOR.to_string()),
                Target::LastOutput => (&layout.output, LAST_OUTPUT.to_string()),
            };
            let bytes = match &content {
                Content::Mutated(edits) => mutate(&base, edits),
                Content::Arbitrary(text) => text.clone().into_bytes(),
                Content::Bytes(bytes) => bytes.clone(),
            };
            fs::write(path, &bytes).unwrap();
            // What step 1 of a run reads: the inputs and the last output.
            let checked = load(&layout.env).and_then(|_| crate::store::check(&layout.output));
            if let Err(e) = checked {
                let message = format!("{e:#}");
                let file = path.display().to_string();
                prop_assert!(
                    message.contains(&file),
                    "the error does not name `{}`: {}\n--- file:\n{}",
                    file,
                    message,
                    String::from_utf8_lossy(&bytes)
                );
                for secret in [PAT, REGISTRATION_TOKEN, "glrt-proptestrunnertoken01"] {
                    prop_assert!(
                        !message.contains(secret),
                        "a secret in the error: {}",
                        message
                    );
                }
            }
        }
    }
}
