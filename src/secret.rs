//! Secrets: personal access tokens, registration tokens and runner tokens.
//!
//! A [`Secret`] holds the value and cannot print it: `Debug` and `Display`
//! show only the short form (a known prefix plus four characters and `…`),
//! which SPEC §5 allows in logs, errors and the dry-run diff. The one way
//! to the full value is [`Secret::expose`], used where the value goes on
//! the wire or into the written config file.
//!
//! Every secret made with [`Secret::new`] is also noted in a process-wide
//! registry, so that [`redact`] can mask it in any text on its way to a log
//! line or an error message (GitLab's error text may quote the request),
//! together with every token-shaped word ([`mask_token_like`]).
//! [`token_problem`] says whether a token GitLab sent us may be saved.
//! [`shown`], [`shown_url`] and [`shown_path`] give a value from an
//! operator's file as a message may quote it: in short form when it might
//! be a token put under the wrong key.

use std::collections::BTreeSet;
use std::fmt;
use std::path::Path;
use std::sync::Mutex;

/// Token prefixes GitLab puts in front of the random part (gitlab-api.md §11).
const KNOWN_PREFIXES: &[&str] = &["glrtr-", "glrt-", "glpat-", "GR1348941"];

/// Prefixes of GitLab tokens (personal, runner, registration, deploy, …).
pub const TOKEN_MARKERS: &[&str] = &[
    "glpat-",
    "glrt-",
    "glrtr-",
    "GR1348941",
    "gldt-",
    "glptt-",
    "glcbt-",
    "gloas-",
    "glsoat-",
];

/// The text with every token-shaped word (a [`TOKEN_MARKERS`] prefix and
/// the token characters after it) in short form, and short forms left as
/// they are. A backstop for text copied from operators' files, such as a
/// token in a comment, on its way to the dry-run output.
///
/// ```
/// use register_runner::secret::mask_token_like;
/// assert_eq!(
///     mask_token_like("# old = \"glpat-0123456789abcdef\", glrt-abcd… kept"),
///     "# old = \"glpat-0123…\", glrt-abcd… kept"
/// );
/// assert_eq!(mask_token_like("glpat-0123456789abcdef…"), "glpat-0123……");
/// ```
pub fn mask_token_like(text: &str) -> String {
    let is_token_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.');
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some((at, marker)) = TOKEN_MARKERS
        .iter()
        .filter_map(|m| rest.find(m).map(|at| (at, *m)))
        .min()
    {
        out.push_str(&rest[..at]);
        let after = &rest[at + marker.len()..];
        let len = after.find(|c| !is_token_char(c)).unwrap_or(after.len());
        let word = &rest[at..at + marker.len() + len];
        // A short form already (at most 4 characters and `…`) stays.
        if after[len..].starts_with('…') && after[..len].chars().count() <= 4 {
            out.push_str(word);
        } else {
            out.push_str(&short_form(word));
        }
        rest = &rest[at + word.len()..];
    }
    out.push_str(rest);
    out
}

/// Secrets shorter than this are not registered for [`redact`]: masking
/// every occurrence of a 3-letter word would garble messages, and no token
/// GitLab issues is that short.
const MIN_REGISTERED: usize = 8;
/// Nor are longer ones: no real token is, and such a value (a garbage
/// answer, refused by [`token_problem`]) would slow every log line.
const MAX_REGISTERED: usize = 1024;

/// Every secret of this run, longest first (so that a secret containing
/// another is masked whole).
static KNOWN: Mutex<BTreeSet<(std::cmp::Reverse<usize>, String)>> = Mutex::new(BTreeSet::new());

fn register(value: &str) {
    let value = value.trim();
    if (MIN_REGISTERED..=MAX_REGISTERED).contains(&value.len()) {
        let mut known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        known.insert((std::cmp::Reverse(value.len()), value.to_string()));
    }
}

