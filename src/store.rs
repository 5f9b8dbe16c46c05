//! The token store: the last output `config.<instance>.toml`, read back.
//!
//! gitlab-runner rotates tokens and writes them into this file, so the
//! tokens here are the current ones (SPEC §4 step 3). For each `[[runners]]`
//! it yields the runner's name (the original tool wrote `description`: that
//! is accepted too), url, id, token and token times, plus the raw table so
//! that an entry can be carried over untouched. A file that is not valid
//! TOML stops the run: it may be the only copy of the tokens. It is read
//! like any input (a regular file owned by root or the running user that
//! group and others cannot write): its ids drive deletions. Its mode is
//! kept, so that one group or others can read is narrowed (see
//! [`TokenStore::loose_mode`]).

use std::path::{Path, PathBuf};

use anyhow::{Result, anyhow};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use toml_edit::{Item, Table};

use crate::config::normalize_url;
use crate::fsutil;
use crate::secret::Secret;

/// A runner's credentials as gitlab-runner keeps them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// 0 when unknown (gitlab-runner's `-t` registrations write 0 too).
    pub id: u64,
    pub token: Secret,
    pub obtained_at: OffsetDateTime,
    /// `None` = never expires (written as `0001-01-01T00:00:00Z`).
    pub expires_at: Option<OffsetDateTime>,
}

impl Credentials {
    /// Whether the token is in the last quarter of its life, when
    /// gitlab-runner itself would rotate it (`TokenResetIntervalFactor`).
    pub fn due_for_rotation(&self, now: OffsetDateTime) -> bool {
        let Some(expires) = self.expires_at else {
            return false;
        };
        let life = expires - self.obtained_at;
        if life <= time::Duration::ZERO {
            return true;
        }
        now >= self.obtained_at + life * 0.75
    }
}

/// One `[[runners]]` entry of the last output.
#[derive(Debug, Clone)]
pub struct HeldRunner {
    pub name: String,
    /// Normalised like client_configs urls.
    pub url: String,
    pub credentials: Credentials,
    /// The entry as written, to carry over unchanged.
    pub table: RawEntry,
}

/// A `[[runners]]` table as read. It holds a token in the clear, so its
/// `Debug` shows nothing of it.
#[derive(Clone)]
pub struct RawEntry(pub Table);

impl std::fmt::Debug for RawEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RawEntry(..)")
    }
}

#[derive(Clone)]
pub struct TokenStore {
    pub path: PathBuf,
    /// The file as it is now (`None`: there is none yet).
    pub text: Option<String>,
    /// The file's permission bits as read (`fstat`), when it exists.
    pub mode: Option<u32>,
    pub runners: Vec<HeldRunner>,
}

/// What to do about a last output that cannot be read back.
const RECOVER: &str = "it holds the runner tokens, so it is never overwritten: repair it by hand, \
                       or move it away to have its runners replaced";

/// Checks that the last output (if any) can be read back: part of
/// validating the input before the run writes the lock file or
/// `.runner_system_id` and before any request. What it parsed is kept for
/// [`TokenStore::load_checked`].
pub fn check(path: &Path) -> Result<Checked> {
    let Some((text, _)) = read(path)? else {
        return Ok(Checked(None));
    };
    let tables = parse_document(path, &text)?;
    Ok(Checked(Some((text, tables))))
}

/// The last output as [`check`] read it before the lock: its text and its
/// `[[runners]]` tables.
pub struct Checked(Option<(String, Vec<Table>)>);

/// Read like every input (a regular file, owned by root or the running
/// user and not writable by group or others): it is the token store, and
/// the ids in it drive deletions.
fn read(path: &Path) -> Result<Option<(String, u32)>> {
    fsutil::read_input_meta(path)
        .map(|read| read.map(|(text, meta)| (text, fsutil::mode_of(&meta))))
        .map_err(|e| anyhow!("last output: {e:#}; {RECOVER}"))
}

