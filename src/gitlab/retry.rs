//! Whether and when a request is repeated, as pure functions (cargo's
//! `util/network/retry.rs` is the model): what came back is first
//! classified ([`classify_answer`], [`classify_transport`]) into a
//! [`Class`], then [`decide`] turns that class, the [`Attempts`] so far,
//! the time left ([`Now`]), the [`Policy`] and a source of randomness into a
//! [`Decision`]. No clock is read and no sleep happens here: the client
//! passes the moment in and does the waiting, so the tests drive every
//! branch with plain `Duration`s, fake `Instant`s and a seeded generator.
//!
//! The rules: 408, 500, 502, 503 and 504 and transport failures are
//! retried with jittered exponential backoff, at most [`MAX_ATTEMPTS`]
//! counted attempts; a 429, and a 503 that names a wait, is GitLab asking
//! to wait, not a failure: it does not count, and the wait (its
//! `Retry-After` or `RateLimit-ResetTime`) is spread over the next window,
//! drawn once per run ([`HoldOff`]). An answer that used up the window
//! (`RateLimit-Remaining: 0`) holds the run until the reset. Everything is
//! clamped to the `--timeout` deadline with saturating arithmetic, whatever
//! the server asked for. A request under [`Retry::UntilSent`] is repeated
//! only when it never reached GitLab's handler.

use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime};

use reqwest::StatusCode;
use reqwest::header::{HeaderMap, RETRY_AFTER};

use super::error::{
    RATE_LIMITED, gitlab_message, is_certificate_error, is_plain_http_answer, transport_reason,
};

/// Attempts per request, retries included (gitlab-runner makes 5; a little
/// more patience here, still bounded by the deadline).
pub(super) const MAX_ATTEMPTS: u32 = 8;
const BACKOFF_FIRST: Duration = Duration::from_millis(250);
const BACKOFF_MAX: Duration = Duration::from_secs(10);

/// Which failures a request may be repeated after.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Retry {
    /// Reads, verify, update and deletes: repeating them is harmless.
    Always,
    /// A request whose repetition could do harm once GitLab acted on it (a
    /// second registration, a reset with a token already replaced): only
    /// after a failed connect or a 429, which never reached the handler.
    UntilSent,
}

/// What one attempt came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Class {
    /// Success for the retry loop: a status no retry changes, which the
    /// caller reads (a 403 on verify means a rejected token). `window`:
    /// the answer used up the rate-limit window, which resets in that long.
    Answered { window: Option<Duration> },
    /// GitLab asked to wait: a 429 (answered before the request is
    /// handled: Rack::Attack), or a 503 naming a wait.
    Throttled {
        wait: Option<Duration>,
        handled: bool,
        reason: String,
    },
    /// Worth another attempt: 408, 500, 502, 503, 504, a failed connect, a
    /// timeout. `handled`: GitLab may have acted on the request.
    Transient {
        wait: Option<Duration>,
        handled: bool,
        reason: String,
    },
    /// No retry can help (an oversized answer).
    Permanent { reason: String },
    /// A TLS certificate problem: no retry fixes it, and it is no outage.
    Certificate { reason: String },
}

impl Class {
    /// Why the attempt failed, for the log; `None` for an answer.
    pub fn reason(&self) -> Option<&str> {
        match self {
            Class::Answered { .. } => None,
            Class::Throttled { reason, .. }
            | Class::Transient { reason, .. }
            | Class::Permanent { reason }
            | Class::Certificate { reason } => Some(reason),
        }
    }
}

/// The statuses worth another attempt.
pub(super) fn is_retryable(status: StatusCode) -> bool {
    matches!(status.as_u16(), 408 | 429 | 500 | 502 | 503 | 504)
}

/// Classifies an answer read whole, at wall-clock time `now` (for the
/// headers' dates).
pub(super) fn classify_answer(
    status: StatusCode,
    headers: &HeaderMap,
    body: &[u8],
    now: SystemTime,
) -> Class {
    if !is_retryable(status) {
        return Class::Answered {
            window: exhausted_window_wait(headers, now),
        };
    }
    let wait = server_wait(headers, now);
    let reason = format!("HTTP {}: {}", status.as_u16(), gitlab_message(body));
    let handled = status != StatusCode::TOO_MANY_REQUESTS;
    let throttled = !handled || (status == StatusCode::SERVICE_UNAVAILABLE && wait.is_some());
    if throttled {
        Class::Throttled {
            wait,
            handled,
            reason,
        }
    } else {
        Class::Transient {
            wait,
            handled,
            reason,
        }
    }
}

