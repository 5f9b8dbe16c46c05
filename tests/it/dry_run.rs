//! `--dry-run` (SPEC §4): reads and verifies only, prints the plan and a
//! masked diff, exits 0 (nothing to change) or 2 (changes).

use gitlab_sim::{ADMIN_PAT, Sim};

use crate::support::*;

fn no_writes(sim: &Sim) {
    let writes: Vec<String> = sim
        .requests()
        .iter()
        .filter(|r| r.method != "GET" && r.path != "/api/v4/runners/verify")
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    assert_eq!(writes, Vec::<String>::new(), "dry-run changed GitLab");
}

#[test]
fn fresh_prefix_plans_every_executor_and_writes_nothing() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    let files_before = host.files();

    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 2, "{run:?}");
    for name in [
        "ci-node01 main shell Runner",
        "ci-node01 main docker Runner",
        "ci-node01 main custom Runner",
    ] {
        let line = run
            .stdout
            .lines()
            .find(|l| l.contains(name))
            .unwrap_or_else(|| panic!("{name} missing:\n{run:?}"));
        assert!(line.trim_start().starts_with("create"), "{line}");
    }
    assert!(run.stdout.contains("--- current\n+++ planned\n"), "{run:?}");
    assert!(
        run.stdout
            .contains("+token = \"(issued by GitLab on apply)\""),
        "{run:?}"
    );
    no_writes(&sim);
    assert!(sim.runners().is_empty());
    assert_eq!(
        host.files(),
        files_before,
        "dry-run created files (lock, system id or config)"
    );
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn removed_executor_shows_the_delete_and_a_masked_diff() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let config = host.config();
    let mtime = host.config_mtime();
    let docker = sim
        .runners()
        .into_iter()
        .find(|r| r.description.contains("docker"))
        .unwrap();
    host.remove_executor("20-docker.toml");
    sim.clear_requests();

    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 2, "{run:?}");
    let delete = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("delete"))
        .expect("a delete line");
    assert!(
        delete.contains("ci-node01 main docker Runner")
            && delete.contains(&format!("#{}", docker.id)),
        "{delete}"
    );
    assert!(delete.contains("no executor file"), "{delete}");
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("keep"))
            .count(),
        2
    );
    for removed in [
        "-name = \"ci-node01 main docker Runner\"",
        "-executor = \"docker\"",
        "-[runners.docker]",
        "-image = \"alpine:3\"",
    ] {
        assert!(
            run.stdout.contains(removed),
            "{removed} not in diff:\n{run:?}"
        );
    }
    let short = format!("-token = \"{}…\"", &docker.token[..9]);
    assert!(
        run.stdout.contains(&short),
        "masked token {short} not in diff:\n{run:?}"
    );
    assert_no_secret(&run, &secrets(&sim));
    no_writes(&sim);
    assert!(sim.runner(docker.id).is_some(), "dry-run deleted a runner");
    assert_eq!(host.config(), config);
    assert_eq!(host.config_mtime(), mtime);
}

#[test]
fn nothing_to_change_exits_zero_with_an_empty_diff() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    sim.clear_requests();
    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stdout.contains("config: no change"), "{run:?}");
    assert!(!run.stdout.contains("+++"), "{run:?}");
    assert_eq!(
        run.stdout
            .lines()
            .filter(|l| l.trim_start().starts_with("keep"))
            .count(),
        3
    );
    no_writes(&sim);
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn json_output_for_automation() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    let run = host.run(&["--dry-run", "--output", "json"]);
    assert_eq!(run.code, 2, "{run:?}");
    let report: serde_json::Value =
        serde_json::from_str(&run.stdout).expect("stdout is one JSON document");
    assert_eq!(report["changes"], true);
    let actions = report["gitlabs"][0]["actions"].as_array().unwrap();
    assert_eq!(actions.len(), 3);
    assert!(actions.iter().all(|a| a["action"] == "create"));
    assert!(
        report["diff"]
            .as_str()
            .unwrap()
            .starts_with("--- current\n+++ planned\n")
    );
}

