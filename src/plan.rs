//! The plan (SPEC §4): what to do on each GitLab, computed from what was
//! read, with no I/O.
//!
//! [`plan`] takes the validated input, each executor's tags, the token store
//! (last output) and what GitLab answered ([`Observation`]), and returns a
//! [`Plan`] value: for every executor whether its runner is kept (with the
//! credentials to write), created, or cannot be checked now; and per GitLab
//! the updates, rotations and deletions, each with its reason. Dry-run
//! prints this value; apply carries it out.

use std::collections::{BTreeMap, HashMap, HashSet};

use time::OffsetDateTime;

use crate::config::{Executor, Inputs};
use crate::gitlab::{IssuedToken, ListedRunner, RunnerAttributes, RunnerDetails};
use crate::secret::Secret;
use crate::store::{Credentials, HeldRunner, RawEntry, TokenStore, truncate_to_second};

/// What `POST /runners/verify` said of one token.
#[derive(Debug, Clone)]
pub enum VerifyOutcome {
    Valid(IssuedToken),
    /// 403 (unknown token) or 422 (orphaned).
    Rejected(u16),
    /// Any other failure; the token's fate is unknown.
    Error(String),
}

/// `GET /runners/all` (or `/runners`) for this host's identifying tags.
#[derive(Debug, Clone)]
pub enum Listing {
    /// No personal access token: nothing can be listed.
    NoPat,
    Listed(Vec<ListedRunner>),
    /// Failed or incomplete: nothing may be deleted on this GitLab.
    Failed(String),
}

/// Everything read from one GitLab.
#[derive(Debug, Clone)]
pub struct Observation {
    /// `Some(reason)`: GitLab could not be reached (after retries).
    pub unreachable: Option<String>,
    pub verified: HashMap<Secret, VerifyOutcome>,
    pub listing: Listing,
    pub details: BTreeMap<u64, Result<RunnerDetails, String>>,
    /// System ids of the managers of listed runners that may be deleted
    /// (`GET /runners/:id/managers`).
    pub managers: BTreeMap<u64, Result<Vec<String>, String>>,
    /// This host's system id, as sent with every verify.
    pub system_id: String,
}

impl Observation {
    pub fn unreachable(reason: String, system_id: &str) -> Observation {
        Observation {
            unreachable: Some(reason),
            verified: HashMap::new(),
            listing: Listing::Failed("GitLab unreachable".into()),
            details: BTreeMap::new(),
            managers: BTreeMap::new(),
            system_id: system_id.to_string(),
        }
    }

    fn valid(&self, token: &Secret) -> Option<&IssuedToken> {
        match self.verified.get(token) {
            Some(VerifyOutcome::Valid(issued)) => Some(issued),
            _ => None,
        }
    }
}

/// The whole plan: one entry per client config, in template order.
#[derive(Debug, Clone)]
pub struct Plan {
    pub gitlabs: Vec<GitLabPlan>,
    /// Entries of the last output on a url no client config names any more:
    /// (name, url, entry), carried over so that their tokens are not lost.
    pub unknown_gitlab: Vec<(String, String, RawEntry)>,
}

#[derive(Debug, Clone)]
pub struct GitLabPlan {
    pub url: String,
    /// Index into `Template::clients`.
    pub client: usize,
    /// One per executor on this GitLab, in file-name order.
    pub runners: Vec<RunnerPlan>,
    pub deletes: Vec<Delete>,
    /// Entries of the last output whose runner should go but cannot be
    /// deleted now (unreachable, failed list or verify, safety cap): written
    /// back unchanged so that their tokens are not lost.
    pub carry_over: Vec<(String, RawEntry)>,
    /// `Some(reason)`: unreachable; everything is held as it was.
    pub offline: Option<String>,
    /// Things that make the run fail (exit 1) but do not stop the others.
    pub problems: Vec<String>,
    /// Things worth a warning only.
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone)]
pub struct RunnerPlan {
    /// Index into `Inputs::executors`.
    pub executor: usize,
    pub name: String,
    pub action: RunnerAction,
    /// With a PAT: server-side settings to correct (`PUT /runners/:id`).
    pub update: Option<Update>,
    /// The token is in its last quarter of life: reset it.
    pub rotate: bool,
}

