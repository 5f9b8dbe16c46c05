//! One run, end to end (SPEC §4): load and validate → lock → read the
//! token store → observe every GitLab concurrently → plan → print (dry-run)
//! or apply → write. Orchestration only: each step lives in its own module.

use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use time::OffsetDateTime;

use crate::apply::{self, Applied, Persist};
use crate::cli::{Cli, OutputFormat};
use crate::config::{self, Inputs, LoadEnv};
use crate::config_file::{self, OutputWriter};
use crate::env::Env;
use crate::exit::ExitCode;
use crate::fsutil::{self, PrefixLock};
use crate::gitlab::{GitLab, SystemRoots};
use crate::observe::{self, Identity};
use crate::plan::{self, Plan};
use crate::store::TokenStore;
use crate::system_id::SystemId;
use crate::tags::{self, Capture, TagContext, TagSchema};
use crate::{metrics, report};

/// Runs the tool; the error case is a failure (exit 1) already explained.
pub fn run(cli: &Cli, process_env: &Env) -> Result<ExitCode> {
    let started = Instant::now();
    // 1. Load and validate all input: no network, nothing written.
    let loaded = load(cli, process_env)?;
    phase(started, "input loaded");
    let output_path = loaded.output_path.clone();
    let mut facts = Facts::default();
    let result = sync(cli, process_env, loaded, started, &mut facts);
    // A dry-run is not a run of this host: the last run's metrics stay.
    if let Some(path) = cli.metrics_file.as_deref().filter(|_| !cli.dry_run) {
        let metrics = facts.metrics(cli, &output_path, started, &result);
        if let Err(e) = metrics::write(path, &metrics) {
            // Monitoring must not keep the runners from starting.
            tracing::warn!("{e:#}");
        }
    }
    result
}

/// What a run leaves for `--metrics-file`, gathered as it goes.
#[derive(Default)]
struct Facts {
    clients: Vec<Arc<GitLab>>,
    counts: Option<report::Counts>,
}

impl Facts {
    fn metrics(
        &self,
        cli: &Cli,
        output_path: &Path,
        started: Instant,
        result: &Result<ExitCode>,
    ) -> metrics::RunMetrics {
        let now = OffsetDateTime::now_utc();
        // The tokens the output file holds now: what gitlab-runner uses.
        let tokens = TokenStore::load(output_path, now)
            .map(|store| {
                store
                    .runners
                    .iter()
                    .filter_map(|r| {
                        Some(metrics::TokenExpiry {
                            gitlab: r.url.clone(),
                            runner: r.name.clone(),
                            id: r.credentials.id,
                            expires_at: r.credentials.expires_at?,
                        })
                    })
                    .collect()
            })
            .unwrap_or_default();
        metrics::RunMetrics {
            instance: cli.service_instance.clone(),
            finished_at: now,
            success: matches!(result, Ok(ExitCode::Success)),
            duration: started.elapsed(),
            counts: self.counts,
            requests: self
                .clients
                .iter()
                .map(|c| (c.base_url().to_string(), c.request_counts()))
                .collect(),
            tokens,
        }
    }
}

