//! Runner tags and this host's identity (SPEC §3).
//!
//! Tag properties, as in the original tool: `hostname`, `executor_type`,
//! `instance`, `env` (values of the executor's `env_tags`), merged with what
//! `--capture-tags` prints, validated against `--tag-schema`, then flattened
//! in order and deduplicated. The **identifying tags** (hostname, hostname
//! without digits, `managed`, instance) are always added, and a GitLab runner
//! belongs to this host and instance exactly when it carries all of them.
//! A `--capture-tags` program is untrusted input too: it must be owned by
//! root or the running user, runs in its own process group under a time
//! limit that covers reading its output, and what it prints is capped and
//! type-checked. Everything here runs before any network traffic.

use std::collections::HashMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Map, Value};

use crate::config::Executor;
use crate::fsutil;

/// The ownership marker the original forgot to put on its runners.
pub const MANAGED_TAG: &str = "managed";

/// How long a `--capture-tags` program may run, its output read included.
const CAPTURE_TIMEOUT: Duration = Duration::from_secs(10);

/// The most a `--capture-tags` program may print: tag properties are a
/// few hundred bytes.
const CAPTURE_MAX_BYTES: u64 = 64 * 1024;

/// Tag properties the tool sets itself; a capture program may repeat them
/// with the same value, but not change them (they name the host, instance
/// and executor that --tag-schema checks).
const PROTECTED_PROPERTIES: &[&str] = &["hostname", "instance", "executor_type"];

/// hostname, hostname without digits (if non-empty), `managed`, instance —
/// deduplicated, in that order.
pub fn identifying_tags(hostname: &str, instance: &str) -> Vec<String> {
    let without_digits: String = hostname.chars().filter(|c| !c.is_ascii_digit()).collect();
    let mut tags = Vec::new();
    for tag in [hostname, without_digits.as_str(), MANAGED_TAG, instance] {
        if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
            tags.push(tag.to_string());
        }
    }
    tags
}

/// An instance named like one of the other identifying tags would make the
/// ownership marker ambiguous.
pub fn check_identity(hostname: &str, instance: &str) -> Result<()> {
    if hostname.trim().is_empty() || hostname.contains(',') {
        bail!("host name `{hostname}` cannot be used as a tag (use --hostname)");
    }
    let without_digits: String = hostname.chars().filter(|c| !c.is_ascii_digit()).collect();
    if instance == hostname || instance == without_digits || instance == MANAGED_TAG {
        bail!(
            "--service-instance `{instance}` equals an identifying tag (host name `{hostname}`, `{without_digits}` or `managed`): \
             runners of this instance could not be told apart; choose another instance name"
        );
    }
    Ok(())
}

/// Where extra tag properties come from.
#[derive(Debug, Clone)]
pub enum Capture {
    /// `--capture-tags builtin`: os, architecture, and the batch scheduler on PATH.
    Builtin,
    /// A program run as `PROGRAM <instance> <executor_type>` that prints a JSON object.
    Program(PathBuf),
}

impl Capture {
    pub fn from_arg(arg: &str) -> Capture {
        if arg == "builtin" {
            Capture::Builtin
        } else {
            Capture::Program(PathBuf::from(arg))
        }
    }
}

/// A compiled `--tag-schema`.
pub struct TagSchema {
    path: PathBuf,
    validator: jsonschema::Validator,
}

impl std::fmt::Debug for TagSchema {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TagSchema")
            .field("path", &self.path)
            .finish()
    }
}

