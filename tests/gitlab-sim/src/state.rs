//! The simulated GitLab's data: runners with their tokens, settings and
//! managers, the fixed little world of groups and projects they can belong
//! to, token generation, status computation (online / offline /
//! never_contacted / stale), and the snapshots (`RunnerState`) the tests see.

use std::collections::BTreeMap;
use std::time::Duration;

use rand::RngExt;
use time::OffsetDateTime;

use crate::clock;

/// `Ci::Runner::ONLINE_CONTACT_TIMEOUT`.
const ONLINE_CONTACT_TIMEOUT: Duration = Duration::from_secs(2 * 60 * 60);
/// `Ci::Runner::STALE_TIMEOUT` (and the manager's).
const STALE_TIMEOUT: Duration = Duration::from_secs(7 * 24 * 60 * 60);

/// `system_id` GitLab records when a runner authenticates without one.
pub(crate) const LEGACY_SYSTEM_ID: &str = "<legacy>";

/// A group of the simulated instance: `(id, name, full_path)`.
pub(crate) const GROUPS: &[(u64, &str, &str)] = &[
    (crate::OWNED_GROUP_ID, "sim-group", "sim-group"),
    (11, "other-group", "other-group"),
];

/// A project of the simulated instance: `(id, name, path_with_namespace)`.
pub(crate) const PROJECTS: &[(u64, &str, &str)] = &[
    (
        crate::OWNED_PROJECT_ID,
        "sim-project",
        "sim-group/sim-project",
    ),
    (21, "other-project", "other-group/other-project"),
];

/// Where a runner came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CreatedBy {
    /// `POST /runners` with the registration token (`glrtr-` token).
    RegistrationToken,
    /// `POST /user/runners` with a personal access token (`glrt-` token).
    Pat,
    /// `Sim::seed_runner` (as if made in GitLab's UI; `glrt-` token).
    Seed,
}

/// A snapshot of one runner manager (one host using the runner's token).
#[derive(Clone, Debug, PartialEq)]
pub struct ManagerState {
    pub id: u64,
    pub system_id: String,
    /// RFC 3339.
    pub contacted_at: String,
}

/// A snapshot of one runner, as the simulator holds it.
#[derive(Clone, Debug, PartialEq)]
pub struct RunnerState {
    pub id: u64,
    pub description: String,
    pub token: String,
    /// RFC 3339; `None` when the token never expires.
    pub token_expires_at: Option<String>,
    /// `instance_type`, `group_type` or `project_type`.
    pub runner_type: String,
    pub group_id: Option<u64>,
    pub project_id: Option<u64>,
    pub tag_list: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
    /// `not_protected` or `ref_protected`.
    pub access_level: String,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: Option<String>,
    /// Sorted by id.
    pub managers: Vec<ManagerState>,
    pub created_by: CreatedBy,
}

/// A runner to create directly with `Sim::seed_runner`.
#[derive(Clone, Debug, Default)]
pub struct SeedRunner {
    pub description: String,
    pub tag_list: Vec<String>,
    /// Default `instance_type`.
    pub runner_type: Option<String>,
    pub group_id: Option<u64>,
    pub project_id: Option<u64>,
    /// Default: a fresh `glrt-` token.
    pub token: Option<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
}

/// `Ci::Runner.runner_types`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum RunnerType {
    Instance,
    Group,
    Project,
}

impl RunnerType {
    pub(crate) const NAMES: [&'static str; 3] = ["instance_type", "group_type", "project_type"];

    pub(crate) fn parse(s: &str) -> Option<RunnerType> {
        match s {
            "instance_type" => Some(RunnerType::Instance),
            "group_type" => Some(RunnerType::Group),
            "project_type" => Some(RunnerType::Project),
            _ => None,
        }
    }

    pub(crate) fn as_str(self) -> &'static str {
        match self {
            RunnerType::Instance => "instance_type",
            RunnerType::Group => "group_type",
            RunnerType::Project => "project_type",
        }
    }
}