/// The text with every secret of this run (PATs, registration tokens,
/// runner tokens held and issued: every [`Secret`] made so far) and every
/// token-shaped word in short form. For any text that reaches a log line
/// or an error message; logging applies it to every line, and the final
/// error goes through it too.
///
/// ```
/// use register_runner::secret::{Secret, redact};
/// let _registration = Secret::new("8HxyzOLDSECRETabcdef");
/// assert_eq!(
///     redact("400 (token=8HxyzOLDSECRETabcdef, pat=glpat-0123456789abcdef)"),
///     "400 (token=8Hxy…, pat=glpat-0123…)"
/// );
/// ```
pub fn redact(text: &str) -> String {
    let mut out = text.to_string();
    {
        let known = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        for (_, secret) in known.iter() {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), &short_form(secret));
            }
        }
    }
    mask_token_like(&out)
}

/// Longest runner token accepted from GitLab (gitlab-runner's own tokens
/// are about 30 bytes; the column allows 255).
pub const MAX_TOKEN_BYTES: usize = 255;

/// Why a token GitLab sent us (create, register, reset, verify, a patched
/// server's runner details) cannot be saved, or `None` when it can: it
/// must be non-empty printable ASCII without spaces, at most
/// [`MAX_TOKEN_BYTES`] bytes. The reason never quotes the token.
///
/// ```
/// use register_runner::secret::token_problem;
/// assert_eq!(token_problem("glrt-0123456789abcdef"), None);
/// assert!(token_problem("").is_some());
/// assert!(token_problem("glrt-\u{1b}]0;owned\u{7}").is_some());
/// assert!(token_problem(&"a".repeat(256)).is_some());
/// ```
pub fn token_problem(token: &str) -> Option<String> {
    if token.is_empty() {
        return Some("the token is empty".into());
    }
    if token.len() > MAX_TOKEN_BYTES {
        return Some(format!(
            "the token is {} bytes long (at most {MAX_TOKEN_BYTES})",
            token.len()
        ));
    }
    if let Some(at) = token.bytes().position(|b| !b.is_ascii_graphic()) {
        return Some(format!(
            "the token has a space, control or non-ASCII character at byte {}",
            at + 1
        ));
    }
    None
}

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    /// The secret, also registered for [`redact`].
    pub fn new(value: impl Into<String>) -> Self {
        let value = value.into();
        register(&value);
        Secret(value)
    }

    /// The full value, for the request body or header and the output file only.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The short form: known prefix (if any) + 4 characters + `…`.
    pub fn short(&self) -> String {
        short_form(&self.0)
    }

    /// Whether GitLab made this token for a runner created in its UI or with
    /// `POST /user/runners` (`glrt-`), as opposed to a registration token
    /// runner (`glrtr-`, `t1_…`, or no prefix).
    pub fn is_created_runner_token(&self) -> bool {
        self.0.starts_with("glrt-")
    }
}

/// The short form of any secret string (see [`Secret::short`]).
///
/// ```
/// use register_runner::secret::{Secret, short_form};
/// assert_eq!(short_form("glrt-abcdefghijklmnop"), "glrt-abcd…");
/// assert_eq!(format!("{:?}", Secret::new("glpat-0123456789")), "Secret(glpat-0123…)");
/// ```
pub fn short_form(value: &str) -> String {
    let prefix = KNOWN_PREFIXES
        .iter()
        .find(|p| value.starts_with(*p))
        .copied()
        .unwrap_or("");
    // Never show more than half of what follows the prefix, so that even a
    // short secret keeps most of itself hidden.
    let tail = &value[prefix.len()..];
    let shown = 4.min(tail.chars().count() / 2);
    let rest: String = tail.chars().take(shown).collect();
    format!("{prefix}{rest}…")
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Secret({})", self.short())
    }
}

impl fmt::Display for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.short())
    }
}

