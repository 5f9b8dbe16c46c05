//! The sync (SPEC §2–§4, §7): register, restore, delete, write.

use gitlab_sim::{ADMIN_PAT, CreatedBy, REGISTRATION_TOKEN, SeedRunner, Sim, SimOptions, USER_PAT};

use crate::support::*;

/// A `[[runners]]` entry written: gitlab-runner's keys first, in its
/// order, and the id, token and url of a runner GitLab has.
fn assert_entry_of_a_gitlab_runner(
    entry: &toml_edit::Table,
    runners: &[gitlab_sim::RunnerState],
    sim: &Sim,
) {
    let keys: Vec<&str> = entry.iter().map(|(k, _)| k).take(7).collect();
    assert_eq!(
        keys,
        [
            "name",
            "url",
            "id",
            "token",
            "token_obtained_at",
            "token_expires_at",
            "executor"
        ]
    );
    let server = runners
        .iter()
        .find(|r| r.id as i64 == table_int(entry, "id"))
        .unwrap();
    assert_eq!(table_str(entry, "token"), server.token);
    assert_eq!(table_str(entry, "url"), sim.url());
    assert!(
        entry
            .get("token_expires_at")
            .unwrap()
            .as_datetime()
            .is_some()
    );
}

#[test]
fn fresh_host_creates_three_runners_and_writes_config() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);

    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");

    let runners = sim.runners();
    assert_eq!(runners.len(), 3, "{runners:#?}");
    for r in &runners {
        assert!(has_identifying_tags(r), "{r:#?}");
        assert!(!r.run_untagged, "{r:#?}");
        assert_eq!(r.created_by, CreatedBy::Pat);
        assert!(r.token.starts_with("glrt-"));
    }
    let shell = runners
        .iter()
        .find(|r| r.description == "ci-node01 main shell Runner")
        .unwrap();
    for tag in ["shell", "site-a", "fast"] {
        assert!(
            shell.tag_list.iter().any(|t| t == tag),
            "{tag} missing: {:?}",
            shell.tag_list
        );
    }
    let requests = sim.requests();
    assert_eq!(count(&requests, "POST", "/api/v4/user/runners"), 3);

    let config = host.config();
    assert!(
        config.starts_with("# Global settings for gitlab-runner\nconcurrent = 4\n"),
        "{config}"
    );
    assert!(config.contains("[session_server]"), "{config}");
    for forbidden in [
        "client_configs",
        "env_tags",
        "tags =",
        "personal_access_token",
        "description",
    ] {
        assert!(
            !config.contains(forbidden),
            "{forbidden} in config:\n{config}"
        );
    }
    assert!(
        config.contains("[runners.docker]\nimage = \"alpine:3\""),
        "{config}"
    );
    assert!(config.contains("[runners.custom]\nrun_exec"), "{config}");
    let entries = host.config_runners();
    assert_eq!(entries.len(), 3);
    let names: Vec<String> = entries.iter().map(|t| table_str(t, "name")).collect();
    assert_eq!(
        names,
        [
            "ci-node01 main shell Runner",
            "ci-node01 main docker Runner",
            "ci-node01 main custom Runner"
        ]
    );
    for entry in &entries {
        assert_entry_of_a_gitlab_runner(entry, &runners, &sim);
    }
    assert!(
        config.contains("token_expires_at = 0001-01-01T00:00:00Z"),
        "{config}"
    );
    assert_eq!(Host::mode(&host.config_path()), 0o600);

    let system_id = host.system_id();
    assert!(
        system_id.len() == 14 && (system_id.starts_with("s_") || system_id.starts_with("r_")),
        "{system_id}"
    );
    assert_eq!(Host::mode(&host.system_id_path()), 0o600);
    // every verify carried this host's system id
    for r in requests
        .iter()
        .filter(|r| r.path == "/api/v4/runners/verify")
    {
        assert_eq!(r.body["system_id"], system_id.as_str());
    }
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn restarts_change_nothing() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let config = host.config();
    let mtime = host.config_mtime();
    let system_id = host.system_id();
    let ids: Vec<u64> = sim.runners().iter().map(|r| r.id).collect();

    for _ in 0..3 {
        std::thread::sleep(std::time::Duration::from_millis(20));
        sim.clear_requests();
        let run = host.run(&[]);
        assert_eq!(run.code, 0, "{run:?}");
        let requests = sim.requests();
        assert_eq!(mutating(&requests), Vec::<String>::new());
        // each held token verified once, one listing
        assert_eq!(count(&requests, "POST", "/api/v4/runners/verify"), 3);
        assert_eq!(count(&requests, "GET", "/api/v4/runners/all"), 1);
        assert_eq!(host.config(), config);
        assert_eq!(host.config_mtime(), mtime);
        assert_eq!(host.system_id(), system_id);
    }
    assert_eq!(sim.runners().iter().map(|r| r.id).collect::<Vec<_>>(), ids);
    // the runner managers are this host's, one each
    for r in sim.runners() {
        assert_eq!(r.managers.len(), 1, "{r:#?}");
        assert_eq!(r.managers[0].system_id, system_id);
    }
}

