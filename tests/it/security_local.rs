//! Running as root safely, local side (issue 9, items 1-4, 10, 11): files
//! another user owns or can write are refused, links are not followed
//! where a root write or read could be redirected, reads are capped, the
//! output's mode is narrowed, `--capture-tags` programs are bounded in time
//! and output, and a token that cannot be an HTTP header is bad input.
//!
//! Tests that need a second user chown files to `nobody`; they run as root
//! (as CI does) and are skipped, with a printed reason, otherwise.

#![allow(unsafe_code)] // libc: geteuid, kill, mkfifo; see the SAFETY comments

use std::fs;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, Sim};
use rstest::rstest;

use crate::support::*;

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    unsafe { libc::geteuid() == 0 }
}

/// Whether a test that chowns files to another user can run here.
fn can_chown(test: &str) -> bool {
    if !is_root() {
        println!("skipped {test}: it needs root to give files to another user (`nobody`)");
    }
    is_root()
}

/// The uid and gid of `nobody`, from the user database.
fn nobody() -> (u32, u32) {
    let passwd = fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .find_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            if fields.len() > 3 && fields[0] == "nobody" {
                Some((fields[2].parse().ok()?, fields[3].parse().ok()?))
            } else {
                None
            }
        })
        .unwrap_or((65534, 65534))
}

fn give_to_nobody(path: &Path) {
    let (uid, gid) = nobody();
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// Gives a file to nobody's group (`nogroup`), its owner unchanged.
fn give_group_to_nobody(path: &Path) {
    std::os::unix::fs::chown(path, None, Some(nobody().1)).unwrap();
}

fn chmod(path: &Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

fn write_script(host: &Host, name: &str, body: &str) -> String {
    let path = host.dir.path().join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
    chmod(&path, 0o755);
    path.display().to_string()
}

/// A host after a first good run: config, lock file and system id exist.
fn synced_host(sim: &Sim) -> Host {
    let host = Host::fresh(sim, Executors::Shell);
    let first = host.run(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    sim.clear_requests();
    host
}

/// Runs the binary with a deadline (a regression must fail, not hang the
/// suite) and an address-space cap (reading `/dev/zero` must fail, not eat
/// the machine's memory). Returns the run and how long it took.
fn run_bounded(host: &Host, args: &[&str], limit: Duration) -> (Run, Duration) {
    let mut all = vec!["--timeout", "20"];
    all.extend_from_slice(args);
    let mut cmd = host.command(&all);
    // SAFETY: only setrlimit between fork and exec: async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            let cap = libc::rlimit {
                rlim_cur: 4 << 30,
                rlim_max: 4 << 30,
            };
            libc::setrlimit(libc::RLIMIT_AS, &cap);
            Ok(())
        });
    }
    let started = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let waiter = std::thread::spawn(move || child.wait_with_output().unwrap());
    while !waiter.is_finished() && started.elapsed() < limit {
        std::thread::sleep(Duration::from_millis(20));
    }
    if !waiter.is_finished() {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
    let output = waiter.join().unwrap();
    let elapsed = started.elapsed();
    let run = Run {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(elapsed < limit, "still running after {limit:?}: {run:?}");
    (run, elapsed)
}

/// The ERROR line of a failed run, for the messages shown with --nocapture.
fn error_line(run: &Run) -> &str {
    run.stderr
        .lines()
        .find(|l| l.contains("ERROR"))
        .unwrap_or("(no error)")
}

/// A refused input: exit 1, the message holds every `expect`, nothing sent
/// to GitLab, the config untouched.
fn assert_refused(host: &Host, sim: &Sim, run: &Run, expect: &[&str], config_before: &[u8]) {
    println!("{}", error_line(run));
    assert_eq!(run.code, 1, "{run:?}");
    for want in expect {
        assert!(run.stderr.contains(want), "stderr lacks `{want}`: {run:?}");
    }
    assert_eq!(run.stderr.matches("ERROR").count(), 1, "{run:?}");
    assert!(sim.requests().is_empty(), "sent: {:?}", sim.requests());
    assert_eq!(fs::read(host.config_path()).unwrap(), config_before);
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert_no_secret(run, &secrets(sim));
}

// ---- item 1: ownership, not only mode

type Break = fn(&Host, &Sim) -> PathBuf;

/// A file or directory made untrusted, and what the refusal must say.
struct Refusal {
    name: &'static str,
    /// Breaks a synced host; returns the path the message must name.
    break_it: Break,
    expect: &'static [&'static str],
}

