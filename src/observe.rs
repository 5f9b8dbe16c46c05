//! Observing GitLab (SPEC §4 step 4, the reading half): verify every held
//! token, list this host's runners, read the details the plan needs.
//!
//! It owns what it returns: an [`Observation`] per GitLab, the plan's
//! input. Before it verifies a token a patched server gave back (a verify
//! registers a manager) it asks the plan's pure ownership rule
//! (`plan::ownership`) whether the runner is this host's.
//!
//! Only reads happen here (`POST /runners/verify` is a read for our purpose:
//! it heartbeats and records this host's manager, as gitlab-runner does).
//! Requests to one GitLab run concurrently, bounded by the client's
//! in-flight limit, in one wave: verifies, listing pages and the details of
//! runners the last output holds all start together; only what the listing
//! reveals (managers and details of leftovers, tokens a patched server gave
//! back) waits for a second round. GitLabs are observed concurrently
//! ([`observe_all`]).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

use tokio::task::JoinSet;

use crate::config::{Executor, Inputs};
use crate::gitlab::{ApiError, GitLab, IssuedToken, ListedRunner, RunnerDetails, Verified};
use crate::secret::Secret;
use crate::store::{HeldRunner, Instances, TokenStore};

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
    /// Only while migrating from the original tool (the last output holds
    /// entries it wrote, with `description`, or a held runner lacks the
    /// identifying tags), with a PAT: the runners tagged `<host>,<instance>`
    /// (the original's tags; it never set `managed`), their managers in
    /// `managers`. `None`: not migrating, or no PAT.
    pub original: Option<Result<Vec<ListedRunner>, String>>,
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
            original: None,
        }
    }

    /// What GitLab issued for this token, if it accepted it.
    pub fn valid(&self, token: &Secret) -> Option<&IssuedToken> {
        match self.verified.get(token) {
            Some(VerifyOutcome::Valid(issued)) => Some(issued),
            _ => None,
        }
    }
}

/// Who is asking: this host and instance.
#[derive(Debug, Clone)]
pub struct Identity {
    pub identifying_tags: Vec<String>,
    /// This host's name: the original tool's first tag.
    pub hostname: String,
    pub system_id: String,
    /// `"<hostname> <instance> "`, how this host's default runner names start.
    pub name_prefix: String,
    /// This instance's name, and the other instances on its prefix (their
    /// names are their runners' instance tags).
    pub instance: String,
    pub other_instances: Vec<String>,
}

/// Reads what the plan needs from one GitLab. `executors` come with their
/// tags.
/// `foreign_ids`: runners on this GitLab that other instances on the
/// prefix hold; they are never this instance's, so nothing is read of them.
pub async fn observe(
    gitlab: Arc<GitLab>,
    executors: Vec<(Executor, Vec<String>)>,
    held: Vec<HeldRunner>,
    identity: Identity,
    foreign_ids: HashSet<u64>,
) -> Observation {
    let (system_id, name_prefix) = (identity.system_id.clone(), identity.name_prefix.clone());
    match observe_inner(gitlab, executors, held, identity, foreign_ids).await {
        Ok(observation) => observation,
        Err(unreachable) => {
            Observation::unreachable(unreachable.to_string(), &system_id, &name_prefix)
        }
    }
}

