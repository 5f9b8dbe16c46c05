//! HTTPS mode: a client that trusts the simulator's CA is served; one that
//! does not fails the handshake, and nothing reaches the request log.

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

fn https_sim() -> Sim {
    Sim::start_with(SimOptions {
        tls: true,
        ..SimOptions::default()
    })
}

#[test]
fn serves_https_to_a_client_that_trusts_its_ca() {
    let sim = https_sim();
    assert!(sim.url().starts_with("https://127.0.0.1:"), "{}", sim.url());
    let ca = sim.ca_pem().expect("a CA with tls on");
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_pem(ca.as_bytes()).unwrap())
        .build()
        .unwrap();
    for host in ["127.0.0.1", "localhost"] {
        let url = format!("https://{host}:{}/api/v4/runners/all", sim.port());
        let response = client
            .get(&url)
            .header("PRIVATE-TOKEN", ADMIN_PAT)
            .send()
            .unwrap_or_else(|e| panic!("{url}: {e:?}"));
        assert_eq!(response.status(), 200);
    }
    assert_eq!(sim.requests().len(), 2);
}

#[test]
fn a_client_without_the_ca_fails_the_handshake() {
    let sim = https_sim();
    let client = reqwest::blocking::Client::builder()
        .use_rustls_tls()
        .build()
        .unwrap();
    let err = client
        .get(format!("{}/api/v4/runners/all", sim.url()))
        .header("PRIVATE-TOKEN", ADMIN_PAT)
        .send()
        .unwrap_err();
    assert!(err.is_connect(), "{err:?}");
    assert!(format!("{err:?}").contains("UnknownIssuer"), "{err:?}");
    assert!(sim.requests().is_empty());
    assert!(Sim::start().ca_pem().is_none());
}
