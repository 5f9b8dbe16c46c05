//! The command line, tags options and log streams (SPEC §1, §3).

use std::path::Path;

use gitlab_sim::{ADMIN_PAT, Sim};

use crate::support::*;

#[test]
fn usage_errors_exit_64_and_help_and_version_exit_0() {
    let host = Host::new();
    let bogus = run_command(host.command(&["--no-such-flag"]));
    assert_eq!(bogus.code, 64, "{bogus:?}");
    let bad_timeout = run_command(host.command(&["--timeout", "soon"]));
    assert_eq!(bad_timeout.code, 64, "{bad_timeout:?}");
    // instance names become file names: a path is a usage error
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_register-runner"));
    cmd.args([
        "--prefix",
        host.prefix.to_str().unwrap(),
        "--service-instance",
        "../main",
    ]);
    let bad_instance = run_command(cmd);
    assert_eq!(bad_instance.code, 64, "{bad_instance:?}");
    assert!(
        bad_instance.stderr.contains("`../main`"),
        "{bad_instance:?}"
    );
    let help = run_command(host.command(&["--help"]));
    assert_eq!(help.code, 0, "{help:?}");
    for flag in [
        "--prefix",
        "--service-instance",
        "--dry-run",
        "--tag-schema",
        "--capture-tags",
        "--strict",
    ] {
        assert!(help.stdout.contains(flag), "{flag} missing from --help");
    }
    let version = run_command(host.command(&["--version"]));
    assert_eq!(version.code, 0);
    assert!(
        version.stdout.starts_with("register-runner "),
        "{version:?}"
    );
}

#[test]
fn under_journald_logs_have_no_timestamps_and_json_logs_are_one_object_per_line() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    let mut cmd = host.command(&[]);
    cmd.env("JOURNAL_STREAM", "8:12345");
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stdout.is_empty(),
        "stdout is for the dry-run report only: {run:?}"
    );
    let first = run.stderr.lines().next().expect("some log lines");
    // sd-daemon's priority prefix, no padding (issue 12; more in operator.rs).
    assert!(first.starts_with("<6>INFO "), "{first}");
    assert!(!run.stderr.contains('\u{1b}'), "colour under journald");

    let json = run_command(host.command(&["--log-format", "json", "-v"]));
    assert_eq!(json.code, 0, "{json:?}");
    for line in json.stderr.lines() {
        let value: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        assert!(value["level"].is_string(), "{line}");
    }
    assert_no_secret(&run, &secrets(&sim));
    assert_no_secret(&json, &secrets(&sim));
}

#[test]
fn quiet_run_prints_nothing_and_trace_level_leaks_no_secret() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    let quiet = host.run(&["-q"]);
    assert_eq!(quiet.code, 0, "{quiet:?}");
    assert_eq!(quiet.all_output().trim(), "");
    // RUST_LOG=trace turns on every crate, HTTP libraries included.
    let mut cmd = host.command(&[]);
    cmd.env("RUST_LOG", "trace");
    let trace = run_command(cmd);
    assert_eq!(trace.code, 0, "{trace:?}");
    assert!(trace.stderr.lines().count() > 10, "{trace:?}");
    assert_no_secret(&trace, &secrets(&sim));
}

