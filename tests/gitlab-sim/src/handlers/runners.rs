//! Runner administration with a personal access token: `GET /runners`
//! (runners of groups/projects the user owns), `GET /runners/all` (admin),
//! their filters, `GET/PUT/DELETE /runners/:id`, `GET /runners/:id/managers`
//! and `POST /runners/:id/reset_authentication_token`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::{Path, State};
use axum::http::{HeaderValue, StatusCode};
use axum::response::Response;
use serde_json::Value;

use super::{Aliases, Settings, json, no_content, runner_id, stored_timeout};
use crate::app::Shared;
use crate::auth::{self, Caller};
use crate::entities;
use crate::error::ApiError;
use crate::pagination;
use crate::params::Params;
use crate::pipeline::Ctx;
use crate::state::{self, Runner, RunnerType};

/// `Ci::Runner::AVAILABLE_STATUSES_INCL_DEPRECATED`.
const STATUSES: [&str; 6] = [
    "active",
    "paused",
    "online",
    "offline",
    "never_contacted",
    "stale",
];

/// `Ci::Runner::AVAILABLE_SCOPES` (deprecated `scope` filter).
const SCOPES: [&str; 11] = [
    "specific",
    "shared",
    "instance_type",
    "group_type",
    "project_type",
    "active",
    "paused",
    "online",
    "offline",
    "never_contacted",
    "stale",
];

/// The list filters of `GET /runners` and `GET /runners/all`.
#[derive(Debug, Default)]
struct Filters {
    scope: Option<String>,
    runner_type: Option<String>,
    status: Option<String>,
    paused: Option<bool>,
    tag_list: Option<Vec<String>>,
    version_prefix: Option<String>,
}

impl Filters {
    fn parse(p: &Params) -> Result<Filters, ApiError> {
        let version_prefix = p.string("version_prefix")?;
        if let Some(v) = &version_prefix
            && !v
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_digit() || c == '+' || c == '.')
        {
            return Err(ApiError::grape("version_prefix is invalid"));
        }
        Ok(Filters {
            scope: p.one_of("scope", &SCOPES)?,
            runner_type: p.one_of("type", &RunnerType::NAMES)?,
            status: p.one_of("status", &STATUSES)?,
            paused: p.boolean("paused")?,
            tag_list: p.tag_list("tag_list")?,
            version_prefix,
        })
    }

    fn keep(&self, r: &Runner, now: time::OffsetDateTime) -> bool {
        let scoped = |s: &Option<String>| s.as_deref().is_none_or(|s| r.in_status(s, now));
        scoped(&self.scope)
            && scoped(&self.runner_type)
            && scoped(&self.status)
            && self.paused.is_none_or(|p| r.paused == p)
            && self.tag_list.as_deref().is_none_or(|t| r.has_all_tags(t))
            && self.version_prefix.as_deref().is_none_or(|v| {
                r.managers
                    .iter()
                    .any(|m| m.version.as_deref().is_some_and(|mv| mv.starts_with(v)))
            })
    }
}

/// `GET /runners`: runners of the groups and projects the caller owns.
pub(crate) async fn list_owned(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    list(&sh, &ctx, false)
}

/// `GET /runners/all`: every runner (admin only).
pub(crate) async fn list_all(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    list(&sh, &ctx, true)
}

fn list(sh: &Shared, ctx: &Ctx, all: bool) -> Result<Response, ApiError> {
    let caller = auth::caller(ctx.pat.as_deref())?;
    let filters = Filters::parse(&ctx.params)?;
    let page = pagination::page_request(&ctx.params)?;
    if all && !caller.is_admin() {
        return Err(ApiError::forbidden(None));
    }
    if !all
        && let Some(scope) = &filters.scope
        && !STATUSES.contains(&scope.as_str())
    {
        return Err(ApiError::message(
            StatusCode::BAD_REQUEST,
            "Scope contains invalid value",
        ));
    }
    let now = sh.world().now();
    let items: Vec<Value> = {
        let world = sh.world();
        world
            .all()
            .filter(|r| all || caller.owns(r))
            .filter(|r| filters.keep(r, now))
            .map(|r| entities::runner(r, now))
            .collect()
    };
    let (items, mut headers) = pagination::paginate(items, page, ctx);
    if let Some(fault) = sh.knobs.listing_fault() {
        pagination::break_next(&mut headers, fault, page, ctx);
    }
    let mut response = json(StatusCode::OK, Value::Array(items));
    for (name, value) in headers {
        if let Ok(value) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, value);
        }
    }
    Ok(response)
}