/// One runner manager (`Ci::RunnerManager`).
#[derive(Clone, Debug)]
pub(crate) struct Manager {
    pub id: u64,
    pub system_id: String,
    pub version: Option<String>,
    pub revision: Option<String>,
    pub platform: Option<String>,
    pub architecture: Option<String>,
    pub ip_address: Option<String>,
    pub created_at: OffsetDateTime,
    pub contacted_at: Option<OffsetDateTime>,
}

impl Manager {
    pub(crate) fn status(&self, now: OffsetDateTime) -> &'static str {
        match self.contacted_at {
            None if self.created_at <= sub(now, STALE_TIMEOUT) => "stale",
            None => "never_contacted",
            Some(c) if c <= sub(now, STALE_TIMEOUT) => "stale",
            Some(c) if c > sub(now, ONLINE_CONTACT_TIMEOUT) => "online",
            Some(_) => "offline",
        }
    }
}

/// Runner details sent by gitlab-runner in `info`.
#[derive(Clone, Debug, Default)]
pub(crate) struct RunnerInfo {
    pub version: Option<String>,
    pub revision: Option<String>,
    pub platform: Option<String>,
    pub architecture: Option<String>,
}

/// One runner (`Ci::Runner`).
#[derive(Clone, Debug)]
pub(crate) struct Runner {
    pub id: u64,
    pub description: String,
    /// `info.name` given at registration.
    pub name: Option<String>,
    pub token: String,
    pub token_expires_at: Option<OffsetDateTime>,
    pub runner_type: RunnerType,
    pub group_id: Option<u64>,
    pub project_id: Option<u64>,
    pub tag_list: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
    pub access_level: String,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: Option<String>,
    pub created_at: OffsetDateTime,
    pub contacted_at: Option<OffsetDateTime>,
    pub managers: Vec<Manager>,
    pub created_by: CreatedBy,
}

fn sub(t: OffsetDateTime, d: Duration) -> OffsetDateTime {
    let d = time::Duration::try_from(d).unwrap_or(time::Duration::MAX);
    t.checked_sub(d).unwrap_or(t)
}

impl Runner {
    pub(crate) fn online(&self, now: OffsetDateTime) -> bool {
        self.contacted_at
            .is_some_and(|c| c > sub(now, ONLINE_CONTACT_TIMEOUT))
    }

    pub(crate) fn stale(&self, now: OffsetDateTime) -> bool {
        let deadline = sub(now, STALE_TIMEOUT);
        self.created_at <= deadline && self.contacted_at.is_none_or(|c| c <= deadline)
    }

    /// `deprecated_rest_status`: the `status` field of the REST entities.
    pub(crate) fn rest_status(&self, now: OffsetDateTime) -> &'static str {
        if self.stale(now) {
            "stale"
        } else if self.contacted_at.is_none() {
            "never_contacted"
        } else if self.paused {
            "paused"
        } else if self.online(now) {
            "online"
        } else {
            "offline"
        }
    }

    /// Whether the runner is in the scope named by a `status`/`scope` filter.
    pub(crate) fn in_status(&self, status: &str, now: OffsetDateTime) -> bool {
        match status {
            "online" => self.online(now),
            "offline" => self
                .contacted_at
                .is_some_and(|c| c <= sub(now, ONLINE_CONTACT_TIMEOUT)),
            "never_contacted" => self.contacted_at.is_none(),
            "stale" => self.stale(now),
            "active" => !self.paused,
            "paused" => self.paused,
            "instance_type" | "shared" => self.runner_type == RunnerType::Instance,
            "group_type" => self.runner_type == RunnerType::Group,
            "project_type" => self.runner_type == RunnerType::Project,
            "specific" => self.runner_type != RunnerType::Instance,
            _ => false,
        }
    }

    /// Whether the runner carries every tag in `tags` (`tagged_with`).
    pub(crate) fn has_all_tags(&self, tags: &[String]) -> bool {
        tags.iter()
            .all(|t| self.tag_list.iter().any(|own| own == t))
    }

    /// The most recently contacted manager (source of version, platform, …).
    pub(crate) fn latest_manager(&self) -> Option<&Manager> {
        self.managers
            .iter()
            .filter(|m| m.contacted_at.is_some())
            .max_by_key(|m| (m.contacted_at, m.id))
    }

    pub(crate) fn token_valid(&self, now: OffsetDateTime) -> bool {
        self.token_expires_at.is_none_or(|e| e > now)
    }

    pub(crate) fn snapshot(&self) -> RunnerState {
        let mut managers: Vec<ManagerState> = self
            .managers
            .iter()
            .map(|m| ManagerState {
                id: m.id,
                system_id: m.system_id.clone(),
                contacted_at: m.contacted_at.map(clock::rfc3339).unwrap_or_default(),
            })
            .collect();
        managers.sort_by_key(|m| m.id);
        RunnerState {
            id: self.id,
            description: self.description.clone(),
            token: self.token.clone(),
            token_expires_at: self.token_expires_at.map(clock::rfc3339),
            runner_type: self.runner_type.as_str().to_string(),
            group_id: self.group_id,
            project_id: self.project_id,
            tag_list: self.tag_list.clone(),
            run_untagged: self.run_untagged,
            locked: self.locked,
            paused: self.paused,
            access_level: self.access_level.clone(),
            maximum_timeout: self.maximum_timeout,
            maintenance_note: self.maintenance_note.clone(),
            managers,
            created_by: self.created_by,
        }
    }
}

