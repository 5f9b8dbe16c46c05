//! `GET/PUT/DELETE /runners/:id` and `GET /runners/:id/managers`.

mod common;

use common::*;
use gitlab_sim::{ADMIN_PAT, OWNED_GROUP_ID, SeedRunner, Sim, USER_PAT};
use reqwest::Method;
use serde_json::{Value, json};

fn group_runner(sim: &Sim, group: u64) -> u64 {
    sim.seed_runner(SeedRunner {
        description: "g".into(),
        tag_list: vec!["t".into()],
        runner_type: Some("group_type".into()),
        group_id: Some(group),
        ..SeedRunner::default()
    })
    .id
}

fn put(sim: &Sim, id: u64, pat: &str, body: Value) -> (u16, Value) {
    status_json(
        client()
            .put(api(sim, &format!("/runners/{id}")))
            .pat(pat)
            .json(&body)
            .send()
            .unwrap(),
    )
}

fn delete(sim: &Sim, id: u64, pat: &str) -> (u16, Value) {
    status_json(
        client()
            .delete(api(sim, &format!("/runners/{id}")))
            .pat(pat)
            .send()
            .unwrap(),
    )
}

#[test]
fn details_shape() {
    let sim = Sim::start();
    let (status, created) = create(
        &sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "description": "d", "tag_list": ["b", "a"],
               "maximum_timeout": 3600, "maintenance_note": "note", "access_level": "ref_protected"}),
    );
    assert_eq!(status, 201);
    let id = created["id"].as_u64().unwrap();
    let body: Value = get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
        .json()
        .unwrap();
    assert_eq!(
        body,
        json!({"id": id, "description": "d", "ip_address": null, "active": true, "paused": false,
               "is_shared": true, "runner_type": "instance_type", "name": null, "online": false,
               "status": "never_contacted", "tag_list": ["b", "a"], "run_untagged": true,
               "locked": false, "maximum_timeout": 3600, "access_level": "ref_protected",
               "version": null, "revision": null, "platform": null, "architecture": null,
               "contacted_at": null, "maintenance_note": "note", "projects": [], "groups": []})
    );
    assert!(body.get("token").is_none());
}

#[test]
fn group_and_project_details_name_their_scope() {
    let sim = Sim::start();
    let id = group_runner(&sim, OWNED_GROUP_ID);
    let body: Value = get(&sim, &format!("/runners/{id}"), USER_PAT)
        .json()
        .unwrap();
    assert_eq!(body["groups"][0]["id"], OWNED_GROUP_ID);
    assert_eq!(body["groups"][0]["name"], "sim-group");
    assert_eq!(body["is_shared"], false);
    let pid = sim
        .seed_runner(SeedRunner {
            runner_type: Some("project_type".into()),
            project_id: Some(gitlab_sim::OWNED_PROJECT_ID),
            tag_list: vec!["t".into()],
            ..SeedRunner::default()
        })
        .id;
    let body: Value = get(&sim, &format!("/runners/{pid}"), USER_PAT)
        .json()
        .unwrap();
    assert_eq!(
        body["projects"][0]["path_with_namespace"],
        "sim-group/sim-project"
    );
}

#[test]
fn details_access() {
    let sim = Sim::start();
    let (instance, _) = admin_runner(&sim, &["a"]);
    let foreign = group_runner(&sim, 11);
    let owned = group_runner(&sim, OWNED_GROUP_ID);
    // Instance runners are readable by every user; maintenance_note only by who can update.
    let (status, body) = status_json(get(&sim, &format!("/runners/{instance}"), USER_PAT));
    assert_eq!(status, 200);
    assert!(body.get("maintenance_note").is_none());
    assert_eq!(
        get(&sim, &format!("/runners/{owned}"), USER_PAT)
            .status()
            .as_u16(),
        200
    );
    let (status, body) = status_json(get(&sim, &format!("/runners/{foreign}"), USER_PAT));
    assert_eq!(
        (status, body),
        (403, json!({"message": "403 Forbidden - No access granted"}))
    );
    assert_eq!(
        get(&sim, &format!("/runners/{foreign}"), ADMIN_PAT)
            .status()
            .as_u16(),
        200
    );
    let (status, body) = status_json(get(&sim, "/runners/999", ADMIN_PAT));
    assert_eq!(
        (status, body),
        (404, json!({"message": "404 Runner Not Found"}))
    );
    let (status, body) = status_json(get(&sim, "/runners/abc", ADMIN_PAT));
    assert_eq!((status, body), (400, json!({"error": "id is invalid"})));
    let (status, _) = status_json(get(&sim, &format!("/runners/{instance}"), "glpat-x"));
    assert_eq!(status, 401);
}