/// Classifies a request that got no answer.
pub(super) fn classify_transport(e: &reqwest::Error) -> Class {
    let reason = transport_reason(e);
    if is_certificate_error(e) {
        return Class::Certificate { reason };
    }
    if is_plain_http_answer(e) {
        return Class::Permanent {
            reason: format!(
                "{reason}: the server at this address answers in plain HTTP, not TLS. Fix: if GitLab really \
                 serves plain HTTP there, write the url with `http://`; otherwise use GitLab's HTTPS address"
            ),
        };
    }
    // A failed connect never reached GitLab: always safe to repeat.
    Class::Transient {
        wait: None,
        handled: !e.is_connect(),
        reason,
    }
}

/// How long GitLab asked to wait: the longer of `RateLimit-ResetTime`
/// (HTTP date: when the window resets) and `Retry-After` (seconds or HTTP
/// date; relative, so free of clock skew), gitlab-api.md §7. Either alone
/// is used as it is.
pub(super) fn server_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let reset = headers
        .get("ratelimit-resettime")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| until_http_date(v, now));
    let retry_after = headers
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .and_then(|value| match value.parse::<u64>() {
            Ok(secs) => Some(Duration::from_secs(secs)),
            Err(_) => until_http_date(value, now),
        });
    reset.max(retry_after)
}

fn until_http_date(value: &str, now: SystemTime) -> Option<Duration> {
    httpdate::parse_http_date(value)
        .ok()
        .map(|t| t.duration_since(now).unwrap_or(Duration::ZERO))
}

/// On an answer that was let through: when it used up the rate-limit
/// window (`RateLimit-Remaining: 0`), how long until the window resets
/// (`RateLimit-Reset`, epoch seconds). The next request before then would
/// only be refused.
pub(super) fn exhausted_window_wait(headers: &HeaderMap, now: SystemTime) -> Option<Duration> {
    let header = |name: &str| headers.get(name)?.to_str().ok()?.trim().parse::<u64>().ok();
    if header("ratelimit-remaining")? != 0 {
        return None;
    }
    let reset =
        SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(header("ratelimit-reset")?))?;
    Some(reset.duration_since(now).unwrap_or(Duration::ZERO))
}

/// A source of randomness for the jitter: `rand`'s generators in the
/// client, a seeded one in the tests.
pub(super) trait Jitter {
    /// A number in `0..=max`, uniformly.
    fn up_to(&mut self, max: u64) -> u64;
}

impl<R: rand::Rng + ?Sized> Jitter for R {
    fn up_to(&mut self, max: u64) -> u64 {
        rand::RngExt::random_range(self, 0..=max)
    }
}

/// GitLab's wait plus a random share of the next window, so that hosts
/// refused together come back spread out instead of in lockstep. The
/// window is not sent; the wait until its reset is at most one window and
/// at least a second (Rack::Attack's resolution), so that is the spread.
/// The result never exceeds `left` (what remains of `--timeout`), with
/// saturating arithmetic whatever the server asked for.
pub(super) fn spread_over_window(
    wait: Duration,
    left: Duration,
    rng: &mut impl Jitter,
) -> Duration {
    let wait = wait.min(left);
    let window = wait.max(Duration::from_secs(1)).min(left - wait);
    let jitter = rng.up_to(window.as_millis().min(u128::from(u64::MAX)) as u64);
    wait.saturating_add(Duration::from_millis(jitter)).min(left)
}

/// 250 ms, 500 ms, 1 s, … capped at 10 s; each drawn from [d/2, d].
pub(super) fn jittered_backoff(attempt: u32, rng: &mut impl Jitter) -> Duration {
    let exp = BACKOFF_FIRST.saturating_mul(1u32 << (attempt.max(1) - 1).min(16));
    let full = exp.min(BACKOFF_MAX);
    let half = full / 2;
    half + Duration::from_millis(rng.up_to(half.as_millis() as u64))
}

/// Why a request was given up on. Running out of time while GitLab's rate
/// limit holds the run is named as such: an operator must not look for an
/// outage. The message starts with [`RATE_LIMITED`] then.
pub(super) fn gave_up_message(
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

/// What one request went through so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct Attempts {
    /// Failed attempts that count toward [`MAX_ATTEMPTS`] (throttles do not).
    pub attempt: u32,
    /// Time spent waiting on GitLab's rate limit: this request's own
    /// throttles and the run's hold (another request's 429).
    pub throttled_for: Duration,
}

