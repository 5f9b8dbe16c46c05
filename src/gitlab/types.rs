//! What goes over the wire: the request bodies this tool sends (each a
//! struct deriving `Serialize`, with absent settings left out) and the
//! answers it reads (`Deserialize`, token fields wrapped in [`Secret`] the
//! moment they are parsed). Shapes: `reference/gitlab-api.md`. No I/O here.
//!
//! The bodies serialize with their keys in alphabetical order, as the
//! `json!` maps they replace did (serde_json without `preserve_order`),
//! except the create body, whose scope keys follow the settings.

use std::fmt;

use reqwest::StatusCode;
use reqwest::header::HeaderMap;
use serde::{Deserialize, Serialize, Serializer};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::config::RunnerScope;
use crate::secret::Secret;

/// What GitLab answers with a runner token (create, register, verify,
/// reset): `RunnerRegistrationDetails` / `ResetTokenResult`.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// Absent from a reset, and from a legacy plain-text verify answer.
    pub id: Option<u64>,
    pub token: Secret,
    pub expires_at: Option<OffsetDateTime>,
}

/// `POST /runners/verify`.
#[derive(Debug, Clone)]
pub enum Verified {
    Valid(IssuedToken),
    /// 403 (unknown token) or 422 (orphaned runner): the token is useless.
    Rejected(u16),
}

/// A runner as `GET /runners(/all)` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct ListedRunner {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
}

/// `GET /runners/:id` (the fields we compare).
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
pub struct RunnerDetails {
    pub id: u64,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub tag_list: Vec<String>,
    #[serde(default)]
    pub run_untagged: bool,
    #[serde(default)]
    pub locked: bool,
    #[serde(default)]
    pub paused: bool,
    #[serde(default)]
    pub access_level: Option<String>,
    #[serde(default)]
    pub maximum_timeout: Option<u64>,
    #[serde(default)]
    pub maintenance_note: Option<String>,
    /// Only on servers with LLNL's `runner_details` patch.
    #[serde(default, skip_serializing)]
    pub token: Option<SecretField>,
}

/// A token field of a JSON answer, wrapped at once so it cannot be printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretField(pub Secret);

impl<'de> Deserialize<'de> for SecretField {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d).map(|s| SecretField(Secret::new(s)))
    }
}

impl fmt::Debug for SecretField {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Server-side settings of a runner, as sent on create and update: the
/// body of `PUT /runners/:id`, and the settings part of the create and
/// register bodies. A `None` is left out of the body (GitLab's default, or
/// the runner's current value, stays). Fields in alphabetical order: the
/// order of the keys on the wire.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RunnerAttributes {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub access_level: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub locked: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maintenance_note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub maximum_timeout: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub paused: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub run_untagged: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tag_list: Option<Vec<String>>,
}

/// The one place a token enters a request body.
fn expose<S: Serializer>(secret: &Secret, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(secret.expose())
}

/// `POST /user/runners` (gitlab-api.md §3): the settings, the runner type
/// and the group or project it belongs to.
#[derive(Debug, Serialize)]
pub(super) struct CreateRunner<'a> {
    #[serde(flatten)]
    pub attrs: &'a RunnerAttributes,
    pub runner_type: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub group_id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub project_id: Option<u64>,
}

impl<'a> CreateRunner<'a> {
    pub fn new(scope: RunnerScope, attrs: &'a RunnerAttributes) -> Self {
        let (runner_type, group_id, project_id) = match scope {
            RunnerScope::Instance => ("instance_type", None, None),
            RunnerScope::Group(id) => ("group_type", Some(id), None),
            RunnerScope::Project(id) => ("project_type", None, Some(id)),
        };
        CreateRunner {
            attrs,
            runner_type,
            group_id,
            project_id,
        }
    }
}

/// `POST /runners` with a legacy registration token: the settings and the
/// token.
#[derive(Debug, Serialize)]
pub(super) struct RegisterRunner<'a> {
    #[serde(flatten)]
    pub attrs: &'a RunnerAttributes,
    #[serde(serialize_with = "expose")]
    pub token: &'a Secret,
}

/// A runner-token call (`/runners/verify`, `/runners/reset_authentication_token`,
/// `DELETE /runners`, `DELETE /runners/managers`): the token, and this
/// host's system id where GitLab records a manager.
#[derive(Debug, Serialize)]
pub(super) struct RunnerToken<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub system_id: Option<&'a str>,
    #[serde(serialize_with = "expose")]
    pub token: &'a Secret,
}