impl TagSchema {
    pub fn load(path: &Path) -> Result<TagSchema> {
        let text = fsutil::read_input(path).context("--tag-schema")?;
        let schema: Value = serde_json::from_str(&text).map_err(|e| {
            anyhow!(
                "--tag-schema `{}` line {}, column {}: invalid JSON: {e}",
                path.display(),
                e.line(),
                e.column()
            )
        })?;
        if !schema.is_object() {
            bail!(
                "--tag-schema `{}`: a JSON Schema must be an object",
                path.display()
            );
        }
        // The original's example names `http://json-schema.org/schema/` as
        // its `$schema`, which no draft claims: read such schemas as draft 7,
        // as python-jsonschema does for an unknown `$schema`.
        let validator = jsonschema::validator_for(&schema)
            .or_else(|_| {
                jsonschema::options()
                    .with_draft(jsonschema::Draft::Draft7)
                    .build(&without_schema_uri(&schema))
            })
            .map_err(|e| {
                anyhow!(
                    "--tag-schema `{}` is not a valid JSON Schema: {e}",
                    path.display()
                )
            })?;
        Ok(TagSchema {
            path: path.to_path_buf(),
            validator,
        })
    }

    fn check(&self, properties: &Value, executor: &Executor) -> Result<()> {
        let errors: Vec<String> = self
            .validator
            .iter_errors(properties)
            .map(|e| {
                let at = e.instance_path().to_string();
                let property = at.trim_start_matches('/');
                if property.is_empty() {
                    format!("{e}")
                } else {
                    format!("property `{property}`: {e}")
                }
            })
            .collect();
        if errors.is_empty() {
            return Ok(());
        }
        bail!(
            "tags of `{}` do not satisfy --tag-schema `{}`: {}",
            executor.file.display(),
            self.path.display(),
            errors.join("; ")
        )
    }
}

fn without_schema_uri(schema: &Value) -> Value {
    let mut schema = schema.clone();
    if let Some(object) = schema.as_object_mut() {
        object.remove("$schema");
    }
    schema
}

/// Everything the tag computation needs besides the executor.
#[derive(Debug)]
pub struct TagContext {
    pub hostname: String,
    pub instance: String,
    pub schema: Option<TagSchema>,
    pub capture: Option<Capture>,
    /// Environment variables for `env_tags`, and `PATH` for the built-in
    /// capture ([`crate::env::Env::vars`]).
    pub env: HashMap<String, String>,
    captured: HashMap<String, Map<String, Value>>,
}

impl TagContext {
    pub fn new(
        hostname: &str,
        instance: &str,
        schema: Option<TagSchema>,
        capture: Option<Capture>,
        env: HashMap<String, String>,
    ) -> TagContext {
        TagContext {
            hostname: hostname.to_string(),
            instance: instance.to_string(),
            schema,
            capture,
            env,
            captured: HashMap::new(),
        }
    }

