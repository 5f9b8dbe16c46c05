//! The request log, and bad input: malformed bodies, unknown routes.

mod common;

use std::time::Instant;

use common::*;
use gitlab_sim::{ADMIN_PAT, AuthKind, REGISTRATION_TOKEN, Sim, USER_PAT};
use reqwest::Method;
use serde_json::{Value, json};

#[test]
fn log_records_each_request() {
    let sim = Sim::start();
    let before = Instant::now();
    let (id, token) = admin_runner(&sim, &["a"]);
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token, "system_id": "s_1"}),
    );
    get(&sim, "/runners/all?tag_list=a&per_page=100", USER_PAT);
    get(&sim, &format!("/runners/{id}"), "glpat-bad");
    client().get(api(&sim, "/runners/all")).send().unwrap();

    let log = sim.requests();
    assert_eq!(log.len(), 5);
    let r0 = &log[0];
    assert_eq!(
        (r0.method.as_str(), r0.path.as_str()),
        ("POST", "/api/v4/user/runners")
    );
    assert_eq!(r0.query, "");
    assert_eq!(r0.auth, AuthKind::AdminPat);
    assert_eq!(r0.status, 201);
    assert_eq!(r0.body["runner_type"], "instance_type");
    assert!(r0.at >= before);
    assert_eq!(log[1].auth, AuthKind::RunnerToken);
    assert_eq!(log[1].body["system_id"], "s_1");
    assert_eq!(log[2].path, "/api/v4/runners/all");
    assert_eq!(log[2].query, "tag_list=a&per_page=100");
    assert_eq!((log[2].auth, log[2].status), (AuthKind::UserPat, 403));
    assert_eq!(log[2].body, Value::Null);
    assert_eq!((log[3].auth, log[3].status), (AuthKind::InvalidPat, 401));
    assert_eq!((log[4].auth, log[4].status), (AuthKind::None, 401));
    assert!(log.windows(2).all(|w| w[0].at <= w[1].at));

    sim.clear_requests();
    assert!(sim.requests().is_empty());
    // Seeding logs nothing.
    sim.seed_runner(Default::default());
    assert!(sim.requests().is_empty());
}

#[test]
fn malformed_json_is_400() {
    let sim = Sim::start();
    let resp = client()
        .post(api(&sim, "/runners"))
        .header("content-type", "application/json")
        .body("{\"token\": ")
        .send()
        .unwrap();
    let (status, body) = status_json(resp);
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"error": "message body does not match declared format"})
    );
    let log = sim.requests();
    assert_eq!(log[0].status, 400);
    assert_eq!(log[0].body, json!("{\"token\": "));
}

#[test]
fn malformed_form_and_odd_bodies_do_not_crash() {
    let sim = Sim::start();
    for (ct, body) in [
        (
            "application/x-www-form-urlencoded",
            "token=%ZZ&&=&tag_list[=x",
        ),
        ("application/x-www-form-urlencoded", "token=a&token[]=b"),
        ("application/json", "[1,2,3]"),
        ("application/json", "\"just a string\""),
        ("text/plain", "token=x"),
        ("application/json", "{\"token\": {\"nested\": true}}"),
        (
            "application/json",
            "{\"token\": \"x\", \"tag_list\": [[1]]}",
        ),
    ] {
        let resp = client()
            .post(api(&sim, "/runners"))
            .header("content-type", ct)
            .body(body)
            .send()
            .unwrap();
        let status = resp.status().as_u16();
        assert!((400..500).contains(&status), "{ct} {body}: {status}");
    }
    // Still serving.
    let (status, _) = register(&sim, json!({}));
    assert_eq!(status, 201);
}

#[test]
fn invalid_utf8_and_huge_values_do_not_crash() {
    let sim = Sim::start();
    let resp = client()
        .post(api(&sim, "/runners/verify"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(vec![b't', b'o', b'k', b'e', b'n', b'=', 0xff, 0xfe])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
    let (status, _) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "maximum_timeout": 1e300}),
    );
    assert_eq!(status, 400);
    let (status, _) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "group_type", "group_id": -5}),
    );
    assert_eq!(status, 400);
    let (status, body) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "description": "x".repeat(1025)}),
    );
    assert_eq!(status, 400, "{body}");
    let resp = get(&sim, "/runners/18446744073709551616", ADMIN_PAT);
    assert_eq!(resp.status().as_u16(), 400);
}

#[test]
fn unknown_routes_are_404() {
    let sim = Sim::start();
    let (status, body) = status_json(get(&sim, "/projects", ADMIN_PAT));
    assert_eq!((status, body), (404, json!({"error": "404 Not Found"})));
    let resp = client()
        .get(format!("{}/nowhere", sim.url()))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 404);
    let resp = client().patch(api(&sim, "/runners/verify")).send().unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    assert_eq!(sim.requests().len(), 3);
}

#[test]
fn user_and_version_for_clients() {
    let sim = Sim::start();
    let (status, body) = status_json(get(&sim, "/user", ADMIN_PAT));
    assert_eq!(status, 200);
    assert_eq!(body["is_admin"], true);
    assert_eq!(body["username"], "root");
    let (_, body) = status_json(get(&sim, "/user", USER_PAT));
    assert_eq!(body["is_admin"], false);
    let (status, body) = status_json(get(&sim, "/version", USER_PAT));
    assert_eq!(status, 200);
    assert!(body["version"].is_string());
    assert_eq!(get(&sim, "/user", "nope").status().as_u16(), 401);
}

#[test]
fn registration_token_as_pat_is_invalid_pat() {
    let sim = Sim::start();
    let resp = get(&sim, "/runners/all", REGISTRATION_TOKEN);
    assert_eq!(resp.status().as_u16(), 401);
    assert_eq!(sim.requests()[0].auth, AuthKind::InvalidPat);
}

#[test]
fn concurrent_clients() {
    let sim = Sim::start();
    let handles: Vec<_> = (0..8)
        .map(|_| {
            let url = api(&sim, "/user/runners");
            std::thread::spawn(move || {
                for _ in 0..10 {
                    let resp = client()
                        .post(&url)
                        .pat(ADMIN_PAT)
                        .json(&json!({"runner_type": "instance_type"}))
                        .send()
                        .unwrap();
                    assert_eq!(resp.status().as_u16(), 201);
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let ids: Vec<u64> = sim.runners().iter().map(|r| r.id).collect();
    assert_eq!(ids, (1..=80).collect::<Vec<u64>>());
    let tokens: std::collections::HashSet<String> =
        sim.runners().into_iter().map(|r| r.token).collect();
    assert_eq!(tokens.len(), 80);
}

#[test]
fn log_records_the_user_agent() {
    let sim = Sim::start();
    client()
        .get(api(&sim, "/version"))
        .header("User-Agent", "register-runner/9.9.9")
        .pat(ADMIN_PAT)
        .send()
        .unwrap();
    let mut stream = std::net::TcpStream::connect(("127.0.0.1", sim.port())).unwrap();
    std::io::Write::write_all(
        &mut stream,
        b"GET /api/v4/version HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    )
    .unwrap();
    std::io::Read::read_to_end(&mut stream, &mut Vec::new()).unwrap();
    let log = sim.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].user_agent.as_deref(), Some("register-runner/9.9.9"));
    assert_eq!(log[1].user_agent, None);
}
