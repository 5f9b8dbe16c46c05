//! Apply (SPEC §4 step 5): carry out a [`Plan`] against GitLab.
//!
//! Per GitLab, in this order: creates, updates, rotations, deletions.
//! Creates (each followed by the verify that registers this host's manager)
//! overlap, up to the client's in-flight bound, starting one at a time and
//! doubling with each token saved. Every new token is written (through the
//! [`Persist`] callback) before any further request starts; tokens that
//! arrive together share one atomic write. So a crash can never leave a
//! runner whose token was received but not written. A failed step is
//! recorded and the rest goes on; whatever succeeded is written.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::sync::Arc;

use anyhow::Result;
use time::OffsetDateTime;
use tokio::task::JoinSet;

use crate::config::{ClientConfig, Inputs, RunnerScope};
use crate::gitlab::{ApiError, GitLab, IssuedToken, MAX_IN_FLIGHT, RunnerAttributes, Verified};
use crate::plan::{DeleteHow, GitLabPlan, Plan, RunnerAction};
use crate::store::{Credentials, truncate_to_second};

/// What applying achieved.
#[derive(Debug, Default)]
pub struct Applied {
    /// New credentials by runner name (created or rotated).
    pub issued: HashMap<String, Credentials>,
    /// Deletions done, as (GitLab index, delete index).
    pub deleted: HashSet<(usize, usize)>,
    /// Settings updates GitLab accepted.
    pub updated: usize,
    /// One line per failed step.
    pub failures: Vec<String>,
    /// Steps that failed without keeping the runners from working
    /// (a settings update).
    pub warnings: Vec<String>,
}

impl Applied {
    /// Every failure of the run, in the order they are reported: the
    /// plan's own, the steps that failed here, the runners left without a
    /// token on a GitLab that could not be used.
    pub fn failures_of_run(&self, plan: &Plan) -> Vec<String> {
        let mut failures = plan.failures();
        failures.extend(self.failures.iter().cloned());
        failures.extend(plan.offline_failures());
        failures
    }

    /// Records new credentials and writes them out at once. On a failed
    /// write the token exists only in memory: the caller must stop.
    fn save_issued(
        &mut self,
        name: &str,
        credentials: Credentials,
        what: &'static str,
        persist: &mut dyn Persist,
    ) -> bool {
        self.save_all(vec![(name.to_string(), credentials, what)], persist)
    }

    /// Records the new credentials of several runners (name, credentials,
    /// what happened) and writes them out in one atomic write. On a failed
    /// write each names its runner; the caller must stop.
    fn save_all(
        &mut self,
        batch: Vec<(String, Credentials, &'static str)>,
        persist: &mut dyn Persist,
    ) -> bool {
        let names: Vec<(String, &str)> = batch.iter().map(|(n, _, w)| (n.clone(), *w)).collect();
        for (name, credentials, _) in batch {
            self.issued.insert(name, credentials);
        }
        match persist.persist(self) {
            Ok(()) => true,
            Err(e) => {
                for (name, what) in names {
                    self.failures.push(format!(
                        "runner `{name}`: {what}, but its token could not be saved: {e:#}"
                    ));
                }
                false
            }
        }
    }
}

/// Writes the output file with what is known so far.
pub trait Persist {
    fn persist(&mut self, applied: &Applied) -> Result<()>;
}

/// Carries out the plan, GitLab by GitLab (those that could not be used
/// are skipped). Stops at once when a new token could not be saved.
pub async fn apply(
    plan: &Plan,
    inputs: &Inputs,
    clients: &[Arc<GitLab>],
    system_id: &str,
    persist: &mut dyn Persist,
) -> Applied {
    let mut applied = Applied::default();
    for (g, gitlab_plan) in plan.gitlabs.iter().enumerate() {
        if gitlab_plan.offline.is_some() {
            continue;
        }
        let step = Step {
            plan: gitlab_plan,
            client: &inputs.template.clients[gitlab_plan.client],
            gitlab: &clients[gitlab_plan.client],
            system_id,
        };
        if step.create_runners(&mut applied, persist).await == Saved::No {
            return applied;
        }
        step.update_settings(&mut applied).await;
        if step.rotate_tokens(&mut applied, persist).await == Saved::No {
            return applied;
        }
        step.delete_runners(g, &mut applied).await;
    }
    applied
}

/// Whether every new token reached the output file.
#[derive(Debug, PartialEq, Eq)]
enum Saved {
    Yes,
    No,
}

/// Applying the plan of one GitLab.
struct Step<'a> {
    plan: &'a GitLabPlan,
    client: &'a ClientConfig,
    gitlab: &'a Arc<GitLab>,
    system_id: &'a str,
}

