//! Helpers shared by the integration tests: a blocking HTTP client and
//! shorthands for the calls the tests make against a running `Sim`.

#![allow(dead_code)]

use std::time::Duration;

use gitlab_sim::{ADMIN_PAT, REGISTRATION_TOKEN, Sim};
use reqwest::blocking::{Client, RequestBuilder, Response};
use serde_json::{Value, json};

pub fn client() -> Client {
    Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

/// `<sim>/api/v4<path>`.
pub fn api(sim: &Sim, path: &str) -> String {
    format!("{}/api/v4{path}", sim.url())
}

pub trait WithPat {
    fn pat(self, pat: &str) -> Self;
}

impl WithPat for RequestBuilder {
    fn pat(self, pat: &str) -> Self {
        self.header("PRIVATE-TOKEN", pat)
    }
}

/// Status and parsed JSON body (`Null` when empty or not JSON).
pub fn status_json(resp: Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().unwrap_or_default();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// `POST /runners` with the registration token and extra JSON params.
pub fn register(sim: &Sim, extra: Value) -> (u16, Value) {
    let mut body = json!({"token": REGISTRATION_TOKEN, "description": "reg", "tag_list": ["a"]});
    merge(&mut body, extra);
    status_json(
        client()
            .post(api(sim, "/runners"))
            .json(&body)
            .send()
            .expect("send"),
    )
}

/// `POST /user/runners` as `pat` with JSON params.
pub fn create(sim: &Sim, pat: &str, body: Value) -> (u16, Value) {
    status_json(
        client()
            .post(api(sim, "/user/runners"))
            .pat(pat)
            .json(&body)
            .send()
            .expect("send"),
    )
}

/// An instance runner created by the admin; returns `(id, token)`.
pub fn admin_runner(sim: &Sim, tags: &[&str]) -> (u64, String) {
    let (status, body) = create(
        sim,
        ADMIN_PAT,
        json!({"runner_type": "instance_type", "description": "r", "tag_list": tags}),
    );
    assert_eq!(status, 201, "{body}");
    (
        body["id"].as_u64().expect("id"),
        body["token"].as_str().expect("token").to_string(),
    )
}

/// A runner-token call (`POST`/`DELETE` with a JSON body).
pub fn token_call(sim: &Sim, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
    status_json(
        client()
            .request(method, api(sim, path))
            .json(&body)
            .send()
            .expect("send"),
    )
}

/// `GET` as `pat`; returns the raw response.
pub fn get(sim: &Sim, path: &str, pat: &str) -> Response {
    client().get(api(sim, path)).pat(pat).send().expect("send")
}

pub fn header(resp: &Response, name: &str) -> Option<String> {
    resp.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

fn merge(base: &mut Value, extra: Value) {
    if let (Value::Object(b), Value::Object(e)) = (base, extra) {
        for (k, v) in e {
            if v.is_null() {
                b.remove(&k);
            } else {
                b.insert(k, v);
            }
        }
    }
}
