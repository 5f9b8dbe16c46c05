//! `GET /runners` and `GET /runners/all`: access, filters, pagination.

mod common;

use common::*;
use gitlab_sim::{ADMIN_PAT, OWNED_GROUP_ID, OWNED_PROJECT_ID, SeedRunner, Sim, USER_PAT};
use reqwest::Method;
use serde_json::{Value, json};

fn seed(sim: &Sim, tags: &[&str]) -> u64 {
    sim.seed_runner(SeedRunner {
        description: format!("seed {tags:?}"),
        tag_list: tags.iter().map(|t| t.to_string()).collect(),
        ..SeedRunner::default()
    })
    .id
}

fn ids(resp: reqwest::blocking::Response) -> Vec<u64> {
    let body: Value = resp.json().unwrap();
    body.as_array()
        .unwrap()
        .iter()
        .map(|r| r["id"].as_u64().unwrap())
        .collect()
}

#[test]
fn list_item_shape() {
    let sim = Sim::start();
    seed(&sim, &["a"]);
    let resp = get(&sim, "/runners/all", ADMIN_PAT);
    assert_eq!(resp.status().as_u16(), 200);
    let body: Value = resp.json().unwrap();
    assert_eq!(
        body,
        json!([{"id": 1, "description": "seed [\"a\"]", "ip_address": null, "active": true,
                "paused": false, "is_shared": true, "runner_type": "instance_type",
                "name": null, "online": false, "status": "never_contacted"}])
    );
}

#[test]
fn all_is_admin_only() {
    let sim = Sim::start();
    let resp = get(&sim, "/runners/all", USER_PAT);
    let (status, body) = status_json(resp);
    assert_eq!((status, body), (403, json!({"message": "403 Forbidden"})));
    let (status, body) = status_json(get(&sim, "/runners/all", "glpat-wrong"));
    assert_eq!(
        (status, body),
        (401, json!({"message": "401 Unauthorized"}))
    );
}

#[test]
fn owned_runners_only_on_plain_list() {
    let sim = Sim::start();
    seed(&sim, &["a"]); // instance: not owned
    let group = sim
        .seed_runner(SeedRunner {
            runner_type: Some("group_type".into()),
            group_id: Some(OWNED_GROUP_ID),
            ..SeedRunner::default()
        })
        .id;
    sim.seed_runner(SeedRunner {
        runner_type: Some("group_type".into()),
        group_id: Some(11),
        ..SeedRunner::default()
    });
    let project = sim
        .seed_runner(SeedRunner {
            runner_type: Some("project_type".into()),
            project_id: Some(OWNED_PROJECT_ID),
            ..SeedRunner::default()
        })
        .id;
    assert_eq!(ids(get(&sim, "/runners", USER_PAT)), [group, project]);
    assert_eq!(ids(get(&sim, "/runners", ADMIN_PAT)), [group, project]);
    assert_eq!(ids(get(&sim, "/runners/all", ADMIN_PAT)).len(), 4);
    assert_eq!(
        ids(get(&sim, "/runners/all?type=group_type", ADMIN_PAT)),
        [2, 3]
    );
    assert_eq!(
        ids(get(&sim, "/runners?type=project_type", USER_PAT)),
        [project]
    );
}

#[test]
fn tag_list_filter_is_and_in_both_forms() {
    let sim = Sim::start();
    let both = seed(&sim, &["host", "managed", "main"]);
    seed(&sim, &["host", "main"]);
    let other = seed(&sim, &["managed", "main", "host", "extra"]);
    seed(&sim, &[]);
    let expect = vec![both, other];
    assert_eq!(
        ids(get(
            &sim,
            "/runners/all?tag_list[]=host&tag_list[]=managed",
            ADMIN_PAT
        )),
        expect
    );
    assert_eq!(
        ids(get(
            &sim,
            "/runners/all?tag_list%5B%5D=host&tag_list%5B%5D=managed",
            ADMIN_PAT
        )),
        expect
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?tag_list=host,managed", ADMIN_PAT)),
        expect
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?tag_list=extra", ADMIN_PAT)),
        [other]
    );
}

#[test]
fn status_and_paused_filters() {
    let sim = Sim::start();
    let (contacted, token) = admin_runner(&sim, &["a"]);
    let paused = sim
        .seed_runner(SeedRunner {
            paused: true,
            tag_list: vec!["b".into()],
            ..SeedRunner::default()
        })
        .id;
    token_call(
        &sim,
        Method::POST,
        "/runners/verify",
        json!({"token": token}),
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?status=online", ADMIN_PAT)),
        [contacted]
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?status=never_contacted", ADMIN_PAT)),
        [paused]
    );
    assert!(ids(get(&sim, "/runners/all?status=offline", ADMIN_PAT)).is_empty());
    assert!(ids(get(&sim, "/runners/all?status=stale", ADMIN_PAT)).is_empty());
    assert_eq!(
        ids(get(&sim, "/runners/all?status=paused", ADMIN_PAT)),
        [paused]
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?status=active", ADMIN_PAT)),
        [contacted]
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?paused=true", ADMIN_PAT)),
        [paused]
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?paused=false", ADMIN_PAT)),
        [contacted]
    );
    assert_eq!(
        ids(get(&sim, "/runners/all?scope=paused", ADMIN_PAT)),
        [paused]
    );
}

