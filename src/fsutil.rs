//! Filesystem rules shared by every file the tool reads or writes.
//!
//! Reading: input files under the prefix must be regular files (not links
//! to elsewhere), at most [`MAX_INPUT_BYTES`], and UTF-8; and, as OpenSSH's
//! `StrictModes` and sudo require of what they read, owned by root or the
//! running user and not writable by group or others ([`check_trusted`]);
//! directories that hold secrets must also be owner-only. Files a writer
//! could replace are opened without following a final link and without
//! blocking on a FIFO ([`NO_FOLLOW`]), and every check that guards a read is
//! made on the opened descriptor (`fstat`), not on the path. Writing:
//! [`write_atomic`] puts the bytes in a temp file in the same directory with
//! mode 0600, fsyncs it, renames it over the target and fsyncs the
//! directory, so a reader (gitlab-runner) sees the old file or the new one,
//! never half of one; [`write_atomic_if_changed`] also narrows the mode of
//! an unchanged file to 0600. [`PrefixLock`] is the exclusive lock that
//! makes concurrent runs on one prefix queue.

use std::ffi::CStr;
use std::fs::{self, File, Metadata, OpenOptions};
use std::io::{ErrorKind, Read, Write};
use std::os::unix::fs::{FileTypeExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};

const TEMP_SUFFIX: &str = ".tmp";

/// The largest input file accepted: config files are a few KiB.
pub const MAX_INPUT_BYTES: u64 = 1024 * 1024;

/// Extra open flags for a file that someone could have replaced: a link
/// in the last component fails (`ELOOP`) instead of being followed, and a
/// FIFO or device opens without blocking (its `fstat` then refuses it).
pub const NO_FOLLOW: i32 = libc::O_NOFOLLOW | libc::O_NONBLOCK;

/// The user this process runs as (its effective uid).
#[allow(unsafe_code)] // libc; see the SAFETY comments
pub fn euid() -> u32 {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() }
}

/// A user's name and primary group, from the user database.
#[allow(unsafe_code)] // libc; see the SAFETY comments
fn passwd_entry(uid: u32) -> Option<(String, u32)> {
    let mut buf: Vec<libc::c_char> = vec![0; 1024];
    loop {
        // SAFETY: `pwd` and `buf` outlive the call, `buf.len()` is its
        // size, and `result` is only read after the call returned.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 20 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || pwd.pw_name.is_null() {
            return None;
        }
        // SAFETY: on success pw_name points at a NUL-terminated string in `buf`.
        let name = unsafe { CStr::from_ptr(pwd.pw_name) };
        return Some((name.to_string_lossy().into_owned(), pwd.pw_gid));
    }
}

/// A group's name and its listed (supplementary) members.
#[allow(unsafe_code)] // libc; see the SAFETY comments
fn group_entry(gid: u32) -> Option<(String, Vec<String>)> {
    let mut buf: Vec<libc::c_char> = vec![0; 4096];
    loop {
        // SAFETY: as in `passwd_entry`, with getgrgid_r.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc =
            unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == libc::ERANGE && buf.len() < 1 << 22 {
            buf.resize(buf.len() * 4, 0);
            continue;
        }
        if rc != 0 || result.is_null() || grp.gr_name.is_null() {
            return None;
        }
        // SAFETY: on success gr_name and the NULL-terminated gr_mem array
        // point at NUL-terminated strings in `buf`.
        let name = unsafe { CStr::from_ptr(grp.gr_name) }
            .to_string_lossy()
            .into_owned();
        let mut members = Vec::new();
        if !grp.gr_mem.is_null() {
            for i in 0.. {
                let member = unsafe { *grp.gr_mem.add(i) };
                if member.is_null() {
                    break;
                }
                members.push(
                    unsafe { CStr::from_ptr(member) }
                        .to_string_lossy()
                        .into_owned(),
                );
            }
        }
        return Some((name, members));
    }
}

/// Whether `gid` is the private group of user `uid` (named like the user,
/// the user's primary group, no other listed member): then group write
/// gives no one else access, as Debian's OpenSSH (`user-group-modes`)
/// accepts. Users whose umask is 002 get such files.
fn is_private_group(uid: u32, gid: u32) -> bool {
    let (Some((user, primary)), Some((group, members))) = (passwd_entry(uid), group_entry(gid))
    else {
        return false;
    };
    primary == gid && group == user && members.iter().all(|m| *m == user)
}

/// The message for a path this process may not read: the cause (the user
/// it runs as) and the fix, rather than "does not exist".
pub fn permission_denied(path: &Path) -> String {
    format!(
        "cannot read `{}`: permission denied: register-runner runs as {} and the prefix is another user's. \
         Fix: run it as root, as gitlab-runner's systemd unit does (`sudo register-runner …`), or as the user \
         who owns the prefix",
        path.display(),
        user_name(euid())
    )
}

