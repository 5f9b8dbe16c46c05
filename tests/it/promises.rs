//! The sync's promises, as an operator tried them (issue 8): one instance
//! never touches another instance's runner, a mistyped `token` drops no
//! held token, a fleet restarting together under GitLab's rate limit
//! converges, and a failed run always says why.

use std::os::unix::fs::PermissionsExt;

use gitlab_sim::{ADMIN_PAT, REGISTRATION_TOKEN, Sim, SimOptions};

use crate::support::*;

/// A second instance on `host`'s prefix.
fn second_instance(host: &Host, instance: &str) -> Host {
    let other = Host {
        dir: tempfile::tempdir().unwrap(),
        prefix: host.prefix.clone(),
        instance: instance.into(),
        hostname: host.hostname.clone(),
    };
    std::fs::create_dir(other.executor_dir()).unwrap();
    std::fs::set_permissions(other.executor_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    other
}

/// `main/shell.toml` is tagged `gpu`, the name of the other instance: its
/// runner carries all of gpu's identifying tags, and its manager has the
/// system id both instances share.
fn main_and_gpu(sim: &Sim) -> (Host, Host) {
    let main = Host::new();
    main.template_with_pat(&sim.url(), ADMIN_PAT);
    main.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\ntags = [\"gpu\"]\n",
            sim.url()
        ),
    );
    let gpu = second_instance(&main, "gpu");
    gpu.template_with_pat(&sim.url(), ADMIN_PAT);
    gpu.write_executor(
        "cuda.toml",
        &format!("url = \"{}\"\nexecutor = \"shell\"\n", sim.url()),
    );
    (main, gpu)
}

#[test]
fn one_instance_never_deletes_a_runner_another_instance_holds() {
    let sim = Sim::start();
    let (main, gpu) = main_and_gpu(&sim);
    let run = main.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let run = gpu.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("deleting"), "{run:?}");

    // Each instance restarts twice more: nothing is deleted or recreated.
    sim.clear_requests();
    for host in [&main, &gpu, &main, &gpu] {
        let run = host.run(&[]);
        assert_eq!(run.code, 0, "{run:?}");
    }
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    let runners = sim.runners();
    assert_eq!(runners.len(), 2, "{runners:?}");
    for r in &runners {
        let holders = [&main, &gpu]
            .iter()
            .filter(|h| h.config().contains(&r.token))
            .count();
        assert_eq!(
            holders, 1,
            "runner #{} `{}` is held by {holders} configs",
            r.id, r.description
        );
    }
}

#[test]
fn a_runner_that_may_be_another_instances_is_left_alone_with_a_warning() {
    let sim = Sim::start();
    let (main, gpu) = main_and_gpu(&sim);
    assert_eq!(main.run(&[]).code, 0);
    let main_runner = sim.runners()[0].clone();
    // main's config is gone (moved away by hand): no config holds the
    // runner, but it carries `main`, the other instance's tag.
    std::fs::rename(main.config_path(), main.prefix.join("config.main.toml.bak")).unwrap();

    let run = gpu.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.runner(main_runner.id).is_some(),
        "gpu deleted main's runner: {run:?}"
    );
    let warning = run
        .stderr
        .lines()
        .find(|l| l.contains(&format!("#{}", main_runner.id)))
        .unwrap_or_else(|| panic!("no warning names runner #{}: {run:?}", main_runner.id));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("`main`") && warning.contains("`gpu`"),
        "names both instances: {warning}"
    );
}

/// Sync once, add a mistyped `token` to the executor file, run (it fails),
/// remove the typo, run again: the runner is the same one throughout.
fn mistyped_token_keeps_the_runner(host: &Host, sim: &Sim) {
    host.shell_executor(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let before = host.config();
    let id = table_int(&host.config_runners()[0], "id");

    host.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\ntoken = \"glrt-mistyped000000000000\"\n",
            sim.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .contains(&format!("remove it to keep runner #{id}")),
        "{run:?}"
    );
    assert_eq!(
        host.config(),
        before,
        "the held entry must be written back byte for byte"
    );

    host.shell_executor(&sim.url());
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new(), "{run:?}");
    assert_eq!(table_int(&host.config_runners()[0], "id"), id);
    assert_eq!(sim.runners().len(), 1);
}

#[test]
fn a_mistyped_executor_token_drops_no_held_token() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    mistyped_token_keeps_the_runner(&host, &sim);
}

#[test]
fn a_mistyped_executor_token_drops_no_held_token_with_a_registration_token() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    // A registration-token runner's token is not a `glrt-` one: the file's
    // rejected token is a typo, not a rotation.
    mistyped_token_keeps_the_runner(&host, &sim);
}