/// Everything GitLab stores about runners.
#[derive(Debug)]
pub(crate) struct World {
    runners: BTreeMap<u64, Runner>,
    next_runner_id: u64,
    next_manager_id: u64,
    /// How far GitLab's clock is behind the real one (a test knob).
    clock_lag: Duration,
}

impl Default for World {
    fn default() -> Self {
        World {
            runners: BTreeMap::new(),
            next_runner_id: 1,
            next_manager_id: 1,
            clock_lag: Duration::ZERO,
        }
    }
}

/// Settings of a runner about to be created.
#[derive(Clone, Debug)]
pub(crate) struct NewRunner {
    pub description: String,
    pub name: Option<String>,
    pub runner_type: RunnerType,
    pub group_id: Option<u64>,
    pub project_id: Option<u64>,
    pub tag_list: Vec<String>,
    pub run_untagged: bool,
    pub locked: bool,
    pub paused: bool,
    pub access_level: String,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: Option<String>,
    pub token: Option<String>,
    pub created_by: CreatedBy,
}

impl World {
    /// A token that no runner holds: `prefix` + 20 random alphanumerics.
    pub(crate) fn fresh_token(&self, prefix: &str) -> String {
        loop {
            let suffix: String = rand::rng()
                .sample_iter(rand::distr::Alphanumeric)
                .take(20)
                .map(char::from)
                .collect();
            let token = format!("{prefix}{suffix}");
            if !self.runners.values().any(|r| r.token == token) {
                return token;
            }
        }
    }

    /// GitLab's "now": the real time minus the clock lag.
    pub(crate) fn now(&self) -> OffsetDateTime {
        clock::sub(clock::now(), self.clock_lag)
    }

    /// Sets how far GitLab's clock is behind the real one.
    pub(crate) fn set_clock_lag(&mut self, lag: Duration) {
        self.clock_lag = lag;
    }

    /// Creates a runner; its token expires `lifetime` from now, if given.
    pub(crate) fn create(&mut self, new: NewRunner, lifetime: Option<Duration>) -> &Runner {
        let now = self.now();
        let prefix = match new.created_by {
            CreatedBy::RegistrationToken => "glrtr-",
            CreatedBy::Pat | CreatedBy::Seed => "glrt-",
        };
        let token = new.token.unwrap_or_else(|| self.fresh_token(prefix));
        let id = self.next_runner_id;
        self.next_runner_id += 1;
        let runner = Runner {
            id,
            description: new.description,
            name: new.name,
            token,
            token_expires_at: lifetime.map(|d| clock::add(now, d)),
            runner_type: new.runner_type,
            group_id: new.group_id,
            project_id: new.project_id,
            tag_list: new.tag_list,
            run_untagged: new.run_untagged,
            locked: new.locked,
            paused: new.paused,
            access_level: new.access_level,
            maximum_timeout: new.maximum_timeout,
            maintenance_note: new.maintenance_note,
            created_at: now,
            contacted_at: None,
            managers: Vec::new(),
            created_by: new.created_by,
        };
        self.runners.entry(id).or_insert(runner)
    }

