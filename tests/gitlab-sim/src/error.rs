//! Error responses in GitLab's own formats: the API helpers' `{"message": "…"}`
//! (`403 Forbidden - reason`, `404 Runner Not Found`, …), model validation
//! errors `{"message": {"field": ["…"]}}`, and Grape's parameter errors
//! `{"error": "token is missing"}`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};

/// An error reply, rendered the way GitLab's API renders it.
#[derive(Debug, Clone)]
pub(crate) enum ApiError {
    /// `{"message": <message>}` (API helpers, validation errors).
    Message { status: StatusCode, message: Value },
    /// `{"error": <error>}` (Grape parameter validation, body parsing).
    Error { status: StatusCode, error: String },
}

impl ApiError {
    /// A Grape parameter error: 400 `{"error": "<msg>"}`.
    pub(crate) fn grape(msg: impl Into<String>) -> Self {
        ApiError::Error {
            status: StatusCode::BAD_REQUEST,
            error: msg.into(),
        }
    }

    /// `render_api_error!(message, status)`.
    pub(crate) fn message(status: StatusCode, message: impl Into<String>) -> Self {
        ApiError::Message {
            status,
            message: Value::String(message.into()),
        }
    }

    /// `bad_request!(reason)`: `400 Bad request - <reason>`.
    pub(crate) fn bad_request(reason: &str) -> Self {
        Self::message(
            StatusCode::BAD_REQUEST,
            format!("400 Bad request - {reason}"),
        )
    }

    /// `unauthorized!`: `401 Unauthorized`.
    pub(crate) fn unauthorized() -> Self {
        Self::message(StatusCode::UNAUTHORIZED, "401 Unauthorized")
    }

    /// `forbidden!(reason)`: `403 Forbidden` or `403 Forbidden - <reason>`.
    pub(crate) fn forbidden(reason: Option<&str>) -> Self {
        let message = match reason {
            Some(r) => format!("403 Forbidden - {r}"),
            None => "403 Forbidden".to_string(),
        };
        Self::message(StatusCode::FORBIDDEN, message)
    }

    /// `not_found!(resource)`: `404 <resource> Not Found`.
    pub(crate) fn not_found(resource: &str) -> Self {
        Self::message(StatusCode::NOT_FOUND, format!("404 {resource} Not Found"))
    }

    /// `render_api_error_with_reason!(410, '410 Gone', reason)`.
    pub(crate) fn gone(reason: &str) -> Self {
        Self::message(StatusCode::GONE, format!("410 Gone - {reason}"))
    }

    /// `render_validation_error!(model)`: 400 `{"message": {"field": ["…"]}}`.
    pub(crate) fn validation(errors: &[(&'static str, String)]) -> Self {
        let mut map = Map::new();
        for (field, msg) in errors {
            let entry = map
                .entry(field.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            if let Value::Array(list) = entry {
                list.push(Value::String(msg.clone()));
            }
        }
        ApiError::Message {
            status: StatusCode::BAD_REQUEST,
            message: Value::Object(map),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        match self {
            ApiError::Message { status, message } => {
                (status, Json(json!({ "message": message }))).into_response()
            }
            ApiError::Error { status, error } => {
                (status, Json(json!({ "error": error }))).into_response()
            }
        }
    }
}

/// Rails' `Array#to_sentence`: `a`, `a and b`, `a, b, and c`.
pub(crate) fn to_sentence(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [a, b] => format!("{a} and {b}"),
        [init @ .., last] => format!("{}, and {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sentences() {
        let s = |v: &[&str]| to_sentence(&v.iter().map(|x| x.to_string()).collect::<Vec<_>>());
        assert_eq!(s(&[]), "");
        assert_eq!(s(&["a"]), "a");
        assert_eq!(s(&["a", "b"]), "a and b");
        assert_eq!(s(&["a", "b", "c"]), "a, b, and c");
    }
}
