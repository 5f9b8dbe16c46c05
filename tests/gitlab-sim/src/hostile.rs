//! Hostile answers: a misbehaving GitLab, or something in front of it that
//! is not GitLab at all. A rule names a method and a path pattern (`*`
//! stands for one path segment, as in `/api/v4/runners/*/managers`) and
//! says what to answer instead of, or on top of, the real handler: bytes
//! of the test's choosing (garbage JSON: huge numbers, negative ids, wrong
//! types, missing fields, invalid JSON), a huge body, a chunked body that
//! never ends, an error that echoes the request (headers and body, secrets
//! included) as a debugging proxy would, or the handler's own JSON answer
//! rewritten (a bad token in a create answer, control characters in a
//! system id) after the handler changed the state as usual.

use std::convert::Infallible;
use std::fmt;
use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use serde_json::{Value, json};

/// A function over the handler's JSON answer (see [`HostileAnswer::Rewrite`]).
pub type Rewrite = Arc<dyn Fn(&mut Value) + Send + Sync>;

/// What a matching request is answered with.
#[derive(Clone)]
pub enum HostileAnswer {
    /// This status and these bytes (`Content-Type: application/json`,
    /// whatever they are); the handler does not run.
    Bytes { status: u16, body: Vec<u8> },
    /// A JSON body of exactly `len` bytes (`[`, spaces, `]`), streamed in
    /// 64 KiB chunks; the handler does not run.
    Huge { status: u16, len: u64 },
    /// A chunked body that never ends (`[` and then spaces, 64 KiB at a
    /// time, for as long as the client reads); the handler does not run.
    Endless { status: u16 },
    /// This status and `{"message": "…"}` quoting the request's
    /// `PRIVATE-TOKEN` header, its `token` parameter and its raw body; the
    /// handler does not run.
    EchoRequest { status: u16 },
    /// The handler runs as usual; its JSON answer (when it has one) is
    /// passed through the function before it is sent.
    Rewrite(Rewrite),
}

impl HostileAnswer {
    /// [`HostileAnswer::Bytes`] from JSON text.
    pub fn json(status: u16, body: impl Into<String>) -> HostileAnswer {
        HostileAnswer::Bytes {
            status,
            body: body.into().into_bytes(),
        }
    }

    /// [`HostileAnswer::Rewrite`] from a closure.
    pub fn rewrite(f: impl Fn(&mut Value) + Send + Sync + 'static) -> HostileAnswer {
        HostileAnswer::Rewrite(Arc::new(f))
    }
}

impl fmt::Debug for HostileAnswer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HostileAnswer::Bytes { status, body } => {
                write!(f, "Bytes({status}, {} bytes)", body.len())
            }
            HostileAnswer::Huge { status, len } => write!(f, "Huge({status}, {len} bytes)"),
            HostileAnswer::Endless { status } => write!(f, "Endless({status})"),
            HostileAnswer::EchoRequest { status } => write!(f, "EchoRequest({status})"),
            HostileAnswer::Rewrite(_) => f.write_str("Rewrite(..)"),
        }
    }
}

/// One rule: method, path pattern, answer.
#[derive(Clone, Debug)]
pub(crate) struct Rule {
    pub method: String,
    pub pattern: String,
    pub answer: HostileAnswer,
}

impl Rule {
    pub(crate) fn matches(&self, method: &str, path: &str) -> bool {
        if !self.method.eq_ignore_ascii_case(method) {
            return false;
        }
        path_matches(&self.pattern, path)
    }
}

/// Whether `path` matches `pattern` (`*` = one segment).
pub(crate) fn path_matches(pattern: &str, path: &str) -> bool {
    let want: Vec<&str> = pattern.trim_end_matches('/').split('/').collect();
    let got: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
}

const CHUNK: usize = 64 * 1024;

/// The answer of a rule that replaces the handler (`None` for a rewrite).
pub(crate) fn replacement(
    answer: &HostileAnswer,
    pat: Option<&str>,
    raw_body: &[u8],
) -> Option<Response> {
    let status = |code: u16| StatusCode::from_u16(code).unwrap_or(StatusCode::OK);
    let json_type = (header::CONTENT_TYPE, "application/json");
    let response = match answer {
        HostileAnswer::Bytes { status: s, body } => {
            (status(*s), [json_type], body.clone()).into_response()
        }
        HostileAnswer::Huge { status: s, len } => {
            let len = (*len).max(2);
            let filler = Bytes::from(vec![b' '; CHUNK]);
            let mut left = len - 2;
            let mut chunks: Vec<Bytes> = vec![Bytes::from_static(b"[")];
            while left > 0 {
                let n = left.min(CHUNK as u64) as usize;
                chunks.push(filler.slice(..n));
                left -= n as u64;
            }
            chunks.push(Bytes::from_static(b"]"));
            let stream = futures_util::stream::iter(chunks.into_iter().map(Ok::<_, Infallible>));
            (status(*s), [json_type], Body::from_stream(stream)).into_response()
        }
        HostileAnswer::Endless { status: s } => {
            let filler = Bytes::from(vec![b' '; CHUNK]);
            let stream =
                futures_util::stream::iter([Ok::<_, Infallible>(Bytes::from_static(b"["))])
                    .chain(futures_util::stream::repeat(Ok(filler)));
            (status(*s), [json_type], Body::from_stream(stream)).into_response()
        }
        HostileAnswer::EchoRequest { status: s } => {
            // The credentials first, so that no cut at the client hides them.
            let token = serde_json::from_slice::<Value>(raw_body)
                .ok()
                .and_then(|v| v.get("token").and_then(Value::as_str).map(str::to_string));
            let message = format!(
                "{} (request: PRIVATE-TOKEN={} token={} body={})",
                status(*s),
                pat.unwrap_or("-"),
                token.as_deref().unwrap_or("-"),
                String::from_utf8_lossy(raw_body)
            );
            (
                status(*s),
                [json_type],
                json!({ "message": message }).to_string(),
            )
                .into_response()
        }
        HostileAnswer::Rewrite(_) => return None,
    };
    Some(response)
}

/// The handler's answer passed through a rewrite: JSON bodies only; any
/// other body is sent unchanged.
pub(crate) async fn rewritten(response: Response, rewrite: &Rewrite) -> Response {
    let (mut parts, body) = response.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, usize::MAX).await else {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    };
    let Ok(mut value) = serde_json::from_slice::<Value>(&bytes) else {
        return Response::from_parts(parts, Body::from(bytes));
    };
    rewrite(&mut value);
    let text = value.to_string();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    Response::from_parts(parts, Body::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_whole_segments() {
        let rule = Rule {
            method: "GET".into(),
            pattern: "/api/v4/runners/*/managers".into(),
            answer: HostileAnswer::Endless { status: 200 },
        };
        assert!(rule.matches("GET", "/api/v4/runners/12/managers"));
        assert!(!rule.matches("GET", "/api/v4/runners/12"));
        assert!(!rule.matches("POST", "/api/v4/runners/12/managers"));
        assert!(!rule.matches("GET", "/api/v4/runners/1/2/managers"));
    }
}
