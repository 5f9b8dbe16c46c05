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
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use archspec::cpu::Microarchitecture;
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
    /// `--capture-tags builtin`: archspec's architecture and its ancestors,
    /// and the batch scheduler on PATH.
    Builtin,
    /// A program run as `PROGRAM <instance> <executor_type>` that prints a JSON object.
    Program(PathBuf),
    /// The original's form: a Python module with `capture_tags(instance,
    /// executor_type, env, tag_schema)`, by name (imported from
    /// `PYTHONPATH`) or as a `.py` path, run through the shipped adapter
    /// ([`ADAPTER`]) as `ADAPTER <module> <instance> <executor_type>`.
    Python { module: String, adapter: PathBuf },
}

/// The adapter that runs a Python capture module (packaging/capture-tags-python).
pub const ADAPTER: &str = "capture-tags-python";

/// Where the adapter is looked for, after the directory of the running
/// binary: the packages install it in the first.
pub const ADAPTER_DIRS: &[&str] = &["/usr/libexec/register-runner", "/usr/share/register-runner"];

impl Capture {
    /// `builtin`; a path (with a `/`) or a bare name found on `path` (the
    /// run's `PATH`): a program; a name ending in `.py`, or a bare name that
    /// is no executable on `PATH`: a Python module, as the original's
    /// `--capture-tags capture_tags` (its default) imported with importlib.
    pub fn from_arg(arg: &str, path: Option<&String>) -> Result<Capture> {
        if arg == "builtin" {
            return Ok(Capture::Builtin);
        }
        let python = arg.ends_with(".py") || (!arg.contains('/') && !on_path(arg, path));
        if !python {
            return Ok(Capture::Program(PathBuf::from(arg)));
        }
        let adapter = find_adapter().ok_or_else(|| {
            anyhow!(
                "--capture-tags `{arg}` is not an executable, so it is read as a Python capture module \
                 (as the original register-runner did), but the adapter `{ADAPTER}` was found neither next to \
                 register-runner nor in {}: reinstall the package, or give the path of an executable",
                ADAPTER_DIRS.join(" or ")
            )
        })?;
        Ok(Capture::Python {
            module: arg.to_string(),
            adapter,
        })
    }
}

/// The adapter next to the running binary, else in [`ADAPTER_DIRS`].
fn find_adapter() -> Option<PathBuf> {
    let beside = std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(Path::to_path_buf));
    beside
        .into_iter()
        .chain(ADAPTER_DIRS.iter().map(PathBuf::from))
        .map(|dir| dir.join(ADAPTER))
        .find(|candidate| candidate.is_file())
}

