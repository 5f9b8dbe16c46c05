//! The dry-run report (SPEC §4): the plan, one line per action, grouped by
//! GitLab, then a unified diff of `config.<instance>.toml` with every secret
//! in short form. Text (coloured only on a terminal) or JSON for automation.
//! This module only formats; it never sees a secret's full value. Names and
//! reasons may come from GitLab: in the text report their control
//! characters are escaped and token-shaped words masked
//! ([`crate::logging::sanitize`]), so that a runner name cannot forge a
//! line or drive the terminal; JSON escapes them itself.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::apply::Applied;
use crate::plan::{DeleteHow, GitLabPlan, Plan, RunnerAction, RunnerPlan};

/// One line of the plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    pub action: &'static str,
    pub name: String,
    pub id: Option<u64>,
    pub reason: String,
    /// An update's changes, field by field (`tags: +managed -old_tag`,
    /// `locked: true → false`); empty for other actions.
    pub changes: Vec<String>,
}

/// The plan's lines for each GitLab, in order.
pub fn lines(plan: &Plan) -> Vec<(String, Vec<Line>)> {
    plan.gitlabs
        .iter()
        .map(|g| {
            let mut lines = Vec::new();
            for r in &g.runners {
                let (action, id) = match &r.action {
                    RunnerAction::Keep { credentials, .. } => ("keep", nonzero(credentials.id)),
                    RunnerAction::Create { .. } => ("create", None),
                    RunnerAction::Hold { credentials, .. } => {
                        ("hold", credentials.as_ref().and_then(|c| nonzero(c.id)))
                    }
                    RunnerAction::Fail { .. } => ("fail", None),
                };
                lines.push(Line {
                    action,
                    name: r.name.clone(),
                    id,
                    reason: r.action.reason().to_string(),
                    changes: Vec::new(),
                });
                if let Some(update) = &r.update {
                    lines.push(Line {
                        action: "update",
                        name: r.name.clone(),
                        id: Some(update.id),
                        reason: update.reason.clone(),
                        changes: update.fields.clone(),
                    });
                }
                if r.rotate {
                    lines.push(Line {
                        action: "rotate",
                        name: r.name.clone(),
                        id,
                        reason: "token in the last quarter of its life".into(),
                        changes: Vec::new(),
                    });
                }
            }
            for d in &g.deletes {
                let action = match d.how {
                    DeleteHow::Manager(_) => "delete-manager",
                    _ => "delete",
                };
                lines.push(Line {
                    action,
                    name: d.name.clone(),
                    id: d.id,
                    reason: d.reason.clone(),
                    changes: Vec::new(),
                });
            }
            for (name, _) in &g.carry_over {
                lines.push(Line {
                    action: "hold",
                    name: name.clone(),
                    id: None,
                    reason: "no executor file, but it cannot be deleted now: entry kept".into(),
                    changes: Vec::new(),
                });
            }
            (g.url.clone(), lines)
        })
        .collect()
}

fn nonzero(id: u64) -> Option<u64> {
    (id != 0).then_some(id)
}

/// A unified diff of the output file, `--- current` / `+++ planned`.
/// Tokens were masked while rendering; anything token-shaped left (in a
/// comment copied from the template, say) is masked here too.
pub fn diff(current: &str, planned: &str) -> String {
    if current == planned {
        return String::new();
    }
    let diff = similar::TextDiff::from_lines(current, planned)
        .unified_diff()
        .context_radius(3)
        .header("current", "planned")
        .to_string();
    crate::secret::mask_token_like(&diff)
}

/// The text report.
pub fn text(plan: &Plan, diff: &str, colour: bool) -> String {
    let paint = |code: &str, s: &str| {
        if colour {
            format!("\x1b[{code}m{s}\x1b[0m")
        } else {
            s.to_string()
        }
    };
    // Masked like a log line: a name from GitLab may hold a token too.
    let safe = crate::logging::sanitize;
    let mut out = String::new();
    for (url, lines) in lines(plan) {
        let _ = writeln!(out, "GitLab {}", safe(&url));
        let g = plan.gitlabs.iter().find(|g| g.url == url);
        if let Some(g) = g
            && let (Some(reason), Some(kind)) = (&g.offline, g.offline_kind())
        {
            let _ = writeln!(out, "  ({kind}: {})", safe(reason));
        }
        if lines.is_empty() {
            let _ = writeln!(out, "  (no executors)");
        }
        for line in lines {
            let id = line
                .id
                .map(|id| format!("#{id}"))
                .unwrap_or_else(|| "-".into());
            let action = format!("{:<14}", line.action);
            let action = match line.action {
                "create" => paint("32", &action),
                "delete" | "delete-manager" | "fail" => paint("31", &action),
                "update" | "rotate" | "hold" => paint("33", &action),
                _ => action,
            };
            let tags = g
                .and_then(|g| create_tags(g, &line))
                .map(|tags| format!(" [tags: {}]", safe(&tags.join(", "))))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {action} {:<40} {:<8} {}{tags}",
                quote(&safe(&line.name)),
                id,
                safe(&line.reason)
            );
            for change in &line.changes {
                let _ = writeln!(out, "  {:<14} {}", "", safe(change));
            }
        }
        for problem in g.map(|g| g.problems.as_slice()).unwrap_or_default() {
            let _ = writeln!(out, "  {} {}", paint("31", "error:"), safe(problem));
        }
    }
    if diff.is_empty() {
        let _ = writeln!(out, "\nconfig: no change");
    } else {
        let _ = writeln!(out);
        for line in diff.lines() {
            let line = safe(line);
            let line = line.as_str();
            let painted = if line.starts_with("+++") || line.starts_with("---") {
                paint("1", line)
            } else if line.starts_with('+') {
                paint("32", line)
            } else if line.starts_with('-') {
                paint("31", line)
            } else if line.starts_with("@@") {
                paint("36", line)
            } else {
                line.to_string()
            };
            let _ = writeln!(out, "{painted}");
        }
    }
    out
}

