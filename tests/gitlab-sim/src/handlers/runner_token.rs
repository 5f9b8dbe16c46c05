//! Endpoints authenticated by a token in the `token` parameter (what
//! gitlab-runner itself calls): `POST /runners` (registration token),
//! `POST /runners/verify`, `DELETE /runners`, `DELETE /runners/managers`,
//! `POST /runners/reset_authentication_token`.

use std::sync::Arc;

use axum::Extension;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;

use super::{Aliases, Settings, json, no_content, runner_info, stored_timeout};
use crate::REGISTRATION_TOKEN;
use crate::app::Shared;
use crate::entities;
use crate::error::ApiError;
use crate::pipeline::Ctx;
use crate::state::{self, CreatedBy, NewRunner, RunnerType};

/// `POST /runners`: legacy registration with the registration token.
pub(crate) async fn register(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let p = &ctx.params;
    p.require(&["token"])?;
    let settings = Settings::parse(
        p,
        Aliases {
            active: true,
            maintainer_note: true,
        },
    )?;
    let (name, _info) = runner_info(p)?;
    let token = p.string("token")?.unwrap_or_default();

    // RegisterRunnerService: a disabled switch wins over a bad token.
    if !sh.knobs.registration_enabled() {
        return Err(ApiError::gone("runner registration disallowed"));
    }
    if token != REGISTRATION_TOKEN {
        return Err(ApiError::forbidden(Some("invalid token supplied")));
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
        return Err(ApiError::validation(&errors));
    }
    let lifetime = sh.knobs.token_lifetime();
    let mut world = sh.world();
    let runner = world.create(
        NewRunner {
            description,
            name,
            runner_type: RunnerType::Instance,
            group_id: None,
            project_id: None,
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
            created_by: CreatedBy::RegistrationToken,
        },
        lifetime,
    );
    Ok(json(
        StatusCode::CREATED,
        entities::registration_details(runner),
    ))
}

/// `POST /runners/verify`: checks a runner token and records this host's
/// manager (`system_id`, `<legacy>` when absent).
pub(crate) async fn verify(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let p = &ctx.params;
    p.require(&["token"])?;
    let token = p.string("token")?.unwrap_or_default();
    let system_id = p.string("system_id")?;
    let (_, info) = runner_info(p)?;
    let mut world = sh.world();
    let id = world
        .by_token(&token, world.now())
        .ok_or_else(|| ApiError::forbidden(None))?;
    world.heartbeat(id, system_id.as_deref(), &info, ctx.peer_ip.as_deref());
    let runner = world.get(id).ok_or_else(|| ApiError::forbidden(None))?;
    Ok(json(StatusCode::OK, entities::registration_details(runner)))
}

/// `DELETE /runners`: deletes the whole runner the token belongs to.
pub(crate) async fn unregister(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let p = &ctx.params;
    p.require(&["token"])?;
    let token = p.string("token")?.unwrap_or_default();
    let mut world = sh.world();
    let id = world
        .by_token(&token, world.now())
        .ok_or_else(|| ApiError::forbidden(None))?;
    world.remove(id);
    Ok(no_content())
}

/// `DELETE /runners/managers`: deletes one host's manager, keeps the runner.
pub(crate) async fn delete_manager(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let p = &ctx.params;
    p.require(&["token", "system_id"])?;
    let token = p.string("token")?.unwrap_or_default();
    let system_id = p.string("system_id")?.unwrap_or_default();
    let mut world = sh.world();
    let id = world
        .by_token(&token, world.now())
        .ok_or_else(|| ApiError::forbidden(None))?;
    let runner = world.get_mut(id).ok_or_else(|| ApiError::forbidden(None))?;
    let index = runner
        .managers
        .iter()
        .position(|m| m.system_id == system_id)
        .ok_or_else(|| ApiError::not_found("Runner manager not found"))?;
    runner.managers.remove(index);
    Ok(no_content())
}

/// `POST /runners/reset_authentication_token`: a new token, the old one dies.
pub(crate) async fn reset_token(
    State(sh): State<Arc<Shared>>,
    Extension(ctx): Extension<Arc<Ctx>>,
) -> Result<Response, ApiError> {
    let p = &ctx.params;
    p.require(&["token"])?;
    let token = p.string("token")?.unwrap_or_default();
    let system_id = p.string("system_id")?;
    let (_, info) = runner_info(p)?;
    let lifetime = sh.knobs.token_lifetime();
    let mut world = sh.world();
    let id = world
        .by_token(&token, world.now())
        .ok_or_else(|| ApiError::forbidden(None))?;
    world.heartbeat(id, system_id.as_deref(), &info, ctx.peer_ip.as_deref());
    let runner = world
        .reset_token(id, lifetime)
        .ok_or_else(|| ApiError::forbidden(None))?;
    Ok(json(
        StatusCode::CREATED,
        entities::reset_token_result(runner),
    ))
}