impl Step<'_> {
    /// The creates of this GitLab, up to [`MAX_IN_FLIGHT`] at once, each
    /// followed by the verify that registers this host's manager. Every
    /// token that arrives is written before any further request starts;
    /// tokens that arrive together share one write.
    async fn create_runners(&self, applied: &mut Applied, persist: &mut dyn Persist) -> Saved {
        let client = self.client;
        let mut queue: VecDeque<Job> = self
            .plan
            .runners
            .iter()
            .enumerate()
            .filter_map(|(i, r)| match &r.action {
                RunnerAction::Create {
                    attributes, reason, ..
                } => Some(Job::Create(i, attributes.clone(), reason.clone())),
                _ => None,
            })
            .collect();
        let mut tasks: JoinSet<Done> = JoinSet::new();
        // Reported in plan order, whatever order the answers came in.
        let mut create_failures: BTreeMap<usize, String> = BTreeMap::new();
        let mut saved = Saved::Yes;
        // Slow start: one create at first, twice as many in flight with
        // each token saved, up to the client's bound. A GitLab that hangs,
        // or a run killed early (systemd's start timeout), then leaves at
        // most one runner whose token never arrived, not eight.
        let (mut creating, mut created) = (HashSet::new(), 0u32);
        loop {
            // Nothing new starts once a token could not be saved; what is
            // in flight is still awaited, and its tokens still tried.
            while saved == Saved::Yes && tasks.len() < MAX_IN_FLIGHT {
                let window = MAX_IN_FLIGHT.min(1 << created.min(8));
                match queue.front() {
                    Some(Job::Create(..)) if creating.len() >= window => break,
                    Some(_) => {}
                    None => break,
                }
                let Some(job) = queue.pop_front() else { break };
                let is_create = matches!(job, Job::Create(..));
                let id = self.start(job, &mut tasks);
                if is_create {
                    creating.insert(id);
                }
            }
            let Some(first) = tasks.join_next_with_id().await else {
                break;
            };
            // Everything that has arrived meanwhile: one write for all.
            let mut arrived = vec![first];
            while let Some(more) = tasks.try_join_next_with_id() {
                arrived.push(more);
            }
            for done in &arrived {
                creating.remove(&done.as_ref().map_or_else(|e| e.id(), |(id, _)| *id));
            }
            let mut to_save = Vec::new();
            let mut verifies = Vec::new();
            for done in arrived {
                match done.map(|(_, done)| done) {
                    Ok(Done::Created(i, Ok(issued))) => {
                        let name = &self.plan.runners[i].name;
                        let credentials = credentials_of(issued, 0);
                        tracing::info!(gitlab = %client.url, runner = %name, id = credentials.id, "created runner");
                        to_save.push((name.clone(), credentials.clone(), "created"));
                        verifies.push(Job::Verify(i, credentials));
                    }
                    Ok(Done::Created(i, Err(e))) => {
                        let name = &self.plan.runners[i].name;
                        let why = explain_create_error(&e, client);
                        tracing::error!(gitlab = %client.url, runner = %name, "cannot create runner: {why}");
                        create_failures
                            .insert(i, format!("runner `{name}`: cannot create it: {why}"));
                    }
                    Ok(Done::Verified(i, credentials, outcome)) => {
                        let name = &self.plan.runners[i].name;
                        if let Some(credentials) = after_verify(name, credentials, outcome) {
                            to_save.push((name.clone(), credentials, "verified"));
                        }
                    }
                    Err(e) => applied
                        .failures
                        .push(format!("{}: an internal task failed: {e}", client.url)),
                }
            }
            // Saved before anything else starts: a run killed from here on
            // leaves the tokens in the config, not orphans in GitLab.
            let new_runners = verifies.len() as u32;
            if !to_save.is_empty() {
                if applied.save_all(to_save, persist) {
                    created += new_runners;
                } else {
                    saved = Saved::No;
                }
            }
            // Each new runner's manager next, before further creates.
            for job in verifies.into_iter().rev() {
                queue.push_front(job);
            }
        }
        applied.failures.extend(create_failures.into_values());
        saved
    }

    /// Starts one request of [`Self::create_runners`].
    fn start(&self, job: Job, tasks: &mut JoinSet<Done>) -> tokio::task::Id {
        let gitlab = Arc::clone(self.gitlab);
        match job {
            Job::Create(i, attributes, reason) => {
                let name = &self.plan.runners[i].name;
                tracing::info!(gitlab = %self.client.url, runner = %name, "creating runner ({reason})");
                let client = self.client.clone();
                tasks
                    .spawn(async move {
                        Done::Created(i, create(&gitlab, &client, &attributes).await)
                    })
                    .id()
            }
            Job::Verify(i, credentials) => {
                // Registers this host's manager of the new runner at once, as
                // `gitlab-runner register` does: the runner is then visibly
                // this host's.
                let system_id = self.system_id.to_string();
                tasks
                    .spawn(async move {
                        let outcome = gitlab.verify(&credentials.token, &system_id).await;
                        Done::Verified(i, credentials, outcome)
                    })
                    .id()
            }
        }
    }

    async fn update_settings(&self, applied: &mut Applied) {
        for runner in &self.plan.runners {
            let Some(update) = &runner.update else {
                continue;
            };
            tracing::info!(gitlab = %self.client.url, runner = %runner.name, id = update.id, "updating runner: {}: {}", update.reason, update.fields.join("; "));
            match self.gitlab.update_runner(update.id, &update.changes).await {
                Ok(()) => applied.updated += 1,
                Err(e) => {
                    tracing::warn!(gitlab = %self.client.url, runner = %runner.name, id = update.id, "cannot update runner settings: {e}");
                    applied.warnings.push(format!(
                        "runner `{}`: cannot update its settings: {e}",
                        runner.name
                    ));
                }
            }
        }
    }

    async fn rotate_tokens(&self, applied: &mut Applied, persist: &mut dyn Persist) -> Saved {
        for runner in &self.plan.runners {
            let RunnerAction::Keep { credentials, .. } = &runner.action else {
                continue;
            };
            if !runner.rotate {
                continue;
            }
            tracing::info!(gitlab = %self.client.url, runner = %runner.name, id = credentials.id, "rotating token in the last quarter of its life");
            match self
                .gitlab
                .reset_token(&credentials.token, self.system_id)
                .await
            {
                Ok(issued) => {
                    let rotated = credentials_of(issued, credentials.id);
                    if !applied.save_issued(&runner.name, rotated, "token rotated", persist) {
                        return Saved::No;
                    }
                }
                Err(e) => {
                    tracing::error!(gitlab = %self.client.url, runner = %runner.name, id = credentials.id, "cannot rotate the token: {e}");
                    applied.failures.push(format!(
                        "runner `{}`: cannot rotate its token: {e}",
                        runner.name
                    ));
                }
            }
        }
        Saved::Yes
    }

    /// The deletes of GitLab `g`; one waiting for its replacement is
    /// skipped when that could not be created (it stays in use).
    async fn delete_runners(&self, g: usize, applied: &mut Applied) {
        let (client, gitlab) = (self.client, self.gitlab);
        for (d, delete) in self.plan.deletes.iter().enumerate() {
            let id = delete.id.map(|id| format!(" #{id}")).unwrap_or_default();
            if let Some(replacement) = &delete.after_create
                && !applied.issued.contains_key(replacement)
            {
                tracing::warn!(
                    gitlab = %client.url,
                    runner = %delete.name,
                    id = delete.id,
                    "not deleting{id}: its replacement could not be created, so it stays in use"
                );
                continue;
            }
            tracing::info!(gitlab = %client.url, runner = %delete.name, id = delete.id, "deleting{id}: {}", delete.reason);
            let result = match &delete.how {
                DeleteHow::ById(id) => gitlab.delete_runner_by_id(*id).await,
                DeleteHow::ByToken(token) => gitlab.delete_runner_by_token(token).await,
                DeleteHow::Manager(token) => gitlab.delete_manager(token, self.system_id).await,
            };
            match result {
                Ok(()) => {
                    applied.deleted.insert((g, d));
                }
                Err(e) => {
                    tracing::error!(gitlab = %client.url, runner = %delete.name, id = delete.id, "cannot delete runner{id}: {e}");
                    applied.failures.push(format!(
                        "runner `{}`{id}: cannot delete it: {e}",
                        delete.name
                    ));
                }
            }
        }
    }
}

