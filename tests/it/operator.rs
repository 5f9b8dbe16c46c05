//! What an operator sees (issue 12): logs journald understands, the
//! per-request lines of `-v`, structured fields in JSON logs.

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};
use serde_json::Value;

use crate::support::*;

/// A run of the binary with `JOURNAL_STREAM` set, as under systemd.
fn run_under_journald(host: &Host, args: &[&str]) -> Run {
    let mut all = vec!["--timeout", "20"];
    all.extend_from_slice(args);
    let mut cmd = host.command(&all);
    cmd.env("JOURNAL_STREAM", "8:123456");
    run_command(cmd)
}

/// Every line of stderr opens with `<N>LEVEL ` where N is the sd-daemon
/// priority of LEVEL; returns (priority, rest of line) per line.
fn journald_lines(run: &Run) -> Vec<(u8, String)> {
    run.stderr
        .lines()
        .map(|line| {
            let (priority, rest) = line
                .strip_prefix('<')
                .and_then(|l| l.split_once('>'))
                .unwrap_or_else(|| panic!("no <N> priority prefix: {line:?}\n{run:?}"));
            let priority: u8 = priority.parse().expect("a number");
            let level = match priority {
                3 => "ERROR ",
                4 => "WARN ",
                6 => "INFO ",
                7 => "DEBUG ",
                other => panic!("unexpected priority {other}: {line:?}"),
            };
            assert!(
                rest.starts_with(level) && !rest[level.len()..].starts_with(' '),
                "priority <{priority}> without `{level}` or with padding: {line:?}"
            );
            (priority, rest[level.len()..].to_string())
        })
        .collect()
}

#[test]
fn under_journald_every_line_carries_its_priority_and_v_logs_each_request() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.three_executors(&sim.url());

    let run = run_under_journald(&host, &["-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines = journald_lines(&run);
    // The summary line, in the form the issue gives.
    let summary = lines
        .iter()
        .find(|(p, l)| *p == 6 && l.starts_with("runners in sync: "))
        .unwrap_or_else(|| panic!("no summary line:\n{run:?}"));
    assert!(
        summary.1.contains(
            "created=3 updated=0 rotated=0 deleted=0 kept=0 held=0 failed=0 warnings=0, elapsed "
        ),
        "{summary:?}"
    );
    // `-v`: one debug line per request GitLab saw, with method, path,
    // status and time.
    let requests = sim.requests();
    let request_lines: Vec<&String> = lines
        .iter()
        .filter(|(p, l)| *p == 7 && l.starts_with("request gitlab="))
        .map(|(_, l)| l)
        .collect();
    assert_eq!(request_lines.len(), requests.len(), "{run:?}");
    let line = |method: &str, path: &str, status: u16| {
        format!(
            "request gitlab={} method={method} path={path} status={status} ms=",
            sim.url()
        )
    };
    let creates = request_lines
        .iter()
        .filter(|l| l.starts_with(&line("POST", "/user/runners", 201)))
        .count();
    assert_eq!(creates, 3, "{request_lines:#?}");
    assert!(
        request_lines
            .iter()
            .any(|l| l.starts_with(&line("GET", "/runners/all", 200))),
        "{request_lines:#?}"
    );
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn under_journald_errors_are_priority_3_and_warnings_4() {
    let (sim, host) = host_whose_creates_fail();
    let run = run_under_journald(&host, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines = journald_lines(&run);
    let errors: Vec<&String> = lines
        .iter()
        .filter(|(p, _)| *p == 3)
        .map(|(_, l)| l)
        .collect();
    // The step's own error line, then the final error.
    assert!(
        errors
            .iter()
            .any(|l| l.starts_with("cannot create runner: ")
                && l.contains("Registration tokens are disabled")
                && l.contains("runner=ci-node01 main shell Runner")),
        "{run:?}"
    );
    assert!(
        errors
            .last()
            .is_some_and(|l| l.starts_with("1 step(s) failed")),
        "{run:?}"
    );
    assert!(
        lines
            .iter()
            .any(|(p, l)| *p == 6 && l.starts_with("run failed: ")),
        "{run:?}"
    );
    assert_no_secret(&run, &secrets(&sim));
}

fn json_lines(run: &Run) -> Vec<Value> {
    run.stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}\n{run:?}")))
        .collect()
}

fn field<'a>(line: &'a Value, name: &str) -> Option<&'a Value> {
    line.get("fields").and_then(|f| f.get(name))
}

