//! The ownership and token rules of the README ("Which runners are this
//! host's", "Ownership and tokens", the decisions), one test each, named
//! after its rule, on the pure plan: a [`Host`] fixture says what the last
//! output holds and what GitLab answered, [`Host::plan`] plans it.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use time::OffsetDateTime;
use time::macros::datetime;

use super::*;
use crate::config::ServerSettings;
use crate::gitlab::{IssuedToken, RunnerDetails, SecretField};
use crate::store::{Instances as StoreInstances, OtherInstance};

pub(super) const URL: &str = "https://gitlab.example.com";
pub(super) const THIS_HOST: &str = "s_thishost0001";
const OTHER_HOST: &str = "s_otherhost002";
const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);

/// What one run of `node01`, instance `main`, starts from: executor files,
/// the last output, the other instances' outputs, and GitLab's answers.
pub(super) struct Host {
    executors: Vec<Executor>,
    last_output: String,
    pat: bool,
    verified: HashMap<Secret, VerifyOutcome>,
    listing: Option<Result<Vec<ListedRunner>, String>>,
    details: BTreeMap<u64, Result<RunnerDetails, String>>,
    managers: BTreeMap<u64, Result<Vec<String>, String>>,
    unreachable: Option<String>,
    others: Vec<OtherInstance>,
    executor_dir_empty: bool,
    allow_empty: bool,
    /// The extra listing of the original tool's runners (migration only).
    original: Option<Result<Vec<ListedRunner>, String>>,
}

impl Host {
    /// A host with a PAT (GitLab lists its runners: none yet).
    pub(super) fn new() -> Host {
        Host {
            executors: Vec::new(),
            last_output: String::new(),
            pat: true,
            verified: HashMap::new(),
            listing: Some(Ok(Vec::new())),
            details: BTreeMap::new(),
            managers: BTreeMap::new(),
            unreachable: None,
            others: Vec::new(),
            executor_dir_empty: false,
            allow_empty: false,
            original: None,
        }
    }

    /// An executor file `<name>.toml` with the tool's default settings.
    pub(super) fn executor(mut self, name: &str) -> Host {
        self.executors.push(Executor {
            file: PathBuf::from(format!("/etc/gitlab-runner/main/{name}.toml")),
            url: URL.into(),
            executor: "shell".into(),
            name: name.into(),
            token: None,
            env_tags: vec![],
            tags: vec![],
            server: ServerSettings::default(),
            settings: toml_edit::Table::new(),
        });
        self
    }

    /// An executor file naming a runner made in GitLab's UI by its token.
    pub(super) fn executor_with_token(self, name: &str, token: &str) -> Host {
        let mut host = self.executor(name);
        host.executors.last_mut().expect("just pushed").token = Some(Secret::new(token));
        host
    }

    /// A `[[runners]]` entry of the last output, with no expiry.
    pub(super) fn held(self, name: &str, id: u64, token: &str) -> Host {
        self.held_until(name, id, token, "0001-01-01T00:00:00Z")
    }

    /// A held entry whose token is in the last quarter of its life.
    fn held_expiring(self, name: &str, id: u64, token: &str) -> Host {
        self.held_until(name, id, token, "2026-06-10T00:00:00Z")
    }

    fn held_until(mut self, name: &str, id: u64, token: &str, expires: &str) -> Host {
        self.last_output.push_str(&format!(
            "[[runners]]\nname = \"{name}\"\nurl = \"{URL}\"\nid = {id}\ntoken = \"{token}\"\n\
             token_obtained_at = 2026-01-01T00:00:00Z\ntoken_expires_at = {expires}\nexecutor = \"shell\"\n\n"
        ));
        self
    }

    /// A held entry on a url no client config names.
    fn held_elsewhere(mut self, name: &str, token: &str) -> Host {
        self.last_output.push_str(&format!(
            "[[runners]]\nname = \"{name}\"\nurl = \"https://old.example.com\"\nid = 99\ntoken = \"{token}\"\n\n"
        ));
        self
    }

