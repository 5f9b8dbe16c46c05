//! One run, end to end (SPEC §4): load and validate → lock → read the
//! token store → observe every GitLab concurrently → plan → print (dry-run)
//! or apply → write. Orchestration only: each step lives in its own module.

use std::collections::HashMap;
use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use time::OffsetDateTime;

use crate::apply::{self, Applied, Persist};
use crate::cli::{Cli, OutputFormat};
use crate::config::{self, Inputs, LoadEnv};
use crate::config_file::{OutputWriter, assemble};
use crate::env::Env;
use crate::exit::ExitCode;
use crate::fsutil::{self, PrefixLock};
use crate::gitlab::GitLab;
use crate::observe::{self, Identity};
use crate::output::{self, Secrets};
use crate::plan::{self, Observation, Plan, RunnerAction};
use crate::report;
use crate::store::TokenStore;
use crate::system_id::SystemId;
use crate::tags::{self, Capture, TagContext, TagSchema};

/// Runs the tool; the error case is a failure (exit 1) already explained.
pub fn run(cli: &Cli, process_env: &Env) -> Result<ExitCode> {
    let started = Instant::now();
    // 1. Load and validate all input: no network, nothing written.
    let hostname = match &cli.hostname {
        Some(name) => name.clone(),
        None => gethostname::gethostname()
            .into_string()
            .map_err(|_| anyhow::anyhow!("the system host name is not UTF-8: use --hostname"))?,
    };
    config::check_instance_name(&cli.service_instance)?;
    tags::check_identity(&hostname, &cli.service_instance)?;
    let env = LoadEnv {
        prefix: cli.prefix.clone(),
        instance: cli.service_instance.clone(),
        hostname: hostname.clone(),
        credentials_directory: process_env.credentials_directory.clone(),
        allow_missing_executor_dir: cli.allow_empty,
    };
    let inputs = config::load(&env)?;
    let schema = cli.tag_schema.as_deref().map(TagSchema::load).transpose()?;
    let capture = cli.capture_tags.as_deref().map(Capture::from_arg);
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
    let mut system_id = SystemId::load(&cli.prefix)?;
    let output_path = config::output_path(&cli.prefix, &cli.service_instance);
    // The last output is input too: a broken one stops the run here, before
    // the lock file or `.runner_system_id` is written. (It is read again
    // under the lock, where a concurrent run's tokens are final.)
    crate::store::check(&output_path)?;
    // 2. Exclusive lock (a dry-run only reads, and leaves no lock file).
    let _lock = if cli.dry_run {
        None
    } else {
        let lock_path = cli
            .prefix
            .join(format!(".register-runner.{}.lock", cli.service_instance));
        Some(PrefixLock::acquire(&lock_path)?)
    };
    if !cli.dry_run {
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
    }

    // The deadline covers GitLab traffic only, not the wait for the lock.
    let deadline = Instant::now() + cli.timeout();
    let clients = inputs
        .template
        .clients
        .iter()
        .map(|c| GitLab::new(c, deadline, !process_env.no_retry_delay).map(Arc::new))
        .collect::<Result<Vec<_>>>()?;

    // 3. The last output is the token store.
    let store = TokenStore::load(&output_path, OffsetDateTime::now_utc())?;
    // A verify registers a runner manager under the system id it carries.
    // A random id a dry-run made up would never be used again, so every
    // verify would leave a stray manager in GitLab.
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
        system_id: system_id.value.clone(),
        name_prefix: format!("{hostname} {} ", cli.service_instance),
        instance: cli.service_instance.clone(),
        other_instances: instances.others.iter().map(|o| o.name.clone()).collect(),
    };
    let observations = runtime.block_on(observe_all(
        &inputs,
        &runner_tags,
        &store,
        &instances,
        &clients,
        &identity,
    ));
    let plan = plan::plan(
        &inputs,
        &runner_tags,
        &store,
        &instances,
        &observations,
        OffsetDateTime::now_utc(),
        cli.allow_empty,
    );
    for (name, url, _) in &plan.unknown_gitlab {
        tracing::warn!(
            "runner `{name}` in the last config is on `{url}`, which client_configs no longer names: \
             its entry is kept so that its token is not lost; delete the runner in GitLab and the entry by hand, \
             or put the url back"
        );
    }
    for g in &plan.gitlabs {
        if let (Some(reason), Some(kind)) = (&g.offline, g.offline_kind()) {
            tracing::warn!(gitlab = %g.url, "GitLab is {kind}: {reason}");
        }
        for warning in &g.warnings {
            tracing::warn!(gitlab = %g.url, "{warning}");
        }
    }

    if cli.dry_run {
        return dry_run(cli, &inputs, &store, &plan);
    }

    let offline: Vec<String> = plan
        .gitlabs
        .iter()
        .filter_map(|g| Some(format!("{} {}", g.url, g.offline_kind()?)))
        .collect();
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

    // 6. Write the output.
    let wrote = writer.persist(&applied);
    let mut failures: Vec<String> = plan
        .gitlabs
        .iter()
        .filter(|g| g.offline.is_none())
        .flat_map(|g| g.problems.iter().map(move |p| format!("{}: {p}", g.url)))
        .collect();
    failures.extend(applied.failures.iter().cloned());
    for warning in &applied.warnings {
        tracing::warn!("{warning}");
    }
    for g in plan.gitlabs.iter().filter(|g| g.offline.is_some()) {
        for r in &g.runners {
            if matches!(
                r.action,
                RunnerAction::Hold {
                    credentials: None,
                    ..
                }
            ) {
                failures.push(format!(
                    "{}: runner `{}` has no token in the last config and GitLab is {}",
                    g.url,
                    r.name,
                    g.offline_kind().unwrap_or("unreachable")
                ));
            }
        }
    }
    if let Err(e) = wrote {
        failures.push(format!("{e:#}"));
    }
    if !offline.is_empty() && failures.is_empty() {
        tracing::warn!(
            "started on the last config: GitLab could not be used ({}); gitlab-runner will reconnect when it is back",
            offline.join(", ")
        );
    }
    let warnings = plan.warning_count() + applied.warnings.len();
    tracing::info!(
        "{}: {}, elapsed {} ms",
        if failures.is_empty() {
            "runners in sync"
        } else {
            "run failed"
        },
        summary(&plan, &applied, failures.len(), warnings),
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

/// The counts of the final summary line, for people and for monitoring:
/// `created=1 updated=0 rotated=0 deleted=2 kept=5 held=0 failed=0 warnings=1`.
fn summary(plan: &Plan, applied: &Applied, failed: usize, warnings: usize) -> String {
    let runners = || plan.gitlabs.iter().flat_map(|g| &g.runners);
    let issued = |r: &&plan::RunnerPlan| applied.issued.contains_key(&r.name);
    let created = runners()
        .filter(|r| matches!(r.action, RunnerAction::Create { .. }))
        .filter(issued)
        .count();
    let rotated = runners().filter(|r| r.rotate).filter(issued).count();
    let kept = runners()
        .filter(|r| matches!(r.action, RunnerAction::Keep { .. }))
        .count();
    let held = runners()
        .filter(|r| matches!(r.action, RunnerAction::Hold { .. }))
        .count()
        + plan
            .gitlabs
            .iter()
            .map(|g| g.carry_over.len())
            .sum::<usize>()
        + plan.unknown_gitlab.len();
    format!(
        "created={created} updated={} rotated={rotated} deleted={} kept={kept} held={held} failed={failed} warnings={warnings}",
        applied.updated,
        applied.deleted.len()
    )
}

async fn observe_all(
    inputs: &Inputs,
    runner_tags: &[Vec<String>],
    store: &TokenStore,
    instances: &crate::store::Instances,
    clients: &[Arc<GitLab>],
    identity: &Identity,
) -> Vec<Observation> {
    let mut tasks = tokio::task::JoinSet::new();
    for (c, client) in inputs.template.clients.iter().enumerate() {
        let executors: Vec<_> = inputs
            .executors
            .iter()
            .zip(runner_tags)
            .filter(|(e, _)| e.url == client.url)
            .map(|(e, t)| (e.clone(), t.clone()))
            .collect();
        let held: Vec<_> = store
            .runners
            .iter()
            .filter(|r| r.url == client.url)
            .cloned()
            .collect();
        let foreign_ids = instances
            .others
            .iter()
            .flat_map(|o| &o.held)
            .filter(|(url, id, _)| *url == client.url && *id != 0)
            .map(|(_, id, _)| *id)
            .collect();
        let gitlab = clients[c].clone();
        let identity = identity.clone();
        tasks.spawn(async move {
            let observation =
                observe::observe(gitlab, executors, held, identity, foreign_ids).await;
            (c, observation)
        });
    }
    let mut observations: Vec<Option<Observation>> = vec![None; inputs.template.clients.len()];
    while let Some(joined) = tasks.join_next().await {
        match joined {
            Ok((c, observation)) => observations[c] = Some(observation),
            Err(e) => tracing::error!("observing a GitLab failed: {e}"),
        }
    }
    observations
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| {
                Observation::unreachable(
                    "observation failed".into(),
                    &identity.system_id,
                    &identity.name_prefix,
                )
            })
        })
        .collect()
}

