//! Hostile answers (`Sim::set_hostile`): replaced bodies, huge and endless
//! bodies, echoed requests, rewritten answers, and their request log.

mod common;

use std::io::Read;

use common::*;
use gitlab_sim::{ADMIN_PAT, HostileAnswer, REGISTRATION_TOKEN, Sim};
use reqwest::Method;
use serde_json::json;

#[test]
fn bytes_replace_the_answer_only_where_the_pattern_matches() {
    let sim = Sim::start();
    let (id, _) = admin_runner(&sim, &["a"]);
    sim.set_hostile(
        "GET",
        "/api/v4/runners/*",
        HostileAnswer::json(200, "{\"id\": -1}"),
    );
    let resp = get(&sim, &format!("/runners/{id}"), ADMIN_PAT);
    assert_eq!(resp.text().unwrap(), "{\"id\": -1}");
    // Another path, and another method on the same path, are GitLab's.
    let (status, managers) = status_json(get(&sim, &format!("/runners/{id}/managers"), ADMIN_PAT));
    assert_eq!((status, managers), (200, json!([])));
    let last = sim.requests().pop().unwrap();
    assert_eq!(last.status, 200);
    sim.clear_hostile();
    let (_, runner) = status_json(get(&sim, &format!("/runners/{id}"), ADMIN_PAT));
    assert_eq!(runner["id"], json!(id));
}

#[test]
fn huge_and_endless_bodies() {
    let sim = Sim::start();
    sim.set_hostile(
        "GET",
        "/api/v4/runners/all",
        HostileAnswer::Huge {
            status: 200,
            len: 200_000,
        },
    );
    let body = get(&sim, "/runners/all", ADMIN_PAT).bytes().unwrap();
    assert_eq!(body.len(), 200_000);
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&body).unwrap(),
        json!([])
    );

    sim.set_hostile(
        "GET",
        "/api/v4/runners/all",
        HostileAnswer::Endless { status: 200 },
    );
    let mut resp = get(&sim, "/runners/all", ADMIN_PAT);
    assert_eq!(resp.status().as_u16(), 200);
    let mut buf = vec![0u8; 1 << 20];
    let mut read = 0usize;
    while read < 20 << 20 {
        let n = resp.read(&mut buf).unwrap();
        assert!(n > 0, "the endless body ended after {read} bytes");
        read += n;
    }
}

#[test]
fn an_echo_quotes_the_credentials_and_a_rewrite_keeps_the_state_change() {
    let sim = Sim::start();
    sim.set_hostile(
        "POST",
        "/api/v4/runners",
        HostileAnswer::EchoRequest { status: 400 },
    );
    let (status, body) = register(&sim, json!({}));
    assert_eq!(status, 400);
    let message = body["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("token={REGISTRATION_TOKEN}")),
        "{message}"
    );
    assert!(sim.runners().is_empty());

    sim.set_hostile(
        "POST",
        "/api/v4/user/runners",
        HostileAnswer::rewrite(|v| v["token"] = json!("")),
    );
    let (status, body) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "description": "r"}),
    );
    assert_eq!((status, &body["token"]), (201, &json!("")));
    // GitLab made the runner all the same, with a real token.
    let runners = sim.runners();
    assert_eq!(runners.len(), 1);
    assert!(runners[0].token.starts_with("glrt-"));
    let (status, _) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": runners[0].token}),
    );
    assert_eq!(status, 200);
}