#[test]
fn json_logs_carry_runner_gitlab_and_id_as_fields_errors_included() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.shell_executor(&sim.url());
    let run = host.run(&["--log-format", "json", "-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    let lines = json_lines(&run);
    let id = sim.runners()[0].id;
    let created = lines
        .iter()
        .find(|l| field(l, "message").and_then(Value::as_str) == Some("created runner"))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert_eq!(
        field(created, "runner").unwrap(),
        "ci-node01 main shell Runner"
    );
    assert_eq!(field(created, "gitlab").unwrap(), &Value::from(sim.url()));
    assert_eq!(field(created, "id").unwrap(), &Value::from(id));
    // A request line has its parts as fields too.
    assert!(
        lines.iter().any(
            |l| field(l, "method").and_then(Value::as_str) == Some("POST")
                && field(l, "path").and_then(Value::as_str) == Some("/user/runners")
                && field(l, "status").and_then(Value::as_u64) == Some(201)
                && field(l, "ms").is_some_and(Value::is_u64)
                && field(l, "gitlab") == Some(&Value::from(sim.url()))
        ),
        "{run:?}"
    );

    // An error: GitLab refuses the delete of the runner whose executor
    // file went away.
    host.remove_executor("shell.toml");
    for pattern in ["/api/v4/runners/*", "/api/v4/runners"] {
        sim.set_hostile(
            "DELETE",
            pattern,
            gitlab_sim::HostileAnswer::json(400, r#"{"message":"400 Bad request"}"#),
        );
    }
    let run = host.run(&["--log-format", "json", "--allow-empty"]);
    assert_eq!(run.code, 1, "{run:?}");
    let lines = json_lines(&run);
    let error = lines
        .iter()
        .find(|l| {
            l["level"] == "ERROR"
                && field(l, "message")
                    .and_then(Value::as_str)
                    .is_some_and(|m| m.starts_with("cannot delete runner"))
        })
        .unwrap_or_else(|| panic!("{run:?}"));
    assert_eq!(
        field(error, "runner").unwrap(),
        "ci-node01 main shell Runner"
    );
    assert_eq!(field(error, "gitlab").unwrap(), &Value::from(sim.url()));
    assert_eq!(field(error, "id").unwrap(), &Value::from(id));
    // The final error is JSON too.
    let last = lines.last().unwrap();
    assert_eq!(last["level"], "ERROR", "{run:?}");
    assert_no_secret(&run, &secrets(&sim));
}

/// The metrics file, parsed by a real Prometheus text-format parser:
/// (metric, labels, value) per sample; also checks every sample is a gauge.
fn scrape(path: &std::path::Path) -> Vec<(String, std::collections::HashMap<String, String>, f64)> {
    let text = std::fs::read_to_string(path).unwrap();
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_string())))
        .unwrap_or_else(|e| panic!("{e}\n{text}"));
    scrape
        .samples
        .into_iter()
        .map(|s| {
            let value = match s.value {
                prometheus_parse::Value::Gauge(v) => v,
                other => panic!("{} is not a gauge: {other:?}\n{text}", s.metric),
            };
            (s.metric, (*s.labels).clone(), value)
        })
        .collect()
}

