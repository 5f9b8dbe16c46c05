//! Request parameters the way Grape sees them: the query string merged with a
//! JSON or `application/x-www-form-urlencoded` body (Rack's nesting rules:
//! `tag_list[]=a`, `info[name]=x`), and typed getters that coerce like Grape
//! (`"true"`/`"1"` booleans, integers as strings, `tag_list` as an array or a
//! comma-separated string) and fail with Grape's 400 messages.

use serde_json::{Map, Value};

use crate::error::ApiError;

/// Grape's message for a body that does not parse.
const BAD_BODY: &str = "message body does not match declared format";

/// The merged parameters of one request (body values win over query values).
#[derive(Debug, Clone, Default)]
pub(crate) struct Params {
    map: Map<String, Value>,
}

/// What came of reading a request body: the value for the request log and
/// either the parameters it contributes or the error to answer with.
pub(crate) struct ParsedBody {
    pub log: Value,
    pub result: Result<Map<String, Value>, ApiError>,
}

/// Parses a raw query string (`a=1&tag_list[]=x`) into nested parameters.
pub(crate) fn parse_query(query: &str) -> Result<Map<String, Value>, ApiError> {
    parse_urlencoded(query.as_bytes())
}

/// Parses a request body according to its `Content-Type`.
pub(crate) fn parse_body(content_type: Option<&str>, body: &[u8]) -> ParsedBody {
    if body.iter().all(u8::is_ascii_whitespace) {
        return ParsedBody {
            log: Value::Null,
            result: Ok(Map::new()),
        };
    }
    let mime = content_type
        .map(|ct| {
            ct.split(';')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase()
        })
        .unwrap_or_default();
    let raw = || Value::String(String::from_utf8_lossy(body).into_owned());
    if mime == "application/json" || mime.ends_with("+json") {
        return parse_json(body).unwrap_or_else(|| ParsedBody {
            log: raw(),
            result: Err(ApiError::grape(BAD_BODY)),
        });
    }
    if mime == "application/x-www-form-urlencoded" {
        return parse_form(body).unwrap_or_else(|e| ParsedBody {
            log: raw(),
            result: Err(e),
        });
    }
    if mime.is_empty() {
        // No declared type: accept what parses, JSON first.
        if let Some(parsed) = parse_json(body) {
            return parsed;
        }
        return parse_form(body).unwrap_or_else(|e| ParsedBody {
            log: raw(),
            result: Err(e),
        });
    }
    ParsedBody {
        log: raw(),
        result: Err(ApiError::Error {
            status: axum::http::StatusCode::UNSUPPORTED_MEDIA_TYPE,
            error: format!("The provided content-type '{mime}' is not supported."),
        }),
    }
}

fn parse_json(body: &[u8]) -> Option<ParsedBody> {
    let value: Value = serde_json::from_slice(body).ok()?;
    let params = match &value {
        Value::Object(map) => map.clone(),
        // Grape keeps a non-hash body aside; it contributes no named params.
        _ => Map::new(),
    };
    Some(ParsedBody {
        log: value,
        result: Ok(params),
    })
}

fn parse_form(body: &[u8]) -> Result<ParsedBody, ApiError> {
    let map = parse_urlencoded(body)?;
    Ok(ParsedBody {
        log: Value::Object(map.clone()),
        result: Ok(map),
    })
}

fn parse_urlencoded(bytes: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let mut map = Map::new();
    for (key, value) in form_urlencoded::parse(bytes) {
        if key.is_empty() {
            continue;
        }
        let (base, segments) = split_key(&key);
        put(&mut map, base, &segments, Value::String(value.into_owned()))?;
    }
    Ok(map)
}

/// Splits `a[b][]` into `("a", ["b", ""])`; a key that is not well formed
/// Rack nesting is taken literally.
fn split_key(key: &str) -> (&str, Vec<String>) {
    let Some(open) = key.find('[') else {
        return (key, Vec::new());
    };
    if open == 0 {
        return (key, Vec::new());
    }
    let (base, mut rest) = key.split_at(open);
    let mut segments = Vec::new();
    while let Some(stripped) = rest.strip_prefix('[') {
        let Some(close) = stripped.find(']') else {
            return (key, Vec::new());
        };
        segments.push(stripped[..close].to_string());
        rest = &stripped[close + 1..];
    }
    if !rest.is_empty() {
        return (key, Vec::new());
    }
    (base, segments)
}