fn refusal(name: &'static str, break_it: Break, expect: &'static [&'static str]) -> Refusal {
    Refusal {
        name,
        break_it,
        expect,
    }
}

/// Every input of a run given to another user (modes left valid), or made
/// writable by group: each is refused naming the path, owner, mode and fix.
#[rstest]
#[case::prefix_owned_by_nobody_mode_0700(refusal(
    "prefix owned by nobody, mode 0700",
    |h, _| {
        give_to_nobody(&h.prefix);
        h.prefix.clone()
    },
    &["owned by nobody", "mode 0700", "chown root"],
))]
#[case::instance_directory_owned_by_nobody_mode_0700(refusal(
    "instance directory owned by nobody, mode 0700",
    |h, _| {
        give_to_nobody(&h.executor_dir());
        h.executor_dir()
    },
    &["owned by nobody", "mode 0700", "chown root"],
))]
#[case::template_owned_by_nobody_naming_a_root_only_file_as_its_token(refusal(
    // The probe of the issue: the template's owner points a
    // registration token file at a root-only file.
    "template owned by nobody, naming a root-only file as its token",
    |h, s| {
        let secret = h.dir.path().join("root-only-secret");
        fs::write(&secret, "GR1348941rootonlysecret").unwrap();
        chmod(&secret, 0o600);
        h.write_template(&format!(
            "[[client_configs]]\nurl = \"{}\"\nregistration_token_file = \"{}\"\n",
            s.url(),
            secret.display()
        ));
        give_to_nobody(&h.template_path());
        h.template_path()
    },
    &["owned by nobody", "mode 0644", "chown root"],
))]
#[case::executor_file_owned_by_nobody(refusal(
    "executor file owned by nobody",
    |h, _| {
        let file = h.executor_dir().join("shell.toml");
        give_to_nobody(&file);
        file
    },
    &["owned by nobody", "mode 0644", "chown root"],
))]
#[case::executor_file_writable_by_group(refusal(
    "executor file writable by group",
    |h, _| {
        let file = h.executor_dir().join("shell.toml");
        give_group_to_nobody(&file);
        chmod(&file, 0o664);
        file
    },
    &["writable by group or others", "mode 0664", "chmod go-w"],
))]
#[case::template_writable_by_others(refusal(
    "template writable by others",
    |h, _| {
        chmod(&h.template_path(), 0o646);
        h.template_path()
    },
    &["writable by group or others", "mode 0646", "chmod go-w"],
))]
#[case::pat_file_through_a_link_owned_by_nobody(refusal(
    "PAT file (through a link) owned by nobody",
    |h, s| {
        let target = h.dir.path().join("pat-of-nobody");
        fs::write(&target, ADMIN_PAT).unwrap();
        chmod(&target, 0o600);
        give_to_nobody(&target);
        symlink(&target, h.prefix.join("gitlab-pat")).unwrap();
        h.write_template(&format!(
            "[[client_configs]]\nurl = \"{}\"\npersonal_access_token_file = \"gitlab-pat\"\n",
            s.url()
        ));
        target
    },
    &[
        "personal_access_token_file",
        "owned by nobody",
        "mode 0600",
        "chown root",
    ],
))]
#[case::pat_file_writable_by_group(refusal(
    "PAT file writable by group",
    |h, s| {
        let file = h.prefix.join("gitlab-pat");
        fs::write(&file, ADMIN_PAT).unwrap();
        give_group_to_nobody(&file);
        chmod(&file, 0o620);
        h.write_template(&format!(
            "[[client_configs]]\nurl = \"{}\"\npersonal_access_token_file = \"gitlab-pat\"\n",
            s.url()
        ));
        file
    },
    &[
        "personal_access_token_file",
        "writable by group or others",
        "mode 0620",
    ],
))]
#[case::tls_ca_file_owned_by_nobody(refusal(
    "tls_ca_file owned by nobody",
    |h, s| {
        let file = h.dir.path().join("ca.pem");
        fs::write(&file, "-----BEGIN CERTIFICATE-----\n").unwrap();
        give_to_nobody(&file);
        h.write_template(&format!(
            "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"{}\"\n",
            s.url(),
            file.display()
        ));
        file
    },
    &["tls_ca_file", "owned by nobody", "chown root"],
))]
fn inputs_owned_or_writable_by_another_user_are_refused(#[case] refusal: Refusal) {
    let Refusal {
        name,
        break_it,
        expect,
    } = refusal;
    if !can_chown("inputs_owned_or_writable_by_another_user_are_refused") {
        return;
    }
    println!("--- {name}");
    let sim = Sim::start();
    let host = synced_host(&sim);
    let config_before = fs::read(host.config_path()).unwrap();
    let path = break_it(&host, &sim);
    let run = host.run(&[]);
    let shown = path.display().to_string();
    let mut want = vec![shown.as_str()];
    want.extend_from_slice(expect);
    assert_refused(&host, &sim, &run, &want, &config_before);
    // --dry-run and `register-runner` read the same inputs.
    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 1, "{name}: {dry:?}");
    assert!(dry.stderr.contains(&shown), "{name}: {dry:?}");
}

