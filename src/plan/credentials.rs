//! Which credentials an executor's runner uses this run: its own UI-made
//! token when GitLab accepts it, else its held token, else a token a
//! patched server gave back; else a runner is created. Each rule is one
//! step below, tried in this order; the first that applies decides.

use std::collections::HashMap;

use time::OffsetDateTime;

use crate::config::Executor;
use crate::gitlab::{IssuedToken, RunnerAttributes};
use crate::store::{Credentials, HeldRunner, truncate_to_second};

use super::{Delete, DeleteHow, GitLabContext, RunnerAction, VerifyOutcome, nonzero};

/// Runner ids already given to an executor of this GitLab, by name.
pub(super) type Claimed = HashMap<u64, String>;

/// What one executor gets, and the delete of a runner it stops using.
pub(super) type Choice = (RunnerAction, Option<Delete>);

/// Picks the credentials for one executor (the entry chosen for its name,
/// if any), and the delete of a runner this executor stops using.
pub(super) fn choose_credentials(
    cx: &GitLabContext<'_>,
    executor: &Executor,
    held: Option<&HeldRunner>,
    claimed: &Claimed,
) -> Choice {
    let now = truncate_to_second(cx.now);
    let held_valid = held.and_then(|h| {
        cx.seen
            .valid(&h.credentials.token)
            .map(|issued| (h, issued))
    });
    if let Some(choice) = own_token_accepted(cx, executor, held, held_valid, now) {
        return choice;
    }
    if let Some((h, issued)) = held_valid
        && let Some(id) = usable(claimed, issued, h.credentials.id)
    {
        return held_token_accepted(cx, executor, h, issued, id);
    }
    if let Some(action) = held_token_unverifiable(cx, held) {
        return (action, None);
    }
    if let Some(action) = own_token_refused(cx, executor) {
        return (action, None);
    }
    if let Some(action) = restored_from_gitlab(cx, executor, claimed, now) {
        return (action, None);
    }
    (create(create_reason(cx, executor, held), None), None)
}

/// The id a verified token stands for, unless another executor here has
/// that runner already (a token shared by two entries).
fn usable(claimed: &Claimed, issued: &IssuedToken, fallback_id: u64) -> Option<u64> {
    let id = issued.id.unwrap_or(fallback_id);
    (id == 0 || !claimed.contains_key(&id)).then_some(id)
}

fn create(reason: String, fallback: Option<Credentials>) -> RunnerAction {
    RunnerAction::Create {
        attributes: RunnerAttributes::default(),
        reason,
        fallback,
    }
}

/// An executor's own token that GitLab accepts wins over a different held
/// one: the operator put a new runner's token in the file. The runner it
/// used before goes: whole if the tool made it, else only this host's
/// manager.
fn own_token_accepted(
    cx: &GitLabContext<'_>,
    executor: &Executor,
    held: Option<&HeldRunner>,
    held_valid: Option<(&HeldRunner, &IssuedToken)>,
    now: OffsetDateTime,
) -> Option<Choice> {
    let own = executor.token.as_ref()?;
    if held.is_some_and(|h| &h.credentials.token == own) {
        return None;
    }
    let issued = cx.seen.valid(own)?;
    let id = issued.id.unwrap_or(0);
    let replaced = held_valid
        .map(|(h, old)| (h, old.id.or(nonzero(h.credentials.id))))
        .filter(|(_, old_id)| *old_id != Some(id))
        .map(|(h, old_id)| {
            let ui = cx.made_in_ui(&h.credentials.token, old_id);
            Delete {
                name: executor.name.clone(),
                id: old_id,
                how: if ui {
                    DeleteHow::Manager(h.credentials.token.clone())
                } else {
                    DeleteHow::ByToken(h.credentials.token.clone())
                },
                reason: format!(
                    "replaced by the `token` in `{}`{}",
                    executor.file.display(),
                    if ui { ": only this host's manager" } else { "" }
                ),
                held: Some(h.table.clone()),
                after_create: None,
            }
        });
    let credentials = Credentials {
        id,
        token: own.clone(),
        obtained_at: now,
        expires_at: issued.expires_at,
    };
    Some((
        RunnerAction::Keep {
            credentials,
            reason: "its own token verified".into(),
        },
        replaced,
    ))
}

