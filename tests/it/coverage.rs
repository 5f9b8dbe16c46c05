//! Behaviour the other modules leave uncovered: no deletion after a failed
//! or incomplete listing, the tool's own pagination, 410 and other 4xx on
//! create, `--timeout` against a GitLab that hangs, the user agent, bounded
//! concurrency, and the tool-only executor keys.

use std::time::Duration;

use gitlab_sim::{
    ADMIN_PAT, ListingFault, REGISTRATION_TOKEN, RequestRecord, SeedRunner, Sim, SimOptions,
    USER_PAT,
};

use crate::support::*;

/// `MAX_IN_FLIGHT` of src/gitlab/client.rs, as the README documents it ("At
/// most 8 requests per GitLab are in flight").
const MAX_IN_FLIGHT: usize = 8;

/// Runners carrying this host's identifying tags, named with this host's
/// default prefix and without a manager: a complete listing makes them
/// this host's leftovers, to be deleted.
fn seed_leftovers(sim: &Sim, n: usize) -> Vec<u64> {
    (0..n)
        .map(|i| {
            sim.seed_runner(SeedRunner {
                description: format!("{HOSTNAME} {INSTANCE} leftover{i} Runner"),
                tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            })
            .id
        })
        .collect()
}

fn deletes(requests: &[RequestRecord]) -> Vec<String> {
    mutating(requests)
        .into_iter()
        .filter(|r| r.starts_with("DELETE "))
        .collect()
}

/// The query parameters of a logged request.
fn query(record: &RequestRecord) -> Vec<(String, String)> {
    reqwest::Url::parse(&format!("http://x/?{}", record.query))
        .unwrap()
        .query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn param(record: &RequestRecord, key: &str) -> Option<String> {
    query(record)
        .into_iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v)
}

/// The config entry of the executor of type `executor`: (id, token).
fn entry_of(host: &Host, executor: &str) -> (u64, String) {
    let entry = host
        .config_runners()
        .into_iter()
        .find(|e| table_str(e, "executor") == executor)
        .unwrap_or_else(|| panic!("no {executor} entry in\n{}", host.config()));
    (table_int(&entry, "id") as u64, table_str(&entry, "token"))
}

fn held_tokens(host: &Host) -> Vec<String> {
    host.config_runners()
        .iter()
        .map(|e| table_str(e, "token"))
        .collect()
}

// a. Never delete after a failed or partial listing.

#[test]
fn a_refused_listing_deletes_nothing() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let (docker_id, docker_token) = entry_of(&host, "docker");
    host.remove_executor("20-docker.toml");

    // The PAT expired: the listing answers 401.
    let expired = "glpat-expired-0123456789";
    host.template_with_pat(&sim.url(), expired);
    sim.clear_requests();
    let run = host.run(&[]);
    let log = sim.requests();
    assert!(
        log.iter()
            .any(|r| r.path == "/api/v4/runners/all" && r.status == 401),
        "the listing was not refused: {log:#?}"
    );
    assert_eq!(deletes(&log), Vec::<String>::new(), "{run:?}");
    assert_eq!(sim.runners().len(), 3);
    assert!(sim.runner(docker_id).is_some());
    assert!(
        held_tokens(&host).contains(&docker_token),
        "the token of a runner that could not be deleted was dropped:\n{}",
        host.config()
    );
    // README: a failed listing is a warning; every executor has its token.
    assert_eq!(run.code, 0, "{run:?}");
    let mut secret_list = secrets(&sim);
    secret_list.push(expired.to_string());
    assert_no_secret(&run, &secret_list);

    // With a good PAT the same run deletes it: the refusal was what held it.
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(deletes(&sim.requests()).len(), 1, "{:#?}", sim.requests());
    assert!(sim.runner(docker_id).is_none());
    assert!(!held_tokens(&host).contains(&docker_token));
}

