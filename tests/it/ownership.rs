//! Ownership and token safety: a host never touches another host's or a
//! UI-made runner, and no token is ever left in no file. (Regression tests
//! from the review of the sync.)

use gitlab_sim::{ADMIN_PAT, REGISTRATION_TOKEN, SeedRunner, Sim};

use crate::support::*;

/// Host `ci-node` (no digits) has identifying tags {ci-node, managed, main},
/// a subset of ci-node01's {ci-node01, ci-node, managed, main}: the listing
/// returns ci-node01's runners too, and their managers tell them apart.
#[test]
fn a_host_without_digits_leaves_its_numbered_siblings_runners_alone() {
    let sim = Sim::start();
    let node01 = Host::with_hostname("ci-node01");
    node01.set_system_id("r_node01000000");
    node01.template_with_pat(&sim.url(), ADMIN_PAT);
    node01.shell_executor(&sim.url());
    assert_eq!(node01.run(&[]).code, 0);
    let before: Vec<u64> = sim.runners().iter().map(|r| r.id).collect();
    assert_eq!(before.len(), 1);

    let node = Host::with_hostname("ci-node");
    node.set_system_id("r_node00000000");
    node.template_with_pat(&sim.url(), ADMIN_PAT);
    node.write_executor(
        "docker.toml",
        &format!("url = \"{}\"\nexecutor = \"docker\"\n", sim.url()),
    );
    let run = node.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    for id in before {
        assert!(
            sim.runner(id).is_some(),
            "ci-node deleted ci-node01's runner #{id}"
        );
    }
    assert!(run.stderr.contains("another host"), "{run:?}");
    assert_eq!(sim.runners().len(), 2);
}

/// The same through a static tag: host `gpu` and another host's runner
/// tagged `gpu`.
#[test]
fn a_host_named_like_a_tag_leaves_other_hosts_runners_alone() {
    let sim = Sim::start();
    let other = Host::with_hostname("build7");
    other.set_system_id("r_build7000000");
    other.template_with_pat(&sim.url(), ADMIN_PAT);
    other.write_executor(
        "gpu.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\ntags = [\"gpu\"]\n",
            sim.url()
        ),
    );
    assert_eq!(other.run(&[]).code, 0);
    let before: Vec<u64> = sim.runners().iter().map(|r| r.id).collect();

    let gpu = Host::with_hostname("gpu");
    gpu.set_system_id("r_gpu000000000");
    gpu.template_with_pat(&sim.url(), ADMIN_PAT);
    gpu.shell_executor(&sim.url());
    let dry = gpu.run(&["--dry-run"]);
    assert!(!dry.stdout.contains("delete"), "{dry:?}");
    let run = gpu.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    for id in before {
        assert!(
            sim.runner(id).is_some(),
            "host gpu deleted build7's runner #{id}"
        );
    }
}

/// Removing a client_configs entry (and its executors) keeps the entries of
/// its runners, with a warning: their tokens are not silently dropped.
#[test]
fn a_removed_client_config_keeps_its_runners_tokens() {
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
        "a.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"on a\"\n",
            a.url()
        ),
    );
    host.write_executor(
        "b.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"on b\"\n",
            b.url()
        ),
    );
    assert_eq!(host.run(&[]).code, 0);
    let b_runner = b.runners()[0].clone();

    host.template_with_pat(&a.url(), ADMIN_PAT);
    host.remove_executor("b.toml");
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let still = b.runner(b_runner.id).is_some();
    let held = host.config().contains(&b_runner.token);
    assert!(
        !still || held,
        "runner #{} still in GitLab b, its token in no file",
        b_runner.id
    );
}

