//! Reliability (SPEC §5): transient faults, rate limits, GitLab down,
//! SIGKILL mid-run, concurrent runs. Every test also checks that no secret
//! reaches stdout or stderr.

use std::process::Stdio;
use std::time::{Duration, Instant};

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

use crate::support::*;

fn executors(host: &Host, url: &str, n: usize) {
    for i in 0..n {
        host.write_executor(
            &format!("{i:02}-shell.toml"),
            &format!("url = \"{url}\"\nexecutor = \"shell\"\nname = \"shell {i}\"\n"),
        );
    }
}

/// GitLab and the config agree: one runner per executor, each token in the
/// config, no runner in GitLab whose token the config does not hold.
fn assert_converged(host: &Host, sim: &Sim, n: usize) {
    let runners = sim.runners();
    assert_eq!(runners.len(), n, "{runners:#?}");
    let entries = host.config_runners();
    assert_eq!(entries.len(), n, "{}", host.config());
    for runner in &runners {
        assert!(has_identifying_tags(runner), "{runner:#?}");
        assert!(
            entries
                .iter()
                .any(|e| table_str(e, "token") == runner.token
                    && table_int(e, "id") == runner.id as i64),
            "runner #{} ({}) is an orphan: its token is not in the config",
            runner.id,
            runner.description
        );
    }
}

#[test]
fn every_third_request_failing_with_502_converges() {
    let sim = Sim::start_with(SimOptions {
        fail_every: Some(3),
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Three);
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.requests().iter().any(|r| r.status == 502),
        "the knob did not bite"
    );
    assert_converged(&host, &sim, 3);
    assert_no_secret(&run, &secrets(&sim));

    sim.clear_requests();
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_converged(&host, &sim, 3);
    assert_no_secret(&again, &secrets(&sim));
}

