//! Server-side settings of a runner: what a create sends, and how a kept
//! runner's settings differ from its executor file.

use std::collections::HashSet;

use crate::config::Executor;
use crate::gitlab::{RunnerAttributes, RunnerDetails};

use super::Update;

/// What `POST /user/runners` / `POST /runners` get for a new runner.
pub(super) fn create_attributes(executor: &Executor, tags: &[String]) -> RunnerAttributes {
    let mut attributes = RunnerAttributes {
        description: Some(executor.name.clone()),
        tag_list: Some(tags.to_vec()),
        ..RunnerAttributes::default()
    };
    executor.server.send(&mut attributes);
    attributes
}

/// The settings of a kept runner that differ from its executor file.
pub(super) fn drift(
    executor: &Executor,
    tags: &[String],
    details: &RunnerDetails,
) -> Option<Update> {
    let mut changes = RunnerAttributes::default();
    let mut fields = Vec::new();
    let mut shown = Vec::new();
    if details.description.as_deref() != Some(executor.name.as_str()) {
        changes.description = Some(executor.name.clone());
        fields.push("description");
        shown.push(format!(
            "description: {} → {:?}",
            details
                .description
                .as_ref()
                .map_or_else(|| "(unset)".to_string(), |d| format!("{d:?}")),
            executor.name
        ));
    }
    let have: HashSet<&str> = details.tag_list.iter().map(String::as_str).collect();
    let want: HashSet<&str> = tags.iter().map(String::as_str).collect();
    if have != want {
        changes.tag_list = Some(tags.to_vec());
        fields.push("tag_list");
        shown.push(tag_change(&details.tag_list, tags));
    }
    fields.extend(executor.server.drift(details, &mut changes));
    shown.extend(executor.server.shown_drift(details));
    (!fields.is_empty()).then(|| Update {
        id: details.id,
        changes,
        reason: format!("{} differ from the executor file", fields.join(", ")),
        fields: shown,
    })
}

/// `tags: +added -removed`: added in the wanted order, removed in GitLab's.
pub(super) fn tag_change(have: &[String], want: &[String]) -> String {
    let added = want
        .iter()
        .filter(|t| !have.contains(t))
        .map(|t| format!("+{t}"));
    let removed = have
        .iter()
        .filter(|t| !want.contains(t))
        .map(|t| format!("-{t}"));
    let all: Vec<String> = added.chain(removed).collect();
    format!("tags: {}", all.join(" "))
}
