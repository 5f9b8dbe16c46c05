//! The [`GitLab`] client: one per `client_configs` entry, and every
//! endpoint this tool calls. It builds each request, sends it, reads the
//! answer within [`MAX_BODY_BYTES`], and leaves whether to try again to
//! [`super::retry`]; what an answer means for each endpoint (a 403 on
//! verify is a rejected token, a 404 on delete a runner already gone) is
//! decided here. Tokens travel only in headers and JSON bodies, never in
//! URLs or errors.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};

use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use tokio::sync::Semaphore;

use super::error::{ApiError, ApiResult, gitlab_message};
use super::retry::{
    Attempts, Class, HoldOff, Now, Policy, Retry, Then, classify_answer, classify_transport, decide,
};
use super::types::{
    Answer, CreateRunner, IssuedToken, ListedRunner, Manager, RegisterRunner, RunnerAttributes,
    RunnerDetails, RunnerToken, TokenAnswer, Verified,
};
use crate::config::{ClientConfig, RunnerScope};
use crate::secret::Secret;

/// Requests in flight at once, per GitLab. Enough to hide the round trip
/// (a steady restart of N runners is about `(2N + pages) / 8` round trips,
/// and a first run's creates overlap as much), few enough to be polite:
/// GitLab's own rate limits count requests per period of time (per minute
/// and user or IP; GitLab docs, "User and IP rate limits"), not requests at
/// once, so 8 at once use no more of them than 1 at a time; and a
/// `Retry-After` still stops all traffic of this run to that GitLab
/// (`HoldOff`).
pub const MAX_IN_FLIGHT: usize = 8;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a request may go unanswered before the log says so.
const SLOW_ANSWER: Duration = Duration::from_secs(2);
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

/// A request without a body.
const NO_BODY: Option<&()> = None;

/// One GitLab instance.
pub struct GitLab {
    http: reqwest::Client,
    /// `<url>/api/v4`
    api: String,
    pat: Option<Secret>,
    deadline: Instant,
    in_flight: Arc<Semaphore>,
    /// GitLab asked us to wait: no request to it leaves before the hold ends.
    hold: HoldOff,
    backoff: bool,
    /// The `client_configs` url, as the logs name this GitLab.
    base: String,
    /// Attempts by status ([`GitLab::request_counts`]).
    requests: Mutex<BTreeMap<String, u64>>,
    /// The "waiting for GitLab" line was logged.
    waiting_noticed: AtomicBool,
    /// After a 429, requests to this GitLab go one at a time (through
    /// `one_at_a_time`) until this many have been let through: a burst of
    /// this run's requests after a hold would only be refused together
    /// while a fleet shares the limit (`benches/herd.rs`). 0: no caution.
    cautious: AtomicU32,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// Answers let through one at a time before a run that was refused with a
/// 429 sends in parallel again.
const CAUTIOUS_ANSWERS: u32 = 2;

#[derive(Clone, Copy)]
enum Auth {
    None,
    Pat,
}

impl GitLab {
    /// `backoff`: wait between retries (false only in tests). `system`:
    /// the system's trust store ([`super::tls::SystemRoots`]).
    pub fn new(
        client: &ClientConfig,
        system: &rustls::RootCertStore,
        deadline: Instant,
        backoff: bool,
    ) -> anyhow::Result<GitLab> {
        let tls = super::tls::client_config(client, system)?;
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("register-runner/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| {
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
            hold: HoldOff::new(deadline),
            backoff,
            base: client.url.clone(),
            requests: Mutex::new(BTreeMap::new()),
            waiting_noticed: AtomicBool::new(false),
            cautious: AtomicU32::new(0),
            one_at_a_time: tokio::sync::Mutex::new(()),
        })
    }

    pub fn has_pat(&self) -> bool {
        self.pat.is_some()
    }

