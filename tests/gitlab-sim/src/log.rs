//! The request log: one `RequestRecord` per request that reached the HTTP
//! layer (including the ones answered 429 or 502 by a knob), for tests to
//! assert on, handed out in arrival order. Dropped connections leave no record.
//! It also tracks the requests being handled right now (arrived, not yet
//! answered) and the most there ever were at once.

use std::sync::Mutex;
use std::time::Instant;

use serde_json::Value;

use crate::auth::AuthKind;

/// One request as the simulator saw it.
#[derive(Clone, Debug)]
pub struct RequestRecord {
    /// `GET`, `POST`, …
    pub method: String,
    /// e.g. `/api/v4/runners/all`.
    pub path: String,
    /// The raw query string, `""` if none.
    pub query: String,
    pub auth: AuthKind,
    /// The status the simulator answered with.
    pub status: u16,
    /// The parsed JSON or form body (an object); `Null` if there was none;
    /// the raw text as a JSON string if it did not parse.
    pub body: Value,
    /// When the request arrived (before any latency knob).
    pub at: Instant,
    /// `Retry-After` seconds, on 429.
    pub retry_after: Option<u64>,
    /// The `User-Agent` header, if any.
    pub user_agent: Option<String>,
}

/// A request the simulator is handling right now (arrived, not yet answered).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InFlight {
    pub method: String,
    pub path: String,
}

/// The shared, append-only (until cleared) log.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
    in_flight: Mutex<InFlightSet>,
}

#[derive(Debug, Default)]
struct InFlightSet {
    next_id: u64,
    current: Vec<(u64, InFlight)>,
    /// The most requests in flight at once since the start or the last clear.
    high_water: usize,
}

/// Marks one request as in flight until dropped (so a handling task that
/// is cancelled, at shutdown, still leaves the set).
pub(crate) struct InFlightGuard<'a> {
    log: &'a RequestLog,
    id: u64,
}

impl Drop for InFlightGuard<'_> {
    fn drop(&mut self) {
        let mut set = self.log.in_flight_lock();
        set.current.retain(|(id, _)| *id != self.id);
    }
}

impl RequestLog {
    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<RequestRecord>> {
        self.records.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn push(&self, record: RequestRecord) {
        self.lock().push(record);
    }

    /// The records so far, sorted by arrival time.
    pub(crate) fn snapshot(&self) -> Vec<RequestRecord> {
        let mut records = self.lock().clone();
        records.sort_by_key(|r| r.at);
        records
    }

    /// Clears the records and restarts the high-water mark from the
    /// requests in flight now.
    pub(crate) fn clear(&self) {
        self.lock().clear();
        let mut set = self.in_flight_lock();
        set.high_water = set.current.len();
    }

    fn in_flight_lock(&self) -> std::sync::MutexGuard<'_, InFlightSet> {
        self.in_flight.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a request as in flight until the guard is dropped.
    pub(crate) fn begin(&self, method: &str, path: &str) -> InFlightGuard<'_> {
        let mut set = self.in_flight_lock();
        set.next_id += 1;
        let id = set.next_id;
        set.current.push((
            id,
            InFlight {
                method: method.to_string(),
                path: path.to_string(),
            },
        ));
        set.high_water = set.high_water.max(set.current.len());
        InFlightGuard { log: self, id }
    }

    /// The requests in flight now, in arrival order.
    pub(crate) fn in_flight(&self) -> Vec<InFlight> {
        self.in_flight_lock()
            .current
            .iter()
            .map(|(_, r)| r.clone())
            .collect()
    }

    pub(crate) fn max_in_flight(&self) -> usize {
        self.in_flight_lock().high_water
    }
}
