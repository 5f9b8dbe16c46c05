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
use crate::store::{
    self, Credentials, HeldRunner, OtherInstance, RawEntry, TokenStore, truncate_to_second,
};

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
    /// `"<hostname> <instance> "`: how this host's default runner names start.
    pub name_prefix: String,
}

impl Observation {
    pub fn unreachable(reason: String, system_id: &str, name_prefix: &str) -> Observation {
        Observation {
            unreachable: Some(reason),
            verified: HashMap::new(),
            listing: Listing::Failed("GitLab unreachable".into()),
            details: BTreeMap::new(),
            managers: BTreeMap::new(),
            system_id: system_id.to_string(),
            name_prefix: name_prefix.to_string(),
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
    /// `Some(reason)`: the listing failed; nothing deleted or updated.
    pub listing_failed: Option<String>,
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
    /// The last output's entry for this name, written back byte for byte
    /// whenever the run does not end with verified credentials for it (a
    /// failure, a failed create): no token is ever dropped (SPEC §5).
    pub held: Option<RawEntry>,
}

#[derive(Debug, Clone)]
pub enum RunnerAction {
    /// A verified token: write these credentials.
    Keep {
        credentials: Credentials,
        reason: String,
    },
    /// Create a runner (`POST /user/runners`, else `POST /runners`).
    /// `fallback`: the credentials to keep writing if the create fails (a
    /// UI runner this executor is moving away from).
    Create {
        attributes: RunnerAttributes,
        reason: String,
        fallback: Option<Credentials>,
    },
    /// The token could not be checked now (GitLab unreachable or a verify
    /// error): write the held entry exactly as it was, if any.
    Hold {
        credentials: Option<Credentials>,
        entry: Option<RawEntry>,
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
    /// Only once the named runner was created (its replacement).
    pub after_create: Option<String>,
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

impl GitLabPlan {
    /// How to name why this GitLab could not be used: `"rate limited"` when
    /// the deadline came while GitLab kept asking to wait, else
    /// `"unreachable"`. Both keep the last config (SPEC §5).
    pub fn offline_kind(&self) -> Option<&'static str> {
        self.offline.as_deref().map(|reason| {
            if reason.contains(crate::gitlab::RATE_LIMITED) {
                "rate limited"
            } else {
                "unreachable"
            }
        })
    }
}

impl Plan {
    /// How many warnings the plan logs (a GitLab that could not be used
    /// counts as one), for the final summary line.
    pub fn warning_count(&self) -> usize {
        self.unknown_gitlab.len()
            + self
                .gitlabs
                .iter()
                .map(|g| g.warnings.len() + usize::from(g.offline.is_some()))
                .sum::<usize>()
    }

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
    instances: &store::Instances,
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
            plan_gitlab(&GitLabContext {
                client: c,
                url: &client.url,
                executors: &executors,
                tags,
                held: &held,
                seen: &observations[c],
                now,
                cap_deletes: inputs.executor_dir_empty && !allow_empty,
                others: &Neighbours::new(&instances.others, &client.url, &instances.this),
            })
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

/// What the plan of one GitLab is computed from.
#[derive(Clone, Copy)]
struct GitLabContext<'a> {
    /// Index into `Template::clients`.
    client: usize,
    url: &'a str,
    /// This GitLab's executors, with their index into `Inputs::executors`.
    executors: &'a [(usize, &'a Executor)],
    /// The tags of every executor, by that index.
    tags: &'a [Vec<String>],
    /// The last output's entries on this GitLab.
    held: &'a [&'a HeldRunner],
    seen: &'a Observation,
    now: OffsetDateTime,
    /// The executor directory is empty and `--allow-empty` was not given.
    cap_deletes: bool,
    others: &'a Neighbours<'a>,
}

/// The other instances on this prefix, as far as one GitLab goes: which of
/// its runners they hold, and their instance tags.
pub struct Neighbours<'a> {
    url: &'a str,
    /// This instance's name.
    this: &'a str,
    instances: &'a [OtherInstance],
}

