//! The output file `config.<instance>.toml` while a run writes it: which
//! `[[runners]]` entries it holds at each point of the run ([`assemble`]:
//! the plan's credentials, what apply issued and deleted so far, and the
//! entries carried over byte for byte), and [`OutputWriter`], which merges
//! tokens gitlab-runner rotated meanwhile, renders and writes atomically.
//! For a dry-run, [`planned_diff`] renders the planned output against the
//! last one. The rule it keeps: an entry of the last output is only ever left out
//! when its runner was verified-replaced, deleted by this run, or rejected
//! by GitLab (the token no longer exists).

use std::collections::HashMap;

use anyhow::Result;
use time::OffsetDateTime;

use crate::apply::{Applied, Persist};
use crate::config::Inputs;
use crate::fsutil;
use crate::output::{self, OutputRunner, Secrets};
use crate::plan::{Plan, RunnerAction};
use crate::store::{Credentials, RawEntry, TokenStore};

/// The `[[runners]]` entries to write: executors in file-name order with
/// their credentials, then entries carried over. `applied` holds what apply
/// issued and deleted so far; `show_pending` (dry-run) shows runners still
/// to be created with a placeholder token and leaves planned deletes out.
pub fn assemble<'a>(
    inputs: &'a Inputs,
    plan: &'a Plan,
    applied: &Applied,
    rotated_meanwhile: &HashMap<String, Credentials>,
    show_pending: bool,
) -> Vec<OutputRunner<'a>> {
    let mut by_executor: HashMap<usize, &RunnerAction> = HashMap::new();
    let mut held_by_executor: HashMap<usize, Option<&RawEntry>> = HashMap::new();
    let mut rotating: Vec<usize> = Vec::new();
    for g in &plan.gitlabs {
        for r in &g.runners {
            by_executor.insert(r.executor, &r.action);
            held_by_executor.insert(r.executor, r.held.as_ref());
            if r.rotate {
                rotating.push(r.executor);
            }
        }
    }
    let mut runners = Vec::new();
    for (i, executor) in inputs.executors.iter().enumerate() {
        let url = inputs
            .template
            .clients
            .iter()
            .find(|c| c.url == executor.url)
            .map_or(executor.url.as_str(), |c| c.url.as_str());
        let issued = applied.issued.get(&executor.name).cloned();
        let credentials = match by_executor.get(&i) {
            Some(RunnerAction::Keep { credentials, .. }) => {
                Some(
                    issued.unwrap_or_else(|| match rotated_meanwhile.get(&executor.name) {
                        Some(newer) if newer.id == credentials.id => newer.clone(),
                        _ => credentials.clone(),
                    }),
                )
            }
            Some(RunnerAction::Create { fallback, .. }) => match issued {
                Some(c) => Some(c),
                None if show_pending => {
                    runners.push(OutputRunner::Executor {
                        executor,
                        url,
                        credentials: None,
                        token_pending: true,
                    });
                    continue;
                }
                // Not created (yet): the runner it replaces stays in use.
                None => fallback.clone(),
            },
            // Kept exactly as it was in the last output.
            Some(RunnerAction::Hold {
                entry: Some(entry), ..
            }) => {
                runners.push(OutputRunner::Kept(&entry.0));
                continue;
            }
            Some(RunnerAction::Hold { credentials, .. }) => credentials.clone(),
            Some(RunnerAction::Fail { .. }) | None => None,
        };
        // No verified credentials: whatever the last output held for this
        // name goes back byte for byte (a typo in a `token`, a failed
        // create), so that no token is lost.
        if credentials.is_none()
            && let Some(entry) = held_by_executor.get(&i).copied().flatten()
        {
            runners.push(OutputRunner::Kept(&entry.0));
            continue;
        }
        if let Some(credentials) = credentials {
            runners.push(OutputRunner::Executor {
                executor,
                url,
                credentials: Some(credentials),
                // Dry-run (nothing applied): a rotation replaces the token.
                token_pending: show_pending && rotating.contains(&i),
            });
        }
    }
    for (_, _, entry) in &plan.unknown_gitlab {
        runners.push(OutputRunner::Kept(&entry.0));
    }
    for (g, gitlab) in plan.gitlabs.iter().enumerate() {
        for (_, entry) in &gitlab.carry_over {
            runners.push(OutputRunner::Kept(&entry.0));
        }
        if show_pending {
            continue;
        }
        for (d, delete) in gitlab.deletes.iter().enumerate() {
            if let Some(entry) = &delete.held
                && !applied.deleted.contains(&(g, d))
            {
                runners.push(OutputRunner::Kept(&entry.0));
            }
        }
    }
    runners
}