fn one(
    samples: &[(String, std::collections::HashMap<String, String>, f64)],
    metric: &str,
    labels: &[(&str, &str)],
) -> f64 {
    let found: Vec<f64> = samples
        .iter()
        .filter(|(m, l, _)| {
            m == metric
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| *v)
        .collect();
    assert_eq!(found.len(), 1, "{metric} {labels:?} in {samples:#?}");
    found[0]
}

#[test]
fn metrics_file_after_a_sync_and_after_a_failed_run() {
    let sim = Sim::start_with(SimOptions {
        token_lifetime: Some(std::time::Duration::from_secs(7 * 24 * 3600)),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.three_executors(&sim.url());
    let metrics = host.dir.path().join("register-runner.prom");
    let metrics_arg = metrics.to_str().unwrap();

    let before = time::OffsetDateTime::now_utc().unix_timestamp();
    let run = host.run(&["--metrics-file", metrics_arg]);
    assert_eq!(run.code, 0, "{run:?}");
    let after = time::OffsetDateTime::now_utc().unix_timestamp();
    assert_eq!(Host::mode(&metrics), 0o644);
    let samples = scrape(&metrics);
    let main = ("service_instance", "main");
    let at = one(
        &samples,
        "register_runner_last_run_timestamp_seconds",
        &[main],
    );
    assert!(
        (before as f64..=after as f64).contains(&at),
        "{at} not in {before}..{after}"
    );
    assert_eq!(
        one(&samples, "register_runner_last_run_success", &[main]),
        1.0
    );
    let took = one(
        &samples,
        "register_runner_last_run_duration_seconds",
        &[main],
    );
    assert!(took > 0.0 && took < (after - before + 1) as f64, "{took}");
    for (state, n) in [
        ("created", 3.0),
        ("kept", 0.0),
        ("deleted", 0.0),
        ("failed", 0.0),
    ] {
        assert_eq!(
            one(
                &samples,
                "register_runner_last_run_runners",
                &[main, ("state", state)]
            ),
            n,
            "{state}"
        );
    }
    // Requests by status: what the simulator saw.
    let requests = sim.requests();
    let url = sim.url();
    for status in [200u16, 201] {
        let seen = requests.iter().filter(|r| r.status == status).count();
        assert!(seen > 0);
        assert_eq!(
            one(
                &samples,
                "register_runner_last_run_requests",
                &[
                    main,
                    ("gitlab", url.as_str()),
                    ("status", &status.to_string())
                ]
            ),
            seen as f64,
            "{status}"
        );
    }
    // Each held token's expiry, as GitLab gave it.
    let runners = sim.runners();
    let expiries: Vec<_> = samples
        .iter()
        .filter(|(m, _, _)| m == "register_runner_token_expires_at_timestamp_seconds")
        .collect();
    assert_eq!(expiries.len(), 3, "{samples:#?}");
    for r in &runners {
        let expected = time::OffsetDateTime::parse(
            r.token_expires_at.as_deref().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
        .unix_timestamp();
        let id = r.id.to_string();
        assert_eq!(
            one(
                &samples,
                "register_runner_token_expires_at_timestamp_seconds",
                &[
                    main,
                    ("runner", r.description.as_str()),
                    ("id", id.as_str())
                ]
            ),
            expected as f64
        );
    }
    assert_no_secret(
        &Run {
            code: 0,
            stdout: std::fs::read_to_string(&metrics).unwrap(),
            stderr: String::new(),
        },
        &secrets(&sim),
    );

    // A failed run (after load) rewrites it: success 0, the tokens still
    // held still listed.
    sim.set_hostile(
        "POST",
        "/api/v4/user/runners",
        gitlab_sim::HostileAnswer::json(400, r#"{"message":"400 Bad request"}"#),
    );
    host.write_executor(
        "40-extra.toml",
        &format!("url = \"{url}\"\nexecutor = \"shell\"\nname = \"extra\"\n"),
    );
    let run = host.run(&["--metrics-file", metrics_arg]);
    assert_eq!(run.code, 1, "{run:?}");
    let samples = scrape(&metrics);
    assert_eq!(
        one(&samples, "register_runner_last_run_success", &[main]),
        0.0
    );
    assert!(
        one(
            &samples,
            "register_runner_last_run_requests",
            &[main, ("gitlab", url.as_str()), ("status", "400")]
        ) >= 1.0
    );
    let expiries = samples
        .iter()
        .filter(|(m, _, _)| m == "register_runner_token_expires_at_timestamp_seconds")
        .count();
    assert_eq!(expiries, 3, "{samples:#?}");
}

#[test]
fn a_token_that_never_expires_has_no_expiry_series_and_a_dry_run_writes_no_metrics() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.shell_executor(&sim.url());
    let metrics = host.dir.path().join("rr.prom");
    let metrics_arg = metrics.to_str().unwrap();
    let run = host.run(&["--dry-run", "--metrics-file", metrics_arg]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(!metrics.exists());
    let run = host.run(&["--metrics-file", metrics_arg]);
    assert_eq!(run.code, 0, "{run:?}");
    let samples = scrape(&metrics);
    assert_eq!(
        one(
            &samples,
            "register_runner_last_run_runners",
            &[("state", "created")]
        ),
        1.0
    );
    assert!(
        !samples
            .iter()
            .any(|(m, _, _)| m == "register_runner_token_expires_at_timestamp_seconds"),
        "{samples:#?}"
    );
}

/// A typo in an executor file that must be refused: exit 1, the file,
/// line and key named with "did you mean", nothing sent, nothing written.
fn assert_refused(extra: &str, key: &str, meant: &str) {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.write_executor(
        "shell.toml",
        &format!("url = \"{}\"\nexecutor = \"shell\"\n{extra}\n", sim.url()),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{extra}: {run:?}");
    let file = host.executor_dir().join("shell.toml");
    let expected = format!("`{}` line 3, column", file.display());
    assert!(run.stderr.contains(&expected), "{extra}: {run:?}");
    assert!(
        run.stderr.contains(&format!(
            "key `{key}`: unknown key: did you mean `{meant}`?"
        )),
        "{extra}: {run:?}"
    );
    assert!(
        sim.requests().is_empty(),
        "{extra}: sent {:?}",
        sim.requests()
    );
    assert!(!host.config_path().exists());
}

#[test]
fn near_misses_of_keys_register_runner_reads_are_refused() {
    assert_refused("tag = [\"gpu\"]", "tag", "tags");
    assert_refused("env_tag = [\"SITE_TAG\"]", "env_tag", "env_tags");
    assert_refused("run_untaged = true", "run_untaged", "run_untagged");
    assert_refused("tag_list = [\"gpu\"]", "tag_list", "tags");
}

#[test]
fn a_near_miss_executor_name_is_refused_an_unknown_one_is_a_warning() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.write_executor(
        "shell.toml",
        &format!("url = \"{}\"\nexecutor = \"shel\"\n", sim.url()),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains("key `executor`: unknown executor `shel`: did you mean `shell`?"),
        "{run:?}"
    );
    assert!(sim.requests().is_empty());

    // LLNL's `batch` executor is no near miss: a warning, and the run goes on.
    host.write_executor(
        "shell.toml",
        &format!("url = \"{}\"\nexecutor = \"batch\"\n", sim.url()),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        run.stderr.lines().any(|l| l.contains(" WARN ")
            && l.contains("key `executor`: executor `batch` is not one gitlab-runner")),
        "{run:?}"
    );
    assert!(host.config().contains("executor = \"batch\""));
}

#[test]
fn other_unknown_keys_are_warnings_with_a_suggestion_and_pass_through() {
    let sim = Sim::start();
    let host = Host::new();
    host.write_template(&format!(
        "concurent = 4\n\n[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n",
        sim.url()
    ));
    host.write_executor(
        "docker.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"docker\"\nbuild_dir = \"/b\"\nsite_knob = 1\n\n[docker]\nimag = \"alpine\"\n",
            sim.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let warnings: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains(" WARN "))
        .collect();
    let template = host.template_path();
    let docker = host.executor_dir().join("docker.toml");
    for (file, line, key, hint) in [
        (&template, 1, "concurent", Some("concurrent")),
        (&docker, 3, "build_dir", Some("builds_dir")),
        (&docker, 4, "site_knob", None),
        (&docker, 7, "docker.imag", Some("image")),
    ] {
        let located = format!("`{}` line {line}, column", file.display());
        let found = warnings
            .iter()
            .find(|w| w.contains(&located) && w.contains(&format!("key `{key}`")));
        let found = found.unwrap_or_else(|| panic!("no warning for {key}: {run:?}"));
        match hint {
            Some(h) => assert!(found.contains(&format!("did you mean `{h}`?")), "{found}"),
            None => assert!(!found.contains("did you mean"), "{found}"),
        }
        assert!(found.contains("passed through as written"), "{found}");
    }
    assert_eq!(warnings.len(), 4, "{warnings:#?}");
    let config = host.config();
    for kept in [
        "concurent = 4",
        "build_dir = \"/b\"",
        "site_knob = 1",
        "imag = \"alpine\"",
    ] {
        assert!(
            config.contains(kept),
            "{kept} not passed through:\n{config}"
        );
    }
}

#[test]
fn the_usual_executors_warn_of_nothing() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.three_executors(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains(" WARN "), "{run:?}");
}

/// Copies `examples/etc-gitlab-runner` into the host's prefix, pointed at
/// `url`, with the PAT file it names.
fn example_prefix(host: &Host, url: &str) {
    let examples =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/etc-gitlab-runner");
    let copy = |from: &std::path::Path, to: &std::path::Path| {
        let text = std::fs::read_to_string(from).unwrap();
        std::fs::write(to, text.replace("https://gitlab.example.com", url)).unwrap();
    };
    copy(
        &examples.join("config.template.main.toml"),
        &host.template_path(),
    );
    for entry in std::fs::read_dir(examples.join("main")).unwrap() {
        let path = entry.unwrap().path();
        copy(&path, &host.executor_dir().join(path.file_name().unwrap()));
    }
    std::fs::write(host.prefix.join("gitlab-pat"), ADMIN_PAT).unwrap();
}

#[test]
fn check_passes_the_example_prefix_offline_and_writes_nothing() {
    let sim = Sim::start();
    let host = Host::new();
    example_prefix(&host, &sim.url());
    let before = host.files();
    let mut cmd = host.command(&["check"]);
    cmd.env("SYS_TYPE", "toss_4");
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        run.stdout,
        format!("{}: 0 problem(s), 0 warning(s)\n", host.prefix.display())
    );
    assert!(sim.requests().is_empty(), "{:?}", sim.requests());
    assert_eq!(host.files(), before, "check wrote under the prefix");
    // The flags may follow the subcommand too.
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_register-runner"));
    cmd.args(["check", "--hostname", HOSTNAME, "-p"])
        .arg(&host.prefix)
        .env("SYS_TYPE", "toss_4")
        .env_remove("JOURNAL_STREAM");
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    // And a real run on the same prefix agrees with it.
    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 2, "{run:?}");
}

#[test]
fn check_names_every_problem_at_once() {
    let sim = Sim::start();
    let host = Host::new();
    let url = sim.url();
    host.write_template(&format!(
        "concurent = 4\n\n[[client_configs]]\nurl = \"{url}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n"
    ));
    let files = [
        (
            "10-tag.toml",
            format!("url = \"{url}\"\nexecutor = \"shell\"\ntag = [\"gpu\"]\n"),
        ),
        (
            "20-shel.toml",
            format!("url = \"{url}\"\nname = \"b\"\nexecutor = \"shel\"\n"),
        ),
        (
            "30-toml.toml",
            format!("url = \"{url}\"\nname = \"c\"\nexecutor = \n"),
        ),
        (
            "40-url.toml",
            "name = \"d\"\nexecutor = \"shell\"\nurl = \"https://gitlab.other.example\"\n"
                .to_string(),
        ),
        (
            "50-type.toml",
            format!(
                "url = \"{url}\"\nname = \"e\"\nexecutor = \"shell\"\nrun_untagged = \"yes\"\n"
            ),
        ),
        (
            "60-good.toml",
            format!("url = \"{url}\"\nname = \"f\"\nexecutor = \"docker\"\n"),
        ),
    ];
    for (name, text) in &files {
        host.write_executor(name, text);
    }
    let before = host.files();
    let run = host.run(&["check"]);
    assert_eq!(run.code, 1, "{run:?}");
    let errors: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("error: "))
        .collect();
    let dir = host.executor_dir();
    for (file, line, what) in [
        (
            "10-tag.toml",
            3,
            "key `tag`: unknown key: did you mean `tags`?",
        ),
        (
            "20-shel.toml",
            3,
            "key `executor`: unknown executor `shel`: did you mean `shell`?",
        ),
        ("30-toml.toml", 3, "invalid TOML"),
        ("40-url.toml", 3, "key `url`:"),
        ("50-type.toml", 4, "key `run_untagged`:"),
    ] {
        let located = format!("`{}` line {line}, column", dir.join(file).display());
        assert!(
            errors
                .iter()
                .any(|e| e.contains(&located) && e.contains(what)),
            "{file}: {located} {what}\n{run:?}"
        );
    }
    assert_eq!(errors.len(), 5, "{errors:#?}");
    assert!(
        run.stdout.lines().any(|l| l.starts_with("warning: ")
            && l.contains(&format!("`{}` line 1", host.template_path().display()))
            && l.contains("did you mean `concurrent`?")),
        "{run:?}"
    );
    assert!(
        run.stdout.ends_with(&format!(
            "{}: 5 problem(s), 1 warning(s)\n",
            host.prefix.display()
        )),
        "{run:?}"
    );
    assert!(sim.requests().is_empty());
    assert_eq!(host.files(), before, "check wrote under the prefix");
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn dry_run_create_lines_list_the_tags_the_runner_gets() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.three_executors(&sim.url());
    let text = host.run(&["--dry-run"]);
    assert_eq!(text.code, 2, "{text:?}");
    let json = host.run(&["--dry-run", "--output", "json"]);
    assert_eq!(json.code, 2, "{json:?}");
    let plan: Value = serde_json::from_str(&json.stdout).unwrap();
    let actions = plan["gitlabs"][0]["actions"].as_array().unwrap().clone();
    assert_eq!(actions.len(), 3, "{actions:#?}");

    // The real run: what GitLab is sent is what the dry-run showed.
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    for runner in sim.runners() {
        let action = actions
            .iter()
            .find(|a| a["name"] == runner.description.as_str())
            .unwrap_or_else(|| panic!("{} not in {actions:#?}", runner.description));
        assert_eq!(action["action"], "create");
        let shown: Vec<String> = serde_json::from_value(action["tags"].clone()).unwrap();
        assert_eq!(shown, runner.tag_list, "{}", runner.description);
        let line = text
            .stdout
            .lines()
            .find(|l| l.contains(&format!("\"{}\"", runner.description)))
            .unwrap();
        assert!(
            line.ends_with(&format!("[tags: {}]", runner.tag_list.join(", "))),
            "{line}"
        );
    }
    let shell = sim
        .runners()
        .into_iter()
        .find(|r| r.description == "ci-node01 main shell Runner")
        .unwrap();
    assert!(
        shell.tag_list.iter().any(|t| t == "fast") && shell.tag_list.iter().any(|t| t == "site-a")
    );

    // A keep line has no tags.
    let again = host.run(&["--dry-run", "--output", "json"]);
    let plan: Value = serde_json::from_str(&again.stdout).unwrap();
    for action in plan["gitlabs"][0]["actions"].as_array().unwrap() {
        assert_eq!(action["action"], "keep");
        assert!(action["tags"].is_null(), "{action}");
    }
}

#[test]
fn a_gitlab_that_does_not_answer_is_said_within_seconds() {
    // Nothing listens on this port: every connect fails at once.
    let port = {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        listener.local_addr().unwrap().port()
    };
    let url = format!("http://127.0.0.1:{port}");
    let host = Host::new();
    host.template_with_pat(&url, ADMIN_PAT);
    host.shell_executor(&url);
    let started = std::time::Instant::now();
    let run = run_command(host.command(&["--timeout", "3"]));
    assert_eq!(run.code, 1, "{run:?}");
    let waiting: Vec<&str> = run
        .stderr
        .lines()
        .filter(|l| l.contains("waiting for GitLab"))
        .collect();
    assert_eq!(waiting.len(), 1, "once per GitLab: {run:?}");
    assert!(waiting[0].contains(" WARN "), "{run:?}");
    assert!(waiting[0].contains(&format!("`{url}`")), "{run:?}");
    assert!(waiting[0].contains("retrying until "), "{run:?}");
    assert!(waiting[0].contains("s left of --timeout"), "{run:?}");
    assert!(started.elapsed() < std::time::Duration::from_secs(10));

    // A GitLab that accepts the connection and then says nothing: the
    // line comes after about 2 s, while the request is still out.
    let sim = Sim::start_with(SimOptions {
        latency: Some(std::time::Duration::from_secs(3)),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.shell_executor(&sim.url());
    let run = run_command(host.command(&["--timeout", "30", "--log-format", "json"]));
    assert_eq!(run.code, 0, "{run:?}");
    let lines = json_lines(&run);
    let waiting = lines
        .iter()
        .position(|l| {
            field(l, "message")
                .and_then(Value::as_str)
                .is_some_and(|m| {
                    m.starts_with("waiting for GitLab") && m.contains("(no answer yet)")
                })
        })
        .unwrap_or_else(|| panic!("{run:?}"));
    // Before anything was created: the first request was still out.
    let created = lines
        .iter()
        .position(|l| field(l, "message").and_then(Value::as_str) == Some("created runner"))
        .unwrap();
    assert!(waiting < created, "{run:?}");
}

#[test]
fn a_url_ending_in_api_v4_is_refused_with_the_base_url() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&format!("{}/api/v4/", sim.url()), ADMIN_PAT);
    host.shell_executor(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "key `url`: `{}/api/v4/` ends with `/api/v4`: write GitLab's base URL, `{}`",
            sim.url(),
            sim.url()
        )),
        "{run:?}"
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn https_against_a_plain_http_gitlab_names_the_cause_and_the_fix_at_once() {
    let sim = Sim::start();
    let https = sim.url().replace("http://", "https://");
    let host = Host::new();
    host.template_with_pat(&https, ADMIN_PAT);
    host.shell_executor(&https);
    let started = std::time::Instant::now();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(
            "the server at this address answers in plain HTTP, not TLS. Fix: if GitLab really serves plain HTTP there, \
             write the url with `http://`"
        ),
        "{run:?}"
    );
    // Not retried until the deadline: no retry changes the protocol.
    assert!(!run.stderr.contains("waiting for GitLab"), "{run:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(10),
        "{run:?}"
    );
    assert!(!host.config_path().exists());
}