/// A request of the create step: create runner `i` of the plan (with its
/// attributes and the reason), or verify its new token.
enum Job {
    Create(usize, RunnerAttributes, String),
    Verify(usize, Credentials),
}

/// What a [`Job`] came back with.
enum Done {
    Created(usize, Result<IssuedToken, ApiError>),
    Verified(usize, Credentials, Result<Verified, ApiError>),
}

/// What the verify of a new token changes: the expiry it tells, when that
/// differs from what the create said (to be saved).
fn after_verify(
    name: &str,
    mut credentials: Credentials,
    outcome: Result<Verified, ApiError>,
) -> Option<Credentials> {
    match outcome {
        Ok(Verified::Valid(v)) => {
            let expires_at = v.expires_at.or(credentials.expires_at);
            if expires_at == credentials.expires_at {
                return None;
            }
            credentials.expires_at = expires_at;
            Some(credentials)
        }
        Ok(Verified::Rejected(status)) => {
            tracing::warn!(
                runner = %name,
                "a freshly created token was rejected by verify (HTTP {status})"
            );
            None
        }
        Err(e) => {
            tracing::warn!(runner = %name, "cannot verify the new token: {e}");
            None
        }
    }
}

async fn create(
    gitlab: &GitLab,
    client: &ClientConfig,
    attributes: &RunnerAttributes,
) -> Result<IssuedToken, ApiError> {
    if gitlab.has_pat() {
        gitlab.create_runner(client.scope, attributes).await
    } else if let Some(registration_token) = &client.registration_token {
        gitlab.register_runner(registration_token, attributes).await
    } else {
        Err(ApiError {
            method: reqwest::Method::POST,
            url: format!("{}/api/v4/user/runners", client.url),
            status: None,
            message: "no personal_access_token or registration_token in client_configs".into(),
            unreachable: false,
        })
    }
}

