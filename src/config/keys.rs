//! Which keys of an executor file the tool reads or writes itself, and how
//! they must be spelt. gitlab-runner decodes config.toml with
//! BurntSushi/toml, which matches a key to a field case-insensitively when
//! no exact match exists (Go's `strings.EqualFold`): a `Token` or
//! `[runners.docker]` copied through would compete with what the tool
//! writes, so such spellings are refused here.

use anyhow::Result;
use toml_edit::Table;

use super::known_keys::{self, Finding};
use super::server::SERVER_SETTINGS;
use super::source::TomlSource;

/// Keys of an executor file that the tool reads besides the server-side
/// settings ([`SERVER_SETTINGS`]).
const OWN_KEYS: &[&str] = &["url", "executor", "name", "token", "env_tags", "tags"];

/// Keys the tool writes into each `[[runners]]` itself.
pub(super) const GENERATED_KEYS: &[&str] =
    &["id", "token_obtained_at", "token_expires_at", "description"];

/// Keys of an executor file that the tool consumes; never written out.
pub(super) fn tool_keys() -> impl Iterator<Item = &'static str> + Clone {
    OWN_KEYS
        .iter()
        .copied()
        .chain(SERVER_SETTINGS.iter().map(|s| s.key))
}

/// A key as gitlab-runner's config decoder compares it when no field
/// matches exactly: Go's `strings.EqualFold`, which for the ASCII keys
/// involved here also folds the Kelvin sign into `k` and the long s into `s`.
pub fn folded_key(key: &str) -> String {
    key.chars().map(fold_char).collect()
}

/// One character of [`folded_key`].
pub fn fold_char(c: char) -> char {
    match c {
        '\u{212A}' => 'k',
        '\u{017F}' => 's',
        c => c.to_ascii_lowercase(),
    }
}

/// The template's top level: no `[[runners]]` in any spelling, and
/// `client_configs` (removed before writing) only in lower case.
/// Typos are refused or pushed onto `warnings` ([`known_keys`]).
pub(super) fn check_template_keys(
    source: &TomlSource,
    table: &Table,
    warnings: &mut Vec<String>,
) -> Result<()> {
    for (key, item) in table.iter() {
        report(
            source,
            key,
            item,
            known_keys::check_global_key(key),
            warnings,
        )?;
        let lower = folded_key(key);
        if lower == "runners" {
            return Err(source.error(
                key,
                item,
                "the template must not hold `[[runners]]`: executors live in one file each under the instance directory",
            ));
        }
        if lower == "client_configs" && key != lower {
            return Err(source.error(
                key,
                item,
                "write `client_configs` in lower case: any other spelling would be copied into config.toml",
            ));
        }
    }
    Ok(())
}

/// An executor file's top level: the inside of one `[[runners]]` entry,
/// with the keys the tool reads or writes only in their own spelling.
/// Typos are refused or pushed onto `warnings` ([`known_keys`]), the keys
/// of executor tables (`[docker]`, …) included.
pub(super) fn check_executor_keys(
    source: &TomlSource,
    table: &Table,
    warnings: &mut Vec<String>,
) -> Result<()> {
    for (key, item) in table.iter() {
        // Refused outright: no warning about it being unknown first.
        if folded_key(key) == "runners" {
            return Err(source.error(
                key,
                item,
                "an executor file holds the inside of one `[[runners]]` entry: \
                 write `[docker]`, `[cache]`, … rather than `[runners.docker]`",
            ));
        }
        report(
            source,
            key,
            item,
            known_keys::check_runner_key(key, tool_keys()),
            warnings,
        )?;
        if let Some(inner) = item.as_table_like() {
            for (inner_key, inner_item) in inner.iter() {
                let finding = known_keys::check_executor_table_key(key, inner_key);
                let shown = format!("{key}.{inner_key}");
                report(source, &shown, inner_item, finding, warnings)?;
            }
        }
        let lower = folded_key(key);
        let reserved = tool_keys()
            .chain(GENERATED_KEYS.iter().copied())
            .any(|k| k == lower);
        if reserved && key != lower {
            return Err(source.error(
                key,
                item,
                format!(
                    "differs only in case from `{lower}`, which register-runner reads or writes itself \
                     (gitlab-runner matches keys case-insensitively): write `{lower}`"
                ),
            ));
        }
    }
    Ok(())
}

/// A finding of [`known_keys`] as an error or a warning naming the file,
/// the line and the key.
pub(super) fn report(
    source: &TomlSource,
    key: &str,
    item: &toml_edit::Item,
    finding: Option<Finding>,
    warnings: &mut Vec<String>,
) -> Result<()> {
    match finding {
        None => Ok(()),
        Some(Finding::Refuse(message)) => Err(source.error(key, item, message)),
        Some(Finding::Warn(message)) => {
            warnings.push(source.located(key, item, message));
            Ok(())
        }
    }
}