/// Group write is harmless when the group is the owner's private group
/// (Debian's OpenSSH accepts it too; a umask of 002 makes such files):
/// root's files in group `root`, which has no other member, are read.
#[test]
fn group_write_in_the_owners_private_group_is_accepted() {
    if !can_chown("group_write_in_the_owners_private_group_is_accepted") {
        return;
    }
    let group = fs::read_to_string("/etc/group").unwrap_or_default();
    if !group.lines().any(|l| l == "root:x:0:") {
        println!("skipped: group `root` has members here");
        return;
    }
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    chmod(&host.template_path(), 0o664);
    chmod(&host.executor_dir().join("shell.toml"), 0o664);
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.runners().len(), 1);
}

/// A secret file that others may read is used, with a warning that names
/// it and the fix (refusing it would keep the runners from starting).
#[test]
fn a_secret_file_others_can_read_is_used_with_a_warning() {
    let sim = Sim::start();
    let host = Host::new();
    let file = host.prefix.join("gitlab-pat");
    fs::write(&file, format!("{ADMIN_PAT}\n")).unwrap();
    chmod(&file, 0o644);
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token_file = \"gitlab-pat\"\n",
        sim.url()
    ));
    host.shell_executor(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "`{}` holds a secret and others can read it (mode 0644): chmod o-r",
            file.display()
        )),
        "{run:?}"
    );
    assert_eq!(sim.runners().len(), 1);
    assert_no_secret(&run, &secrets(&sim));
}

// ---- item 2: the lock file

