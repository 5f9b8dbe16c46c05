//! The GitLab API client: every request this tool sends goes through here.
//!
//! One [`GitLab`] per `client_configs` entry: reqwest with rustls, the
//! system trust store (read once per run, only for `https://`; see `tls`)
//! plus the entry's `tls_ca_file`, explicit connect and
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
//!
//! The parts: `client` (the [`GitLab`] type and its endpoints), `retry`
//! (classifying what came back, and the pure retry decision), `types`
//! (request bodies and answers on the wire), `error` ([`ApiError`] and the
//! reading of GitLab's and the transport's errors), `tls` (the certificates
//! a run trusts).

mod client;
mod error;
mod retry;
mod tls;
mod types;

pub use client::{GitLab, MAX_BODY_BYTES, MAX_IN_FLIGHT};
pub use error::{ApiError, ApiResult, RATE_LIMITED};
pub use tls::SystemRoots;
pub use types::{
    IssuedToken, ListedRunner, RunnerAttributes, RunnerDetails, SecretField, Verified,
};
