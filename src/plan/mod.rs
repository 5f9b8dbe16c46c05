//! The plan (SPEC §4): what to do on each GitLab, computed from what was
//! read, with no I/O.
//!
//! [`plan`] takes the validated input, each executor's tags, the token store
//! (last output) and what GitLab answered ([`Observation`]), and returns a
//! [`Plan`] value: for every executor whether its runner is kept (with the
//! credentials to write), created, or cannot be checked now; and per GitLab
//! the updates, rotations and deletions, each with its reason. Dry-run
//! prints this value; apply carries it out.
//!
//! Per GitLab the plan is a sequence of small steps, each a function of a
//! `GitLabContext` (and of the plan so far): choose the held entry per
//! name; per executor its credentials (`credentials.rs`), then drift,
//! rotation and the other-instance rule (`runner.rs`); then the deletes of
//! unwanted held entries and of listed leftovers, the other instances'
//! runners spared, the safety cap (`deletes.rs`), and while migrating the
//! runners the original tool leaked (`original.rs`). Whose a runner is lives
//! in `ownership.rs`. No step does I/O or reads the clock.

mod credentials;
mod deletes;
#[cfg(test)]
mod model;
mod original;
mod ownership;
mod runner;
mod settings;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet};

use time::OffsetDateTime;

use crate::config::{Executor, Inputs};
use crate::gitlab::{ListedRunner, RunnerAttributes};
use crate::secret::Secret;
use crate::store::{self, Credentials, HeldRunner, RawEntry, TokenStore};

pub use crate::observe::{Listing, Observation, VerifyOutcome};
use credentials::Claimed;
pub use ownership::{Instances, Neighbours, ownership};

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
    /// Each change, field by field, as the dry-run and the log show it:
    /// `tags: +managed -old_tag`, `locked: true → false`.
    pub fields: Vec<String>,
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

impl Plan {
    /// The GitLabs that could not be used, as `"<url> unreachable"` or
    /// `"<url> rate limited"`: the run starts on the last config for them.
    pub fn offline(&self) -> Vec<String> {
        self.gitlabs
            .iter()
            .filter_map(|g| Some(format!("{} {}", g.url, g.offline_kind()?)))
            .collect()
    }

    /// What makes a real run fail before anything is applied: the problems
    /// of each GitLab that could be used.
    pub fn failures(&self) -> Vec<String> {
        self.gitlabs
            .iter()
            .filter(|g| g.offline.is_none())
            .flat_map(|g| g.problems.iter().map(move |p| format!("{}: {p}", g.url)))
            .collect()
    }

    /// What makes a real run fail on a GitLab that could not be used: a
    /// runner with no token to start on.
    pub fn offline_failures(&self) -> Vec<String> {
        self.gitlabs
            .iter()
            .filter(|g| g.offline.is_some())
            .flat_map(|g| {
                g.runners
                    .iter()
                    .filter(|r| {
                        matches!(
                            r.action,
                            RunnerAction::Hold {
                                credentials: None,
                                ..
                            }
                        )
                    })
                    .map(move |r| {
                        format!(
                            "{}: runner `{}` has no token in the last config and GitLab is {}",
                            g.url,
                            r.name,
                            g.offline_kind().unwrap_or("unreachable")
                        )
                    })
            })
            .collect()
    }