#[test]
fn dry_run_reports_pending_updates_and_duplicates() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let kept = sim.runners()[0].clone();
    let duplicate = sim.seed_runner(gitlab_sim::SeedRunner {
        description: kept.description.clone(),
        tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    });
    host.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nlocked = true\n",
            sim.url()
        ),
    );
    sim.clear_requests();
    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 2, "{run:?}");
    assert!(
        run.stdout.contains(&format!("duplicate of #{}", kept.id)),
        "{run:?}"
    );
    assert!(
        run.stdout.contains(&format!("#{}", duplicate.id)),
        "{run:?}"
    );
    let update = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("update"))
        .expect("an update line");
    assert!(update.contains("locked"), "{update}");
    assert!(run.stdout.contains("config: no change"), "{run:?}");
    no_writes(&sim);
}

#[test]
fn a_refused_listing_is_no_clean_plan() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    host.remove_executor("20-docker.toml");
    host.template_with_pat(&sim.url(), "glpat-expired-0000000000");
    let run = host.run(&["--dry-run"]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr.contains("listing this host's runners failed"),
        "{run:?}"
    );
}

#[test]
fn comments_keep_their_place_and_never_leak_a_token() {
    const OLD_PAT: &str = "glpat-retired-0123456789abcdef";
    let sim = Sim::start();
    let host = Host::new();
    host.write_template(&format!(
        "# rotated 2026-11: {OLD_PAT}\nconcurrent = 4\n\n[[client_configs]]\nurl = \"{}\"\n\
         personal_access_token = \"{ADMIN_PAT}\"\n# personal_access_token = \"{OLD_PAT}\"\n\n\
         # the session server\n[session_server]\nlisten_address = \"[::]:8093\"\n",
        sim.url()
    ));
    host.write_executor(
        "10-shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\n# two at a time\nlimit = 2\n",
            sim.url()
        ),
    );

    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(
        dry.stdout.contains("+# rotated 2026-11: glpat-reti…\n"),
        "{dry:?}"
    );
    assert!(!dry.all_output().contains(OLD_PAT), "{dry:?}");
    assert_no_secret(&dry, &secrets(&sim));

    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let config = host.config();
    // Every comment between the client config and the next table goes
    // (the commented-out token with it); the one above `limit` stays.
    assert!(!config.contains("personal_access_token"), "{config}");
    assert!(
        config.contains("concurrent = 4\n\n[session_server]\n"),
        "{config}"
    );
    assert!(
        config.contains("executor = \"shell\"\n# two at a time\nlimit = 2\n"),
        "{config}"
    );
}

#[test]
fn a_pending_rotation_shows_in_the_plan_and_the_diff() {
    let sim = sim_issuing_due_tokens();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let runner = sim.runners()[0].clone();
    sim.clear_requests();

    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    let line = dry
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("rotate"))
        .unwrap_or_else(|| panic!("no rotate line:\n{dry:?}"));
    assert!(line.contains(&format!("#{}", runner.id)), "{line}");
    let short = register_runner::secret::short_form(&runner.token);
    assert!(
        dry.stdout.contains(&format!("-token = \"{short}\"\n")),
        "{dry:?}"
    );
    assert!(
        dry.stdout
            .contains("+token = \"(issued by GitLab on apply)\"\n"),
        "{dry:?}"
    );
    assert!(
        dry.stdout
            .contains("+token_expires_at = 0001-01-01T00:00:00Z\n"),
        "{dry:?}"
    );
    no_writes(&sim);
    assert_eq!(sim.runner(runner.id).unwrap().token, runner.token);
    assert_no_secret(&dry, &secrets(&sim));
}