fn put(
    target: &mut Map<String, Value>,
    key: &str,
    segments: &[String],
    value: Value,
) -> Result<(), ApiError> {
    let nesting_error = || ApiError::grape(format!("invalid parameter nesting for `{key}'"));
    match segments.split_first() {
        None => {
            target.insert(key.to_string(), value);
            Ok(())
        }
        Some((first, _)) if first.is_empty() => {
            let entry = target
                .entry(key.to_string())
                .or_insert_with(|| Value::Array(Vec::new()));
            match entry {
                Value::Array(list) => {
                    list.push(value);
                    Ok(())
                }
                _ => Err(nesting_error()),
            }
        }
        Some((first, rest)) => {
            let entry = target
                .entry(key.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
            match entry {
                Value::Object(inner) => put(inner, first, rest, value),
                _ => Err(nesting_error()),
            }
        }
    }
}

fn invalid(key: &str) -> ApiError {
    ApiError::grape(format!("{key} is invalid"))
}

impl Params {
    /// Query parameters overlaid with body parameters.
    pub(crate) fn merged(query: Map<String, Value>, body: Map<String, Value>) -> Params {
        let mut map = query;
        map.extend(body);
        Params { map }
    }

    /// Parameters from a ready-made map (tests, nested hashes).
    #[cfg(test)]
    pub(crate) fn from_map(map: Map<String, Value>) -> Params {
        Params { map }
    }

    /// Whether the parameter was given (JSON `null` counts as not given).
    pub(crate) fn has(&self, key: &str) -> bool {
        self.map.get(key).is_some_and(|v| !v.is_null())
    }

    /// Grape's `requires`: 400 `{"error": "a is missing, b is missing"}`.
    pub(crate) fn require(&self, keys: &[&str]) -> Result<(), ApiError> {
        let missing: Vec<String> = keys
            .iter()
            .filter(|k| !self.has(k))
            .map(|k| format!("{k} is missing"))
            .collect();
        if missing.is_empty() {
            Ok(())
        } else {
            Err(ApiError::grape(missing.join(", ")))
        }
    }

    /// Grape's `mutually_exclusive`.
    pub(crate) fn mutually_exclusive(&self, keys: &[&str]) -> Result<(), ApiError> {
        let given: Vec<&str> = keys.iter().copied().filter(|k| self.has(k)).collect();
        if given.len() > 1 {
            Err(ApiError::grape(format!(
                "{} are mutually exclusive",
                given.join(", ")
            )))
        } else {
            Ok(())
        }
    }

    /// Grape's `at_least_one_of`.
    pub(crate) fn at_least_one_of(&self, keys: &[&str]) -> Result<(), ApiError> {
        if keys.iter().any(|k| self.has(k)) {
            Ok(())
        } else {
            Err(ApiError::grape(format!(
                "{} are missing, at least one parameter must be provided",
                keys.join(", ")
            )))
        }
    }

    /// A `String` parameter (numbers and booleans are coerced to text).
    pub(crate) fn string(&self, key: &str) -> Result<Option<String>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(invalid(key)),
        }
    }

    /// A `String` parameter restricted to `values`.
    pub(crate) fn one_of(&self, key: &str, values: &[&str]) -> Result<Option<String>, ApiError> {
        match self.string(key)? {
            None => Ok(None),
            Some(v) if values.contains(&v.as_str()) => Ok(Some(v)),
            Some(_) => Err(ApiError::grape(format!(
                "{key} does not have a valid value"
            ))),
        }
    }

    /// A `Boolean` parameter (`true/false`, `1/0`, `t/f`, `yes/no`, `y/n`, `on/off`).
    pub(crate) fn boolean(&self, key: &str) -> Result<Option<bool>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::Number(n)) => match n.as_i64() {
                Some(1) => Ok(Some(true)),
                Some(0) => Ok(Some(false)),
                _ => Err(invalid(key)),
            },
            Some(Value::String(s)) => match s.trim().to_ascii_lowercase().as_str() {
                "" => Ok(None),
                "true" | "1" | "t" | "yes" | "y" | "on" => Ok(Some(true)),
                "false" | "0" | "f" | "no" | "n" | "off" => Ok(Some(false)),
                _ => Err(invalid(key)),
            },
            Some(_) => Err(invalid(key)),
        }
    }

    /// An `Integer` parameter.
    pub(crate) fn integer(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Number(n)) => n.as_i64().map(Some).ok_or_else(|| invalid(key)),
            Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
            Some(Value::String(s)) => s.trim().parse().map(Some).map_err(|_| invalid(key)),
            Some(_) => Err(invalid(key)),
        }
    }

    /// An `Array[String]` parameter with `CommaSeparatedToArray` coercion:
    /// trimmed, empty entries dropped, duplicates removed (first wins).
    pub(crate) fn tag_list(&self, key: &str) -> Result<Option<Vec<String>>, ApiError> {
        let raw: Vec<String> = match self.map.get(key) {
            None | Some(Value::Null) => return Ok(None),
            Some(Value::String(s)) => s.split(',').map(str::to_string).collect(),
            Some(Value::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item {
                        Value::String(s) => out.push(s.clone()),
                        Value::Number(n) => out.push(n.to_string()),
                        Value::Bool(b) => out.push(b.to_string()),
                        Value::Null => {}
                        _ => return Err(invalid(key)),
                    }
                }
                out
            }
            Some(_) => return Err(invalid(key)),
        };
        let mut tags: Vec<String> = Vec::new();
        for tag in raw {
            let tag = tag.trim();
            if !tag.is_empty() && !tags.iter().any(|t| t == tag) {
                tags.push(tag.to_string());
            }
        }
        Ok(Some(tags))
    }

    /// A `Hash` parameter (e.g. `info`), as its own parameter set.
    pub(crate) fn hash(&self, key: &str) -> Result<Option<Params>, ApiError> {
        match self.map.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Params { map: map.clone() })),
            Some(_) => Err(invalid(key)),
        }
    }

    /// The raw value of `key`, if given as a string (used to classify tokens).
    pub(crate) fn raw_str(&self, key: &str) -> Option<&str> {
        self.map.get(key).and_then(Value::as_str)
    }

    /// The parameters as `(key, value)` pairs, for rebuilding query strings.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&String, &Value)> {
        self.map.iter()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn nested_form() {
        let map =
            parse_query("token=x&tag_list[]=a&tag_list[]=b&info[name]=n&info[version]=1").unwrap();
        assert_eq!(
            Value::Object(map),
            json!({"token": "x", "tag_list": ["a", "b"], "info": {"name": "n", "version": "1"}})
        );
    }

    #[test]
    fn odd_keys_are_literal() {
        let map = parse_query("a[b=1&[x]=2&c]=3").unwrap();
        assert_eq!(map.get("a[b").and_then(Value::as_str), Some("1"));
        assert_eq!(map.get("[x]").and_then(Value::as_str), Some("2"));
        assert_eq!(map.get("c]").and_then(Value::as_str), Some("3"));
    }

    #[test]
    fn conflicting_nesting_is_400() {
        assert!(parse_query("a=1&a[]=2").is_err());
    }

    #[test]
    fn coercions() {
        let p = Params::from_map(
            json!({"b": "true", "c": "0", "i": "600", "j": 700, "t": " a, b ,,a", "u": ["x", "y"], "bad": "maybe"})
                .as_object()
                .unwrap()
                .clone(),
        );
        assert_eq!(p.boolean("b").unwrap(), Some(true));
        assert_eq!(p.boolean("c").unwrap(), Some(false));
        assert!(p.boolean("bad").is_err());
        assert_eq!(p.integer("i").unwrap(), Some(600));
        assert_eq!(p.integer("j").unwrap(), Some(700));
        assert!(p.integer("bad").is_err());
        assert_eq!(p.tag_list("t").unwrap(), Some(vec!["a".into(), "b".into()]));
        assert_eq!(p.tag_list("u").unwrap(), Some(vec!["x".into(), "y".into()]));
        assert_eq!(p.tag_list("none").unwrap(), None);
        assert!(p.require(&["b", "zz", "yy"]).is_err());
    }

    #[test]
    fn bodies() {
        let b = parse_body(Some("application/json"), b"{\"token\":\"t\"}");
        assert_eq!(b.log, json!({"token": "t"}));
        assert!(b.result.is_ok());
        let b = parse_body(Some("application/json"), b"{nope");
        assert!(b.result.is_err());
        let b = parse_body(
            Some("application/x-www-form-urlencoded; charset=utf-8"),
            b"token=t&paused=true",
        );
        assert_eq!(b.log, json!({"token": "t", "paused": "true"}));
        let b = parse_body(None, b"");
        assert_eq!(b.log, Value::Null);
        let b = parse_body(Some("text/plain"), b"hello");
        assert!(b.result.is_err());
    }
}
