//! The per-request pipeline every request goes through before its handler:
//! note the arrival time, read and parse the parameters, classify the
//! credentials, apply the knobs (latency, 502 every Nth, rate limit, hostile
//! answers), run the handler, add rate-limit headers, and append the outcome
//! to the request log (the request counts as in flight from arrival until
//! then).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::Value;

use crate::app::Shared;
use crate::auth::{self, AuthKind};
use crate::clock;
use crate::error::ApiError;
use crate::hostile::{self, HostileAnswer};
use crate::log::RequestRecord;
use crate::params::{self, Params};

/// Largest request body read (GitLab's limits are far above what runners send).
const MAX_BODY: usize = 1024 * 1024;

/// The connection's two ends, set by the accept loop.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
}

/// What handlers know about the request beyond its path.
#[derive(Debug)]
pub(crate) struct Ctx {
    pub params: Params,
    pub pat: Option<String>,
    /// `Host` header (for pagination links and web URLs).
    pub host: String,
    pub path: String,
    pub peer_ip: Option<String>,
}

impl Ctx {
    /// `http://host` as the client addressed us.
    pub(crate) fn base_url(&self) -> String {
        format!("http://{}", self.host)
    }
}

/// The middleware (see the module docs).
pub(crate) async fn pipeline(State(sh): State<Arc<Shared>>, req: Request, next: Next) -> Response {
    let at = Instant::now();
    let (mut parts, body) = req.into_parts();
    let method = parts.method.to_string();
    let path = parts.uri.path().to_string();
    let query = parts.uri.query().unwrap_or("").to_string();
    let _in_flight = sh.log.begin(&method, &path);
    let user_agent = parts
        .headers
        .get(header::USER_AGENT)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let content_type = parts
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut raw_body = Vec::new();
    let (log_body, body_params) = match axum::body::to_bytes(body, MAX_BODY).await {
        Ok(bytes) => {
            let parsed = params::parse_body(content_type.as_deref(), &bytes);
            raw_body = bytes.to_vec();
            (parsed.log, parsed.result)
        }
        Err(_) => (
            Value::Null,
            Err(ApiError::message(
                StatusCode::PAYLOAD_TOO_LARGE,
                "413 Request Entity Too Large",
            )),
        ),
    };
    let params =
        params::parse_query(&query).and_then(|q| body_params.map(|b| Params::merged(q, b)));
    let known = params.as_ref().cloned().unwrap_or_default();
    let pat = auth::pat(&parts.headers, &known);
    let auth_kind = {
        let world = sh.world();
        auth::classify(pat.as_deref(), known.raw_str("token"), &world, world.now())
    };

    if let Some(latency) = sh.knobs.latency() {
        sleep_until_precisely(at + latency).await;
    }

    let hostile = sh.knobs.hostile(&method, &path);
    let mut retry_after = None;
    let response = if sh.knobs.count_and_check_failure() {
        bad_gateway()
    } else {
        let authenticated = matches!(
            auth_kind,
            AuthKind::AdminPat | AuthKind::UserPat | AuthKind::RunnerToken
        );
        let verdict = sh.knobs.rate_check(clock::now(), authenticated);
        let replaced = hostile
            .as_ref()
            .and_then(|h| hostile::replacement(h, pat.as_deref(), &raw_body));
        let mut response = match (&verdict, replaced, params) {
            (Some(v), _, _) if v.limited => too_many_requests(),
            (_, Some(replaced), _) => replaced,
            (_, None, Err(e)) => e.into_response(),
            (_, None, Ok(params)) => {
                let ctx = context(&parts, params, pat, &path);
                parts.extensions.insert(Arc::new(ctx));
                let response = next.run(Request::from_parts(parts, Body::empty())).await;
                after_handler(&sh, &method, &path, hostile.as_ref(), response).await
            }
        };
        if let Some(v) = verdict {
            for (name, value) in v.headers {
                if let Ok(value) = HeaderValue::from_str(&value) {
                    response.headers_mut().insert(name, value);
                }
            }
            retry_after = v.retry_after;
        }
        response
    };

    sh.log.push(RequestRecord {
        method,
        path,
        query,
        auth: auth_kind,
        status: response.status().as_u16(),
        body: log_body,
        at,
        retry_after,
        user_agent,
    });
    response
}

/// The handlers' view of a request: its parameters and who is asking.
fn context(parts: &Parts, params: Params, pat: Option<String>, path: &str) -> Ctx {
    let conn = parts.extensions.get::<ConnInfo>().copied();
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
        .or_else(|| conn.map(|c| c.local.to_string()))
        .unwrap_or_else(|| "127.0.0.1".to_string());
    let peer_ip = conn.map(|c| c.peer.ip().to_string());
    Ctx {
        params,
        pat,
        host,
        path: path.to_string(),
        peer_ip,
    }
}

/// The handler's answer as sent: held until a test lets it go, lost to a
/// 502 when a knob says so, or rewritten by a hostile rule.
async fn after_handler(
    sh: &Shared,
    method: &str,
    path: &str,
    hostile: Option<&HostileAnswer>,
    response: Response,
) -> Response {
    if let Some(gate) = sh.knobs.take_hold_after_handler(method, path) {
        gate.hold().await;
    }
    if sh.knobs.take_fail_after_handler(method, path) {
        // A proxy's 502 after GitLab did the work (nginx: upstream reset
        // or timeout after processing).
        return bad_gateway();
    }
    match hostile {
        Some(HostileAnswer::Rewrite(f)) => hostile::rewritten(response, f).await,
        _ => response,
    }
}

/// What a reverse proxy in front of GitLab answers when the app is away.
fn bad_gateway() -> Response {
    (
        StatusCode::BAD_GATEWAY,
        [(header::CONTENT_TYPE, "text/html")],
        "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n\
         <center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n\
         </body>\r\n</html>\r\n",
    )
        .into_response()
}

/// Rack::Attack's throttled response (headers are added by the caller).
fn too_many_requests() -> Response {
    (
        StatusCode::TOO_MANY_REQUESTS,
        [(header::CONTENT_TYPE, "text/plain")],
        "Retry later\n",
    )
        .into_response()
}

/// Sleeps until `deadline`, to within a fraction of a millisecond: the
/// latency knob means the answer leaves `latency` after the request
/// arrived. tokio's timer ticks in whole milliseconds and rounds a sleep
/// up to the next tick, so a 20 ms knob answered in 21-22 ms, and 51
/// rounds of 8 requests (a restart with 200 runners) took 80 ms longer
/// than the round trips they stand for (`benches/startup.rs` prints the
/// measured round trip). The coarse part sleeps on the timer; the last
/// two milliseconds on a blocking thread (`nanosleep`), so at most one
/// such thread per request in flight is held, for at most 2 ms.
async fn sleep_until_precisely(deadline: Instant) {
    const FINE: std::time::Duration = std::time::Duration::from_millis(2);
    let coarse = deadline.checked_sub(FINE).unwrap_or(deadline);
    if coarse > Instant::now() {
        tokio::time::sleep_until(coarse.into()).await;
    }
    let rest = deadline.saturating_duration_since(Instant::now());
    if !rest.is_zero() {
        // A join error (the runtime shutting down) only ends the wait early.
        let _ = tokio::task::spawn_blocking(move || std::thread::sleep(rest)).await;
    }
}
