//! Endpoints about the current PAT user: `POST /user/runners` (create a
//! runner, `glrt-` token), and the minimal `GET /user` and `GET /version`
//! that clients such as python-gitlab call first.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use serde_json::json;

use super::{Aliases, Settings, json, stored_timeout};
use crate::app::Shared;
use crate::auth::{self, Caller};
use crate::entities;
use crate::error::{ApiError, to_sentence};
use crate::pipeline::Ctx;
use crate::state::{self, CreatedBy, NewRunner, RunnerType};

/// The GitLab version the simulator claims to be.
pub(crate) const GITLAB_VERSION: &str = "18.4.0";

/// `POST /user/runners`.
pub(crate) async fn create_runner(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let caller = auth::caller(ctx.pat.as_deref())?;
    let p = &ctx.params;
    p.require(&["runner_type"])?;
    let runner_type = p
        .one_of("runner_type", &RunnerType::NAMES)?
        .as_deref()
        .and_then(RunnerType::parse)
        .ok_or_else(|| ApiError::grape("runner_type does not have a valid value"))?;
    let mut group_id = None;
    let mut project_id = None;
    match runner_type {
        RunnerType::Instance => {}
        RunnerType::Group => {
            p.require(&["group_id"])?;
            group_id = p.integer("group_id")?;
        }
        RunnerType::Project => {
            p.require(&["project_id"])?;
            project_id = p.integer("project_id")?;
        }
    }
    let settings = Settings::parse(
        p,
        Aliases {
            active: false,
            maintainer_note: false,
        },
    )?;

    // CreateRunnerService: scope first, then permission, then the model.
    let group_id = group_id.and_then(|g| u64::try_from(g).ok());
    let project_id = project_id.and_then(|g| u64::try_from(g).ok());
    let scope_ok = match runner_type {
        RunnerType::Instance => true,
        RunnerType::Group => group_id.and_then(state::group).is_some(),
        RunnerType::Project => project_id.and_then(state::project).is_some(),
    };
    if !scope_ok {
        return Err(ApiError::bad_request("Missing/invalid scope"));
    }
    let allowed = match runner_type {
        RunnerType::Instance => caller.is_admin(),
        RunnerType::Group => caller.is_admin() || group_id.is_some_and(|g| caller.owns_group(g)),
        RunnerType::Project => {
            caller.is_admin() || project_id.is_some_and(|p| caller.owns_project(p))
        }
    };
    if !allowed {
        return Err(ApiError::forbidden(Some("Insufficient permissions")));
    }
    let tags = settings.tag_list.unwrap_or_default();
    let run_untagged = settings.run_untagged.unwrap_or(true);
    let description = settings.description.unwrap_or_default();
    let errors = state::validate(
        &description,
        settings.maintenance_note.as_deref(),
        settings.maximum_timeout,
        run_untagged,
        &tags,
    );
    if !errors.is_empty() {
        return Err(ApiError::bad_request(&to_sentence(&state::full_messages(
            &errors,
        ))));
    }
    let lifetime = sh.knobs.token_lifetime();
    let mut world = sh.world();
    let runner = world.create(
        NewRunner {
            description,
            name: None,
            runner_type,
            group_id,
            project_id,
            tag_list: tags,
            run_untagged,
            locked: settings.locked.unwrap_or(false),
            paused: settings.paused.unwrap_or(false),
            access_level: settings
                .access_level
                .unwrap_or_else(|| "not_protected".into()),
            maximum_timeout: stored_timeout(settings.maximum_timeout),
            maintenance_note: settings.maintenance_note,
            token: None,
            created_by: CreatedBy::Pat,
        },
        lifetime,
    );
    Ok(json(
        StatusCode::CREATED,
        entities::registration_details(runner),
    ))
}

/// `GET /user`.
pub(crate) async fn current_user(
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let caller: Caller = auth::caller(ctx.pat.as_deref())?;
    Ok(json(
        StatusCode::OK,
        entities::user(caller, &ctx.base_url()),
    ))
}

/// `GET /version`.
pub(crate) async fn version(Extension(ctx): Extension<Arc<Ctx>>) -> Result<Response, ApiError> {
    auth::caller(ctx.pat.as_deref())?;
    Ok(json(
        StatusCode::OK,
        json!({
            "version": GITLAB_VERSION,
            "revision": "gitlabsim",
            "kas": {"enabled": false, "externalUrl": null, "externalK8sProxyUrl": null, "version": null},
            "enterprise": false,
        }),
    ))
}