/// Observes every client config's GitLab concurrently; `observations[c]`
/// is what client config `c` answered (a task that failed counts as
/// unreachable). `runner_tags[i]` are the tags of `inputs.executors[i]`.
pub async fn observe_all(
    inputs: &Inputs,
    runner_tags: &[Vec<String>],
    store: &TokenStore,
    instances: &Instances,
    clients: &[Arc<GitLab>],
    identity: &Identity,
) -> Vec<Observation> {
    let mut tasks = JoinSet::new();
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
            let observation = observe(gitlab, executors, held, identity, foreign_ids).await;
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

async fn observe_inner(
    gitlab: Arc<GitLab>,
    executors: Vec<(Executor, Vec<String>)>,
    held: Vec<HeldRunner>,
    identity: Identity,
    foreign_ids: HashSet<u64>,
) -> Result<Observation, ApiError> {
    let system_id = identity.system_id.clone();
    // Phase 1, one wave: verify every held token and every executor's own
    // token, list this host's runners, and read the details of the runners
    // the last output holds for executors here (their ids are known before
    // any request), all at once. Only what the listing reveals waits for a
    // second round.
    let tokens: Vec<Secret> = dedup(
        held.iter()
            .map(|h| h.credentials.token.clone())
            .chain(executors.iter().filter_map(|(e, _)| e.token.clone())),
    );
    let listing = async {
        if !gitlab.has_pat() {
            return Ok(Listing::NoPat);
        }
        match gitlab.list_runners(&identity.identifying_tags).await {
            Ok(runners) => Ok(Listing::Listed(runners)),
            Err(e) if e.unreachable => Err(e),
            Err(e) => Ok(Listing::Failed(e.to_string())),
        }
    };
    let held_ids = held_detail_ids(gitlab.has_pat(), &executors, &held, &foreign_ids);
    let (listing, mut verified, mut details) = tokio::try_join!(
        listing,
        verify_all(&gitlab, tokens, &system_id),
        details_of(&gitlab, held_ids),
    )?;
    let listed: &[ListedRunner] = match &listing {
        Listing::Listed(runners) => runners,
        _ => &[],
    };

    // Phase 2: the managers of listed runners that no valid token accounts
    // for (candidates to delete, or to restore on a patched server), so
    // that another host's runner is never taken for this host's.
    let accounted: HashSet<u64> = verified
        .values()
        .filter_map(|v| match v {
            VerifyOutcome::Valid(issued) => issued.id,
            _ => None,
        })
        .collect();
    let candidates: Vec<&ListedRunner> = listed
        .iter()
        .filter(|r| !accounted.contains(&r.id) && !foreign_ids.contains(&r.id))
        .collect();
    let managers = managers_of(&gitlab, candidates.iter().map(|r| r.id).collect()).await?;

    // Phase 3: details — of kept runners (drift), and of candidates named
    // like an executor here that no other host uses (a patched server gives
    // a lost token back; the tags tell an unused runner's owner).
    // Read in phase 1 but not needed after all (the token was rejected):
    // left out, so that the plan sees what it always saw.
    let ids: HashSet<u64> = detail_ids(
        gitlab.has_pat(),
        &executors,
        &held,
        &verified,
        &candidates,
        &managers,
        &identity,
    )
    .into_iter()
    .collect();
    details.retain(|id, _| ids.contains(id));
    let leftovers = ids
        .iter()
        .copied()
        .filter(|id| !details.contains_key(id))
        .collect();
    details.extend(details_of(&gitlab, leftovers).await?);

    // Phase 4: verify tokens a patched server gave back, for runners that
    // are this host's by `plan::ownership` (a verify registers a manager).
    let restored = restorable_tokens(
        &executors,
        &verified,
        &candidates,
        &managers,
        &details,
        &identity,
    );
    verified.extend(verify_all(&gitlab, dedup(restored), &system_id).await?);

    // Phase 5, only while migrating from the original tool: its runners
    // (SPEC §3's one exception), and the managers of those not accounted for.
    let mut managers = managers;
    let original = if gitlab.has_pat() && migrating(&held, &details, &identity) {
        let tags = [identity.hostname.clone(), identity.instance.clone()];
        match gitlab.list_runners(&tags).await {
            Ok(runners) => {
                let ids = runners
                    .iter()
                    .filter(|r| {
                        !accounted.contains(&r.id)
                            && !foreign_ids.contains(&r.id)
                            && !managers.contains_key(&r.id)
                    })
                    .map(|r| r.id)
                    .collect();
                managers.extend(managers_of(&gitlab, ids).await?);
                Some(Ok(runners))
            }
            Err(e) if e.unreachable => return Err(e),
            Err(e) => Some(Err(e.to_string())),
        }
    } else {
        None
    };

    Ok(Observation {
        unreachable: None,
        verified,
        listing,
        details,
        managers,
        system_id,
        name_prefix: identity.name_prefix,
        original,
    })
}

/// Whether this run migrates from the original tool: the last output holds
/// an entry it wrote (`description`, not `name`), or a held runner GitLab
/// described lacks an identifying tag (the original never set `managed`).
fn migrating(held: &[HeldRunner], details: &Details, identity: &Identity) -> bool {
    held.iter().any(|h| h.table.0.contains_key("description"))
        || details.values().any(|d| {
            d.as_ref().is_ok_and(|d| {
                !identity
                    .identifying_tags
                    .iter()
                    .all(|t| d.tag_list.contains(t))
            })
        })
}

/// The runners whose details phase 1 reads: with a PAT, those the last
/// output holds for an executor here without its own token (a kept
/// runner's drift needs them), by the id the last output recorded. One
/// whose verify then fails is not needed after all; one whose verify names
/// another id is read in the second round (`detail_ids`). Nothing is read
/// of runners other instances on the prefix hold.
fn held_detail_ids(
    has_pat: bool,
    executors: &[(Executor, Vec<String>)],
    held: &[HeldRunner],
    foreign_ids: &HashSet<u64>,
) -> Vec<u64> {
    if !has_pat {
        return Vec::new();
    }
    let ids: HashSet<u64> = held
        .iter()
        .filter(|h| {
            executors
                .iter()
                .any(|(e, _)| e.token.is_none() && e.name == h.name)
        })
        .map(|h| h.credentials.id)
        .filter(|id| *id != 0 && !foreign_ids.contains(id))
        .collect();
    ids.into_iter().collect()
}

/// Which runners' details the plan needs: kept runners (drift) when a PAT
/// can read them, and listed candidates named like an executor here that no
/// other host uses (all of them when other instances share the prefix).
fn detail_ids(
    has_pat: bool,
    executors: &[(Executor, Vec<String>)],
    held: &[HeldRunner],
    verified: &HashMap<Secret, VerifyOutcome>,
    candidates: &[&ListedRunner],
    managers: &Managers,
    identity: &Identity,
) -> Vec<u64> {
    let system_id = &identity.system_id;
    let valid = |token: &Secret| matches!(verified.get(token), Some(VerifyOutcome::Valid(_)));
    let mut detail_ids: HashSet<u64> = HashSet::new();
    if has_pat {
        for (executor, _) in executors.iter().filter(|(e, _)| e.token.is_none()) {
            let Some(h) = held
                .iter()
                .find(|h| h.name == executor.name && valid(&h.credentials.token))
            else {
                continue;
            };
            if let Some(VerifyOutcome::Valid(issued)) = verified.get(&h.credentials.token) {
                let id = issued.id.unwrap_or(h.credentials.id);
                if id != 0 {
                    detail_ids.insert(id);
                }
            }
        }
    }
    let not_foreign = |id: u64| match managers.get(&id) {
        Some(Ok(ids)) => ids.iter().all(|s| s == system_id),
        _ => false,
    };
    // With other instances on the prefix, a candidate's tags tell whether
    // it may be another instance's (`plan::ownership`): read them all.
    let others_here = !identity.other_instances.is_empty();
    for runner in candidates {
        let named_here = executors
            .iter()
            .any(|(e, _)| runner.description.as_deref() == Some(e.name.as_str()));
        if others_here || (named_here && not_foreign(runner.id)) {
            detail_ids.insert(runner.id);
        }
    }
    detail_ids.into_iter().collect()
}

/// The tokens a patched server gave back for listed runners that are this
/// host's by `plan::ownership` and that were not verified yet.
fn restorable_tokens(
    executors: &[(Executor, Vec<String>)],
    verified: &HashMap<Secret, VerifyOutcome>,
    candidates: &[&ListedRunner],
    managers: &Managers,
    details: &Details,
    identity: &Identity,
) -> Vec<Secret> {
    let tags_of = |name: &str| {
        executors
            .iter()
            .find(|(e, _)| e.name == name)
            .map(|(_, tags)| tags.as_slice())
    };
    candidates
        .iter()
        .filter(|r| {
            crate::plan::ownership(
                r,
                managers.get(&r.id),
                details.get(&r.id),
                tags_of,
                &identity.system_id,
                &identity.name_prefix,
                &crate::plan::Instances {
                    this: &identity.instance,
                    others: &identity.other_instances,
                },
            )
            .is_ok()
        })
        .filter_map(|r| {
            details
                .get(&r.id)?
                .as_ref()
                .ok()?
                .token
                .as_ref()
                .map(|t| t.0.clone())
        })
        .filter(|t| !verified.contains_key(t))
        .collect()
}

async fn verify_all(
    gitlab: &Arc<GitLab>,
    tokens: Vec<Secret>,
    system_id: &str,
) -> Result<HashMap<Secret, VerifyOutcome>, ApiError> {
    let mut tasks = JoinSet::new();
    for token in tokens {
        let gitlab = gitlab.clone();
        let system_id = system_id.to_string();
        tasks.spawn(async move {
            let outcome = gitlab.verify(&token, &system_id).await;
            (token, outcome)
        });
    }
    let mut verified = HashMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (token, outcome) = joined.map_err(|e| join_error(&e))?;
        let outcome = match outcome {
            Ok(Verified::Valid(issued)) => VerifyOutcome::Valid(issued),
            Ok(Verified::Rejected(status)) => VerifyOutcome::Rejected(status),
            Err(e) if e.unreachable => return Err(e),
            Err(e) => VerifyOutcome::Error(e.to_string()),
        };
        verified.insert(token, outcome);
    }
    Ok(verified)
}

