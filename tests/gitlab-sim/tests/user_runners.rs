//! `POST /user/runners`: runner creation with a personal access token.

mod common;

use common::*;
use gitlab_sim::{ADMIN_PAT, AuthKind, CreatedBy, OWNED_GROUP_ID, OWNED_PROJECT_ID, Sim, USER_PAT};
use serde_json::{Value, json};

#[test]
fn admin_creates_instance_runner() {
    let sim = Sim::start();
    let (status, body) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "description": "d", "tag_list": "a,b"}),
    );
    assert_eq!(status, 201, "{body}");
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("glrt-") && token.len() == 25, "{token}");
    assert_eq!(body["token_expires_at"], Value::Null);
    let r = sim.runner(body["id"].as_u64().unwrap()).unwrap();
    assert_eq!(r.runner_type, "instance_type");
    assert_eq!(r.tag_list, ["a", "b"]);
    // API defaults: locked false, run_untagged true.
    assert!(!r.locked && r.run_untagged && !r.paused);
    assert_eq!(r.created_by, CreatedBy::Pat);
    assert_eq!(sim.requests()[0].auth, AuthKind::AdminPat);
}

#[test]
fn user_creates_group_and_project_runners_it_owns() {
    let sim = Sim::start();
    let (status, body) = create(
        &sim,
        USER_PAT,
        json!({"runner_type": "group_type", "group_id": OWNED_GROUP_ID, "locked": true}),
    );
    assert_eq!(status, 201, "{body}");
    let r = sim.runner(body["id"].as_u64().unwrap()).unwrap();
    assert_eq!(
        (r.runner_type.as_str(), r.group_id),
        ("group_type", Some(OWNED_GROUP_ID))
    );
    assert!(r.locked);

    let (status, body) = create(
        &sim,
        USER_PAT,
        json!({"runner_type": "project_type", "project_id": OWNED_PROJECT_ID.to_string()}),
    );
    assert_eq!(status, 201, "{body}");
    let r = sim.runner(body["id"].as_u64().unwrap()).unwrap();
    assert_eq!(r.project_id, Some(OWNED_PROJECT_ID));
}

#[test]
fn bearer_header_and_form_body() {
    let sim = Sim::start();
    let resp = client()
        .post(api(&sim, "/user/runners"))
        .header("Authorization", format!("Bearer {ADMIN_PAT}"))
        .form(&[
            ("runner_type", "instance_type"),
            ("tag_list", "x,y"),
            ("paused", "true"),
            ("maximum_timeout", "700"),
        ])
        .send()
        .unwrap();
    assert_eq!(resp.status().as_u16(), 201);
    let r = sim.runner(1).unwrap();
    assert!(r.paused);
    assert_eq!(r.maximum_timeout, Some(700));
    assert_eq!(r.tag_list, ["x", "y"]);
}

#[test]
fn non_admin_instance_runner_is_403() {
    let sim = Sim::start();
    let (status, body) = create(&sim, USER_PAT, json!({"runner_type": "instance_type"}));
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"message": "403 Forbidden - Insufficient permissions"})
    );
}

#[test]
fn foreign_group_or_project_is_403_for_user_but_fine_for_admin() {
    let sim = Sim::start();
    let (status, body) = create(
        &sim,
        USER_PAT,
        json!({"runner_type": "group_type", "group_id": 11}),
    );
    assert_eq!(
        (status, body["message"].as_str()),
        (403, Some("403 Forbidden - Insufficient permissions"))
    );
    let (status, _) = create(
        &sim,
        USER_PAT,
        json!({"runner_type": "project_type", "project_id": 21}),
    );
    assert_eq!(status, 403);
    let (status, _) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "group_type", "group_id": 11}),
    );
    assert_eq!(status, 201);
}

#[test]
fn unknown_group_is_400() {
    let sim = Sim::start();
    let (status, body) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "group_type", "group_id": 999}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"message": "400 Bad request - Missing/invalid scope"})
    );
}

#[test]
fn runner_type_and_scope_ids_are_required() {
    let sim = Sim::start();
    let (status, body) = create(&sim, ADMIN_PAT, json!({"description": "x"}));
    assert_eq!(
        (status, body),
        (400, json!({"error": "runner_type is missing"}))
    );
    let (status, body) = create(&sim, ADMIN_PAT, json!({"runner_type": "shared"}));
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "runner_type does not have a valid value"})
        )
    );
    let (status, body) = create(&sim, ADMIN_PAT, json!({"runner_type": "group_type"}));
    assert_eq!(
        (status, body),
        (400, json!({"error": "group_id is missing"}))
    );
    let (status, body) = create(&sim, ADMIN_PAT, json!({"runner_type": "project_type"}));
    assert_eq!(
        (status, body),
        (400, json!({"error": "project_id is missing"}))
    );
}

#[test]
fn short_maximum_timeout_is_400() {
    let sim = Sim::start();
    let (status, body) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "maximum_timeout": 60}),
    );
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"message": "400 Bad request - Maximum timeout needs to be at least 10 minutes"})
    );
}

#[test]
fn missing_or_unknown_pat_is_401() {
    let sim = Sim::start();
    let unauthorized = json!({"message": "401 Unauthorized"});
    let (status, body) = create(
        &sim,
        "glpat-nobody",
        json!({"runner_type": "instance_type"}),
    );
    assert_eq!((status, &body), (401, &unauthorized));
    let (status, body) = status_json(
        client()
            .post(api(&sim, "/user/runners"))
            .json(&json!({"runner_type": "instance_type"}))
            .send()
            .unwrap(),
    );
    assert_eq!((status, &body), (401, &unauthorized));
    let log = sim.requests();
    assert_eq!(log[0].auth, AuthKind::InvalidPat);
    assert_eq!(log[1].auth, AuthKind::None);
}
