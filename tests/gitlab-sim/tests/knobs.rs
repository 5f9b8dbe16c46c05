//! The test knobs: latency, fail_every, rate limit, dropped connections,
//! registration switch, patched details, token lifetime, a lagging clock,
//! a 502 after the handler ran, an expired manager, and stop.

mod common;

use std::time::{Duration, Instant};

use common::*;
use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};
use reqwest::Method;
use serde_json::{Value, json};

#[test]
fn latency_delays_every_request() {
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(300)),
        ..SimOptions::default()
    });
    let t = Instant::now();
    assert_eq!(get(&sim, "/runners/all", ADMIN_PAT).status().as_u16(), 200);
    assert!(t.elapsed() >= Duration::from_millis(300));
    sim.set_latency(None);
    let t = Instant::now();
    get(&sim, "/runners/all", ADMIN_PAT);
    assert!(t.elapsed() < Duration::from_millis(300));
    // `at` is the arrival time, before the latency.
    let log = sim.requests();
    assert_eq!(log.len(), 2);
}

#[test]
fn fail_every_nth_gets_502_and_is_logged() {
    let sim = Sim::start();
    get(&sim, "/runners/all", ADMIN_PAT);
    sim.set_fail_every(Some(3));
    let statuses: Vec<u16> = (0..7)
        .map(|_| get(&sim, "/runners/all", ADMIN_PAT).status().as_u16())
        .collect();
    assert_eq!(statuses, [200, 200, 502, 200, 200, 502, 200]);
    let resp = {
        sim.set_fail_every(Some(1));
        get(&sim, "/runners/all", ADMIN_PAT)
    };
    assert_eq!(resp.status().as_u16(), 502);
    assert!(resp.text().unwrap().contains("502 Bad Gateway"));
    sim.set_fail_every(None);
    assert_eq!(get(&sim, "/runners/all", ADMIN_PAT).status().as_u16(), 200);
    let logged: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(logged, [200, 200, 200, 502, 200, 200, 502, 200, 502, 200]);
}

#[test]
fn fail_every_does_not_apply_the_request() {
    let sim = Sim::start_with(SimOptions {
        fail_every: Some(1),
        ..SimOptions::default()
    });
    let (status, _) = create(&sim, ADMIN_PAT, json!({"runner_type": "instance_type"}));
    assert_eq!(status, 502);
    assert!(sim.runners().is_empty());
}

fn epoch_now() -> Duration {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
}

#[test]
fn rate_limit_answers_429_with_headers() {
    let sim = Sim::start_with(SimOptions {
        rate_limit_per_sec: Some(3),
        ..SimOptions::default()
    });
    // The five requests must fall in one wall-clock second: start right after
    // a second boundary, and try again if a slow machine straddled one.
    let mut attempt = 0;
    let (statuses, limited) = loop {
        attempt += 1;
        while epoch_now().subsec_millis() > 200 {
            std::thread::sleep(Duration::from_millis(10));
        }
        sim.set_rate_limit(Some(3));
        sim.clear_requests();
        let started = epoch_now().as_secs();
        let mut statuses = Vec::new();
        let mut limited = None;
        for _ in 0..5 {
            let resp = get(&sim, "/runners/all", ADMIN_PAT);
            statuses.push(resp.status().as_u16());
            assert_eq!(header(&resp, "ratelimit-limit").as_deref(), Some("180"));
            assert_eq!(
                header(&resp, "ratelimit-name").as_deref(),
                Some("throttle_authenticated_api")
            );
            for name in [
                "ratelimit-observed",
                "ratelimit-remaining",
                "ratelimit-reset",
            ] {
                assert!(header(&resp, name).is_some(), "{name}");
            }
            if resp.status().as_u16() == 429 && limited.is_none() {
                limited = Some(resp);
            }
        }
        if epoch_now().as_secs() == started || attempt == 3 {
            break (statuses, limited);
        }
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
    let resp = limited.unwrap();
    let retry: u64 = header(&resp, "retry-after").unwrap().parse().unwrap();
    assert!(retry >= 1);
    let reset_time = header(&resp, "ratelimit-resettime").unwrap();
    assert!(reset_time.ends_with(" GMT"), "{reset_time}");
    assert_eq!(header(&resp, "ratelimit-remaining").as_deref(), Some("0"));
    assert_eq!(header(&resp, "ratelimit-observed").as_deref(), Some("4"));

    let log = sim.requests();
    assert_eq!(log[3].status, 429);
    assert_eq!(log[3].retry_after, Some(retry));
    assert_eq!(log[0].retry_after, None);

    // After waiting as told, requests pass again.
    std::thread::sleep(Duration::from_secs(retry));
    assert_eq!(get(&sim, "/runners/all", ADMIN_PAT).status().as_u16(), 200);
    sim.set_rate_limit(None);
    let resp = get(&sim, "/runners/all", ADMIN_PAT);
    assert!(header(&resp, "ratelimit-limit").is_none());
}

#[test]
fn unauthenticated_requests_are_named_so() {
    let sim = Sim::start();
    sim.set_rate_limit(Some(100));
    let resp = client()
        .post(api(&sim, "/runners/verify"))
        .json(&json!({"token": "glrt-bad"}))
        .send()
        .unwrap();
    assert_eq!(
        header(&resp, "ratelimit-name").as_deref(),
        Some("throttle_unauthenticated_api")
    );
}

#[test]
fn dropped_connections_get_no_response_and_no_log() {
    let sim = Sim::start();
    let c = client();
    // Open a keep-alive connection first: it must be dropped too.
    assert!(
        c.get(api(&sim, "/runners/all"))
            .pat(ADMIN_PAT)
            .send()
            .is_ok()
    );
    sim.set_drop_connections(true);
    let err = c
        .get(api(&sim, "/runners/all"))
        .pat(ADMIN_PAT)
        .send()
        .expect_err("no response expected");
    assert!(!err.is_status(), "{err}");
    let err = client()
        .get(api(&sim, "/runners/all"))
        .send()
        .expect_err("fresh connection");
    assert!(!err.is_status(), "{err}");
    assert_eq!(sim.requests().len(), 1);
    sim.set_drop_connections(false);
    assert_eq!(get(&sim, "/runners/all", ADMIN_PAT).status().as_u16(), 200);
}

#[test]
fn patched_details_expose_the_token() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    let body: Value = get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
        .json()
        .unwrap();
    assert!(body.get("token").is_none());
    sim.set_patched(true);
    let body: Value = get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
        .json()
        .unwrap();
    assert_eq!(body["token"], token);

    let sim = Sim::start_with(SimOptions {
        patched: true,
        ..SimOptions::default()
    });
    let (id, token) = admin_runner(&sim, &["a"]);
    let body: Value = get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
        .json()
        .unwrap();
    assert_eq!(body["token"], token);
}