#[test]
fn update_runner() {
    let sim = Sim::start();
    let (id, _) = admin_runner(&sim, &["a"]);
    let (status, body) = put(
        &sim,
        id,
        ADMIN_PAT,
        json!({"description": "new", "tag_list": "x,y", "paused": true, "run_untagged": false,
               "locked": true, "access_level": "ref_protected", "maximum_timeout": 7200,
               "maintenance_note": "m"}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["description"], "new");
    assert_eq!(body["tag_list"], json!(["x", "y"]));
    assert_eq!(body["paused"], true);
    assert_eq!(body["active"], false);
    let r = sim.runner(id).unwrap();
    assert_eq!(r.description, "new");
    assert_eq!(r.tag_list, ["x", "y"]);
    assert!(r.paused && r.locked && !r.run_untagged);
    assert_eq!(r.maximum_timeout, Some(7200));
    assert_eq!(r.maintenance_note.as_deref(), Some("m"));
    assert_eq!(r.access_level, "ref_protected");

    let (status, _) = put(&sim, id, ADMIN_PAT, json!({"active": true}));
    assert_eq!(status, 200);
    assert!(!sim.runner(id).unwrap().paused);
}

#[test]
fn update_errors() {
    let sim = Sim::start();
    let (id, _) = admin_runner(&sim, &["a"]);
    let (status, body) = put(&sim, id, ADMIN_PAT, json!({}));
    assert_eq!(status, 400);
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .ends_with("are missing, at least one parameter must be provided"),
        "{body}"
    );
    let (status, body) = put(&sim, id, ADMIN_PAT, json!({"maximum_timeout": 10}));
    assert_eq!(
        (status, body),
        (
            400,
            json!({"message": {"maximum_timeout": ["needs to be at least 10 minutes"]}})
        )
    );
    assert_eq!(sim.runner(id).unwrap().maximum_timeout, None);
    let (status, body) = put(&sim, id, USER_PAT, json!({"description": "x"}));
    assert_eq!(
        (status, body),
        (403, json!({"message": "403 Forbidden - No access granted"}))
    );
    let (status, _) = put(&sim, 99, ADMIN_PAT, json!({"description": "x"}));
    assert_eq!(status, 404);
    let owned = group_runner(&sim, OWNED_GROUP_ID);
    let (status, _) = put(&sim, owned, USER_PAT, json!({"tag_list": ["t", "u"]}));
    assert_eq!(status, 200);
    assert_eq!(sim.runner(owned).unwrap().tag_list, ["t", "u"]);
}

#[test]
fn delete_by_id() {
    let sim = Sim::start();
    let (instance, _) = admin_runner(&sim, &["a"]);
    let owned = group_runner(&sim, OWNED_GROUP_ID);
    let foreign = group_runner(&sim, 11);
    let no_access = json!({"message": "403 Forbidden - No access granted"});
    assert_eq!(delete(&sim, instance, USER_PAT), (403, no_access.clone()));
    assert_eq!(delete(&sim, foreign, USER_PAT), (403, no_access));
    assert_eq!(delete(&sim, owned, USER_PAT).0, 204);
    assert_eq!(delete(&sim, instance, ADMIN_PAT).0, 204);
    assert_eq!(
        delete(&sim, instance, ADMIN_PAT),
        (404, json!({"message": "404 Runner Not Found"}))
    );
    assert_eq!(sim.runners().len(), 1);
}

#[test]
fn managers_endpoint() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token, "system_id": "s_abcdefabcdef", "info": {"version": "18.3.0",
               "revision": "abc", "platform": "linux", "architecture": "arm64"}}),
    );
    let body: Value = get(&sim, &format!("/runners/{id}/managers"), ADMIN_PAT)
        .json()
        .unwrap();
    let list = body.as_array().unwrap();
    assert_eq!(list.len(), 1);
    let m = &list[0];
    assert_eq!(m["system_id"], "s_abcdefabcdef");
    assert_eq!(m["version"], "18.3.0");
    assert_eq!(m["architecture"], "arm64");
    assert_eq!(m["ip_address"], "127.0.0.1");
    assert_eq!(m["status"], "online");
    for key in ["id", "revision", "platform", "created_at", "contacted_at"] {
        assert!(!m[key].is_null(), "{key}");
    }
    let foreign = group_runner(&sim, 11);
    assert_eq!(
        get(&sim, &format!("/runners/{foreign}/managers"), USER_PAT)
            .status()
            .as_u16(),
        403
    );
    assert_eq!(
        get(&sim, "/runners/77/managers", ADMIN_PAT)
            .status()
            .as_u16(),
        404
    );
}

#[test]
fn removed_in_ui_is_gone_everywhere() {
    let sim = Sim::start();
    let (id, token) = admin_runner(&sim, &["a"]);
    assert!(sim.remove_runner(id));
    assert!(!sim.remove_runner(id));
    let (status, _) = token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token}),
    );
    assert_eq!(status, 403);
    assert_eq!(
        get(&sim, &format!("/runners/{id}"), ADMIN_PAT)
            .status()
            .as_u16(),
        404
    );
}