#[derive(Debug, Clone)]
pub enum RunnerAction {
    /// A verified token: write these credentials.
    Keep {
        credentials: Credentials,
        reason: String,
    },
    /// Create a runner (`POST /user/runners`, else `POST /runners`).
    Create {
        attributes: RunnerAttributes,
        reason: String,
    },
    /// The token could not be checked now (GitLab unreachable or a verify
    /// error): write the held credentials unchanged, if any.
    Hold {
        credentials: Option<Credentials>,
        reason: String,
    },
    /// Nothing usable and nothing to do about it (e.g. an executor's own
    /// token was rejected).
    Fail { reason: String },
}

impl RunnerAction {
    pub fn reason(&self) -> &str {
        match self {
            RunnerAction::Keep { reason, .. }
            | RunnerAction::Create { reason, .. }
            | RunnerAction::Hold { reason, .. }
            | RunnerAction::Fail { reason } => reason,
        }
    }
}

#[derive(Debug, Clone)]
pub struct Update {
    pub id: u64,
    pub changes: RunnerAttributes,
    /// Which settings differ, e.g. "tag_list, locked".
    pub reason: String,
}

#[derive(Debug, Clone)]
pub struct Delete {
    /// The runner's name (description), if known.
    pub name: String,
    pub id: Option<u64>,
    pub how: DeleteHow,
    pub reason: String,
    /// Its entry in the last output, carried over until the delete succeeds.
    pub held: Option<RawEntry>,
}

#[derive(Debug, Clone)]
pub enum DeleteHow {
    /// `DELETE /runners/:id` with the PAT.
    ById(u64),
    /// `DELETE /runners` with the runner's token: the whole runner.
    ByToken(Secret),
    /// `DELETE /runners/managers`: only this host's manager of a runner made
    /// in GitLab's UI; the runner stays.
    Manager(Secret),
}

impl Plan {
    /// Whether applying would call anything but reads.
    pub fn has_changes(&self) -> bool {
        self.gitlabs.iter().any(|g| {
            !g.deletes.is_empty()
                || g.runners.iter().any(|r| {
                    matches!(r.action, RunnerAction::Create { .. })
                        || r.update.is_some()
                        || r.rotate
                })
        })
    }
}

/// Computes the plan. `tags[i]` are the tags of `inputs.executors[i]`;
/// `observations[c]` is what client config `c` answered.
pub fn plan(
    inputs: &Inputs,
    tags: &[Vec<String>],
    store: &TokenStore,
    observations: &[Observation],
    now: OffsetDateTime,
    allow_empty: bool,
) -> Plan {
    let gitlabs = inputs
        .template
        .clients
        .iter()
        .enumerate()
        .map(|(c, client)| {
            let executors: Vec<(usize, &Executor)> = inputs
                .executors
                .iter()
                .enumerate()
                .filter(|(_, e)| e.url == client.url)
                .collect();
            let held: Vec<&HeldRunner> = store
                .runners
                .iter()
                .filter(|r| r.url == client.url)
                .collect();
            plan_gitlab(
                c,
                &client.url,
                &executors,
                tags,
                &held,
                &observations[c],
                now,
                inputs.executor_dir_empty && !allow_empty,
            )
        })
        .collect();
    let unknown_gitlab = store
        .runners
        .iter()
        .filter(|r| !inputs.template.clients.iter().any(|c| c.url == r.url))
        .map(|r| (r.name.clone(), r.url.clone(), r.table.clone()))
        .collect();
    Plan {
        gitlabs,
        unknown_gitlab,
    }
}

