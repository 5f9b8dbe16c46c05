//! The one written exception to SPEC §3's identifying tags: the runners the
//! original Python tool leaked for this host and instance. It listed its
//! runners by a `managed` tag it never set, so every restart registered one
//! more, tagged `<host>`, `<executor>`, `<instance>` and named
//! `"<host> <instance> <executor> Runner"`. While migrating, observe lists
//! `tag_list=<host>,<instance>` once more; here each runner of exactly that
//! name, for an executor type on this GitLab, is deleted unless this run
//! keeps it (the config holds its token) or another host uses it (a runner
//! manager that is not this host's). Never a runner of another host, never
//! one another instance on this prefix holds, never one whose managers
//! could not be read.

use std::collections::HashSet;

use super::credentials::Claimed;
use super::{Delete, DeleteHow, GitLabContext, GitLabPlan, RunnerAction};

/// The reason a dry-run shows for these deletes.
pub(crate) const LEFT_BY_THE_ORIGINAL: &str = "left by the original tool";

pub(super) fn delete_original_leftovers(
    cx: &GitLabContext<'_>,
    claimed: &Claimed,
    gitlab: &mut GitLabPlan,
) {
    let Some(original) = &cx.seen.original else {
        return;
    };
    let runners = match original {
        Ok(runners) => runners,
        Err(e) => {
            gitlab.warnings.push(format!(
                "listing the original tool's runners of this host failed, so none of them is deleted: {e}"
            ));
            return;
        }
    };
    // The names of the original's runners that this run settles: an
    // executor whose runner is kept or created. One that is held (its
    // token could not be checked) may be any of them: none is touched.
    let settled: HashSet<String> = gitlab
        .runners
        .iter()
        .filter(|r| {
            matches!(
                r.action,
                RunnerAction::Keep { .. } | RunnerAction::Create { .. }
            )
        })
        .filter_map(|r| {
            let (_, executor) = cx.executors.iter().find(|(i, _)| *i == r.executor)?;
            let name = format!("{}{} Runner", cx.seen.name_prefix, executor.executor);
            (r.name == name).then_some(name)
        })
        .collect();
    let planned: HashSet<u64> = gitlab.deletes.iter().filter_map(|d| d.id).collect();
    for runner in runners {
        let name = runner.description.as_deref().unwrap_or_default();
        if !settled.contains(name)
            || claimed.contains_key(&runner.id)
            || planned.contains(&runner.id)
            // Carries the identifying tags: the main listing's to judge.
            || cx.listed_ids.contains(&runner.id)
            || cx.others.holder(Some(runner.id), None).is_some()
        {
            continue;
        }
        match cx.seen.managers.get(&runner.id) {
            Some(Ok(system_ids)) if system_ids.iter().all(|s| *s == cx.seen.system_id) => {}
            Some(Ok(system_ids)) => {
                let other = system_ids
                    .iter()
                    .find(|s| **s != cx.seen.system_id)
                    .map(String::as_str)
                    .unwrap_or_default();
                gitlab.warnings.push(format!(
                    "runner #{} `{name}` looks left by the original tool, but another host (system id {other}) uses it: not deleted",
                    runner.id
                ));
                continue;
            }
            Some(Err(e)) => {
                gitlab.warnings.push(format!(
                    "runner #{} `{name}` looks left by the original tool, but its managers cannot be read ({e}): not deleted",
                    runner.id
                ));
                continue;
            }
            None => continue,
        }
        gitlab.deletes.push(Delete {
            name: name.to_string(),
            id: Some(runner.id),
            how: DeleteHow::ById(runner.id),
            reason: LEFT_BY_THE_ORIGINAL.into(),
            held: None,
            after_create: None,
        });
    }
}