#[test]
fn removed_executor_is_deleted_and_others_are_untouched() {
    let sim = Sim::start();
    let other_host = sim.seed_runner(SeedRunner {
        description: "other-host01 main shell Runner".into(),
        tag_list: vec![
            "other-host01".into(),
            "other-host".into(),
            "managed".into(),
            "main".into(),
        ],
        ..Default::default()
    });
    let unmanaged = sim.seed_runner(SeedRunner {
        description: "ci-node01 main shell Runner".into(),
        tag_list: vec!["ci-node01".into(), "ci-node".into(), "main".into()],
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let docker = sim
        .runners()
        .into_iter()
        .find(|r| r.description == "ci-node01 main docker Runner")
        .unwrap();

    host.remove_executor("20-docker.toml");
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.runner(docker.id).is_none(),
        "docker runner still in GitLab"
    );
    assert!(
        sim.runner(other_host.id).is_some(),
        "other host's runner deleted"
    );
    assert!(
        sim.runner(unmanaged.id).is_some(),
        "runner without `managed` deleted"
    );
    assert_eq!(mutating(&sim.requests()), ["DELETE /api/v4/runners"]);
    let names: Vec<String> = host
        .config_runners()
        .iter()
        .map(|t| table_str(t, "name"))
        .collect();
    assert_eq!(
        names,
        [
            "ci-node01 main shell Runner",
            "ci-node01 main custom Runner"
        ]
    );
    assert!(!host.config().contains("docker"));
}

#[test]
fn unknown_runner_of_this_host_is_deleted() {
    let sim = Sim::start();
    let leftover = sim.seed_runner(SeedRunner {
        description: "ci-node01 main batch Runner".into(),
        tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(sim.runner(leftover.id).is_none());
    let deletes: Vec<_> = sim
        .requests()
        .into_iter()
        .filter(|r| r.method == "DELETE")
        .collect();
    assert_eq!(deletes.len(), 1);
    assert_eq!(deletes[0].path, format!("/api/v4/runners/{}", leftover.id));
    assert_eq!(sim.runners().len(), 1);
}

#[test]
fn lost_config_replaces_the_runner_instead_of_duplicating_it() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let old = sim.runners()[0].clone();

    std::fs::remove_file(host.config_path()).unwrap();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let runners = sim.runners();
    assert_eq!(runners.len(), 1, "{runners:#?}");
    assert_ne!(runners[0].id, old.id);
    assert_eq!(
        table_str(&host.config_runners()[0], "token"),
        runners[0].token
    );
    assert!(
        sim.requests()
            .iter()
            .any(|r| r.method == "DELETE" && r.path == format!("/api/v4/runners/{}", old.id))
    );
}

#[test]
fn lost_config_on_a_patched_server_restores_the_token() {
    let sim = Sim::start_with(SimOptions {
        patched: true,
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let old = sim.runners()[0].clone();

    std::fs::remove_file(host.config_path()).unwrap();
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(sim.runners(), vec![sim.runner(old.id).unwrap()]);
    let entry = &host.config_runners()[0];
    assert_eq!(table_str(entry, "token"), old.token);
    assert_eq!(table_int(entry, "id"), old.id as i64);
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn runner_deleted_in_gitlab_is_recreated() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let old = sim.runners()[0].clone();
    assert!(sim.remove_runner(old.id));

    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let runners = sim.runners();
    assert_eq!(runners.len(), 1);
    assert_ne!(runners[0].token, old.token);
    let entry = &host.config_runners()[0];
    assert_eq!(table_str(entry, "token"), runners[0].token);
    assert_eq!(table_int(entry, "id"), runners[0].id as i64);
}

#[test]
fn registration_token_registers_with_post_runners() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let requests = sim.requests();
    assert_eq!(count(&requests, "POST", "/api/v4/runners"), 1);
    assert_eq!(count(&requests, "POST", "/api/v4/user/runners"), 0);
    let runners = sim.runners();
    assert_eq!(runners[0].created_by, CreatedBy::RegistrationToken);
    assert!(has_identifying_tags(&runners[0]));
    assert_eq!(
        table_str(&host.config_runners()[0], "token"),
        runners[0].token
    );

    // restart: verified, nothing registered again; removal deletes by token
    sim.clear_requests();
    assert_eq!(host.run(&[]).code, 0);
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    host.remove_executor("shell.toml");
    let run = host.run(&["--allow-empty"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(sim.runners().is_empty());
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn executor_with_its_own_token_is_verified_and_only_its_manager_removed() {
    let sim = Sim::start();
    let ui = sim.seed_runner(SeedRunner {
        description: "made in the UI".into(),
        tag_list: vec!["gpu".into()],
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    host.write_executor(
        "ui.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"gpu runner\"\ntoken = \"{}\"\n",
            sim.url(),
            ui.token
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        count(&sim.requests(), "POST", "/api/v4/user/runners"),
        1,
        "only the shell runner is created"
    );
    let ui_now = sim.runner(ui.id).unwrap();
    assert_eq!(ui_now.tag_list, ["gpu"], "UI runner must not be updated");
    assert_eq!(ui_now.managers.len(), 1);
    let entry = host
        .config_runners()
        .into_iter()
        .find(|t| table_str(t, "name") == "gpu runner")
        .unwrap();
    assert_eq!(table_str(&entry, "token"), ui.token);
    assert_eq!(table_int(&entry, "id"), ui.id as i64);

    host.remove_executor("ui.toml");
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        mutating(&sim.requests()),
        ["DELETE /api/v4/runners/managers"]
    );
    let ui_after = sim.runner(ui.id).expect("the UI runner stays in GitLab");
    assert!(ui_after.managers.is_empty(), "{ui_after:#?}");
    assert!(!host.config().contains("gpu runner"));
}

#[test]
fn disabled_registration_tokens_fail_with_the_cause_and_the_fix() {
    let (sim, host) = host_whose_creates_fail();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("410"), "{run:?}");
    assert!(
        run.stderr.contains("Registration tokens are disabled"),
        "{run:?}"
    );
    assert!(run.stderr.contains("personal_access_token"), "{run:?}");
    assert!(sim.runners().is_empty());
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn prefix_written_by_the_original_tool_is_adopted() {
    let sim = Sim::start();
    // The original registered without `managed` and wrote `description`.
    let original = sim.seed_runner(SeedRunner {
        description: "ci-node01 main shell Runner".into(),
        tag_list: vec![
            "ci-node01".into(),
            "ci-node".into(),
            "main".into(),
            "shell".into(),
        ],
        token: Some("legacytoken0123456789".into()),
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    std::fs::write(
        host.config_path(),
        format!(
            "concurrent = 4\n\n[[runners]]\ndescription = \"ci-node01 main shell Runner\"\nurl = \"{}\"\n\
             token = \"legacytoken0123456789\"\nexecutor = \"shell\"\ntags = [\"shell\"]\nenv_tags = []\n",
            sim.url()
        ),
    )
    .unwrap();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/user/runners"), 0);
    assert_eq!(sim.runners().len(), 1);
    let adopted = sim.runner(original.id).unwrap();
    assert!(
        has_identifying_tags(&adopted),
        "managed tag not added: {adopted:#?}"
    );
    assert_eq!(
        count(
            &sim.requests(),
            "PUT",
            &format!("/api/v4/runners/{}", original.id)
        ),
        1
    );
    let entry = &host.config_runners()[0];
    assert_eq!(table_str(entry, "name"), "ci-node01 main shell Runner");
    assert_eq!(table_int(entry, "id"), original.id as i64);
    assert_eq!(table_str(entry, "token"), "legacytoken0123456789");
    assert!(entry.get("description").is_none() && entry.get("tags").is_none());
}

#[test]
fn two_gitlabs_each_get_their_executors() {
    let a = Sim::start();
    let b = Sim::start();
    let host = Host::new();
    host.write_template(&format!(
        "concurrent = 4\n\n[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n\n\
         [[client_configs]]\nurl = \"{}\"\nregistration_token = \"{REGISTRATION_TOKEN}\"\n",
        a.url(),
        b.url()
    ));
    host.write_executor(
        "a-shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"on a\"\n",
            a.url()
        ),
    );
    host.write_executor(
        "b-shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"on b\"\n",
            b.url()
        ),
    );
    host.write_executor(
        "b-docker.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"docker\"\nname = \"on b too\"\n",
            b.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        a.runners()
            .iter()
            .map(|r| r.description.clone())
            .collect::<Vec<_>>(),
        ["on a"]
    );
    let mut on_b: Vec<String> = b.runners().iter().map(|r| r.description.clone()).collect();
    on_b.sort();
    assert_eq!(on_b, ["on b", "on b too"]);
    let entries = host.config_runners();
    assert_eq!(entries.len(), 3);
    for entry in &entries {
        let url = table_str(entry, "url");
        let sim = if url == a.url() { &a } else { &b };
        assert!(
            sim.runners()
                .iter()
                .any(|r| r.token == table_str(entry, "token"))
        );
    }
}

#[test]
fn group_runners_with_a_non_admin_pat_fall_back_to_get_runners() {
    let sim = Sim::start();
    let host = Host::new();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{USER_PAT}\"\nrunner_type = \"group_type\"\ngroup_id = {}\n",
        sim.url(),
        gitlab_sim::OWNED_GROUP_ID
    ));
    host.shell_executor(&sim.url());
    assert_eq!(host.run(&[]).code, 0);
    assert_eq!(sim.runners()[0].runner_type, "group_type");
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let requests = sim.requests();
    assert_eq!(count(&requests, "GET", "/api/v4/runners/all"), 1);
    assert_eq!(count(&requests, "GET", "/api/v4/runners"), 1);
    assert_eq!(mutating(&requests), Vec::<String>::new());
}

#[test]
fn changed_tags_are_updated_in_place() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let id = sim.runners()[0].id;
    host.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\ntags = [\"big-memory\"]\nlocked = true\n",
            sim.url()
        ),
    );
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        mutating(&sim.requests()),
        [format!("PUT /api/v4/runners/{id}")]
    );
    let runner = sim.runner(id).unwrap();
    assert!(runner.locked);
    assert!(runner.tag_list.iter().any(|t| t == "big-memory"));
}

#[test]
fn a_token_near_expiry_is_rotated_and_saved() {
    let sim = sim_issuing_due_tokens();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let first = sim.runners()[0].clone();
    assert!(host.config().contains(&first.token));
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        count(
            &sim.requests(),
            "POST",
            "/api/v4/runners/reset_authentication_token"
        ),
        1
    );
    let now = sim.runner(first.id).unwrap();
    assert_ne!(now.token, first.token);
    assert_eq!(table_str(&host.config_runners()[0], "token"), now.token);
}

/// What gitlab-runner does at 75 % of a token's life: reset it and write
/// the new token into the config.
fn rotate_like_gitlab_runner(sim: &Sim, host: &Host, old: &str) -> String {
    let url = format!("{}/api/v4/runners/reset_authentication_token", sim.url());
    let body = serde_json::json!({ "token": old });
    let answer: serde_json::Value = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
        .block_on(async {
            reqwest::Client::new()
                .post(url)
                .json(&body)
                .send()
                .await?
                .json()
                .await
        })
        .unwrap();
    let new = answer["token"].as_str().unwrap().to_string();
    std::fs::write(host.config_path(), host.config().replace(old, &new)).unwrap();
    new
}

#[test]
fn a_token_rotated_by_gitlab_runner_is_kept() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let ui = sim.seed_runner(SeedRunner {
        description: "ui".into(),
        ..Default::default()
    });
    host.write_executor(
        "ui.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"ui runner\"\ntoken = \"{}\"\n",
            sim.url(),
            ui.token
        ),
    );
    assert_eq!(host.run(&[]).code, 0);
    let shell = sim.runners().into_iter().find(|r| r.id != ui.id).unwrap();
    let new_shell = rotate_like_gitlab_runner(&sim, &host, &shell.token);
    let new_ui = rotate_like_gitlab_runner(&sim, &host, &ui.token);
    let config = host.config();

    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(host.config(), config, "the rotated tokens must stay");
    assert!(config.contains(&new_shell) && config.contains(&new_ui));
    assert_eq!(sim.runners().len(), 2);
}

