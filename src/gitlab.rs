//! The GitLab API client: every request this tool sends goes through here.
//!
//! One [`GitLab`] per `client_configs` entry: reqwest with rustls, the
//! system trust store plus the entry's `tls_ca_file`, explicit connect and
//! read timeouts, user agent `register-runner/<version>`, no redirects (a
//! redirected POST would silently become a GET), and at most
//! [`MAX_IN_FLIGHT`] requests in flight. Transient failures (connect errors,
//! timeouts, 408, 429, 500, 502, 503, 504) are retried with jittered
//! exponential backoff, honouring `RateLimit-ResetTime` and `Retry-After`,
//! all within the run's deadline (`--timeout`); other statuses fail at once
//! with an [`ApiError`] naming the method, URL, status and GitLab's message.
//! Tokens travel only in headers and JSON bodies, never in URLs or errors.
//! Endpoints and shapes: `reference/gitlab-api.md`.
//!
//! Nothing GitLab sends is trusted: every answer is read in chunks up to
//! [`MAX_BODY_BYTES`] (beyond that the request fails, unretried), every
//! token it issues passes [`crate::secret::token_problem`] before anyone
//! may save it, and its error text has the run's secrets masked and its
//! control characters escaped ([`crate::logging::sanitize`]) before it goes
//! into an [`ApiError`].

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use reqwest::header::{HeaderMap, RETRY_AFTER};
use reqwest::{Method, StatusCode};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;

use crate::config::{ClientConfig, RunnerScope};
use crate::secret::Secret;

/// Requests in flight at once, per GitLab.
pub const MAX_IN_FLIGHT: usize = 4;
/// Attempts per request, retries included (gitlab-runner makes 5; a little
/// more patience here, still bounded by the deadline).
const MAX_ATTEMPTS: u32 = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);
/// `per_page` maximum (gitlab-api.md §5).
const PER_PAGE: usize = 100;
/// A bound on pagination, far above any real host's runner count.
const MAX_PAGES: usize = 1000;
/// The largest answer read. Measured: a full page of the simulator's
/// `GET /runners/all` (100 runners with long descriptions) is 23 KB, and
/// GitLab's own list entries have about as many fields; `GET /runners/:id`
/// with a tag list is a few KB. 4 MiB is over 100 times the largest real
/// answer, and bounds what a broken proxy or hostile server can make us
/// hold (`security_server::the_cap_is_far_above_a_full_page_of_runners`).
pub const MAX_BODY_BYTES: usize = 4 * 1024 * 1024;
/// Set to anything to drop the exponential backoff delays (tests).
/// `Retry-After` and `RateLimit-ResetTime` are still honoured.
pub const NO_RETRY_DELAY_ENV: &str = "REGISTER_RUNNER_NO_RETRY_DELAY";

/// A request GitLab refused, or could not be reached for.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: Method,
    /// Without any secret: tokens never go in URLs.
    pub url: String,
    pub status: Option<u16>,
    pub message: String,
    /// Connection failures, timeouts and exhausted retries: GitLab is down
    /// or out of reach (or kept asking to wait until the deadline), as
    /// opposed to refusing the request.
    pub unreachable: bool,
}

