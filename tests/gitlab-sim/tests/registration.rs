//! `POST /runners`: legacy registration with the registration token.

mod common;

use common::*;
use gitlab_sim::{AuthKind, CreatedBy, REGISTRATION_TOKEN, Sim, SimOptions};
use serde_json::{Value, json};

#[test]
fn registers_with_glrtr_token() {
    let sim = Sim::start();
    let (status, body) = register(
        &sim,
        json!({"description": "host-a shell", "tag_list": ["x", "y"], "run_untagged": false,
               "locked": true, "paused": true, "access_level": "ref_protected",
               "maximum_timeout": 3600, "maintenance_note": "n", "info": {"name": "gitlab-runner"}}),
    );
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["id"], 1);
    let token = body["token"].as_str().unwrap();
    assert!(token.starts_with("glrtr-") && token.len() == 26, "{token}");
    assert!(token[6..].chars().all(|c| c.is_ascii_alphanumeric()));
    assert_eq!(body["token_expires_at"], Value::Null);
    assert_eq!(body.as_object().unwrap().len(), 3);

    let r = sim.runner(1).unwrap();
    assert_eq!(r.token, token);
    assert_eq!(r.description, "host-a shell");
    assert_eq!(r.tag_list, ["x", "y"]);
    assert!(!r.run_untagged && r.locked && r.paused);
    assert_eq!(r.access_level, "ref_protected");
    assert_eq!(r.maximum_timeout, Some(3600));
    assert_eq!(r.maintenance_note.as_deref(), Some("n"));
    assert_eq!(r.runner_type, "instance_type");
    assert_eq!(r.created_by, CreatedBy::RegistrationToken);
    assert!(r.managers.is_empty());

    let (_, second) = register(&sim, json!({}));
    assert_eq!(second["id"], 2);
}

#[test]
fn form_body_and_csv_tags() {
    let sim = Sim::start();
    let resp = client()
        .post(api(&sim, "/runners"))
        .form(&[
            ("token", REGISTRATION_TOKEN),
            ("description", "form"),
            ("tag_list", "a, b,,c"),
            ("run_untagged", "false"),
            ("locked", "true"),
            ("maximum_timeout", "900"),
            ("info[name]", "runner"),
        ])
        .send()
        .unwrap();
    let (status, body) = status_json(resp);
    assert_eq!(status, 201, "{body}");
    let r = sim.runner(1).unwrap();
    assert_eq!(r.tag_list, ["a", "b", "c"]);
    assert!(!r.run_untagged && r.locked);
    assert_eq!(r.maximum_timeout, Some(900));
    let log = sim.requests();
    assert_eq!(log[0].auth, AuthKind::RegistrationToken);
    assert_eq!(log[0].body["tag_list"], "a, b,,c");
    assert_eq!(log[0].body["info"]["name"], "runner");
}

#[test]
fn defaults() {
    let sim = Sim::start();
    let (status, _) = register(&sim, json!({"description": null, "tag_list": null}));
    assert_eq!(status, 201);
    let r = sim.runner(1).unwrap();
    assert!(r.run_untagged && !r.locked && !r.paused);
    assert_eq!(r.access_level, "not_protected");
    assert_eq!(r.description, "");
}

#[test]
fn bad_token_is_403() {
    let sim = Sim::start();
    let (status, body) = register(&sim, json!({"token": "GR1348941nope"}));
    assert_eq!(status, 403);
    assert_eq!(
        body,
        json!({"message": "403 Forbidden - invalid token supplied"})
    );
    assert!(sim.runners().is_empty());
    assert_eq!(sim.requests()[0].auth, AuthKind::InvalidToken);
}

#[test]
fn missing_token_is_grape_400() {
    let sim = Sim::start();
    let (status, body) = register(&sim, json!({"token": null}));
    assert_eq!(status, 400);
    assert_eq!(body, json!({"error": "token is missing"}));
}

#[test]
fn short_maximum_timeout_is_400() {
    let sim = Sim::start();
    let (status, body) = register(&sim, json!({"maximum_timeout": 599}));
    assert_eq!(status, 400);
    assert_eq!(
        body,
        json!({"message": {"maximum_timeout": ["needs to be at least 10 minutes"]}})
    );
    assert!(sim.runners().is_empty());
}

#[test]
fn untagged_runner_without_tags_is_400() {
    let sim = Sim::start();
    let (status, body) = register(&sim, json!({"tag_list": [], "run_untagged": false}));
    assert_eq!(status, 400);
    assert!(body["message"]["tags_list"].is_array(), "{body}");
}

#[test]
fn bad_types_and_values_are_400() {
    let sim = Sim::start();
    let (status, body) = register(&sim, json!({"access_level": "everything"}));
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "access_level does not have a valid value"})
        )
    );
    let (status, body) = register(&sim, json!({"paused": "perhaps"}));
    assert_eq!((status, body), (400, json!({"error": "paused is invalid"})));
    let (status, body) = register(&sim, json!({"maximum_timeout": "soon"}));
    assert_eq!(
        (status, body),
        (400, json!({"error": "maximum_timeout is invalid"}))
    );
    let (status, body) = register(&sim, json!({"active": true, "paused": true}));
    assert_eq!(
        (status, body),
        (
            400,
            json!({"error": "active, paused are mutually exclusive"})
        )
    );
}

#[test]
fn disabled_registration_is_410_even_for_bad_tokens() {
    let sim = Sim::start_with(SimOptions {
        registration_disabled: true,
        ..SimOptions::default()
    });
    let gone = json!({"message": "410 Gone - runner registration disallowed"});
    let (status, body) = register(&sim, json!({}));
    assert_eq!((status, &body), (410, &gone));
    let (status, body) = register(&sim, json!({"token": "garbage"}));
    assert_eq!((status, &body), (410, &gone));
    assert!(sim.runners().is_empty());

    sim.set_registration_enabled(true);
    assert_eq!(register(&sim, json!({})).0, 201);
    sim.set_registration_enabled(false);
    assert_eq!(register(&sim, json!({})).0, 410);
}