    /// The full tag list of one executor's runner.
    pub fn runner_tags(&mut self, executor: &Executor) -> Result<Vec<String>> {
        let mut properties = Map::new();
        properties.insert("hostname".into(), Value::String(self.hostname.clone()));
        properties.insert(
            "executor_type".into(),
            Value::String(executor.executor.clone()),
        );
        properties.insert("instance".into(), Value::String(self.instance.clone()));
        let env_values: Vec<Value> = executor
            .env_tags
            .iter()
            .filter_map(|name| self.env.get(name))
            .filter(|v| !v.trim().is_empty())
            .map(|v| Value::String(v.trim().to_string()))
            .collect();
        properties.insert("env".into(), Value::Array(env_values));
        let mut order: Vec<String> = ["hostname", "executor_type", "instance", "env"]
            .map(String::from)
            .to_vec();
        let mut captured_keys = Vec::new();
        if let Some(extra) = self.captured(&executor.executor)? {
            let program = self.capture_name();
            for (key, value) in extra {
                if PROTECTED_PROPERTIES.contains(&key.as_str()) {
                    if properties.get(&key) == Some(&value) {
                        continue;
                    }
                    bail!(
                        "--capture-tags: `{program}` printed key `{key}` with {}, but register-runner sets it itself \
                         (to {}): a capture program may not change hostname, instance or executor_type",
                        shown_value(&value),
                        shown_value(&properties[key.as_str()]),
                    );
                }
                if !properties.contains_key(&key) {
                    order.push(key.clone());
                }
                captured_keys.push(key.clone());
                properties.insert(key, value);
            }
        }
        let properties = Value::Object(properties);
        if let Some(schema) = &self.schema {
            schema.check(&properties, executor)?;
        }
        // After the schema, which may say more about a value it constrains.
        for key in &captured_keys {
            let value = &properties[key.as_str()];
            let ok = match value {
                Value::String(_) => true,
                Value::Array(items) => items.iter().all(Value::is_string),
                _ => false,
            };
            if !ok {
                bail!(
                    "--capture-tags: `{}` printed key `{key}` with {}: a tag property must be a string or an array of strings",
                    self.capture_name(),
                    shown_value(value),
                );
            }
        }
        let mut tags: Vec<String> = Vec::new();
        for key in &order {
            flatten(&properties[key.as_str()], &mut tags);
        }
        tags.extend(identifying_tags(&self.hostname, &self.instance));
        tags.extend(executor.tags.iter().cloned());
        let mut unique: Vec<String> = Vec::with_capacity(tags.len());
        for tag in tags {
            if tag.contains(',') {
                bail!(
                    "`{}`: tag `{tag}` contains a comma, which GitLab's tag_list cannot hold",
                    executor.file.display()
                );
            }
            if !unique.contains(&tag) {
                unique.push(tag);
            }
        }
        Ok(unique)
    }

    /// The capture program as it appears in messages.
    fn capture_name(&self) -> String {
        match &self.capture {
            Some(Capture::Program(program)) => program.display().to_string(),
            Some(Capture::Builtin) | None => "builtin".into(),
        }
    }

    fn captured(&mut self, executor_type: &str) -> Result<Option<Map<String, Value>>> {
        let Some(capture) = &self.capture else {
            return Ok(None);
        };
        if let Some(found) = self.captured.get(executor_type) {
            return Ok(Some(found.clone()));
        }
        let properties = match capture {
            Capture::Builtin => builtin_capture(executor_type, self.env.get("PATH")),
            Capture::Program(program) => run_capture(program, &self.instance, executor_type)?,
        };
        self.captured
            .insert(executor_type.to_string(), properties.clone());
        Ok(Some(properties))
    }
}

/// A JSON value for a message: its kind, and the value if it is short.
fn shown_value(value: &Value) -> String {
    let kind = match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(items) if items.iter().all(Value::is_string) => "an array of strings",
        Value::Array(_) => "an array holding other than strings",
        Value::Object(_) => "an object",
    };
    let text = value.to_string();
    if value.is_null() {
        kind.to_string()
    } else if text.chars().count() <= 60 && !text.chars().any(char::is_control) {
        format!("{kind} ({text})")
    } else {
        kind.to_string()
    }
}

fn flatten(value: &Value, out: &mut Vec<String>) {
    match value {
        Value::Null => {}
        Value::String(s) => {
            if !s.trim().is_empty() {
                out.push(s.trim().to_string());
            }
        }
        Value::Bool(b) => out.push(b.to_string()),
        Value::Number(n) => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| flatten(v, out)),
        Value::Object(map) => map.values().for_each(|v| flatten(v, out)),
    }
}

/// os, architecture, and for batch-style executors the scheduler on PATH.
fn builtin_capture(executor_type: &str, path: Option<&String>) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("os".into(), Value::String(std::env::consts::OS.into()));
    map.insert(
        "architecture".into(),
        Value::String(std::env::consts::ARCH.into()),
    );
    if matches!(executor_type, "batch" | "custom") {
        let scheduler = [("bsub", "lsf"), ("salloc", "slurm"), ("cqsub", "cobalt")]
            .iter()
            .find(|(cmd, _)| on_path(cmd, path))
            .map(|(_, name)| *name);
        if let Some(name) = scheduler {
            map.insert("scheduler".into(), Value::String(name.into()));
        }
    }
    map
}

