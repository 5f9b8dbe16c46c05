//! Plan idempotence, as a property: from any starting state of a small
//! model of GitLab (runners with ids, tokens, names, tags, settings and
//! managers) and of the last output, observe → plan → apply to the model →
//! write the output; then observe and plan again: the second plan has
//! nothing to do (`has_changes()` false) and no problems.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};

use proptest::prelude::*;
use time::OffsetDateTime;
use time::macros::datetime;

use super::tests::{THIS_HOST, URL};
use super::*;
use crate::apply::Applied;
use crate::config::ServerSettings;
use crate::config_file::assemble;
use crate::gitlab::{IssuedToken, RunnerDetails};
use crate::output::{self, Secrets};

const NOW: OffsetDateTime = datetime!(2026-06-01 00:00 UTC);
const IDENTIFYING: [&str; 4] = ["node", "node01", "managed", "main"];
const OTHER_HOST: &str = "s_otherhost002";

/// One runner in the model of GitLab.
#[derive(Debug, Clone)]
struct ModelRunner {
    token: String,
    name: String,
    tags: Vec<String>,
    locked: bool,
    /// System ids of its managers.
    managers: BTreeSet<String>,
}

/// GitLab, as far as the plan can tell.
#[derive(Debug, Clone, Default)]
struct GitLabModel {
    runners: BTreeMap<u64, ModelRunner>,
    next: u64,
}

impl GitLabModel {
    fn add(&mut self, name: &str, token: &str, tags: &[&str], managers: &[&str]) -> u64 {
        self.next += 1;
        self.runners.insert(
            self.next,
            ModelRunner {
                token: token.into(),
                name: name.into(),
                tags: tags.iter().map(|t| t.to_string()).collect(),
                locked: false,
                managers: managers.iter().map(|m| m.to_string()).collect(),
            },
        );
        self.next
    }

    fn by_token(&self, token: &str) -> Option<u64> {
        self.runners
            .iter()
            .find(|(_, r)| r.token == token)
            .map(|(id, _)| *id)
    }

    /// `POST /runners/verify`: registers this host's manager.
    fn verify(&mut self, token: &Secret) -> VerifyOutcome {
        match self.by_token(token.expose()) {
            Some(id) => {
                let runner = self.runners.get_mut(&id).expect("found above");
                runner.managers.insert(THIS_HOST.into());
                VerifyOutcome::Valid(IssuedToken {
                    id: Some(id),
                    token: token.clone(),
                    expires_at: None,
                })
            }
            None => VerifyOutcome::Rejected(403),
        }
    }

    /// What observe reads: every held and executor token verified; with a
    /// PAT, the runners carrying this host's identifying tags, their
    /// managers and details (an unpatched server: no token in them).
    fn observe(&mut self, inputs: &Inputs, store: &TokenStore, pat: bool) -> Observation {
        let tokens = store
            .runners
            .iter()
            .map(|h| h.credentials.token.clone())
            .chain(inputs.executors.iter().filter_map(|e| e.token.clone()));
        let mut verified = HashMap::new();
        for token in tokens {
            let outcome = self.verify(&token);
            verified.insert(token, outcome);
        }
        let listed: Vec<(u64, &ModelRunner)> = self
            .runners
            .iter()
            .filter(|(_, r)| {
                IDENTIFYING
                    .iter()
                    .all(|t| r.tags.iter().any(|have| have == t))
            })
            .map(|(id, r)| (*id, r))
            .collect();
        let managers = listed
            .iter()
            .map(|(id, r)| (*id, Ok(r.managers.iter().cloned().collect())))
            .collect();
        let details = listed
            .iter()
            .map(|(id, r)| {
                let details = RunnerDetails {
                    id: *id,
                    description: Some(r.name.clone()),
                    tag_list: r.tags.clone(),
                    run_untagged: false,
                    locked: r.locked,
                    paused: false,
                    access_level: None,
                    maximum_timeout: None,
                    maintenance_note: None,
                    token: None,
                };
                (*id, Ok(details))
            })
            .collect();
        let listing = listed
            .iter()
            .map(|(id, r)| ListedRunner {
                id: *id,
                description: Some(r.name.clone()),
            })
            .collect();
        Observation {
            unreachable: None,
            verified,
            listing: if pat {
                Listing::Listed(listing)
            } else {
                Listing::NoPat
            },
            details: if pat { details } else { BTreeMap::new() },
            managers: if pat { managers } else { BTreeMap::new() },
            system_id: THIS_HOST.into(),
            name_prefix: "node01 main ".into(),
            original: None,
        }
    }