#[test]
fn secrets_from_credentials_directory() {
    let sim = Sim::start();
    let host = Host::new();
    let creds = host.dir.path().join("credentials");
    std::fs::create_dir(&creds).unwrap();
    std::fs::write(creds.join("gitlab-pat"), format!("  {ADMIN_PAT}\n")).unwrap();
    // systemd's credentials directory holds links at times; the CA bundle is
    // read from there too (one real certificate of the system's bundle).
    let system_bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .expect("the system CA bundle (Debian's ca-certificates)");
    let end = "-----END CERTIFICATE-----\n";
    let first = &system_bundle[system_bundle.find("-----BEGIN CERTIFICATE-----").unwrap()
        ..system_bundle.find(end).unwrap() + end.len()];
    let elsewhere = host.dir.path().join("site-ca.pem");
    std::fs::write(&elsewhere, first).unwrap();
    std::os::unix::fs::symlink(&elsewhere, creds.join("ca.pem")).unwrap();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token_file = \"gitlab-pat\"\ntls_ca_file = \"ca.pem\"\n",
        sim.url()
    ));
    host.shell_executor(&sim.url());
    let mut cmd = host.command(&[]);
    cmd.env("CREDENTIALS_DIRECTORY", &creds);
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(sim.runners().len(), 1);
    let create = sim
        .requests()
        .into_iter()
        .find(|r| r.path == "/api/v4/user/runners")
        .unwrap();
    assert_eq!(create.auth, gitlab_sim::AuthKind::AdminPat);
}

/// This repository's own tag schema, in the shape of the original's example
/// (so the tests pass in a plain clone, without `../shared`).
fn fixture_schema() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tag_schema.json")
}

#[test]
fn original_tag_schema_and_builtin_capture() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    // The original's schema lists no newer microarchitecture (x86_64_v4,
    // zen3, …): its enum gets this machine's, so that the test does not
    // depend on the CPU it runs on.
    let cpu = archspec::cpu::host().expect("archspec knows this CPU");
    let mut schema: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(fixture_schema()).unwrap()).unwrap();
    schema["properties"]["architecture"]["enum"]
        .as_array_mut()
        .unwrap()
        .push(cpu.name().into());
    let schema_path = host.dir.path().join("tag_schema.json");
    std::fs::write(&schema_path, schema.to_string()).unwrap();
    let run = host.run(&[
        "--tag-schema",
        schema_path.to_str().unwrap(),
        "--capture-tags",
        "builtin",
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    for runner in sim.runners() {
        assert!(
            runner.tag_list.iter().any(|t| t == cpu.name()),
            "{runner:#?}"
        );
        // SITE_TAG's value (shell's env_tags) is in no enum of the
        // schema: `custom_site-a`.
        assert_eq!(
            runner.tag_list.iter().any(|t| t == "custom_site-a"),
            runner.description.contains(" shell "),
            "{runner:#?}"
        );
    }
    let schema = fixture_schema();
    let schema = schema.to_str().unwrap();

    // an executor type the schema does not allow stops the run before any request
    host.write_executor(
        "40-k8s.toml",
        &format!("url = \"{}\"\nexecutor = \"kubernetes\"\n", sim.url()),
    );
    sim.clear_requests();
    let run = host.run(&["--tag-schema", schema]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("executor_type") && run.stderr.contains("40-k8s.toml"),
        "{run:?}"
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn capture_tags_program_adds_properties() {
    use std::os::unix::fs::PermissionsExt;
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let script = host.dir.path().join("capture.sh");
    std::fs::write(
        &script,
        "#!/bin/sh\nprintf '{\"scheduler\": \"slurm\", \"GPU\": \"a100-%s\", \"custom\": [\"x\", \"y\"]}' \"$2\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let run = host.run(&[
        "--capture-tags",
        script.to_str().unwrap(),
        "--tag-schema",
        fixture_schema().to_str().unwrap(),
    ]);
    assert_eq!(run.code, 0, "{run:?}");
    let tags = &sim.runners()[0].tag_list;
    for tag in ["slurm", "a100-shell", "x", "y", "managed"] {
        assert!(tags.iter().any(|t| t == tag), "{tag} missing from {tags:?}");
    }
}

/// `--help` and `-h` as an operator reads them (clap: `-h` is the short form).
#[test]
fn help_texts() {
    let host = Host::new();
    let settings = snapshot_settings(&host);
    for (flag, name) in [("--help", "help_long"), ("-h", "help_short")] {
        let run = run_command(host.command(&[flag]));
        assert_eq!(run.code, 0, "{run:?}");
        assert_eq!(run.stderr, "", "{run:?}");
        settings.bind(|| insta::assert_snapshot!(name, run.stdout));
    }
}