#[allow(clippy::too_many_arguments)]
fn plan_gitlab(
    client: usize,
    url: &str,
    executors: &[(usize, &Executor)],
    tags: &[Vec<String>],
    held: &[&HeldRunner],
    seen: &Observation,
    now: OffsetDateTime,
    cap_deletes: bool,
) -> GitLabPlan {
    let mut gitlab = GitLabPlan {
        url: url.to_string(),
        client,
        runners: Vec::new(),
        deletes: Vec::new(),
        carry_over: Vec::new(),
        offline: seen.unreachable.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
    };
    let wanted: HashSet<&str> = executors.iter().map(|(_, e)| e.name.as_str()).collect();
    // The entry that speaks for each name: the first one GitLab accepts,
    // else the first. Every other entry is as unwanted as one whose
    // executor file is gone (two entries of one name: one runner too many).
    let mut chosen: HashMap<&str, &HeldRunner> = HashMap::new();
    for h in held {
        let better = match chosen.get(h.name.as_str()) {
            None => true,
            Some(c) => {
                seen.valid(&c.credentials.token).is_none()
                    && seen.valid(&h.credentials.token).is_some()
            }
        };
        if better {
            chosen.insert(h.name.as_str(), h);
        }
    }
    let unwanted: Vec<&HeldRunner> = held
        .iter()
        .copied()
        .filter(|h| {
            !wanted.contains(h.name.as_str())
                || !chosen
                    .get(h.name.as_str())
                    .is_some_and(|c| std::ptr::eq(*c, *h))
        })
        .collect();

    if let Some(reason) = &seen.unreachable {
        for (i, executor) in executors {
            let credentials = chosen
                .get(executor.name.as_str())
                .map(|h| h.credentials.clone());
            gitlab.runners.push(RunnerPlan {
                executor: *i,
                name: executor.name.clone(),
                action: RunnerAction::Hold {
                    credentials,
                    reason: format!("GitLab unreachable: {reason}"),
                },
                update: None,
                rotate: false,
            });
        }
        // Entries of removed executors stay until they can be deleted.
        for h in &unwanted {
            gitlab.carry_over.push((h.name.clone(), h.table.clone()));
        }
        return gitlab;
    }

    let listed: Option<&[ListedRunner]> = match &seen.listing {
        Listing::Listed(runners) => Some(runners),
        _ => None,
    };
    let listed_ids: HashSet<u64> = listed.unwrap_or_default().iter().map(|r| r.id).collect();
    // gitlab-runner's `unregister` line: a `glrt-` runner without this
    // host's identifying tags was made in GitLab's UI. Without a PAT the
    // tool cannot make `glrt-` runners, so every `glrt-` one is the UI's.
    // After a failed listing nobody can tell: treated as ours, and nothing
    // is updated or deleted on that GitLab.
    let made_in_ui = |token: &Secret, id: Option<u64>| {
        token.is_created_runner_token()
            && match &seen.listing {
                Listing::Listed(_) => !id.is_some_and(|id| listed_ids.contains(&id)),
                Listing::NoPat => true,
                Listing::Failed(_) => false,
            }
    };
    let mut claimed: HashMap<u64, String> = HashMap::new();

    for (i, executor) in executors {
        let held_entry = chosen.get(executor.name.as_str()).copied();
        let (action, replaced) = choose_credentials(
            executor,
            held_entry,
            listed.unwrap_or_default(),
            seen,
            &claimed,
            now,
            &made_in_ui,
        );
        if let Some(replaced) = replaced {
            gitlab.deletes.push(replaced);
        }
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
        let update = match &action {
            RunnerAction::Keep { credentials, .. }
                if executor.token.is_none() && credentials.id != 0 && listed.is_some() =>
            {
                match seen.details.get(&credentials.id) {
                    Some(Ok(details)) => drift(executor, &tags[*i], details),
                    Some(Err(e)) => {
                        gitlab.warnings.push(format!(
                            "runner `{}` (#{}): cannot read its settings, not checked for drift: {e}",
                            executor.name, credentials.id
                        ));
                        None
                    }
                    None => None,
                }
            }
            _ => None,
        };
        let due = matches!(&action, RunnerAction::Keep { credentials, .. } if credentials.due_for_rotation(now));
        // A token from an executor file is usually shared by several hosts:
        // rotating it here would lock the others out.
        let rotate = due && executor.token.is_none();
        if due && !rotate {
            gitlab.warnings.push(format!(
                "runner `{}`: the `token` in `{}` is near its expiry: make a new one in GitLab's UI",
                executor.name,
                executor.file.display()
            ));
        }
        let action = match action {
            RunnerAction::Create { reason, .. } => RunnerAction::Create {
                attributes: create_attributes(executor, &tags[*i]),
                reason,
            },
            other => other,
        };
        if let RunnerAction::Fail { reason } | RunnerAction::Hold { reason, .. } = &action {
            gitlab
                .problems
                .push(format!("runner `{}`: {reason}", executor.name));
        }
        gitlab.runners.push(RunnerPlan {
            executor: *i,
            name: executor.name.clone(),
            action,
            update,
            rotate,
        });
    }

    // Deletions. Never after a failed or incomplete list.
    if let Listing::Failed(reason) = &seen.listing {
        gitlab.warnings.push(format!(
            "listing this host's runners failed, so nothing is deleted or updated: {reason}"
        ));
        gitlab.deletes.clear();
        for h in &unwanted {
            gitlab.carry_over.push((h.name.clone(), h.table.clone()));
        }
        return gitlab;
    }
    let mut deleted_ids: HashSet<u64> = HashSet::new();
    for h in &unwanted {
        let Some(issued) = seen.valid(&h.credentials.token) else {
            // Rejected: the runner is gone already; the entry is dropped.
            // A verify error: keep the entry, try again next run.
            if let Some(VerifyOutcome::Error(e)) = seen.verified.get(&h.credentials.token) {
                gitlab.warnings.push(format!(
                    "runner `{}` has no executor file but its token cannot be checked ({e}): kept until the next run",
                    h.name
                ));
                gitlab.carry_over.push((h.name.clone(), h.table.clone()));
            }
            continue;
        };
        let id = issued.id.or(nonzero(h.credentials.id));
        if let Some(id) = id
            && claimed.contains_key(&id)
        {
            continue;
        }
        let token = h.credentials.token.clone();
        let (how, reason) = if made_in_ui(&token, id) {
            (
                DeleteHow::Manager(token),
                "no executor file; runner made in GitLab's UI: only this host's manager",
            )
        } else if wanted.contains(h.name.as_str()) {
            (
                DeleteHow::ByToken(token),
                "a second entry of this name in the config",
            )
        } else {
            (DeleteHow::ByToken(token), "no executor file")
        };
        if let Some(id) = id {
            deleted_ids.insert(id);
        }
        gitlab.deletes.push(Delete {
            name: h.name.clone(),
            id,
            how,
            reason: reason.into(),
            held: Some(h.table.clone()),
        });
    }
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
    for runner in listed.unwrap_or_default() {
        if claimed.contains_key(&runner.id) || deleted_ids.contains(&runner.id) {
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
            None if wanted.contains(name.as_str()) => continue,
            None => "no executor file".to_string(),
        };
        // The identifying tags of a host are a subset of another's when one
        // host name is the other's without digits (`ci-node`, `ci-node01`):
        // a runner that another host's manager uses is not ours to delete.
        match seen.managers.get(&runner.id) {
            Some(Ok(system_ids)) => {
                if let Some(other) = system_ids.iter().find(|s| **s != seen.system_id) {
                    gitlab.warnings.push(format!(
                        "runner #{} `{name}` carries this host's identifying tags but another host (system id {other}) \
                         uses it: not deleted",
                        runner.id
                    ));
                    continue;
                }
            }
            Some(Err(e)) => {
                gitlab.warnings.push(format!(
                    "runner #{} `{name}`: cannot read its managers, not deleted: {e}",
                    runner.id
                ));
                continue;
            }
            None => continue,
        }
        gitlab.deletes.push(Delete {
            name,
            id: Some(runner.id),
            how: DeleteHow::ById(runner.id),
            reason,
            held: None,
        });
    }
    if cap_deletes && !gitlab.deletes.is_empty() {
        gitlab.problems.push(format!(
            "the executor directory is empty or missing: refusing to delete all {} runner(s) of this host on {url}; \
             add the executor files back, or pass --allow-empty if that is really meant",
            gitlab.deletes.len()
        ));
        for d in std::mem::take(&mut gitlab.deletes) {
            if let Some(table) = d.held {
                gitlab.carry_over.push((d.name, table));
            }
        }
    }
    gitlab
}