/// The binary run as `nobody` (root bypasses modes, so only another user
/// sees a permission problem).
fn run_as_nobody(host: &Host, args: &[&str]) -> Run {
    let mut cmd = std::process::Command::new("setpriv");
    cmd.args(["--reuid=nobody", "--regid=nogroup", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_register-runner"))
        .arg("--prefix")
        .arg(&host.prefix)
        .args(["--hostname", HOSTNAME, "--timeout", "5"])
        .args(args)
        .env_remove("JOURNAL_STREAM")
        .env_remove("RUST_LOG")
        .stdin(std::process::Stdio::null());
    run_command(cmd)
}

#[test]
fn a_prefix_the_user_cannot_read_is_named_as_such_not_as_missing() {
    use std::os::unix::fs::PermissionsExt;
    // setpriv needs root: the suite runs as root, as the tool does.
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.shell_executor(&sim.url());
    // The temp dir lets anyone through to the prefix, which is root's, 0700.
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for args in [&[][..], &["check"][..]] {
        let run = run_as_nobody(&host, args);
        assert_eq!(run.code, 1, "{args:?}: {run:?}");
        let template = host.template_path();
        let expected = format!(
            "cannot read `{}`: permission denied: register-runner runs as nobody (uid 65534)",
            template.display()
        );
        assert!(run.all_output().contains(&expected), "{args:?}: {run:?}");
        assert!(run.all_output().contains("Fix: run it as root"), "{run:?}");
        assert!(!run.all_output().contains("does not exist"), "{run:?}");
    }
    // A prefix nobody may even look at.
    std::fs::set_permissions(host.dir.path(), std::fs::Permissions::from_mode(0o700)).unwrap();
    let run = run_as_nobody(&host, &[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains(&format!(
            "cannot read `{}`: permission denied",
            host.prefix.display()
        )),
        "{run:?}"
    );
    assert!(sim.requests().is_empty());
}

#[test]
fn a_refused_pat_on_the_listing_names_the_cause_and_the_fix() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), "glpat-revoked-0123456789");
    host.shell_executor(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let listing = run
        .stderr
        .lines()
        .find(|l| l.contains("listing this host's runners failed"))
        .unwrap_or_else(|| panic!("{run:?}"));
    assert!(listing.contains("HTTP 401"), "{listing}");
    assert!(
        listing.contains(
            "GitLab refused the personal access token: it is wrong, revoked or expired. Fix: put a valid token"
        ),
        "{listing}"
    );
    assert_no_secret(&run, &secrets(&sim));
    assert!(
        !run.all_output().contains("glpat-revoked-0123456789"),
        "{run:?}"
    );
}