    /// `POST /runners/verify` with this host's system id.
    pub async fn verify(&self, token: &Secret, system_id: &str) -> ApiResult<Verified> {
        let body = RunnerToken {
            system_id: Some(system_id),
            token,
        };
        let path = "/runners/verify";
        let answer = self
            .send(
                Method::POST,
                path,
                &[],
                Auth::None,
                Some(&body),
                Retry::Always,
            )
            .await?;
        match answer.status.as_u16() {
            200 | 201 => {
                // gitlab-runner accepts a legacy plain-text "200" body too.
                let issued = match serde_json::from_slice::<TokenAnswer>(&answer.body) {
                    Ok(a) => a
                        .into_issued(token)
                        .map_err(|why| self.bad_token(Method::POST, path, &answer, why))?,
                    Err(_) => IssuedToken {
                        id: None,
                        token: token.clone(),
                        expires_at: None,
                    },
                };
                Ok(Verified::Valid(issued))
            }
            403 | 422 => Ok(Verified::Rejected(answer.status.as_u16())),
            _ => Err(self.refused(Method::POST, path, &answer)),
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
            let answer = self.get(path, &query).await?;
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
        let answer = self.get(&path, &[]).await?;
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
        let path = format!("/runners/{id}/managers");
        let answer = self.get(&path, &[]).await?;
        let managers: Vec<Manager> = self.decode(Method::GET, &path, &answer)?;
        Ok(managers.into_iter().map(|m| m.system_id).collect())
    }

    /// A `GET` with the PAT that must answer 200.
    async fn get(&self, path: &str, query: &[(&str, String)]) -> ApiResult<Answer> {
        let answer = self
            .send(Method::GET, path, query, Auth::Pat, NO_BODY, Retry::Always)
            .await?;
        if answer.status != StatusCode::OK {
            let mut error = self.refused(Method::GET, path, &answer);
            if let Some(fix) = pat_refused(answer.status.as_u16()) {
                error.message = format!("{}. {fix}", error.message);
            }
            return Err(error);
        }
        Ok(answer)
    }

    /// `POST /user/runners` with the PAT: a new runner and its `glrt-` token.
    pub async fn create_runner(
        &self,
        scope: RunnerScope,
        attrs: &RunnerAttributes,
    ) -> ApiResult<IssuedToken> {
        let body = CreateRunner::new(scope, attrs);
        // A second runner made by a repeat carries this host's identifying
        // tags and no manager: the next run finds and deletes it, which it
        // cannot do without a PAT (below).
        self.issue("/user/runners", Auth::Pat, &body, None, Retry::Always)
            .await
    }

    /// `POST /runners` with a legacy registration token.
    pub async fn register_runner(
        &self,
        registration_token: &Secret,
        attrs: &RunnerAttributes,
    ) -> ApiResult<IssuedToken> {
        let body = RegisterRunner {
            attrs,
            token: registration_token,
        };
        self.issue("/runners", Auth::None, &body, None, Retry::UntilSent)
            .await
    }

    /// `POST /runners/reset_authentication_token` with the current token.
    /// With the system id: GitLab's `authenticate_runner!` records a
    /// manager for every runner-token call, `<legacy>` without one.
    pub async fn reset_token(&self, token: &Secret, system_id: &str) -> ApiResult<IssuedToken> {
        let body = RunnerToken {
            system_id: Some(system_id),
            token,
        };
        let path = "/runners/reset_authentication_token";
        self.issue(path, Auth::None, &body, Some(token), Retry::UntilSent)
            .await
    }

    /// A `POST` that answers 201 with a token.
    async fn issue(
        &self,
        path: &str,
        auth: Auth,
        body: &(impl Serialize + ?Sized),
        current: Option<&Secret>,
        retry: Retry,
    ) -> ApiResult<IssuedToken> {
        let method = Method::POST;
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
                Some(attrs),
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
        let body = RunnerToken {
            system_id: None,
            token,
        };
        self.delete("/runners", Auth::None, Some(&body)).await
    }

    /// `DELETE /runners/managers`: only this host's manager of the runner.
    pub async fn delete_manager(&self, token: &Secret, system_id: &str) -> ApiResult<()> {
        let body = RunnerToken {
            system_id: Some(system_id),
            token,
        };
        self.delete("/runners/managers", Auth::None, Some(&body))
            .await
    }

    async fn delete(
        &self,
        path: &str,
        auth: Auth,
        body: Option<&RunnerToken<'_>>,
    ) -> ApiResult<()> {
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

    /// Sends one request, retrying as [`super::retry::decide`] says, within
    /// the deadline.
    async fn send<B: Serialize + ?Sized>(
        &self,
        method: Method,
        path: &str,
        query: &[(&str, String)],
        auth: Auth,
        body: Option<&B>,
        retry: Retry,
    ) -> ApiResult<Answer> {
        let url = self.url(path);
        let fail = |message: String, status: Option<u16>, unreachable: bool| ApiError {
            method: method.clone(),
            url: url.clone(),
            status,
            message,
            unreachable,
        };
        let _permit = self
            .in_flight
            .acquire()
            .await
            .map_err(|_| fail("client closed".into(), None, true))?;
        let policy = Policy {
            retry,
            backoff: self.backoff,
        };
        let mut tries = Attempts::default();
        loop {
            let _alone = if self.cautious.load(Ordering::SeqCst) > 0 {
                Some(self.one_at_a_time.lock().await)
            } else {
                None
            };
            // Time held back by GitLab's rate limit (another request's 429)
            // counts as waiting on it, as does this request's own.
            tries.held(self.wait_if_asked().await);
            let Some(remaining) = self
                .deadline
                .checked_duration_since(Instant::now())
                .filter(|d| !d.is_zero())
            else {
                return Err(fail(tries.out_of_time(), None, true));
            };
            let request = self
                .request(&method, &url, query, auth, body, remaining)
                .map_err(|message| fail(message, None, true))?;
            let sent = Instant::now();
            // A GitLab that does not answer is said within seconds, not
            // after the connect or read timeout (issue 12).
            let pending = attempt(request);
            tokio::pin!(pending);
            let (class, status, answer) = tokio::select! {
                done = &mut pending => done,
                () = tokio::time::sleep(SLOW_ANSWER) => {
                    self.notice_waiting("no answer yet");
                    pending.await
                }
            };
            self.record(&method, path, status, sent.elapsed(), &class);
            let now = Now {
                left: self.time_left(),
                held: self.hold.held_for(Instant::now()),
            };
            let reason = class.reason().map(str::to_owned);
            // No answer at all (a failed connect, a timeout): GitLab is out of reach.
            let no_answer = status.is_none() && matches!(class, Class::Transient { .. });
            match class {
                Class::Throttled { .. } => self.cautious.store(CAUTIOUS_ANSWERS, Ordering::SeqCst),
                Class::Answered { .. } => {
                    let _ = self
                        .cautious
                        .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
                }
                _ => {}
            }
            let decision = decide(class, &mut tries, now, policy, &mut rand::rng());
            if let Some(hold) = decision.hold {
                self.hold.hold(Instant::now(), hold);
            }
            match (decision.then, answer) {
                (Then::Answer, Some(answer)) => return Ok(answer),
                (Then::RetryAfter(wait), _) => {
                    if no_answer {
                        self.notice_waiting(reason.as_deref().unwrap_or("no answer"));
                    }
                    tracing::debug!(
                        method = %method,
                        url = %url,
                        attempt = tries.attempt,
                        wait_ms = wait.as_millis() as u64,
                        "retrying: {}",
                        reason.unwrap_or_default()
                    );
                    tokio::time::sleep(wait).await;
                }
                (
                    Then::GiveUp {
                        message,
                        unreachable,
                    },
                    _,
                ) => return Err(fail(message, status, unreachable)),
                // Only an answer read whole is classified `Answered`.
                (Then::Answer, None) => return Err(fail("no answer".into(), status, true)),
            }
        }
    }

    /// One attempt's request: timeout, query, PAT and JSON body.
    fn request<B: Serialize + ?Sized>(
        &self,
        method: &Method,
        url: &str,
        query: &[(&str, String)],
        auth: Auth,
        body: Option<&B>,
        remaining: Duration,
    ) -> Result<reqwest::RequestBuilder, String> {
        let mut request = self
            .http
            .request(method.clone(), url)
            .timeout(remaining.min(READ_TIMEOUT));
        if !query.is_empty() {
            request = request.query(query);
        }
        if let Auth::Pat = auth {
            match &self.pat {
                Some(pat) => request = request.header("PRIVATE-TOKEN", pat.expose()),
                None => return Err("no personal access token configured".into()),
            }
        }
        if let Some(body) = body {
            request = request.json(body);
        }
        Ok(request)
    }

    /// One line per request at `-v` (method, path, status, time; the
    /// query and the body may carry tags or tokens, so neither is logged),
    /// and the count by status for `--metrics-file`.
    fn record(
        &self,
        method: &Method,
        path: &str,
        status: Option<u16>,
        took: Duration,
        class: &Class,
    ) {
        let label = status.map_or_else(|| "error".to_string(), |s| s.to_string());
        let ms = took.as_millis() as u64;
        match status {
            Some(status) => tracing::debug!(
                gitlab = %self.base,
                method = %method,
                path = %path,
                status,
                ms,
                "request"
            ),
            None => tracing::debug!(
                gitlab = %self.base,
                method = %method,
                path = %path,
                ms,
                error = class.reason().unwrap_or("failed"),
                "request without an answer"
            ),
        }
        if let Ok(mut counts) = self.requests.lock() {
            *counts.entry(label).or_default() += 1;
        }
    }

    /// Says once per run and GitLab that it is waiting for GitLab, why, and
    /// until when (the `--timeout` deadline).
    fn notice_waiting(&self, why: &str) {
        if self.waiting_noticed.swap(true, Ordering::Relaxed) {
            return;
        }
        let left = self.time_left();
        let until = time::OffsetDateTime::now_utc() + left;
        let until = until.replace_nanosecond(0).unwrap_or(until);
        let until = until
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        tracing::warn!(
            gitlab = %self.base,
            "waiting for GitLab `{}` ({why}), retrying until {until} ({} s left of --timeout); \
             check that the url is right and GitLab is up",
            self.base,
            left.as_secs()
        );
    }

    /// Requests sent so far (each attempt counts), by HTTP status; `error`
    /// for an attempt that got no answer.
    pub fn request_counts(&self) -> BTreeMap<String, u64> {
        self.requests.lock().map(|c| c.clone()).unwrap_or_default()
    }

    /// The GitLab's url as configured (for logs and metrics labels).
    pub fn base_url(&self) -> &str {
        &self.base
    }

    fn time_left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// Sleeps while GitLab's last `Retry-After` is in force.
    /// Returns how long it slept.
    async fn wait_if_asked(&self) -> Duration {
        let started = Instant::now();
        // Again after each sleep: another request's 429 may have moved the
        // moment on meanwhile.
        while let Some(wait) = self.hold.held_for(Instant::now()) {
            if wait.is_zero() {
                break;
            }
            tokio::time::sleep(wait).await;
        }
        started.elapsed()
    }
}

/// What a 401 or 403 on a read with the PAT means, and the fix.
fn pat_refused(status: u16) -> Option<&'static str> {
    match status {
        401 => Some(
            "GitLab refused the personal access token: it is wrong, revoked or expired. Fix: put a valid token \
             (scopes create_runner + manage_runner + read_api, or api) in `personal_access_token` or its file",
        ),
        403 => Some(
            "The personal access token may not read runners here: give it the read_api (or api) scope, and for \
             instance runners use an administrator's token",
        ),
        _ => None,
    }
}

/// Sends a request and classifies what came of it; the answer, when one
/// was read whole, and its status.
async fn attempt(request: reqwest::RequestBuilder) -> (Class, Option<u16>, Option<Answer>) {
    match request.send().await {
        Ok(response) => {
            let status = response.status();
            let headers = response.headers().clone();
            match read_body(response).await {
                Ok(body) => {
                    let class = classify_answer(status, &headers, &body, SystemTime::now());
                    let answer = Answer {
                        status,
                        headers,
                        body,
                    };
                    (class, Some(status.as_u16()), Some(answer))
                }
                // Oversized: no retry will make it smaller.
                Err(reason) => (Class::Permanent { reason }, Some(status.as_u16()), None),
            }
        }
        Err(e) => (classify_transport(&e), None, None),
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