    /// `POST /runners/verify` accepts this token as runner `id`.
    pub(super) fn valid(mut self, token: &str, id: u64) -> Host {
        self.verified.insert(
            Secret::new(token),
            VerifyOutcome::Valid(IssuedToken {
                id: Some(id),
                token: Secret::new(token),
                expires_at: None,
            }),
        );
        self
    }

    fn rejected(mut self, token: &str) -> Host {
        self.verified
            .insert(Secret::new(token), VerifyOutcome::Rejected(403));
        self
    }

    fn verify_fails(mut self, token: &str) -> Host {
        self.verified
            .insert(Secret::new(token), VerifyOutcome::Error("HTTP 500".into()));
        self
    }

    /// A runner in the listing of this host's identifying tags, with the
    /// system ids of its managers.
    pub(super) fn listed(mut self, id: u64, name: &str, managers: &[&str]) -> Host {
        if let Some(Ok(listed)) = &mut self.listing {
            listed.push(ListedRunner {
                id,
                description: Some(name.into()),
            });
        }
        self.managers
            .insert(id, Ok(managers.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// A runner in the extra listing of the original tool's tags
    /// (`<host>,<instance>`, while migrating), with its managers.
    fn original(mut self, id: u64, name: &str, managers: &[&str]) -> Host {
        let listed = self.original.get_or_insert_with(|| Ok(Vec::new()));
        if let Ok(listed) = listed {
            listed.push(ListedRunner {
                id,
                description: Some(name.into()),
            });
        }
        self.managers
            .insert(id, Ok(managers.iter().map(|s| s.to_string()).collect()));
        self
    }

    /// `GET /runners/:id` of a runner: its tags, and the token a patched
    /// server gives back.
    pub(super) fn details(
        mut self,
        id: u64,
        name: &str,
        tags: &[&str],
        token: Option<&str>,
    ) -> Host {
        self.details.insert(
            id,
            Ok(RunnerDetails {
                id,
                description: Some(name.into()),
                tag_list: tags.iter().map(|s| s.to_string()).collect(),
                run_untagged: false,
                locked: false,
                paused: false,
                access_level: None,
                maximum_timeout: None,
                maintenance_note: None,
                token: token.map(|t| SecretField(Secret::new(t))),
            }),
        );
        self
    }

    /// No personal access token: nothing can be listed.
    fn no_pat(mut self) -> Host {
        self.pat = false;
        self.listing = None;
        self
    }

    fn listing_fails(mut self) -> Host {
        self.listing = Some(Err("HTTP 500".into()));
        self
    }

    fn unreachable(mut self) -> Host {
        self.unreachable = Some("connection refused".into());
        self
    }

    /// Another instance on this prefix, whose last output holds these
    /// runners (id, token).
    fn other_instance(mut self, name: &str, held: &[(u64, &str)]) -> Host {
        self.others.push(OtherInstance {
            name: name.into(),
            held: held
                .iter()
                .map(|(id, t)| (URL.to_string(), *id, Secret::new(*t)))
                .collect(),
        });
        self
    }

    fn executor_dir_empty(mut self, allow_empty: bool) -> Host {
        self.executor_dir_empty = true;
        self.allow_empty = allow_empty;
        self
    }

    pub(super) fn inputs(&self) -> Inputs {
        Inputs {
            executor_dir_empty: self.executor_dir_empty,
            ..Inputs::for_test(URL, self.pat, self.executors.clone())
        }
    }

    pub(super) fn store(&self) -> TokenStore {
        TokenStore::from_text(
            Path::new("/etc/gitlab-runner/config.main.toml"),
            (!self.last_output.is_empty()).then(|| self.last_output.clone()),
            Some(0o600),
            NOW,
        )
        .expect("the fixture's last output parses")
    }

    fn observation(&self) -> Observation {
        if let Some(reason) = &self.unreachable {
            return Observation::unreachable(reason.clone(), THIS_HOST, "node01 main ");
        }
        Observation {
            unreachable: None,
            verified: self.verified.clone(),
            listing: match &self.listing {
                None => Listing::NoPat,
                Some(Ok(listed)) => Listing::Listed(listed.clone()),
                Some(Err(e)) => Listing::Failed(e.clone()),
            },
            details: self.details.clone(),
            managers: self.managers.clone(),
            system_id: THIS_HOST.into(),
            name_prefix: "node01 main ".into(),
            original: self.original.clone(),
        }
    }

    /// Every executor's tags: the identifying ones.
    pub(super) fn tags(&self) -> Vec<Vec<String>> {
        let tags = ["node", "node01", "managed", "main"]
            .map(String::from)
            .to_vec();
        vec![tags; self.executors.len()]
    }

    pub(super) fn plan(&self) -> Plan {
        plan(
            &self.inputs(),
            &self.tags(),
            &self.store(),
            &StoreInstances {
                this: "main".into(),
                others: self.others.clone(),
            },
            &[self.observation()],
            NOW,
            self.allow_empty,
        )
    }
}

fn gitlab(plan: &Plan) -> &GitLabPlan {
    &plan.gitlabs[0]
}

fn runner<'p>(plan: &'p Plan, name: &str) -> &'p RunnerPlan {
    gitlab(plan)
        .runners
        .iter()
        .find(|r| r.name == name)
        .unwrap_or_else(|| panic!("no runner `{name}` in the plan"))
}

/// The token written for an executor (kept, held or the create's fallback).
fn token_of(plan: &Plan, name: &str) -> Option<String> {
    let credentials = match &runner(plan, name).action {
        RunnerAction::Keep { credentials, .. } => Some(credentials),
        RunnerAction::Hold { credentials, .. } => credentials.as_ref(),
        RunnerAction::Create { fallback, .. } => fallback.as_ref(),
        RunnerAction::Fail { .. } => None,
    };
    credentials.map(|c| c.token.expose().to_string())
}

fn creates(plan: &Plan, name: &str) -> bool {
    matches!(runner(plan, name).action, RunnerAction::Create { .. })
}

/// The deletes as (name, how), `how` being `id N`, `token T` or `manager T`.
fn deletes(plan: &Plan) -> Vec<(String, String)> {
    gitlab(plan)
        .deletes
        .iter()
        .map(|d| {
            let how = match &d.how {
                DeleteHow::ById(id) => format!("id {id}"),
                DeleteHow::ByToken(t) => format!("token {}", t.expose()),
                DeleteHow::Manager(t) => format!("manager {}", t.expose()),
            };
            (d.name.clone(), how)
        })
        .collect()
}

fn carried_over(plan: &Plan) -> Vec<&str> {
    gitlab(plan)
        .carry_over
        .iter()
        .map(|(name, _)| name.as_str())
        .collect()
}

fn warned(plan: &Plan, words: &str) -> bool {
    gitlab(plan).warnings.iter().any(|w| w.contains(words))
}

fn pair(name: &str, how: &str) -> (String, String) {
    (name.to_string(), how.to_string())
}

// Which runners are this host's.

#[test]
fn another_hosts_runner_is_never_deleted() {
    let plan = Host::new()
        .listed(5, "ci-node01 main gone Runner", &[OTHER_HOST])
        .plan();
    assert!(deletes(&plan).is_empty());
    assert!(warned(
        &plan,
        "another host (system id s_otherhost002) uses it"
    ));
}

#[test]
fn another_hosts_runner_is_never_taken_over() {
    let plan = Host::new()
        .executor("shell")
        .listed(5, "shell", &[OTHER_HOST])
        .details(
            5,
            "shell",
            &["node", "node01", "managed", "main"],
            Some("glrt-theirs0000000000"),
        )
        .valid("glrt-theirs0000000000", 5)
        .plan();
    assert!(creates(&plan, "shell"));
    assert!(deletes(&plan).is_empty());
}

#[test]
fn a_runner_with_no_manager_is_this_hosts_by_its_default_name() {
    let plan = Host::new()
        .listed(5, "node01 main old Runner", &[])
        .listed(6, "ci-node01 main old Runner", &[])
        .plan();
    assert_eq!(deletes(&plan), [pair("node01 main old Runner", "id 5")]);
    assert!(warned(
        &plan,
        "neither its name nor its tags are this host's"
    ));
}

#[test]
fn a_runner_with_no_manager_named_like_an_executor_is_this_hosts_only_without_foreign_tags() {
    let tags = ["node", "node01", "managed", "main"];
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-shell000000000000")
        .valid("glrt-shell000000000000", 1)
        .listed(1, "shell", &[THIS_HOST])
        .details(1, "shell", &tags, None)
        .listed(5, "shell", &[])
        .details(5, "shell", &tags, None)
        .listed(6, "shell", &[])
        .details(
            6,
            "shell",
            &["node", "node01", "managed", "main", "gpu"],
            None,
        )
        .plan();
    assert_eq!(deletes(&plan), [pair("shell", "id 5")]);
    assert!(warned(
        &plan,
        "runner #6 `shell` carries this host's identifying tags"
    ));
}

// Ownership and tokens.

#[test]
fn a_ui_runner_is_never_taken_over_only_this_hosts_manager_goes_once_its_replacement_exists() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 7, "glrt-fromui0000000000")
        .valid("glrt-fromui0000000000", 7)
        .plan();
    assert!(creates(&plan, "shell"));
    assert_eq!(
        token_of(&plan, "shell").as_deref(),
        Some("glrt-fromui0000000000")
    );
    assert_eq!(
        deletes(&plan),
        [pair("shell", "manager glrt-fromui0000000000")]
    );
    assert_eq!(
        gitlab(&plan).deletes[0].after_create.as_deref(),
        Some("shell")
    );
    assert!(runner(&plan, "shell").update.is_none());
}