impl std::fmt::Debug for TokenStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenStore")
            .field("path", &self.path)
            .field(
                "text",
                &self.text.as_ref().map(|t| format!("({} bytes)", t.len())),
            )
            .field("mode", &self.mode)
            .field("runners", &self.runners)
            .finish()
    }
}

impl TokenStore {
    pub fn load(path: &Path, now: OffsetDateTime) -> Result<TokenStore> {
        TokenStore::load_checked(path, now, Checked(None))
    }

    /// [`TokenStore::load`] under the lock: the file is read again (a run
    /// that held the lock meanwhile may have written it), and parsed again
    /// only if its bytes differ from what `checked` parsed.
    pub fn load_checked(path: &Path, now: OffsetDateTime, checked: Checked) -> Result<TokenStore> {
        let (text, mode) = read(path)?.unzip();
        let tables = match (&text, checked.0) {
            (None, _) => Vec::new(),
            (Some(text), Some((then, tables))) if *text == then => tables,
            (Some(text), _) => parse_document(path, text)?,
        };
        Ok(TokenStore {
            path: path.to_path_buf(),
            runners: held_runners(path, tables, now),
            text,
            mode,
        })
    }

    /// The file again, if its bytes are no longer those of `self`: what a
    /// running gitlab-runner (or this run) wrote since. `Ok(None)` when
    /// unchanged, which is every restart that changed nothing.
    pub fn reload_if_changed(&self, now: OffsetDateTime) -> Result<Option<TokenStore>> {
        let (text, mode) = read(&self.path)?.unzip();
        if text == self.text {
            return Ok(None);
        }
        TokenStore::from_text(&self.path, text, mode, now).map(Some)
    }

    /// The store as `text` (the file at `path` with its `mode`; `None` if
    /// there is none).
    pub fn from_text(
        path: &Path,
        text: Option<String>,
        mode: Option<u32>,
        now: OffsetDateTime,
    ) -> Result<TokenStore> {
        let runners = match &text {
            None => Vec::new(),
            Some(text) => held_runners(path, parse_document(path, text)?, now),
        };
        Ok(TokenStore {
            path: path.to_path_buf(),
            text,
            mode,
            runners,
        })
    }

    /// The mode of the last output when group or others can access it:
    /// a run narrows it to 0600 (a dry-run only says so).
    pub fn loose_mode(&self) -> Option<u32> {
        self.mode.filter(|m| m & 0o077 != 0)
    }

    pub fn find(&self, url: &str, name: &str) -> Option<&HeldRunner> {
        self.runners.iter().find(|r| r.url == url && r.name == name)
    }
}

/// The `[[runners]]` tables of the last output; any syntax or shape
/// problem is an error that says how to recover.
fn parse_document(path: &Path, text: &str) -> Result<Vec<Table>> {
    let recover = RECOVER;
    let doc = toml_edit::Document::parse(text).map_err(|e| {
        // Bytes, not a str slice: a span need not start on a char boundary.
        let line = e
            .span()
            .map(|s| {
                let line = text.as_bytes()[..s.start.min(text.len())]
                    .iter()
                    .filter(|b| **b == b'\n')
                    .count();
                format!(" line {}", line + 1)
            })
            .unwrap_or_default();
        anyhow!(
            "last output `{}`{line}: invalid TOML: {}; {recover}",
            path.display(),
            e.message().trim_end()
        )
    })?;
    // Into a mutable document first: that resolves every piece of
    // formatting against the source text, so a table carried over renders
    // exactly as it was read.
    let mut doc = doc.into_mut();
    match doc.remove("runners") {
        None => Ok(Vec::new()),
        Some(Item::ArrayOfTables(array)) => Ok(array.into_iter().collect()),
        Some(_) => Err(anyhow!(
            "last output `{}`: `runners` is not an array of tables; {recover}",
            path.display()
        )),
    }
}