#[test]
fn token_lifetime_expires_and_reset_renews() {
    let sim = Sim::start_with(SimOptions {
        token_lifetime: Some(Duration::from_secs(2)),
        ..SimOptions::default()
    });
    let (status, body) = create(&sim, ADMIN_PAT, json!({"runner_type": "instance_type"}));
    assert_eq!(status, 201);
    let first_expiry = body["token_expires_at"].as_str().unwrap().to_string();
    let parse = |s: &str| {
        time::OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339).unwrap()
    };
    let lifetime = parse(&first_expiry) - time::OffsetDateTime::now_utc();
    assert!(lifetime > time::Duration::seconds(1) && lifetime <= time::Duration::seconds(2));
    let id = body["id"].as_u64().unwrap();
    let token = body["token"].as_str().unwrap().to_string();
    assert_eq!(
        sim.runner(id).unwrap().token_expires_at.as_deref(),
        Some(first_expiry.as_str())
    );

    // Verify does not renew; reset does.
    let (status, v) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token}),
    );
    assert_eq!(status, 200);
    assert_eq!(v["token_expires_at"], first_expiry.as_str());
    std::thread::sleep(Duration::from_millis(1100));
    let (status, reset) = token_call(
        &sim,
        Method::POST,
        "/runners/reset_authentication_token",
        json!({"token": token}),
    );
    assert_eq!(status, 201);
    let renewed = reset["token_expires_at"].as_str().unwrap().to_string();
    assert!(parse(&renewed) > parse(&first_expiry));
    let new_token = reset["token"].as_str().unwrap().to_string();

    // Expired tokens are refused like unknown ones.
    std::thread::sleep(Duration::from_millis(2100));
    let (status, _) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": new_token}),
    );
    assert_eq!(status, 403);
    assert_eq!(
        sim.requests().last().unwrap().auth,
        gitlab_sim::AuthKind::InvalidToken
    );

    // The knob changes tokens made from now on.
    sim.set_token_lifetime(None);
    let (_, body) = create(&sim, ADMIN_PAT, json!({"runner_type": "instance_type"}));
    assert_eq!(body["token_expires_at"], Value::Null);
}

#[test]
fn stop_closes_the_port() {
    let sim = Sim::start();
    let url = api(&sim, "/runners/all");
    let port = sim.port();
    assert_eq!(get(&sim, "/runners/all", ADMIN_PAT).status().as_u16(), 200);
    sim.stop();
    let err = client().get(&url).send().expect_err("server is stopped");
    assert!(err.is_connect(), "{err}");
    let refused = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap_err();
    assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
}