#[test]
fn a_ui_runner_whose_executor_file_is_gone_loses_only_this_hosts_manager() {
    let plan = Host::new()
        .held("gone", 7, "glrt-fromui0000000000")
        .valid("glrt-fromui0000000000", 7)
        .plan();
    assert_eq!(
        deletes(&plan),
        [pair("gone", "manager glrt-fromui0000000000")]
    );
}

#[test]
fn a_tool_made_runner_whose_executor_file_is_gone_is_deleted_whole() {
    let plan = Host::new()
        .held("gone", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "gone", &[THIS_HOST])
        .plan();
    assert_eq!(
        deletes(&plan),
        [pair("gone", "token glrt-toolmade00000000")]
    );
}

#[test]
fn a_registration_token_runner_is_the_tools_and_is_deleted_whole() {
    let plan = Host::new()
        .no_pat()
        .held("gone", 1, "t1_registered0000000")
        .valid("t1_registered0000000", 1)
        .plan();
    assert_eq!(deletes(&plan), [pair("gone", "token t1_registered0000000")]);
}

#[test]
fn a_file_token_replacing_a_tool_made_runner_deletes_it_whole() {
    let plan = Host::new()
        .executor_with_token("shell", "glrt-newfromui0000000")
        .valid("glrt-newfromui0000000", 8)
        .held("shell", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "shell", &[THIS_HOST])
        .plan();
    assert_eq!(
        token_of(&plan, "shell").as_deref(),
        Some("glrt-newfromui0000000")
    );
    assert_eq!(
        deletes(&plan),
        [pair("shell", "token glrt-toolmade00000000")]
    );
}

