//! `gitlab-sim`: a stateful stand-in for GitLab's runner API (the endpoints
//! `register-runner` uses, faithful to `shared/reference/gitlab-api.md`),
//! served over real HTTP on 127.0.0.1, with knobs for tests (latency, 502
//! every Nth request, rate limiting, dropped connections, registration switch,
//! LLNL's token-exposing patch, token lifetime, broken list pagination,
//! hostile answers: garbage, huge or endless bodies, echoed secrets, an
//! answer held until the test releases it), a request log and the requests
//! in flight. This file
//! owns the public API: the well-known credentials, `SimOptions`, and the
//! `Sim` handle that starts, inspects, steers and stops a server.
//!
//! ```no_run
//! let sim = gitlab_sim::Sim::start();
//! let url = format!("{}/api/v4/runners/all", sim.url());
//! # let _ = url;
//! assert!(sim.runners().is_empty());
//! ```

mod app;
mod auth;
mod clock;
mod entities;
mod error;
mod handlers;
mod hostile;
mod knobs;
mod log;
mod pagination;
mod params;
mod pipeline;
mod server;
mod state;
mod tls;

use std::sync::Arc;
use std::time::Duration;

pub use auth::AuthKind;
pub use hostile::{HostileAnswer, Rewrite};
pub use knobs::{HeldAnswer, ListingFault};
pub use log::{InFlight, RequestRecord};
pub use state::{CreatedBy, ManagerState, RunnerState, SeedRunner};

use app::Shared;
use server::Server;
use state::{NewRunner, RunnerType};
use tls::Tls;

/// PAT of the administrator (`root`).
pub const ADMIN_PAT: &str = "glpat-simadmin-0123456789";
/// PAT of a non-admin user, Owner of group `OWNED_GROUP_ID` and project `OWNED_PROJECT_ID`.
pub const USER_PAT: &str = "glpat-simuser-0123456789";
/// The instance's runner registration token.
pub const REGISTRATION_TOKEN: &str = "GR1348941simregtoken0123456789";
/// The group `USER_PAT` owns (group 11 exists too, owned by nobody).
pub const OWNED_GROUP_ID: u64 = 10;
/// The project `USER_PAT` owns (project 21 exists too, owned by nobody).
pub const OWNED_PROJECT_ID: u64 = 20;

/// How to start a simulator. `Default` = free port, no knobs turned.
#[derive(Clone, Debug, Default)]
pub struct SimOptions {
    /// 0 = a free port.
    pub port: u16,
    pub latency: Option<Duration>,
    pub fail_every: Option<u64>,
    pub rate_limit_per_sec: Option<u32>,
    pub registration_disabled: bool,
    pub patched: bool,
    pub token_lifetime: Option<Duration>,
    /// Serve HTTPS with a certificate signed by a CA made at start
    /// (see [`Sim::ca_pem`]).
    pub tls: bool,
}

/// A running simulator. Dropping it stops the server and joins its thread.
#[derive(Debug)]
pub struct Sim {
    shared: Arc<Shared>,
    server: Server,
    /// The CA certificate (PEM) when serving HTTPS.
    ca_pem: Option<String>,
}

impl Sim {
    /// Starts a simulator with default options on a free port.
    pub fn start() -> Sim {
        Sim::start_with(SimOptions::default())
    }

    /// Starts a simulator; panics only if it cannot bind the port.
    pub fn start_with(opts: SimOptions) -> Sim {
        let port = opts.port;
        match Sim::try_start_with(opts) {
            Ok(sim) => sim,
            Err(e) => panic!("gitlab-sim: cannot bind 127.0.0.1:{port}: {e}"),
        }
    }

