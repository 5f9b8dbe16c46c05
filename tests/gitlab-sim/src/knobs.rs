//! The test knobs and the per-request decisions they make: latency, failing
//! every Nth request with 502, the fixed-window rate limiter (429 with
//! Rack::Attack's `RateLimit-*` and `Retry-After` headers), dropping
//! connections, the registration-token switch (410), LLNL's patched
//! `runner_details` (token exposed), the runner token lifetime, a broken
//! pagination of the runner lists, a 502 after the handler ran, and hostile
//! answers (`hostile.rs`). The clock lag lives with the world (`state.rs`).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use time::OffsetDateTime;

use crate::SimOptions;
use crate::clock;
use crate::hostile::{HostileAnswer, Rule};

/// How `GET /runners` and `GET /runners/all` break their pagination (a
/// misbehaving proxy or GitLab bug), so that a client reading every page
/// cannot get the whole list.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ListingFault {
    /// No `x-next-page` header (and no `rel="next"` link) on any page: the
    /// first page is all a client can find, even when it is full.
    NoNextPage,
    /// `x-next-page` (and the `next` link) name the current page again.
    NextPageRepeats,
}

/// All knobs; every setter takes effect for the next request.
#[derive(Debug)]
pub(crate) struct Knobs {
    inner: Mutex<Inner>,
    drop_connections: AtomicBool,
}

#[derive(Debug)]
struct Inner {
    latency: Option<Duration>,
    fail_every: Option<u64>,
    /// Requests seen since `fail_every` was last set.
    fail_counter: u64,
    rate_limit: Option<u32>,
    /// `(epoch second, requests observed in it)`.
    window: (i64, u64),
    registration_enabled: bool,
    patched: bool,
    token_lifetime: Option<Duration>,
    listing_fault: Option<ListingFault>,
    /// `(requests left, Retry-After seconds)`: answer that many 429s.
    throttle_next: (u64, u64),
    hostile: Vec<Rule>,
    /// `(method, pattern)`: the next matching request is handled, then
    /// answered 502 (each entry fires once).
    fail_after_handler: Vec<(String, String)>,
    /// `(method, pattern, gate)`: the next matching request is handled,
    /// then its answer waits for the gate (each entry fires once).
    hold_after_handler: Vec<(String, String, HeldAnswer)>,
}

/// An answer the simulator holds back after its handler ran, until the
/// test lets it go ([`crate::Sim::hold_answer`]): "GitLab did the work"
/// and "the client has heard of it" become two moments a test can put
/// something between, with no race on timing.
#[derive(Clone, Debug, Default)]
pub struct HeldAnswer(Arc<HeldState>);

#[derive(Debug, Default)]
struct HeldState {
    handled: AtomicBool,
    release: tokio::sync::Notify,
}

impl HeldAnswer {
    /// Waits until the request was handled and its answer is held; `false`
    /// if that did not happen within 30 s. It blocks the calling thread
    /// (a test's, not the simulator's runtime).
    pub fn wait_handled(&self) -> bool {
        let until = std::time::Instant::now() + Duration::from_secs(30);
        while !self.0.handled.load(Ordering::SeqCst) {
            if std::time::Instant::now() > until {
                return false;
            }
            std::thread::sleep(Duration::from_millis(2));
        }
        true
    }

    /// Lets the held answer go (or, if the request has not come yet, lets
    /// it through when it does).
    pub fn release(&self) {
        self.0.release.notify_one();
    }

    /// In the simulator: the request was handled; wait for the release.
    pub(crate) async fn hold(&self) {
        self.0.handled.store(true, Ordering::SeqCst);
        self.0.release.notified().await;
    }
}