/// `name (uid N)` for messages, or `uid N` when the user database has no
/// entry for it.
pub fn user_name(uid: u32) -> String {
    match passwd_entry(uid) {
        Some((name, _)) => format!("{name} (uid {uid})"),
        None => format!("uid {uid}"),
    }
}

/// The plain user name to put in a `chown` hint.
fn chown_target() -> String {
    let me = user_name(euid());
    match me.split_once(" (uid ") {
        Some((name, _)) => name.to_string(),
        None => euid().to_string(),
    }
}

/// What a file is, for messages: "a FIFO", "a directory", ….
pub fn file_kind(meta: &Metadata) -> &'static str {
    let t = meta.file_type();
    if t.is_file() {
        "a regular file"
    } else if t.is_dir() {
        "a directory"
    } else if t.is_symlink() {
        "a symbolic link"
    } else if t.is_fifo() {
        "a FIFO"
    } else if t.is_char_device() {
        "a character device"
    } else if t.is_block_device() {
        "a block device"
    } else if t.is_socket() {
        "a socket"
    } else {
        "not a regular file"
    }
}

/// The permission bits of a file.
pub fn mode_of(meta: &Metadata) -> u32 {
    meta.mode() & 0o7777
}

/// The ownership rule for everything the tool reads (OpenSSH's
/// `StrictModes`, sudo's checks on sudoers): owned by root or by the user
/// the tool runs as, and not writable by group or others (group write is
/// fine when the group is the owner's private group, see
/// `is_private_group`). Otherwise another user could steer what a root
/// process reads, sends and writes.
/// `shown` is the path as it may appear in a message.
pub fn check_trusted(shown: &str, meta: &Metadata) -> Result<()> {
    let uid = meta.uid();
    let mode = mode_of(meta);
    if uid != 0 && uid != euid() {
        bail!(
            "`{shown}` is owned by {}, mode {mode:04o}: register-runner runs as {} and reads only what \
             root or its own user owns, so that no other user can steer it (chown {} `{shown}`)",
            user_name(uid),
            user_name(euid()),
            chown_target(),
        );
    }
    let group_write = mode & 0o020 != 0 && !is_private_group(uid, meta.gid());
    if mode & 0o002 != 0 || group_write {
        bail!(
            "`{shown}` is writable by group or others (owner {}, mode {mode:04o}): anyone who can write it \
             could steer register-runner (chmod go-w `{shown}`)",
            user_name(uid),
        );
    }
    Ok(())
}

/// Whether an open error means the last component is a symbolic link
/// that [`NO_FOLLOW`] refused.
pub fn is_link_refusal(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ELOOP)
}

/// "`path` is a symbolic link (to `target`)" for messages.
pub fn link_description(path: &Path) -> String {
    let target = fs::read_link(path)
        .map(|t| t.display().to_string())
        .unwrap_or_else(|_| "?".into());
    format!("`{}` is a symbolic link (to `{target}`)", path.display())
}

/// Reads a text input file, refusing links, non-files, huge and non-UTF-8
/// files and files another user owns or can write, with a message that
/// names the path.
pub fn read_input(path: &Path) -> Result<String> {
    match read_input_opt(path)? {
        Some(text) => Ok(text),
        None => bail!("`{}` does not exist", path.display()),
    }
}

/// Like [`read_input`], but a missing file is `None`.
pub fn read_input_opt(path: &Path) -> Result<Option<String>> {
    Ok(read_input_meta(path)?.map(|(text, _)| text))
}

/// Like [`read_input_opt`], with the opened file's metadata (`fstat`).
pub fn read_input_meta(path: &Path) -> Result<Option<(String, Metadata)>> {
    let file = match OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) if is_link_refusal(&e) => bail!(
            "{}: only regular files are read here",
            link_description(path)
        ),
        Err(e) => return Err(e).with_context(|| format!("cannot read `{}`", path.display())),
    };
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if !meta.is_file() {
        bail!(
            "`{}` is not a regular file ({})",
            path.display(),
            file_kind(&meta)
        );
    }
    check_trusted(&path.display().to_string(), &meta)?;
    if meta.len() > MAX_INPUT_BYTES {
        bail!(
            "`{}` is {} bytes, more than the {} bytes a config file may have",
            path.display(),
            meta.len(),
            MAX_INPUT_BYTES
        );
    }
    // Bounded even so: some files (under /proc, say) report a length of 0.
    let mut bytes = Vec::new();
    file.take(MAX_INPUT_BYTES + 1)
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read `{}`", path.display()))?;
    if bytes.len() as u64 > MAX_INPUT_BYTES {
        bail!(
            "`{}` is more than the {} bytes a config file may have",
            path.display(),
            MAX_INPUT_BYTES
        );
    }
    match String::from_utf8(bytes) {
        Ok(text) => Ok(Some((text, meta))),
        Err(e) => bail!(
            "`{}` is not UTF-8 text (invalid byte at offset {})",
            path.display(),
            e.utf8_error().valid_up_to()
        ),
    }
}