    /// Like `start_with`, but returns the bind error instead of panicking.
    pub fn try_start_with(opts: SimOptions) -> std::io::Result<Sim> {
        let shared = Arc::new(Shared::new(&opts));
        let tls = if opts.tls {
            Some(Tls::generate()?)
        } else {
            None
        };
        let ca_pem = tls.as_ref().map(|t| t.ca_pem.clone());
        let server = Server::start(shared.clone(), opts.port, tls)?;
        Ok(Sim {
            shared,
            server,
            ca_pem,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://` with TLS (no trailing slash).
    pub fn url(&self) -> String {
        let scheme = if self.ca_pem.is_some() {
            "https"
        } else {
            "http"
        };
        format!("{scheme}://127.0.0.1:{}", self.port())
    }

    /// With TLS: the PEM certificate of the CA that signed the server's
    /// certificate (valid for `127.0.0.1` and `localhost`).
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub fn port(&self) -> u16 {
        self.server.addr().port()
    }

    /// Stops the server; afterwards the port refuses connections.
    pub fn stop(self) {
        drop(self);
    }

    /// Every request so far (since the last `clear_requests`), in arrival order.
    pub fn requests(&self) -> Vec<RequestRecord> {
        self.shared.log.snapshot()
    }

    /// Clears the request log and restarts [`Sim::max_in_flight`].
    pub fn clear_requests(&self) {
        self.shared.log.clear();
    }

    /// The requests being handled right now (arrived, not yet answered;
    /// latency included), in arrival order. A request leaves this list
    /// once it is in [`Sim::requests`].
    pub fn in_flight(&self) -> Vec<InFlight> {
        self.shared.log.in_flight()
    }

    /// The most requests in flight at once since the start (or the last
    /// `clear_requests`).
    pub fn max_in_flight(&self) -> usize {
        self.shared.log.max_in_flight()
    }

    /// All runners, sorted by id.
    pub fn runners(&self) -> Vec<RunnerState> {
        self.shared.world().all().map(|r| r.snapshot()).collect()
    }

    pub fn runner(&self, id: u64) -> Option<RunnerState> {
        self.shared.world().get(id).map(|r| r.snapshot())
    }

    /// Creates a runner directly (as if in GitLab's UI); no request is logged.
    /// An unknown `runner_type` falls back to `instance_type`.
    pub fn seed_runner(&self, seed: SeedRunner) -> RunnerState {
        let runner_type = seed
            .runner_type
            .as_deref()
            .and_then(RunnerType::parse)
            .unwrap_or(RunnerType::Instance);
        let lifetime = self.shared.knobs.token_lifetime();
        let mut world = self.shared.world();
        let mut tags: Vec<String> = Vec::new();
        for tag in seed.tag_list {
            if !tags.contains(&tag) {
                tags.push(tag);
            }
        }
        world
            .create(
                NewRunner {
                    description: seed.description,
                    name: None,
                    runner_type,
                    group_id: seed.group_id,
                    project_id: seed.project_id,
                    tag_list: tags,
                    run_untagged: seed.run_untagged,
                    locked: seed.locked,
                    paused: seed.paused,
                    access_level: "not_protected".to_string(),
                    maximum_timeout: None,
                    maintenance_note: None,
                    token: seed.token,
                    created_by: CreatedBy::Seed,
                },
                lifetime,
            )
            .snapshot()
    }

    /// Deletes a runner as if in GitLab's UI; `false` if there was none.
    pub fn remove_runner(&self, id: u64) -> bool {
        self.shared.world().remove(id).is_some()
    }

    /// Sleep this long before handling each request.
    pub fn set_latency(&self, d: Option<Duration>) {
        self.shared.knobs.set_latency(d);
    }

    /// Every Nth request (counting all requests from this call on) gets 502.
    pub fn set_fail_every(&self, n: Option<u64>) {
        self.shared.knobs.set_fail_every(n);
    }

    /// The next `n` requests are answered 429 with `Retry-After:
    /// retry_after_secs`, whatever the rate limit says.
    pub fn throttle_next(&self, n: u64, retry_after_secs: u64) {
        self.shared.knobs.throttle_next(n, retry_after_secs);
    }

    /// At most this many requests per one-second window; the rest get 429.
    pub fn set_rate_limit(&self, per_sec: Option<u32>) {
        self.shared.knobs.set_rate_limit(per_sec);
    }

    /// Accept TCP connections and close them without any response (also
    /// for requests on connections opened before).
    pub fn set_drop_connections(&self, on: bool) {
        self.shared.knobs.set_drop_connections(on);
    }

    /// Off: `POST /runners` answers 410 (GitLab ≥ 17.0 default).
    pub fn set_registration_enabled(&self, on: bool) {
        self.shared.knobs.set_registration_enabled(on);
    }

    /// On: `GET /runners/:id` exposes `token` (LLNL `runner_details` patch).
    pub fn set_patched(&self, on: bool) {
        self.shared.knobs.set_patched(on);
    }

    /// Lifetime of runner tokens created or reset from now on (`None` = never expire).
    pub fn set_token_lifetime(&self, d: Option<Duration>) {
        self.shared.knobs.set_token_lifetime(d);
    }

    /// Some: `GET /runners` and `GET /runners/all` break their pagination
    /// headers that way (`None` = GitLab's headers).
    pub fn set_listing_fault(&self, fault: Option<ListingFault>) {
        self.shared.knobs.set_listing_fault(fault);
    }

    /// From now on, `method` requests whose path matches `pattern` (`*` =
    /// one segment, e.g. `/api/v4/runners/*/managers`) get `answer`
    /// (see [`HostileAnswer`]). Logged with the status actually sent.
    pub fn set_hostile(&self, method: &str, pattern: &str, answer: HostileAnswer) {
        self.shared.knobs.set_hostile(method, pattern, answer);
    }

    /// Drops every hostile rule: GitLab's own answers again.
    pub fn clear_hostile(&self) {
        self.shared.knobs.clear_hostile();
    }

    /// GitLab's clock runs `lag` behind the real one from now on: token
    /// expiry (`token_expires_at` of tokens issued, and whether a token is
    /// still valid), `created_at`, `contacted_at` and runner status use it.
    /// A token issued with `token_lifetime` ≤ `lag` looks, to a client on
    /// the real clock, as if it were already at the end of its life, while
    /// GitLab accepts it for `token_lifetime` of real time: a token "in its
    /// last quarter" without waiting for it to age.
    pub fn set_clock_lag(&self, lag: Duration) {
        self.shared.world().set_clock_lag(lag);
    }

    /// The next `method` request whose path matches `pattern` (`*` = one
    /// segment) is handled as usual, then answered 502 (a proxy losing the
    /// answer after GitLab did the work). Once; calls add up.
    pub fn fail_once_after_handler(&self, method: &str, pattern: &str) {
        self.shared.knobs.fail_once_after_handler(method, pattern);
    }

    /// The next `method` request whose path matches `pattern` (`*` = one
    /// segment) is handled as usual, then its answer is held until the
    /// returned [`HeldAnswer`] is released. Once; calls add up.
    pub fn hold_answer(&self, method: &str, pattern: &str) -> HeldAnswer {
        self.shared.knobs.hold_after_handler(method, pattern)
    }

    /// Removes runner `id`'s manager for `system_id`, as GitLab's clean-up
    /// of managers not seen for 7 days does; `false` if there was none.
    /// No request is logged.
    pub fn expire_manager(&self, id: u64, system_id: &str) -> bool {
        self.shared.world().expire_manager(id, system_id)
    }
}