/// Every kind of line, with its id and reason, grouped by GitLab in the
/// template's order; and bad input in a dry-run is exit 1.
#[test]
fn plan_lines_name_action_id_and_reason_per_gitlab() {
    let a = Sim::start();
    let b = Sim::start();
    let ui = b.seed_runner(gitlab_sim::SeedRunner {
        description: "made in the UI".into(),
        ..Default::default()
    });
    let host = Host::new();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n\n\
         [[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n",
        b.url(),
        a.url()
    ));
    let executor = |file: &str, url: &str, extra: &str| {
        host.write_executor(
            file,
            &format!("url = \"{url}\"\nexecutor = \"shell\"\n{extra}"),
        )
    };
    executor("a-gone.toml", &a.url(), "name = \"a gone\"\n");
    executor("a-kept.toml", &a.url(), "name = \"a kept\"\n");
    executor(
        "b-ui.toml",
        &b.url(),
        &format!("name = \"b ui\"\ntoken = \"{}\"\n", ui.token),
    );
    executor("b-kept.toml", &b.url(), "name = \"b kept\"\n");
    assert_eq!(host.run(&[]).code, 0);
    let id_of = |sim: &Sim, name: &str| {
        sim.runners()
            .into_iter()
            .find(|r| r.description == name)
            .unwrap()
            .id
    };
    let (gone, kept_a, kept_b) = (
        id_of(&a, "a gone"),
        id_of(&a, "a kept"),
        id_of(&b, "b kept"),
    );

    a.clear_requests();
    b.clear_requests();
    a.remove_runner(gone); // deleted in GitLab's UI
    host.remove_executor("b-ui.toml"); // the UI runner is no longer used here
    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    let plan: Vec<&str> = dry
        .stdout
        .split("--- current")
        .next()
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .collect();
    let expected = [
        (format!("GitLab {}", b.url()), ""),
        ("keep".into(), "\"b kept\""),
        ("delete-manager".into(), "\"b ui\""),
        (format!("GitLab {}", a.url()), ""),
        ("create".into(), "\"a gone\""),
        ("keep".into(), "\"a kept\""),
    ];
    assert_eq!(plan.len(), expected.len(), "{plan:#?}");
    for (line, (start, name)) in plan.iter().zip(&expected) {
        assert!(
            line.trim_start().starts_with(start.as_str()),
            "{line} vs {start}"
        );
        assert!(line.contains(name), "{line} lacks {name}");
    }
    assert!(plan[1].contains(&format!("#{kept_b}")), "{}", plan[1]);
    assert!(plan[2].contains(&format!("#{}", ui.id)), "{}", plan[2]);
    assert!(plan[2].contains("only this host's manager"), "{}", plan[2]);
    assert!(
        plan[4].contains("token rejected by GitLab (HTTP 403)"),
        "{}",
        plan[4]
    );
    assert!(plan[5].contains(&format!("#{kept_a}")), "{}", plan[5]);
    no_writes(&a);
    no_writes(&b);
    assert_eq!(b.runner(ui.id).unwrap().managers.len(), 1);
    assert_no_secret(&dry, &[secrets(&a), secrets(&b)].concat());

    // Bad input: exit 1, nothing asked of GitLab.
    a.clear_requests();
    b.clear_requests();
    executor(
        "a-kept.toml",
        &a.url(),
        "name = \"a kept\"\nlocked = \"yes\"\n",
    );
    let bad = host.run(&["--dry-run"]);
    assert_eq!(bad.code, 1, "{bad:?}");
    assert!(bad.stderr.contains("a-kept.toml"), "{bad:?}");
    assert!(a.requests().is_empty() && b.requests().is_empty());
}

