//! Server-side settings of a runner: what a create sends, and how a kept
//! runner's settings differ from its executor file.

use std::collections::HashSet;

use crate::config::Executor;
use crate::gitlab::{RunnerAttributes, RunnerDetails};

use super::Update;

/// What `POST /user/runners` / `POST /runners` get for a new runner.
pub(super) fn create_attributes(executor: &Executor, tags: &[String]) -> RunnerAttributes {
    let s = &executor.server;
    RunnerAttributes {
        description: Some(executor.name.clone()),
        tag_list: Some(tags.to_vec()),
        run_untagged: Some(s.run_untagged),
        locked: Some(s.locked),
        paused: s.paused,
        access_level: s.access_level.clone(),
        maximum_timeout: s.maximum_timeout,
        maintenance_note: s.maintenance_note.clone(),
    }
}

/// The settings of a kept runner that differ from its executor file.
pub(super) fn drift(
    executor: &Executor,
    tags: &[String],
    details: &RunnerDetails,
) -> Option<Update> {
    let s = &executor.server;
    let mut changes = RunnerAttributes::default();
    let mut fields = Vec::new();
    if details.description.as_deref() != Some(executor.name.as_str()) {
        changes.description = Some(executor.name.clone());
        fields.push("description");
    }
    let have: HashSet<&str> = details.tag_list.iter().map(String::as_str).collect();
    let want: HashSet<&str> = tags.iter().map(String::as_str).collect();
    if have != want {
        changes.tag_list = Some(tags.to_vec());
        fields.push("tag_list");
    }
    if details.run_untagged != s.run_untagged {
        changes.run_untagged = Some(s.run_untagged);
        fields.push("run_untagged");
    }
    if details.locked != s.locked {
        changes.locked = Some(s.locked);
        fields.push("locked");
    }
    if let Some(paused) = s.paused
        && details.paused != paused
    {
        changes.paused = Some(paused);
        fields.push("paused");
    }
    if let Some(level) = &s.access_level
        && details.access_level.as_ref() != Some(level)
    {
        changes.access_level = Some(level.clone());
        fields.push("access_level");
    }
    if let Some(timeout) = s.maximum_timeout
        && details.maximum_timeout != Some(timeout)
    {
        changes.maximum_timeout = Some(timeout);
        fields.push("maximum_timeout");
    }
    if let Some(note) = &s.maintenance_note
        && details.maintenance_note.as_ref() != Some(note)
    {
        changes.maintenance_note = Some(note.clone());
        fields.push("maintenance_note");
    }
    (!fields.is_empty()).then(|| Update {
        id: details.id,
        changes,
        reason: format!("{} differ from the executor file", fields.join(", ")),
    })
}