/// Removing `token` from an executor file that used a UI-made runner: the
/// tool makes a runner of its own and releases only this host's manager of
/// the UI runner, which it never updates or deletes.
#[test]
fn removing_token_from_an_executor_file_never_takes_over_the_ui_runner() {
    let sim = Sim::start();
    let ui = sim.seed_runner(SeedRunner {
        description: "shared UI runner".into(),
        tag_list: vec!["gpu".into()],
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.write_executor(
        "ui.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"gpu runner\"\ntoken = \"{}\"\n",
            sim.url(),
            ui.token
        ),
    );
    assert_eq!(host.run(&[]).code, 0);
    // The operator removes the token line: wants a runner of the tool's own.
    host.write_executor(
        "ui.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"gpu runner\"\n",
            sim.url()
        ),
    );
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let mut calls = mutating(&sim.requests());
    calls.sort();
    assert_eq!(
        calls,
        [
            "DELETE /api/v4/runners/managers",
            "POST /api/v4/user/runners"
        ]
    );
    let after = sim.runner(ui.id).unwrap();
    assert_eq!(after.tag_list, ["gpu"], "UI runner was modified");
    assert_eq!(after.description, "shared UI runner");
    assert!(
        after.managers.is_empty(),
        "this host's manager of the UI runner is still there"
    );
    let own = sim.runners().into_iter().find(|r| r.id != ui.id).unwrap();
    assert!(has_identifying_tags(&own));
    assert_eq!(table_str(&host.config_runners()[0], "token"), own.token);

    host.remove_executor("ui.toml");
    let run = host.run(&["--allow-empty"]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.runner(ui.id).is_some(),
        "the shared UI runner was deleted whole"
    );
    assert!(sim.runner(own.id).is_none());
}

/// Two [[runners]] entries with the same name in the last output: the one
/// not used is deleted, not forgotten.
#[test]
fn two_entries_of_one_name_in_the_last_output_lose_no_token() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    assert_eq!(host.run(&[]).code, 0);
    let first = sim.runners()[0].clone();
    // gitlab-runner register (or the original) appended an entry of the same name
    let extra = sim.seed_runner(SeedRunner {
        description: "ci-node01 main shell Runner".into(),
        token: Some("glrtr-extra0123456789".into()),
        ..Default::default()
    });
    let mut cfg = host.config();
    cfg.push_str(&format!("\n[[runners]]\nname = \"ci-node01 main shell Runner\"\nurl = \"{}\"\nid = {}\ntoken = \"{}\"\nexecutor = \"shell\"\n", sim.url(), extra.id, extra.token));
    std::fs::write(host.config_path(), cfg).unwrap();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.runner(first.id).is_some(),
        "the runner in use was deleted"
    );
    assert!(
        sim.runner(extra.id).is_none(),
        "the second runner of that name was kept"
    );
    assert_eq!(host.config_runners().len(), 1);
    assert!(host.config().contains(&first.token));
}

/// Two instances on one prefix (gitlab-runner@main and @batch): one's
/// clean-up of stale temp files never removes the other's file mid-write.
#[test]
fn another_instance_on_the_same_prefix_never_loses_a_token() {
    let sim = Sim::start();
    let a = Host::new();
    a.template_with_pat(&sim.url(), ADMIN_PAT);
    for i in 0..60 {
        a.write_executor(
            &format!("{i:02}.toml"),
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\nname = \"r{i}\"\n",
                sim.url()
            ),
        );
    }
    let b = Host {
        dir: tempfile::tempdir().unwrap(),
        prefix: a.prefix.clone(),
        instance: "batch".into(),
        hostname: a.hostname.clone(),
    };
    std::fs::create_dir(b.executor_dir()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(b.executor_dir(), std::fs::Permissions::from_mode(0o700)).unwrap();
    b.write_template(&format!("concurrent = 1\n[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n", sim.url()));
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let s2 = stop.clone();
    let bg = std::thread::spawn(move || {
        let mut n = 0;
        while !s2.load(std::sync::atomic::Ordering::SeqCst) {
            let _ = b.run(&["--allow-empty", "-q"]);
            n += 1;
        }
        n
    });
    let run = a.run(&[]);
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let runs = bg.join().unwrap();
    assert_eq!(run.code, 0, "{run:?}");
    assert!(runs > 0);
    let lost: Vec<_> = sim
        .runners()
        .into_iter()
        .filter(|r| !a.config().contains(&r.token))
        .map(|r| r.id)
        .collect();
    assert!(
        lost.is_empty(),
        "runners whose token is in no file: {lost:?}"
    );
}

