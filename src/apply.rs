//! Apply (SPEC §4 step 5): carry out a [`Plan`] against GitLab.
//!
//! Per GitLab, in this order: creates, updates, rotations, deletions.
//! After every create and every rotation the output file is rewritten at
//! once (through the [`Persist`] callback), so a crash can never leave a
//! runner whose token nobody holds. A failed step is recorded and the rest
//! goes on; whatever succeeded is written.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use anyhow::Result;
use time::OffsetDateTime;

use crate::config::{ClientConfig, Inputs, RunnerScope};
use crate::gitlab::{ApiError, GitLab, IssuedToken, RunnerAttributes, Verified};
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
        what: &str,
        persist: &mut dyn Persist,
    ) -> bool {
        self.issued.insert(name.to_string(), credentials);
        match persist.persist(self) {
            Ok(()) => true,
            Err(e) => {
                self.failures.push(format!(
                    "runner `{name}`: {what}, but its token could not be saved: {e:#}"
                ));
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
    gitlab: &'a GitLab,
    system_id: &'a str,
}

impl Step<'_> {
    async fn create_runners(&self, applied: &mut Applied, persist: &mut dyn Persist) -> Saved {
        let (client, gitlab) = (self.client, self.gitlab);
        for runner in &self.plan.runners {
            let RunnerAction::Create {
                attributes, reason, ..
            } = &runner.action
            else {
                continue;
            };
            tracing::info!(gitlab = %client.url, runner = %runner.name, "creating runner ({reason})");
            match create(gitlab, client, attributes).await {
                Ok(issued) => {
                    let credentials = credentials_of(issued, 0);
                    tracing::info!(gitlab = %client.url, runner = %runner.name, id = credentials.id, "created runner");
                    // Saved before anything else: a run killed from here on
                    // leaves the token in the config, not an orphan in GitLab.
                    if !applied.save_issued(&runner.name, credentials.clone(), "created", persist) {
                        return Saved::No;
                    }
                    if self
                        .register_manager(&runner.name, credentials, applied, persist)
                        .await
                        == Saved::No
                    {
                        return Saved::No;
                    }
                }
                Err(e) => {
                    let why = explain_create_error(&e, client);
                    tracing::error!(gitlab = %client.url, runner = %runner.name, "cannot create runner: {why}");
                    applied
                        .failures
                        .push(format!("runner `{}`: cannot create it: {why}", runner.name));
                }
            }
        }
        Saved::Yes
    }

    /// Registers this host's manager of a new runner at once, as
    /// `gitlab-runner register` does: the runner is then visibly this
    /// host's. An expiry the verify tells is saved too.
    async fn register_manager(
        &self,
        name: &str,
        mut credentials: Credentials,
        applied: &mut Applied,
        persist: &mut dyn Persist,
    ) -> Saved {
        match self.gitlab.verify(&credentials.token, self.system_id).await {
            Ok(Verified::Valid(v)) => {
                let expires_at = v.expires_at.or(credentials.expires_at);
                if expires_at != credentials.expires_at {
                    credentials.expires_at = expires_at;
                    if !applied.save_issued(name, credentials, "verified", persist) {
                        return Saved::No;
                    }
                }
            }
            Ok(Verified::Rejected(status)) => tracing::warn!(
                gitlab = %self.client.url,
                runner = %name,
                id = credentials.id,
                "a freshly created token was rejected by verify (HTTP {status})"
            ),
            Err(e) => {
                tracing::warn!(gitlab = %self.client.url, runner = %name, id = credentials.id, "cannot verify the new token: {e}")
            }
        }
        Saved::Yes
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