/// A link where the lock file goes is refused; what it points at is not
/// created, opened for writing or changed.
#[test]
fn a_link_in_place_of_the_lock_file_is_not_followed() {
    let sim = Sim::start();
    let host = synced_host(&sim);
    let config_before = fs::read(host.config_path()).unwrap();
    let lock = host.prefix.join(".register-runner.main.lock");
    fs::remove_file(&lock).unwrap();

    // To a file that does not exist: root must not create it.
    let nowhere = host.dir.path().join("etc-nologin");
    symlink(&nowhere, &lock).unwrap();
    let run = host.run(&[]);
    let shown = lock.display().to_string();
    assert_refused(
        &host,
        &sim,
        &run,
        &[&shown, "symbolic link", "etc-nologin", "remove the link"],
        &config_before,
    );
    assert!(!nowhere.exists(), "the link's target was created");
    assert!(
        fs::symlink_metadata(&lock)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    // To an existing file: its bytes, mode and mtime stay.
    fs::remove_file(&lock).unwrap();
    let existing = host.dir.path().join("precious");
    fs::write(&existing, "keep me\n").unwrap();
    chmod(&existing, 0o640);
    let mtime = fs::metadata(&existing).unwrap().modified().unwrap();
    symlink(&existing, &lock).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    let run = host.run(&[]);
    assert_refused(
        &host,
        &sim,
        &run,
        &[&shown, "symbolic link", "precious"],
        &config_before,
    );
    assert_eq!(fs::read(&existing).unwrap(), b"keep me\n");
    assert_eq!(Host::mode(&existing), 0o640);
    assert_eq!(fs::metadata(&existing).unwrap().modified().unwrap(), mtime);
}

// ---- item 3: .runner_system_id

/// `.runner_system_id` as a link to `/dev/zero`, a FIFO, or a link to a
/// FIFO: refused at once (no hang, no memory eaten), left in place,
/// nothing sent.
#[test]
fn a_runner_system_id_that_is_not_a_regular_file_is_refused_at_once() {
    let cases: &[(&str, Setup, &str)] = &[
        (
            "link to /dev/zero",
            |h| symlink("/dev/zero", h.system_id_path()).unwrap(),
            "symbolic link (to `/dev/zero`)",
        ),
        ("a FIFO", |h| mkfifo(&h.system_id_path()), "is a FIFO"),
        (
            "link to a FIFO",
            |h| {
                let fifo = h.dir.path().join("fifo");
                mkfifo(&fifo);
                symlink(&fifo, h.system_id_path()).unwrap();
            },
            "symbolic link",
        ),
    ];
    for (name, setup, expect) in cases {
        println!("--- {name}");
        let sim = Sim::start();
        let host = synced_host(&sim);
        let config_before = fs::read(host.config_path()).unwrap();
        fs::remove_file(host.system_id_path()).unwrap();
        setup(&host);
        for args in [&[][..], &["--dry-run"][..]] {
            let (run, elapsed) = run_bounded(&host, args, Duration::from_secs(15));
            assert!(elapsed < Duration::from_secs(5), "{name}: took {elapsed:?}");
            assert_refused(
                &host,
                &sim,
                &run,
                &[".runner_system_id", expect, "remove it"],
                &config_before,
            );
        }
        let kind = fs::symlink_metadata(host.system_id_path()).unwrap();
        assert!(!kind.is_file(), "{name}: it was replaced");
    }
}

/// Puts something in place of a file.
type Setup = fn(&Host);

fn mkfifo(path: &Path) {
    let c = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    // SAFETY: `c` is a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
}

// ---- item 4: the output's mode and owner

/// An output group and others can read is narrowed to 0600 even when its
/// bytes stay (mtime kept: gitlab-runner reloads on it), with a warning;
/// a dry-run only says so.
#[test]
fn an_output_with_mode_0644_is_narrowed_to_0600() {
    let sim = Sim::start();
    let host = synced_host(&sim);
    let path = host.config_path();
    chmod(&path, 0o644);
    let bytes = fs::read(&path).unwrap();
    let mtime = host.config_mtime();

    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 0, "{dry:?}");
    assert!(dry.stderr.contains("has mode 0644"), "{dry:?}");
    assert!(dry.stderr.contains("--dry-run: not changed"), "{dry:?}");
    assert_eq!(Host::mode(&path), 0o644);

    std::thread::sleep(Duration::from_millis(20));
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "`{}` had mode 0644: group or others could read the runner tokens in it; set it to 0600",
            path.display()
        )),
        "{run:?}"
    );
    assert_eq!(Host::mode(&path), 0o600);
    assert_eq!(fs::read(&path).unwrap(), bytes);
    assert_eq!(host.config_mtime(), mtime, "rewritten instead of chmod");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());

    // Once narrowed, no more warning.
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(!again.stderr.contains("mode 0644"), "{again:?}");
}

/// The output is the token store and its ids drive deletions: one owned
/// by another user is refused like any input, and left as it is.
#[test]
fn an_output_owned_by_another_user_is_refused() {
    if !can_chown("an_output_owned_by_another_user_is_refused") {
        return;
    }
    let sim = Sim::start();
    let host = synced_host(&sim);
    let path = host.config_path();
    let config_before = fs::read(&path).unwrap();
    give_to_nobody(&path);
    let shown = path.display().to_string();
    for args in [&[][..], &["--dry-run"][..]] {
        let run = host.run(args);
        assert_refused(
            &host,
            &sim,
            &run,
            &[&shown, "owned by nobody", "mode 0600", "chown root"],
            &config_before,
        );
    }
    assert_eq!(fs::metadata(&path).unwrap().uid(), nobody().0);
}

// ---- item 10: --capture-tags programs