fn held_runners(path: &Path, tables: Vec<Table>, now: OffsetDateTime) -> Vec<HeldRunner> {
    let mut held = Vec::new();
    for table in tables {
        let text_of = |key: &str| table.get(key).and_then(|i| i.as_str()).map(str::to_string);
        let Some(name) = text_of("name").or_else(|| text_of("description")) else {
            tracing::warn!(file = %path.display(), "a [[runners]] entry without name is ignored");
            continue;
        };
        let (Some(url), Some(token)) = (text_of("url"), text_of("token")) else {
            tracing::warn!(file = %path.display(), runner = %name, "a [[runners]] entry without url or token is ignored");
            continue;
        };
        if token.trim().is_empty() {
            continue;
        }
        let id = table
            .get("id")
            .and_then(|i| i.as_integer())
            .filter(|i| *i > 0)
            .map_or(0, |i| i as u64);
        let obtained_at = time_of(&table, "token_obtained_at")
            .filter(|t| t.year() > 1)
            .unwrap_or_else(|| truncate_to_second(now));
        let expires_at = time_of(&table, "token_expires_at").filter(|t| t.year() > 1);
        held.push(HeldRunner {
            name,
            url: normalize_url(&url),
            credentials: Credentials {
                id,
                token: Secret::new(token.trim()),
                obtained_at,
                expires_at,
            },
            table: RawEntry(table),
        });
    }
    held
}

/// A TOML datetime, or a string holding one (gitlab-runner reads both).
fn time_of(table: &Table, key: &str) -> Option<OffsetDateTime> {
    let item = table.get(key)?;
    let text = match item.as_datetime() {
        Some(dt) => dt.to_string(),
        None => item.as_str()?.to_string(),
    };
    OffsetDateTime::parse(&text, &Rfc3339).ok()
}

pub fn truncate_to_second(t: OffsetDateTime) -> OffsetDateTime {
    t.replace_nanosecond(0).unwrap_or(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn reads_name_or_description_and_times() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.main.toml");
        std::fs::write(
            &path,
            r#"concurrent = 4
[[runners]]
name = "a"
url = "https://gitlab.example.com/"
id = 7
token = "glrt-aaaaaaaaaaaaaaaa"
token_obtained_at = 2026-01-01T00:00:00Z
token_expires_at = 0001-01-01T00:00:00Z
executor = "shell"

[[runners]]
description = "old"
url = "https://gitlab.example.com"
token = "legacytoken123"
executor = "shell"
"#,
        )
        .unwrap();
        let now = datetime!(2026-11-22 10:00:00.5 UTC);
        let store = TokenStore::load(&path, now).unwrap();
        assert_eq!(store.runners.len(), 2);
        let a = store.find("https://gitlab.example.com", "a").unwrap();
        assert_eq!(a.credentials.id, 7);
        assert_eq!(a.credentials.obtained_at, datetime!(2026-01-01 0:00 UTC));
        assert_eq!(a.credentials.expires_at, None);
        let old = store.find("https://gitlab.example.com", "old").unwrap();
        assert_eq!(old.credentials.id, 0);
        assert_eq!(
            old.credentials.obtained_at,
            datetime!(2026-11-22 10:00:00 UTC)
        );
    }

    /// What `check` parsed before the lock is reused only for the same
    /// bytes: a run that held the lock meanwhile wrote tokens of its own,
    /// and a running gitlab-runner may rotate one at any time.
    #[test]
    fn the_store_is_the_file_as_it_is_when_read_under_the_lock() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.main.toml");
        let write = |token: &str| {
            let entry = format!(
                "[[runners]]\nname = \"a\"\nurl = \"https://gitlab.example.com\"\nid = 7\ntoken = \"{token}\"\nexecutor = \"shell\"\n"
            );
            std::fs::write(&path, entry).unwrap();
        };
        let token = |store: &TokenStore| store.runners[0].credentials.token.expose().to_string();
        let now = OffsetDateTime::now_utc();

        write("glrt-read-before-the-lock");
        let checked = check(&path).unwrap();
        write("glrt-written-by-another-run");
        let store = TokenStore::load_checked(&path, now, checked).unwrap();
        assert_eq!(token(&store), "glrt-written-by-another-run");

        let checked = check(&path).unwrap();
        let store = TokenStore::load_checked(&path, now, checked).unwrap();
        assert_eq!(token(&store), "glrt-written-by-another-run");
        assert!(store.reload_if_changed(now).unwrap().is_none());
        write("glrt-rotated-by-gitlab-runner");
        let again = store.reload_if_changed(now).unwrap().unwrap();
        assert_eq!(token(&again), "glrt-rotated-by-gitlab-runner");
    }

    #[test]
    fn invalid_toml_is_an_error_that_says_how_to_recover() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.main.toml");
        std::fs::write(&path, "[[runners]\ntoken = \"glrt-secretsecret\"\n").unwrap();
        let err = TokenStore::load(&path, OffsetDateTime::now_utc())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("line 1") && err.contains("move it away"),
            "{err}"
        );
        assert!(!err.contains("secretsecret"), "{err}");
    }

    #[test]
    fn rotation_is_due_in_the_last_quarter() {
        let c = Credentials {
            id: 1,
            token: Secret::new("glrt-x"),
            obtained_at: datetime!(2026-01-01 0:00 UTC),
            expires_at: Some(datetime!(2026-01-05 0:00 UTC)),
        };
        assert!(!c.due_for_rotation(datetime!(2026-01-03 23:59 UTC)));
        assert!(c.due_for_rotation(datetime!(2026-01-04 0:00 UTC)));
        let never = Credentials {
            expires_at: None,
            ..c
        };
        assert!(!never.due_for_rotation(datetime!(2030-01-01 0:00 UTC)));
    }
}