type Details = BTreeMap<u64, Result<crate::gitlab::RunnerDetails, String>>;
type Managers = BTreeMap<u64, Result<Vec<String>, String>>;

async fn details_of(gitlab: &Arc<GitLab>, ids: Vec<u64>) -> Result<Details, ApiError> {
    let mut tasks = JoinSet::new();
    for id in ids {
        let gitlab = gitlab.clone();
        tasks.spawn(async move { (id, gitlab.runner_details(id).await) });
    }
    let mut details = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, result) = joined.map_err(|e| join_error(&e))?;
        match result {
            Ok(d) => {
                details.insert(id, Ok(d));
            }
            Err(e) if e.unreachable => return Err(e),
            Err(e) => {
                details.insert(id, Err(e.to_string()));
            }
        }
    }
    Ok(details)
}

async fn managers_of(
    gitlab: &Arc<GitLab>,
    ids: Vec<u64>,
) -> Result<BTreeMap<u64, Result<Vec<String>, String>>, ApiError> {
    let mut tasks = JoinSet::new();
    for id in ids {
        let gitlab = gitlab.clone();
        tasks.spawn(async move { (id, gitlab.runner_managers(id).await) });
    }
    let mut managers = BTreeMap::new();
    while let Some(joined) = tasks.join_next().await {
        let (id, result) = joined.map_err(|e| join_error(&e))?;
        match result {
            Err(e) if e.unreachable => return Err(e),
            other => {
                managers.insert(id, other.map_err(|e| e.to_string()));
            }
        }
    }
    Ok(managers)
}

fn dedup(tokens: impl IntoIterator<Item = Secret>) -> Vec<Secret> {
    let mut seen = HashSet::new();
    tokens
        .into_iter()
        .filter(|t| seen.insert(t.clone()))
        .collect()
}

fn join_error(e: &tokio::task::JoinError) -> ApiError {
    ApiError {
        method: reqwest::Method::GET,
        url: String::new(),
        status: None,
        message: format!("internal task failed: {e}"),
        unreachable: false,
    }
}