impl Attempts {
    /// Adds time spent held back before an attempt.
    pub fn held(&mut self, waited: Duration) {
        self.throttled_for = self.throttled_for.saturating_add(waited);
    }

    /// The message when the deadline has passed before an attempt.
    pub fn out_of_time(&self) -> String {
        let rate_limited = self.throttled_for > Duration::ZERO;
        gave_up_message(self.attempt, self.throttled_for, None, rate_limited)
    }
}

/// The moment of a decision.
#[derive(Debug, Clone, Copy)]
pub(super) struct Now {
    /// What is left until the deadline.
    pub left: Duration,
    /// How long the run still holds off this GitLab, if it does.
    pub held: Option<Duration>,
}

/// How a request may be repeated.
#[derive(Debug, Clone, Copy)]
pub(super) struct Policy {
    pub retry: Retry,
    /// Exponential backoff between failed attempts (off in tests:
    /// `REGISTER_RUNNER_NO_RETRY_DELAY`; GitLab's own waits still hold).
    pub backoff: bool,
}

/// What to do next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Decision {
    /// Hold every request to this GitLab this long from now (the client
    /// keeps the later of this and any hold already in force).
    pub hold: Option<Duration>,
    pub then: Then,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Then {
    /// Hand the answer to the caller.
    Answer,
    /// Try again after this long.
    RetryAfter(Duration),
    /// Fail with this message; `unreachable`: GitLab is out of reach or
    /// kept us waiting, as opposed to refusing the request.
    GiveUp { message: String, unreachable: bool },
}

fn give_up(hold: Option<Duration>, message: String, unreachable: bool) -> Decision {
    Decision {
        hold,
        then: Then::GiveUp {
            message,
            unreachable,
        },
    }
}

/// The retry decision for one attempt's outcome.
pub(super) fn decide(
    class: Class,
    tries: &mut Attempts,
    now: Now,
    policy: Policy,
    rng: &mut impl Jitter,
) -> Decision {
    let left = now.left;
    let (server, handled, reason, throttled) = match class {
        Class::Answered { window } => {
            // The window's last allowed request: the next one would be
            // refused, so this run waits for the reset (spread, like every
            // host that saw the same).
            let hold = window.map(|w| spread_over_window(w, left, rng));
            return Decision {
                hold,
                then: Then::Answer,
            };
        }
        Class::Permanent { reason } => return give_up(None, reason, false),
        Class::Certificate { reason } => {
            let message = format!("{reason}: check the server's certificate or `tls_ca_file`");
            return give_up(None, message, false);
        }
        Class::Throttled {
            wait,
            handled,
            reason,
        } => (wait, handled, reason, true),
        Class::Transient {
            wait,
            handled,
            reason,
        } => (wait, handled, reason, false),
    };
    if handled && policy.retry == Retry::UntilSent {
        let message =
            format!("{reason} (not repeated: GitLab may have acted on it; the next run checks)");
        return give_up(None, message, false);
    }
    let (wait, hold) = if throttled {
        throttle(server, tries, now, rng)
    } else {
        tries.attempt += 1;
        let backoff = if policy.backoff {
            jittered_backoff(tries.attempt, rng)
        } else {
            Duration::ZERO
        };
        let wait = server.unwrap_or(backoff);
        let hold = server.map(|_| wait);
        if tries.attempt >= MAX_ATTEMPTS {
            let message = gave_up_message(tries.attempt, tries.throttled_for, Some(&reason), false);
            return give_up(hold, message, true);
        }
        (wait, hold)
    };
    if wait >= left {
        let message = gave_up_message(tries.attempt, tries.throttled_for, Some(&reason), throttled);
        return give_up(hold, message, true);
    }
    Decision {
        hold,
        then: Then::RetryAfter(wait),
    }
}

/// A throttle's wait: GitLab's, spread over the next window so that a fleet
/// restarting together does not retry in lockstep. A request refused while
/// this run already holds off (its other requests were refused too) keeps
/// the moment drawn for them: one draw per run, not the latest of many.
fn throttle(
    server: Option<Duration>,
    tries: &mut Attempts,
    now: Now,
    rng: &mut impl Jitter,
) -> (Duration, Option<Duration>) {
    let base = server.unwrap_or(BACKOFF_FIRST).min(now.left);
    let (wait, hold) = match now.held {
        Some(held) if held >= base => (held, None),
        _ => {
            let wait = spread_over_window(base, now.left, rng);
            (wait, Some(wait))
        }
    };
    tries.held(wait.min(now.left));
    (wait, hold)
}