/// What a dry-run shows of the output: the diff from the last output to
/// the planned one, secrets masked, and whether the file's bytes would
/// change at all (decided on the real values: a changed secret setting may
/// look the same in short form).
pub fn planned_diff(inputs: &Inputs, plan: &Plan, store: &TokenStore) -> (String, bool) {
    let runners = assemble(inputs, plan, &Applied::default(), &HashMap::new(), true);
    let planned = output::render(&inputs.template.globals, &runners, Secrets::Mask);
    let current = store
        .text
        .as_deref()
        .map(output::mask_secrets)
        .unwrap_or_default();
    let mut diff = crate::report::diff(&current, &planned);
    let planned_real = output::render(&inputs.template.globals, &runners, Secrets::Reveal);
    let file_changes = store.text.as_deref() != Some(planned_real.as_str());
    if file_changes && diff.is_empty() {
        diff = "(only secret values change; they are not shown)\n".to_string();
    }
    (diff, file_changes)
}

/// Rewrites the output with what is known so far (atomically, only when
/// the bytes change).
pub struct OutputWriter<'a> {
    inputs: &'a Inputs,
    plan: &'a Plan,
    path: &'a std::path::Path,
    /// The last output as read at the start of the run.
    store: &'a TokenStore,
    /// The token this run last wrote for each runner name.
    written: HashMap<String, crate::secret::Secret>,
    /// Tokens gitlab-runner rotated during this run, found so far.
    rotated: HashMap<String, Credentials>,
}