/// The held token is valid and no other executor here has its runner.
fn held_token_accepted(
    cx: &GitLabContext<'_>,
    executor: &Executor,
    h: &HeldRunner,
    issued: &IssuedToken,
    id: u64,
) -> Choice {
    let credentials = Credentials {
        id,
        token: h.credentials.token.clone(),
        obtained_at: h.credentials.obtained_at,
        expires_at: issued.expires_at.or(h.credentials.expires_at),
    };
    match &executor.token {
        // The file's token was rejected: the held one is its successor
        // only if gitlab-runner rotated a UI runner's token.
        Some(_) if cx.surely_tool_made(&h.credentials.token, nonzero(id)) => (
            RunnerAction::Fail {
                reason: format!(
                    "the `token` in `{}` was rejected by GitLab: fix it, or remove it to keep runner #{id}",
                    executor.file.display()
                ),
            },
            None,
        ),
        // The file no longer names the UI-made runner whose token is held:
        // this executor now wants a runner of the tool's own. The UI runner
        // is let go (only this host's manager) once that exists; until then
        // its credentials stay.
        None if cx.made_in_ui(&h.credentials.token, nonzero(id)) => {
            let release = Delete {
                name: executor.name.clone(),
                id: nonzero(id),
                how: DeleteHow::Manager(h.credentials.token.clone()),
                reason: "runner made in GitLab's UI, no longer named by a `token`: only this host's manager"
                    .into(),
                held: None,
                after_create: Some(executor.name.clone()),
            };
            (
                create(
                    "its held token is a runner made in GitLab's UI; the executor file names none"
                        .into(),
                    Some(credentials),
                ),
                Some(release),
            )
        }
        _ => (
            RunnerAction::Keep {
                credentials,
                reason: "token verified".into(),
            },
            None,
        ),
    }
}

/// The held token could not be checked now: the entry is held as it was.
fn held_token_unverifiable(
    cx: &GitLabContext<'_>,
    held: Option<&HeldRunner>,
) -> Option<RunnerAction> {
    let h = held?;
    let Some(VerifyOutcome::Error(e)) = cx.seen.verified.get(&h.credentials.token) else {
        return None;
    };
    Some(RunnerAction::Hold {
        credentials: Some(h.credentials.clone()),
        entry: Some(h.table.clone()),
        reason: format!("cannot verify its token: {e}"),
    })
}

/// An executor whose own token GitLab did not accept (and no held token
/// stands in for it): never replaced by a runner the tool makes.
fn own_token_refused(cx: &GitLabContext<'_>, executor: &Executor) -> Option<RunnerAction> {
    let own = executor.token.as_ref()?;
    Some(match cx.seen.verified.get(own) {
        Some(VerifyOutcome::Rejected(status)) => RunnerAction::Fail {
            reason: format!(
                "its own `token` in `{}` was rejected by GitLab (HTTP {status}): make a new runner token in GitLab's UI",
                executor.file.display()
            ),
        },
        Some(VerifyOutcome::Error(e)) => RunnerAction::Hold {
            credentials: None,
            entry: None,
            reason: format!("cannot verify its own token: {e}"),
        },
        _ => RunnerAction::Fail {
            reason: "its own token was not verified".into(),
        },
    })
}

/// A listed runner of this executor's name that is this host's, whose
/// token a patched server gave back (`runner_details`) and GitLab accepts.
fn restored_from_gitlab(
    cx: &GitLabContext<'_>,
    executor: &Executor,
    claimed: &Claimed,
    now: OffsetDateTime,
) -> Option<RunnerAction> {
    cx.listed()
        .iter()
        .filter(|r| r.description.as_deref() == Some(executor.name.as_str()))
        .filter(|r| cx.owns(r).is_ok())
        .find_map(|runner| {
            let Some(Ok(details)) = cx.seen.details.get(&runner.id) else {
                return None;
            };
            let token = details.token.as_ref()?;
            let issued = cx.seen.valid(&token.0)?;
            let id = usable(claimed, issued, runner.id)?;
            Some(RunnerAction::Keep {
                credentials: Credentials {
                    id,
                    token: token.0.clone(),
                    obtained_at: now,
                    expires_at: issued.expires_at,
                },
                reason: "token restored from GitLab (runner_details patch)".into(),
            })
        })
}

/// Why a runner is created for this executor.
fn create_reason(cx: &GitLabContext<'_>, executor: &Executor, held: Option<&HeldRunner>) -> String {
    match held.map(|h| cx.seen.verified.get(&h.credentials.token)) {
        Some(Some(VerifyOutcome::Rejected(status))) => {
            format!("token rejected by GitLab (HTTP {status})")
        }
        Some(_) => "token shared with another executor".into(),
        None if cx
            .listed()
            .iter()
            .any(|r| r.description.as_deref() == Some(executor.name.as_str())) =>
        {
            "token lost".into()
        }
        None => "no runner yet".into(),
    }
}