impl ApiError {
    /// Given up while GitLab's rate limit held the run: for the exit rule
    /// this is like an unreachable GitLab, but it is named differently.
    pub fn rate_limited(&self) -> bool {
        self.message.starts_with(RATE_LIMITED)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message is built from GitLab's text: masked and escaped once
        // more here, whoever built it.
        let message = crate::logging::sanitize(&self.message);
        let url = crate::logging::sanitize(&self.url);
        match self.status {
            Some(status) => write!(f, "{} {url}: HTTP {status}: {message}", self.method),
            None => write!(f, "{} {url}: {message}", self.method),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

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

/// Server-side settings of a runner, as sent on create and update.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunnerAttributes {
    pub description: Option<String>,
    pub tag_list: Option<Vec<String>>,
    pub run_untagged: Option<bool>,
    pub locked: Option<bool>,
    pub paused: Option<bool>,
    pub access_level: Option<String>,
    pub maximum_timeout: Option<u64>,
    pub maintenance_note: Option<String>,
}

impl RunnerAttributes {
    fn to_json(&self) -> serde_json::Map<String, Value> {
        let mut map = serde_json::Map::new();
        let mut put = |k: &str, v: Option<Value>| {
            if let Some(v) = v {
                map.insert(k.to_string(), v);
            }
        };
        put("description", self.description.clone().map(Value::from));
        put("tag_list", self.tag_list.clone().map(Value::from));
        put("run_untagged", self.run_untagged.map(Value::from));
        put("locked", self.locked.map(Value::from));
        put("paused", self.paused.map(Value::from));
        put("access_level", self.access_level.clone().map(Value::from));
        put("maximum_timeout", self.maximum_timeout.map(Value::from));
        put(
            "maintenance_note",
            self.maintenance_note.clone().map(Value::from),
        );
        map
    }
}

/// One GitLab instance.
pub struct GitLab {
    http: reqwest::Client,
    /// `<url>/api/v4`
    api: String,
    pat: Option<Secret>,
    deadline: Instant,
    in_flight: Arc<Semaphore>,
    /// GitLab asked us to wait (429/503 with `Retry-After` or
    /// `RateLimit-ResetTime`): no request to it leaves before this instant.
    not_before: std::sync::Mutex<Option<Instant>>,
    backoff: bool,
}

enum Auth {
    None,
    Pat,
}

/// Which failures a request may be repeated after.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Retry {
    /// Reads, verify, update and deletes: repeating them is harmless.
    Always,
    /// A request whose repetition could do harm once GitLab acted on it (a
    /// second registration, a reset with a token already replaced): only
    /// after a failed connect or a 429, which never reached the handler.
    UntilSent,
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Vec<u8>,
}

impl GitLab {
    /// `backoff`: wait between retries (false only in tests).
    pub fn new(client: &ClientConfig, deadline: Instant, backoff: bool) -> anyhow::Result<GitLab> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .tls_built_in_native_certs(true)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("register-runner/", env!("CARGO_PKG_VERSION")));
        if let Some((path, pem)) = &client.tls_ca {
            for cert in reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| anyhow::anyhow!("`{}`: {e}", path.display()))?
            {
                builder = builder.add_root_certificate(cert);
            }
        }
        let http = builder.build().map_err(|e| {
            anyhow::anyhow!("cannot set up the HTTP client for `{}`: {e}", client.url)
        })?;
        // gitlab-runner's fixCIURL: a `/ci` suffix names the same GitLab.
        let base = client.url.trim_end_matches('/');
        let base = base.strip_suffix("/ci").unwrap_or(base);
        Ok(GitLab {
            http,
            api: format!("{base}/api/v4"),
            pat: client.personal_access_token.clone(),
            deadline,
            in_flight: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
            not_before: std::sync::Mutex::new(None),
            backoff,
        })
    }

    pub fn has_pat(&self) -> bool {
        self.pat.is_some()
    }

    /// `POST /runners/verify` with this host's system id.
    pub async fn verify(&self, token: &Secret, system_id: &str) -> ApiResult<Verified> {
        let body = json!({"token": token.expose(), "system_id": system_id});
        let answer = self
            .send(
                Method::POST,
                "/runners/verify",
                &[],
                Auth::None,
                Some(body),
                Retry::Always,
            )
            .await?;
        match answer.status.as_u16() {
            200 | 201 => {
                // gitlab-runner accepts a legacy plain-text "200" body too.
                let issued = match serde_json::from_slice::<TokenAnswer>(&answer.body) {
                    Ok(a) => a.into_issued(token).map_err(|why| {
                        self.bad_token(Method::POST, "/runners/verify", &answer, why)
                    })?,
                    Err(_) => IssuedToken {
                        id: None,
                        token: token.clone(),
                        expires_at: None,
                    },
                };
                Ok(Verified::Valid(issued))
            }
            403 | 422 => Ok(Verified::Rejected(answer.status.as_u16())),
            _ => Err(self.refused(Method::POST, "/runners/verify", &answer)),
        }
    }

    /// This host's runners: `GET /runners/all?tag_list=…` (every page), or
    /// `GET /runners` when `/all` is 403 (a PAT without admin).
    pub async fn list_runners(&self, tags: &[String]) -> ApiResult<Vec<ListedRunner>> {
        match self.list_all_pages("/runners/all", tags).await {
            Err(e) if e.status == Some(403) => {
                tracing::debug!(gitlab = %self.api, "GET /runners/all is forbidden; listing GET /runners");
                self.list_all_pages("/runners", tags).await
            }
            other => other,
        }
    }

    async fn list_all_pages(&self, path: &str, tags: &[String]) -> ApiResult<Vec<ListedRunner>> {
        let mut runners = Vec::new();
        let mut page = 1usize;
        for _ in 0..MAX_PAGES {
            let query = [
                ("tag_list", tags.join(",")),
                ("per_page", PER_PAGE.to_string()),
                ("page", page.to_string()),
            ];
            let answer = self
                .send(Method::GET, path, &query, Auth::Pat, None, Retry::Always)
                .await?;
            if answer.status != StatusCode::OK {
                return Err(self.refused(Method::GET, path, &answer));
            }
            let items: Vec<ListedRunner> = self.decode(Method::GET, path, &answer)?;
            let full_page = items.len() >= PER_PAGE;
            runners.extend(items);
            match answer
                .headers
                .get("x-next-page")
                .map(|v| v.to_str().unwrap_or("").trim())
            {
                Some("") => return Ok(runners),
                Some(next) => match next.parse::<usize>() {
                    Ok(n) if n > page => page = n,
                    _ => return Err(self.incomplete(path, format!("bad x-next-page `{next}`"))),
                },
                None if !full_page => return Ok(runners),
                None => return Err(self.incomplete(path, "a full page without x-next-page".into())),
            }
        }
        Err(self.incomplete(path, format!("more than {MAX_PAGES} pages")))
    }

    /// `GET /runners/:id`.
    pub async fn runner_details(&self, id: u64) -> ApiResult<RunnerDetails> {
        let path = format!("/runners/{id}");
        let answer = self
            .send(Method::GET, &path, &[], Auth::Pat, None, Retry::Always)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(self.refused(Method::GET, &path, &answer));
        }
        let details: RunnerDetails = self.decode(Method::GET, &path, &answer)?;
        // A patched server's token is restored into the config: checked
        // like any token GitLab issues.
        if let Some(why) = details
            .token
            .as_ref()
            .and_then(|t| crate::secret::token_problem(t.0.expose()))
        {
            return Err(self.bad_token(
                Method::GET,
                &path,
                &answer,
                format!("unusable token: {why}"),
            ));
        }
        Ok(details)
    }

    /// The system ids of a runner's managers (`GET /runners/:id/managers`).
    pub async fn runner_managers(&self, id: u64) -> ApiResult<Vec<String>> {
        #[derive(Deserialize)]
        struct Manager {
            system_id: String,
        }
        let path = format!("/runners/{id}/managers");
        let answer = self
            .send(Method::GET, &path, &[], Auth::Pat, None, Retry::Always)
            .await?;
        if answer.status != StatusCode::OK {
            return Err(self.refused(Method::GET, &path, &answer));
        }
        let managers: Vec<Manager> = self.decode(Method::GET, &path, &answer)?;
        Ok(managers.into_iter().map(|m| m.system_id).collect())
    }

    /// `POST /user/runners` with the PAT: a new runner and its `glrt-` token.
    pub async fn create_runner(
        &self,
        scope: RunnerScope,
        attrs: &RunnerAttributes,
    ) -> ApiResult<IssuedToken> {
        let mut body = attrs.to_json();
        let (kind, id_key, id) = match scope {
            RunnerScope::Instance => ("instance_type", None, None),
            RunnerScope::Group(id) => ("group_type", Some("group_id"), Some(id)),
            RunnerScope::Project(id) => ("project_type", Some("project_id"), Some(id)),
        };
        body.insert("runner_type".into(), kind.into());
        if let (Some(key), Some(id)) = (id_key, id) {
            body.insert(key.into(), id.into());
        }
        self.issue(
            Method::POST,
            "/user/runners",
            Auth::Pat,
            Value::Object(body),
            None,
            // A second runner made by a repeat carries this host's
            // identifying tags and no manager: the next run finds and
            // deletes it, which it cannot do without a PAT (below).
            Retry::Always,
        )
        .await
    }

    /// `POST /runners` with a legacy registration token.
    pub async fn register_runner(
        &self,
        registration_token: &Secret,
        attrs: &RunnerAttributes,
    ) -> ApiResult<IssuedToken> {
        let mut body = attrs.to_json();
        body.insert("token".into(), registration_token.expose().into());
        self.issue(
            Method::POST,
            "/runners",
            Auth::None,
            Value::Object(body),
            None,
            Retry::UntilSent,
        )
        .await
    }

    /// `POST /runners/reset_authentication_token` with the current token.
    /// With the system id: GitLab's `authenticate_runner!` records a
    /// manager for every runner-token call, `<legacy>` without one.
    pub async fn reset_token(&self, token: &Secret, system_id: &str) -> ApiResult<IssuedToken> {
        let body = json!({"token": token.expose(), "system_id": system_id});
        self.issue(
            Method::POST,
            "/runners/reset_authentication_token",
            Auth::None,
            body,
            Some(token),
            Retry::UntilSent,
        )
        .await
    }

    async fn issue(
        &self,
        method: Method,
        path: &str,
        auth: Auth,
        body: Value,
        current: Option<&Secret>,
        retry: Retry,
    ) -> ApiResult<IssuedToken> {
        let answer = self
            .send(method.clone(), path, &[], auth, Some(body), retry)
            .await?;
        if answer.status != StatusCode::CREATED {
            return Err(self.refused(method, path, &answer));
        }
        let parsed: TokenAnswer = self.decode(method.clone(), path, &answer)?;
        let none = Secret::new("");
        parsed
            .into_issued(current.unwrap_or(&none))
            .map_err(|why| self.bad_token(method, path, &answer, why))
    }

    /// `PUT /runners/:id`.
    pub async fn update_runner(&self, id: u64, attrs: &RunnerAttributes) -> ApiResult<()> {
        let path = format!("/runners/{id}");
        let answer = self
            .send(
                Method::PUT,
                &path,
                &[],
                Auth::Pat,
                Some(Value::Object(attrs.to_json())),
                Retry::Always,
            )
            .await?;
        if answer.status != StatusCode::OK {
            return Err(self.refused(Method::PUT, &path, &answer));
        }
        Ok(())
    }

    /// `DELETE /runners/:id` with the PAT. A runner already gone counts as deleted.
    pub async fn delete_runner_by_id(&self, id: u64) -> ApiResult<()> {
        let path = format!("/runners/{id}");
        self.delete(&path, Auth::Pat, None).await
    }

    /// `DELETE /runners` with the runner's token: the whole runner.
    pub async fn delete_runner_by_token(&self, token: &Secret) -> ApiResult<()> {
        self.delete(
            "/runners",
            Auth::None,
            Some(json!({"token": token.expose()})),
        )
        .await
    }

    /// `DELETE /runners/managers`: only this host's manager of the runner.
    pub async fn delete_manager(&self, token: &Secret, system_id: &str) -> ApiResult<()> {
        let body = json!({"token": token.expose(), "system_id": system_id});
        self.delete("/runners/managers", Auth::None, Some(body))
            .await
    }

    async fn delete(&self, path: &str, auth: Auth, body: Option<Value>) -> ApiResult<()> {
        // With a runner token, 403 means GitLab knows no such token: the
        // runner is already gone. With the PAT, 403 is a missing permission.
        let token_auth = matches!(auth, Auth::None);
        let answer = self
            .send(Method::DELETE, path, &[], auth, body, Retry::Always)
            .await?;
        match answer.status.as_u16() {
            200 | 204 => Ok(()),
            // Already gone (by id), or the token no longer exists / its
            // manager was already removed: the goal is met either way.
            404 => Ok(()),
            403 if token_auth => Ok(()),
            _ => Err(self.refused(Method::DELETE, path, &answer)),
        }
    }

    fn decode<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        answer: &Answer,
    ) -> ApiResult<T> {
        // serde's message may quote a value of the answer: sanitized.
        serde_json::from_slice(&answer.body).map_err(|e| ApiError {
            method,
            url: self.url(path),
            status: Some(answer.status.as_u16()),
            message: crate::logging::sanitize(&format!("unexpected answer: {e}")),
            unreachable: false,
        })
    }

    /// An answer whose token may not be saved (`why` never quotes it).
    fn bad_token(&self, method: Method, path: &str, answer: &Answer, why: String) -> ApiError {
        ApiError {
            method,
            url: self.url(path),
            status: Some(answer.status.as_u16()),
            message: format!("GitLab's answer has an {why}; nothing was saved"),
            unreachable: false,
        }
    }

    fn refused(&self, method: Method, path: &str, answer: &Answer) -> ApiError {
        let mut message = gitlab_message(&answer.body);
        if answer.status.is_redirection() {
            let to = answer
                .headers
                .get("location")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("?");
            message = format!(
                "redirected to `{}`: set the client_configs url to the final address",
                crate::logging::sanitize(to)
            );
        }
        ApiError {
            method,
            url: self.url(path),
            status: Some(answer.status.as_u16()),
            message,
            unreachable: false,
        }
    }

    fn incomplete(&self, path: &str, why: String) -> ApiError {
        ApiError {
            method: Method::GET,
            url: self.url(path),
            status: None,
            message: format!("incomplete runner list: {why}"),
            unreachable: false,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.api)
    }

    /// Sends one request, retrying transient failures within the deadline.
    async fn send(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        auth: Auth,
        body: Option<Value>,
        retry: Retry,
    ) -> ApiResult<Answer> {
        let url = self.url(path);
        let fail = |message: String, status: Option<u16>| ApiError {
            method: method.clone(),
            url: url.clone(),
            status,
            message,
            unreachable: true,
        };
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| fail("client closed".into(), None))?;
        // Failures that count toward MAX_ATTEMPTS: a 429 (or a 503 with a
        // wait) is GitLab asking to wait, not a failure, and does not count.
        let mut attempt = 0u32;
        let mut throttled_for = Duration::ZERO;
        loop {
            // Time held back by GitLab's rate limit (another request's 429)
            // counts as waiting on it, as does this request's own.
            throttled_for = throttled_for.saturating_add(self.wait_if_asked().await);
            let now = Instant::now();
            let Some(remaining) = self
                .deadline
                .checked_duration_since(now)
                .filter(|d| !d.is_zero())
            else {
                return Err(fail(
                    gave_up_message(attempt, throttled_for, None, throttled_for > Duration::ZERO),
                    None,
                ));
            };
            let mut request = self
                .http
                .request(method.clone(), &url)
                .timeout(remaining.min(READ_TIMEOUT));
            if !query.is_empty() {
                request = request.query(query);
            }
            if let Auth::Pat = auth {
                match &self.pat {
                    Some(pat) => request = request.header("PRIVATE-TOKEN", pat.expose()),
                    None => return Err(fail("no personal access token configured".into(), None)),
                }
            }
            if let Some(body) = &body {
                request = request.json(body);
            }
            let (reason, status, wait_hint, may_retry) = match request.send().await {
                Ok(response) => {
                    let status = response.status();
                    let headers = response.headers().clone();
                    // Oversized: no retry will make it smaller.
                    let body = read_body(response).await.map_err(|too_large| ApiError {
                        unreachable: false,
                        ..fail(too_large, Some(status.as_u16()))
                    })?;
                    if !is_retryable(status) {
                        // The window's last allowed request: the next one
                        // would be refused, so this run waits for the reset
                        // (spread, like every host that saw the same).
                        if let Some(wait) = exhausted_window_wait(&headers) {
                            self.hold_off(spread_over_window(wait, self.time_left()));
                        }
                        return Ok(Answer {
                            status,
                            headers,
                            body,
                        });
                    }
                    let reason = format!("HTTP {}: {}", status.as_u16(), gitlab_message(&body));
                    // Rack::Attack answers 429 before the request is handled.
                    let may_retry =
                        retry == Retry::Always || status == StatusCode::TOO_MANY_REQUESTS;
                    (
                        reason,
                        Some(status.as_u16()),
                        server_wait(&headers),
                        may_retry,
                    )
                }
                Err(e) if is_certificate_error(&e) => {
                    return Err(ApiError {
                        unreachable: false,
                        ..fail(
                            format!(
                                "{}: check the server's certificate or `tls_ca_file`",
                                transport_reason(&e)
                            ),
                            None,
                        )
                    });
                }
                // A failed connect never reached GitLab: always safe to repeat.
                Err(e) => (
                    transport_reason(&e),
                    None,
                    None,
                    retry == Retry::Always || e.is_connect(),
                ),
            };
            if !may_retry {
                return Err(ApiError {
                    unreachable: false,
                    ..fail(
                        format!(
                            "{reason} (not repeated: GitLab may have acted on it; the next run checks)"
                        ),
                        status,
                    )
                });
            }
            let left = self.time_left();
            let throttled = match status {
                Some(429) => true,
                Some(503) => wait_hint.is_some(),
                _ => false,
            };
            let wait = if throttled {
                // Honour GitLab's wait, spread over the next window so that
                // a fleet restarting together does not retry in lockstep.
                // A request refused while this run already holds off (its
                // other requests were refused too) keeps the moment drawn
                // for them: one draw per run, not the latest of many.
                let base = wait_hint.unwrap_or(BACKOFF_FIRST).min(left);
                let wait = match self.held_off_for() {
                    Some(held) if held >= base => held,
                    _ => {
                        let wait = spread_over_window(base, left);
                        self.hold_off(wait);
                        wait
                    }
                };
                throttled_for = throttled_for.saturating_add(wait.min(left));
                wait
            } else {
                attempt += 1;
                let backoff = if self.backoff {
                    jittered_backoff(attempt)
                } else {
                    Duration::ZERO
                };
                let wait = wait_hint.unwrap_or(backoff);
                if wait_hint.is_some() {
                    self.hold_off(wait);
                }
                if attempt >= MAX_ATTEMPTS {
                    return Err(fail(
                        gave_up_message(attempt, throttled_for, Some(&reason), false),
                        status,
                    ));
                }
                wait
            };
            if wait >= left {
                return Err(fail(
                    gave_up_message(attempt, throttled_for, Some(&reason), throttled),
                    status,
                ));
            }
            tracing::debug!(
                method = %method,
                url = %url,
                attempt,
                wait_ms = wait.as_millis() as u64,
                "retrying: {reason}"
            );
            tokio::time::sleep(wait).await;
        }
    }

    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }
}

