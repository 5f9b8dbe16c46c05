//! The JSON shapes GitLab's API presents (`lib/api/entities/ci/*`):
//! `Runner` (list items), `RunnerDetails`, `RunnerManager`,
//! `RunnerRegistrationDetails`, `ResetTokenResult`, plus the current user.

use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::auth::Caller;
use crate::clock;
use crate::state::{self, Manager, Runner, RunnerType};

fn time_or_null(t: Option<OffsetDateTime>) -> Value {
    t.map(|t| Value::String(clock::rfc3339(t)))
        .unwrap_or(Value::Null)
}

/// `Entities::Ci::Runner`.
pub(crate) fn runner(r: &Runner, now: OffsetDateTime) -> Value {
    json!({
        "id": r.id,
        "description": r.description,
        "ip_address": null,
        "active": !r.paused,
        "paused": r.paused,
        "is_shared": r.runner_type == RunnerType::Instance,
        "runner_type": r.runner_type.as_str(),
        "name": r.name,
        "online": r.online(now),
        "status": r.rest_status(now),
    })
}

/// `Entities::Ci::RunnerDetails`; with `patched`, LLNL's extra `token`.
pub(crate) fn runner_details(
    r: &Runner,
    now: OffsetDateTime,
    caller: Caller,
    patched: bool,
    base_url: &str,
) -> Value {
    let mut v = runner(r, now);
    let latest = r.latest_manager();
    let from_manager = |f: fn(&Manager) -> &Option<String>| {
        latest
            .and_then(|m| f(m).clone())
            .map(Value::String)
            .unwrap_or(Value::Null)
    };
    let projects: Vec<Value> = match r.runner_type {
        RunnerType::Project => r
            .project_id
            .map(|id| {
                let (name, path) = state::project(id)
                    .map(|(_, n, p)| (n.to_string(), p.to_string()))
                    .unwrap_or_else(|| (format!("project-{id}"), format!("unknown/project-{id}")));
                let namespace = path.split('/').next().unwrap_or("").to_string();
                json!({
                    "id": id,
                    "description": null,
                    "name": name,
                    "name_with_namespace": format!("{namespace} / {name}"),
                    "path": path.rsplit('/').next().unwrap_or(""),
                    "path_with_namespace": path,
                })
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    let groups: Vec<Value> = match r.runner_type {
        RunnerType::Group => r
            .group_id
            .map(|id| {
                let (name, path) = state::group(id)
                    .map(|(_, n, p)| (n.to_string(), p.to_string()))
                    .unwrap_or_else(|| (format!("group-{id}"), format!("group-{id}")));
                json!({"id": id, "web_url": format!("{base_url}/groups/{path}"), "name": name})
            })
            .into_iter()
            .collect(),
        _ => Vec::new(),
    };
    if let Value::Object(map) = &mut v {
        map.insert("tag_list".into(), json!(r.tag_list));
        map.insert("run_untagged".into(), json!(r.run_untagged));
        map.insert("locked".into(), json!(r.locked));
        map.insert("maximum_timeout".into(), json!(r.maximum_timeout));
        map.insert("access_level".into(), json!(r.access_level));
        map.insert("version".into(), from_manager(|m| &m.version));
        map.insert("revision".into(), from_manager(|m| &m.revision));
        map.insert("platform".into(), from_manager(|m| &m.platform));
        map.insert("architecture".into(), from_manager(|m| &m.architecture));
        map.insert("contacted_at".into(), time_or_null(r.contacted_at));
        if caller.can_update(r) {
            map.insert("maintenance_note".into(), json!(r.maintenance_note));
        }
        map.insert("projects".into(), Value::Array(projects));
        map.insert("groups".into(), Value::Array(groups));
        if patched && caller.can_update(r) {
            map.insert("token".into(), json!(r.token));
        }
    }
    v
}

/// `Entities::Ci::RunnerManager`.
pub(crate) fn manager(m: &Manager, now: OffsetDateTime) -> Value {
    json!({
        "id": m.id,
        "system_id": m.system_id,
        "version": m.version,
        "revision": m.revision,
        "platform": m.platform,
        "architecture": m.architecture,
        "created_at": clock::rfc3339(m.created_at),
        "contacted_at": time_or_null(m.contacted_at),
        "ip_address": m.ip_address,
        "status": m.status(now),
        "job_execution_status": "idle",
    })
}

/// `Entities::Ci::RunnerRegistrationDetails`.
pub(crate) fn registration_details(r: &Runner) -> Value {
    json!({
        "id": r.id,
        "token": r.token,
        "token_expires_at": time_or_null(r.token_expires_at),
    })
}

/// `Entities::Ci::ResetTokenResult`.
pub(crate) fn reset_token_result(r: &Runner) -> Value {
    json!({
        "token": r.token,
        "token_expires_at": time_or_null(r.token_expires_at),
    })
}

/// `Entities::UserPublic`-like view of the current user (`GET /user`).
pub(crate) fn user(caller: Caller, base_url: &str) -> Value {
    let (id, username, name) = match caller {
        Caller::Admin => (1, "root", "Administrator"),
        Caller::User => (2, "sim-user", "Sim User"),
    };
    json!({
        "id": id,
        "username": username,
        "name": name,
        "state": "active",
        "locked": false,
        "avatar_url": null,
        "web_url": format!("{base_url}/{username}"),
        "created_at": "2024-01-01T00:00:00.000Z",
        "bot": false,
        "email": format!("{username}@example.com"),
        "is_admin": caller.is_admin(),
        "can_create_group": true,
        "can_create_project": true,
        "two_factor_enabled": false,
        "external": false,
        "private_profile": false,
    })
}
