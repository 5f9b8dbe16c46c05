//! The output file `config.<instance>.toml` that gitlab-runner reads.
//!
//! The template's global settings (comments and order kept), then one
//! `[[runners]]` per executor in file-name order with `name`, `url`, `id`,
//! `token`, `token_obtained_at`, `token_expires_at` (unquoted RFC 3339;
//! `0001-01-01T00:00:00Z` when GitLab gives none) and `executor`, then the
//! executor file's gitlab-runner settings unchanged. Tool-only keys
//! (`tags`, `env_tags`, `client_configs`, …) never appear. Rendering is pure;
//! writing goes through [`crate::fsutil::write_atomic_if_changed`].

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toml_edit::{ArrayOfTables, Datetime, DocumentMut, Item, Table, value};

use crate::config::Executor;
use crate::secret::Secret;
use crate::store::Credentials;

/// gitlab-runner's zero time, written when a token never expires.
pub const ZERO_TIME: &str = "0001-01-01T00:00:00Z";
/// Stands for a token that GitLab has not issued yet (dry-run only).
pub const PENDING_TOKEN: &str = "(issued by GitLab on apply)";

/// How secrets appear in the rendered text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Secrets {
    /// The real values: for the file gitlab-runner reads.
    Reveal,
    /// Short forms: for the dry-run diff.
    Mask,
}

/// One `[[runners]]` entry to write.
#[derive(Debug, Clone)]
pub enum OutputRunner<'a> {
    /// An executor with the credentials it ends up with (`None`: a runner
    /// still to be created, shown only in the dry-run diff).
    Executor {
        executor: &'a Executor,
        url: &'a str,
        credentials: Option<Credentials>,
        /// Dry-run: GitLab issues the token (and its times) on apply, as
        /// for a runner to create or a token to rotate.
        token_pending: bool,
    },
    /// An entry of the last output carried over as it was (a runner whose
    /// deletion is still pending, or one on a GitLab that was unreachable).
    Kept(&'a Table),
}