impl<'a> Neighbours<'a> {
    pub fn new(instances: &'a [OtherInstance], url: &'a str, this: &'a str) -> Neighbours<'a> {
        Neighbours {
            url,
            this,
            instances,
        }
    }

    /// The instance whose last output holds this runner (by id or token).
    pub fn holder(&self, id: Option<u64>, token: Option<&Secret>) -> Option<&'a str> {
        self.instances
            .iter()
            .find(|o| {
                o.held.iter().any(|(url, held_id, held_token)| {
                    url == self.url
                        && (id.is_some_and(|id| id != 0 && id == *held_id)
                            || token.is_some_and(|t| t == held_token))
                })
            })
            .map(|o| o.name.as_str())
    }

    /// The names of the other instances: each is the instance tag of its runners.
    pub fn names(&self) -> Vec<String> {
        self.instances.iter().map(|o| o.name.clone()).collect()
    }
}

fn plan_gitlab(cx: &GitLabContext<'_>) -> GitLabPlan {
    let GitLabContext {
        client,
        url,
        executors,
        tags,
        held,
        seen,
        now,
        cap_deletes,
        others,
    } = *cx;
    let mut gitlab = GitLabPlan {
        url: url.to_string(),
        client,
        runners: Vec::new(),
        deletes: Vec::new(),
        carry_over: Vec::new(),
        offline: seen.unreachable.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
        listing_failed: None,
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
        // Everything stays exactly as it was (SPEC §5).
        for (i, executor) in executors {
            let entry = chosen.get(executor.name.as_str());
            gitlab.runners.push(RunnerPlan {
                executor: *i,
                name: executor.name.clone(),
                action: RunnerAction::Hold {
                    credentials: entry.map(|h| h.credentials.clone()),
                    entry: entry.map(|h| h.table.clone()),
                    reason: format!(
                        "GitLab {}: {reason}",
                        gitlab.offline_kind().unwrap_or("unreachable")
                    ),
                },
                update: None,
                rotate: false,
                held: entry.map(|h| h.table.clone()),
            });
        }
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
    let provenance = Provenance {
        listing: &seen.listing,
        listed_ids: &listed_ids,
    };
    let mut claimed: HashMap<u64, String> = HashMap::new();
    let tags_of = |name: &str| {
        executors
            .iter()
            .find(|(_, e)| e.name == name)
            .map(|(i, _)| tags[*i].as_slice())
    };
    let other_names = others.names();
    let owns = |runner: &ListedRunner| {
        if let Some(holder) = others.holder(Some(runner.id), None) {
            return Err(format!("instance `{holder}` on this prefix holds it"));
        }
        ownership(
            runner,
            seen.managers.get(&runner.id),
            seen.details.get(&runner.id),
            tags_of,
            &seen.system_id,
            &seen.name_prefix,
            &Instances {
                this: others.this,
                others: &other_names,
            },
        )
    };

    for (i, executor) in executors {
        let held_entry = chosen.get(executor.name.as_str()).copied();
        let owned = |runner: &ListedRunner| owns(runner).is_ok();
        let (action, replaced) = choose_credentials(
            executor,
            held_entry,
            listed.unwrap_or_default(),
            seen,
            &claimed,
            now,
            &provenance,
            &owned,
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
        // Only a token the tool provably made is rotated: one from an
        // executor file, or any that might be a UI runner's, is usually
        // shared by several hosts, and a reset here would lock them out.
        let due = matches!(&action, RunnerAction::Keep { credentials, .. } if credentials.due_for_rotation(now));
        let rotate = due
            && executor.token.is_none()
            && matches!(&action, RunnerAction::Keep { credentials, .. }
                if provenance.surely_tool_made(&credentials.token, nonzero(credentials.id)));
        if due && !rotate {
            gitlab.warnings.push(format!(
                "runner `{}`: its token is near its expiry but may be shared by other hosts (a runner made in \
                 GitLab's UI): not rotated; make a new one in GitLab's UI",
                executor.name
            ));
        }
        // A runner another instance on this prefix holds too is not changed
        // from here: a reset would lock that instance out, and two
        // instances' settings would flip it back and forth.
        let shared_with = match &action {
            RunnerAction::Keep { credentials, .. } => {
                others.holder(nonzero(credentials.id), Some(&credentials.token))
            }
            _ => None,
        };
        let (update, rotate) = match shared_with {
            Some(holder) if update.is_some() || rotate => {
                gitlab.warnings.push(format!(
                    "runner `{}`: instance `{holder}` on this prefix holds it too, so `{}` neither updates nor \
                     rotates it; give each instance its own runner (remove the entry from one of the two configs)",
                    executor.name, others.this
                ));
                (None, false)
            }
            _ => (update, rotate),
        };
        let action = match action {
            RunnerAction::Create {
                reason, fallback, ..
            } => RunnerAction::Create {
                attributes: create_attributes(executor, &tags[*i]),
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
            executor: *i,
            name: executor.name.clone(),
            action,
            update,
            rotate,
            held: held_entry.map(|h| h.table.clone()),
        });
    }

    // Deletions. Never after a failed or incomplete list.
    if let Listing::Failed(reason) = &seen.listing {
        gitlab.warnings.push(format!(
            "listing this host's runners failed, so nothing is deleted or updated: {reason}"
        ));
        gitlab.listing_failed = Some(reason.clone());
        for d in std::mem::take(&mut gitlab.deletes) {
            if let Some(entry) = d.held {
                gitlab.carry_over.push((d.name, entry));
            }
        }
        for h in &unwanted {
            gitlab.carry_over.push((h.name.clone(), h.table.clone()));
        }
        return gitlab;
    }
    let mut deleted_ids: HashSet<u64> = gitlab.deletes.iter().filter_map(|d| d.id).collect();
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
        let (how, reason) = if provenance.made_in_ui(&token, id) {
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
            after_create: None,
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
        // Another instance on this prefix holds it: never this one's.
        if others.holder(Some(runner.id), None).is_some() {
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
        if let Err(why) = owns(runner) {
            gitlab.warnings.push(format!(
                "runner #{} `{name}` carries this host's identifying tags but {why}: not deleted",
                runner.id
            ));
            continue;
        }
        gitlab.deletes.push(Delete {
            name,
            id: Some(runner.id),
            how: DeleteHow::ById(runner.id),
            reason,
            held: None,
            after_create: None,
        });
    }
    // A runner another instance on this prefix holds is never deleted from
    // here; its entry stays so that no token is lost.
    for delete in std::mem::take(&mut gitlab.deletes) {
        let token = match &delete.how {
            DeleteHow::ByToken(t) | DeleteHow::Manager(t) => Some(t),
            DeleteHow::ById(_) => None,
        };
        match others.holder(delete.id, token) {
            Some(holder) => {
                gitlab.warnings.push(format!(
                    "runner `{}`{}: instance `{holder}` on this prefix holds it too, so `{}` does not delete it \
                     ({}); remove its entry from one of the two configs",
                    delete.name,
                    delete.id.map(|id| format!(" (#{id})")).unwrap_or_default(),
                    others.this,
                    delete.reason
                ));
                if let Some(entry) = delete.held {
                    gitlab.carry_over.push((delete.name, entry));
                }
            }
            None => gitlab.deletes.push(delete),
        }
    }
    if cap_deletes && !gitlab.deletes.is_empty() {
        gitlab.problems.push(format!(
            "the executor directory is empty or missing: refusing to delete all {} runner(s) of this host on {url}; \
             add the executor files back, or pass --allow-empty if that is really meant",
            gitlab.deletes.len()
        ));
        for d in std::mem::take(&mut gitlab.deletes) {
            if let Some(entry) = d.held {
                gitlab.carry_over.push((d.name, entry));
            }
        }
    }
    gitlab
}

/// Who made a runner, as far as this host can tell from a token and the
/// listing of runners carrying its identifying tags (gitlab-runner's
/// `unregister` line: a `glrt-` runner without them was made in GitLab's UI;
/// a registration-token runner was made by this tool or the original).
struct Provenance<'a> {
    listing: &'a Listing,
    listed_ids: &'a HashSet<u64>,
}

impl Provenance<'_> {
    /// Known to be a UI runner: a `glrt-` token not in the listing, or any
    /// `glrt-` token where there is no PAT (the tool cannot make one then).
    fn made_in_ui(&self, token: &Secret, id: Option<u64>) -> bool {
        token.is_created_runner_token()
            && match self.listing {
                Listing::Listed(_) => !id.is_some_and(|id| self.listed_ids.contains(&id)),
                Listing::NoPat => true,
                Listing::Failed(_) => false,
            }
    }

    /// Known to be this tool's: a registration-token runner, or a listed one.
    fn surely_tool_made(&self, token: &Secret, id: Option<u64>) -> bool {
        !token.is_created_runner_token()
            || (matches!(self.listing, Listing::Listed(_))
                && id.is_some_and(|id| self.listed_ids.contains(&id)))
    }
}

/// This instance and the others configured on its prefix.
#[derive(Debug, Clone, Copy)]
pub struct Instances<'a> {
    pub this: &'a str,
    pub others: &'a [String],
}