#[test]
fn a_file_token_replacing_a_ui_runner_removes_only_this_hosts_manager() {
    let plan = Host::new()
        .executor_with_token("shell", "glrt-newfromui0000000")
        .valid("glrt-newfromui0000000", 8)
        .held("shell", 7, "glrt-oldfromui0000000")
        .valid("glrt-oldfromui0000000", 7)
        .plan();
    assert_eq!(
        token_of(&plan, "shell").as_deref(),
        Some("glrt-newfromui0000000")
    );
    assert_eq!(
        deletes(&plan),
        [pair("shell", "manager glrt-oldfromui0000000")]
    );
}

#[test]
fn a_rejected_file_token_fails_the_run_when_the_held_runner_is_the_tools() {
    let plan = Host::new()
        .executor_with_token("shell", "glrt-mistyped00000000")
        .rejected("glrt-mistyped00000000")
        .held("shell", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "shell", &[THIS_HOST])
        .plan();
    assert!(matches!(
        runner(&plan, "shell").action,
        RunnerAction::Fail { .. }
    ));
    assert!(plan.failures()[0].contains("/etc/gitlab-runner/main/shell.toml"));
    assert!(deletes(&plan).is_empty());
}

#[test]
fn a_rejected_file_token_keeps_the_ui_runners_token_gitlab_runner_rotated() {
    let plan = Host::new()
        .executor_with_token("shell", "glrt-beforerotation00")
        .rejected("glrt-beforerotation00")
        .held("shell", 7, "glrt-afterrotation000")
        .valid("glrt-afterrotation000", 7)
        .plan();
    assert_eq!(
        token_of(&plan, "shell").as_deref(),
        Some("glrt-afterrotation000")
    );
    assert!(plan.failures().is_empty());
}