/// A URL as it may appear in a message: a value that is not a URL at all
/// may be a secret put under the wrong key, so only its short form is
/// shown; user, password, query and fragment (which may carry tokens) are
/// masked.
pub fn shown_url(url: &str) -> String {
    match reqwest::Url::parse(url) {
        Ok(mut parsed) if parsed.has_host() => {
            let user = !parsed.username().is_empty() || parsed.password().is_some();
            let query = parsed.query().is_some();
            let fragment = parsed.fragment().is_some();
            if !(user || query || fragment) {
                return url.to_string();
            }
            let _ = parsed.set_username("");
            let _ = parsed.set_password(None);
            parsed.set_query(None);
            parsed.set_fragment(None);
            let mut text = parsed.to_string();
            if user && let Some(at) = text.find("://") {
                text.insert_str(at + 3, "…@");
            }
            if query {
                text.push_str("?…");
            }
            if fragment {
                text.push_str("#…");
            }
            text
        }
        // Not a URL with a host: show it only if it reads like an address
        // and carries nothing that may be a credential.
        _ => {
            let address_like = url.contains(['.', '/', ':']);
            let risky = url.contains(['@', '?', '#'])
                || url.chars().any(char::is_whitespace)
                || TOKEN_MARKERS.iter().any(|m| url.contains(m));
            if address_like && !risky {
                url.to_string()
            } else {
                short_form(url)
            }
        }
    }
}

/// Whether a value quoted in a message might be a token put under the
/// wrong key: it holds a GitLab token prefix, or it is a long run of
/// token characters (old registration tokens have no prefix).
fn looks_like_token(value: &str) -> bool {
    TOKEN_MARKERS.iter().any(|m| value.contains(m))
        || (value.len() >= 20
            && !value.contains(['/', '.'])
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_')))
}

/// A value as it may appear in a message: one that might be a token shows
/// in short form only.
pub fn shown(value: &str) -> String {
    if looks_like_token(value) {
        short_form(value)
    } else {
        value.to_string()
    }
}

/// A `*_file` path as it may appear in a message. A value that looks like
/// a token rather than a file name (a token put under the `_file` key by
/// mistake) is shown in its short form only.
pub fn shown_path(base: &Path, file: &str, path: &Path) -> String {
    if !looks_like_token(file) {
        path.display().to_string()
    } else if Path::new(file).is_absolute() {
        short_form(file)
    } else {
        format!("{}/{}", base.display(), short_form(file))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_and_display_hide_the_value() {
        let s = Secret::new("glrt-abcdefghijklmnopqrst");
        assert_eq!(format!("{s}"), "glrt-abcd…");
        assert_eq!(format!("{s:?}"), "Secret(glrt-abcd…)");
        assert!(!format!("{s:#?}").contains("efgh"));
    }

    #[test]
    fn short_form_of_unknown_and_tiny_values() {
        assert_eq!(short_form("abcdefgh"), "abcd…");
        assert_eq!(short_form("ab"), "a…");
        assert_eq!(short_form("GR1348941xyzwvuts"), "GR1348941xyzw…");
        assert_eq!(short_form("glrtr-12345678"), "glrtr-1234…");
    }

    #[test]
    fn redact_masks_registered_secrets_and_token_shapes() {
        let held = Secret::new("t1_heldRunnerToken42");
        let _tiny = Secret::new("abc");
        let text = format!("echo: {} and abc and GR1348941abcdefghijkl", held.expose());
        assert_eq!(redact(&text), "echo: t1_h… and abc and GR1348941abcd…");
        // A short form stays as it is.
        assert_eq!(redact("t1_h… glrt-abcd…"), "t1_h… glrt-abcd…");
    }

    #[test]
    fn issued_tokens_are_checked() {
        assert_eq!(token_problem("glrt-t1_AbC-123.x"), None);
        assert_eq!(token_problem(&"a".repeat(255)), None);
        for bad in ["", "glrt- x", "glrt-\n", "glrt-é", "glrt-\u{7f}"] {
            let problem = token_problem(bad).expect(bad);
            assert!(!problem.contains("glrt"), "{problem}");
        }
        assert!(
            token_problem(&"a".repeat(256))
                .unwrap()
                .contains("256 bytes")
        );
    }

    #[test]
    fn created_runner_tokens_are_glrt_only() {
        assert!(Secret::new("glrt-x").is_created_runner_token());
        assert!(!Secret::new("glrtr-x").is_created_runner_token());
        assert!(!Secret::new("t1_x").is_created_runner_token());
    }
}