/// Whether a runner found only by the listing (its identifying tags) is
/// this host's to delete or restore. A host name without digits has tags
/// that are a subset of its siblings' (`ci-node`, `ci-node01`), and a host
/// can be named like another's tag: so its managers must all be this host's;
/// with none (never started, or gone stale after 7 days), its name must be
/// this host's default one, or an executor's here with no tag that
/// executor lacks. `tags_of(name)`: the tags of this host's executor of
/// that name.
pub fn ownership<'t>(
    runner: &ListedRunner,
    managers: Option<&Result<Vec<String>, String>>,
    details: Option<&Result<RunnerDetails, String>>,
    tags_of: impl Fn(&str) -> Option<&'t [String]>,
    system_id: &str,
    name_prefix: &str,
    instances: &Instances<'_>,
) -> Result<(), String> {
    // Instances on one host share its system id, so managers cannot tell
    // them apart: a runner carrying another instance's tag may be that
    // instance's (SPEC §3). Its token is held by no config here (those are
    // never listed candidates), so it is ambiguous and left alone.
    if !instances.others.is_empty() {
        match details {
            Some(Ok(details)) => {
                if let Some(other) = instances
                    .others
                    .iter()
                    .find(|i| details.tag_list.contains(i))
                {
                    return Err(format!(
                        "it also carries `{other}`, the instance tag of instance `{other}` on this prefix, and \
                         neither `{this}`'s config nor `{other}`'s holds its token, so it may be `{other}`'s \
                         (if it is a leftover of neither, delete it in GitLab)",
                        this = instances.this
                    ));
                }
            }
            Some(Err(e)) => {
                return Err(format!(
                    "its tags cannot be read ({e}) and other instances share this prefix"
                ));
            }
            None => {
                return Err("its tags were not read and other instances share this prefix".into());
            }
        }
    }
    match managers {
        Some(Ok(system_ids)) if !system_ids.is_empty() => {
            match system_ids.iter().find(|s| *s != system_id) {
                Some(other) => Err(format!("another host (system id {other}) uses it")),
                None => Ok(()),
            }
        }
        Some(Ok(_)) => {
            let name = runner.description.as_deref().unwrap_or_default();
            if name.starts_with(name_prefix) {
                return Ok(());
            }
            match (tags_of(name), details) {
                (Some(tags), Some(Ok(details)))
                    if details.tag_list.iter().all(|t| tags.contains(t)) =>
                {
                    Ok(())
                }
                _ => {
                    Err("no host uses it and neither its name nor its tags are this host's".into())
                }
            }
        }
        Some(Err(e)) => Err(format!("its managers cannot be read ({e})")),
        None => Err("its managers were not read".into()),
    }
}

