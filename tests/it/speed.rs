//! Issue 13, speed: every round trip that can overlap does. A steady
//! restart sends its verifies, listing and detail reads of held runners in
//! one wave, up to 8 at once per GitLab; a first run's creates overlap
//! within the same bound, each new token still written before any further
//! request.

use std::time::Duration;

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

use crate::support::*;

/// `MAX_IN_FLIGHT` of src/gitlab/client.rs.
const MAX_IN_FLIGHT: usize = 8;

/// A host with `n` shell executors on `sim`, each its own runner.
fn host_with(sim: &Sim, n: usize) -> Host {
    let host = Host::new();
    host.template_with_pat(&sim.url(), ADMIN_PAT);
    for i in 0..n {
        host.write_executor(
            &format!("{i:02}-shell.toml"),
            &format!(
                "url = \"{}\"\nexecutor = \"shell\"\nname = \"shell {i}\"\n",
                sim.url()
            ),
        );
    }
    host
}

/// A steady restart with `n` held runners: the requests it sends, and the
/// most the simulator saw in flight at once. The latency (long against a
/// process start and a request's own handling) makes requests that go out
/// together overlap.
fn steady_restart(n: usize) -> (usize, usize) {
    let sim = Sim::start_with(SimOptions::default());
    let host = host_with(&sim, n);
    let first = host.run(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    assert_eq!(sim.runners().len(), n);
    let before = host.config();

    sim.set_latency(Some(Duration::from_millis(300)));
    sim.clear_requests();
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    let log = sim.requests();
    assert!(mutating(&log).is_empty(), "{:#?}", mutating(&log));
    assert_eq!(host.config(), before, "a steady restart changed the config");
    // n verifies, n detail reads, one listing page.
    assert_eq!(count(&log, "POST", "/api/v4/runners/verify"), n);
    assert_eq!(count(&log, "GET", "/api/v4/runners/all"), 1);
    let details = log
        .iter()
        .filter(|r| r.method == "GET" && r.path.starts_with("/api/v4/runners/"))
        .filter(|r| r.path["/api/v4/runners/".len()..].parse::<u64>().is_ok())
        .count();
    assert_eq!(details, n, "{log:#?}");
    (log.len(), sim.max_in_flight())
}

#[test]
fn a_steady_restart_sends_its_first_requests_in_one_wave() {
    // 2 runners: 5 requests (2 verifies, 1 listing, 2 detail reads), all
    // at once; before, the detail reads waited for the verifies.
    let (requests, high_water) = steady_restart(2);
    assert_eq!(requests, 5);
    assert_eq!(high_water, requests.min(MAX_IN_FLIGHT));
}

#[test]
fn a_steady_restart_keeps_eight_requests_in_flight() {
    // 10 runners: 21 requests, 8 at once and never more.
    let (requests, high_water) = steady_restart(10);
    assert_eq!(requests, 21);
    assert_eq!(high_water, MAX_IN_FLIGHT);
}

#[test]
fn a_first_run_creates_runners_concurrently_and_saves_every_token() {
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(300)),
        ..Default::default()
    });
    let host = host_with(&sim, 12);
    let first = host.run(&[]);
    assert_eq!(first.code, 0, "{first:?}");
    let log = sim.requests();
    assert_eq!(count(&log, "POST", "/api/v4/user/runners"), 12);
    assert_eq!(sim.max_in_flight(), MAX_IN_FLIGHT);
    // Every runner created is in the config with the token GitLab issued.
    let runners = sim.runners();
    assert_eq!(runners.len(), 12);
    let config = host.config_runners();
    assert_eq!(config.len(), 12);
    for runner in &runners {
        let entry = config
            .iter()
            .find(|t| table_int(t, "id") as u64 == runner.id)
            .unwrap_or_else(|| panic!("runner #{} is not in the config", runner.id));
        assert_eq!(table_str(entry, "token"), runner.token);
        assert_eq!(table_str(entry, "name"), runner.description);
    }
    // And a restart finds nothing to do.
    sim.clear_requests();
    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert!(mutating(&sim.requests()).is_empty());
}

#[test]
fn a_token_that_cannot_be_saved_stops_the_run_before_any_further_request() {
    // The config path turns into a directory while the first create is in
    // GitLab's hands: its token cannot be written, and nothing else may be
    // sent. Creates start one at a time, so no other create was in flight.
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(400)),
        ..Default::default()
    });
    let host = host_with(&sim, 5);
    let child = host
        .command(&["--timeout", "20"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let creating = || {
        sim.in_flight()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/api/v4/user/runners")
    };
    assert!(eventually(creating), "no create reached GitLab");
    std::fs::create_dir(host.config_path()).unwrap();
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("created, but its token could not be saved"),
        "{stderr}"
    );
    let log = sim.requests();
    assert_eq!(count(&log, "POST", "/api/v4/user/runners"), 1, "{log:#?}");
    assert_eq!(count(&log, "POST", "/api/v4/runners/verify"), 0, "{log:#?}");
    assert_eq!(sim.runners().len(), 1);
}
