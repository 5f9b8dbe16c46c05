//! A misbehaving GitLab (issue 9, items 5, 7, 8, 9 and 12): bodies that
//! never end or are too large, tokens nobody should save, error text that
//! echoes the request's secrets, control characters in names, tags,
//! system ids and error text, token-shaped words in error messages, and
//! garbage answers that must never crash the run (exit 101).

use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, HostileAnswer, REGISTRATION_TOKEN, SeedRunner, Sim, SimOptions};
use serde_json::{Value, json};

use crate::support::*;

/// A run of the binary, with the peak resident memory (`VmHWM`, KiB) seen
/// while it ran and how long it took.
fn run_measured(host: &Host, args: &[&str]) -> (Run, u64, Duration) {
    let mut all = vec!["--timeout", "20"];
    all.extend_from_slice(args);
    let mut cmd = host.command(&all);
    let (out_path, err_path) = (host.dir.path().join("out"), host.dir.path().join("err"));
    // Files, not pipes: a pipe nobody reads while the child runs could fill.
    cmd.stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap());
    let started = Instant::now();
    let mut child = cmd.spawn().expect("spawn register-runner");
    let status_path = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    while child.try_wait().expect("wait").is_none() {
        let hwm = std::fs::read_to_string(&status_path)
            .ok()
            .and_then(|status| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix("VmHWM:"))
                    .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            });
        peak_kib = peak_kib.max(hwm.unwrap_or(0));
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "the run hangs: killed"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let status = child.wait().expect("wait");
    let run = Run {
        code: status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&std::fs::read(&out_path).unwrap()).into_owned(),
        stderr: String::from_utf8_lossy(&std::fs::read(&err_path).unwrap()).into_owned(),
    };
    (run, peak_kib, started.elapsed())
}

// ---- 5. Bounded response bodies ------------------------------------------

#[test]
fn an_endless_body_fails_its_request_fast_in_bounded_memory() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    sim.set_hostile(
        "POST",
        "/api/v4/user/runners",
        HostileAnswer::Endless { status: 201 },
    );
    let (run, peak_kib, took) = run_measured(&host, &[]);
    eprintln!("endless body: {took:?}, peak {peak_kib} KiB");
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("POST ")
            && run.stderr.contains("/api/v4/user/runners")
            && run.stderr.contains("larger than 4 MiB"),
        "{run:?}"
    );
    // Not retried: a second read would be just as endless.
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/user/runners"), 1);
    assert!(took < Duration::from_secs(10), "took {took:?}: {run:?}");
    assert!(
        peak_kib < 100 * 1024,
        "peak memory {} MiB while reading an endless body",
        peak_kib / 1024
    );
    assert!(!host.config_path().exists() || host.config_runners().is_empty());
}

#[test]
fn a_body_over_the_cap_fails_and_one_under_it_is_read() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let leftover = sim.seed_runner(SeedRunner {
        description: "ci-node01 main old Runner".into(),
        tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    });
    // 100 MB: refused from its Content-Length, unread. A failed listing is
    // a warning (nothing is deleted on it), as for any other failure.
    sim.set_hostile(
        "GET",
        "/api/v4/runners/all",
        HostileAnswer::Huge {
            status: 200,
            len: 100_000_000,
        },
    );
    let (run, peak_kib, took) = run_measured(&host, &[]);
    assert!(
        run.stderr.contains("GET ")
            && run.stderr.contains("/api/v4/runners/all")
            && run.stderr.contains("larger than 4 MiB"),
        "{run:?}"
    );
    assert_eq!(count(&sim.requests(), "GET", "/api/v4/runners/all"), 1);
    assert!(took < Duration::from_secs(10), "took {took:?}");
    assert!(peak_kib < 100 * 1024, "peak {} MiB", peak_kib / 1024);
    assert!(sim.runner(leftover.id).is_some(), "deleted on no listing");

    // 3 MiB of valid JSON (an empty list and spaces) is an answer like any.
    sim.set_hostile(
        "GET",
        "/api/v4/runners/all",
        HostileAnswer::Huge {
            status: 200,
            len: 3 * 1024 * 1024,
        },
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("larger than"), "{run:?}");
}

