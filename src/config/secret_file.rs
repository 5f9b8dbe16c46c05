//! Secrets in the template: a PAT or registration token given literally
//! (`key`) or in a file (`key_file`, relative to `$CREDENTIALS_DIRECTORY`
//! when systemd's `LoadCredential=` set it, else to the prefix). A secret
//! file may be a link; what it leads to must be a regular file owned by
//! root or the running user. A token must be one word of printable ASCII:
//! messages say where it breaks that rule, never what it holds.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use toml_edit::Table;

use super::LoadEnv;
use super::source::TomlSource;
use crate::fsutil;
use crate::secret::{Secret, shown_path};

/// A secret given literally (`key`) or in a file (`key_file`), never both.
pub(super) fn secret(
    source: &TomlSource,
    table: &Table,
    key: &str,
    env: &LoadEnv,
) -> Result<Option<Secret>> {
    let file_key = format!("{key}_file");
    let literal = source.non_empty_string(table, key)?;
    let file = source.non_empty_string(table, &file_key)?;
    match (literal, file) {
        (Some(_), Some(_)) => Err(source.error(
            &file_key,
            &table[file_key.as_str()],
            format!("give either `{key}` or `{file_key}`, not both"),
        )),
        (Some(value), None) => {
            let value = value.trim();
            if let Some(problem) = token_shape_problem(value) {
                return Err(source.error(key, &table[key], problem));
            }
            Ok(Some(Secret::new(value)))
        }
        (None, Some(file)) => {
            let base = env.credentials_directory.as_deref().unwrap_or(&env.prefix);
            let path = resolve(&env.prefix, env.credentials_directory.as_deref(), &file);
            let shown = shown_path(base, &file, &path);
            let at = source.position(table[file_key.as_str()].span());
            let text = read_secret_file(&path, &shown, true)
                .with_context(|| format!("`{}`{at}: key `{file_key}`", source.path.display()))?;
            let value = text.trim();
            if value.is_empty() {
                bail!(
                    "`{}`{at}: key `{file_key}`: `{shown}` is empty",
                    source.path.display(),
                );
            }
            if let Some(problem) = token_shape_problem(value) {
                bail!(
                    "`{}`{at}: key `{file_key}`: `{shown}`: {problem}",
                    source.path.display(),
                );
            }
            Ok(Some(Secret::new(value)))
        }
        (None, None) => Ok(None),
    }
}

/// Secret files and `tls_ca_file` may be links (systemd credentials,
/// config management); what they lead to follows the input rules and the
/// ownership rule ([`fsutil::check_trusted`]), checked on the opened
/// descriptor. A secret that others can read is used, with a warning:
/// refusing it would keep runners from starting, and the secret is out
/// already.
pub(super) fn read_secret_file(path: &Path, shown: &str, secret: bool) -> Result<String> {
    use std::io::Read;
    use std::os::unix::fs::OpenOptionsExt;
    let context = || format!("cannot read `{shown}`");
    // Links are followed; a FIFO opens without blocking and is refused
    // below, as is a device or directory: they would block, never end or
    // not be a token at all.
    let file = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .with_context(context)?;
    let meta = file.metadata().with_context(context)?;
    if !meta.is_file() {
        bail!(
            "`{shown}` is not a regular file ({})",
            fsutil::file_kind(&meta)
        );
    }
    // A link is fine; who owns and may write what it leads to matters.
    let link = fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    let target = fs::canonicalize(path)
        .ok()
        .filter(|_| link && shown == path.display().to_string())
        .map(|t| t.display().to_string());
    match &target {
        Some(target) => fsutil::check_trusted(target, &meta)
            .with_context(|| format!("`{shown}` is a link to `{target}`"))?,
        None => fsutil::check_trusted(shown, &meta)?,
    }
    let mode = fsutil::mode_of(&meta);
    if secret && mode & 0o004 != 0 {
        tracing::warn!(
            "`{shown}` holds a secret and others can read it (mode {mode:04o}): chmod o-r `{shown}`"
        );
    }
    let mut bytes = Vec::new();
    file.take(fsutil::MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(context)?;
    if bytes.len() as u64 > fsutil::MAX_INPUT_BYTES {
        bail!("`{shown}` is larger than {} bytes", fsutil::MAX_INPUT_BYTES);
    }
    String::from_utf8(bytes).map_err(|_| anyhow!("`{shown}` is not UTF-8 text"))
}

/// Why a token cannot be sent as an HTTP header value (a PAT travels in
/// `PRIVATE-TOKEN`) or is no token at all: it must be one word of visible
/// ASCII. The message says where, never what.
pub(super) fn token_shape_problem(value: &str) -> Option<String> {
    let (at, c) = value.char_indices().find(|(_, c)| !c.is_ascii_graphic())?;
    let what = match c {
        '\n' | '\r' => "a line break (only one line is read as the token)".to_string(),
        ' ' | '\t' => "a space".to_string(),
        c if c.is_control() => format!("a control character (U+{:04X})", c as u32),
        _ => "a character that is not printable ASCII".to_string(),
    };
    Some(format!(
        "the token holds {what} at byte {at}: a token is one word of printable ASCII, \
         and it could not be sent to GitLab as an HTTP header"
    ))
}

/// A relative `*_file` path resolves against `$CREDENTIALS_DIRECTORY` when
/// given, else against the prefix.
pub(super) fn resolve(prefix: &Path, credentials_directory: Option<&Path>, file: &str) -> PathBuf {
    let path = Path::new(file);
    if path.is_absolute() {
        path.to_path_buf()
    } else {
        credentials_directory.unwrap_or(prefix).join(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_one_word_of_printable_ascii() {
        assert_eq!(token_shape_problem("glpat-abc_DEF-123"), None);
        for (token, what) in [
            ("glpat-abc\nsecond", "a line break"),
            ("glpat-abc\r\n", "a line break"),
            ("glpat abc", "a space"),
            ("glpat-\u{7}abc", "U+0007"),
            ("glpat-\u{7f}", "U+007F"),
            ("glpat-é", "not printable ASCII"),
        ] {
            let problem = token_shape_problem(token).unwrap();
            assert!(problem.contains(what), "{token:?}: {problem}");
            assert!(!problem.contains("glpat"), "{problem}");
        }
    }
}
