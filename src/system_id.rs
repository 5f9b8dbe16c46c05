//! This host's runner system id, `<prefix>/.runner_system_id`, shared with
//! gitlab-runner (gitlab-api.md §8).
//!
//! gitlab-runner's own algorithm: `s_` + the first 12 lowercase hex chars of
//! HMAC-SHA256(key = machine-id, message = `gitlab-runner`), the machine-id
//! read from `/var/lib/dbus/machine-id` then `/etc/machine-id`; without one,
//! `r_` + 12 random alphanumerics. An existing file whose trimmed content
//! matches `^[sr]_[0-9a-zA-Z]{12}$` is kept byte for byte; an invalid one is
//! regenerated and overwritten (as gitlab-runner does); an unreadable one is
//! an error (gitlab-runner would fail to start on it too), and so is one
//! that is not a regular file (a link, a FIFO, a device): it is opened
//! without following links or blocking, checked with `fstat`, and read
//! with a size cap.

use std::fs;
use std::io::{ErrorKind, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

use crate::fsutil;

pub const FILE_NAME: &str = ".runner_system_id";
const MACHINE_ID_PATHS: &[&str] = &["/var/lib/dbus/machine-id", "/etc/machine-id"];

/// The system id to send with every verify, and whether the file must be
/// (re)written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SystemId {
    pub value: String,
    pub path: PathBuf,
    pub needs_write: bool,
    /// Derived from the machine id (the same on every run), not random.
    pub from_machine: bool,
}

impl SystemId {
    /// Reads `<prefix>/.runner_system_id`, or derives a new id.
    pub fn load(prefix: &Path) -> Result<SystemId> {
        Self::load_with(prefix, read_machine_id)
    }

    fn load_with(prefix: &Path, machine_id: impl Fn() -> Option<String>) -> Result<SystemId> {
        let path = prefix.join(FILE_NAME);
        let generated = |path: PathBuf| {
            let machine_id = machine_id();
            SystemId {
                value: machine_id
                    .as_deref()
                    .map_or_else(random_id, from_machine_id),
                path,
                needs_write: true,
                from_machine: machine_id.is_some(),
            }
        };
        match read_capped(&path)? {
            Some(bytes) => {
                let text = String::from_utf8_lossy(&bytes);
                let trimmed = text.trim();
                if is_valid(trimmed) {
                    return Ok(SystemId {
                        value: trimmed.to_string(),
                        path,
                        needs_write: false,
                        from_machine: false,
                    });
                }
                let id = generated(path);
                tracing::warn!(
                    path = %id.path.display(),
                    new = %id.value,
                    "runner system id file is not valid; replacing it (as gitlab-runner would)"
                );
                Ok(id)
            }
            None => Ok(generated(path)),
        }
    }

    /// Writes the file (atomically, 0600, no newline) if it must be.
    pub fn persist(&self) -> Result<()> {
        if self.needs_write {
            crate::fsutil::write_atomic(&self.path, self.value.as_bytes())?;
        }
        Ok(())
    }
}

/// The most of `.runner_system_id` that is read: a valid id is 14 bytes,
/// so anything longer is invalid whatever follows.
const MAX_FILE_BYTES: u64 = 256;

/// The file's first bytes, `None` if it does not exist. Only a regular
/// file is read (checked on the opened descriptor), never through a link,
/// and at most [`MAX_FILE_BYTES`] + 1 bytes of it: a FIFO, `/dev/zero` or a
/// link put there is refused rather than replaced, since the tool cannot
/// know what it was for (remove it and a new id is written).
fn read_capped(path: &Path) -> Result<Option<Vec<u8>>> {
    let refuse = |what: String| {
        anyhow!(
            "runner system id file {what}: it is read only as a regular file, never through a link; \
             remove it and a new id is written (gitlab-runner reads the same file)"
        )
    };
    let file = match fs::OpenOptions::new()
        .read(true)
        .custom_flags(fsutil::NO_FOLLOW)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if fsutil::is_link_refusal(&e) => {
            return Err(refuse(fsutil::link_description(path)));
        }
        Err(e) => {
            return Err(e).with_context(|| {
                format!(
                    "cannot read runner system id file `{}` (gitlab-runner could not either)",
                    path.display()
                )
            });
        }
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read runner system id file `{}`", path.display()))?;
    if !meta.is_file() {
        return Err(refuse(format!(
            "`{}` is {}",
            path.display(),
            fsutil::file_kind(&meta)
        )));
    }
    let mut bytes = Vec::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read runner system id file `{}`", path.display()))?;
    Ok(Some(bytes))
}

