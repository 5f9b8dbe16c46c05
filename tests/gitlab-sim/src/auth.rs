//! Who is calling: personal access tokens (`PRIVATE-TOKEN` header,
//! `Authorization: Bearer`, or `private_token` parameter), registration and
//! runner tokens in the `token` parameter, the `AuthKind` the request log
//! records, and the permission rules (admin; Owner of `OWNED_GROUP_ID` /
//! `OWNED_PROJECT_ID`; instance runners readable by every user).

use axum::http::HeaderMap;
use time::OffsetDateTime;

use crate::error::ApiError;
use crate::params::Params;
use crate::state::{Runner, RunnerType, World};
use crate::{ADMIN_PAT, OWNED_GROUP_ID, OWNED_PROJECT_ID, REGISTRATION_TOKEN, USER_PAT};

/// How a request authenticated, as recorded in the request log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AuthKind {
    /// No PAT and no `token` parameter.
    None,
    /// `ADMIN_PAT`.
    AdminPat,
    /// `USER_PAT`.
    UserPat,
    /// A PAT the simulator does not know.
    InvalidPat,
    /// A `token` parameter holding a current, unexpired runner token.
    RunnerToken,
    /// A `token` parameter holding `REGISTRATION_TOKEN`.
    RegistrationToken,
    /// A `token` parameter holding anything else (including expired or rotated runner tokens).
    InvalidToken,
}

/// An authenticated PAT user.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Caller {
    Admin,
    User,
}

impl Caller {
    pub(crate) fn is_admin(self) -> bool {
        self == Caller::Admin
    }

    /// Owner role in group `id`. Both users are Owners of `OWNED_GROUP_ID`;
    /// the admin's extra powers come from being admin, not from membership.
    pub(crate) fn owns_group(self, id: u64) -> bool {
        id == OWNED_GROUP_ID
    }

    /// Owner role in project `id` (see `owns_group`).
    pub(crate) fn owns_project(self, id: u64) -> bool {
        id == OWNED_PROJECT_ID
    }

    /// The runner belongs to a group or project this user owns.
    pub(crate) fn owns(self, runner: &Runner) -> bool {
        match runner.runner_type {
            RunnerType::Instance => false,
            RunnerType::Group => runner.group_id.is_some_and(|g| self.owns_group(g)),
            RunnerType::Project => runner.project_id.is_some_and(|p| self.owns_project(p)),
        }
    }

    /// `authenticate_show_runner!`: admin, any instance runner, or an owned one.
    pub(crate) fn can_read(self, runner: &Runner) -> bool {
        self.is_admin() || runner.runner_type == RunnerType::Instance || self.owns(runner)
    }

    /// `authenticate_update_runner!` / `authenticate_delete_runner!`.
    pub(crate) fn can_update(self, runner: &Runner) -> bool {
        self.is_admin() || self.owns(runner)
    }
}

/// The PAT a request carries, if any.
pub(crate) fn pat(headers: &HeaderMap, params: &Params) -> Option<String> {
    if let Some(v) = headers.get("private-token").and_then(|v| v.to_str().ok()) {
        return Some(v.trim().to_string());
    }
    if let Some(v) = headers
        .get(axum::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Some(token) = v
            .strip_prefix("Bearer ")
            .or_else(|| v.strip_prefix("bearer "))
        {
            return Some(token.trim().to_string());
        }
    }
    params.raw_str("private_token").map(str::to_string)
}

/// The user a PAT belongs to; 401 for none or an unknown one.
pub(crate) fn caller(pat: Option<&str>) -> Result<Caller, ApiError> {
    match pat {
        Some(ADMIN_PAT) => Ok(Caller::Admin),
        Some(USER_PAT) => Ok(Caller::User),
        _ => Err(ApiError::unauthorized()),
    }
}

/// What the request log records for this request.
pub(crate) fn classify(
    pat: Option<&str>,
    token: Option<&str>,
    world: &World,
    now: OffsetDateTime,
) -> AuthKind {
    match (pat, token) {
        (Some(p), _) => match caller(Some(p)) {
            Ok(Caller::Admin) => AuthKind::AdminPat,
            Ok(Caller::User) => AuthKind::UserPat,
            Err(_) => AuthKind::InvalidPat,
        },
        (None, Some(t)) if t == REGISTRATION_TOKEN => AuthKind::RegistrationToken,
        (None, Some(t)) if world.by_token(t, now).is_some() => AuthKind::RunnerToken,
        (None, Some(_)) => AuthKind::InvalidToken,
        (None, None) => AuthKind::None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pats() {
        assert_eq!(caller(Some(ADMIN_PAT)).unwrap(), Caller::Admin);
        assert_eq!(caller(Some(USER_PAT)).unwrap(), Caller::User);
        assert!(caller(Some("glpat-nope")).is_err());
        assert!(caller(None).is_err());
        let mut h = HeaderMap::new();
        h.insert(
            "authorization",
            format!("Bearer {USER_PAT}").parse().unwrap(),
        );
        assert_eq!(pat(&h, &Params::default()).as_deref(), Some(USER_PAT));
    }

    #[test]
    fn kinds() {
        let w = World::default();
        let now = crate::clock::now();
        assert_eq!(classify(None, None, &w, now), AuthKind::None);
        assert_eq!(
            classify(None, Some(REGISTRATION_TOKEN), &w, now),
            AuthKind::RegistrationToken
        );
        assert_eq!(
            classify(None, Some("glrt-x"), &w, now),
            AuthKind::InvalidToken
        );
        assert_eq!(classify(Some("x"), None, &w, now), AuthKind::InvalidPat);
    }
}