#[test]
fn bad_filters_are_400() {
    let sim = Sim::start();
    for (query, error) in [
        ("type=shared_type", "type does not have a valid value"),
        ("status=asleep", "status does not have a valid value"),
        ("paused=maybe", "paused is invalid"),
        ("scope=nonsense", "scope does not have a valid value"),
        ("page=two", "page is invalid"),
        ("per_page=lots", "per_page is invalid"),
        ("version_prefix=v1", "version_prefix is invalid"),
    ] {
        let (status, body) = status_json(get(&sim, &format!("/runners/all?{query}"), ADMIN_PAT));
        assert_eq!((status, body), (400, json!({"error": error})), "{query}");
    }
    let (status, body) = status_json(get(&sim, "/runners?scope=shared", USER_PAT));
    assert_eq!(
        (status, body),
        (400, json!({"message": "Scope contains invalid value"}))
    );
}

#[test]
fn pagination_over_250_runners() {
    let sim = Sim::start();
    for i in 0..250 {
        seed(&sim, &["t", if i % 2 == 0 { "even" } else { "odd" }]);
    }
    let base = sim.url();
    let mut seen = Vec::new();
    let mut page = "1".to_string();
    let mut pages = 0;
    while !page.is_empty() {
        let resp = get(
            &sim,
            &format!("/runners/all?per_page=100&page={page}"),
            ADMIN_PAT,
        );
        assert_eq!(header(&resp, "x-per-page").as_deref(), Some("100"));
        assert_eq!(header(&resp, "x-page").as_deref(), Some(page.as_str()));
        assert_eq!(header(&resp, "x-total").as_deref(), Some("250"));
        assert_eq!(header(&resp, "x-total-pages").as_deref(), Some("3"));
        let link = header(&resp, "link").unwrap();
        let n: u64 = page.parse().unwrap();
        let href = |p: u64| format!("<{base}/api/v4/runners/all?page={p}&per_page=100>");
        let mut expected = Vec::new();
        if n > 1 {
            expected.push(format!("{}; rel=\"prev\"", href(n - 1)));
        }
        if n < 3 {
            expected.push(format!("{}; rel=\"next\"", href(n + 1)));
        }
        expected.push(format!("{}; rel=\"first\"", href(1)));
        expected.push(format!("{}; rel=\"last\"", href(3)));
        assert_eq!(link, expected.join(", "));
        assert_eq!(
            header(&resp, "x-prev-page").unwrap(),
            if n > 1 {
                (n - 1).to_string()
            } else {
                String::new()
            }
        );
        let next = header(&resp, "x-next-page").unwrap();
        seen.extend(ids(resp));
        page = next;
        pages += 1;
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, (1..=250).collect::<Vec<u64>>());
}

#[test]
fn default_and_clamped_page_sizes() {
    let sim = Sim::start();
    for _ in 0..250 {
        seed(&sim, &["t"]);
    }
    let resp = get(&sim, "/runners/all", ADMIN_PAT);
    assert_eq!(header(&resp, "x-per-page").as_deref(), Some("20"));
    assert_eq!(header(&resp, "x-total-pages").as_deref(), Some("13"));
    assert_eq!(header(&resp, "x-next-page").as_deref(), Some("2"));
    assert_eq!(ids(resp), (1..=20).collect::<Vec<u64>>());

    let resp = get(&sim, "/runners/all?per_page=500", ADMIN_PAT);
    assert_eq!(header(&resp, "x-per-page").as_deref(), Some("100"));
    assert_eq!(ids(resp).len(), 100);

    let resp = get(&sim, "/runners/all?per_page=100&page=9", ADMIN_PAT);
    assert_eq!(header(&resp, "x-next-page").as_deref(), Some(""));
    assert_eq!(header(&resp, "x-prev-page").as_deref(), Some(""));
    assert!(ids(resp).is_empty());
}

#[test]
fn filters_survive_in_link_header() {
    let sim = Sim::start();
    for _ in 0..3 {
        seed(&sim, &["a", "b"]);
    }
    let resp = get(
        &sim,
        "/runners/all?tag_list[]=a&tag_list[]=b&per_page=2",
        ADMIN_PAT,
    );
    let link = header(&resp, "link").unwrap();
    let next = format!(
        "<{}/api/v4/runners/all?page=2&per_page=2&tag_list%5B%5D=a&tag_list%5B%5D=b>; rel=\"next\"",
        sim.url()
    );
    assert!(link.starts_with(&next), "{link}");
    // Following the link gives the rest.
    let url = link[1..link.find('>').unwrap()].to_string();
    let resp = client().get(url).pat(ADMIN_PAT).send().unwrap();
    assert_eq!(ids(resp), [3]);
}