/// The run's hold on one GitLab: GitLab asked us to wait (429/503 with
/// `Retry-After` or `RateLimit-ResetTime`, or a used-up window), and no
/// request to it leaves before this instant. Shared by all its requests.
#[derive(Debug)]
pub(super) struct HoldOff {
    deadline: Instant,
    not_before: Mutex<Option<Instant>>,
}

impl HoldOff {
    pub fn new(deadline: Instant) -> Self {
        HoldOff {
            deadline,
            not_before: Mutex::new(None),
        }
    }

    /// How long, from `now`, this run still holds off, if it does.
    pub fn held_for(&self, now: Instant) -> Option<Duration> {
        let until = (*self.not_before.lock().unwrap_or_else(|e| e.into_inner()))?;
        until.min(self.deadline).checked_duration_since(now)
    }

    /// Makes every request wait `wait` from `now`, unless a later hold is
    /// in force already.
    pub fn hold(&self, now: Instant, wait: Duration) {
        // Saturating: a server may ask for any wait (`Retry-After:
        // 18446744073709551615`); none outlasts the deadline anyway.
        let left = self.deadline.saturating_duration_since(now);
        let until = now.checked_add(wait.min(left)).unwrap_or(self.deadline);
        let mut guard = self.not_before.lock().unwrap_or_else(|e| e.into_inner());
        if guard.is_none_or(|t| t < until) {
            *guard = Some(until);
        }
    }
}

#[cfg(test)]
mod tests {
    //! The clock is fake throughout: `Now` carries plain `Duration`s, the
    //! hold is driven with `Instant`s the test moves, the headers' dates
    //! are read at a `SystemTime` the test picks, and randomness comes from
    //! a seeded generator or a fixed draw.

    use super::*;
    use rand::SeedableRng;
    use rand::rngs::StdRng;
    use reqwest::header::HeaderValue;

    /// Always the largest draw.
    struct Max;
    impl Jitter for Max {
        fn up_to(&mut self, max: u64) -> u64 {
            max
        }
    }

    /// Always the smallest draw.
    struct Min;
    impl Jitter for Min {
        fn up_to(&mut self, _: u64) -> u64 {
            0
        }
    }

    const fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    const fn ms(m: u64) -> Duration {
        Duration::from_millis(m)
    }

    fn now(left: Duration) -> Now {
        Now { left, held: None }
    }

    const ALWAYS: Policy = Policy {
        retry: Retry::Always,
        backoff: true,
    };
    const UNTIL_SENT: Policy = Policy {
        retry: Retry::UntilSent,
        backoff: true,
    };

    fn transient(wait: Option<Duration>, handled: bool) -> Class {
        Class::Transient {
            wait,
            handled,
            reason: "HTTP 502: Bad Gateway".into(),
        }
    }

    fn too_many(wait: Option<Duration>) -> Class {
        Class::Throttled {
            wait,
            handled: false,
            reason: "HTTP 429: Retry later".into(),
        }
    }

    fn gave_up(decision: &Decision) -> (&str, bool) {
        match &decision.then {
            Then::GiveUp {
                message,
                unreachable,
            } => (message, *unreachable),
            other => panic!("not given up: {other:?}"),
        }
    }

    fn date_in(at: SystemTime, d: Duration) -> HeaderValue {
        HeaderValue::from_str(&httpdate::fmt_http_date(at + d)).unwrap()
    }