    pub(crate) fn get(&self, id: u64) -> Option<&Runner> {
        self.runners.get(&id)
    }

    pub(crate) fn get_mut(&mut self, id: u64) -> Option<&mut Runner> {
        self.runners.get_mut(&id)
    }

    pub(crate) fn remove(&mut self, id: u64) -> Option<Runner> {
        self.runners.remove(&id)
    }

    /// All runners, ordered by id.
    pub(crate) fn all(&self) -> impl Iterator<Item = &Runner> {
        self.runners.values()
    }

    /// The runner whose current, unexpired token is `token`.
    pub(crate) fn by_token(&self, token: &str, now: OffsetDateTime) -> Option<u64> {
        self.runners
            .values()
            .find(|r| r.token == token && r.token_valid(now))
            .map(|r| r.id)
    }

    /// Records contact from a runner: heartbeat the runner and ensure (and
    /// heartbeat) its manager for `system_id` (`<legacy>` when absent).
    pub(crate) fn heartbeat(
        &mut self,
        id: u64,
        system_id: Option<&str>,
        info: &RunnerInfo,
        ip: Option<&str>,
    ) {
        let now = self.now();
        let manager_id = self.next_manager_id;
        let Some(runner) = self.runners.get_mut(&id) else {
            return;
        };
        runner.contacted_at = Some(now);
        let system_id = system_id.unwrap_or(LEGACY_SYSTEM_ID);
        let manager = match runner
            .managers
            .iter()
            .position(|m| m.system_id == system_id)
        {
            Some(i) => &mut runner.managers[i],
            None => {
                self.next_manager_id += 1;
                runner.managers.push(Manager {
                    id: manager_id,
                    system_id: system_id.to_string(),
                    version: None,
                    revision: None,
                    platform: None,
                    architecture: None,
                    ip_address: None,
                    created_at: now,
                    contacted_at: None,
                });
                let last = runner.managers.len() - 1;
                &mut runner.managers[last]
            }
        };
        manager.contacted_at = Some(now);
        if let Some(ip) = ip {
            manager.ip_address = Some(ip.to_string());
        }
        let set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() {
                slot.clone_from(v);
            }
        };
        set(&mut manager.version, &info.version);
        set(&mut manager.revision, &info.revision);
        set(&mut manager.platform, &info.platform);
        set(&mut manager.architecture, &info.architecture);
    }

    /// Removes the manager for `system_id` from runner `id`, as GitLab's
    /// clean-up of managers not seen for 7 days does; `false` if none.
    pub(crate) fn expire_manager(&mut self, id: u64, system_id: &str) -> bool {
        let Some(runner) = self.runners.get_mut(&id) else {
            return false;
        };
        let before = runner.managers.len();
        runner.managers.retain(|m| m.system_id != system_id);
        runner.managers.len() != before
    }

    /// Replaces the runner's token (the old one stops working at once).
    pub(crate) fn reset_token(&mut self, id: u64, lifetime: Option<Duration>) -> Option<&Runner> {
        let token = self.fresh_token(match self.runners.get(&id)?.created_by {
            CreatedBy::RegistrationToken => "glrtr-",
            CreatedBy::Pat | CreatedBy::Seed => "glrt-",
        });
        let now = self.now();
        let runner = self.runners.get_mut(&id)?;
        runner.token = token;
        runner.token_expires_at = lifetime.map(|d| clock::add(now, d));
        Some(runner)
    }
}

/// The group with this id, if it exists: `(id, name, full_path)`.
pub(crate) fn group(id: u64) -> Option<(u64, &'static str, &'static str)> {
    GROUPS.iter().copied().find(|g| g.0 == id)
}