#[test]
fn a_rejected_file_token_with_nothing_held_fails_naming_the_file() {
    let plan = Host::new()
        .executor_with_token("shell", "glrt-mistyped00000000")
        .rejected("glrt-mistyped00000000")
        .plan();
    assert!(plan.failures()[0].contains("its own `token` in `/etc/gitlab-runner/main/shell.toml`"));
    assert!(!creates(&plan, "shell"));
}

#[test]
fn only_tokens_the_tool_provably_made_are_rotated() {
    let plan = Host::new()
        .executor("tool")
        .held_expiring("tool", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "tool", &[THIS_HOST])
        .executor_with_token("file", "glrt-fromfile00000000")
        .held_expiring("file", 2, "glrt-fromfile00000000")
        .valid("glrt-fromfile00000000", 2)
        .plan();
    assert!(runner(&plan, "tool").rotate);
    assert!(!runner(&plan, "file").rotate);
    assert!(warned(&plan, "runner `file`: its token is near its expiry"));
}

#[test]
fn without_a_pat_a_held_glrt_token_counts_as_a_ui_runners() {
    let plan = Host::new()
        .no_pat()
        .executor("shell")
        .held_expiring("shell", 1, "glrt-unknownorigin000")
        .valid("glrt-unknownorigin000", 1)
        .plan();
    // The tool cannot have made it (no PAT to create one with): never
    // rotated; a runner of the tool's own replaces it, and only this
    // host's manager of it goes.
    assert!(!runner(&plan, "shell").rotate);
    assert!(creates(&plan, "shell"));
    assert_eq!(
        deletes(&plan),
        [pair("shell", "manager glrt-unknownorigin000")]
    );
}

#[test]
fn a_registration_token_runner_is_rotated() {
    let plan = Host::new()
        .no_pat()
        .executor("shell")
        .held_expiring("shell", 1, "t1_registered0000000")
        .valid("t1_registered0000000", 1)
        .plan();
    assert!(runner(&plan, "shell").rotate);
}

#[test]
fn a_failed_listing_deletes_and_updates_nothing_and_is_only_a_warning() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .held("gone", 2, "glrt-gone000000000000")
        .valid("glrt-gone000000000000", 2)
        .listing_fails()
        .plan();
    assert!(deletes(&plan).is_empty());
    assert_eq!(carried_over(&plan), ["gone"]);
    assert!(runner(&plan, "shell").update.is_none());
    assert!(gitlab(&plan).listing_failed.is_some());
    assert!(plan.failures().is_empty());
    assert!(!plan.dry_run_problems().is_empty());
}

#[test]
fn an_unreachable_gitlab_keeps_every_entry_as_it_was() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-toolmade00000000")
        .held("gone", 2, "glrt-gone000000000000")
        .executor("new")
        .unreachable()
        .plan();
    assert!(matches!(
        runner(&plan, "shell").action,
        RunnerAction::Hold { entry: Some(_), .. }
    ));
    assert_eq!(carried_over(&plan), ["gone"]);
    assert!(!plan.has_changes());
    // Only a runner with nothing to start on fails the run.
    assert_eq!(plan.offline_failures().len(), 1);
    assert!(plan.offline_failures()[0].contains("runner `new` has no token"));
}