/// A UI runner whose token is due for rotation, its token in the executor file of two
/// hosts, each started once.
fn two_hosts_sharing_a_ui_token() -> (Sim, [Host; 2]) {
    let sim = sim_issuing_due_tokens();
    let ui = sim.seed_runner(SeedRunner {
        description: "shared".into(),
        ..Default::default()
    });
    let hosts = [
        Host::with_hostname("ci-node01"),
        Host::with_hostname("ci-node02"),
    ];
    for (i, h) in hosts.iter().enumerate() {
        h.set_system_id(&format!("r_host{i:08}"));
        h.template_with_pat(&sim.url(), ADMIN_PAT);
        h.write_executor(
            "ui.toml",
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\nname = \"shared\"\ntoken = \"{}\"\n",
                sim.url(),
                ui.token
            ),
        );
        assert_eq!(h.run(&[]).code, 0);
    }
    (sim, hosts)
}

/// A UI-made runner's token is meant to be shared by many hosts (one runner,
/// one manager per host): rotating it on one would lock the others out, so
/// it is left alone with a warning.
#[test]
fn a_shared_ui_token_is_not_rotated() {
    let (sim, hosts) = two_hosts_sharing_a_ui_token();
    sim.clear_requests();
    let a = hosts[0].run(&[]);
    assert_eq!(a.code, 0, "{a:?}");
    assert!(a.stderr.contains("near its expiry"), "{a:?}");
    assert_eq!(
        count(
            &sim.requests(),
            "POST",
            "/api/v4/runners/reset_authentication_token"
        ),
        0
    );
    let b = hosts[1].run(&[]);
    assert_eq!(
        b.code, 0,
        "host 2 broken by host 1's rotation of the shared UI token"
    );
}

/// An expired or revoked PAT: every runner token still verifies and nothing
/// is to be created, so the host starts (SPEC §4.6); nothing is deleted.
#[test]
fn an_expired_pat_does_not_stop_a_host_whose_tokens_verify() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    host.template_with_pat(&sim.url(), "glpat-expired-0000000000");
    let run = host.run(&[]);
    assert_eq!(
        run.code, 0,
        "every executor has a verified token (SPEC §4.6): {run:?}"
    );
    assert!(
        run.stderr.contains("401"),
        "the listing failure is reported: {run:?}"
    );
}

/// A rotation that GitLab carried out but whose answer was lost (a proxy's
/// 502 after the handler ran) is not repeated: a repeat would present the
/// replaced token and fail anyway. The run fails; with a PAT the next run
/// finds the runner whose token was lost and replaces it.
#[test]
fn a_reset_is_never_repeated_once_it_may_have_reached_gitlab() {
    let sim = sim_issuing_due_tokens();
    sim.fail_once_after_handler("POST", "/api/v4/runners/reset_authentication_token");
    let url = sim.url();
    let host = Host::new();
    host.template_with_pat(&url, ADMIN_PAT);
    host.write_executor(
        "shell.toml",
        &format!("url = \"{url}\"\nexecutor = \"shell\"\n"),
    );
    assert_eq!(host.run(&[]).code, 0);
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("not repeated"), "{run:?}");
    assert_eq!(
        count(
            &sim.requests(),
            "POST",
            "/api/v4/runners/reset_authentication_token"
        ),
        1
    );
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    let runners = sim.runners();
    assert_eq!(runners.len(), 1, "{runners:#?}");
    assert!(host.config().contains(&runners[0].token));
}

#[test]
fn switching_to_a_ui_token_deletes_the_tools_own_runner() {
    let sim = Sim::start();
    let ui = sim.seed_runner(SeedRunner {
        description: "ui runner".into(),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    assert_eq!(host.run(&[]).code, 0);
    let own = sim.runners().into_iter().find(|r| r.id != ui.id).unwrap();
    host.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\ntoken = \"{}\"\n",
            sim.url(),
            ui.token
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.runner(own.id).is_none(),
        "the tool's own runner #{} is orphaned: {run:?}",
        own.id
    );
    assert_eq!(table_str(&host.config_runners()[0], "token"), ui.token);
}

#[test]
fn a_siblings_runner_whose_manager_went_stale_is_not_deleted() {
    let sim = Sim::start();
    let node01 = Host::with_hostname("ci-node01");
    node01.set_system_id("r_node01000000");
    node01.template_with_pat(&sim.url(), ADMIN_PAT);
    node01.shell_executor(&sim.url());
    assert_eq!(node01.run(&[]).code, 0);
    let theirs = sim.runners()[0].clone();
    // GitLab's 7-day clean-up of stale managers.
    assert!(sim.expire_manager(theirs.id, "r_node01000000"));
    let node = Host::with_hostname("ci-node");
    node.set_system_id("r_node00000000");
    node.template_with_pat(&sim.url(), ADMIN_PAT);
    node.write_executor(
        "docker.toml",
        &format!("url = \"{}\"\nexecutor = \"docker\"\n", sim.url()),
    );
    let run = node.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        sim.runner(theirs.id).is_some(),
        "ci-node deleted ci-node01's runner: {run:?}"
    );
}