/// The rate limiter's verdict on one request.
#[derive(Debug, Clone)]
pub(crate) struct RateVerdict {
    /// Over the limit: answer 429.
    pub limited: bool,
    /// Headers to put on the response, whatever it is.
    pub headers: Vec<(&'static str, String)>,
    /// `Retry-After` seconds, when limited.
    pub retry_after: Option<u64>,
}

impl Knobs {
    pub(crate) fn new(opts: &SimOptions) -> Knobs {
        Knobs {
            inner: Mutex::new(Inner {
                latency: opts.latency,
                fail_every: opts.fail_every.filter(|n| *n > 0),
                fail_counter: 0,
                rate_limit: opts.rate_limit_per_sec.filter(|n| *n > 0),
                window: (0, 0),
                registration_enabled: !opts.registration_disabled,
                patched: opts.patched,
                token_lifetime: opts.token_lifetime,
                listing_fault: None,
                throttle_next: (0, 0),
                hostile: Vec::new(),
                fail_after_handler: Vec::new(),
                hold_after_handler: Vec::new(),
            }),
            drop_connections: AtomicBool::new(false),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn set_latency(&self, d: Option<Duration>) {
        self.lock().latency = d;
    }

    pub(crate) fn latency(&self) -> Option<Duration> {
        self.lock().latency
    }

    /// Sets N and restarts the count: requests N, 2N, … from now on fail.
    pub(crate) fn set_fail_every(&self, n: Option<u64>) {
        let mut k = self.lock();
        k.fail_every = n.filter(|n| *n > 0);
        k.fail_counter = 0;
    }

    /// Counts this request and says whether it is one that must fail.
    pub(crate) fn count_and_check_failure(&self) -> bool {
        let mut k = self.lock();
        let Some(n) = k.fail_every else {
            return false;
        };
        k.fail_counter += 1;
        k.fail_counter.is_multiple_of(n)
    }

    pub(crate) fn set_rate_limit(&self, per_sec: Option<u32>) {
        let mut k = self.lock();
        k.rate_limit = per_sec.filter(|n| *n > 0);
        k.window = (0, 0);
    }

    /// Counts this request in the current one-second window and returns the
    /// verdict, or `None` when no rate limit is set.
    pub(crate) fn rate_check(
        &self,
        now: OffsetDateTime,
        authenticated: bool,
    ) -> Option<RateVerdict> {
        let mut k = self.lock();
        if k.throttle_next.0 > 0 {
            k.throttle_next.0 -= 1;
            let retry = k.throttle_next.1;
            return Some(RateVerdict {
                limited: true,
                headers: vec![("Retry-After", retry.to_string())],
                retry_after: Some(retry),
            });
        }
        let limit = u64::from(k.rate_limit?);
        let second = now.unix_timestamp();
        if k.window.0 != second {
            k.window = (second, 0);
        }
        k.window.1 += 1;
        let observed = k.window.1;
        drop(k);

        // Rack::Attack with period = 1 s (see gitlab-api.md §7).
        let period: i64 = 1;
        let retry_after = period - second.rem_euclid(period);
        let reset = second + retry_after;
        let reset_time = OffsetDateTime::from_unix_timestamp(reset).unwrap_or(now);
        let limited = observed > limit;
        let name = if authenticated {
            "throttle_authenticated_api"
        } else {
            "throttle_unauthenticated_api"
        };
        let mut headers = vec![
            ("RateLimit-Name", name.to_string()),
            ("RateLimit-Limit", (limit * 60).to_string()),
            ("RateLimit-Observed", observed.to_string()),
            (
                "RateLimit-Remaining",
                limit.saturating_sub(observed).to_string(),
            ),
            ("RateLimit-Reset", reset.to_string()),
        ];
        let retry = u64::try_from(retry_after.max(1)).unwrap_or(1);
        if limited {
            headers.push(("RateLimit-ResetTime", clock::http_date(reset_time)));
            headers.push(("Retry-After", retry.to_string()));
        }
        Some(RateVerdict {
            limited,
            headers,
            retry_after: limited.then_some(retry),
        })
    }

    /// The next `n` requests get 429 with `Retry-After: retry_after_secs`
    /// (a throttle in front of GitLab), whatever the rate limit says.
    pub(crate) fn throttle_next(&self, n: u64, retry_after_secs: u64) {
        self.lock().throttle_next = (n, retry_after_secs);
    }

    pub(crate) fn set_drop_connections(&self, on: bool) {
        self.drop_connections.store(on, Ordering::SeqCst);
    }

    pub(crate) fn drop_connections(&self) -> bool {
        self.drop_connections.load(Ordering::SeqCst)
    }

    pub(crate) fn set_registration_enabled(&self, on: bool) {
        self.lock().registration_enabled = on;
    }

    pub(crate) fn registration_enabled(&self) -> bool {
        self.lock().registration_enabled
    }

    pub(crate) fn set_patched(&self, on: bool) {
        self.lock().patched = on;
    }

    pub(crate) fn patched(&self) -> bool {
        self.lock().patched
    }

    pub(crate) fn set_token_lifetime(&self, d: Option<Duration>) {
        self.lock().token_lifetime = d;
    }

    pub(crate) fn token_lifetime(&self) -> Option<Duration> {
        self.lock().token_lifetime
    }

    pub(crate) fn set_listing_fault(&self, fault: Option<ListingFault>) {
        self.lock().listing_fault = fault;
    }

    pub(crate) fn listing_fault(&self) -> Option<ListingFault> {
        self.lock().listing_fault
    }

    /// Adds a rule; a later rule for the same method and pattern replaces it.
    pub(crate) fn set_hostile(&self, method: &str, pattern: &str, answer: HostileAnswer) {
        let mut k = self.lock();
        k.hostile
            .retain(|r| !(r.method.eq_ignore_ascii_case(method) && r.pattern == pattern));
        k.hostile.push(Rule {
            method: method.to_string(),
            pattern: pattern.to_string(),
            answer,
        });
    }

    /// The next `method` request matching `pattern` is handled, then
    /// answered 502 (once).
    pub(crate) fn fail_once_after_handler(&self, method: &str, pattern: &str) {
        self.lock()
            .fail_after_handler
            .push((method.to_string(), pattern.to_string()));
    }

    /// Whether this request's answer must be replaced by a 502 (consumes
    /// the entry that says so).
    pub(crate) fn take_fail_after_handler(&self, method: &str, path: &str) -> bool {
        let mut k = self.lock();
        let hit = k.fail_after_handler.iter().position(|(m, p)| {
            m.eq_ignore_ascii_case(method) && crate::hostile::path_matches(p, path)
        });
        hit.map(|i| k.fail_after_handler.remove(i)).is_some()
    }

    /// The next `method` request matching `pattern` is handled, then its
    /// answer waits for the returned gate (once).
    pub(crate) fn hold_after_handler(&self, method: &str, pattern: &str) -> HeldAnswer {
        let gate = HeldAnswer::default();
        self.lock().hold_after_handler.push((
            method.to_string(),
            pattern.to_string(),
            gate.clone(),
        ));
        gate
    }

    /// The gate this request's answer must wait for, if any (consumes the
    /// entry that says so).
    pub(crate) fn take_hold_after_handler(&self, method: &str, path: &str) -> Option<HeldAnswer> {
        let mut k = self.lock();
        let hit = k.hold_after_handler.iter().position(|(m, p, _)| {
            m.eq_ignore_ascii_case(method) && crate::hostile::path_matches(p, path)
        });
        hit.map(|i| k.hold_after_handler.remove(i).2)
    }

    pub(crate) fn clear_hostile(&self) {
        self.lock().hostile.clear();
    }

    /// The answer of the last rule matching this request, if any.
    pub(crate) fn hostile(&self, method: &str, path: &str) -> Option<HostileAnswer> {
        let k = self.lock();
        k.hostile
            .iter()
            .rev()
            .find(|r| r.matches(method, path))
            .map(|r| r.answer.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fail_every_counts_from_the_call() {
        let k = Knobs::new(&SimOptions::default());
        assert!(!k.count_and_check_failure());
        k.set_fail_every(Some(3));
        let hits: Vec<bool> = (0..6).map(|_| k.count_and_check_failure()).collect();
        assert_eq!(hits, [false, false, true, false, false, true]);
    }

    #[test]
    fn rate_window() {
        let k = Knobs::new(&SimOptions {
            rate_limit_per_sec: Some(2),
            ..SimOptions::default()
        });
        let t = OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        assert!(!k.rate_check(t, true).unwrap().limited);
        assert!(!k.rate_check(t, true).unwrap().limited);
        let v = k.rate_check(t, false).unwrap();
        assert!(v.limited);
        assert_eq!(v.retry_after, Some(1));
        assert!(
            v.headers
                .iter()
                .any(|(n, v)| *n == "RateLimit-Limit" && v == "120")
        );
        let next = OffsetDateTime::from_unix_timestamp(1_700_000_001).unwrap();
        assert!(!k.rate_check(next, true).unwrap().limited);
    }
}