#[test]
fn no_token_is_dropped_an_entry_on_an_unknown_url_is_kept() {
    let plan = Host::new()
        .held_elsewhere("old", "glrt-elsewhere0000000")
        .plan();
    assert_eq!(plan.unknown_gitlab.len(), 1);
    assert_eq!(plan.warning_count(), 1);
}

#[test]
fn no_token_is_dropped_an_unwanted_entry_whose_token_cannot_be_checked_stays() {
    let plan = Host::new()
        .held("gone", 2, "glrt-gone000000000000")
        .verify_fails("glrt-gone000000000000")
        .plan();
    assert!(deletes(&plan).is_empty());
    assert_eq!(carried_over(&plan), ["gone"]);
}

#[test]
fn a_held_token_that_cannot_be_checked_is_held_and_fails_the_run() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-toolmade00000000")
        .verify_fails("glrt-toolmade00000000")
        .plan();
    assert!(matches!(
        runner(&plan, "shell").action,
        RunnerAction::Hold { entry: Some(_), .. }
    ));
    assert!(plan.failures()[0].contains("cannot verify its token"));
}

#[test]
fn an_entry_gitlab_rejected_is_dropped_and_its_runner_replaced() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-revoked000000000")
        .rejected("glrt-revoked000000000")
        .held("gone", 2, "glrt-gonetoo000000000")
        .rejected("glrt-gonetoo000000000")
        .plan();
    assert!(creates(&plan, "shell"));
    assert_eq!(
        runner(&plan, "shell").action.reason(),
        "token rejected by GitLab (HTTP 403)"
    );
    assert!(deletes(&plan).is_empty());
    assert!(carried_over(&plan).is_empty());
}

#[test]
fn other_instances_runners_are_never_touched() {
    let plan = Host::new()
        .other_instance("ci", &[(5, "glrt-theirs0000000000")])
        .listed(5, "node01 ci shell Runner", &[THIS_HOST])
        .plan();
    assert!(deletes(&plan).is_empty());
}

#[test]
fn an_entry_another_instance_holds_too_is_neither_deleted_nor_rotated() {
    let plan = Host::new()
        .other_instance(
            "ci",
            &[(1, "glrt-shared000000000"), (2, "glrt-sharedgone00000")],
        )
        .executor("shell")
        .held_expiring("shell", 1, "glrt-shared000000000")
        .valid("glrt-shared000000000", 1)
        .listed(1, "shell", &[THIS_HOST])
        .held("gone", 2, "glrt-sharedgone00000")
        .valid("glrt-sharedgone00000", 2)
        .listed(2, "gone", &[THIS_HOST])
        .plan();
    assert!(!runner(&plan, "shell").rotate);
    assert!(deletes(&plan).is_empty());
    assert_eq!(carried_over(&plan), ["gone"]);
    assert!(warned(&plan, "instance `ci` on this prefix holds it too"));
}

#[test]
fn a_runner_carrying_another_instances_tag_is_left_alone() {
    let plan = Host::new()
        .other_instance("ci", &[])
        .listed(5, "node01 main old Runner", &[THIS_HOST])
        .details(
            5,
            "node01 main old Runner",
            &["node", "node01", "managed", "main", "ci"],
            None,
        )
        .plan();
    assert!(deletes(&plan).is_empty());
    assert!(warned(&plan, "the instance tag of instance `ci`"));
}

#[test]
fn duplicates_of_a_kept_runner_are_deleted() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "shell", &[THIS_HOST])
        .listed(4, "shell", &[THIS_HOST])
        .plan();
    assert_eq!(deletes(&plan), [pair("shell", "id 4")]);
    assert_eq!(gitlab(&plan).deletes[0].reason, "duplicate of #1");
}

#[test]
fn of_two_entries_of_one_name_the_unused_ones_runner_is_deleted() {
    let plan = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-revoked000000000")
        .rejected("glrt-revoked000000000")
        .held("shell", 2, "glrt-second0000000000")
        .valid("glrt-second0000000000", 2)
        .listed(2, "shell", &[THIS_HOST])
        .held("shell", 3, "glrt-third00000000000")
        .valid("glrt-third00000000000", 3)
        .listed(3, "shell", &[THIS_HOST])
        .plan();
    assert_eq!(
        token_of(&plan, "shell").as_deref(),
        Some("glrt-second0000000000")
    );
    assert_eq!(
        deletes(&plan),
        [pair("shell", "token glrt-third00000000000")]
    );
    assert_eq!(
        gitlab(&plan).deletes[0].reason,
        "a second entry of this name in the config"
    );
}