/// Twenty fresh hosts start at once against a GitLab that allows 20
/// requests a second: every one converges, none gives up.
#[test]
fn a_fleet_restarting_together_converges_under_rate_limiting() {
    let sim = Sim::start_with(SimOptions {
        rate_limit_per_sec: Some(20),
        ..Default::default()
    });
    let hosts: Vec<Host> = (0..20)
        .map(|i| {
            let host = Host::with_hostname(&format!("herd{i:02}"));
            host.set_system_id(&format!("r_herd{i:02}0000000"));
            host.template_with_pat(&sim.url(), ADMIN_PAT);
            host.shell_executor(&sim.url());
            host
        })
        .collect();
    let runs: Vec<Run> = std::thread::scope(|s| {
        let handles: Vec<_> = hosts
            .iter()
            .map(|h| s.spawn(|| run_command(h.command(&["--timeout", "60"]))))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    for (host, run) in hosts.iter().zip(&runs) {
        assert_eq!(run.code, 0, "{}: {run:?}", host.hostname);
        assert!(
            !run.stderr.contains("unreachable"),
            "{}: {run:?}",
            host.hostname
        );
        assert_eq!(host.config_runners().len(), 1, "{}", host.hostname);
    }
    assert!(
        sim.requests().iter().any(|r| r.status == 429),
        "the rate limit never bit"
    );
    assert_eq!(sim.runners().len(), 20, "one runner per host, no duplicate");
}

/// A 429 is GitLab asking to wait, not a failed attempt: twelve of them in
/// a row (more than the 8 attempts a request gets) are waited out. (The
/// last-started hosts of a fleet used to give up after 8 of them.)
#[test]
fn a_run_of_429s_longer_than_the_attempt_cap_is_waited_out() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    sim.throttle_next(12, 0);
    let run = run_command(host.command(&["--timeout", "60"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(host.config_runners().len(), 1);
    let refused = sim.requests().iter().filter(|r| r.status == 429).count();
    assert_eq!(refused, 12);
    assert_eq!(sim.runners().len(), 1);
}

#[test]
fn running_out_of_time_under_a_rate_limit_says_rate_limited() {
    let sim = Sim::start_with(SimOptions {
        rate_limit_per_sec: Some(1),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    for i in 0..6 {
        host.write_executor(
            &format!("{i}.toml"),
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\nname = \"r{i}\"\n",
                sim.url()
            ),
        );
    }
    let run = run_command(host.command(&["--timeout", "2"]));
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("rate limited"), "{run:?}");
    assert!(!run.stderr.contains("unreachable"), "{run:?}");
    assert!(!run.stderr.contains("attempt(s)"), "{run:?}");
}

#[test]
fn a_failed_run_says_why_whatever_the_log_filter() {
    let host = Host::new();
    // No template at all.
    for (args, env) in [
        (vec!["-q"], None),
        (vec![], Some("off")),
        (vec!["--log-format", "json"], Some("off")),
    ] {
        let mut cmd = host.command(&args);
        if let Some(filter) = env {
            cmd.env("RUST_LOG", filter);
        }
        let run = run_command(cmd);
        assert_eq!(run.code, 1, "{run:?}");
        let lines: Vec<&str> = run.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "one line: {run:?}");
        assert!(lines[0].contains("config.template.main.toml"), "{run:?}");
        if args.contains(&"json") {
            let value: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
            assert_eq!(value["level"], "ERROR");
            assert!(
                value["fields"]["message"]
                    .as_str()
                    .unwrap()
                    .contains("config.template.main.toml")
            );
        }
    }
}

#[test]
fn a_fresh_host_whose_create_fails_writes_no_empty_config() {
    let (_sim, host) = host_whose_creates_fail();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(!host.config_path().exists(), "{run:?}");
    assert!(!run.stderr.contains("wrote the runner config"), "{run:?}");
    assert!(run.stderr.contains("no config written"), "{run:?}");
}

#[test]
fn a_rejected_pat_on_a_host_whose_tokens_verify_is_a_counted_warning() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    host.template_with_pat(&sim.url(), "glpat-revoked0000000000000");
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let summary = run
        .stderr
        .lines()
        .find(|l| l.contains("runners in sync"))
        .unwrap_or_else(|| panic!("no summary: {run:?}"));
    assert!(
        summary.contains("kept=1") && summary.contains("warnings=1"),
        "{summary}"
    );
    assert!(
        summary.contains("created=0") && summary.contains("failed=0"),
        "{summary}"
    );
}