    // --- classification ---

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
    fn answers_are_classified_before_any_decision() {
        let t = SystemTime::now();
        let none = HeaderMap::new();
        let class = |code: u16, headers: &HeaderMap| {
            classify_answer(StatusCode::from_u16(code).unwrap(), headers, b"{}", t)
        };
        for code in [200, 201, 204, 302, 403, 404, 422, 501] {
            assert_eq!(
                class(code, &none),
                Class::Answered { window: None },
                "{code}"
            );
        }
        let body = br#"{"message":"Retry later"}"#;
        assert_eq!(
            classify_answer(StatusCode::TOO_MANY_REQUESTS, &none, body, t),
            too_many(None)
        );
        let mut wait = HeaderMap::new();
        wait.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        // A 503 naming a wait is a throttle, but one GitLab may have handled.
        assert_eq!(
            class(503, &wait),
            Class::Throttled {
                wait: Some(secs(7)),
                handled: true,
                reason: "HTTP 503: {}".into()
            }
        );
        assert_eq!(
            class(503, &none),
            Class::Transient {
                wait: None,
                handled: true,
                reason: "HTTP 503: {}".into()
            }
        );
        assert_eq!(
            class(502, &wait),
            Class::Transient {
                wait: Some(secs(7)),
                handled: true,
                reason: "HTTP 502: {}".into()
            }
        );
        let mut used_up = HeaderMap::new();
        used_up.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        let reset = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 3;
        used_up.insert("ratelimit-reset", HeaderValue::from(reset));
        let Class::Answered { window: Some(w) } = class(200, &used_up) else {
            panic!("no window");
        };
        assert!(w > secs(2) && w <= secs(3), "{w:?}");
    }