    /// Carries the plan out as apply does: creates (then a verify),
    /// updates, rotations, deletes; every step succeeds.
    fn apply(&mut self, plan: &Plan, pat: bool) -> Applied {
        let mut applied = Applied::default();
        for (g, gitlab) in plan.gitlabs.iter().enumerate() {
            for r in &gitlab.runners {
                if let RunnerAction::Create { attributes, .. } = &r.action {
                    let prefix = if pat { "glrt-model" } else { "t1_model" };
                    let token = format!("{prefix}{:012}", self.next + 1);
                    let tags: Vec<&str> = attributes
                        .tag_list
                        .iter()
                        .flatten()
                        .map(String::as_str)
                        .collect();
                    let id = self.add(&r.name, &token, &tags, &[THIS_HOST]);
                    self.runners.get_mut(&id).expect("added").locked =
                        attributes.locked.unwrap_or(false);
                    applied
                        .issued
                        .insert(r.name.clone(), self.credentials(id, &token));
                }
            }
            for update in gitlab.runners.iter().filter_map(|r| r.update.as_ref()) {
                let runner = self.runners.get_mut(&update.id).expect("updates a runner");
                if let Some(tags) = &update.changes.tag_list {
                    runner.tags = tags.clone();
                }
                if let Some(locked) = update.changes.locked {
                    runner.locked = locked;
                }
                if let Some(name) = &update.changes.description {
                    runner.name = name.clone();
                }
                applied.updated += 1;
            }
            for r in gitlab.runners.iter().filter(|r| r.rotate) {
                let RunnerAction::Keep { credentials, .. } = &r.action else {
                    unreachable!("only a kept runner rotates")
                };
                // A reset keeps the kind of token: GitLab prefixes `glrt-`
                // only a runner created with an authenticated user.
                let prefix = if credentials.token.is_created_runner_token() {
                    "glrt-rotated"
                } else {
                    "t1_rotated"
                };
                let token = format!("{prefix}{:010}", credentials.id);
                self.runners
                    .get_mut(&credentials.id)
                    .expect("rotates a runner")
                    .token = token.clone();
                applied
                    .issued
                    .insert(r.name.clone(), self.credentials(credentials.id, &token));
            }
            for (d, delete) in gitlab.deletes.iter().enumerate() {
                if delete
                    .after_create
                    .as_ref()
                    .is_some_and(|n| !applied.issued.contains_key(n))
                {
                    continue;
                }
                match &delete.how {
                    DeleteHow::ById(id) => {
                        self.runners.remove(id);
                    }
                    DeleteHow::ByToken(t) => {
                        if let Some(id) = self.by_token(t.expose()) {
                            self.runners.remove(&id);
                        }
                    }
                    DeleteHow::Manager(t) => {
                        if let Some(id) = self.by_token(t.expose()) {
                            let runner = self.runners.get_mut(&id).expect("found");
                            runner.managers.remove(THIS_HOST);
                        }
                    }
                }
                applied.deleted.insert((g, d));
            }
        }
        applied
    }

    fn credentials(&self, id: u64, token: &str) -> Credentials {
        Credentials {
            id,
            token: Secret::new(token),
            obtained_at: NOW,
            expires_at: None,
        }
    }
}

/// What an executor file says.
#[derive(Debug, Clone, Copy, PartialEq)]
enum File {
    Gone,
    Tool,
    /// Names a runner made in GitLab's UI by its `token`.
    UiToken,
}

/// What GitLab and the last output hold for one name.
#[derive(Debug, Clone, Copy, PartialEq)]
enum State {
    Nothing,
    /// A tool-made runner and its entry; its token expiring, its `locked`
    /// setting drifted, its tags drifted.
    Held {
        expiring: bool,
        locked: bool,
        extra_tag: bool,
    },
    /// An entry whose runner GitLab no longer knows.
    Revoked,
    /// A tool-made runner of this host (its manager) with no entry.
    Lost,
    /// A runner made in GitLab's UI whose token is held.
    HeldUi,
    /// A held runner and a second one of the same name and host.
    Duplicate,
    /// Two entries of one name, both valid.
    TwoEntries,
    /// Another host's runner of this name with this host's tags.
    Foreign,
}

fn state() -> impl Strategy<Value = State> {
    prop_oneof![
        Just(State::Nothing),
        (any::<bool>(), any::<bool>(), any::<bool>()).prop_map(|(expiring, locked, extra_tag)| {
            State::Held {
                expiring,
                locked,
                extra_tag,
            }
        }),
        Just(State::Revoked),
        Just(State::Lost),
        Just(State::HeldUi),
        Just(State::Duplicate),
        Just(State::TwoEntries),
        Just(State::Foreign),
    ]
}

fn file() -> impl Strategy<Value = File> {
    prop_oneof![Just(File::Gone), Just(File::Tool), Just(File::UiToken)]
}