fn an_incomplete_listing_deletes_nothing(fault: ListingFault) {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let (docker_id, docker_token) = entry_of(&host, "docker");
    // 3 + 98 = 101 of this host's runners: the first page (100) is full.
    let leftovers = seed_leftovers(&sim, 98);
    host.remove_executor("20-docker.toml");

    sim.set_listing_fault(Some(fault));
    sim.clear_requests();
    let run = host.run(&[]);
    let log = sim.requests();
    let pages: Vec<_> = log
        .iter()
        .filter(|r| r.path == "/api/v4/runners/all")
        .collect();
    assert!(
        pages
            .iter()
            .any(|r| r.status == 200 && param(r, "page").as_deref() == Some("1")),
        "{log:#?}"
    );
    assert_eq!(deletes(&log), Vec::<String>::new(), "{fault:?}: {run:?}");
    assert_eq!(sim.runners().len(), 101);
    assert!(
        held_tokens(&host).contains(&docker_token),
        "{fault:?}: the token of a runner that could not be deleted was dropped:\n{}",
        host.config()
    );
    assert!(
        run.stderr.contains("incomplete"),
        "{fault:?}: the incomplete listing is not reported: {run:?}"
    );
    // As for any failed listing (README): a warning, exit 0.
    assert_eq!(run.code, 0, "{fault:?}: {run:?}");
    assert_no_secret(&run, &secrets(&sim));

    // The same run with GitLab's headers deletes them all.
    sim.set_listing_fault(None);
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(deletes(&sim.requests()).len(), 99);
    assert!(sim.runner(docker_id).is_none());
    assert!(leftovers.iter().all(|id| sim.runner(*id).is_none()));
    assert_eq!(sim.runners().len(), 2);
}

#[test]
fn a_full_page_without_x_next_page_deletes_nothing() {
    an_incomplete_listing_deletes_nothing(ListingFault::NoNextPage);
}

#[test]
fn an_x_next_page_that_goes_nowhere_deletes_nothing() {
    an_incomplete_listing_deletes_nothing(ListingFault::NextPageRepeats);
}

// b. The tool's own pagination, end to end.

#[test]
fn every_page_of_the_listing_is_read() {
    let sim = Sim::start();
    let leftovers = seed_leftovers(&sim, 110);
    // On page 2, with the identifying tags but named like nothing here:
    // another's, left alone.
    let foreign: Vec<u64> = (0..5)
        .map(|i| {
            sim.seed_runner(SeedRunner {
                description: format!("ui runner {i}"),
                tag_list: IDENTIFYING.iter().map(|t| t.to_string()).collect(),
                ..Default::default()
            })
            .id
        })
        .collect();
    // Not listed at all: it lacks `managed`.
    let untagged = sim.seed_runner(SeedRunner {
        description: format!("{HOSTNAME} {INSTANCE} leftover Runner"),
        tag_list: vec![HOSTNAME.into(), "ci-node".into(), INSTANCE.into()],
        ..Default::default()
    });
    let host = Host::fresh(&sim, Executors::Shell);
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");

    let log = sim.requests();
    let pages: Vec<_> = log
        .iter()
        .filter(|r| r.method == "GET" && r.path == "/api/v4/runners/all" && r.status == 200)
        .collect();
    let mut tags = IDENTIFYING.to_vec();
    tags.sort();
    for page in &pages {
        assert_eq!(param(page, "per_page").as_deref(), Some("100"), "{page:?}");
        let mut asked: Vec<String> = param(page, "tag_list")
            .unwrap_or_default()
            .split(',')
            .map(str::to_string)
            .collect();
        asked.sort();
        assert_eq!(asked, tags, "{page:?}");
    }
    for n in ["1", "2"] {
        assert!(
            pages.iter().any(|p| param(p, "page").as_deref() == Some(n)),
            "page {n} never read: {pages:#?}"
        );
    }
    assert!(
        !pages
            .iter()
            .any(|p| param(p, "page").as_deref() == Some("3")),
        "{pages:#?}"
    );

    // Leftovers on both pages are gone; the rest stay.
    assert!(
        leftovers.iter().all(|id| sim.runner(*id).is_none()),
        "{:#?}",
        sim.runners()
    );
    assert!(foreign.iter().all(|id| sim.runner(*id).is_some()));
    assert!(sim.runner(untagged.id).is_some());
    let ours: Vec<_> = sim
        .runners()
        .into_iter()
        .filter(|r| r.created_by == gitlab_sim::CreatedBy::Pat)
        .collect();
    assert_eq!(ours.len(), 1, "{ours:#?}");
    assert_eq!(held_tokens(&host), vec![ours[0].token.clone()]);
    assert_eq!(sim.runners().len(), 1 + 5 + 1);
    assert_no_secret(&run, &secrets(&sim));
}