    #[test]
    fn retry_after_seconds_and_reset_time() {
        let t = SystemTime::now();
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, HeaderValue::from_static("3"));
        assert_eq!(server_wait(&headers, t), Some(secs(3)));
        headers.insert("ratelimit-resettime", date_in(t, secs(5)));
        let wait = server_wait(&headers, t).unwrap();
        assert!(wait >= secs(4) && wait <= secs(6), "{wait:?}");
        // A Retry-After date, and one in the past.
        let mut headers = HeaderMap::new();
        headers.insert(RETRY_AFTER, date_in(t, secs(60)));
        let wait = server_wait(&headers, t).unwrap();
        assert!(wait > secs(58) && wait <= secs(60), "{wait:?}");
        assert_eq!(server_wait(&headers, t + secs(120)), Some(Duration::ZERO));
        headers.insert(RETRY_AFTER, HeaderValue::from_static("soon"));
        assert_eq!(server_wait(&headers, t), None);
    }

    #[test]
    fn an_exhausted_window_is_waited_out_before_the_next_request() {
        let t = SystemTime::now();
        let mut headers = HeaderMap::new();
        let reset = t.duration_since(SystemTime::UNIX_EPOCH).unwrap().as_secs() + 3;
        headers.insert("ratelimit-reset", HeaderValue::from(reset));
        headers.insert("ratelimit-remaining", HeaderValue::from_static("4"));
        assert_eq!(exhausted_window_wait(&headers, t), None);
        headers.insert("ratelimit-remaining", HeaderValue::from_static("0"));
        let wait = exhausted_window_wait(&headers, t).unwrap();
        assert!(wait > secs(1) && wait <= secs(3), "{wait:?}");
        assert_eq!(
            exhausted_window_wait(&headers, t + secs(10)),
            Some(Duration::ZERO)
        );
        headers.insert(
            "ratelimit-reset",
            HeaderValue::from_static("18446744073709551615"),
        );
        assert_eq!(exhausted_window_wait(&headers, t), None);
    }

    // --- the jitter ---

    #[test]
    fn a_servers_wait_is_spread_over_the_next_window_and_clamped() {
        let left = secs(30);
        let mut rng = StdRng::seed_from_u64(14);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let wait = spread_over_window(secs(2), left, &mut rng);
            assert!(wait >= secs(2) && wait <= secs(4), "{wait:?}");
            seen.insert(wait.as_millis() / 100);
        }
        assert!(seen.len() > 5, "no spread: {seen:?}");
        assert_eq!(spread_over_window(secs(2), left, &mut Min), secs(2));
        assert_eq!(spread_over_window(secs(2), left, &mut Max), secs(4));
        // A short wait is spread over at least a second.
        assert_eq!(spread_over_window(ms(10), left, &mut Max), ms(1010));
        // Whatever the server asks for, the wait ends with the deadline.
        assert_eq!(spread_over_window(Duration::MAX, left, &mut Max), left);
        assert_eq!(spread_over_window(secs(29), left, &mut Max), left);
        assert_eq!(
            spread_over_window(secs(5), Duration::ZERO, &mut Max),
            Duration::ZERO
        );
    }

    #[test]
    fn the_same_seed_draws_the_same_waits() {
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..=6)
                .map(|a| jittered_backoff(a, &mut rng))
                .collect::<Vec<_>>()
        };
        assert_eq!(draw(7), draw(7));
        assert_ne!(draw(7), draw(8));
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let mut rng = StdRng::seed_from_u64(1);
        for attempt in 1..40 {
            let d = jittered_backoff(attempt, &mut rng);
            assert!(d <= BACKOFF_MAX, "{d:?}");
        }
        assert!(jittered_backoff(1, &mut rng) <= BACKOFF_FIRST);
        assert!(jittered_backoff(4, &mut rng) >= BACKOFF_FIRST * 4);
        assert_eq!(jittered_backoff(1, &mut Min), ms(125));
        assert_eq!(jittered_backoff(1, &mut Max), ms(250));
        assert_eq!(jittered_backoff(3, &mut Max), secs(1));
        assert_eq!(jittered_backoff(7, &mut Max), secs(10));
        assert_eq!(jittered_backoff(40, &mut Min), secs(5));
    }

    // --- the messages ---

    #[test]
    fn running_out_of_time_under_a_rate_limit_is_not_called_an_outage() {
        let message = gave_up_message(0, ms(12_300), Some("HTTP 429: Retry later"), true);
        assert!(message.starts_with(RATE_LIMITED), "{message}");
        assert!(message.contains("12.3 s"), "{message}");
        let message = gave_up_message(8, Duration::ZERO, Some("HTTP 502: Bad Gateway"), false);
        assert_eq!(message, "gave up after 8 attempt(s): HTTP 502: Bad Gateway");
        assert_eq!(
            gave_up_message(2, ms(1500), Some("timed out"), false),
            "gave up after 2 attempt(s), and 1.5 s waiting on GitLab's rate limit: timed out"
        );
    }

    #[test]
    fn a_deadline_passed_before_an_attempt() {
        let mut tries = Attempts::default();
        assert_eq!(
            tries.out_of_time(),
            "gave up: the --timeout deadline has passed"
        );
        tries.attempt = 3;
        assert_eq!(tries.out_of_time(), "gave up after 3 attempt(s)");
        // Held back by the run's hold all along: named as the rate limit.
        let mut held = Attempts::default();
        held.held(secs(4));
        held.held(Duration::MAX);
        assert_eq!(held.throttled_for, Duration::MAX);
        assert!(held.out_of_time().starts_with(RATE_LIMITED));
    }

    // --- the decision, branch by branch ---

    #[test]
    fn an_answer_goes_to_the_caller_and_a_used_up_window_holds_the_run() {
        let mut tries = Attempts::default();
        let plain = decide(
            Class::Answered { window: None },
            &mut tries,
            now(secs(30)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(
            plain,
            Decision {
                hold: None,
                then: Then::Answer
            }
        );
        let used_up = decide(
            Class::Answered {
                window: Some(secs(3)),
            },
            &mut tries,
            now(secs(30)),
            UNTIL_SENT,
            &mut Max,
        );
        assert_eq!(used_up.then, Then::Answer);
        assert_eq!(used_up.hold, Some(secs(6)));
        let late = decide(
            Class::Answered {
                window: Some(secs(3)),
            },
            &mut tries,
            now(secs(4)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(late.hold, Some(secs(4)));
        assert_eq!(tries, Attempts::default());
    }

    #[test]
    fn permanent_and_certificate_failures_are_never_repeated() {
        let mut tries = Attempts::default();
        let big = decide(
            Class::Permanent {
                reason: "too large".into(),
            },
            &mut tries,
            now(secs(30)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(gave_up(&big), ("too large", false));
        let cert = decide(
            Class::Certificate {
                reason: "cannot connect: invalid peer certificate: UnknownIssuer".into(),
            },
            &mut tries,
            now(secs(30)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(
            gave_up(&cert),
            (
                "cannot connect: invalid peer certificate: UnknownIssuer: check the server's certificate or `tls_ca_file`",
                false
            )
        );
        assert_eq!(big.hold, None);
        assert_eq!(tries, Attempts::default());
    }

    #[test]
    fn until_sent_repeats_only_what_never_reached_the_handler() {
        let mut tries = Attempts::default();
        let sent = decide(
            transient(None, true),
            &mut tries,
            now(secs(30)),
            UNTIL_SENT,
            &mut Max,
        );
        assert_eq!(
            gave_up(&sent),
            (
                "HTTP 502: Bad Gateway (not repeated: GitLab may have acted on it; the next run checks)",
                false
            )
        );
        let busy = Class::Throttled {
            wait: Some(secs(2)),
            handled: true,
            reason: "HTTP 503: busy".into(),
        };
        let busy = decide(busy, &mut tries, now(secs(30)), UNTIL_SENT, &mut Max);
        assert!(gave_up(&busy).0.ends_with("the next run checks)"));
        assert_eq!(tries, Attempts::default());
        // A failed connect, and a 429: repeated.
        let connect = decide(
            transient(None, false),
            &mut tries,
            now(secs(30)),
            UNTIL_SENT,
            &mut Max,
        );
        assert_eq!(connect.then, Then::RetryAfter(ms(250)));
        let limited = decide(
            too_many(Some(secs(1))),
            &mut tries,
            now(secs(30)),
            UNTIL_SENT,
            &mut Min,
        );
        assert_eq!(limited.then, Then::RetryAfter(secs(1)));
        // Under Always, a handled failure is repeated too.
        let again = decide(
            transient(None, true),
            &mut tries,
            now(secs(30)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(again.then, Then::RetryAfter(ms(500)));
    }

    #[test]
    fn failures_count_and_the_eighth_gives_up() {
        let mut tries = Attempts::default();
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in 1..MAX_ATTEMPTS {
            let d = decide(
                transient(None, true),
                &mut tries,
                now(secs(600)),
                ALWAYS,
                &mut rng,
            );
            let Then::RetryAfter(wait) = d.then else {
                panic!("{d:?}")
            };
            assert!(wait <= BACKOFF_MAX, "{wait:?}");
            assert_eq!(d.hold, None);
            assert_eq!(tries.attempt, attempt);
        }
        let last = decide(
            transient(None, true),
            &mut tries,
            now(secs(600)),
            ALWAYS,
            &mut rng,
        );
        assert_eq!(
            gave_up(&last),
            ("gave up after 8 attempt(s): HTTP 502: Bad Gateway", true)
        );
    }

    #[test]
    fn without_backoff_failures_are_repeated_at_once_but_a_servers_wait_is_kept() {
        let policy = Policy {
            retry: Retry::Always,
            backoff: false,
        };
        let mut tries = Attempts::default();
        let at_once = decide(
            transient(None, true),
            &mut tries,
            now(secs(30)),
            policy,
            &mut Max,
        );
        assert_eq!(at_once.then, Then::RetryAfter(Duration::ZERO));
        // A 502 with a Retry-After: that wait, held for every request, and
        // counted as an attempt.
        let asked = decide(
            transient(Some(secs(2)), true),
            &mut tries,
            now(secs(30)),
            policy,
            &mut Max,
        );
        assert_eq!(
            asked,
            Decision {
                hold: Some(secs(2)),
                then: Then::RetryAfter(secs(2))
            }
        );
        assert_eq!(tries.attempt, 2);
        assert_eq!(tries.throttled_for, Duration::ZERO);
    }

    #[test]
    fn a_failures_wait_past_the_deadline_gives_up_as_an_outage() {
        let mut tries = Attempts::default();
        let d = decide(
            transient(Some(Duration::MAX), true),
            &mut tries,
            now(secs(5)),
            ALWAYS,
            &mut Max,
        );
        // The hold is still set (the client clamps it to the deadline).
        assert_eq!(d.hold, Some(Duration::MAX));
        assert_eq!(
            gave_up(&d),
            ("gave up after 1 attempt(s): HTTP 502: Bad Gateway", true)
        );
        // Backoff alone reaching the deadline.
        let mut tries = Attempts::default();
        let d = decide(
            transient(None, true),
            &mut tries,
            now(ms(100)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(d.hold, None);
        assert!(gave_up(&d).1);
        // The eighth failure with a server wait holds the run as it gives up.
        let mut tries = Attempts {
            attempt: MAX_ATTEMPTS - 1,
            throttled_for: secs(3),
        };
        let d = decide(
            transient(Some(secs(1)), true),
            &mut tries,
            now(secs(30)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(d.hold, Some(secs(1)));
        assert_eq!(
            gave_up(&d),
            (
                "gave up after 8 attempt(s), and 3.0 s waiting on GitLab's rate limit: HTTP 502: Bad Gateway",
                true
            )
        );
    }

    #[test]
    fn throttles_do_not_count_and_are_spread_once_per_run() {
        let mut tries = Attempts::default();
        // No hold yet: GitLab's wait spread over the next window, held.
        let first = decide(
            too_many(Some(secs(2))),
            &mut tries,
            now(secs(60)),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(
            first,
            Decision {
                hold: Some(secs(4)),
                then: Then::RetryAfter(secs(4))
            }
        );
        assert_eq!(tries.attempt, 0);
        assert_eq!(tries.throttled_for, secs(4));
        // Another request refused while the run holds off at least as long
        // as asked: the moment drawn already, no new draw, no new hold.
        let held = Now {
            left: secs(60),
            held: Some(ms(3500)),
        };
        let second = decide(too_many(Some(secs(2))), &mut tries, held, ALWAYS, &mut Max);
        assert_eq!(
            second,
            Decision {
                hold: None,
                then: Then::RetryAfter(ms(3500))
            }
        );
        // A hold shorter than GitLab's new wait: drawn again.
        let short = Now {
            left: secs(60),
            held: Some(secs(1)),
        };
        let third = decide(too_many(Some(secs(2))), &mut tries, short, ALWAYS, &mut Min);
        assert_eq!(third.hold, Some(secs(2)));
        assert_eq!(tries.throttled_for, ms(9500));
        // However many, a throttle never uses up the attempts.
        for _ in 0..3 * MAX_ATTEMPTS {
            let d = decide(too_many(None), &mut tries, now(secs(60)), ALWAYS, &mut Min);
            assert_eq!(d.then, Then::RetryAfter(BACKOFF_FIRST));
        }
        assert_eq!(tries.attempt, 0);
    }

    #[test]
    fn a_throttle_past_the_deadline_gives_up_as_rate_limited() {
        let mut tries = Attempts {
            attempt: 2,
            throttled_for: secs(10),
        };
        let d = decide(
            too_many(Some(Duration::MAX)),
            &mut tries,
            now(secs(5)),
            ALWAYS,
            &mut Max,
        );
        // Clamped to what is left, with saturating arithmetic.
        assert_eq!(d.hold, Some(secs(5)));
        assert_eq!(tries.throttled_for, secs(15));
        let (message, unreachable) = gave_up(&d);
        assert!(unreachable);
        assert_eq!(
            message,
            format!(
                "{RATE_LIMITED}: waited 15.0 s in total as it asked, and the --timeout deadline came first: HTTP 429: Retry later"
            )
        );
        // A 503 naming a wait is the same throttle.
        let mut tries = Attempts::default();
        let busy = Class::Throttled {
            wait: Some(secs(9)),
            handled: true,
            reason: "HTTP 503: busy".into(),
        };
        let d = decide(busy, &mut tries, now(secs(9)), ALWAYS, &mut Min);
        assert!(gave_up(&d).0.starts_with(RATE_LIMITED), "{d:?}");
        // Nothing left at all.
        let mut tries = Attempts::default();
        let d = decide(
            too_many(None),
            &mut tries,
            now(Duration::ZERO),
            ALWAYS,
            &mut Max,
        );
        assert_eq!(d.hold, Some(Duration::ZERO));
        assert!(gave_up(&d).0.starts_with(RATE_LIMITED));
    }

    // --- the run's hold ---

    #[test]
    fn the_hold_only_moves_later_and_ends_with_the_deadline() {
        let t0 = Instant::now();
        let hold = HoldOff::new(t0 + secs(30));
        assert_eq!(hold.held_for(t0), None);
        hold.hold(t0, secs(5));
        assert_eq!(hold.held_for(t0), Some(secs(5)));
        assert_eq!(hold.held_for(t0 + secs(2)), Some(secs(3)));
        // A shorter hold asked later does not shorten it.
        hold.hold(t0 + secs(1), secs(1));
        assert_eq!(hold.held_for(t0), Some(secs(5)));
        hold.hold(t0 + secs(1), secs(6));
        assert_eq!(hold.held_for(t0), Some(secs(7)));
        // Over: nothing to wait for.
        assert_eq!(hold.held_for(t0 + secs(8)), None);
        // Any wait, however long, ends with the deadline.
        hold.hold(t0 + secs(10), Duration::MAX);
        assert_eq!(hold.held_for(t0 + secs(10)), Some(secs(20)));
        assert_eq!(hold.held_for(t0 + secs(30)), Some(Duration::ZERO));
        // Past the deadline: held for nothing more.
        hold.hold(t0 + secs(40), secs(5));
        assert_eq!(hold.held_for(t0 + secs(40)), None);
    }
}
