//! The plan of one executor's runner: its credentials
//! ([`super::credentials`]), then what else happens to a kept runner: a
//! settings update (drift), a token rotation, neither when another
//! instance on this prefix holds it too.

use crate::config::Executor;
use crate::store::HeldRunner;

use super::credentials::{Claimed, choose_credentials};
use super::settings::{create_attributes, drift};
use super::{GitLabContext, GitLabPlan, RunnerAction, RunnerPlan, Update, nonzero};

/// Plans executor `i` (the entry chosen for its name, if any): its runner
/// goes into `gitlab.runners`, with what it adds to the deletes, warnings
/// and problems; the runner id it keeps is claimed.
pub(super) fn plan_runner(
    cx: &GitLabContext<'_>,
    (i, executor): (usize, &Executor),
    held: Option<&HeldRunner>,
    claimed: &mut Claimed,
    gitlab: &mut GitLabPlan,
) {
    let (action, replaced) = choose_credentials(cx, executor, held, claimed);
    gitlab.deletes.extend(replaced);
    match &action {
        RunnerAction::Keep { credentials, .. }
        | RunnerAction::Hold {
            credentials: Some(credentials),
            ..
        } if credentials.id != 0 => {
            claimed.insert(credentials.id, executor.name.clone());
        }
        _ => {}
    }
    let update = settings_update(cx, (i, executor), &action, &mut gitlab.warnings);
    let rotate = rotation(cx, executor, &action, &mut gitlab.warnings);
    let (update, rotate) =
        unless_shared(cx, executor, &action, update, rotate, &mut gitlab.warnings);
    let action = match action {
        RunnerAction::Create {
            reason, fallback, ..
        } => RunnerAction::Create {
            attributes: create_attributes(executor, &cx.tags[i]),
            reason,
            fallback,
        },
        other => other,
    };
    if let RunnerAction::Fail { reason } | RunnerAction::Hold { reason, .. } = &action {
        gitlab
            .problems
            .push(format!("runner `{}`: {reason}", executor.name));
    }
    gitlab.runners.push(RunnerPlan {
        executor: i,
        name: executor.name.clone(),
        action,
        update,
        rotate,
        held: held.map(|h| h.table.clone()),
    });
}

/// The settings of a kept runner the tool made that differ from its
/// executor file (only with a listing: a PAT reads them).
fn settings_update(
    cx: &GitLabContext<'_>,
    (i, executor): (usize, &Executor),
    action: &RunnerAction,
    warnings: &mut Vec<String>,
) -> Option<Update> {
    let RunnerAction::Keep { credentials, .. } = action else {
        return None;
    };
    if executor.token.is_some() || credentials.id == 0 || cx.listed.is_none() {
        return None;
    }
    match cx.seen.details.get(&credentials.id) {
        Some(Ok(details)) => drift(executor, &cx.tags[i], details),
        Some(Err(e)) => {
            warnings.push(format!(
                "runner `{}` (#{}): cannot read its settings, not checked for drift: {e}",
                executor.name, credentials.id
            ));
            None
        }
        None => None,
    }
}

/// Whether a kept token is reset now: in the last quarter of its life and
/// provably made by the tool. One from an executor file, or any that might
/// be a UI runner's, is usually shared by several hosts, and a reset here
/// would lock them out: a warning instead.
fn rotation(
    cx: &GitLabContext<'_>,
    executor: &Executor,
    action: &RunnerAction,
    warnings: &mut Vec<String>,
) -> bool {
    let RunnerAction::Keep { credentials, .. } = action else {
        return false;
    };
    if !credentials.due_for_rotation(cx.now) {
        return false;
    }
    let rotate = executor.token.is_none()
        && cx.surely_tool_made(&credentials.token, nonzero(credentials.id));
    if !rotate {
        warnings.push(format!(
            "runner `{}`: its token is near its expiry but may be shared by other hosts (a runner made in \
             GitLab's UI): not rotated; make a new one in GitLab's UI",
            executor.name
        ));
    }
    rotate
}

/// A runner another instance on this prefix holds too is not changed from
/// here: a reset would lock that instance out, and two instances' settings
/// would flip it back and forth.
fn unless_shared(
    cx: &GitLabContext<'_>,
    executor: &Executor,
    action: &RunnerAction,
    update: Option<Update>,
    rotate: bool,
    warnings: &mut Vec<String>,
) -> (Option<Update>, bool) {
    let shared_with = match action {
        RunnerAction::Keep { credentials, .. } => cx
            .others
            .holder(nonzero(credentials.id), Some(&credentials.token)),
        _ => None,
    };
    match shared_with {
        Some(holder) if update.is_some() || rotate => {
            warnings.push(format!(
                "runner `{}`: instance `{holder}` on this prefix holds it too, so `{}` neither updates nor \
                 rotates it; give each instance its own runner (remove the entry from one of the two configs)",
                executor.name, cx.others.this
            ));
            (None, false)
        }
        _ => (update, rotate),
    }
}