/// The starting state: the model, the executors, the last output.
fn start(names: &[(File, State)], pat: bool) -> (GitLabModel, Vec<Executor>, String) {
    let mut gitlab = GitLabModel::default();
    let mut executors = Vec::new();
    let mut output = String::new();
    let mut hold = |name: &str, id: u64, token: &str, expiring: bool| {
        let expires = if expiring {
            "2026-06-10T00:00:00Z"
        } else {
            "0001-01-01T00:00:00Z"
        };
        output.push_str(&format!(
            "[[runners]]\nname = \"{name}\"\nurl = \"{URL}\"\nid = {id}\ntoken = \"{token}\"\n\
             token_obtained_at = 2026-01-01T00:00:00Z\ntoken_expires_at = {expires}\nexecutor = \"shell\"\n\n"
        ));
    };
    let tool = if pat { "glrt-tool" } else { "t1_tool" };
    for (n, (file, state)) in names.iter().enumerate() {
        let name = format!("x{n}");
        if *file != File::Gone {
            let token = (*file == File::UiToken).then(|| {
                let token = format!("glrt-uifile{n:09}");
                gitlab.add(&name, &token, &["ui"], &[OTHER_HOST]);
                Secret::new(token)
            });
            executors.push(Executor {
                file: PathBuf::from(format!("/etc/gitlab-runner/main/{name}.toml")),
                url: URL.into(),
                executor: "shell".into(),
                name: name.clone(),
                token,
                env_tags: vec![],
                tags: vec![],
                server: ServerSettings::default(),
                settings: toml_edit::Table::new(),
            });
        }
        match *state {
            State::Nothing => {}
            State::Held {
                expiring,
                locked,
                extra_tag,
            } => {
                let token = format!("{tool}{n:012}");
                let mut tags = IDENTIFYING.to_vec();
                if extra_tag {
                    tags.push("extra");
                }
                let id = gitlab.add(&name, &token, &tags, &[THIS_HOST]);
                gitlab.runners.get_mut(&id).expect("added").locked = locked;
                hold(&name, id, &token, expiring);
            }
            State::Revoked => hold(&name, 900 + n as u64, &format!("glrt-revoked{n:09}"), false),
            State::Lost => {
                gitlab.add(
                    &name,
                    &format!("glrt-lost{n:012}"),
                    &IDENTIFYING,
                    &[THIS_HOST],
                );
            }
            State::HeldUi => {
                let token = format!("glrt-heldui{n:010}");
                let id = gitlab.add(&name, &token, &["ui"], &[OTHER_HOST]);
                hold(&name, id, &token, false);
            }
            State::Duplicate | State::TwoEntries => {
                let token = format!("{tool}{n:012}");
                let id = gitlab.add(&name, &token, &IDENTIFYING, &[THIS_HOST]);
                hold(&name, id, &token, false);
                let second = format!("{tool}second{n:06}");
                let id = gitlab.add(&name, &second, &IDENTIFYING, &[THIS_HOST]);
                if *state == State::TwoEntries {
                    hold(&name, id, &second, false);
                }
            }
            State::Foreign => {
                gitlab.add(
                    &name,
                    &format!("glrt-foreign{n:09}"),
                    &IDENTIFYING,
                    &[OTHER_HOST],
                );
            }
        }
    }
    (gitlab, executors, output)
}

fn inputs(executors: &[Executor], pat: bool) -> Inputs {
    Inputs::for_test(URL, pat, executors.to_vec())
}

/// Observes the model, plans, and returns the plan with the output that
/// applying it to the model writes.
fn run(gitlab: &mut GitLabModel, inputs: &Inputs, output: &str, pat: bool) -> (Plan, String) {
    let store = TokenStore::from_text(
        Path::new("/etc/gitlab-runner/config.main.toml"),
        (!output.is_empty()).then(|| output.to_string()),
        Some(0o600),
        NOW,
    )
    .expect("the output parses");
    let observation = gitlab.observe(inputs, &store, pat);
    let tags = vec![IDENTIFYING.map(String::from).to_vec(); inputs.executors.len()];
    let plan = plan(
        inputs,
        &tags,
        &store,
        &store::Instances {
            this: "main".into(),
            others: vec![],
        },
        &[observation],
        NOW,
        true,
    );
    let applied = gitlab.apply(&plan, pat);
    let runners = assemble(inputs, &plan, &applied, &HashMap::new(), false);
    let written = output::render(&inputs.template.globals, &runners, Secrets::Reveal);
    (plan, written)
}

fn names() -> impl Strategy<Value = Vec<(File, State)>> {
    proptest::collection::vec((file(), state()), 0..4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(500))]
    #[test]
    fn a_second_plan_after_applying_the_first_has_nothing_to_do(
        names in names(),
        pat in any::<bool>(),
    ) {
        let (mut gitlab, executors, output) = start(&names, pat);
        let inputs = inputs(&executors, pat);
        let (first, output) = run(&mut gitlab, &inputs, &output, pat);
        prop_assert!(first.failures().is_empty(), "first plan: {:?}", first.failures());
        let (second, again) = run(&mut gitlab, &inputs, &output, pat);
        prop_assert!(
            !second.has_changes(),
            "second plan has changes: {:#?}\nafter the first: {:#?}\nGitLab: {:#?}",
            second.gitlabs[0],
            first.gitlabs[0],
            gitlab
        );
        prop_assert!(second.failures().is_empty(), "second plan: {:?}", second.failures());
        prop_assert_eq!(again, output, "the second run rewrote the output");
    }
}