/// Steps 2 to 6, after the input loaded.
fn sync(
    cli: &Cli,
    process_env: &Env,
    loaded: Loaded,
    started: Instant,
    facts: &mut Facts,
) -> Result<ExitCode> {
    let Loaded {
        inputs,
        runner_tags,
        identifying,
        hostname,
        mut system_id,
        output_path,
        last_output,
    } = loaded;
    // The system's trust store is read meanwhile, if any GitLab is https.
    let system_roots = SystemRoots::start(&inputs.template.clients, &process_env.vars);
    // 2. Exclusive lock (a dry-run only reads, and leaves no lock file).
    let _lock = lock(cli, &mut system_id)?;
    // 3. The last output is the token store.
    let store = TokenStore::load_checked(&output_path, OffsetDateTime::now_utc(), last_output)?;
    check_dry_run_system_id(cli, &inputs, &store, &system_id)?;
    phase(started, "last output read");
    // The deadline covers GitLab traffic only, not the wait for the lock.
    let deadline = Instant::now() + cli.timeout();
    let system_roots = system_roots.wait();
    let clients = inputs
        .template
        .clients
        .iter()
        .map(|c| GitLab::new(c, &system_roots, deadline, !process_env.no_retry_delay).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;
    facts.clients = clients.clone();

    // 4. Observe every GitLab concurrently, then plan.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // Instances share `.runner_system_id`: what tells their runners apart
    // is what the other instances' configs hold, and their instance tags.
    let instances = crate::store::instances(
        &cli.prefix,
        &cli.service_instance,
        OffsetDateTime::now_utc(),
    );
    let identity = Identity {
        identifying_tags: identifying,
        hostname: hostname.clone(),
        system_id: system_id.value.clone(),
        name_prefix: format!("{hostname} {} ", cli.service_instance),
        instance: cli.service_instance.clone(),
        other_instances: instances.others.iter().map(|o| o.name.clone()).collect(),
    };
    let observations = runtime.block_on(observe::observe_all(
        &inputs,
        &runner_tags,
        &store,
        &instances,
        &clients,
        &identity,
    ));
    phase(started, "GitLab observed");
    let plan = plan::plan(
        &inputs,
        &runner_tags,
        &store,
        &instances,
        &observations,
        OffsetDateTime::now_utc(),
        cli.allow_empty,
    );
    phase(started, "planned");
    report::log_warnings(&plan);
    if cli.dry_run {
        return dry_run(cli, &inputs, &store, &plan);
    }
    let offline = plan.offline();
    if cli.strict && !offline.is_empty() {
        bail!(
            "GitLab could not be used ({}) and --strict is given: not starting on the last config",
            offline.join(", ")
        );
    }

    // 5. Apply, persisting each new token at once.
    let mut writer = OutputWriter::new(&inputs, &plan, &store);
    let applied = runtime.block_on(apply::apply(
        &plan,
        &inputs,
        &clients,
        &system_id.value,
        &mut writer,
    ));

    phase(started, "applied");
    // 6. Write the output.
    let wrote = writer.persist(&applied);
    phase(started, "output persisted");
    finish(&plan, &applied, wrote, &output_path, started, facts)
}

/// `-v`: where a run's time goes, phase by phase.
fn phase(started: Instant, done: &str) {
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    tracing::debug!("{done} after {ms:.1} ms");
}

/// Everything step 1 loads and validates.
struct Loaded {
    inputs: Inputs,
    /// The tags of each executor, by its index in `inputs.executors`.
    runner_tags: Vec<Vec<String>>,
    identifying: Vec<String>,
    hostname: String,
    system_id: SystemId,
    output_path: PathBuf,
    /// The last output as validated (parsed again under the lock only if
    /// it changed meanwhile).
    last_output: crate::store::Checked,
}

/// `--hostname`, else the system's host name.
pub(crate) fn hostname(cli: &Cli) -> Result<String> {
    match &cli.hostname {
        Some(name) => Ok(name.clone()),
        None => gethostname::gethostname()
            .into_string()
            .map_err(|_| anyhow::anyhow!("the system host name is not UTF-8: use --hostname")),
    }
}

/// Where and as whom the input is loaded, from the command line and the
/// process environment (a run and `check` read the same files).
pub(crate) fn load_env(cli: &Cli, hostname: &str, process_env: &Env) -> LoadEnv {
    LoadEnv {
        prefix: cli.prefix.clone(),
        instance: cli.service_instance.clone(),
        hostname: hostname.to_string(),
        credentials_directory: process_env.credentials_directory.clone(),
        allow_missing_executor_dir: cli.allow_empty,
        template: cli.template.clone(),
        executor_dir: cli.executor_dir.clone(),
    }
}

/// Step 1: loads and validates all input; no network, nothing written.
fn load(cli: &Cli, process_env: &Env) -> Result<Loaded> {
    let hostname = hostname(cli)?;
    config::check_instance_name(&cli.service_instance)?;
    tags::check_identity(&hostname, &cli.service_instance)?;
    let env = load_env(cli, &hostname, process_env);
    let inputs = config::load(&env)?;
    let schema = cli.tag_schema.as_deref().map(TagSchema::load).transpose()?;
    let capture = cli
        .capture_tags
        .as_deref()
        .map(|arg| Capture::from_arg(arg, process_env.vars.get("PATH")))
        .transpose()?;
    let mut tag_context = TagContext::new(
        &hostname,
        &cli.service_instance,
        schema,
        capture,
        process_env.vars.clone(),
    );
    let runner_tags = inputs
        .executors
        .iter()
        .map(|e| tag_context.runner_tags(e))
        .collect::<Result<Vec<_>>>()?;
    let identifying = tags::identifying_tags(&hostname, &cli.service_instance);
    let system_id = SystemId::load(&cli.prefix)?;
    let output_path = config::output_path(&cli.prefix, &cli.service_instance);
    // The last output is input too: a broken one stops the run here, before
    // the lock file or `.runner_system_id` is written. (It is read again
    // under the lock, where a concurrent run's tokens are final.)
    let last_output = crate::store::check(&output_path)?;
    Ok(Loaded {
        inputs,
        runner_tags,
        identifying,
        hostname,
        system_id,
        output_path,
        last_output,
    })
}

/// Step 2: the exclusive lock of this instance, then what only a locked
/// run may do: clear a killed run's temp files, write `.runner_system_id`.
/// A dry-run only reads, and leaves no lock file.
fn lock(cli: &Cli, system_id: &mut SystemId) -> Result<Option<PrefixLock>> {
    if cli.dry_run {
        return Ok(None);
    }
    let lock_path = cli
        .prefix
        .join(format!(".register-runner.{}.lock", cli.service_instance));
    let lock = PrefixLock::acquire(&lock_path)?;
    // A run killed mid-write leaves its temp file. Under this lock no
    // other run writes this instance's config; `.runner_system_id` is
    // shared by every instance, so only an old temp file of it goes.
    let config_name = format!("config.{}.toml", cli.service_instance);
    fsutil::remove_stale_temp_files(
        &cli.prefix,
        &[
            (config_name.as_str(), Duration::ZERO),
            (crate::system_id::FILE_NAME, Duration::from_secs(60)),
        ],
    );
    // Before any verify, so that the id GitLab records is the one kept.
    system_id.persist()?;
    system_id.needs_write = false;
    Ok(Some(lock))
}

/// A verify registers a runner manager under the system id it carries. A
/// random id a dry-run made up would never be used again, so every verify
/// would leave a stray manager in GitLab.
fn check_dry_run_system_id(
    cli: &Cli,
    inputs: &Inputs,
    store: &TokenStore,
    system_id: &SystemId,
) -> Result<()> {
    let has_tokens_to_verify =
        !store.runners.is_empty() || inputs.executors.iter().any(|e| e.token.is_some());
    if cli.dry_run && system_id.needs_write && !system_id.from_machine && has_tokens_to_verify {
        bail!(
            "`{}` is missing or invalid and this host has no machine-id, so the system id the next real run \
             will choose is not known yet; a dry-run would register runner managers under a throwaway id. \
             Run once without --dry-run, or write an id (`r_` + 12 letters or digits) to that file",
            system_id.path.display()
        );
    }
    Ok(())
}

/// The end of a real run: the failures (the plan's, apply's, the write's),
/// the summary line, the exit.
fn finish(
    plan: &Plan,
    applied: &Applied,
    wrote: Result<()>,
    output_path: &Path,
    started: Instant,
    facts: &mut Facts,
) -> Result<ExitCode> {
    let mut failures = applied.failures_of_run(plan);
    for warning in &applied.warnings {
        tracing::warn!("{warning}");
    }
    if let Err(e) = wrote {
        failures.push(format!("{e:#}"));
    }
    let offline = plan.offline();
    if !offline.is_empty() && failures.is_empty() {
        tracing::warn!(
            "started on the last config: GitLab could not be used ({}); gitlab-runner will reconnect when it is back",
            offline.join(", ")
        );
    }
    let warnings = plan.warning_count() + applied.warnings.len();
    let counts = report::Counts::of_run(plan, applied, failures.len(), warnings);
    facts.counts = Some(counts);
    tracing::info!(
        "{}: {}, elapsed {} ms",
        if failures.is_empty() {
            "runners in sync"
        } else {
            "run failed"
        },
        counts,
        started.elapsed().as_millis()
    );
    if !failures.is_empty() {
        bail!(
            "{} step(s) failed ({}); whatever succeeded was written to `{}`",
            failures.len(),
            failures.join("; "),
            output_path.display()
        );
    }
    Ok(ExitCode::Success)
}

fn dry_run(cli: &Cli, inputs: &Inputs, store: &TokenStore, plan: &Plan) -> Result<ExitCode> {
    if let Some(mode) = store.loose_mode() {
        tracing::warn!(
            "`{}` has mode {mode:04o}: group or others can read the runner tokens in it; \
             a run sets it to 0600 (--dry-run: not changed)",
            store.path.display()
        );
    }
    let (diff, file_changes) = config_file::planned_diff(inputs, plan, store);
    let changes = plan.has_changes() || file_changes;
    let text = match cli.output {
        OutputFormat::Text => report::text(plan, &diff, std::io::stdout().is_terminal()),
        OutputFormat::Json => format!("{:#}\n", report::json(plan, &diff, changes)),
    };
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(text.as_bytes())
        .context("cannot write to stdout")?;
    stdout.flush().context("cannot write to stdout")?;
    let problems = plan.dry_run_problems();
    if !problems.is_empty() {
        bail!(
            "the plan has {} problem(s): {}",
            problems.len(),
            problems.join("; ")
        );
    }
    Ok(if changes {
        ExitCode::ChangesPending
    } else {
        ExitCode::Success
    })
}
