//! The application: the state shared by every request (`Shared`: runners,
//! knobs, request log) and the route table of the `/api/v4` endpoints the
//! simulator implements, wrapped in the request pipeline.

use std::sync::{Arc, Mutex, MutexGuard};

use axum::Router;
use axum::http::StatusCode;
use axum::middleware;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};

use crate::SimOptions;
use crate::error::ApiError;
use crate::handlers::{runner_token, runners, user};
use crate::knobs::Knobs;
use crate::log::RequestLog;
use crate::pipeline;
use crate::state::World;

/// Everything the server and the `Sim` handle share.
#[derive(Debug)]
pub(crate) struct Shared {
    world: Mutex<World>,
    pub knobs: Knobs,
    pub log: RequestLog,
}

impl Shared {
    pub(crate) fn new(opts: &SimOptions) -> Shared {
        Shared {
            world: Mutex::new(World::default()),
            knobs: Knobs::new(opts),
            log: RequestLog::default(),
        }
    }

    /// The runners, locked (never held across an `.await`).
    pub(crate) fn world(&self) -> MutexGuard<'_, World> {
        self.world.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The full route table.
pub(crate) fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route(
            "/runners",
            post(runner_token::register)
                .delete(runner_token::unregister)
                .get(runners::list_owned),
        )
        .route("/runners/verify", post(runner_token::verify))
        .route("/runners/managers", delete(runner_token::delete_manager))
        .route(
            "/runners/reset_authentication_token",
            post(runner_token::reset_token),
        )
        .route("/runners/all", get(runners::list_all))
        .route(
            "/runners/{id}",
            get(runners::show)
                .put(runners::update)
                .delete(runners::destroy),
        )
        .route("/runners/{id}/managers", get(runners::managers))
        .route(
            "/runners/{id}/reset_authentication_token",
            post(runners::reset_token),
        )
        .route("/user/runners", post(user::create_runner))
        .route("/user", get(user::current_user))
        .route("/version", get(user::version));
    Router::new()
        .nest("/api/v4", api)
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(middleware::from_fn_with_state(
            shared.clone(),
            pipeline::pipeline,
        ))
        .with_state(shared)
}

async fn not_found() -> Response {
    ApiError::Error {
        status: StatusCode::NOT_FOUND,
        error: "404 Not Found".to_string(),
    }
    .into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::message(StatusCode::METHOD_NOT_ALLOWED, "405 Method Not Allowed").into_response()
}