#[test]
fn fixed_port_and_url() {
    let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let sim = Sim::start_with(SimOptions {
        port,
        ..SimOptions::default()
    });
    assert_eq!(sim.port(), port);
    assert_eq!(sim.url(), format!("http://127.0.0.1:{port}"));
    assert!(
        Sim::try_start_with(SimOptions {
            port,
            ..SimOptions::default()
        })
        .is_err()
    );
}

/// Waits up to 10 s for `cond`; false if it never held.
fn eventually(cond: impl Fn() -> bool) -> bool {
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if cond() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    cond()
}

/// Real GitLab finishes a request whose client went away: a client killed
/// during the latency still leaves its runner created and its request logged.
#[test]
fn a_client_gone_during_the_latency_still_gets_its_request_done() {
    use std::io::Write;

    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(500)),
        ..SimOptions::default()
    });
    let body = json!({"runner_type": "instance_type", "description": "orphan"}).to_string();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sim.port())).unwrap();
    write!(
        stream,
        "POST /api/v4/user/runners HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nPRIVATE-TOKEN: {ADMIN_PAT}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        sim.port(),
        body.len()
    )
    .unwrap();
    stream.flush().unwrap();
    // Hang up once the simulator has the request, well within the latency.
    assert!(
        eventually(|| sim
            .in_flight()
            .iter()
            .any(|r| r.method == "POST" && r.path == "/api/v4/user/runners")),
        "the request never arrived"
    );
    assert!(sim.runners().is_empty(), "handled before the latency");
    stream.shutdown(std::net::Shutdown::Both).unwrap();
    drop(stream);

    assert!(
        eventually(|| sim.in_flight().is_empty()),
        "still in flight: {:?}",
        sim.in_flight()
    );
    let runners = sim.runners();
    assert_eq!(runners.len(), 1, "{runners:#?}");
    assert_eq!(runners[0].description, "orphan");
    let log = sim.requests();
    assert_eq!(log.len(), 1, "{log:#?}");
    assert_eq!(
        (log[0].method.as_str(), log[0].path.as_str(), log[0].status),
        ("POST", "/api/v4/user/runners", 201)
    );
}

#[test]
fn in_flight_requests_and_their_high_water_mark() {
    let sim = Sim::start_with(SimOptions {
        latency: Some(Duration::from_millis(300)),
        ..SimOptions::default()
    });
    assert_eq!(sim.max_in_flight(), 0);
    let threads: Vec<_> = (0..3)
        .map(|_| {
            let url = api(&sim, "/version");
            std::thread::spawn(move || client().get(url).pat(ADMIN_PAT).send().unwrap())
        })
        .collect();
    assert!(
        eventually(|| sim.in_flight().len() == 3),
        "{:?}",
        sim.in_flight()
    );
    assert!(
        sim.in_flight()
            .iter()
            .all(|r| r.method == "GET" && r.path == "/api/v4/version")
    );
    for t in threads {
        assert_eq!(t.join().unwrap().status().as_u16(), 200);
    }
    assert!(eventually(|| sim.in_flight().is_empty()));
    assert_eq!(sim.max_in_flight(), 3);
    assert_eq!(sim.requests().len(), 3);

    // One at a time: the mark restarts with the log.
    sim.clear_requests();
    assert_eq!(sim.max_in_flight(), 0);
    get(&sim, "/version", ADMIN_PAT);
    get(&sim, "/version", ADMIN_PAT);
    assert_eq!(sim.max_in_flight(), 1);
}

#[test]
fn listing_faults_break_the_next_page() {
    use gitlab_sim::{ListingFault, SeedRunner};

    let sim = Sim::start();
    for _ in 0..150 {
        sim.seed_runner(SeedRunner {
            tag_list: vec!["a".into()],
            ..SeedRunner::default()
        });
    }
    let path = "/runners/all?tag_list=a&per_page=100&page=1";
    let resp = get(&sim, path, ADMIN_PAT);
    assert_eq!(header(&resp, "x-next-page").as_deref(), Some("2"));
    assert!(header(&resp, "link").unwrap().contains("rel=\"next\""));

    sim.set_listing_fault(Some(ListingFault::NoNextPage));
    for path in [path, "/runners?per_page=100"] {
        let resp = get(&sim, path, ADMIN_PAT);
        assert_eq!(resp.status().as_u16(), 200);
        assert_eq!(header(&resp, "x-next-page"), None);
        let link = header(&resp, "link").unwrap();
        assert!(
            !link.contains("rel=\"next\"") && link.contains("rel=\"first\""),
            "{link}"
        );
    }
    let resp = get(&sim, path, ADMIN_PAT);
    let items: Value = resp.json().unwrap();
    assert_eq!(
        items.as_array().unwrap().len(),
        100,
        "the page itself is full"
    );

    sim.set_listing_fault(Some(ListingFault::NextPageRepeats));
    let resp = get(
        &sim,
        "/runners/all?tag_list=a&per_page=100&page=2",
        ADMIN_PAT,
    );
    assert_eq!(header(&resp, "x-next-page").as_deref(), Some("2"));
    let link = header(&resp, "link").unwrap();
    assert!(
        link.contains("page=2&per_page=100&tag_list=a>; rel=\"next\""),
        "{link}"
    );

    sim.set_listing_fault(None);
    let resp = get(&sim, path, ADMIN_PAT);
    assert_eq!(header(&resp, "x-next-page").as_deref(), Some("2"));
}

