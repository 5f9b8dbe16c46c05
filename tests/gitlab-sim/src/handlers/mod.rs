//! The endpoint handlers, one module per kind of credential: runner and
//! registration tokens (`runner_token`), PAT runner administration
//! (`runners`), and the current user (`user`). This module holds what they
//! share: runner settings parameters and response helpers.

pub(crate) mod runner_token;
pub(crate) mod runners;
pub(crate) mod user;

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::RunnerInfo;

/// `Ci::Runner.access_levels.keys`.
pub(crate) const ACCESS_LEVELS: [&str; 2] = ["not_protected", "ref_protected"];

/// Server-side runner settings given in a request (all optional).
#[derive(Debug, Default, Clone)]
pub(crate) struct Settings {
    pub description: Option<String>,
    pub maintenance_note: Option<String>,
    pub paused: Option<bool>,
    pub locked: Option<bool>,
    pub run_untagged: Option<bool>,
    pub access_level: Option<String>,
    pub tag_list: Option<Vec<String>>,
    pub maximum_timeout: Option<i64>,
}

/// Which deprecated aliases an endpoint accepts.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Aliases {
    /// `active` (= `!paused`).
    pub active: bool,
    /// `maintainer_note` (= `maintenance_note`).
    pub maintainer_note: bool,
}

impl Settings {
    /// Reads and type-checks the settings parameters (Grape 400s).
    pub(crate) fn parse(p: &Params, aliases: Aliases) -> Result<Settings, ApiError> {
        if aliases.active {
            p.mutually_exclusive(&["active", "paused"])?;
        }
        if aliases.maintainer_note {
            p.mutually_exclusive(&["maintainer_note", "maintenance_note"])?;
        }
        let mut paused = p.boolean("paused")?;
        if aliases.active
            && let Some(active) = p.boolean("active")?
        {
            paused = Some(!active);
        }
        let mut maintenance_note = p.string("maintenance_note")?;
        if aliases.maintainer_note && maintenance_note.is_none() {
            maintenance_note = p.string("maintainer_note")?;
        }
        Ok(Settings {
            description: p.string("description")?,
            maintenance_note,
            paused,
            locked: p.boolean("locked")?,
            run_untagged: p.boolean("run_untagged")?,
            access_level: p.one_of("access_level", &ACCESS_LEVELS)?,
            tag_list: p.tag_list("tag_list")?,
            maximum_timeout: p.integer("maximum_timeout")?,
        })
    }
}

/// `info[version]`, … sent by gitlab-runner.
pub(crate) fn runner_info(p: &Params) -> Result<(Option<String>, RunnerInfo), ApiError> {
    let Some(info) = p.hash("info")? else {
        return Ok((None, RunnerInfo::default()));
    };
    Ok((
        info.string("name")?,
        RunnerInfo {
            version: info.string("version")?,
            revision: info.string("revision")?,
            platform: info.string("platform")?,
            architecture: info.string("architecture")?,
        },
    ))
}

/// A path `:id` (Grape `type: Integer`).
pub(crate) fn runner_id(raw: &str) -> Result<u64, ApiError> {
    raw.parse().map_err(|_| ApiError::grape("id is invalid"))
}

/// A JSON response with a status.
pub(crate) fn json(status: StatusCode, body: Value) -> Response {
    (status, Json(body)).into_response()
}

/// 204 with no body.
pub(crate) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

/// A maximum timeout that passed validation (≥ 600) as stored.
pub(crate) fn stored_timeout(t: Option<i64>) -> Option<u64> {
    t.and_then(|t| u64::try_from(t).ok())
}