/// Fails unless `path` is a directory owned by root or the running user
/// that group and others cannot access (as the original tool required of
/// the prefix and the instance directory).
pub fn check_owner_only_dir(path: &Path) -> Result<()> {
    let meta = match fs::metadata(path) {
        Err(e) if e.kind() == ErrorKind::PermissionDenied => bail!("{}", permission_denied(path)),
        other => other.with_context(|| format!("cannot read directory `{}`", path.display()))?,
    };
    if !meta.is_dir() {
        bail!("`{}` is not a directory", path.display());
    }
    let mode = mode_of(&meta);
    if mode & 0o077 != 0 {
        bail!(
            "`{}` has mode {:04o}: it must not be accessible by group or others (chmod 0700 `{}`)",
            path.display(),
            mode,
            path.display()
        );
    }
    check_trusted(&path.display().to_string(), &meta)
}

/// Writes `bytes` to `path` atomically with mode 0600, unless the file
/// already holds exactly these bytes (gitlab-runner reloads on mtime).
/// An unchanged file that group or others can access is narrowed to 0600
/// in place (the mtime stays), with a warning. Returns whether it wrote.
pub fn write_atomic_if_changed(path: &Path, bytes: &[u8]) -> Result<bool> {
    // Without following a link: a link here is replaced by the rename.
    if let Ok(current) = OpenOptions::new()
        .read(true)
        .custom_flags(NO_FOLLOW)
        .open(path)
        && let Ok(meta) = current.metadata()
        && meta.is_file()
    {
        let mode = mode_of(&meta);
        let loose = mode & 0o077 != 0;
        let mut existing = Vec::new();
        let same = (&current)
            .take(bytes.len() as u64 + 1)
            .read_to_end(&mut existing)
            .is_ok()
            && existing == bytes;
        if same {
            if loose {
                // fchmod on the descriptor just checked, not on the path.
                current
                    .set_permissions(fs::Permissions::from_mode(0o600))
                    .with_context(|| {
                        format!("cannot set the mode of `{}` to 0600", path.display())
                    })?;
                warn_loose_mode(path, mode, "set it to 0600");
            }
            return Ok(false);
        }
        if loose {
            warn_loose_mode(path, mode, "writing it with mode 0600");
        }
    }
    write_atomic(path, bytes)?;
    Ok(true)
}

fn warn_loose_mode(path: &Path, mode: u32, what: &str) {
    tracing::warn!(
        path = %path.display(),
        "`{}` had mode {mode:04o}: group or others could read the runner tokens in it; {what}",
        path.display()
    );
}

/// Same-directory temp file (0600), write, fsync, rename, fsync directory.
pub fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    let context = || format!("cannot write `{}`", path.display());
    let mut tmp = tempfile::Builder::new()
        .prefix(&temp_prefix(
            &path
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default(),
        ))
        .suffix(TEMP_SUFFIX)
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .with_context(context)?;
    tmp.write_all(bytes).with_context(context)?;
    tmp.as_file().sync_all().with_context(context)?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(context)?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .with_context(|| format!("cannot fsync directory `{}`", dir.display()))?;
    Ok(())
}

/// Removes temp files that [`write_atomic`] left behind for the named
/// files when a run was killed mid-write, if they are at least the given
/// age. Call only while holding the [`PrefixLock`].
pub fn remove_stale_temp_files(dir: &Path, targets: &[(&str, Duration)]) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let name = name.to_string_lossy();
        let Some(min_age) = targets
            .iter()
            .find(|(target, _)| {
                name.starts_with(&temp_prefix(target)) && name.ends_with(TEMP_SUFFIX)
            })
            .map(|(_, age)| *age)
        else {
            continue;
        };
        let age = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .unwrap_or_default();
        if age < min_age {
            continue;
        }
        match fs::remove_file(entry.path()) {
            Ok(()) => tracing::debug!(path = %entry.path().display(), "removed a stale temp file"),
            Err(e) => {
                tracing::warn!(path = %entry.path().display(), "cannot remove a stale temp file: {e}")
            }
        }
    }
}

/// Temp files are named after their target: `.<file name>.<random>.tmp`.
fn temp_prefix(target: &str) -> String {
    format!(".{target}.")
}

