//! Secrets: personal access tokens, registration tokens and runner tokens.
//!
//! A [`Secret`] holds the value and cannot print it: `Debug` and `Display`
//! show only the short form (a known prefix plus four characters and `…`),
//! which SPEC §5 allows in logs, errors and the dry-run diff. The one way
//! to the full value is [`Secret::expose`], used where the value goes on
//! the wire or into the written config file.

use std::fmt;

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

/// A secret value that never prints itself.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
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
    fn created_runner_tokens_are_glrt_only() {
        assert!(Secret::new("glrt-x").is_created_runner_token());
        assert!(!Secret::new("glrtr-x").is_created_runner_token());
        assert!(!Secret::new("t1_x").is_created_runner_token());
    }
}