    /// What makes a dry-run fail: every problem, and any GitLab whose
    /// answers are missing (a plan made without them is no plan to roll
    /// out on).
    pub fn dry_run_problems(&self) -> Vec<String> {
        let mut problems: Vec<String> = self
            .gitlabs
            .iter()
            .flat_map(|g| g.problems.iter().map(move |p| format!("{}: {p}", g.url)))
            .collect();
        problems.extend(self.gitlabs.iter().filter_map(|g| {
            g.listing_failed
                .as_ref()
                .map(|reason| format!("{}: listing this host's runners failed: {reason}", g.url))
        }));
        problems.extend(self.gitlabs.iter().filter_map(|g| {
            g.offline.as_ref().map(|reason| {
                format!(
                    "{}: {}: {reason}",
                    g.url,
                    g.offline_kind().unwrap_or("unreachable")
                )
            })
        }));
        problems
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
            plan_gitlab(&GitLabContext {
                client: c,
                url: &client.url,
                executors: inputs
                    .executors
                    .iter()
                    .enumerate()
                    .filter(|(_, e)| e.url == client.url)
                    .collect(),
                tags,
                held: store
                    .runners
                    .iter()
                    .filter(|r| r.url == client.url)
                    .collect(),
                seen: &observations[c],
                now,
                cap_deletes: inputs.executor_dir_empty && !allow_empty,
                others: Neighbours::new(&instances.others, &client.url, &instances.this),
                listed: match &observations[c].listing {
                    Listing::Listed(runners) => Some(runners),
                    _ => None,
                },
                listed_ids: match &observations[c].listing {
                    Listing::Listed(runners) => runners.iter().map(|r| r.id).collect(),
                    _ => HashSet::new(),
                },
                other_names: instances.others.iter().map(|o| o.name.clone()).collect(),
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

/// What the plan of one GitLab is computed from: the input, the last
/// output and what GitLab answered, as far as this GitLab goes. Every step
/// of the plan is a function of this value and of the plan so far.
pub(crate) struct GitLabContext<'a> {
    /// Index into `Template::clients`.
    client: usize,
    url: &'a str,
    /// This GitLab's executors, with their index into `Inputs::executors`.
    executors: Vec<(usize, &'a Executor)>,
    /// The tags of every executor, by that index.
    tags: &'a [Vec<String>],
    /// The last output's entries on this GitLab.
    held: Vec<&'a HeldRunner>,
    seen: &'a Observation,
    now: OffsetDateTime,
    /// The executor directory is empty and `--allow-empty` was not given.
    cap_deletes: bool,
    others: Neighbours<'a>,
    /// The listing, when it succeeded.
    listed: Option<&'a [ListedRunner]>,
    listed_ids: HashSet<u64>,
    /// The other instances' names (their runners' instance tags).
    other_names: Vec<String>,
}

impl<'a> GitLabContext<'a> {
    fn listed(&self) -> &'a [ListedRunner] {
        self.listed.unwrap_or_default()
    }

    /// Whether an executor of this name is on this GitLab.
    fn wants(&self, name: &str) -> bool {
        self.executors.iter().any(|(_, e)| e.name == name)
    }

    /// The tags of this GitLab's executor of that name.
    fn tags_of(&self, name: &str) -> Option<&'a [String]> {
        let tags = self.tags;
        self.executors
            .iter()
            .find(|(_, e)| e.name == name)
            .map(|(i, _)| tags[*i].as_slice())
    }
}

/// The plan of one GitLab, step by step.
fn plan_gitlab(cx: &GitLabContext<'_>) -> GitLabPlan {
    let mut gitlab = GitLabPlan {
        url: cx.url.to_string(),
        client: cx.client,
        runners: Vec::new(),
        deletes: Vec::new(),
        carry_over: Vec::new(),
        offline: cx.seen.unreachable.clone(),
        problems: Vec::new(),
        warnings: Vec::new(),
        listing_failed: None,
    };
    let chosen = choose_entries(cx);
    let unwanted = unwanted_entries(cx, &chosen);
    if let Some(reason) = &cx.seen.unreachable {
        hold_everything(cx, &chosen, &unwanted, reason, &mut gitlab);
        return gitlab;
    }
    let mut claimed = Claimed::new();
    for &(i, executor) in &cx.executors {
        let held = chosen.get(executor.name.as_str()).copied();
        runner::plan_runner(cx, (i, executor), held, &mut claimed, &mut gitlab);
    }
    if let Listing::Failed(reason) = &cx.seen.listing {
        deletes::keep_all_after_failed_listing(reason, &unwanted, &mut gitlab);
        return gitlab;
    }
    deletes::delete_unwanted_entries(cx, &unwanted, &claimed, &mut gitlab);
    deletes::delete_leftovers(cx, &claimed, &mut gitlab);
    original::delete_original_leftovers(cx, &claimed, &mut gitlab);
    deletes::spare_other_instances(cx, &mut gitlab);
    deletes::cap_deletes(cx, &mut gitlab);
    gitlab
}

/// The entry that speaks for each name: the first one GitLab accepts, else
/// the first.
fn choose_entries<'a>(cx: &GitLabContext<'a>) -> HashMap<&'a str, &'a HeldRunner> {
    let mut chosen: HashMap<&str, &HeldRunner> = HashMap::new();
    for &h in &cx.held {
        let better = match chosen.get(h.name.as_str()) {
            None => true,
            Some(c) => {
                cx.seen.valid(&c.credentials.token).is_none()
                    && cx.seen.valid(&h.credentials.token).is_some()
            }
        };
        if better {
            chosen.insert(h.name.as_str(), h);
        }
    }
    chosen
}

/// Every entry not chosen for a wanted name is as unwanted as one whose
/// executor file is gone (two entries of one name: one runner too many).
fn unwanted_entries<'a>(
    cx: &GitLabContext<'a>,
    chosen: &HashMap<&str, &'a HeldRunner>,
) -> Vec<&'a HeldRunner> {
    cx.held
        .iter()
        .copied()
        .filter(|h| {
            !cx.wants(&h.name)
                || !chosen
                    .get(h.name.as_str())
                    .is_some_and(|c| std::ptr::eq(*c, *h))
        })
        .collect()
}

/// GitLab unreachable: everything stays exactly as it was (SPEC §5).
fn hold_everything(
    cx: &GitLabContext<'_>,
    chosen: &HashMap<&str, &HeldRunner>,
    unwanted: &[&HeldRunner],
    reason: &str,
    gitlab: &mut GitLabPlan,
) {
    let kind = gitlab.offline_kind().unwrap_or("unreachable");
    for &(i, executor) in &cx.executors {
        let entry = chosen.get(executor.name.as_str());
        gitlab.runners.push(RunnerPlan {
            executor: i,
            name: executor.name.clone(),
            action: RunnerAction::Hold {
                credentials: entry.map(|h| h.credentials.clone()),
                entry: entry.map(|h| h.table.clone()),
                reason: format!("GitLab {kind}: {reason}"),
            },
            update: None,
            rotate: false,
            held: entry.map(|h| h.table.clone()),
        });
    }
    for h in unwanted {
        gitlab.carry_over.push((h.name.clone(), h.table.clone()));
    }
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}