/// Renders the whole file.
pub fn render(globals: &DocumentMut, runners: &[OutputRunner<'_>], secrets: Secrets) -> String {
    let mut text = match secrets {
        Secrets::Reveal => globals.to_string(),
        Secrets::Mask => {
            let mut globals = globals.clone();
            mask_secret_values(globals.as_table_mut());
            globals.to_string()
        }
    };
    if runners.is_empty() {
        return text;
    }
    let mut array = ArrayOfTables::new();
    for (i, runner) in runners.iter().enumerate() {
        let mut table = match runner {
            OutputRunner::Executor {
                executor,
                url,
                credentials,
                token_pending,
            } => executor_table(executor, url, credentials.as_ref(), *token_pending),
            OutputRunner::Kept(table) => (*table).clone(),
        };
        if secrets == Secrets::Mask {
            mask_secret_values(&mut table);
        }
        clear_positions(&mut table);
        // One blank line between entries, whatever the source had.
        table.decor_mut().set_prefix(if i == 0 { "" } else { "\n" });
        array.push(table);
    }
    let mut doc = DocumentMut::new();
    doc.insert("runners", Item::ArrayOfTables(array));
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    if !text.trim().is_empty() && !text.ends_with("\n\n") {
        text.push('\n');
    }
    text.push_str(&doc.to_string());
    text
}

fn executor_table(
    executor: &Executor,
    url: &str,
    credentials: Option<&Credentials>,
    token_pending: bool,
) -> Table {
    let mut table = Table::new();
    table.insert("name", value(executor.name.as_str()));
    table.insert("url", value(url));
    let (id, token, obtained, expires) = match credentials {
        Some(c) if token_pending => (
            c.id,
            PENDING_TOKEN.to_string(),
            toml_time(None),
            toml_time(None),
        ),
        Some(c) => {
            // The real value; `render` masks it for the dry-run.
            let token = c.token.expose().to_string();
            (
                c.id,
                token,
                toml_time(Some(c.obtained_at)),
                toml_time(c.expires_at),
            )
        }
        None => (
            0,
            PENDING_TOKEN.to_string(),
            toml_time(None),
            toml_time(None),
        ),
    };
    table.insert("id", value(id as i64));
    table.insert("token", value(token));
    table.insert("token_obtained_at", value(obtained));
    table.insert("token_expires_at", value(expires));
    table.insert("executor", value(executor.executor.as_str()));
    // With the key's own decor, so that comments above a setting stay.
    for (key, _) in executor.settings.iter() {
        if let Some((key, item)) = executor.settings.get_key_value(key) {
            table.insert_formatted(key, item.clone());
        }
    }
    table
}

/// Tables keep the position they had in their source file, and toml_edit
/// prints tables in position order: forget it so they print where inserted.
fn clear_positions(table: &mut Table) {
    table.set_position(None);
    for (_, item) in table.iter_mut() {
        match item {
            Item::Table(t) => clear_positions(t),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(clear_positions),
            _ => {}
        }
    }
}

/// A TOML datetime in whole seconds, UTC; the zero time for `None`.
fn toml_time(t: Option<OffsetDateTime>) -> Datetime {
    let text = match t {
        Some(t) => t
            .to_offset(time::UtcOffset::UTC)
            .replace_nanosecond(0)
            .ok()
            .and_then(|t| t.format(&Rfc3339).ok())
            .unwrap_or_else(|| ZERO_TIME.to_string()),
        None => ZERO_TIME.to_string(),
    };
    text.parse().expect("RFC 3339 text is a TOML datetime")
}

/// The same file with every token and other secret setting in short form
/// (for the dry-run diff of the current file).
pub fn mask_secrets(text: &str) -> String {
    let Ok(mut doc) = text.parse::<DocumentMut>() else {
        return String::new();
    };
    mask_secret_values(doc.as_table_mut());
    doc.to_string()
}

/// Whether a setting holds a secret, by its name: the runner `token`, and
/// gitlab-runner's credentials such as `[runners.cache.s3] SecretKey` or
/// `SessionToken`, `[runners.cache.gcs] PrivateKey`, `[runners.cache.azure]
/// AccountKey`, or a password. Compared as gitlab-runner reads keys
/// ([`crate::config::folded_key`]).
fn is_secret_setting(key: &str) -> bool {
    let key = crate::config::folded_key(key).replace(['_', '-'], "");
    ["token", "secret", "password", "privatekey", "accountkey"]
        .iter()
        .any(|word| key.contains(word))
}

/// Puts the short form in place of every secret setting's string value, at
/// any depth (for the dry-run diff only).
fn mask_secret_values(table: &mut Table) {
    for (key, item) in table.iter_mut() {
        match item {
            Item::Value(v) => mask_value(is_secret_setting(&key), v),
            Item::Table(t) => mask_secret_values(t),
            Item::ArrayOfTables(a) => a.iter_mut().for_each(mask_secret_values),
            Item::None => {}
        }
    }
}

fn mask_value(secret: bool, value: &mut toml_edit::Value) {
    match value {
        // Not the placeholder of a token still to come.
        toml_edit::Value::String(s) if secret && s.value() != PENDING_TOKEN => {
            let mut masked = toml_edit::Value::from(Secret::new(s.value().as_str()).short());
            *masked.decor_mut() = s.decor().clone();
            *value = masked;
        }
        toml_edit::Value::Array(a) => a.iter_mut().for_each(|v| mask_value(secret, v)),
        toml_edit::Value::InlineTable(t) => {
            for (key, v) in t.iter_mut() {
                mask_value(is_secret_setting(&key), v);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ServerSettings;
    use std::path::PathBuf;
    use time::macros::datetime;

    fn executor(settings: &str) -> Executor {
        Executor {
            file: PathBuf::from("docker.toml"),
            url: "https://gitlab.example.com".into(),
            executor: "docker".into(),
            name: "host docker".into(),
            token: None,
            env_tags: vec![],
            tags: vec![],
            server: ServerSettings::default(),
            settings: settings.parse::<DocumentMut>().unwrap().as_table().clone(),
        }
    }

    #[test]
    fn renders_globals_then_runners_with_nested_tables() {
        let globals: DocumentMut =
            "# global\nconcurrent = 4\n\n[session_server]\nlisten_address = \"[::]:8093\"\n"
                .parse()
                .unwrap();
        let exec = executor(
            "# two at a time\nlimit = 2\n\n[docker]\nimage = \"alpine\"\n\n[cache]\nType = \"s3\"\n",
        );
        let creds = Credentials {
            id: 12,
            token: Secret::new("glrt-0123456789abcdef"),
            obtained_at: datetime!(2026-11-22 10:00:00.7 UTC),
            expires_at: None,
        };
        let runners = [OutputRunner::Executor {
            executor: &exec,
            url: "https://gitlab.example.com",
            credentials: Some(creds),
            token_pending: false,
        }];
        let text = render(&globals, &runners, Secrets::Reveal);
        let expected = r#"# global
concurrent = 4

[session_server]
listen_address = "[::]:8093"

[[runners]]
name = "host docker"
url = "https://gitlab.example.com"
id = 12
token = "glrt-0123456789abcdef"
token_obtained_at = 2026-11-22T10:00:00Z
token_expires_at = 0001-01-01T00:00:00Z
executor = "docker"
# two at a time
limit = 2

[runners.docker]
image = "alpine"

[runners.cache]
Type = "s3"
"#;
        assert_eq!(text, expected);
        let masked = render(&globals, &runners, Secrets::Mask);
        assert!(masked.contains("token = \"glrt-0123…\""), "{masked}");
        assert!(!masked.contains("glrt-0123456789abcdef"));
        assert_eq!(mask_secrets(&text), masked);
        let odd = "[[Runners]]\nname = \"x\"\nToken = \"glrt-0123456789abcdef\" # c\n";
        assert_eq!(
            mask_secrets(odd),
            "[[Runners]]\nname = \"x\"\nToken = \"glrt-0123…\" # c\n"
        );
        let cache = "[[runners]]\n[runners.cache.s3]\nAccessKey = \"AKIAEXAMPLE\"\n\
                     SecretKey = \"wJalrXUtnFEMIK7MDENG\"\n[runners.cache.gcs]\n\
                     credentials = { private_key = \"-----BEGIN PRIVATE KEY-----abc\" }\n";
        let masked = mask_secrets(cache);
        assert!(masked.contains("AccessKey = \"AKIAEXAMPLE\""), "{masked}");
        assert!(masked.contains("SecretKey = \"wJal…\""), "{masked}");
        assert!(!masked.contains("PRIVATE KEY-----abc"), "{masked}");
    }
}