#[test]
fn rate_limited_gitlab_is_waited_for() {
    let sim = Sim::start_with(SimOptions {
        rate_limit_per_sec: Some(2),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    executors(&host, &sim.url(), 6);
    let run = host.run(&["-v"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_converged(&host, &sim, 6);
    // the restart verifies six tokens concurrently under the same limit
    let again = host.run(&["-v"]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_converged(&host, &sim, 6);

    let log = sim.requests();
    let limited: Vec<_> = log.iter().filter(|r| r.status == 429).collect();
    assert!(!limited.is_empty(), "the rate limit never bit");
    // After a 429 with Retry-After r at t, nothing is sent in (t, t + r),
    // except what was already on the wire when the 429 left (a few ms).
    let in_flight = Duration::from_millis(100);
    for refused in &limited {
        let wait = Duration::from_secs(refused.retry_after.expect("429 carries Retry-After"));
        for later in log.iter().filter(|r| r.at > refused.at + in_flight) {
            assert!(
                later.at >= refused.at + wait,
                "{} {} sent {:?} after a 429 that said Retry-After: {}",
                later.method,
                later.path,
                later.at - refused.at,
                wait.as_secs()
            );
        }
    }
    // (A run that saw the window used up waits for its reset before it is
    // refused at all, so the refusals may all fall in one of the two runs.)
    assert!(
        run.stderr.contains("retrying") || again.stderr.contains("retrying"),
        "retries are logged at debug: {run:?}\n{again:?}"
    );
    assert_no_secret(&run, &secrets(&sim));
    assert_no_secret(&again, &secrets(&sim));
}

#[test]
fn gitlab_down_keeps_the_last_config_within_the_deadline() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let secret_list = secrets(&sim);
    let config = host.config();
    let mtime = host.config_mtime();
    sim.stop();

    // Real backoff delays here (no test switch): the deadline bounds them.
    let mut cmd = host.command(&["--timeout", "5"]);
    cmd.env_remove("REGISTER_RUNNER_NO_RETRY_DELAY");
    let started = Instant::now();
    let run = run_command(cmd);
    let took = started.elapsed();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        took < Duration::from_secs(7),
        "took {took:?} with --timeout 5"
    );
    assert!(run.stderr.contains("unreachable"), "{run:?}");
    assert_eq!(host.config(), config);
    assert_eq!(host.config_mtime(), mtime);
    assert_no_secret(&run, &secret_list);

    let strict = run_command(host.command(&["--timeout", "5", "--strict"]));
    assert_eq!(strict.code, 1, "{strict:?}");
    assert!(strict.stderr.contains("--strict"), "{strict:?}");
    assert_eq!(host.config(), config);
    assert_no_secret(&strict, &secret_list);
}

#[test]
fn gitlab_down_without_a_token_for_every_executor_fails() {
    let sim = Sim::start();
    let url = sim.url();
    let host = Host::new();
    host.template_with_pat(&url, ADMIN_PAT);
    host.write_executor(
        "shell.toml",
        &format!("url = \"{url}\"\nexecutor = \"shell\"\n"),
    );
    assert_eq!(host.run(&[]).code, 0);
    let secret_list = secrets(&sim);
    sim.stop();
    host.write_executor(
        "docker.toml",
        &format!("url = \"{url}\"\nexecutor = \"docker\"\n"),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("has no token"), "{run:?}");
    // the runner it does hold is still there
    assert_eq!(host.config_runners().len(), 1);
    assert_no_secret(&run, &secret_list);
}

#[test]
fn sigkill_during_registration_leaves_no_orphan() {
    // Each request spends 400 ms in GitLab's hands: a kill that lands once a
    // create has arrived is mid-request, and GitLab (like the real one)
    // finishes it: a runner whose token the killed run never received.
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(400)),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    executors(&host, &sim.url(), 5);
    let creating = || {
        sim.in_flight()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/api/v4/user/runners")
    };
    let mut killed = Vec::new();
    // Every secret GitLab ever held: a killed run may have printed the token
    // of a runner a later one deleted.
    let mut secret_list = secrets(&sim);
    for _ in 0..3 {
        let mut child = host
            .command(&["--timeout", "60", "-v"])
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let arrived = eventually(creating);
        child.kill().unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(arrived, "no create reached GitLab: {out:?}");
        killed.push(Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        });
        // GitLab finishes what the killed run started.
        assert!(
            eventually(|| sim.in_flight().is_empty()),
            "{:?}",
            sim.in_flight()
        );
        secret_list.extend(secrets(&sim));
        // never a half-written config: whatever is there parses
        if host.config_path().exists() {
            let _ = host.config_doc();
        }
    }
    assert!(sim.runners().len() < 10, "{:#?}", sim.runners());
    let held: Vec<String> = if host.config_path().exists() {
        host.config_runners()
            .iter()
            .map(|e| table_str(e, "token"))
            .collect()
    } else {
        Vec::new()
    };
    let orphans: Vec<_> = sim
        .runners()
        .into_iter()
        .filter(|r| !held.contains(&r.token))
        .collect();
    assert!(
        !orphans.is_empty(),
        "the kills left no orphan to clean up: the test proves nothing\n{:#?}",
        sim.runners()
    );
    for run in &killed {
        assert_eq!(run.code, -1, "not killed: {run:?}");
        // it got as far as logging the create it was killed in
        assert!(!run.stderr.is_empty(), "{run:?}");
        assert_no_secret(run, &secret_list);
    }

    sim.set_latency(None);
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_converged(&host, &sim, 5);
    for orphan in &orphans {
        assert!(
            sim.runner(orphan.id).is_none(),
            "orphan #{} survived",
            orphan.id
        );
    }
    assert!(
        !host.files().iter().any(|f| f.ends_with(".tmp")),
        "temp files left behind: {:?}",
        host.files()
    );
    assert_no_secret(&run, &secrets(&sim));
    assert_no_secret(&run, &secret_list);
}

#[test]
fn simultaneous_runs_make_one_runner_per_executor() {
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(20)),
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Three);
    let children: Vec<_> = (0..3)
        .map(|_| {
            host.command(&["--timeout", "30"])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().unwrap();
        let run = Run {
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        assert_eq!(run.code, 0, "{run:?}");
        assert_no_secret(&run, &secrets(&sim));
    }
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/user/runners"), 3);
    assert_converged(&host, &sim, 3);
}

#[test]
fn an_emptied_executor_directory_deletes_nothing_without_allow_empty() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let config = host.config();
    for file in ["10-shell.toml", "20-docker.toml", "30-custom.toml"] {
        host.remove_executor(file);
    }
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("refusing to delete all 3") && run.stderr.contains("--allow-empty"),
        "{run:?}"
    );
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(sim.runners().len(), 3);
    assert_eq!(
        host.config(),
        config,
        "the tokens must stay until the runners are deleted"
    );

    // A missing directory is refused the same way.
    std::fs::remove_dir(host.executor_dir()).unwrap();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert_eq!(sim.runners().len(), 3);

    let run = host.run(&["--allow-empty"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(sim.runners().is_empty());
    assert!(host.config_runners().is_empty());
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn unreachable_gitlab_keeps_the_config_byte_for_byte_even_after_edits() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let before = host.config();
    let secret_list = secrets(&sim);
    host.write_executor(
        "20-docker.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"docker\"\nlimit = 9\n\n[docker]\nimage = \"alpine:4\"\n",
            sim.url()
        ),
    );
    sim.stop();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        host.config(),
        before,
        "config changed while GitLab was unreachable"
    );
    assert_no_secret(&run, &secret_list);
}