#[test]
fn a_lost_token_is_replaced_by_a_new_runner_and_the_old_one_deleted() {
    let plan = Host::new()
        .executor("shell")
        .listed(4, "shell", &[THIS_HOST])
        .plan();
    assert!(creates(&plan, "shell"));
    assert_eq!(runner(&plan, "shell").action.reason(), "token lost");
    assert_eq!(deletes(&plan), [pair("shell", "id 4")]);
    assert_eq!(
        gitlab(&plan).deletes[0].reason,
        "token lost: replaced by a new runner"
    );
}

#[test]
fn a_lost_token_a_patched_server_gives_back_is_restored() {
    let plan = Host::new()
        .executor("shell")
        .listed(4, "shell", &[THIS_HOST])
        .details(
            4,
            "shell",
            &["node", "node01", "managed", "main"],
            Some("glrt-givenback0000000"),
        )
        .valid("glrt-givenback0000000", 4)
        .plan();
    assert_eq!(
        token_of(&plan, "shell").as_deref(),
        Some("glrt-givenback0000000")
    );
    assert!(deletes(&plan).is_empty());
    assert!(!plan.has_changes());
}

#[test]
fn one_token_held_for_two_executors_serves_only_the_first() {
    let plan = Host::new()
        .executor("a")
        .held("a", 1, "glrt-shared000000000")
        .executor("b")
        .held("b", 1, "glrt-shared000000000")
        .valid("glrt-shared000000000", 1)
        .listed(1, "a", &[THIS_HOST])
        .plan();
    assert_eq!(
        token_of(&plan, "a").as_deref(),
        Some("glrt-shared000000000")
    );
    assert!(creates(&plan, "b"));
    assert_eq!(
        runner(&plan, "b").action.reason(),
        "token shared with another executor"
    );
}

#[test]
fn an_empty_executor_directory_deletes_nothing_without_allow_empty() {
    let capped = Host::new()
        .held("gone", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "gone", &[THIS_HOST])
        .executor_dir_empty(false)
        .plan();
    assert!(deletes(&capped).is_empty());
    assert_eq!(carried_over(&capped), ["gone"]);
    assert!(capped.failures()[0].contains("--allow-empty"));

    let allowed = Host::new()
        .held("gone", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "gone", &[THIS_HOST])
        .executor_dir_empty(true)
        .plan();
    assert_eq!(
        deletes(&allowed),
        [pair("gone", "token glrt-toolmade00000000")]
    );
}

#[test]
fn settings_drift_is_corrected_only_on_runners_the_tool_made() {
    let mut host = Host::new()
        .executor("tool")
        .held("tool", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "tool", &[THIS_HOST])
        .details(1, "tool", &["node", "node01", "managed", "main"], None)
        .executor_with_token("file", "glrt-fromfile00000000")
        .valid("glrt-fromfile00000000", 2)
        .details(2, "file", &["whatever"], None);
    host.executors[0]
        .server
        .set("locked", crate::config::Setting::Bool(true));
    let plan = host.plan();
    let update = runner(&plan, "tool").update.as_ref().expect("an update");
    assert_eq!(update.reason, "locked differ from the executor file");
    assert!(runner(&plan, "file").update.is_none());
}

#[test]
fn a_fresh_host_creates_each_runner() {
    let plan = Host::new().executor("shell").executor("docker").plan();
    assert!(creates(&plan, "shell") && creates(&plan, "docker"));
    assert_eq!(runner(&plan, "shell").action.reason(), "no runner yet");
    let RunnerAction::Create { attributes, .. } = &runner(&plan, "shell").action else {
        unreachable!()
    };
    assert_eq!(attributes.description.as_deref(), Some("shell"));
    assert_eq!(attributes.locked, Some(false));
}