/// Another instance configured on the same prefix (a
/// `config.template.<name>.toml` or `config.<name>.toml` is there), with
/// what its last output holds. Instances share `.runner_system_id`, so a
/// runner manager cannot tell them apart: these are what can.
#[derive(Debug, Clone)]
pub struct OtherInstance {
    pub name: String,
    /// Its `[[runners]]` (url, id, token); empty when it has no output yet
    /// or its output cannot be read (a warning says so).
    pub held: Vec<(String, u64, Secret)>,
}

/// This instance and the others configured on its prefix.
#[derive(Debug, Clone, Default)]
pub struct Instances {
    pub this: String,
    pub others: Vec<OtherInstance>,
}

/// This instance and the others on `prefix` (by their file names, in name
/// order), with what their last outputs hold.
pub fn instances(prefix: &Path, instance: &str, now: OffsetDateTime) -> Instances {
    Instances {
        this: instance.to_string(),
        others: other_instances(prefix, instance, now),
    }
}

fn other_instances(prefix: &Path, instance: &str, now: OffsetDateTime) -> Vec<OtherInstance> {
    let Ok(entries) = std::fs::read_dir(prefix) else {
        return Vec::new();
    };
    let mut names: Vec<String> = entries
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| {
            let name = f.strip_prefix("config.")?.strip_suffix(".toml")?;
            let name = name.strip_prefix("template.").unwrap_or(name);
            (name != instance && crate::config::check_instance_name(name).is_ok())
                .then(|| name.to_string())
        })
        .collect();
    names.sort();
    names.dedup();
    names
        .into_iter()
        .map(|name| {
            let path = crate::config::output_path(prefix, &name);
            let held = match TokenStore::load(&path, now) {
                Ok(store) => store
                    .runners
                    .into_iter()
                    .map(|r| (r.url, r.credentials.id, r.credentials.token))
                    .collect(),
                Err(e) => {
                    tracing::warn!(
                        "instance `{name}` on this prefix: its config cannot be read, so only its instance tag \
                         tells its runners apart: {e:#}"
                    );
                    Vec::new()
                }
            };
            OtherInstance { name, held }
        })
        .collect()
}
