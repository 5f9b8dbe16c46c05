//! The process environment, read once at start ([`Env::from_process`]) and
//! passed down, so that no other module reads a variable itself: systemd's
//! `CREDENTIALS_DIRECTORY` and `JOURNAL_STREAM`, the test suite's
//! `REGISTER_RUNNER_NO_RETRY_DELAY`, and every variable for `env_tags` and
//! the built-in tag capture's `PATH` lookup. `RUST_LOG` is left to
//! `tracing`'s own filter.

use std::collections::HashMap;
use std::fmt;
use std::path::PathBuf;

/// Set (to anything) by the test suite to drop the exponential backoff
/// delays between retries; `Retry-After` and `RateLimit-ResetTime` are
/// still honoured.
pub const NO_RETRY_DELAY: &str = "REGISTER_RUNNER_NO_RETRY_DELAY";

/// What this run takes from its environment.
#[derive(Clone, Default)]
pub struct Env {
    /// `$CREDENTIALS_DIRECTORY` (systemd `LoadCredential=`): where relative
    /// `*_file` paths resolve.
    pub credentials_directory: Option<PathBuf>,
    /// `$JOURNAL_STREAM` is set: stderr goes to journald, which adds its
    /// own timestamps and reads a `<N>` priority prefix.
    pub under_journald: bool,
    /// [`NO_RETRY_DELAY`] is set.
    pub no_retry_delay: bool,
    /// Every variable, for `env_tags` (and `PATH`).
    pub vars: HashMap<String, String>,
}

impl Env {
    /// Reads the process environment. Like `std::env::vars`, it panics if a
    /// variable's name or value is not UTF-8.
    pub fn from_process() -> Env {
        Env {
            credentials_directory: std::env::var_os("CREDENTIALS_DIRECTORY").map(Into::into),
            under_journald: std::env::var_os("JOURNAL_STREAM").is_some(),
            no_retry_delay: std::env::var_os(NO_RETRY_DELAY).is_some(),
            vars: std::env::vars().collect(),
        }
    }
}

/// Variable values may be secrets (a token exported by mistake): `Debug`
/// shows their names only.
impl fmt::Debug for Env {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut names: Vec<&str> = self.vars.keys().map(String::as_str).collect();
        names.sort_unstable();
        f.debug_struct("Env")
            .field("credentials_directory", &self.credentials_directory)
            .field("under_journald", &self.under_journald)
            .field("no_retry_delay", &self.no_retry_delay)
            .field("vars", &names)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_variable_names_not_values() {
        let env = Env {
            vars: HashMap::from([("TOKEN".to_string(), "glpat-0123456789abcdef".to_string())]),
            ..Env::default()
        };
        let shown = format!("{env:?}");
        assert!(shown.contains("TOKEN"), "{shown}");
        assert!(!shown.contains("glpat"), "{shown}");
    }
}