/// The pid a capture script wrote, and whether that process still runs
/// (a zombie waiting for its reaper counts as ended).
fn still_running(pid_file: &Path) -> bool {
    let pid = fs::read_to_string(pid_file).unwrap();
    let stat = fs::read_to_string(format!("/proc/{}/stat", pid.trim())).unwrap_or_default();
    // `pid (comm) S ...`: the state follows the last `)`.
    let state = stat.rsplit(')').next().unwrap_or("").trim_start();
    !stat.is_empty() && !state.starts_with('Z') && !state.starts_with('X')
}

/// A program that prints its JSON and exits, leaving a background child
/// that holds its stdout: the 10 s limit covers reading the output, so the
/// run ends after about 10 s with a clear message, and the child is
/// killed with the program's process group.
#[test]
fn capture_tags_output_held_open_by_a_background_child() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let pid_file = host.dir.path().join("bg.pid");
    let script = write_script(
        &host,
        "capture.sh",
        &format!(
            "sleep 30 &\necho $! > {}\necho '{{\"site\": \"x\"}}'",
            pid_file.display()
        ),
    );
    let (run, elapsed) = run_bounded(&host, &["--capture-tags", &script], Duration::from_secs(25));
    println!("{} after {elapsed:?}", error_line(&run));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        elapsed >= Duration::from_secs(9) && elapsed < Duration::from_secs(15),
        "{elapsed:?}"
    );
    for want in [
        "--capture-tags",
        "capture.sh",
        "its output did not end within 10s",
        "killed its process group",
    ] {
        assert!(run.stderr.contains(want), "lacks `{want}`: {run:?}");
    }
    assert!(sim.requests().is_empty());
    assert!(!host.config_path().exists());
    assert!(
        eventually(|| !still_running(&pid_file)),
        "the background child outlived the run"
    );
}

/// A program that never ends, with a background child that does not hold
/// its output: on the timeout the whole process group is killed, not only
/// the program.
#[test]
fn capture_tags_timeout_kills_the_process_group() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let pid_file = host.dir.path().join("bg.pid");
    let script = write_script(
        &host,
        "capture.sh",
        &format!(
            "sleep 60 >/dev/null 2>&1 &\necho $! > {}\nexec sleep 60 >/dev/null",
            pid_file.display()
        ),
    );
    let (run, elapsed) = run_bounded(&host, &["--capture-tags", &script], Duration::from_secs(25));
    println!("{} after {elapsed:?}", error_line(&run));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(elapsed < Duration::from_secs(15), "{elapsed:?}");
    assert!(run.stderr.contains("did not finish within 10s"), "{run:?}");
    assert!(sim.requests().is_empty());
    assert!(
        eventually(|| !still_running(&pid_file)),
        "the background child survived the timeout"
    );
}