impl<'a> OutputWriter<'a> {
    pub fn new(inputs: &'a Inputs, plan: &'a Plan, store: &'a TokenStore) -> OutputWriter<'a> {
        OutputWriter {
            inputs,
            plan,
            path: &store.path,
            store,
            written: HashMap::new(),
            rotated: HashMap::new(),
        }
    }

    /// Tokens a running gitlab-runner rotated and wrote into the file since
    /// this run read it (reference pitfall 3), by runner name: they are
    /// newer than the ones this run holds.
    fn rotated_meanwhile(&self) -> HashMap<String, Credentials> {
        let Ok(Some(now)) = self.store.reload_if_changed(OffsetDateTime::now_utc()) else {
            return HashMap::new();
        };
        now.runners
            .into_iter()
            .filter(|r| {
                self.written.get(&r.name) != Some(&r.credentials.token)
                    && self.store.find(&r.url, &r.name).is_some_and(|then| {
                        then.credentials.token != r.credentials.token
                            && then.credentials.id == r.credentials.id
                    })
            })
            .map(|r| (r.name, r.credentials))
            .collect()
    }
}

impl Persist for OutputWriter<'_> {
    fn persist(&mut self, applied: &Applied) -> Result<()> {
        for (name, credentials) in self.rotated_meanwhile() {
            tracing::info!(runner = %name, "keeping the token gitlab-runner rotated during this run");
            self.rotated.insert(name, credentials);
        }
        let runners = assemble(self.inputs, self.plan, applied, &self.rotated, false);
        let text = output::render(&self.inputs.template.globals, &runners, Secrets::Reveal);
        self.written = runners
            .iter()
            .filter_map(|r| match r {
                OutputRunner::Executor {
                    executor,
                    credentials: Some(c),
                    ..
                } => Some((executor.name.clone(), c.token.clone())),
                _ => None,
            })
            .collect();
        // A fresh host whose runners all failed to be created: a config
        // with no runner in it would only hide that from gitlab-runner.
        if runners.is_empty() && self.store.text.is_none() && !self.inputs.executors.is_empty() {
            tracing::info!(path = %self.path.display(), "no runner has a token yet: no config written");
            return Ok(());
        }
        if fsutil::write_atomic_if_changed(self.path, text.as_bytes())? {
            let names: Vec<String> = runners
                .iter()
                .map(|r| match r {
                    OutputRunner::Executor { executor, .. } => format!("`{}`", executor.name),
                    OutputRunner::Kept(table) => format!(
                        "`{}` (kept as it was)",
                        table
                            .get("name")
                            .or_else(|| table.get("description"))
                            .and_then(|n| n.as_str())
                            .unwrap_or("?")
                    ),
                })
                .collect();
            tracing::info!(
                path = %self.path.display(),
                "wrote the runner config: {} runner(s){}{}",
                names.len(),
                if names.is_empty() { "" } else { ": " },
                names.join(", ")
            );
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The no-token-dropped rule (SPEC §5) as a property of plan + assemble:
    //! for every held token state × executor token state × GitLab answer ×
    //! apply outcome, a token held before the run is still in the output,
    //! or was deleted in GitLab by this run, or was replaced by a runner
    //! whose token is in the output (or, for an entry no executor wants,
    //! GitLab rejected it: that token names no runner any more).

    use std::collections::{BTreeMap, HashMap, HashSet};
    use std::path::{Path, PathBuf};

    use proptest::prelude::*;
    use time::OffsetDateTime;

    use super::*;
    use crate::config::{Executor, ServerSettings};
    use crate::gitlab::{IssuedToken, ListedRunner};
    use crate::plan::{self, DeleteHow, Listing, Observation, VerifyOutcome};
    use crate::secret::Secret;

    const URL: &str = "https://gitlab.example.com";
    const SYSTEM_ID: &str = "s_0123456789ab";

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Held {
        None,
        /// A `glrt-` runner the tool made (it is in the listing).
        ToolMade,
        /// A `glrt-` runner made in GitLab's UI (not in the listing).
        Ui,
        /// A registration-token runner.
        Registered,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Answer {
        Valid,
        Rejected,
        Error,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum Own {
        None,
        SameAsHeld,
        Other,
    }

    #[derive(Debug, Clone, Copy, PartialEq)]
    enum List {
        NoPat,
        Listed,
        Failed,
    }

    #[derive(Debug, Clone)]
    struct Case {
        held: Held,
        held_answer: Answer,
        own: Own,
        own_answer: Answer,
        /// An entry whose executor file is gone, and GitLab's answer for it.
        stale: Option<(Held, Answer)>,
        listing: List,
        unreachable: bool,
        create_ok: bool,
        delete_ok: bool,
    }

    fn held() -> impl Strategy<Value = Held> {
        prop_oneof![
            Just(Held::None),
            Just(Held::ToolMade),
            Just(Held::Ui),
            Just(Held::Registered)
        ]
    }

    fn answer() -> impl Strategy<Value = Answer> {
        prop_oneof![
            Just(Answer::Valid),
            Just(Answer::Rejected),
            Just(Answer::Error)
        ]
    }

    fn case() -> impl Strategy<Value = Case> {
        (
            held(),
            answer(),
            prop_oneof![Just(Own::None), Just(Own::SameAsHeld), Just(Own::Other)],
            answer(),
            proptest::option::of((
                held().prop_filter("an entry", |h| *h != Held::None),
                answer(),
            )),
            prop_oneof![Just(List::NoPat), Just(List::Listed), Just(List::Failed)],
            any::<bool>(),
            any::<bool>(),
            any::<bool>(),
        )
            .prop_map(
                |(
                    held,
                    held_answer,
                    own,
                    own_answer,
                    stale,
                    listing,
                    unreachable,
                    create_ok,
                    delete_ok,
                )| Case {
                    held,
                    held_answer,
                    own,
                    own_answer,
                    stale,
                    listing,
                    unreachable,
                    create_ok,
                    delete_ok,
                },
            )
    }

    fn token_of(kind: Held, n: u32) -> String {
        match kind {
            Held::Registered => format!("t1_registered{n:08}"),
            _ => format!("glrt-held{n:012}"),
        }
    }

    fn entry(name: &str, id: u64, token: &str) -> String {
        format!(
            "[[runners]]\nname = \"{name}\"\nurl = \"{URL}\"\nid = {id}\ntoken = \"{token}\"\n\
             token_obtained_at = 2026-01-01T00:00:00Z\ntoken_expires_at = 0001-01-01T00:00:00Z\nexecutor = \"shell\"\n\n"
        )
    }

    fn outcome(answer: Answer, id: u64, token: &str) -> VerifyOutcome {
        match answer {
            Answer::Valid => VerifyOutcome::Valid(IssuedToken {
                id: Some(id),
                token: Secret::new(token),
                expires_at: None,
            }),
            Answer::Rejected => VerifyOutcome::Rejected(403),
            Answer::Error => VerifyOutcome::Error("HTTP 500".into()),
        }
    }

    /// Runs plan, a model of apply with the case's outcomes, and assemble;
    /// returns the held tokens that are nowhere to be found afterwards.
    fn lost_tokens(case: &Case) -> Vec<String> {
        let now = OffsetDateTime::now_utc();
        let own_token = match case.own {
            Own::None => None,
            Own::SameAsHeld if case.held != Held::None => Some(token_of(case.held, 1)),
            Own::SameAsHeld | Own::Other => Some("glrt-ownfile000000000000".to_string()),
        };
        let inputs = inputs_of(case, own_token.as_deref());
        let (store, observation, held_tokens) =
            store_and_observation(case, own_token.as_deref(), now);
        let tags = vec![vec!["node01".to_string(), "managed".into(), "main".into()]];
        let instances = crate::store::Instances {
            this: "main".into(),
            others: vec![],
        };
        let plan = plan::plan(
            &inputs,
            &tags,
            &store,
            &instances,
            &[observation],
            now,
            false,
        );

        let (applied, new_tokens) = apply_model(case, &plan, now);
        let runners = assemble(&inputs, &plan, &applied, &HashMap::new(), false);
        let written: HashSet<String> = runners
            .iter()
            .filter_map(|r| match r {
                OutputRunner::Executor {
                    credentials: Some(c),
                    ..
                } => Some(c.token.expose().to_string()),
                OutputRunner::Kept(table) => table
                    .get("token")
                    .and_then(|t| t.as_str())
                    .map(str::to_string),
                OutputRunner::Executor {
                    credentials: None, ..
                } => None,
            })
            .collect();
        let deleted: Vec<&DeleteHow> = plan
            .gitlabs
            .iter()
            .enumerate()
            .flat_map(|(g, gl)| {
                gl.deletes
                    .iter()
                    .enumerate()
                    .map(move |(d, del)| ((g, d), del))
            })
            .filter(|(at, _)| applied.deleted.contains(at))
            .map(|(_, del)| &del.how)
            .collect();
        let replaced = written
            .iter()
            .any(|t| new_tokens.contains(t) || Some(t) == own_token.as_ref());
        unaccounted(case, held_tokens, &written, &deleted, replaced)
    }

    /// The held tokens (token, id, wanted) that are neither in the output,
    /// nor deleted here, nor replaced, nor gone in GitLab.
    fn unaccounted(
        case: &Case,
        held_tokens: Vec<(String, u64, bool)>,
        written: &HashSet<String>,
        deleted: &[&DeleteHow],
        replaced: bool,
    ) -> Vec<String> {
        held_tokens
            .into_iter()
            .filter(|(token, id, wanted)| {
                let in_output = written.contains(token);
                let deleted_here = deleted.iter().any(|how| match how {
                    DeleteHow::ById(d) => d == id,
                    DeleteHow::ByToken(t) | DeleteHow::Manager(t) => t.expose() == token,
                });
                let answer = if *wanted {
                    Some(case.held_answer)
                } else {
                    case.stale.map(|(_, a)| a)
                };
                let gone_in_gitlab = !wanted && answer == Some(Answer::Rejected);
                let replaced_here = *wanted && replaced;
                !(in_output || deleted_here || replaced_here || gone_in_gitlab)
            })
            .map(|(token, _, _)| token)
            .collect()
    }

    fn inputs_of(case: &Case, own_token: Option<&str>) -> Inputs {
        let executor = Executor {
            file: PathBuf::from("/etc/gitlab-runner/main/shell.toml"),
            url: URL.into(),
            executor: "shell".into(),
            name: "shell".into(),
            token: own_token.map(Secret::new),
            env_tags: vec![],
            tags: vec![],
            server: ServerSettings::default(),
            settings: toml_edit::Table::new(),
        };
        let pat = case.listing != List::NoPat;
        Inputs::for_test(URL, pat, vec![executor])
    }

    /// The last output and GitLab's answers of the case, with the held
    /// tokens as (token, id, wanted by an executor).
    fn store_and_observation(
        case: &Case,
        own_token: Option<&str>,
        now: OffsetDateTime,
    ) -> (TokenStore, Observation, Vec<(String, u64, bool)>) {
        let mut text = String::new();
        let mut verified = HashMap::new();
        let mut listed = Vec::new();
        let mut held_tokens = Vec::new();
        if case.held != Held::None {
            let token = token_of(case.held, 1);
            text.push_str(&entry("shell", 1, &token));
            verified.insert(Secret::new(&token), outcome(case.held_answer, 1, &token));
            if case.held == Held::ToolMade {
                listed.push(ListedRunner {
                    id: 1,
                    description: Some("shell".into()),
                });
            }
            held_tokens.push((token, 1u64, true));
        }
        if let Some((kind, answer)) = case.stale {
            let token = token_of(kind, 2);
            text.push_str(&entry("gone", 2, &token));
            verified.insert(Secret::new(&token), outcome(answer, 2, &token));
            if kind == Held::ToolMade {
                listed.push(ListedRunner {
                    id: 2,
                    description: Some("gone".into()),
                });
            }
            held_tokens.push((token, 2, false));
        }
        if let Some(own) = own_token
            && !verified.contains_key(&Secret::new(own))
        {
            verified.insert(Secret::new(own), outcome(case.own_answer, 3, own));
        }
        let store = TokenStore::from_text(
            Path::new("/etc/gitlab-runner/config.main.toml"),
            (!text.is_empty()).then_some(text),
            Some(0o600),
            now,
        )
        .expect("the test's own store parses");
        let observation = if case.unreachable {
            Observation::unreachable("connection refused".into(), SYSTEM_ID, "node01 main ")
        } else {
            let managers = listed
                .iter()
                .map(|r| (r.id, Ok(vec![SYSTEM_ID.to_string()])))
                .collect::<BTreeMap<_, _>>();
            Observation {
                unreachable: None,
                verified,
                listing: match case.listing {
                    List::NoPat => Listing::NoPat,
                    List::Listed => Listing::Listed(listed),
                    List::Failed => Listing::Failed("HTTP 500".into()),
                },
                details: BTreeMap::new(),
                managers,
                system_id: SYSTEM_ID.into(),
                name_prefix: "node01 main ".into(),
                original: None,
            }
        };
        (store, observation, held_tokens)
    }

    /// Apply, as a model: creates and deletes succeed or fail as the case
    /// says. Returns what was applied and the tokens of created runners.
    fn apply_model(case: &Case, plan: &Plan, now: OffsetDateTime) -> (Applied, HashSet<String>) {
        let mut applied = Applied::default();
        let mut new_tokens = HashSet::new();
        for (g, gitlab) in plan.gitlabs.iter().enumerate() {
            if gitlab.offline.is_some() {
                continue;
            }
            for r in &gitlab.runners {
                if matches!(r.action, RunnerAction::Create { .. }) && case.create_ok {
                    let token = format!("glrt-new-{}", r.name);
                    new_tokens.insert(token.clone());
                    applied.issued.insert(
                        r.name.clone(),
                        Credentials {
                            id: 9,
                            token: Secret::new(token),
                            obtained_at: now,
                            expires_at: None,
                        },
                    );
                }
            }
            for (d, delete) in gitlab.deletes.iter().enumerate() {
                let waits = delete
                    .after_create
                    .as_ref()
                    .is_some_and(|n| !applied.issued.contains_key(n));
                if case.delete_ok && !waits {
                    applied.deleted.insert((g, d));
                }
            }
        }
        (applied, new_tokens)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]
        #[test]
        fn a_held_token_is_kept_deleted_or_replaced(case in case()) {
            let lost = lost_tokens(&case);
            prop_assert!(lost.is_empty(), "lost {:?} in {:?}", lost, case);
        }
    }

    /// The case: a mistyped `token` added to a synced executor.
    #[test]
    fn a_mistyped_token_keeps_the_held_entry() {
        let case = Case {
            held: Held::ToolMade,
            held_answer: Answer::Valid,
            own: Own::Other,
            own_answer: Answer::Rejected,
            stale: None,
            listing: List::Listed,
            unreachable: false,
            create_ok: false,
            delete_ok: false,
        };
        assert!(lost_tokens(&case).is_empty());
    }
}