#[test]
fn a_lagging_clock_issues_tokens_expiring_now_that_stay_valid() {
    let sim = Sim::start_with(SimOptions {
        token_lifetime: Some(Duration::from_secs(60)),
        ..SimOptions::default()
    });
    sim.set_clock_lag(Duration::from_secs(60));
    let before = time::OffsetDateTime::now_utc() - time::Duration::milliseconds(1);
    let (status, body) = create(&sim, ADMIN_PAT, json!({"runner_type": "instance_type"}));
    assert_eq!(status, 201, "{body}");
    let after = time::OffsetDateTime::now_utc();
    let expires = time::OffsetDateTime::parse(
        body["token_expires_at"].as_str().unwrap(),
        &time::format_description::well_known::Rfc3339,
    )
    .unwrap();
    // On the real clock the token expires as it is issued…
    assert!(
        before <= expires && expires <= after,
        "{expires} not in {before}..{after}"
    );
    // …while GitLab, 60 s behind, takes it for a minute yet.
    let token = body["token"].as_str().unwrap();
    let (status, v) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token}),
    );
    assert_eq!(status, 200, "{v}");
    sim.set_clock_lag(Duration::ZERO);
    let (status, _) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token}),
    );
    assert_eq!(status, 403, "expired once the clock catches up");
}

#[test]
fn fail_once_after_handler_applies_the_request_then_answers_502_once() {
    let sim = Sim::start();
    sim.fail_once_after_handler("POST", "/api/v4/user/runners");
    let body = json!({"runner_type": "instance_type"});
    assert_eq!(get(&sim, "/runners/all", ADMIN_PAT).status().as_u16(), 200);
    let (status, _) = create(&sim, ADMIN_PAT, body.clone());
    assert_eq!(status, 502);
    assert_eq!(sim.runners().len(), 1, "the handler ran");
    let (status, _) = create(&sim, ADMIN_PAT, body);
    assert_eq!(status, 201, "once only");
    let logged: Vec<u16> = sim.requests().iter().map(|r| r.status).collect();
    assert_eq!(logged, [200, 502, 201]);
}

#[test]
fn hold_answer_applies_the_request_then_holds_its_answer_until_released() {
    let sim = Sim::start();
    let held = sim.hold_answer("POST", "/api/v4/user/runners");
    let body = json!({"runner_type": "instance_type"});
    let answer = std::thread::scope(|scope| {
        let creating = scope.spawn(|| create(&sim, ADMIN_PAT, body.clone()));
        assert!(held.wait_handled());
        assert_eq!(sim.runners().len(), 1, "the handler ran");
        assert!(!creating.is_finished(), "answered before the release");
        assert!(sim.requests().is_empty(), "logged before it was answered");
        held.release();
        creating.join().unwrap()
    });
    assert_eq!(answer.0, 201, "{}", answer.1);
    let (status, _) = create(&sim, ADMIN_PAT, body);
    assert_eq!(status, 201, "once only");
    assert_eq!(sim.requests().len(), 2);
}

#[test]
fn expire_manager_removes_one_hosts_manager() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &[]);
    for system_id in ["s_aaaaaaaaaaaa", "s_bbbbbbbbbbbb"] {
        let (status, v) = token_call(
            &sim,
            Method::POST,
            "/runners/verify",
            json!({"token": token, "system_id": system_id}),
        );
        assert_eq!(status, 200, "{v}");
    }
    assert!(sim.expire_manager(id, "s_aaaaaaaaaaaa"));
    assert!(!sim.expire_manager(id, "s_aaaaaaaaaaaa"), "already gone");
    assert!(
        !sim.expire_manager(id + 1, "s_bbbbbbbbbbbb"),
        "no such runner"
    );
    let managers = sim.runner(id).unwrap().managers;
    assert_eq!(managers.len(), 1, "{managers:?}");
}