/// The project with this id, if it exists: `(id, name, path_with_namespace)`.
pub(crate) fn project(id: u64) -> Option<(u64, &'static str, &'static str)> {
    PROJECTS.iter().copied().find(|p| p.0 == id)
}

/// Model validations of `Ci::Runner` that the API can trip, as
/// `(attribute, message)` pairs.
pub(crate) fn validate(
    description: &str,
    maintenance_note: Option<&str>,
    maximum_timeout: Option<i64>,
    run_untagged: bool,
    tags: &[String],
) -> Vec<(&'static str, String)> {
    let mut errors = Vec::new();
    if description.chars().count() > 1024 {
        errors.push((
            "description",
            "is too long (maximum is 1024 characters)".to_string(),
        ));
    }
    if maintenance_note.is_some_and(|n| n.chars().count() > 1024) {
        errors.push((
            "maintenance_note",
            "is too long (maximum is 1024 characters)".to_string(),
        ));
    }
    if maximum_timeout.is_some_and(|t| t < 600) {
        errors.push((
            "maximum_timeout",
            "needs to be at least 10 minutes".to_string(),
        ));
    }
    if !run_untagged && tags.is_empty() {
        errors.push((
            "tags_list",
            "can not be empty when runner is not allowed to pick untagged jobs".to_string(),
        ));
    }
    errors
}

/// Rails' `full_messages` for validation errors: `Maximum timeout needs …`.
pub(crate) fn full_messages(errors: &[(&'static str, String)]) -> Vec<String> {
    errors
        .iter()
        .map(|(field, msg)| {
            let human = field.replace('_', " ");
            let mut chars = human.chars();
            let cap = match chars.next() {
                Some(c) => c.to_uppercase().collect::<String>() + chars.as_str(),
                None => String::new(),
            };
            format!("{cap} {msg}")
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_runner() -> NewRunner {
        NewRunner {
            description: "d".into(),
            name: None,
            runner_type: RunnerType::Instance,
            group_id: None,
            project_id: None,
            tag_list: vec!["a".into()],
            run_untagged: true,
            locked: false,
            paused: false,
            access_level: "not_protected".into(),
            maximum_timeout: None,
            maintenance_note: None,
            token: None,
            created_by: CreatedBy::Pat,
        }
    }

    #[test]
    fn ids_and_tokens() {
        let mut w = World::default();
        let a = w.create(new_runner(), None).id;
        let mut reg = new_runner();
        reg.created_by = CreatedBy::RegistrationToken;
        let b = w.create(reg, None).id;
        assert_eq!((a, b), (1, 2));
        let ta = &w.get(1).unwrap().token;
        assert!(ta.starts_with("glrt-") && ta.len() == 25);
        assert!(w.get(2).unwrap().token.starts_with("glrtr-"));
        assert_eq!(w.by_token(&ta.clone(), clock::now()), Some(1));
    }

    #[test]
    fn heartbeat_makes_managers() {
        let mut w = World::default();
        let id = w.create(new_runner(), None).id;
        assert_eq!(
            w.get(id).unwrap().rest_status(clock::now()),
            "never_contacted"
        );
        w.heartbeat(id, None, &RunnerInfo::default(), None);
        w.heartbeat(id, Some("s_abc"), &RunnerInfo::default(), Some("127.0.0.1"));
        w.heartbeat(id, Some("s_abc"), &RunnerInfo::default(), None);
        let r = w.get(id).unwrap();
        assert_eq!(r.managers.len(), 2);
        assert_eq!(r.managers[0].system_id, LEGACY_SYSTEM_ID);
        assert_eq!(r.rest_status(clock::now()), "online");
    }

    #[test]
    fn validations() {
        let errs = validate("d", None, Some(599), false, &[]);
        assert_eq!(errs.len(), 2);
        assert_eq!(
            full_messages(&errs)[0],
            "Maximum timeout needs to be at least 10 minutes"
        );
    }
}