/// Fails, naming the directory, unless a file can be created in `dir`
/// (a probe file, removed at once: permissions, read-only mounts, ACLs and
/// root's override are all taken into account by trying).
pub fn check_writable_dir(dir: &Path) -> Result<()> {
    tempfile::Builder::new()
        .prefix(".register-runner.")
        .suffix(".probe")
        .permissions(fs::Permissions::from_mode(0o600))
        .tempfile_in(dir)
        .map(drop)
        // The kind only: the error names the probe file, not the directory.
        .map_err(|e| std::io::Error::from(e.kind()))
        .with_context(|| {
            format!(
                "cannot write in `{}`: the runner config and `.runner_system_id` are written there",
                dir.display()
            )
        })
}

/// An exclusive lock on `<prefix>/.register-runner.<instance>.lock`, held
/// until dropped. A second run blocks here until the first one ends.
pub struct PrefixLock {
    _file: File,
}

impl PrefixLock {
    /// Also checks, first, that the lock's directory (the prefix) can be
    /// written: the run writes its output there, and finding out after
    /// GitLab made a runner would leave a runner whose token nobody holds.
    pub fn acquire(path: &Path) -> Result<PrefixLock> {
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        check_writable_dir(dir)?;
        // Never through a link: whoever placed one could make root create
        // or open a file anywhere. Created (0600) in the prefix only.
        let file = match OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .custom_flags(NO_FOLLOW)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if is_link_refusal(&e) => bail!(
                "lock file {}: it is never followed, so that no file elsewhere is created or opened \
                 as this user; remove the link (the lock file is created again)",
                link_description(path)
            ),
            Err(e) => {
                return Err(e)
                    .with_context(|| format!("cannot open lock file `{}`", path.display()));
            }
        };
        let meta = file
            .metadata()
            .with_context(|| format!("cannot open lock file `{}`", path.display()))?;
        if !meta.is_file() {
            bail!(
                "lock file `{}` is {}, not a regular file: remove it (it is created again)",
                path.display(),
                file_kind(&meta)
            );
        }
        check_trusted(&path.display().to_string(), &meta)
            .with_context(|| format!("lock file `{}`", path.display()))?;
        if file.try_lock().is_err() {
            tracing::info!(lock = %path.display(), "another run holds the lock; waiting for it");
            file.lock()
                .with_context(|| format!("cannot lock `{}`", path.display()))?;
        }
        Ok(PrefixLock { _file: file })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn atomic_write_sets_mode_and_skips_identical_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.main.toml");
        assert!(write_atomic_if_changed(&path, b"a = 1\n").unwrap());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        let mtime = meta.modified().unwrap();
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(!write_atomic_if_changed(&path, b"a = 1\n").unwrap());
        assert_eq!(fs::metadata(&path).unwrap().modified().unwrap(), mtime);
        assert!(write_atomic_if_changed(&path, b"a = 2\n").unwrap());
        assert_eq!(fs::read(&path).unwrap(), b"a = 2\n");
        // no temp file left behind
        assert_eq!(fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn read_input_refuses_links_binary_and_huge_files() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("real.toml");
        fs::write(&real, "a = 1").unwrap();
        let link = dir.path().join("link.toml");
        symlink(&real, &link).unwrap();
        let err = read_input(&link).unwrap_err().to_string();
        assert!(err.contains("symbolic link"), "{err}");
        let bin = dir.path().join("bin.toml");
        fs::write(&bin, b"a = \xff").unwrap();
        let err = read_input(&bin).unwrap_err().to_string();
        assert!(err.contains("not UTF-8"), "{err}");
        let huge = dir.path().join("huge.toml");
        fs::write(&huge, vec![b'#'; (MAX_INPUT_BYTES + 1) as usize]).unwrap();
        assert!(read_input(&huge).unwrap_err().to_string().contains("bytes"));
        assert!(read_input_opt(&dir.path().join("none")).unwrap().is_none());
    }

    #[test]
    fn an_unchanged_file_with_an_open_mode_is_narrowed_in_place() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.main.toml");
        fs::write(&path, b"a = 1\n").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        assert!(!write_atomic_if_changed(&path, b"a = 1\n").unwrap());
        let meta = fs::metadata(&path).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(meta.ino(), inode, "narrowed in place, not rewritten");
    }

    #[test]
    fn inputs_others_can_write_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.toml");
        fs::write(&path, "a = 1").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o646)).unwrap();
        let err = read_input(&path).unwrap_err().to_string();
        assert!(err.contains("writable by group or others"), "{err}");
        assert!(err.contains("0646"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert_eq!(read_input(&path).unwrap(), "a = 1");
    }

    #[test]
    fn owner_only_check_names_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o755)).unwrap();
        let err = check_owner_only_dir(dir.path()).unwrap_err().to_string();
        assert!(err.contains("0755"), "{err}");
        fs::set_permissions(dir.path(), fs::Permissions::from_mode(0o700)).unwrap();
        check_owner_only_dir(dir.path()).unwrap();
    }
}