/// The tags a create line's runner is created with (`None` for any other
/// line).
fn create_tags<'a>(g: &'a GitLabPlan, line: &Line) -> Option<&'a Vec<String>> {
    if line.action != "create" {
        return None;
    }
    g.runners
        .iter()
        .find(|r| r.name == line.name)
        .and_then(|r| match &r.action {
            RunnerAction::Create { attributes, .. } => attributes.tag_list.as_ref(),
            _ => None,
        })
}

fn quote(name: &str) -> String {
    format!("\"{name}\"")
}

/// The JSON report: `{"changes", "gitlabs": [{url, offline, problems,
/// actions: [{action, name, id, reason, changes, tags}]}], "diff"}`;
/// `changes` lists an update's field changes (empty for other actions),
/// `tags` a create's tags (else null).
pub fn json(plan: &Plan, diff: &str, changes: bool) -> Value {
    let gitlabs: Vec<Value> = lines(plan)
        .into_iter()
        .zip(&plan.gitlabs)
        .map(|((url, lines), g)| {
            json!({
                "url": url,
                "offline": g.offline,
                "problems": g.problems,
                "warnings": g.warnings,
                "actions": lines.iter().map(|l| json!({
                    "action": l.action,
                    "name": l.name,
                    "id": l.id,
                    "reason": l.reason,
                    "changes": l.changes,
                    "tags": create_tags(g, l),
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    json!({"changes": changes, "gitlabs": gitlabs, "diff": diff})
}

/// Logs what the plan found worth a warning: entries of a url no client
/// config names, GitLabs that could not be used, each GitLab's warnings.
pub fn log_warnings(plan: &Plan) {
    for (name, url, _) in &plan.unknown_gitlab {
        tracing::warn!(
            "runner `{name}` in the last config is on `{url}`, which client_configs no longer names: \
             its entry is kept so that its token is not lost; delete the runner in GitLab and the entry by hand, \
             or put the url back"
        );
    }
    for g in &plan.gitlabs {
        if let (Some(reason), Some(kind)) = (&g.offline, g.offline_kind()) {
            tracing::warn!(gitlab = %g.url, "GitLab is {kind}: {reason}");
        }
        for warning in &g.warnings {
            tracing::warn!(gitlab = %g.url, "{warning}");
        }
    }
}

/// What a run did, runner by runner: the counts of the final summary line
/// and of the metrics file's `register_runner_last_run_runners`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub created: usize,
    pub updated: usize,
    pub rotated: usize,
    pub deleted: usize,
    pub kept: usize,
    pub held: usize,
    pub failed: usize,
    pub warnings: usize,
}

impl Counts {
    pub fn of_run(plan: &Plan, applied: &Applied, failed: usize, warnings: usize) -> Counts {
        let runners = || plan.gitlabs.iter().flat_map(|g| &g.runners);
        let issued = |r: &&RunnerPlan| applied.issued.contains_key(&r.name);
        let created = runners()
            .filter(|r| matches!(r.action, RunnerAction::Create { .. }))
            .filter(issued)
            .count();
        let rotated = runners().filter(|r| r.rotate).filter(issued).count();
        let kept = runners()
            .filter(|r| matches!(r.action, RunnerAction::Keep { .. }))
            .count();
        let held = runners()
            .filter(|r| matches!(r.action, RunnerAction::Hold { .. }))
            .count()
            + plan
                .gitlabs
                .iter()
                .map(|g| g.carry_over.len())
                .sum::<usize>()
            + plan.unknown_gitlab.len();
        Counts {
            created,
            updated: applied.updated,
            rotated,
            deleted: applied.deleted.len(),
            kept,
            held,
            failed,
            warnings,
        }
    }

    /// The runner states in summary order (warnings are not a state).
    pub fn by_state(&self) -> [(&'static str, usize); 7] {
        [
            ("created", self.created),
            ("updated", self.updated),
            ("rotated", self.rotated),
            ("deleted", self.deleted),
            ("kept", self.kept),
            ("held", self.held),
            ("failed", self.failed),
        ]
    }
}

/// The counts of the final summary line, for people and for monitoring:
/// `created=1 updated=0 rotated=0 deleted=2 kept=5 held=0 failed=0 warnings=1`.
impl std::fmt::Display for Counts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for (state, n) in self.by_state() {
            write!(f, "{state}={n} ")?;
        }
        write!(f, "warnings={}", self.warnings)
    }
}