/// `^[sr]_[0-9a-zA-Z]{12}$`
pub fn is_valid(id: &str) -> bool {
    let bytes = id.as_bytes();
    bytes.len() == 14
        && matches!(bytes[0], b's' | b'r')
        && bytes[1] == b'_'
        && bytes[2..].iter().all(u8::is_ascii_alphanumeric)
}

/// gitlab-runner's `GenerateUniqueSystemID`: from the machine id when there
/// is one, else random (see [`SystemId::load`]).
fn read_machine_id() -> Option<String> {
    MACHINE_ID_PATHS.iter().find_map(|p| {
        // Capped like every read: a machine-id is 33 bytes.
        let mut id = String::new();
        fs::File::open(p)
            .ok()?
            .take(4096)
            .read_to_string(&mut id)
            .ok()?;
        let id = id.trim();
        (!id.is_empty()).then(|| id.to_string())
    })
}

/// `s_` + first 12 hex chars of HMAC-SHA256(key = machine id, "gitlab-runner").
pub fn from_machine_id(machine_id: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(machine_id.as_bytes())
        .expect("HMAC accepts keys of any length");
    mac.update(b"gitlab-runner");
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("s_{}", &hex[..12])
}

/// `r_` + 12 random characters of `[a-zA-Z0-9]`.
fn random_id() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789";
    let mut bytes = [0u8; 12];
    rand::fill(&mut bytes);
    let body: String = bytes
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect();
    format!("r_{body}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn matches_gitlab_runner_for_a_known_machine_id() {
        // python3: hmac.new(b"0123456789abcdef0123456789abcdef", b"gitlab-runner",
        //                   hashlib.sha256).hexdigest()[:12]
        assert_eq!(
            from_machine_id("0123456789abcdef0123456789abcdef"),
            "s_ee3af03959fe"
        );
    }

    #[test]
    fn random_ids_are_valid() {
        let id = random_id();
        assert!(is_valid(&id), "{id}");
        assert!(id.starts_with("r_"));
    }

    #[test]
    fn validity() {
        assert!(is_valid("s_0123456789ab"));
        assert!(is_valid("r_AbCdEf012345"));
        assert!(!is_valid("x_0123456789ab"));
        assert!(!is_valid("s_0123456789a"));
        assert!(!is_valid("s_0123456789a-"));
    }

    #[test]
    fn keeps_a_valid_file_and_replaces_an_invalid_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE_NAME);
        fs::write(&path, "r_AbCdEf012345\n").unwrap();
        let id = SystemId::load(dir.path()).unwrap();
        assert_eq!(id.value, "r_AbCdEf012345");
        assert!(!id.needs_write);
        fs::write(&path, "garbage").unwrap();
        let id = SystemId::load(dir.path()).unwrap();
        assert!(id.needs_write && is_valid(&id.value));
        id.persist().unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), id.value);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
    }

    #[test]
    fn a_new_id_comes_from_the_machine_id_else_at_random() {
        let dir = tempfile::tempdir().unwrap();
        let id = SystemId::load_with(dir.path(), || {
            Some("0123456789abcdef0123456789abcdef".into())
        })
        .unwrap();
        assert_eq!(id.value, "s_ee3af03959fe");
        assert!(id.needs_write && id.from_machine);
        let id = SystemId::load_with(dir.path(), || None).unwrap();
        assert!(id.value.starts_with("r_") && is_valid(&id.value));
        assert!(id.needs_write && !id.from_machine);
    }
}
