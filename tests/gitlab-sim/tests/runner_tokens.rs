//! Runner-token endpoints: verify (managers), `DELETE /runners`,
//! `DELETE /runners/managers`, `POST /runners/reset_authentication_token`.

mod common;

use common::*;
use gitlab_sim::{ADMIN_PAT, AuthKind, Sim};
use reqwest::Method;
use serde_json::json;

#[test]
fn verify_records_managers() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    let (status, body) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token, "system_id": "s_0123456789ab",
               "info": {"version": "18.3.0", "platform": "linux", "architecture": "amd64"}}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({"id": id, "token": token, "token_expires_at": null})
    );
    // Details take version etc. from the most recently contacted manager.
    let details: serde_json::Value = get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
        .json()
        .unwrap();
    assert_eq!(details["status"], "online");
    assert_eq!(details["online"], true);
    assert_eq!(details["version"], "18.3.0");
    assert_eq!(details["platform"], "linux");
    assert!(details["contacted_at"].is_string());
    // Same system id again: same manager; no system id: `<legacy>`.
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token, "system_id": "s_0123456789ab"}),
    );
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token}),
    );
    let r = sim.runner(id).unwrap();
    let ids: Vec<&str> = r.managers.iter().map(|m| m.system_id.as_str()).collect();
    assert_eq!(ids, ["s_0123456789ab", "<legacy>"]);
    assert!(r.managers.iter().all(|m| !m.contacted_at.is_empty()));
    assert_eq!(sim.requests()[1].auth, AuthKind::RunnerToken);
    let details: serde_json::Value = get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
        .json()
        .unwrap();
    assert_eq!(details["version"], serde_json::Value::Null);
}

#[test]
fn verify_updates_contacted_at() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token, "system_id": "s_a"}),
    );
    let first = sim.runner(id).unwrap().managers[0].contacted_at.clone();
    std::thread::sleep(std::time::Duration::from_millis(20));
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token, "system_id": "s_a"}),
    );
    let second = sim.runner(id).unwrap().managers[0].contacted_at.clone();
    assert!(second > first, "{first} {second}");
}

#[test]
fn verify_unknown_token_is_403() {
    let sim = Sim::start();
    let (status, body) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": "glrt-unknown"}),
    );
    assert_eq!((status, body), (403, json!({"message": "403 Forbidden"})));
    assert_eq!(sim.requests()[0].auth, AuthKind::InvalidToken);
    let (status, body) = token_call(&sim, Method::POST, "/runners/verify", json!({}));
    assert_eq!((status, body), (400, json!({"error": "token is missing"})));
}

#[test]
fn delete_runner_by_token() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    let (status, _) = token_call(&sim, Method::DELETE, "/runners", json!({"token": token}));
    assert_eq!(status, 204);
    assert!(sim.runner(id).is_none());
    let (status, body) = token_call(&sim, Method::DELETE, "/runners", json!({"token": token}));
    assert_eq!((status, body), (403, json!({"message": "403 Forbidden"})));
}

#[test]
fn delete_runner_by_token_in_query() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    let resp = client()
        .delete(format!("{}?token={token}", api(&sim, "/runners")))
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
    assert!(sim.runner(id).is_none());
}

#[test]
fn delete_manager_keeps_runner() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    for sid in ["s_host1", "s_host2"] {
        token_call(
            &sim,
            Method::POST,
            "/runners/verify",
            json!({"token": token, "system_id": sid}),
        );
    }
    let (status, _) = token_call(
        &sim,
        Method::DELETE,
        "/runners/managers",
        json!({"token": token, "system_id": "s_host1"}),
    );
    assert_eq!(status, 204);
    let r = sim.runner(id).unwrap();
    assert_eq!(r.managers.len(), 1);
    assert_eq!(r.managers[0].system_id, "s_host2");

    let (status, body) = token_call(
        &sim,
        Method::DELETE,
        "/runners/managers",
        json!({"token": token, "system_id": "s_host1"}),
    );
    assert_eq!(status, 404);
    assert_eq!(
        body,
        json!({"message": "404 Runner manager not found Not Found"})
    );
}

#[test]
fn delete_manager_errors() {
    let sim = Sim::start();
    let (_, token) = admin_runner(&sim, &["a"]);
    let (status, body) = token_call(&sim, Method::DELETE, "/runners/managers", json!({}));
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "token is missing, system_id is missing"})
        )
    );
    let (status, body) = token_call(
        &sim,
        Method::DELETE,
        "/runners/managers",
        json!({"token": token}),
    );
    assert_eq!(
        (status, body),
        (400, json!({"error": "system_id is missing"}))
    );
    let (status, _) = token_call(
        &sim,
        Method::DELETE,
        "/runners/managers",
        json!({"token": "glrt-nope", "system_id": "s_x"}),
    );
    assert_eq!(status, 403);
}

#[test]
fn reset_token_rotates() {
    let sim = Sim::start();
    let (id, old) = admin_runner(&sim, &["a"]);
    let (status, body) = token_call(
        &sim,
        Method::POST,
        "/runners/reset_authentication_token",
        json!({"token": old, "system_id": "s_a"}),
    );
    assert_eq!(status, 201, "{body}");
    let new = body["token"].as_str().unwrap().to_string();
    assert!(new.starts_with("glrt-") && new != old);
    assert_eq!(body.as_object().unwrap().len(), 2);
    assert_eq!(sim.runner(id).unwrap().token, new);
    // The old token stops working at once.
    let (status, _) = token_call(&sim, Method::POST, "/runners/verify", json!({"token": old}));
    assert_eq!(status, 403);
    let (status, _) = token_call(&sim, Method::POST, "/runners/verify", json!({"token": new}));
    assert_eq!(status, 200);
    let (status, _) = token_call(
        &sim,
        Method::POST,
        "/runners/reset_authentication_token",
        json!({"token": old}),
    );
    assert_eq!(status, 403);
}

#[test]
fn reset_keeps_glrtr_prefix_for_registered_runners() {
    let sim = Sim::start();
    let (_, body) = register(&sim, json!({}));
    let (status, reset) = token_call(
        &sim,
        Method::POST,
        "/runners/reset_authentication_token",
        json!({"token": body["token"]}),
    );
    assert_eq!(status, 201);
    assert!(reset["token"].as_str().unwrap().starts_with("glrtr-"));
}

#[test]
fn reset_by_id_with_pat() {
    let sim = Sim::start();
    let (id, old) = admin_runner(&sim, &["a"]);
    let resp = client()
        .post(api(
            &sim,
            &format!("/runners/{id}/reset_authentication_token"),
        ))
        .pat(ADMIN_PAT)
        .send()
        .unwrap();
    let (status, body) = status_json(resp);
    assert_eq!(status, 201);
    assert_ne!(body["token"].as_str().unwrap(), old);
    let resp = client()
        .post(api(
            &sim,
            &format!("/runners/{id}/reset_authentication_token"),
        ))
        .pat(gitlab_sim::USER_PAT)
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 403);
}