#[test]
fn a_new_ui_token_in_the_executor_file_replaces_the_old_runner_here() {
    let sim = Sim::start();
    let first = sim.seed_runner(SeedRunner {
        description: "first".into(),
        ..Default::default()
    });
    let second = sim.seed_runner(SeedRunner {
        description: "second".into(),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    let file = |token: &str| {
        format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"ui runner\"\ntoken = \"{token}\"\n",
            sim.url()
        )
    };
    host.write_executor("ui.toml", &file(&first.token));
    assert_eq!(host.run(&[]).code, 0);
    host.write_executor("ui.toml", &file(&second.token));
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(
        mutating(&sim.requests()),
        ["DELETE /api/v4/runners/managers"]
    );
    assert!(
        sim.runner(first.id).unwrap().managers.is_empty(),
        "old runner keeps this host's manager"
    );
    assert_eq!(sim.runner(second.id).unwrap().managers.len(), 1);
    let entry = &host.config_runners()[0];
    assert_eq!(table_str(entry, "token"), second.token);
    assert_eq!(table_int(entry, "id"), second.id as i64);
}

#[test]
fn a_token_gitlab_runner_rotates_during_a_run_is_not_overwritten() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.write_executor(
        "a.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"a\"\n",
            sim.url()
        ),
    );
    assert_eq!(host.run(&[]).code, 0);
    let a = sim.runners()[0].clone();
    // Next run: two runners to create (two writes of the output).
    for name in ["b", "c"] {
        host.write_executor(
            &format!("{name}.toml"),
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\nname = \"{name}\"\n",
                sim.url()
            ),
        );
    }
    // GitLab has checked a's token, and before the run hears so,
    // gitlab-runner (still running) rotates it and rewrites the config.
    let verified = sim.hold_answer("POST", "/api/v4/runners/verify");
    sim.clear_requests();
    let child = host
        .command(&["--timeout", "30"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    assert!(verified.wait_handled());
    let rotated = rotate_like_gitlab_runner(&sim, &host, &a.token);
    verified.release();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let entry = host
        .config_runners()
        .into_iter()
        .find(|t| table_str(t, "name") == "a")
        .unwrap();
    assert_eq!(
        table_str(&entry, "token"),
        rotated,
        "the rotated token was overwritten by the old one"
    );
    assert_eq!(sim.runners().len(), 3);
}

#[test]
fn a_settings_update_gitlab_refuses_is_a_warning() {
    let sim = Sim::start();
    // An instance runner of the original tool (no `managed` tag), adopted by
    // a host whose PAT belongs to a group Owner: it may read, not update it.
    let original = sim.seed_runner(SeedRunner {
        description: "ci-node01 main shell Runner".into(),
        tag_list: vec!["ci-node01".into(), "ci-node".into(), "main".into()],
        token: Some("legacytoken0123456789".into()),
        ..Default::default()
    });
    let host = Host::new();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{USER_PAT}\"\nrunner_type = \"group_type\"\ngroup_id = {}\n",
        sim.url(),
        gitlab_sim::OWNED_GROUP_ID
    ));
    host.shell_executor(&sim.url());
    std::fs::write(
        host.config_path(),
        format!(
            "[[runners]]\ndescription = \"ci-node01 main shell Runner\"\nurl = \"{}\"\ntoken = \"legacytoken0123456789\"\nexecutor = \"shell\"\n",
            sim.url()
        ),
    )
    .unwrap();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(run.stderr.contains("cannot update its settings"), "{run:?}");
    let put = sim
        .requests()
        .into_iter()
        .find(|r| r.method == "PUT")
        .expect("an update was tried");
    assert_eq!(put.status, 403);
    assert_eq!(sim.runners().len(), 1);
    assert_eq!(
        table_int(&host.config_runners()[0], "id"),
        original.id as i64
    );
}