// c. 410 on a host that already has runners: nothing lost.

#[test]
fn registration_disabled_loses_nothing_on_an_existing_host() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_registration_token(&sim.url(), REGISTRATION_TOKEN);
    host.shell_executor(&sim.url());
    let first = host.run(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    let before = host.config();
    let (shell_id, shell_token) = entry_of(&host, "shell");

    host.write_executor(
        "docker.toml",
        &format!("url = \"{}\"\nexecutor = \"docker\"\n", sim.url()),
    );
    sim.set_registration_enabled(false);
    sim.clear_requests();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(
        run.stderr
            .to_lowercase()
            .contains("registration tokens are disabled"),
        "{run:?}"
    );
    let log = sim.requests();
    assert_eq!(count(&log, "POST", "/api/v4/runners"), 1, "{log:#?}");
    assert!(
        log.iter()
            .any(|r| r.method == "POST" && r.path == "/api/v4/runners" && r.status == 410)
    );
    assert_eq!(deletes(&log), Vec::<String>::new());
    assert!(sim.runner(shell_id).is_some());
    assert_eq!(sim.runners().len(), 1);
    assert_eq!(entry_of(&host, "shell"), (shell_id, shell_token));
    assert_eq!(host.config(), before, "the first runner's entry changed");
    assert_no_secret(&run, &secrets(&sim));
}

// d. Other 4xx fail at once.

#[test]
fn a_forbidden_create_fails_at_once() {
    let sim = Sim::start();
    let host = Host::new();
    // A non-admin PAT may not create instance runners (the default type).
    host.template_with_pat(&sim.url(), USER_PAT);
    host.shell_executor(&sim.url());
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    let log = sim.requests();
    assert_eq!(count(&log, "POST", "/api/v4/user/runners"), 1, "{log:#?}");
    assert!(
        log.iter()
            .all(|r| r.path != "/api/v4/user/runners" || r.status == 403)
    );
    assert!(run.stderr.contains("403"), "{run:?}");
    assert!(run.stderr.contains("/api/v4/user/runners"), "{run:?}");
    assert!(sim.runners().is_empty());
    assert!(
        !host.config_path().exists() || host.config_runners().is_empty(),
        "{}",
        host.config()
    );
    assert_no_secret(&run, &secrets(&sim));
}

// e. --timeout against a GitLab that hangs.

#[test]
fn a_hanging_gitlab_is_given_up_on_at_the_deadline() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    let config = host.config();
    let mtime = host.config_mtime();
    let secret_list = secrets(&sim);

    // Accepts connections, answers nothing within any sane deadline.
    sim.set_latency(Some(Duration::from_secs(30)));
    sim.clear_requests();
    let run = run_command(host.command(&["--timeout", "3"]));
    assert_eq!(run.code, 0, "{run:?}");
    assert!(
        !sim.requests().is_empty() || !sim.in_flight().is_empty(),
        "GitLab was never asked"
    );
    assert!(run.stderr.contains("unreachable"), "{run:?}");
    assert_eq!(host.config(), config);
    assert_eq!(host.config_mtime(), mtime);
    assert_no_secret(&run, &secret_list);

    let strict = run_command(host.command(&["--timeout", "3", "--strict"]));
    assert_eq!(strict.code, 1, "{strict:?}");
    assert_eq!(host.config(), config);
    assert_eq!(host.config_mtime(), mtime);
    assert_no_secret(&strict, &secret_list);
}

// f. The user agent.

#[test]
fn every_request_carries_the_user_agent() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Three);
    assert_eq!(host.run(&[]).code, 0);
    host.remove_executor("30-custom.toml");
    assert_eq!(host.run(&[]).code, 0);

    let log = sim.requests();
    let agent = format!("register-runner/{}", env!("CARGO_PKG_VERSION"));
    // creates, verifies, listings and a delete, all of them
    for (method, path) in [
        ("POST", "/api/v4/user/runners"),
        ("POST", "/api/v4/runners/verify"),
        ("GET", "/api/v4/runners/all"),
    ] {
        assert!(
            count(&log, method, path) > 0,
            "no {method} {path}: {log:#?}"
        );
    }
    assert!(log.iter().any(|r| r.method == "DELETE"), "{log:#?}");
    for r in &log {
        assert_eq!(
            r.user_agent.as_deref(),
            Some(agent.as_str()),
            "{} {}",
            r.method,
            r.path
        );
    }
}