/// Turns GitLab's refusal into a message that names the cause and the fix.
fn explain_create_error(e: &ApiError, client: &ClientConfig) -> String {
    match e.status {
        Some(410) => format!(
            "{e}. Registration tokens are disabled on {} (the default since GitLab 17.0). Fix: give its client_configs entry a \
             `personal_access_token` (scopes create_runner + manage_runner + read_api, or api) so runners are created with \
             POST /user/runners, or create the runner in GitLab's UI and put its glrt- token in the executor file as `token`",
            client.url
        ),
        Some(403) if client.personal_access_token.is_some() => format!(
            "{e}. The personal access token may not create {} runners: instance runners need an administrator, group and \
             project runners an Owner",
            match client.scope {
                RunnerScope::Instance => "instance",
                RunnerScope::Group(_) => "group",
                RunnerScope::Project(_) => "project",
            }
        ),
        Some(403) => {
            format!("{e}. GitLab refused the registration token: check `registration_token`")
        }
        Some(401) => {
            format!("{e}. GitLab refused the personal access token: check `personal_access_token`")
        }
        _ => e.to_string(),
    }
}

fn credentials_of(issued: IssuedToken, fallback_id: u64) -> Credentials {
    Credentials {
        id: issued.id.unwrap_or(fallback_id),
        token: issued.token,
        obtained_at: truncate_to_second(OffsetDateTime::now_utc()),
        expires_at: issued.expires_at,
    }
}
