//! The request log: one `RequestRecord` per request that reached the HTTP
//! layer (including the ones answered 429 or 502 by a knob), for tests to
//! assert on, handed out in arrival order. Dropped connections leave no record.

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
}

/// The shared, append-only (until cleared) log.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    records: Mutex<Vec<RequestRecord>>,
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

    pub(crate) fn clear(&self) {
        self.lock().clear();
    }
}