// g. Bounded concurrency.

#[test]
fn requests_in_flight_are_bounded_and_concurrent() {
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(30)),
        ..Default::default()
    });
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    for i in 0..10 {
        host.write_executor(
            &format!("{i:02}-shell.toml"),
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\nname = \"shell {i}\"\n",
                sim.url()
            ),
        );
    }
    let first = host.run(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(sim.runners().len(), 10);
    let on_create = sim.max_in_flight();
    assert!(
        (1..=MAX_IN_FLIGHT).contains(&on_create),
        "{on_create} requests in flight at once"
    );

    // A restart verifies ten tokens and reads ten runners' details.
    sim.set_latency(Some(Duration::from_millis(200)));
    sim.clear_requests();
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/runners/verify"), 10);
    let on_restart = sim.max_in_flight();
    assert!(
        on_restart <= MAX_IN_FLIGHT,
        "{on_restart} requests in flight at once, more than {MAX_IN_FLIGHT}"
    );
    assert!(
        on_restart > 1,
        "the ten verifies went one at a time: not concurrent"
    );
}

// h. Tool-only keys never reach the output.

#[test]
fn tool_only_keys_go_to_gitlab_not_to_the_config() {
    let sim = Sim::start();
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    host.write_executor(
        "gpu.toml",
        &format!(
            "url = \"{}\"\nexecutor = \"shell\"\nname = \"gpu runner\"\n\
             run_untagged = true\nlocked = true\npaused = true\n\
             access_level = \"ref_protected\"\nmaximum_timeout = 7200\n\
             maintenance_note = \"rack B2\"\ntags = [\"gpu\", \"a100\"]\n\
             env_tags = [\"SITE_TAG\"]\nlimit = 3\nbuilds_dir = \"/scratch/builds\"\n",
            sim.url()
        ),
    );
    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");

    let entries = host.config_runners();
    assert_eq!(entries.len(), 1, "{}", host.config());
    let entry = &entries[0];
    let tool_only = [
        "run_untagged",
        "locked",
        "paused",
        "access_level",
        "maximum_timeout",
        "maintenance_note",
        "tags",
        "env_tags",
        "tag_list",
        "description",
    ];
    let keys: Vec<String> = entry.iter().map(|(k, _)| k.to_string()).collect();
    for key in tool_only {
        assert!(
            !keys.iter().any(|k| k.eq_ignore_ascii_case(key)),
            "`{key}` written to the config:\n{}",
            host.config()
        );
        // nor anywhere else in the file, nested tables included
        assert!(
            !host.config().lines().any(|l| {
                let l = l.trim_start();
                l.strip_prefix(key)
                    .is_some_and(|rest| rest.trim_start().starts_with('='))
            }),
            "`{key}` written to the config:\n{}",
            host.config()
        );
    }
    // the pass-through settings are there
    assert_eq!(table_int(entry, "limit"), 3);
    assert_eq!(table_str(entry, "builds_dir"), "/scratch/builds");
    assert_eq!(table_str(entry, "name"), "gpu runner");

    let runners = sim.runners();
    assert_eq!(runners.len(), 1);
    let r = &runners[0];
    assert!(r.run_untagged && r.locked && r.paused, "{r:#?}");
    assert_eq!(r.access_level, "ref_protected");
    assert_eq!(r.maximum_timeout, Some(7200));
    assert_eq!(r.maintenance_note.as_deref(), Some("rack B2"));
    assert_eq!(r.description, "gpu runner");
    for tag in ["gpu", "a100", "site-a"] {
        assert!(r.tag_list.iter().any(|t| t == tag), "{tag}: {r:#?}");
    }
    assert!(has_identifying_tags(r), "{r:#?}");
    assert_eq!(table_str(entry, "token"), r.token);

    // What GitLab holds matches the file: a restart changes nothing.
    sim.clear_requests();
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(mutating(&sim.requests()), Vec::<String>::new());
    assert_no_secret(&run, &secrets(&sim));
    assert_no_secret(&again, &secrets(&sim));
}