#[test]
fn the_tools_own_rotation_is_not_taken_for_gitlab_runners() {
    let sim = sim_issuing_due_tokens();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    let run = host.run(&[]);
    assert!(run.stderr.contains("rotating token"), "{run:?}");
    assert!(!run.stderr.contains("gitlab-runner rotated"), "{run:?}");
}

/// SPEC §4.5: a new token is saved the moment GitLab issues it. With only a
/// registration token nothing could find the runner again (no listing), so
/// a run killed while it verifies the new token must already have saved it.
#[test]
fn a_new_token_is_saved_before_it_is_verified() {
    use std::process::Stdio;
    use std::time::Duration;

    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    sim.set_latency(Some(Duration::from_millis(500)));
    let mut child = host
        .command(&["--timeout", "30"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    assert!(
        eventually(|| count(&sim.requests(), "POST", "/api/v4/runners") > 0),
        "no create"
    );
    // The verify that follows the create now waits out the latency.
    assert!(
        eventually(|| sim
            .in_flight()
            .iter()
            .any(|r| r.path == "/api/v4/runners/verify")),
        "no verify"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        count(&sim.requests(), "POST", "/api/v4/runners/verify"),
        0,
        "the kill was meant to land during the verify"
    );
    let runners = sim.runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(
        table_str(&host.config_runners()[0], "token"),
        runners[0].token,
        "the token was not saved before the verify"
    );

    sim.set_latency(None);
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_eq!(sim.runners().len(), 1);
}