/// One answer, read whole (up to [`super::MAX_BODY_BYTES`]).
pub(super) struct Answer {
    pub status: StatusCode,
    pub headers: HeaderMap,
    pub body: Vec<u8>,
}

/// `{"id", "token", "token_expires_at"}` / `{"token", "token_expires_at"}`.
#[derive(Deserialize)]
pub(super) struct TokenAnswer {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    token: Option<SecretField>,
    #[serde(default)]
    token_expires_at: Option<String>,
}

impl TokenAnswer {
    /// The issued token, or why it may not be saved (without quoting it).
    pub fn into_issued(self, current: &Secret) -> Result<IssuedToken, String> {
        let token = self.token.map(|t| t.0).unwrap_or_else(|| current.clone());
        if let Some(why) = crate::secret::token_problem(token.expose()) {
            return Err(format!("unusable token: {why}"));
        }
        // GitLab's ids are `bigint`: a larger one is no runner of GitLab's.
        if let Some(id) = self.id.filter(|id| i64::try_from(*id).is_err()) {
            return Err(format!("unusable runner id {id}: out of range"));
        }
        Ok(IssuedToken {
            id: self.id,
            token,
            expires_at: self
                .token_expires_at
                .as_deref()
                .and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok()),
        })
    }
}

/// `GET /runners/:id/managers`: the one field read.
#[derive(Deserialize)]
pub(super) struct Manager {
    pub system_id: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runner_details_debug_hides_a_patched_token() {
        let d: RunnerDetails =
            serde_json::from_str(r#"{"id": 1, "token": "glrt-abcdefghijklmnop"}"#).unwrap();
        assert!(!format!("{d:?}").contains("efgh"));
    }

    fn attrs() -> RunnerAttributes {
        RunnerAttributes {
            description: Some("shell".into()),
            tag_list: Some(vec!["a".into(), "b".into()]),
            run_untagged: Some(false),
            locked: Some(true),
            maximum_timeout: Some(3600),
            ..RunnerAttributes::default()
        }
    }

    #[test]
    fn absent_settings_are_left_out_of_the_body() {
        assert_eq!(
            serde_json::to_string(&attrs()).unwrap(),
            r#"{"description":"shell","locked":true,"maximum_timeout":3600,"run_untagged":false,"tag_list":["a","b"]}"#
        );
        assert_eq!(
            serde_json::to_string(&RunnerAttributes::default()).unwrap(),
            "{}"
        );
    }

    #[test]
    fn create_bodies_name_the_scope() {
        let a = attrs();
        let body = |scope| serde_json::to_value(CreateRunner::new(scope, &a)).unwrap();
        let instance = body(RunnerScope::Instance);
        assert_eq!(instance["runner_type"], "instance_type");
        assert!(instance.get("group_id").is_none() && instance.get("project_id").is_none());
        let group = body(RunnerScope::Group(7));
        assert_eq!(group["runner_type"], "group_type");
        assert_eq!(group["group_id"], 7);
        assert!(group.get("project_id").is_none());
        let project = body(RunnerScope::Project(9));
        assert_eq!(project["runner_type"], "project_type");
        assert_eq!(project["project_id"], 9);
        assert_eq!(project["tag_list"], serde_json::json!(["a", "b"]));
        assert!(project.get("paused").is_none());
    }

    #[test]
    fn token_bodies_carry_the_token_and_debug_hides_it() {
        let token = Secret::new("glrt-abcdefghijklmnop");
        let verify = RunnerToken {
            system_id: Some("s_0123456789ab"),
            token: &token,
        };
        assert_eq!(
            serde_json::to_string(&verify).unwrap(),
            r#"{"system_id":"s_0123456789ab","token":"glrt-abcdefghijklmnop"}"#
        );
        assert!(!format!("{verify:?}").contains("efgh"));
        let delete = RunnerToken {
            system_id: None,
            token: &token,
        };
        assert_eq!(
            serde_json::to_string(&delete).unwrap(),
            r#"{"token":"glrt-abcdefghijklmnop"}"#
        );
        let a = attrs();
        let register = RegisterRunner {
            attrs: &a,
            token: &token,
        };
        let text = serde_json::to_string(&register).unwrap();
        assert!(text.ends_with(r#""tag_list":["a","b"],"token":"glrt-abcdefghijklmnop"}"#));
        assert!(!format!("{register:?}").contains("efgh"));
    }
}