#[test]
fn a_changed_secret_setting_is_a_change_without_showing_it() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    let executor = |secret: &str| {
        host.write_executor(
            "10-shell.toml",
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\n\n[cache]\nType = \"s3\"\n\n[cache.s3]\n\
                 AccessKey = \"AKIAEXAMPLE\"\nSecretKey = \"{secret}\"\n",
                sim.url()
            ),
        )
    };
    executor("wJalOLDrXUtnFEMIK7MDENG");
    assert_eq!(host.run(&[]).code, 0);
    assert!(
        host.config()
            .contains("SecretKey = \"wJalOLDrXUtnFEMIK7MDENG\"")
    );

    executor("wJalNEWrXUtnFEMIK7MDENG");
    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(
        dry.stdout
            .contains("(only secret values change; they are not shown)"),
        "{dry:?}"
    );
    assert!(!dry.all_output().contains("OLDrXU"), "{dry:?}");
    assert!(!dry.all_output().contains("NEWrXU"), "{dry:?}");
    assert!(host.config().contains("wJalOLDrXUtnFEMIK7MDENG"));

    // A visible change shows the masked key and not its value.
    executor("zzzzNEWrXUtnFEMIK7MDENG");
    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(dry.stdout.contains("-SecretKey = \"wJal…\"\n"), "{dry:?}");
    assert!(dry.stdout.contains("+SecretKey = \"zzzz…\"\n"), "{dry:?}");
    assert!(
        dry.stdout.contains(" AccessKey = \"AKIAEXAMPLE\"\n"),
        "{dry:?}"
    );

    assert_eq!(host.run(&[]).code, 0);
    assert!(
        host.config()
            .contains("SecretKey = \"zzzzNEWrXUtnFEMIK7MDENG\"")
    );
    assert_eq!(host.run(&["--dry-run"]).code, 0);
}

#[test]
fn a_comment_after_inline_client_configs_stays_out() {
    let sim = Sim::start();
    let host = Host::new();
    host.write_template(&format!(
        "concurrent = 4\nclient_configs = [{{ url = \"{}\", personal_access_token = \"{ADMIN_PAT}\" }}]\n\
         # personal_access_token = \"8HxyzOLDSECRETabcdef\"\nsession_server.listen_address = \"[::]:8093\"\n",
        sim.url()
    ));
    host.shell_executor(&sim.url());
    let dry = host.run(&["--dry-run"]);
    assert_eq!(dry.code, 2, "{dry:?}");
    assert!(!dry.all_output().contains("OLDSECRET"), "{dry:?}");
    assert_eq!(host.run(&[]).code, 0);
    let config = host.config();
    assert!(!config.contains("OLDSECRET"), "{config}");
    assert!(
        config.contains("session_server.listen_address = \"[::]:8093\""),
        "{config}"
    );
}

/// The report an operator reads before applying, whole: one of each action
/// (create, update, rotate, delete, keep), as text and as JSON.
#[test]
fn the_report_of_every_kind_of_change_as_text_and_json() {
    let sim = sim_issuing_due_tokens();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    host.remove_executor("20-docker.toml");
    host.write_executor(
        "10-shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nenv_tags = [\"SITE_TAG\"]\ntags = [\"fast\", \"new\"]\n",
            sim.url()
        ),
    );
    host.write_executor(
        "40-batch.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"batch\"\n",
            sim.url()
        ),
    );
    sim.clear_requests();

    let text = host.run(&["--dry-run"]);
    assert_eq!(text.code, 2, "{text:?}");
    let json = host.run(&["--dry-run", "--output", "json"]);
    assert_eq!(json.code, 2, "{json:?}");
    no_writes(&sim);
    assert_no_secret(&text, &secrets(&sim));
    assert_no_secret(&json, &secrets(&sim));
    let report: serde_json::Value =
        serde_json::from_str(&json.stdout).expect("stdout is one JSON document");
    let mut settings = snapshot_settings(&host);
    // GitLab assigns ids in the order creates arrive, and a first run's
    // creates overlap: the ids are GitLab's, like the port.
    settings.add_filter(r"#[0-9]+\b", "#[ID]");
    settings.add_filter(r"\bid = [0-9]+", "id = [ID]");
    settings.add_filter(r#""id": [0-9]+"#, r#""id": [ID]"#);
    settings.bind(|| {
        insta::assert_snapshot!("dry_run_text", text.stdout);
        insta::assert_snapshot!(
            "dry_run_json",
            serde_json::to_string_pretty(&report).unwrap()
        );
    });
}