/// A compiled `--tag-schema`.
pub struct TagSchema {
    path: PathBuf,
    validator: jsonschema::Validator,
    /// The schema as read: the built-in capture classifies `env_tags`
    /// values by its `os` and `architecture` enums and `custom-name`.
    schema: Value,
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
        let Some(text) = fsutil::read_input_opt(path).context("--tag-schema")? else {
            bail!(
                "--tag-schema `{}` does not exist: the original register-runner went on without a schema \
                 when its file was missing, register-runner stops so that no runner is tagged unchecked; \
                 create the file, or remove --tag-schema from the unit's ExecStartPre= line",
                path.display()
            );
        };
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
            schema,
        })
    }

    /// Whether the schema's `properties.<property>.enum` lists `value`.
    fn lists(&self, property: &str, value: &str) -> bool {
        self.schema
            .pointer(&format!("/properties/{property}/enum"))
            .and_then(Value::as_array)
            .is_some_and(|values| values.iter().any(|v| v.as_str() == Some(value)))
    }

    /// The original's `capture_tags.py` classification of one `env_tags`
    /// value: `os` or `architecture` when the schema's enum lists it, else
    /// a `custom` tag prefixed with the schema's `custom-name`. The
    /// original passed the variable *names* here, which no enum matches;
    /// the values are what it meant.
    fn classify(&self, value: &str, properties: &mut Map<String, Value>) {
        if self.lists("os", value) {
            properties.insert("os".into(), Value::String(value.into()));
        } else if self.lists("architecture", value) {
            properties.insert("architecture".into(), Value::String(value.into()));
        } else {
            let prefix = self
                .schema
                .get("custom-name")
                .and_then(Value::as_str)
                .unwrap_or("custom");
            if let Some(Value::Array(custom)) = properties.get_mut("custom") {
                custom.push(Value::String(format!("{prefix}_{value}")));
            }
        }
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
    /// The host's CPU as archspec names it, detected on first use by the
    /// built-in capture (tests set it with [`TagContext::with_cpu`]).
    cpu: Option<Arc<Microarchitecture>>,
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
            cpu: None,
        }
    }

    /// The built-in capture reports `cpu` instead of detecting the host's.
    pub fn with_cpu(mut self, cpu: Arc<Microarchitecture>) -> TagContext {
        self.cpu = Some(cpu);
        self
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
        let env_values: Vec<String> = properties["env"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|v| v.as_str().map(String::from))
            .collect();
        if let Some(mut extra) = self.captured(&executor.executor, &env_values)? {
            // As the original's capture_tags.py, given a tag schema.
            if let (Some(Capture::Builtin), Some(schema)) = (&self.capture, &self.schema) {
                for value in &env_values {
                    schema.classify(value, &mut extra);
                }
            }
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
            Some(Capture::Python { module, .. }) => module.clone(),
            Some(Capture::Builtin) | None => "builtin".into(),
        }
    }

    /// What the capture gives for this executor type (and, for a Python
    /// module, these `env_tags` values), run once per distinct input.
    fn captured(
        &mut self,
        executor_type: &str,
        env_values: &[String],
    ) -> Result<Option<Map<String, Value>>> {
        let Some(capture) = &self.capture else {
            return Ok(None);
        };
        let key = match capture {
            Capture::Python { .. } => format!("{executor_type}\0{}", env_values.join("\0")),
            _ => executor_type.to_string(),
        };
        if let Some(found) = self.captured.get(&key) {
            return Ok(Some(found.clone()));
        }
        let properties = match capture {
            Capture::Python { module, adapter } => {
                let mut envs = vec![(
                    "REGISTER_RUNNER_ENV_TAGS".to_string(),
                    Value::from(env_values.to_vec()).to_string(),
                )];
                if let Some(schema) = &self.schema {
                    envs.push((
                        "REGISTER_RUNNER_TAG_SCHEMA".to_string(),
                        schema.path.display().to_string(),
                    ));
                }
                // A module given by path runs as root like a program: the
                // same ownership rule.
                if module.contains('/') {
                    let meta = std::fs::metadata(module)
                        .with_context(|| format!("--capture-tags: cannot read `{module}`"))?;
                    fsutil::check_trusted(module, &meta).context("--capture-tags")?;
                }
                let invocation = CaptureRun {
                    program: adapter,
                    shown: module.clone(),
                    first_args: vec![module.clone()],
                    envs,
                };
                run_capture(&invocation, &self.instance, executor_type)?
            }
            Capture::Builtin => {
                let cpu = self.cpu.get_or_insert_with(host_cpu).clone();
                builtin_capture(executor_type, self.env.get("PATH"), &cpu)
            }
            Capture::Program(program) => {
                let invocation = CaptureRun {
                    program,
                    shown: program.display().to_string(),
                    first_args: Vec::new(),
                    envs: Vec::new(),
                };
                run_capture(&invocation, &self.instance, executor_type)?
            }
        };
        self.captured.insert(key, properties.clone());
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

/// This host's CPU as archspec (the library the original's capture_tags.py
/// uses) names it; a CPU it does not know is its generic family (`x86_64`,
/// `aarch64`, …), with no ancestors.
fn host_cpu() -> Arc<Microarchitecture> {
    archspec::cpu::host()
        .unwrap_or_else(|_| Arc::new(Microarchitecture::generic(std::env::consts::ARCH)))
}

/// What the original's `capture_tags.py` gives: `architecture` (archspec's
/// name of the host's microarchitecture), `micro-architecture` (its
/// ancestors, nearest first), `custom` (filled from `env_tags` values when
/// a tag schema is given), and for batch-style executors the scheduler on
/// PATH.
fn builtin_capture(
    executor_type: &str,
    path: Option<&String>,
    cpu: &Microarchitecture,
) -> Map<String, Value> {
    let mut map = Map::new();
    map.insert("architecture".into(), Value::String(cpu.name().into()));
    let ancestors = cpu.ancestors().iter();
    map.insert(
        "micro-architecture".into(),
        Value::Array(ancestors.map(|a| Value::String(a.name().into())).collect()),
    );
    map.insert("custom".into(), Value::Array(Vec::new()));
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

/// One run of a capture program: `program [first_args…] <instance>
/// <executor_type>`, with `envs` added to its environment; `shown` names it
/// in messages (the module, for the Python adapter).
struct CaptureRun<'a> {
    program: &'a Path,
    shown: String,
    first_args: Vec<String>,
    envs: Vec<(String, String)>,
}

/// Runs a capture program (or the Python adapter) as `PROGRAM
/// <instance> <executor_type>`; its stdout must be a JSON
/// object of at most [`CAPTURE_MAX_BYTES`]. [`CAPTURE_TIMEOUT`] covers the
/// run and reading its output to the end: a background process that keeps
/// stdout open holds the run no longer than that. The program runs in a
/// process group of its own, and on a timeout the whole group is killed.
#[allow(unsafe_code)] // libc::kill of the process group; see the SAFETY comment
fn run_capture(
    run: &CaptureRun<'_>,
    instance: &str,
    executor_type: &str,
) -> Result<Map<String, Value>> {
    use std::os::unix::process::CommandExt;
    let program = run.program;
    let shown = &run.shown;
    // It runs as this user (root): one that another user can replace would
    // run their code as root. A bare name found on PATH is the system's.
    if program.components().count() > 1 {
        let meta = std::fs::metadata(program)
            .with_context(|| format!("--capture-tags: cannot run `{shown}`"))?;
        fsutil::check_trusted(&program.display().to_string(), &meta).context("--capture-tags")?;
    }
    let mut child = Command::new(program)
        .args(&run.first_args)
        .envs(run.envs.iter().map(|(k, v)| (k, v)))
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

    /// A schema in the shape of the original's `tag_schema.json`: `os` and
    /// `architecture` enums, `custom-name`, arrays for `custom`, `env` and
    /// `micro-architecture`. Its architecture enum stops at `zen2`, as the
    /// original's does.
    const ORIGINAL_SHAPED_SCHEMA: &str = r#"{
        "$schema": "http://json-schema.org/schema/",
        "type": "object",
        "properties": {
            "hostname": {"type": "string"},
            "instance": {"type": "string"},
            "os": {"type": "string", "enum": ["rhel", "toss", "debian", "linux"]},
            "architecture": {"type": "string",
                "enum": ["aarch64", "haswell", "skylake", "x86_64", "zen", "zen2"]},
            "executor_type": {"type": "string", "enum": ["shell", "batch", "custom"]},
            "scheduler": {"type": "string"},
            "custom": {"type": "array"},
            "env": {"type": "array"},
            "micro-architecture": {"type": "array"}
        },
        "required": ["hostname", "instance", "executor_type"],
        "custom-name": "site"
    }"#;

    fn known_cpu(name: &str) -> Arc<Microarchitecture> {
        Microarchitecture::known_targets()
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("archspec knows {name}"))
    }

    fn original_shaped_schema(dir: &Path) -> TagSchema {
        let path = dir.join("tag_schema.json");
        std::fs::write(&path, ORIGINAL_SHAPED_SCHEMA).unwrap();
        TagSchema::load(&path).unwrap()
    }

    /// The CPU is given, so the test does not depend on the machine: the
    /// original-shaped schema lists no `x86_64_v4`.
    #[test]
    fn builtin_capture_gives_archspec_name_and_ancestors() {
        let zen2 = known_cpu("zen2");
        let mut ctx = TagContext::new("h1", "main", None, Some(Capture::Builtin), HashMap::new())
            .with_cpu(zen2.clone());
        let tags = ctx.runner_tags(&executor("shell")).unwrap();
        assert!(tags.contains(&"zen2".to_string()), "{tags:?}");
        let ancestors: Vec<&str> = zen2.ancestors().iter().map(|a| a.name()).collect();
        assert!(
            ancestors.contains(&"zen") && ancestors.contains(&"x86_64"),
            "{ancestors:?}"
        );
        for ancestor in ancestors {
            assert!(tags.iter().any(|t| t == ancestor), "{ancestor} in {tags:?}");
        }
        // No `os` property of its own, as the original.
        assert!(!tags.contains(&"linux".to_string()), "{tags:?}");
    }

    /// tests/test_capture_tags.py of the original: env values `mytag` and
    /// `debian` with its schema give `custom == ["custom_mytag"]` and
    /// `os == "debian"` (here with `custom-name` "site"), and the result
    /// satisfies the schema.
    #[test]
    fn builtin_capture_classifies_env_values_with_the_schema() {
        let dir = tempfile::tempdir().unwrap();
        let env = HashMap::from([
            ("SITE".to_string(), "mytag".to_string()),
            ("MISSING".to_string(), "debian".to_string()),
        ]);
        let mut ctx = TagContext::new(
            "h1",
            "main",
            Some(original_shaped_schema(dir.path())),
            Some(Capture::Builtin),
            env,
        )
        .with_cpu(known_cpu("haswell"));
        let tags = ctx.runner_tags(&executor("batch")).unwrap();
        for tag in ["site_mytag", "debian", "mytag", "haswell", "x86_64"] {
            assert!(tags.iter().any(|t| t == tag), "{tag} in {tags:?}");
        }
        // An env value in the architecture enum sets `architecture`, as
        // the original's `properties.update` does.
        let env = HashMap::from([("SITE".to_string(), "skylake".to_string())]);
        let mut ctx = TagContext::new(
            "h1",
            "main",
            Some(original_shaped_schema(dir.path())),
            Some(Capture::Builtin),
            env,
        )
        .with_cpu(known_cpu("zen2"));
        let tags = ctx.runner_tags(&executor("shell")).unwrap();
        assert!(tags.contains(&"skylake".to_string()), "{tags:?}");
        assert!(!tags.contains(&"zen2".to_string()), "{tags:?}");
        assert!(!tags.iter().any(|t| t.starts_with("site_")), "{tags:?}");
    }

    /// A CPU newer than the schema's enum fails the schema, naming the
    /// property (as the original's jsonschema.validate would).
    #[test]
    fn builtin_capture_of_a_cpu_the_schema_does_not_list_fails() {
        let dir = tempfile::tempdir().unwrap();
        let mut ctx = TagContext::new(
            "h1",
            "main",
            Some(original_shaped_schema(dir.path())),
            Some(Capture::Builtin),
            HashMap::new(),
        )
        .with_cpu(known_cpu("x86_64_v4"));
        let err = ctx.runner_tags(&executor("shell")).unwrap_err().to_string();
        assert!(err.contains("property `architecture`"), "{err}");
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
