//! `register-runner check` (issue 12): every input of a prefix validated
//! the way a run validates it — the template, each executor file, the tags
//! (with `--tag-schema` and `--capture-tags`, as the run is given them),
//! `.runner_system_id` and the last output — with every problem reported
//! at once rather than the first, each naming its file, line and key. No
//! network, no lock, nothing written: it is meant for a config repo's CI
//! and a pre-commit hook as much as for a host. Orchestration and printing
//! only; the rules are the loaders' own (`config::check_all`, `tags`,
//! `system_id`, `store::check`).

use std::io::Write;

use anyhow::{Context, Result};

use crate::cli::Cli;
use crate::config;
use crate::env::Env;
use crate::exit::ExitCode;
use crate::logging::sanitize;
use crate::system_id::SystemId;
use crate::tags::{self, Capture, TagContext, TagSchema};

/// What a check found.
#[derive(Debug, Default)]
pub struct Findings {
    pub problems: Vec<String>,
    pub warnings: Vec<String>,
}

/// Checks the inputs `cli` names; never sends, locks or writes anything.
pub fn findings(cli: &Cli, process_env: &Env) -> Findings {
    let mut found = Findings::default();
    let problem = |e: anyhow::Error, found: &mut Findings| found.problems.push(format!("{e:#}"));
    let hostname = crate::app::hostname(cli).unwrap_or_else(|e| {
        problem(e, &mut found);
        String::from("localhost")
    });
    if let Err(e) = tags::check_identity(&hostname, &cli.service_instance) {
        problem(e, &mut found);
    }
    let env = crate::app::load_env(cli, &hostname, process_env);
    let (inputs, problems) = config::check_all(&env, &mut found.warnings);
    found.problems.extend(problems);
    let schema = match cli.tag_schema.as_deref().map(TagSchema::load).transpose() {
        Ok(schema) => schema,
        Err(e) => {
            problem(e, &mut found);
            None
        }
    };
    if let Some(inputs) = &inputs {
        let capture = match cli
            .capture_tags
            .as_deref()
            .map(|arg| Capture::from_arg(arg, process_env.vars.get("PATH")))
            .transpose()
        {
            Ok(capture) => capture,
            Err(e) => {
                problem(e, &mut found);
                None
            }
        };
        let mut tag_context = TagContext::new(
            &hostname,
            &cli.service_instance,
            schema,
            capture,
            process_env.vars.clone(),
        );
        for executor in &inputs.executors {
            if let Err(e) = tag_context.runner_tags(executor) {
                problem(e, &mut found);
            }
        }
    }
    if let Err(e) = SystemId::load(&cli.prefix) {
        problem(e, &mut found);
    }
    let output_path = config::output_path(&cli.prefix, &cli.service_instance);
    if let Err(e) = crate::store::check(&output_path) {
        problem(e, &mut found);
    }
    found
}

/// Runs the check and prints its report on stdout: one `error:` or
/// `warning:` line each, then a count. Exit 0 without problems, 1 with.
pub fn run(cli: &Cli, process_env: &Env) -> Result<ExitCode> {
    let found = findings(cli, process_env);
    let mut out = String::new();
    for warning in &found.warnings {
        out.push_str(&format!("warning: {}\n", sanitize(warning)));
    }
    for problem in &found.problems {
        out.push_str(&format!("error: {}\n", sanitize(problem)));
    }
    out.push_str(&format!(
        "{}: {} problem(s), {} warning(s)\n",
        sanitize(&cli.prefix.display().to_string()),
        found.problems.len(),
        found.warnings.len()
    ));
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(out.as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write to stdout")?;
    Ok(if found.problems.is_empty() {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}