fn dry_run(cli: &Cli, inputs: &Inputs, store: &TokenStore, plan: &Plan) -> Result<ExitCode> {
    if let Some(mode) = store.loose_mode() {
        tracing::warn!(
            "`{}` has mode {mode:04o}: group or others can read the runner tokens in it; \
             a run sets it to 0600 (--dry-run: not changed)",
            store.path.display()
        );
    }
    let runners = assemble(inputs, plan, &Applied::default(), &HashMap::new(), true);
    let planned = output::render(&inputs.template.globals, &runners, Secrets::Mask);
    let current = store
        .text
        .as_deref()
        .map(output::mask_secrets)
        .unwrap_or_default();
    let mut diff = report::diff(&current, &planned);
    // Whether the file changes is decided on the real values: a changed
    // secret setting may look the same in short form.
    let planned_real = output::render(&inputs.template.globals, &runners, Secrets::Reveal);
    let file_changes = store.text.as_deref() != Some(planned_real.as_str());
    if file_changes && diff.is_empty() {
        diff = "(only secret values change; they are not shown)\n".to_string();
    }
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
    let mut problems: Vec<String> = plan
        .gitlabs
        .iter()
        .flat_map(|g| g.problems.iter().map(move |p| format!("{}: {p}", g.url)))
        .collect();
    // A plan made without GitLab's answers is no plan to roll out on.
    problems.extend(plan.gitlabs.iter().filter_map(|g| {
        g.listing_failed
            .as_ref()
            .map(|reason| format!("{}: listing this host's runners failed: {reason}", g.url))
    }));
    problems.extend(plan.gitlabs.iter().filter_map(|g| {
        g.offline.as_ref().map(|reason| {
            format!(
                "{}: {}: {reason}",
                g.url,
                g.offline_kind().unwrap_or("unreachable")
            )
        })
    }));
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