/// Authenticates, parses `:id`, and finds the runner (401, 400, 404).
fn lookup(ctx: &Ctx, raw_id: &str, sh: &Shared) -> Result<(Caller, u64), ApiError> {
    let caller = auth::caller(ctx.pat.as_deref())?;
    let id = runner_id(raw_id)?;
    if sh.world().get(id).is_none() {
        return Err(ApiError::not_found("Runner"));
    }
    Ok((caller, id))
}

fn no_access() -> ApiError {
    ApiError::forbidden(Some("No access granted"))
}

/// `GET /runners/:id`.
pub(crate) async fn show(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, id) = lookup(&ctx, &raw_id, &sh)?;
    let patched = sh.knobs.patched();
    let world = sh.world();
    let runner = world.get(id).ok_or_else(|| ApiError::not_found("Runner"))?;
    if !caller.can_read(runner) {
        return Err(no_access());
    }
    let body = entities::runner_details(runner, world.now(), caller, patched, &ctx.base_url());
    Ok(json(StatusCode::OK, body))
}

/// `GET /runners/:id/managers`.
pub(crate) async fn managers(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, id) = lookup(&ctx, &raw_id, &sh)?;
    let world = sh.world();
    let runner = world.get(id).ok_or_else(|| ApiError::not_found("Runner"))?;
    if !caller.can_read(runner) {
        return Err(no_access());
    }
    let now = world.now();
    let mut managers: Vec<_> = runner.managers.iter().collect();
    managers.sort_by_key(|m| m.id);
    let body = managers.iter().map(|m| entities::manager(m, now)).collect();
    Ok(json(StatusCode::OK, Value::Array(body)))
}

/// `PUT /runners/:id`.
pub(crate) async fn update(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let caller = auth::caller(ctx.pat.as_deref())?;
    let id = runner_id(&raw_id)?;
    let p = &ctx.params;
    p.at_least_one_of(&[
        "description",
        "active",
        "paused",
        "tag_list",
        "run_untagged",
        "locked",
        "access_level",
        "maximum_timeout",
        "maintenance_note",
    ])?;
    let settings = Settings::parse(
        p,
        Aliases {
            active: true,
            maintainer_note: false,
        },
    )?;
    let patched = sh.knobs.patched();
    let mut world = sh.world();
    let now = world.now();
    let runner = world
        .get_mut(id)
        .ok_or_else(|| ApiError::not_found("Runner"))?;
    if !caller.can_update(runner) {
        return Err(no_access());
    }
    let mut updated = runner.clone();
    if let Some(v) = settings.description {
        updated.description = v;
    }
    if let Some(v) = settings.maintenance_note {
        updated.maintenance_note = Some(v);
    }
    if let Some(v) = settings.paused {
        updated.paused = v;
    }
    if let Some(v) = settings.locked {
        updated.locked = v;
    }
    if let Some(v) = settings.run_untagged {
        updated.run_untagged = v;
    }
    if let Some(v) = settings.access_level {
        updated.access_level = v;
    }
    if let Some(v) = settings.tag_list {
        updated.tag_list = v;
    }
    let timeout = settings
        .maximum_timeout
        .or(updated.maximum_timeout.and_then(|t| i64::try_from(t).ok()));
    let errors = state::validate(
        &updated.description,
        updated.maintenance_note.as_deref(),
        timeout,
        updated.run_untagged,
        &updated.tag_list,
    );
    if !errors.is_empty() {
        return Err(ApiError::validation(&errors));
    }
    if settings.maximum_timeout.is_some() {
        updated.maximum_timeout = stored_timeout(settings.maximum_timeout);
    }
    *runner = updated;
    let body = entities::runner_details(runner, now, caller, patched, &ctx.base_url());
    Ok(json(StatusCode::OK, body))
}

/// `DELETE /runners/:id`.
pub(crate) async fn destroy(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, id) = lookup(&ctx, &raw_id, &sh)?;
    let mut world = sh.world();
    let runner = world.get(id).ok_or_else(|| ApiError::not_found("Runner"))?;
    if !caller.can_update(runner) {
        return Err(no_access());
    }
    world.remove(id);
    Ok(no_content())
}

/// `POST /runners/:id/reset_authentication_token`.
pub(crate) async fn reset_token(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
    Path(raw_id): Path<String>,
) -> Result<Response, ApiError> {
    let (caller, id) = lookup(&ctx, &raw_id, &sh)?;
    let lifetime = sh.knobs.token_lifetime();
    let mut world = sh.world();
    let runner = world.get(id).ok_or_else(|| ApiError::not_found("Runner"))?;
    if !caller.can_update(runner) {
        return Err(no_access());
    }
    let runner = world
        .reset_token(id, lifetime)
        .ok_or_else(|| ApiError::not_found("Runner"))?;
    Ok(json(
        StatusCode::CREATED,
        entities::reset_token_result(runner),
    ))
}