/// Whether `$PATH` (as the run's [`crate::env::Env`] read it) leads to an
/// executable `cmd`.
fn on_path(cmd: &str, path: Option<&String>) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.is_some_and(|paths| {
        std::env::split_paths(paths).any(|dir| {
            std::fs::metadata(dir.join(cmd))
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
    })
}

/// Runs `PROGRAM <instance> <executor_type>`; its stdout must be a JSON
/// object of at most [`CAPTURE_MAX_BYTES`]. [`CAPTURE_TIMEOUT`] covers the
/// run and reading its output to the end: a background process that keeps
/// stdout open holds the run no longer than that. The program runs in a
/// process group of its own, and on a timeout the whole group is killed.
#[allow(unsafe_code)] // libc::kill of the process group; see the SAFETY comment
fn run_capture(program: &Path, instance: &str, executor_type: &str) -> Result<Map<String, Value>> {
    use std::os::unix::process::CommandExt;
    let shown = program.display();
    // It runs as this user (root): one that another user can replace would
    // run their code as root. A bare name found on PATH is the system's.
    if program.components().count() > 1 {
        let meta = std::fs::metadata(program)
            .with_context(|| format!("--capture-tags: cannot run `{shown}`"))?;
        fsutil::check_trusted(&shown.to_string(), &meta).context("--capture-tags")?;
    }
    let mut child = Command::new(program)
        .arg(instance)
        .arg(executor_type)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .process_group(0)
        .spawn()
        .with_context(|| format!("--capture-tags: cannot run `{shown}`"))?;
    // The group's id is the child's pid (process_group(0)).
    let group = child.id() as libc::pid_t;
    let kill_group = |child: &mut std::process::Child| {
        // SAFETY: kill has no memory-safety preconditions; a negative pid
        // names the process group the child leads.
        unsafe { libc::kill(-group, libc::SIGKILL) };
        let _ = child.kill();
        let _ = child.wait();
    };
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let (sender, output) = std::sync::mpsc::channel();
    // Reads to the end (or one byte past the cap); left behind, not
    // joined, if the output never ends: killing the group ends it.
    std::thread::spawn(move || {
        let mut buf = Vec::new();
        let read = (&mut stdout)
            .take(CAPTURE_MAX_BYTES + 1)
            .read_to_end(&mut buf)
            .map(|_| buf);
        let _ = sender.send(read);
    });
    let deadline = Instant::now() + CAPTURE_TIMEOUT;
    let timed_out = |what: &str| {
        anyhow!(
            "--capture-tags: `{shown} {instance} {executor_type}` {what} within {}s: \
             killed its process group (a capture program must print its JSON and exit, \
             and leave no background process holding its output)",
            CAPTURE_TIMEOUT.as_secs()
        )
    };
    let output = match output.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        Ok(read) => {
            read.with_context(|| format!("--capture-tags: cannot read the output of `{shown}`"))?
        }
        Err(_) => {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            kill_group(&mut child);
            return Err(timed_out(if exited {
                "exited, but its output did not end"
            } else {
                "did not finish"
            }));
        }
    };
    if output.len() as u64 > CAPTURE_MAX_BYTES {
        kill_group(&mut child);
        bail!(
            "--capture-tags: `{shown}` printed more than {} bytes: tag properties are a small JSON object",
            CAPTURE_MAX_BYTES
        );
    }
    // Its output ended; the program itself must end within the time left.
    let status = loop {
        if let Some(status) = child.try_wait().context("--capture-tags")? {
            break status;
        }
        if Instant::now() >= deadline {
            kill_group(&mut child);
            return Err(timed_out("did not finish"));
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    if !status.success() {
        bail!("--capture-tags: `{shown} {instance} {executor_type}` failed ({status})");
    }
    let value: Value = serde_json::from_slice(&output)
        .map_err(|e| anyhow!("--capture-tags: `{shown}` did not print a JSON object: {e}"))?;
    match value {
        Value::Object(map) => Ok(map),
        _ => bail!("--capture-tags: `{shown}` printed JSON that is not an object"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSettings;

    fn executor(kind: &str) -> Executor {
        Executor {
            file: PathBuf::from("/p/main/shell.toml"),
            url: "https://gitlab.example.com".into(),
            executor: kind.into(),
            name: "n".into(),
            token: None,
            env_tags: vec!["SITE".into(), "MISSING".into()],
            tags: vec!["extra".into(), "managed".into()],
            server: ServerSettings::default(),
            settings: Default::default(),
        }
    }

    #[test]
    fn identifying_tags_of_a_numbered_host() {
        assert_eq!(
            identifying_tags("node12", "main"),
            ["node12", "node", "managed", "main"]
        );
        assert_eq!(
            identifying_tags("login", "main"),
            ["login", "managed", "main"]
        );
        assert_eq!(identifying_tags("1234", "ci"), ["1234", "managed", "ci"]);
    }

    #[test]
    fn instance_may_not_equal_an_identifying_tag() {
        assert!(check_identity("node12", "node").is_err());
        assert!(check_identity("node12", "node12").is_err());
        assert!(check_identity("node12", "managed").is_err());
        check_identity("node12", "main").unwrap();
    }

    #[test]
    fn tags_are_flattened_in_order_and_deduplicated() {
        let env = HashMap::from([("SITE".to_string(), "lc".to_string())]);
        let mut ctx = TagContext::new("node12", "main", None, None, env);
        let tags = ctx.runner_tags(&executor("shell")).unwrap();
        assert_eq!(
            tags,
            ["node12", "shell", "main", "lc", "node", "managed", "extra"]
        );
    }

    #[test]
    fn schema_failure_names_the_property() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("schema.json");
        std::fs::write(
            &path,
            r#"{"$schema": "http://json-schema.org/schema/", "type": "object",
                "properties": {"executor_type": {"enum": ["shell", "docker"]}}}"#,
        )
        .unwrap();
        let schema = TagSchema::load(&path).unwrap();
        let mut ctx = TagContext::new("node12", "main", Some(schema), None, HashMap::new());
        ctx.runner_tags(&executor("shell")).unwrap();
        let err = ctx.runner_tags(&executor("ssh")).unwrap_err().to_string();
        assert!(err.contains("executor_type"), "{err}");
    }

    #[test]
    fn builtin_capture_adds_os_and_architecture() {
        let mut ctx = TagContext::new("h1", "main", None, Some(Capture::Builtin), HashMap::new());
        let tags = ctx.runner_tags(&executor("shell")).unwrap();
        assert!(tags.contains(&std::env::consts::ARCH.to_string()));
    }

    /// The scheduler is looked up on the `PATH` the run's environment
    /// gave (crate::env::Env), not the test process's own.
    #[test]
    fn builtin_capture_finds_the_scheduler_on_the_runs_path() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let salloc = dir.path().join("salloc");
        std::fs::write(&salloc, "#!/bin/sh\n").unwrap();
        std::fs::set_permissions(&salloc, std::fs::Permissions::from_mode(0o755)).unwrap();
        let path = format!("/nonexistent:{}", dir.path().display());
        let env = HashMap::from([("PATH".to_string(), path)]);
        let mut ctx = TagContext::new("h1", "main", None, Some(Capture::Builtin), env);
        let tags = ctx.runner_tags(&executor("batch")).unwrap();
        assert!(tags.contains(&"slurm".to_string()), "{tags:?}");
        let mut ctx = TagContext::new("h1", "main", None, Some(Capture::Builtin), HashMap::new());
        let tags = ctx.runner_tags(&executor("batch")).unwrap();
        assert!(!tags.contains(&"slurm".to_string()), "{tags:?}");
    }
}