/// Picks the credentials for one executor: its own UI-made token when
/// GitLab accepts it, else its held token, else a token a patched server
/// gave back; else create. Also returns the delete of a runner this
/// executor stops using.
#[allow(clippy::too_many_arguments)]
fn choose_credentials(
    executor: &Executor,
    held: Option<&HeldRunner>,
    listed: &[ListedRunner],
    seen: &Observation,
    claimed: &HashMap<u64, String>,
    now: OffsetDateTime,
    provenance: &Provenance<'_>,
    owned: &dyn Fn(&ListedRunner) -> bool,
) -> (RunnerAction, Option<Delete>) {
    let now = truncate_to_second(now);
    let usable = |issued: &IssuedToken, fallback_id: u64| {
        let id = issued.id.unwrap_or(fallback_id);
        (id == 0 || !claimed.contains_key(&id)).then_some(id)
    };
    let held_valid = held.and_then(|h| seen.valid(&h.credentials.token).map(|issued| (h, issued)));
    let create = |reason: String, fallback: Option<Credentials>| RunnerAction::Create {
        attributes: RunnerAttributes::default(),
        reason,
        fallback,
    };
    // An executor's own token that GitLab accepts wins over a different
    // held one: the operator put a new runner's token in the file. The
    // runner it used before goes: whole if the tool made it, else only this
    // host's manager.
    if let Some(own) = &executor.token
        && held.is_none_or(|h| &h.credentials.token != own)
        && let Some(issued) = seen.valid(own)
    {
        let id = issued.id.unwrap_or(0);
        let replaced = held_valid
            .map(|(h, old)| (h, old.id.or(nonzero(h.credentials.id))))
            .filter(|(_, old_id)| *old_id != Some(id))
            .map(|(h, old_id)| {
                let ui = provenance.made_in_ui(&h.credentials.token, old_id);
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
        let keep = RunnerAction::Keep {
            credentials: Credentials {
                id,
                token: h.credentials.token.clone(),
                obtained_at: h.credentials.obtained_at,
                expires_at: issued.expires_at.or(h.credentials.expires_at),
            },
            reason: "token verified".into(),
        };
        match &executor.token {
            // The file's token was rejected: the held one is its successor
            // only if gitlab-runner rotated a UI runner's token.
            Some(_) if provenance.surely_tool_made(&h.credentials.token, nonzero(id)) => {
                return (
                    RunnerAction::Fail {
                        reason: format!(
                            "the `token` in `{}` was rejected by GitLab: fix it, or remove it to keep runner #{id}",
                            executor.file.display()
                        ),
                    },
                    None,
                );
            }
            Some(_) => return (keep, None),
            // The file no longer names the UI-made runner whose token is
            // held: this executor now wants a runner of the tool's own. The
            // UI runner is let go (only this host's manager) once that
            // exists; until then its credentials stay.
            None if provenance.made_in_ui(&h.credentials.token, nonzero(id)) => {
                let release = Delete {
                    name: executor.name.clone(),
                    id: nonzero(id),
                    how: DeleteHow::Manager(h.credentials.token.clone()),
                    reason: "runner made in GitLab's UI, no longer named by a `token`: only this host's manager"
                        .into(),
                    held: None,
                    after_create: Some(executor.name.clone()),
                };
                let RunnerAction::Keep { credentials, .. } = keep else {
                    unreachable!("built above as Keep")
                };
                return (
                    create(
                        "its held token is a runner made in GitLab's UI; the executor file names none".into(),
                        Some(credentials),
                    ),
                    Some(release),
                );
            }
            None => return (keep, None),
        }
    }
    if let Some(h) = held
        && let Some(VerifyOutcome::Error(e)) = seen.verified.get(&h.credentials.token)
    {
        return (
            RunnerAction::Hold {
                credentials: Some(h.credentials.clone()),
                entry: Some(h.table.clone()),
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
                entry: None,
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
        .filter(|r| owned(r))
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
    (create(reason, None), None)
}

/// What `POST /user/runners` / `POST /runners` get for a new runner.
fn create_attributes(executor: &Executor, tags: &[String]) -> RunnerAttributes {
    let mut attributes = RunnerAttributes {
        description: Some(executor.name.clone()),
        tag_list: Some(tags.to_vec()),
        ..RunnerAttributes::default()
    };
    executor.server.send(&mut attributes);
    attributes
}

/// The settings of a kept runner that differ from its executor file.
fn drift(executor: &Executor, tags: &[String], details: &RunnerDetails) -> Option<Update> {
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
    fields.extend(executor.server.drift(details, &mut changes));
    (!fields.is_empty()).then(|| Update {
        id: details.id,
        changes,
        reason: format!("{} differ from the executor file", fields.join(", ")),
    })
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}