/// Picks the credentials for one executor: its own UI-made token when
/// GitLab accepts it, else its held token, else a token a patched server
/// gave back; else create. Also returns the manager delete of a runner this
/// executor stops using (a replaced UI token).
fn choose_credentials(
    executor: &Executor,
    held: Option<&HeldRunner>,
    listed: &[ListedRunner],
    seen: &Observation,
    claimed: &HashMap<u64, String>,
    now: OffsetDateTime,
    made_in_ui: &dyn Fn(&Secret, Option<u64>) -> bool,
) -> (RunnerAction, Option<Delete>) {
    let now = truncate_to_second(now);
    let usable = |issued: &IssuedToken, fallback_id: u64| {
        let id = issued.id.unwrap_or(fallback_id);
        (id == 0 || !claimed.contains_key(&id)).then_some(id)
    };
    let held_valid = held.and_then(|h| seen.valid(&h.credentials.token).map(|issued| (h, issued)));
    let release = |h: &HeldRunner, issued: &IssuedToken, reason: String| {
        Some(Delete {
            name: executor.name.clone(),
            id: issued.id.or(nonzero(h.credentials.id)),
            how: DeleteHow::Manager(h.credentials.token.clone()),
            reason,
            held: None,
        })
    };
    // An executor's own token that GitLab accepts wins over a different
    // held one: the operator put a new runner's token in the file. (After
    // gitlab-runner rotated it, the file's token is rejected and the held
    // successor below is used.)
    if let Some(own) = &executor.token
        && held.is_none_or(|h| &h.credentials.token != own)
        && let Some(issued) = seen.valid(own)
    {
        let id = issued.id.unwrap_or(0);
        let replaced = held_valid
            .filter(|(h, old)| old.id.unwrap_or(h.credentials.id) != id)
            .and_then(|(h, old)| {
                release(
                    h,
                    old,
                    format!(
                        "replaced by the `token` in `{}`: only this host's manager",
                        executor.file.display()
                    ),
                )
            });
        return (
            RunnerAction::Keep {
                credentials: Credentials {
                    id,
                    token: own.clone(),
                    obtained_at: now,
                    expires_at: issued.expires_at,
                },
                reason: "its own token verified".into(),
            },
            replaced,
        );
    }
    if let Some((h, issued)) = held_valid
        && let Some(id) = usable(issued, h.credentials.id)
    {
        // The file no longer names the UI-made runner whose token is held:
        // this executor now wants a runner of the tool's own.
        if executor.token.is_none() && made_in_ui(&h.credentials.token, nonzero(id)) {
            let replaced = release(
                h,
                issued,
                "runner made in GitLab's UI, no longer named by a `token`: only this host's manager".into(),
            );
            return (
                RunnerAction::Create {
                    attributes: RunnerAttributes::default(),
                    reason: "its held token is a runner made in GitLab's UI; the executor file names none".into(),
                },
                replaced,
            );
        }
        return (
            RunnerAction::Keep {
                credentials: Credentials {
                    id,
                    token: h.credentials.token.clone(),
                    obtained_at: h.credentials.obtained_at,
                    expires_at: issued.expires_at.or(h.credentials.expires_at),
                },
                reason: "token verified".into(),
            },
            None,
        );
    }
    if let Some(h) = held
        && let Some(VerifyOutcome::Error(e)) = seen.verified.get(&h.credentials.token)
    {
        return (
            RunnerAction::Hold {
                credentials: Some(h.credentials.clone()),
                reason: format!("cannot verify its token: {e}"),
            },
            None,
        );
    }
    if let Some(own) = &executor.token {
        let action = match seen.verified.get(own) {
            Some(VerifyOutcome::Rejected(status)) => RunnerAction::Fail {
                reason: format!(
                    "its own `token` in `{}` was rejected by GitLab (HTTP {status}): make a new runner token in GitLab's UI",
                    executor.file.display()
                ),
            },
            Some(VerifyOutcome::Error(e)) => RunnerAction::Hold {
                credentials: None,
                reason: format!("cannot verify its own token: {e}"),
            },
            _ => RunnerAction::Fail {
                reason: "its own token was not verified".into(),
            },
        };
        return (action, None);
    }
    for runner in listed
        .iter()
        .filter(|r| r.description.as_deref() == Some(executor.name.as_str()))
    {
        if let Some(Ok(details)) = seen.details.get(&runner.id)
            && let Some(token) = &details.token
            && let Some(issued) = seen.valid(&token.0)
            && let Some(id) = usable(issued, runner.id)
        {
            return (
                RunnerAction::Keep {
                    credentials: Credentials {
                        id,
                        token: token.0.clone(),
                        obtained_at: now,
                        expires_at: issued.expires_at,
                    },
                    reason: "token restored from GitLab (runner_details patch)".into(),
                },
                None,
            );
        }
    }
    let reason = match held.map(|h| seen.verified.get(&h.credentials.token)) {
        Some(Some(VerifyOutcome::Rejected(status))) => {
            format!("token rejected by GitLab (HTTP {status})")
        }
        Some(_) => "token shared with another executor".into(),
        None if listed
            .iter()
            .any(|r| r.description.as_deref() == Some(executor.name.as_str())) =>
        {
            "token lost".into()
        }
        None => "no runner yet".into(),
    };
    (
        RunnerAction::Create {
            attributes: RunnerAttributes::default(),
            reason,
        },
        None,
    )
}