#[test]
fn a_patched_server_never_hands_a_siblings_runner_over() {
    let sim = Sim::start_with(gitlab_sim::SimOptions {
        patched: true,
        ..Default::default()
    });
    let exec = format!(
        "url = \"{}\"\nexecutor = \"shell\"\nname = \"batch\"\n",
        sim.url()
    );
    let node01 = Host::with_hostname("ci-node01");
    node01.set_system_id("r_node01000000");
    node01.template_with_pat(&sim.url(), ADMIN_PAT);
    node01.write_executor("batch.toml", &exec);
    assert_eq!(node01.run(&[]).code, 0);
    let theirs = sim.runners()[0].clone();
    let node = Host::with_hostname("ci-node");
    node.set_system_id("r_node00000000");
    node.template_with_pat(&sim.url(), ADMIN_PAT);
    node.write_executor("batch.toml", &exec);
    let run = node.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    let after = sim.runner(theirs.id).unwrap();
    assert_eq!(after.tag_list, theirs.tag_list, "tags rewritten: {run:?}");
    assert_eq!(
        after.managers.len(),
        1,
        "a manager of this host was added: {after:#?}"
    );
    assert!(
        !node.config().contains(&theirs.token),
        "took over ci-node01's runner"
    );
    assert_eq!(sim.runners().len(), 2);
}

#[test]
fn a_shared_ui_token_is_not_rotated_after_a_failed_listing() {
    let (sim, hosts) = two_hosts_sharing_a_ui_token();
    hosts[0].write_executor(
        "ui.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"shared\"\n",
            sim.url()
        ),
    );
    hosts[0].template_with_pat(&sim.url(), "glpat-expired-0000000000");
    let a = hosts[0].run(&[]);
    assert_eq!(
        count(
            &sim.requests(),
            "POST",
            "/api/v4/runners/reset_authentication_token"
        ),
        0,
        "{a:?}"
    );
    let b = hosts[1].run(&[]);
    assert_eq!(b.code, 0, "host 2 locked out:\n{a:?}\n{b:?}");
}

#[test]
fn a_ui_runner_is_released_only_once_its_replacement_exists() {
    let sim = Sim::start();
    let ui = sim.seed_runner(SeedRunner {
        description: "gpu".into(),
        ..Default::default()
    });
    let host = Host::new();
    // A group Owner's PAT cannot create instance runners.
    host.template_with_pat(&sim.url(), gitlab_sim::USER_PAT);
    host.write_executor(
        "gpu.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"gpu\"\ntoken = \"{}\"\n",
            sim.url(),
            ui.token
        ),
    );
    assert_eq!(host.run(&[]).code, 0);
    host.write_executor(
        "gpu.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"gpu\"\n",
            sim.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        host.config().contains(&ui.token),
        "working UI runner dropped: {run:?}"
    );
    assert_eq!(
        sim.runner(ui.id).unwrap().managers.len(),
        1,
        "its manager was removed"
    );
}

#[test]
fn a_rejected_executor_token_is_not_silently_replaced_by_the_old_runner() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    assert_eq!(host.run(&[]).code, 0);
    host.write_executor(
        "shell.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\ntoken = \"glrt-revokedrevoked0000\"\n",
            sim.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "the file's token was rejected, yet: {run:?}");
    assert!(
        run.stderr.contains("shell.toml") && run.stderr.contains("rejected"),
        "{run:?}"
    );
}