/// Why a request was given up on. Running out of time while GitLab's rate
/// limit holds the run is named as such: an operator must not look for an
/// outage. The message starts with [`RATE_LIMITED`] then.
fn gave_up_message(
    attempts: u32,
    throttled_for: Duration,
    last: Option<&str>,
    rate_limited: bool,
) -> String {
    let last = last.map(|r| format!(": {r}")).unwrap_or_default();
    let waited = format!("{:.1} s", throttled_for.as_secs_f64());
    if rate_limited {
        format!(
            "{RATE_LIMITED}: waited {waited} in total as it asked, and the --timeout deadline came first{last}"
        )
    } else if attempts == 0 {
        "gave up: the --timeout deadline has passed".to_string()
    } else if throttled_for.is_zero() {
        format!("gave up after {attempts} attempt(s){last}")
    } else {
        format!(
            "gave up after {attempts} attempt(s), and {waited} waiting on GitLab's rate limit{last}"
        )
    }
}

/// How a give-up under GitLab's rate limit begins.
pub const RATE_LIMITED: &str = "rate limited by GitLab (HTTP 429)";

impl GitLab {
    /// Sleeps while GitLab's last `Retry-After` is in force.
    /// Returns how long it slept.
    async fn wait_if_asked(&self) -> Duration {
        let started = Instant::now();
        // Again after each sleep: another request's 429 may have moved the
        // moment on meanwhile.
        while let Some(wait) = self.held_off_for() {
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        started.elapsed()
    }

    /// How long this run still holds off this GitLab, if it does.
    fn held_off_for(&self) -> Option<Duration> {
        let until = (*self.not_before.lock().unwrap_or_else(|e| e.into_inner()))?;
        until
            .min(self.deadline)
            .checked_duration_since(Instant::now())
    }

    /// Makes every request to this GitLab wait `wait` from now.
    fn hold_off(&self, wait: Duration) {
        // Saturating: a server may ask for any wait (`Retry-After:
        // 18446744073709551615`); none outlasts the deadline anyway.
        let until = Instant::now()
            .checked_add(wait.min(self.time_left()))
            .unwrap_or(self.deadline);
        let mut guard = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none_or(|t| t < until) {
            *guard = Some(until);
        }
    }
}

/// `{"id", "token", "token_expires_at"}` / `{"token", "token_expires_at"}`.
#[derive(Deserialize)]
struct TokenAnswer {
    #[serde(default)]
    id: Option<u64>,
    #[serde(default)]
    token: Option<SecretField>,
    #[serde(default)]
    token_expires_at: Option<String>,
}

impl TokenAnswer {
    /// The issued token, or why it may not be saved (without quoting it).
    fn into_issued(self, current: &Secret) -> Result<IssuedToken, String> {
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

/// The body, read chunk by chunk, refused once it passes
/// [`MAX_BODY_BYTES`] (the `Err` is the message). A body cut short by the
/// connection reads as what arrived: it then fails to decode, naming the
/// request.
async fn read_body(mut response: reqwest::Response) -> Result<Vec<u8>, String> {
    let too_large = || {
        format!(
            "the answer is larger than {} MiB: refused (GitLab, or a proxy in front of it, misbehaves)",
            MAX_BODY_BYTES / (1024 * 1024)
        )
    };
    if response
        .content_length()
        .is_some_and(|n| n > MAX_BODY_BYTES as u64)
    {
        return Err(too_large());
    }
    let mut body = Vec::new();
    loop {
        match response.chunk().await {
            Ok(Some(chunk)) => {
                if body.len() + chunk.len() > MAX_BODY_BYTES {
                    return Err(too_large());
                }
                body.extend_from_slice(&chunk);
            }
            Ok(None) | Err(_) => return Ok(body),
        }
    }
}

fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// A TLS certificate problem: no retry will fix it, and it is no outage.
fn is_certificate_error(e: &reqwest::Error) -> bool {
    use std::error::Error;
    let mut source: Option<&dyn Error> = Some(e);
    while let Some(s) = source {
        if s.to_string().to_ascii_lowercase().contains("certificate") {
            return true;
        }
        source = s.source();
    }
    false
}

fn transport_reason(e: &reqwest::Error) -> String {
    use std::error::Error;
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    let mut detail = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

/// How long GitLab asked to wait: the longer of `RateLimit-ResetTime`
/// (HTTP date: when the window resets) and `Retry-After` (seconds or HTTP
/// date; relative, so free of clock skew), gitlab-api.md §7. Either alone
/// is used as it is.
fn server_wait(headers: &HeaderMap) -> Option<Duration> {
    let reset = headers
        .get("ratelimit-resettime")
        .and_then(|v| v.to_str().ok())
        .and_then(until_http_date);
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|value| match value.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => until_http_date(value),
        });
    reset.max(retry_after)
}

fn until_http_date(value: &str) -> Option<Duration> {
    httpdate::parse_http_date(value).ok().map(|t| {
        t.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO)
    })
}

/// On an answer that was let through: when it used up the rate-limit
/// window (`RateLimit-Remaining: 0`), how long until the window resets
/// (`RateLimit-Reset`, epoch seconds). The next request before then would
/// only be refused.
fn exhausted_window_wait(headers: &HeaderMap) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if header("ratelimit-remaining")? != 0 {
        return None;
    }
    let reset =
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(header("ratelimit-reset")?))?;
    Some(
        reset
            .duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// GitLab's wait plus a random share of the next window, so that hosts
/// refused together come back spread out instead of in lockstep. The
/// window is not sent; the wait until its reset is at most one window and
/// at least a second (Rack::Attack's resolution), so that is the spread.
/// The result never exceeds `left` (what remains of `--timeout`), with
/// saturating arithmetic whatever the server asked for.
fn spread_over_window(wait: Duration, left: Duration) -> Duration {
    let wait = wait.min(left);
    let window = wait.max(Duration::from_secs(1)).min(left - wait);
    let jitter = rand::random_range(0..=window.as_millis().min(u128::from(u64::MAX)) as u64);
    wait.saturating_add(Duration::from_millis(jitter)).min(left)
}

/// 250 ms, 500 ms, 1 s, … capped at 10 s; each drawn from [d/2, d].
fn jittered_backoff(attempt: u32) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1u32 << (attempt - 1).min(16));
    let full = exp.min(BACKOFF_MAX);
    let half = full / 2;
    let jitter = rand::random_range(0..=half.as_millis() as u64);
    half + Duration::from_millis(jitter)
}