/// Values that are not strings or arrays of strings, a huge output, and a
/// change to hostname, instance or executor_type are refused naming the
/// program and the key; repeating the tool's own value is fine.
#[test]
fn capture_tags_values_and_protected_keys() {
    let refused: &[(&str, &[&str])] = &[
        ("echo '{\"gpus\": 4}'", &["key `gpus`", "a number (4)"]),
        (
            "echo '{\"site\": {\"a\": \"b\"}}'",
            &["key `site`", "an object"],
        ),
        (
            "echo '{\"site\": [\"a\", 1]}'",
            &["key `site`", "other than strings"],
        ),
        ("echo '{\"site\": null}'", &["key `site`", "null"]),
        (
            "echo '{\"hostname\": \"evil-host\"}'",
            &["key `hostname`", "evil-host", "may not change"],
        ),
        (
            "echo '{\"instance\": \"other\"}'",
            &["key `instance`", "may not change"],
        ),
        (
            "echo '{\"executor_type\": \"docker\"}'",
            &["key `executor_type`", "may not change"],
        ),
        (
            "head -c 200000 /dev/zero | tr '\\000' ' '\necho '{}'",
            &["printed more than 65536 bytes"],
        ),
    ];
    for (body, expect) in refused {
        let sim = Sim::start();
        let host = Host::fresh(&sim, Executors::Shell);
        let script = write_script(&host, "capture.sh", body);
        let run = host.run(&["--capture-tags", &script]);
        println!("{}", error_line(&run));
        assert_eq!(run.code, 1, "{body}: {run:?}");
        for want in expect.iter().chain(&["--capture-tags", "capture.sh"]) {
            assert!(run.stderr.contains(want), "{body}: lacks `{want}`: {run:?}");
        }
        assert!(sim.requests().is_empty(), "{body}");
        assert!(!host.config_path().exists(), "{body}");
    }
    // The tool's own values may be repeated.
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let script = write_script(
        &host,
        "capture.sh",
        &format!(
            "printf '{{\"hostname\": \"{HOSTNAME}\", \"instance\": \"%s\", \"executor_type\": \"%s\", \"site\": [\"lc\"]}}' \"$1\" \"$2\""
        ),
    );
    let run = host.run(&["--capture-tags", &script]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(sim.runners()[0].tag_list.iter().any(|t| t == "lc"));
}

/// A capture program runs as root: one another user owns, or group or
/// others can write, is not run.
#[test]
fn capture_tags_program_another_user_can_replace_is_not_run() {
    if !can_chown("capture_tags_program_another_user_can_replace_is_not_run") {
        return;
    }
    for (chown, mode, expect) in [
        (true, 0o755, "owned by nobody"),
        (false, 0o775, "writable by group or others"),
    ] {
        let sim = Sim::start();
        let host = Host::fresh(&sim, Executors::Shell);
        let ran = host.dir.path().join("ran");
        let script = write_script(
            &host,
            "capture.sh",
            &format!("touch {}\necho '{{}}'", ran.display()),
        );
        if chown {
            give_to_nobody(Path::new(&script));
        } else {
            give_group_to_nobody(Path::new(&script));
        }
        chmod(Path::new(&script), mode);
        let run = host.run(&["--capture-tags", &script]);
        println!("{}", error_line(&run));
        assert_eq!(run.code, 1, "{run:?}");
        for want in ["--capture-tags", script.as_str(), expect] {
            assert!(run.stderr.contains(want), "lacks `{want}`: {run:?}");
        }
        assert!(!ran.exists(), "the program ran");
        assert!(sim.requests().is_empty());
    }
}

// ---- item 11: a token that cannot be an HTTP header

/// A PAT or registration token with a second line or a control character
/// is bad input at load time, naming the file and key: nothing is sent.
#[test]
fn a_token_that_cannot_be_an_http_header_is_bad_input() {
    let cases: &[(&str, &str, &str, &[&str])] = &[
        (
            "PAT file with a second line",
            "personal_access_token_file = \"gitlab-pat\"\n",
            "glpat-simadmin-0123456789\nsecond line\n",
            &["`personal_access_token_file`", "gitlab-pat", "a line break"],
        ),
        (
            "registration token file with a second line",
            "registration_token_file = \"reg-token\"\n",
            "GR1348941simregtoken0123456789\r\nmore\n",
            &["`registration_token_file`", "reg-token", "a line break"],
        ),
        (
            "PAT with a control character",
            "personal_access_token = \"glpat-simadmin-\\u0007123\"\n",
            "",
            &[
                "`personal_access_token`",
                "line 3",
                "control character (U+0007)",
            ],
        ),
        (
            "PAT file with a space inside",
            "personal_access_token_file = \"gitlab-pat\"\n",
            "glpat-simadmin 0123456789\n",
            &["`personal_access_token_file`", "gitlab-pat", "a space"],
        ),
    ];
    for (name, client, file_text, expect) in cases {
        let sim = Sim::start();
        let host = Host::new();
        if !file_text.is_empty() {
            let file = if client.contains("reg-token") {
                "reg-token"
            } else {
                "gitlab-pat"
            };
            fs::write(host.prefix.join(file), file_text).unwrap();
            chmod(&host.prefix.join(file), 0o600);
        }
        host.write_template(&format!(
            "[[client_configs]]\nurl = \"{}\"\n{client}",
            sim.url()
        ));
        host.shell_executor(&sim.url());
        let run = host.run(&[]);
        println!("{}", error_line(&run));
        assert_eq!(run.code, 1, "{name}: {run:?}");
        for want in expect
            .iter()
            .chain(&["config.template.main.toml", "HTTP header"])
        {
            assert!(run.stderr.contains(want), "{name}: lacks `{want}`: {run:?}");
        }
        assert!(sim.requests().is_empty(), "{name}: {:?}", sim.requests());
        assert!(!host.config_path().exists(), "{name}");
        assert!(!host.system_id_path().exists(), "{name}");
        assert_no_secret(&run, &secrets(&sim));
    }
}