#[test]
fn the_cap_is_far_above_a_full_page_of_runners() {
    // Measured: a full page (100 runners with long descriptions and this
    // host's tags) of the simulator's `GET /runners/all`.
    let sim = Sim::start();
    for i in 0..100 {
        sim.seed_runner(SeedRunner {
            description: format!("ci-node01 main runner number {i:03} with a long description"),
            tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
            ..Default::default()
        });
    }
    let url = format!(
        "{}/api/v4/runners/all?per_page=100&tag_list=ci-node01",
        sim.url()
    );
    let page = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            let answer = reqwest::Client::new()
                .get(&url)
                .header("PRIVATE-TOKEN", ADMIN_PAT)
                .send()
                .await
                .unwrap();
            answer.bytes().await.unwrap().to_vec()
        });
    let runners: Vec<Value> = serde_json::from_slice(&page).unwrap();
    assert_eq!(runners.len(), 100);
    eprintln!("a full page of GET /runners/all: {} bytes", page.len());
    assert!(
        page.len() * 50 < 4 * 1024 * 1024,
        "a page is {} bytes",
        page.len()
    );
}

// ---- 7. Tokens from GitLab are checked -----------------------------------

/// Sends `method path` through a rewrite that puts `token` in the answer.
fn bad_token(sim: &Sim, method: &str, path: &str, token: Value) {
    sim.set_hostile(
        method,
        path,
        HostileAnswer::rewrite(move |v| {
            if let Some(map) = v.as_object_mut() {
                map.insert("token".into(), token.clone());
            }
        }),
    );
}

fn unusable_tokens() -> Vec<(&'static str, Value)> {
    vec![
        ("empty", json!("")),
        ("2 MB", json!(format!("glrt-{}", "A".repeat(2_000_000)))),
        ("a space", json!("glrt-abc def0123456789")),
        ("a newline", json!("glrt-abcdef0123456789\nurl = \"x\"")),
        (
            "an escape sequence",
            json!("glrt-\u{1b}]0;owned\u{7}abcdef"),
        ),
        ("non-ASCII", json!("glrt-abcdéf0123456789")),
    ]
}

#[test]
fn a_created_runner_with_an_unusable_token_fails_and_nothing_is_saved() {
    for (what, token) in unusable_tokens() {
        let sim = Sim::start();
        let host = Host::fresh(&sim, Executors::Shell);
        bad_token(&sim, "POST", "/api/v4/user/runners", token.clone());
        let run = host.run(&[]);
        assert_eq!(run.code, 1, "{what}: {run:?}");
        assert!(
            run.stderr.contains("unusable token") && run.stderr.contains("/api/v4/user/runners"),
            "{what}: {run:?}"
        );
        let shown = token.as_str().unwrap();
        if shown.len() > 8 {
            assert!(!run.all_output().contains(&shown[5..]), "{what}: {run:?}");
        }
        // No entry carries it (a config without the runner may be written).
        if host.config_path().exists() {
            let config = host.config();
            assert!(config.len() < 10_000, "{what}: {} bytes", config.len());
            for entry in host.config_runners() {
                assert_ne!(table_str(&entry, "token"), shown, "{what}: {config}");
            }
        }
        // The next run still reads its own output.
        sim.clear_hostile();
        let again = host.run(&[]);
        assert_eq!(again.code, 0, "{what}: {again:?}");
    }
}

#[test]
fn a_created_runner_id_beyond_gitlabs_range_is_refused() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    sim.set_hostile(
        "POST",
        "/api/v4/user/runners",
        HostileAnswer::rewrite(|v| v["id"] = json!(u64::MAX)),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("out of range"), "{run:?}");
    // Not written as a negative id (TOML integers are signed).
    assert!(!host.config_path().exists() || host.config_runners().is_empty());
}