/// What `POST /user/runners` / `POST /runners` get for a new runner.
fn create_attributes(executor: &Executor, tags: &[String]) -> RunnerAttributes {
    let s = &executor.server;
    RunnerAttributes {
        description: Some(executor.name.clone()),
        tag_list: Some(tags.to_vec()),
        run_untagged: Some(s.run_untagged),
        locked: Some(s.locked),
        paused: s.paused,
        access_level: s.access_level.clone(),
        maximum_timeout: s.maximum_timeout,
        maintenance_note: s.maintenance_note.clone(),
    }
}

/// The settings of a kept runner that differ from its executor file.
fn drift(executor: &Executor, tags: &[String], details: &RunnerDetails) -> Option<Update> {
    let s = &executor.server;
    let mut changes = RunnerAttributes::default();
    let mut fields = Vec::new();
    if details.description.as_deref() != Some(executor.name.as_str()) {
        changes.description = Some(executor.name.clone());
        fields.push("description");
    }
    let have: HashSet<&str> = details.tag_list.iter().map(String::as_str).collect();
    let want: HashSet<&str> = tags.iter().map(String::as_str).collect();
    if have != want {
        changes.tag_list = Some(tags.to_vec());
        fields.push("tag_list");
    }
    if details.run_untagged != s.run_untagged {
        changes.run_untagged = Some(s.run_untagged);
        fields.push("run_untagged");
    }
    if details.locked != s.locked {
        changes.locked = Some(s.locked);
        fields.push("locked");
    }
    if let Some(paused) = s.paused
        && details.paused != paused
    {
        changes.paused = Some(paused);
        fields.push("paused");
    }
    if let Some(level) = &s.access_level
        && details.access_level.as_ref() != Some(level)
    {
        changes.access_level = Some(level.clone());
        fields.push("access_level");
    }
    if let Some(timeout) = s.maximum_timeout
        && details.maximum_timeout != Some(timeout)
    {
        changes.maximum_timeout = Some(timeout);
        fields.push("maximum_timeout");
    }
    if let Some(note) = &s.maintenance_note
        && details.maintenance_note.as_ref() != Some(note)
    {
        changes.maintenance_note = Some(note.clone());
        fields.push("maintenance_note");
    }
    (!fields.is_empty()).then(|| Update {
        id: details.id,
        changes,
        reason: format!("{} differ from the executor file", fields.join(", ")),
    })
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}
