//! Which runners go, once every executor has its runner: held entries no
//! executor wants, listed leftovers of this host, never a runner another
//! instance holds, never anything after a failed listing, and nothing at
//! all when the executor directory is empty (the safety cap). A delete
//! that cannot happen now carries its entry over, so no token is lost.

use std::collections::{HashMap, HashSet};

use crate::store::HeldRunner;

use super::credentials::Claimed;
use super::{Delete, DeleteHow, GitLabContext, GitLabPlan, RunnerAction, VerifyOutcome, nonzero};

/// The listing failed: nothing is deleted on this GitLab; every entry that
/// would have gone is written back.
pub(super) fn keep_all_after_failed_listing(
    reason: &str,
    unwanted: &[&HeldRunner],
    gitlab: &mut GitLabPlan,
) {
    gitlab.warnings.push(format!(
        "listing this host's runners failed, so nothing is deleted or updated: {reason}"
    ));
    gitlab.listing_failed = Some(reason.to_string());
    carry_over_deletes(gitlab);
    for h in unwanted {
        gitlab.carry_over.push((h.name.clone(), h.table.clone()));
    }
}

/// Held entries no executor wants (its file is gone, or a second entry of
/// one name): their runner is deleted, whole if the tool made it, else only
/// this host's manager. A rejected token names no runner any more (the
/// entry is dropped); one that cannot be checked is kept until next run.
pub(super) fn delete_unwanted_entries(
    cx: &GitLabContext<'_>,
    unwanted: &[&HeldRunner],
    claimed: &Claimed,
    gitlab: &mut GitLabPlan,
) {
    for h in unwanted {
        let Some(issued) = cx.seen.valid(&h.credentials.token) else {
            if let Some(VerifyOutcome::Error(e)) = cx.seen.verified.get(&h.credentials.token) {
                gitlab.warnings.push(format!(
                    "runner `{}` has no executor file but its token cannot be checked ({e}): kept until the next run",
                    h.name
                ));
                gitlab.carry_over.push((h.name.clone(), h.table.clone()));
            }
            continue;
        };
        let id = issued.id.or(nonzero(h.credentials.id));
        if id.is_some_and(|id| claimed.contains_key(&id)) {
            continue;
        }
        let token = h.credentials.token.clone();
        let (how, reason) = if cx.made_in_ui(&token, id) {
            (
                DeleteHow::Manager(token),
                "no executor file; runner made in GitLab's UI: only this host's manager",
            )
        } else if cx.wants(&h.name) {
            (
                DeleteHow::ByToken(token),
                "a second entry of this name in the config",
            )
        } else {
            (DeleteHow::ByToken(token), "no executor file")
        };
        gitlab.deletes.push(Delete {
            name: h.name.clone(),
            id,
            how,
            reason: reason.into(),
            held: Some(h.table.clone()),
            after_create: None,
        });
    }
}

/// Listed runners (this host's identifying tags) that no executor keeps:
/// duplicates of a kept runner, runners whose token was lost (replaced by a
/// new one), runners whose executor file is gone. Each only when it is this
/// host's ([`GitLabContext::owns`]); else a warning.
pub(super) fn delete_leftovers(cx: &GitLabContext<'_>, claimed: &Claimed, gitlab: &mut GitLabPlan) {
    let deleted_ids: HashSet<u64> = gitlab.deletes.iter().filter_map(|d| d.id).collect();
    let names_kept: HashMap<&str, u64> = gitlab
        .runners
        .iter()
        .filter_map(|r| match &r.action {
            RunnerAction::Keep { credentials, .. } => Some((r.name.as_str(), credentials.id)),
            _ => None,
        })
        .collect();
    let names_created: HashSet<&str> = gitlab
        .runners
        .iter()
        .filter(|r| matches!(r.action, RunnerAction::Create { .. }))
        .map(|r| r.name.as_str())
        .collect();
    let mut deletes = Vec::new();
    for runner in cx.listed() {
        if claimed.contains_key(&runner.id) || deleted_ids.contains(&runner.id) {
            continue;
        }
        // Another instance on this prefix holds it: never this one's.
        if cx.others.holder(Some(runner.id), None).is_some() {
            continue;
        }
        let name = runner.description.clone().unwrap_or_default();
        let reason = match names_kept.get(name.as_str()) {
            // Kept with an unknown id: this may be the very runner.
            Some(0) => continue,
            Some(kept) => format!("duplicate of #{kept}"),
            None if names_created.contains(name.as_str()) => {
                "token lost: replaced by a new runner".to_string()
            }
            // Its executor's token could not be checked: leave it alone.
            None if cx.wants(&name) => continue,
            None => "no executor file".to_string(),
        };
        if let Err(why) = cx.owns(runner) {
            gitlab.warnings.push(format!(
                "runner #{} `{name}` carries this host's identifying tags but {why}: not deleted",
                runner.id
            ));
            continue;
        }
        deletes.push(Delete {
            name,
            id: Some(runner.id),
            how: DeleteHow::ById(runner.id),
            reason,
            held: None,
            after_create: None,
        });
    }
    gitlab.deletes.extend(deletes);
}

/// A runner another instance on this prefix holds is never deleted from
/// here; its entry stays so that no token is lost.
pub(super) fn spare_other_instances(cx: &GitLabContext<'_>, gitlab: &mut GitLabPlan) {
    for delete in std::mem::take(&mut gitlab.deletes) {
        let token = match &delete.how {
            DeleteHow::ByToken(t) | DeleteHow::Manager(t) => Some(t),
            DeleteHow::ById(_) => None,
        };
        match cx.others.holder(delete.id, token) {
            Some(holder) => {
                gitlab.warnings.push(format!(
                    "runner `{}`{}: instance `{holder}` on this prefix holds it too, so `{}` does not delete it \
                     ({}); remove its entry from one of the two configs",
                    delete.name,
                    delete.id.map(|id| format!(" (#{id})")).unwrap_or_default(),
                    cx.others.this,
                    delete.reason
                ));
                if let Some(entry) = delete.held {
                    gitlab.carry_over.push((delete.name, entry));
                }
            }
            None => gitlab.deletes.push(delete),
        }
    }
}

/// The safety cap (issue 5): with an empty or missing executor directory
/// and no `--allow-empty`, nothing is deleted and the run fails.
pub(super) fn cap_deletes(cx: &GitLabContext<'_>, gitlab: &mut GitLabPlan) {
    if !cx.cap_deletes || gitlab.deletes.is_empty() {
        return;
    }
    gitlab.problems.push(format!(
        "the executor directory is empty or missing: refusing to delete all {} runner(s) of this host on {}; \
         add the executor files back, or pass --allow-empty if that is really meant",
        gitlab.deletes.len(),
        cx.url
    ));
    carry_over_deletes(gitlab);
}

/// Drops the planned deletes, writing back the entries they held.
fn carry_over_deletes(gitlab: &mut GitLabPlan) {
    for d in std::mem::take(&mut gitlab.deletes) {
        if let Some(entry) = d.held {
            gitlab.carry_over.push((d.name, entry));
        }
    }
}