/// GitLab's `message` (or Grape's `error`), shortened; never the request.
fn gitlab_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => match map.get("message").or_else(|| map.get("error")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => Value::Object(map).to_string(),
        },
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    // An echo of the request would quote its tokens: masked before the
    // cut (which could leave a token too short to recognise).
    let text = crate::secret::redact(&text);
    let text = if text.is_empty() {
        "(no message)".to_string()
    } else {
        text
    };
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    crate::logging::escape_control(&short).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    #[test]
    fn retryable_statuses_are_exactly_the_specified_ones() {
        for code in [408, 429, 500, 502, 503, 504] {
            assert!(is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
        for code in [400, 401, 403, 404, 410, 422, 501, 505] {
            assert!(!is_retryable(StatusCode::from_u16(code).unwrap()), "{code}");
        }
    }

    #[test]
    fn retry_after_seconds_and_reset_time() {
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(server_wait(&headers), Some(Duration::from_secs(3)));
        let in_five = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(5));
        headers.insert(
            "ratelimit-resettime",
            HeaderValue::from_str(&in_five).unwrap(),
        );
        let wait = server_wait(&headers).unwrap();
        assert!(
            wait >= Duration::from_secs(4) && wait <= Duration::from_secs(6),
            "{wait:?}"
        );
    }

    #[test]
    fn a_servers_wait_is_spread_over_the_next_window_and_clamped() {
        let left = Duration::from_secs(30);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let wait = spread_over_window(Duration::from_secs(2), left);
            assert!(
                wait >= Duration::from_secs(2) && wait <= Duration::from_secs(4),
                "{wait:?}"
            );
            seen.insert(wait.as_millis() / 100);
        }
        assert!(seen.len() > 5, "no spread: {seen:?}");
        // Whatever the server asks for, the wait ends with the deadline.
        assert_eq!(spread_over_window(Duration::MAX, left), left);
        assert!(spread_over_window(Duration::from_secs(29), left) <= left);
        assert_eq!(
            spread_over_window(Duration::from_secs(5), Duration::ZERO),
            Duration::ZERO
        );
    }

    #[test]
    fn an_exhausted_window_is_waited_out_before_the_next_request() {
        let mut headers = HeaderMap::new();
        let reset = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap()
            .as_secs()
            + 3;
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from_str(&reset.to_string()).unwrap(),
        );
        headers.insert("ratelimit-remaining", HeaderValue::from_static("4"));
        assert_eq!(exhausted_window_wait(&headers), None);
        headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        let wait = exhausted_window_wait(&headers).unwrap();
        assert!(
            wait > Duration::from_secs(1) && wait <= Duration::from_secs(3),
            "{wait:?}"
        );
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(exhausted_window_wait(&headers), None);
    }

    #[test]
    fn running_out_of_time_under_a_rate_limit_is_not_called_an_outage() {
        let message = gave_up_message(
            0,
            Duration::from_millis(12_300),
            Some("HTTP 429: Retry later"),
            true,
        );
        assert!(message.starts_with(RATE_LIMITED), "{message}");
        assert!(message.contains("12.3 s"), "{message}");
        let message = gave_up_message(8, Duration::ZERO, Some("HTTP 502: Bad Gateway"), false);
        assert_eq!(message, "gave up after 8 attempt(s): HTTP 502: Bad Gateway");
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        for attempt in 1..20 {
            let d = jittered_backoff(attempt);
            assert!(d <= BACKOFF_MAX, "{d:?}");
        }
        assert!(jittered_backoff(1) <= BACKOFF_FIRST);
        assert!(jittered_backoff(4) >= BACKOFF_FIRST * 4);
    }

    #[test]
    fn gitlab_messages() {
        assert_eq!(
            gitlab_message(br#"{"message":"403 Forbidden"}"#),
            "403 Forbidden"
        );
        assert_eq!(
            gitlab_message(br#"{"error":"token is missing"}"#),
            "token is missing"
        );
        assert_eq!(
            gitlab_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(gitlab_message(b""), "(no message)");
    }

    #[test]
    fn runner_details_debug_hides_a_patched_token() {
        let d: RunnerDetails =
            serde_json::from_str(r#"{"id": 1, "token": "glrt-abcdefghijklmnop"}"#).unwrap();
        assert!(!format!("{d:?}").contains("efgh"));
    }
}