#[test]
fn registered_reset_verified_and_restored_tokens_are_checked_too() {
    // POST /runners (registration token).
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    bad_token(
        &sim,
        "POST",
        "/api/v4/runners",
        json!("glrtr-\u{7}bell0123456789"),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("unusable token"), "{run:?}");
    assert!(!host.config_path().exists() || !host.config().contains("glrtr-"));

    // POST /runners/reset_authentication_token (rotation).
    let sim = sim_issuing_due_tokens();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let before = host.config();
    bad_token(
        &sim,
        "POST",
        "/api/v4/runners/reset_authentication_token",
        json!("x".repeat(256)),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("unusable token"), "{run:?}");
    assert!(!host.config().contains(&"x".repeat(256)));
    assert_eq!(host.config(), before, "the held token was replaced");

    // POST /runners/verify answering with another, unusable token.
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let before = host.config();
    bad_token(&sim, "POST", "/api/v4/runners/verify", json!(""));
    let run = host.run(&[]);
    assert!(run.code == 0 || run.code == 1, "{run:?}");
    assert!(run.stderr.contains("unusable token"), "{run:?}");
    assert_eq!(host.config(), before, "the held token was replaced");

    // GET /runners/:id on a patched server, for a lost config.
    let sim = Sim::start_with(SimOptions {
        patched: true,
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    std::fs::remove_file(host.config_path()).unwrap();
    bad_token(&sim, "GET", "/api/v4/runners/*", json!("glrt-\nforged = 1"));
    let run = host.run(&[]);
    assert!(run.code == 0 || run.code == 1, "{run:?}");
    assert!(!host.config_path().exists() || !host.config().contains("forged"));
}

// ---- 8. GitLab's error text is masked -------------------------------------

#[test]
fn an_error_that_echoes_the_request_shows_no_secret() {
    // The registration token, in POST /runners.
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    sim.set_hostile(
        "POST",
        "/api/v4/runners",
        HostileAnswer::EchoRequest { status: 400 },
    );
    for args in [&[][..], &["-v"], &["--log-format", "json"]] {
        let run = host.run(args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("GR1348941"), "not echoed? {run:?}");
        assert_no_secret(&run, &[REGISTRATION_TOKEN.to_string()]);
    }

    // The PAT (a header) in POST /user/runners, and a held runner token
    // in POST /runners/verify.
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    host.write_executor(
        "docker.toml",
        &format!("url = \"{}\"\nexecutor = \"docker\"\n", sim.url()),
    );
    sim.set_hostile(
        "POST",
        "/api/v4/user/runners",
        HostileAnswer::EchoRequest { status: 400 },
    );
    sim.set_hostile(
        "POST",
        "/api/v4/runners/verify",
        HostileAnswer::EchoRequest { status: 400 },
    );
    for args in [&[][..], &["-vv"], &["--dry-run"], &["--log-format", "json"]] {
        let run = host.run(args);
        assert_ne!(run.code, 0, "{run:?}");
        assert!(run.all_output().contains("PRIVATE-TOKEN"), "{run:?}");
        assert_no_secret(&run, &secrets(&sim));
    }
}

#[test]
fn a_secret_without_a_token_prefix_is_masked_too() {
    // An old registration token has no prefix: only the run's own record
    // of its secrets can recognise it.
    let sim = Sim::start();
    let host = Host::new();
    let plain = "8HxyzSiteRegistrationSecret42";
    host.template_with_registration_token(&sim.url(), plain);
    host.shell_executor(&sim.url());
    sim.set_hostile(
        "POST",
        "/api/v4/runners",
        HostileAnswer::EchoRequest { status: 403 },
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("8Hxy…"), "{run:?}");
    assert_no_secret(&run, &[plain.to_string()]);
}

// ---- 9. Control characters from GitLab ------------------------------------

const HOSTILE_NAME: &str =
    "ci-node01 main \u{1b}]0;pwned\u{7}\u{1b}[2J shell\nINFO forged: all good\r";

fn assert_no_raw_control(run: &Run) {
    for (stream, text) in [("stdout", &run.stdout), ("stderr", &run.stderr)] {
        assert!(!text.contains('\u{1b}'), "raw ESC on {stream}: {run:?}");
        assert!(!text.contains('\u{7}'), "raw BEL on {stream}: {run:?}");
        assert!(!text.contains('\r'), "raw CR on {stream}: {run:?}");
        assert!(
            !text.lines().any(|l| l.starts_with("INFO forged")
                || l.starts_with("ERROR forged")
                || l.trim_start().starts_with("forged")),
            "forged line on {stream}: {run:?}"
        );
    }
}

#[test]
fn control_characters_from_gitlab_are_escaped_in_logs_and_the_report() {
    let sim = Sim::start();
    let leftover = sim.seed_runner(SeedRunner {
        description: HOSTILE_NAME.into(),
        tag_list: IDENTIFYING
            .iter()
            .map(|t| t.to_string())
            .chain(["\u{1b}[31mred\nWARN forged".to_string()])
            .collect(),
        ..Default::default()
    });
    sim.seed_runner(SeedRunner {
        description: "ci-node01 main glrt-NameHoldsAToken0123456789".into(),
        tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);

    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(
        dry.stdout.contains("\"ci-node01 main glrt-Name…\""),
        "{dry:?}"
    );
    assert!(!dry.all_output().contains("HoldsAToken"), "{dry:?}");
    // The name is there, escaped, on the delete line.
    assert!(
        dry.stdout
            .contains("\\e]0;pwned\\u{7}\\e[2J shell\\nINFO forged: all good\\r"),
        "{dry:?}"
    );
    assert_no_raw_control(&dry);

    let json = host.run(&["--dry-run", "--output", "json"]);
    assert_eq!(json.code, 2, "{json:?}");
    let report: Value = serde_json::from_str(&json.stdout).expect("valid JSON");
    assert!(report.to_string().contains("pwned"), "{report}");
    assert_no_raw_control(&json);

    let run = host.run(&["-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(sim.runner(leftover.id).is_none());
    assert_no_raw_control(&run);
    let run = host.run(&["-vv", "--log-format", "json"]);
    assert_eq!(run.code, 0, "{run:?}");
    for line in run.stderr.lines() {
        serde_json::from_str::<Value>(line).unwrap_or_else(|e| panic!("{e}: {line}"));
    }
}

#[test]
fn control_characters_in_system_ids_and_error_text_are_escaped() {
    let sim = Sim::start();
    // A runner named like this host's, used by "another host" whose system
    // id is an escape sequence.
    sim.seed_runner(SeedRunner {
        description: "ci-node01 main shell Runner".into(),
        tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    });
    sim.set_hostile(
        "GET",
        "/api/v4/runners/*/managers",
        HostileAnswer::json(
            200,
            r#"[{"id":1,"system_id":"s_\u001b]0;pwned\u0007\nINFO forged","status":"online"}]"#,
        ),
    );
    sim.set_hostile(
        "POST",
        "/api/v4/user/runners",
        HostileAnswer::json(
            400,
            r#"{"message":"bad\u001b[2J\r\nERROR forged: \u009b31m"}"#,
        ),
    );
    let host = Host::fresh(&sim, Executors::Shell);
    for args in [&["-vv"][..], &["--dry-run", "-vv"]] {
        let run = host.run(args);
        assert_ne!(run.code, 0, "{run:?}");
        assert_no_raw_control(&run);
        assert!(!run.all_output().contains('\u{9b}'), "{run:?}");
    }
    let run = host.run(&[]);
    assert!(
        run.stderr.contains("bad\\e[2J\\r\\nERROR forged"),
        "{run:?}"
    );
}

// ---- 12. Token-shaped words in any message ---------------------------------

#[test]
fn a_token_typed_as_a_key_name_is_masked() {
    let sim = Sim::start();
    let host = Host::new();
    let pat = "glpat-TypedAsAKeyName0123456789";
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\n{pat} = \"x\"\n",
        sim.url()
    ));
    host.shell_executor(&sim.url());
    for args in [&[][..], &["--log-format", "json"], &["--dry-run"]] {
        let run = host.run(args);
        assert_eq!(run.code, 1, "{run:?}");
        assert!(run.stderr.contains("glpat-Type…"), "{run:?}");
        assert_no_secret(&run, &[pat.to_string()]);
    }
    assert!(sim.requests().is_empty());
}

#[test]
fn a_token_in_an_executor_url_path_is_masked() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    let token = "glrt-InTheUrlPath0123456789";
    host.write_executor(
        "shell.toml",
        &format!("url = \"https://gitlab.example.com/{token}/\"\nexecutor = \"shell\"\n"),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("shell.toml"), "{run:?}");
    assert_no_secret(&run, &[token.to_string(), ADMIN_PAT.to_string()]);
    assert!(sim.requests().is_empty());
}

// ---- Garbage answers: never a panic ----------------------------------------

/// What each endpoint may answer instead of its real answer.
fn garbage_bodies() -> Vec<&'static str> {
    vec![
        "",
        "{",
        "null",
        "\"a string\"",
        "[]",
        "{}",
        "[{}]",
        "{\"id\": -1, \"token\": \"glrt-abcdefghijklmnop\"}",
        "{\"id\": 18446744073709551615, \"token\": \"glrt-abcdefghijklmnop\"}",
        "{\"id\": 9223372036854775808, \"token\": \"glrt-abcdefghijklmnop\"}",
        "{\"id\": 1e400, \"token\": \"glrt-abcdefghijklmnop\"}",
        "{\"id\": \"7\", \"token\": 12}",
        "{\"id\": 3, \"token\": \"glrt-abcdefghijklmnop\", \"token_expires_at\": \"9999-12-31T23:59:59Z\"}",
        "{\"id\": 3, \"token\": \"glrt-abcdefghijklmnop\", \"token_expires_at\": \"0000-01-01T00:00:00Z\"}",
        "{\"id\": 3, \"token\": \"glrt-abcdefghijklmnop\", \"token_expires_at\": 5}",
        "[{\"id\": -5, \"description\": 7}]",
        "[{\"id\": 18446744073709551615, \"description\": \"ci-node01 main shell Runner\"}]",
        "[{\"id\": 0}]",
        "[{\"system_id\": null}, {\"system_id\": 5}]",
        "{\"id\": 1, \"tag_list\": \"x\", \"maximum_timeout\": -1, \"run_untagged\": \"yes\"}",
        "{\"id\": 1, \"tag_list\": [1, null], \"description\": {\"a\": []}}",
        "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]",
        "\u{0}\u{1}\u{2}",
    ]
}

/// Whether a logged path matches a hostile rule's pattern.
fn path_matches(pattern: &str, path: &str) -> bool {
    let want: Vec<&str> = pattern.split('/').collect();
    let got: Vec<&str> = path.split('/').collect();
    want.len() == got.len() && want.iter().zip(&got).all(|(w, g)| *w == "*" || w == g)
}

/// A host that holds one runner whose token is due for rotation (verify,
/// details, reset), has lost one (listing, managers, details) and has one
/// to create, against a patched GitLab; and its config.
fn garbage_stage() -> (Sim, Host, String) {
    let sim = Sim::start_with(SimOptions {
        patched: true,
        token_lifetime: Some(Duration::from_secs(3600)),
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    sim.seed_runner(SeedRunner {
        description: "ci-node01 main docker Runner".into(),
        tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    });
    host.write_executor(
        "docker.toml",
        &format!("url = \"{}\"\nexecutor = \"docker\"\n", sim.url()),
    );
    host.write_executor(
        "custom.toml",
        &format!("url = \"{}\"\nexecutor = \"custom\"\n", sim.url()),
    );
    // Obtained long ago: in the last quarter of its life, so it is reset.
    let config: String = host
        .config()
        .lines()
        .map(|l| {
            if l.starts_with("token_obtained_at") {
                "token_obtained_at = 2000-01-01T00:00:00Z\n".to_string()
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    (sim, host, config)
}

#[test]
fn garbage_answers_never_crash_the_run() {
    let endpoints: [(&str, &str); 6] = [
        ("POST", "/api/v4/runners/verify"),
        ("GET", "/api/v4/runners/all"),
        ("GET", "/api/v4/runners/*"),
        ("GET", "/api/v4/runners/*/managers"),
        ("POST", "/api/v4/user/runners"),
        ("POST", "/api/v4/runners/reset_authentication_token"),
    ];
    for (method, pattern) in endpoints {
        let (sim, host, config) = garbage_stage();
        let mut hits = 0;
        for (i, body) in garbage_bodies().into_iter().enumerate() {
            let success = if method == "POST" && !pattern.ends_with("verify") {
                201
            } else {
                200
            };
            // Every body as a success; a few as an error too.
            let statuses: &[u16] = if i < 4 { &[success, 400] } else { &[success] };
            for &status in statuses {
                sim.clear_hostile();
                sim.set_hostile(method, pattern, HostileAnswer::json(status, body));
                // Each case from the same start.
                std::fs::write(host.config_path(), &config).unwrap();
                sim.clear_requests();
                let run = run_command(host.command(&["--timeout", "10"]));
                let case = format!("{method} {pattern} → {status} {body:.60}");
                assert!(
                    run.code == 0 || run.code == 1,
                    "{case}: exit {}\n{run:?}",
                    run.code
                );
                assert!(!run.stderr.contains("panicked"), "{case}: {run:?}");
                if run.code == 1 {
                    assert!(
                        run.stderr.lines().any(|l| l.contains("ERROR")),
                        "{case}: exit 1 without a message: {run:?}"
                    );
                }
                assert_no_raw_control(&run);
                hits += sim
                    .requests()
                    .iter()
                    .filter(|r| r.method == method && path_matches(pattern, &r.path))
                    .count();
            }
        }
        assert!(
            hits > 0,
            "{method} {pattern} was never asked: the test misses it"
        );
    }
}

/// Item 6: a `Retry-After` of 2^64-1 once panicked the tool (an instant
/// past the end of time). Every server-given wait is clamped to what is
/// left of `--timeout`: the run ends at its deadline, named as a rate limit.
#[test]
fn a_retry_after_of_two_to_the_64_ends_at_the_deadline_without_a_panic() {
    let sim = gitlab_sim::Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    sim.throttle_next(1, u64::MAX);
    let started = std::time::Instant::now();
    let run = run_command(host.command(&["--timeout", "2"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!run.stderr.contains("panicked"), "{run:?}");
    assert!(run.stderr.contains("rate limited"), "{run:?}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(7),
        "{run:?}"
    );
    assert_eq!(
        sim.requests()
            .iter()
            .filter(|r| r.retry_after == Some(u64::MAX))
            .count(),
        1
    );
}