/// The original's default name of this host's shell runner.
const ORIGINAL_SHELL: &str = "node01 main shell Runner";

#[test]
fn runners_the_original_tool_left_are_deleted_keeping_the_held_one() {
    let plan = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .valid("t1-original000000001", 1)
        .original(1, ORIGINAL_SHELL, &[THIS_HOST])
        .original(2, ORIGINAL_SHELL, &[])
        .original(3, ORIGINAL_SHELL, &[THIS_HOST])
        .plan();
    assert_eq!(
        deletes(&plan),
        [pair(ORIGINAL_SHELL, "id 2"), pair(ORIGINAL_SHELL, "id 3")]
    );
    assert!(
        gitlab(&plan)
            .deletes
            .iter()
            .all(|d| d.reason == "left by the original tool")
    );
    assert_eq!(
        token_of(&plan, ORIGINAL_SHELL).as_deref(),
        Some("t1-original000000001")
    );
}

#[test]
fn a_runner_of_the_original_another_host_uses_is_never_deleted() {
    let plan = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .valid("t1-original000000001", 1)
        .original(5, ORIGINAL_SHELL, &[OTHER_HOST])
        .original(6, ORIGINAL_SHELL, &[THIS_HOST, OTHER_HOST])
        .plan();
    assert_eq!(deletes(&plan), []);
    assert_eq!(
        gitlab(&plan).warnings.len(),
        2,
        "{:?}",
        gitlab(&plan).warnings
    );
    assert!(gitlab(&plan).warnings[0].contains(OTHER_HOST));
}

#[test]
fn only_the_originals_exact_default_name_is_taken() {
    let plan = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .valid("t1-original000000001", 1)
        .original(7, "node01 main shell Runner (old)", &[])
        .original(8, "node01 main docker Runner", &[])
        .original(9, "node01-shell", &[])
        .plan();
    assert_eq!(deletes(&plan), []);
}

#[test]
fn without_the_migration_listing_nothing_of_the_original_is_touched() {
    // Not migrating: observe made no extra listing; a runner of this name
    // outside the identifying tags is not this tool's (SPEC §3).
    let plan = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .valid("t1-original000000001", 1)
        .plan();
    assert_eq!(deletes(&plan), []);
}

#[test]
fn while_the_held_token_cannot_be_checked_no_leftover_of_the_original_goes() {
    let plan = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .verify_fails("t1-original000000001")
        .original(1, ORIGINAL_SHELL, &[THIS_HOST])
        .original(2, ORIGINAL_SHELL, &[])
        .plan();
    assert_eq!(deletes(&plan), []);
}

#[test]
fn a_runner_of_the_original_another_instance_holds_is_spared() {
    let plan = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .valid("t1-original000000001", 1)
        .original(2, ORIGINAL_SHELL, &[])
        .other_instance("batch", &[(2, "glrt-otherinstance001")])
        .plan();
    assert_eq!(deletes(&plan), []);
}

#[test]
fn a_failed_listing_of_the_originals_runners_deletes_none_of_them() {
    let mut host = Host::new()
        .executor(ORIGINAL_SHELL)
        .held(ORIGINAL_SHELL, 1, "t1-original000000001")
        .valid("t1-original000000001", 1);
    host.original = Some(Err("HTTP 500".into()));
    let plan = host.plan();
    assert_eq!(deletes(&plan), []);
    assert!(gitlab(&plan).warnings[0].contains("HTTP 500"));
}

#[test]
fn an_update_shows_its_changes_field_by_field() {
    let mut host = Host::new()
        .executor("shell")
        .held("shell", 1, "glrt-toolmade00000000")
        .valid("glrt-toolmade00000000", 1)
        .listed(1, "shell", &[THIS_HOST])
        .details(1, "shell", &["node01", "node", "main", "old_tag"], None);
    if let Some(Ok(details)) = host.details.get_mut(&1) {
        details.locked = true;
    }
    let plan = host.plan();
    let update = runner(&plan, "shell").update.as_ref().expect("an update");
    assert_eq!(
        update.fields,
        ["tags: +managed -old_tag", "locked: true → false"]
    );
}
