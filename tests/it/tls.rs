//! HTTPS end to end: GitLab behind a certificate from a private CA. With
//! the CA in `tls_ca_file` the sync works; without it the run fails at once
//! naming the certificate, before any request reaches GitLab, and nothing
//! is written.

use std::fs;

use gitlab_sim::{ADMIN_PAT, Sim, SimOptions};

use crate::support::*;

fn https_sim() -> Sim {
    Sim::start_with(SimOptions {
        tls: true,
        ..SimOptions::default()
    })
}

#[test]
fn private_ca_in_tls_ca_file() {
    let sim = https_sim();
    let host = Host::new();
    fs::write(host.prefix.join("gitlab-ca.pem"), sim.ca_pem().unwrap()).unwrap();
    host.write_template(&format!(
        "concurrent = 2\n\n[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"gitlab-ca.pem\"\n",
        sim.url()
    ));
    host.shell_executor(&sim.url());

    let run = host.run(&[]);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/user/runners"), 1);
    let runners = host.config_runners();
    assert_eq!(runners.len(), 1);
    assert_eq!(table_str(&runners[0], "url"), sim.url());
    assert!(!host.config().contains("tls_ca_file"));

    let again = host.run(&[]);
    assert_eq!(again.code, 0, "{again:?}");
    assert_eq!(sim.runners().len(), 1);
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn untrusted_certificate_fails_and_sends_nothing() {
    let sim = https_sim();
    let host = Host::fresh(&sim, Executors::Shell);

    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("invalid peer certificate"), "{run:?}");
    assert!(run.stderr.contains("`tls_ca_file`"), "{run:?}");
    assert!(sim.requests().is_empty());
    assert!(sim.runners().is_empty());
    assert!(host.config_runners().is_empty(), "{}", host.config());
    assert_no_secret(&run, &secrets(&sim));
}

#[test]
fn a_certificate_gone_wrong_keeps_every_token() {
    let sim = https_sim();
    let host = Host::new();
    let ca = host.prefix.join("gitlab-ca.pem");
    fs::write(&ca, sim.ca_pem().unwrap()).unwrap();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"gitlab-ca.pem\"\n",
        sim.url()
    ));
    host.three_executors(&sim.url());
    assert_eq!(host.run(&[]).code, 0);
    let config = host.config();
    let mtime = host.config_mtime();
    sim.clear_requests();

    // GitLab's certificate now comes from a CA the host does not trust.
    let other = https_sim();
    fs::write(&ca, other.ca_pem().unwrap()).unwrap();
    let run = host.run(&[]);
    assert_eq!(run.code, 1, "{run:?}");
    assert!(run.stderr.contains("invalid peer certificate"), "{run:?}");
    assert!(sim.requests().is_empty());
    assert_eq!(sim.runners().len(), 3);
    assert_eq!(host.config(), config);
    assert_eq!(host.config_mtime(), mtime);
    assert_no_secret(&run, &secrets(&sim));
}

/// `SSL_CERT_FILE` holding only the simulator's CA, `SSL_CERT_DIR` empty:
/// the system's trust store as OpenSSL finds it.
fn system_store(host: &Host, pem: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let file = host.dir.path().join("system-ca.pem");
    let dir = host.dir.path().join("system-certs");
    fs::write(&file, pem).unwrap();
    fs::create_dir_all(&dir).unwrap();
    (file, dir)
}

#[test]
fn a_ca_in_the_system_trust_store_is_trusted_without_tls_ca_file() {
    let sim = https_sim();
    let host = Host::fresh(&sim, Executors::Shell);
    let (file, dir) = system_store(&host, sim.ca_pem().unwrap());

    let mut cmd = host.command(&[]);
    cmd.env("SSL_CERT_FILE", &file).env("SSL_CERT_DIR", &dir);
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert_eq!(count(&sim.requests(), "POST", "/api/v4/user/runners"), 1);
    assert_eq!(host.config_runners().len(), 1);
}

/// A certificate block whose contents are not a certificate.
const BROKEN_CERTIFICATE: &str =
    "-----BEGIN CERTIFICATE-----\nAAAAAAAA\n-----END CERTIFICATE-----\n";

#[test]
fn an_http_gitlab_does_not_depend_on_the_system_trust_store() {
    let sim = Sim::start();
    let host = Host::fresh(&sim, Executors::Shell);
    let (file, dir) = system_store(&host, BROKEN_CERTIFICATE);

    let mut cmd = host.command(&[]);
    cmd.env("SSL_CERT_FILE", &file).env("SSL_CERT_DIR", &dir);
    // No proxy either (one could be reached over TLS).
    for proxy in ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"] {
        cmd.env_remove(proxy);
    }
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("WARN"), "{run:?}");
    assert_eq!(host.config_runners().len(), 1);
}

#[test]
fn a_broken_system_trust_store_leaves_tls_ca_file_working_and_says_so_when_relied_on() {
    let sim = https_sim();
    let host = Host::new();
    fs::write(host.prefix.join("gitlab-ca.pem"), sim.ca_pem().unwrap()).unwrap();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\ntls_ca_file = \"gitlab-ca.pem\"\n",
        sim.url()
    ));
    host.shell_executor(&sim.url());
    let (file, dir) = system_store(&host, BROKEN_CERTIFICATE);

    let mut cmd = host.command(&[]);
    cmd.env("SSL_CERT_FILE", &file).env("SSL_CERT_DIR", &dir);
    let run = run_command(cmd);
    assert_eq!(run.code, 0, "{run:?}");
    assert!(!run.stderr.contains("trust store"), "{run:?}");
    assert_eq!(host.config_runners().len(), 1);

    // Without `tls_ca_file` the store is relied on: a warning says why the
    // handshake then fails, and nothing reaches GitLab.
    sim.clear_requests();
    host.write_template(&format!(
        "[[client_configs]]\nurl = \"{}\"\npersonal_access_token = \"{ADMIN_PAT}\"\n",
        sim.url()
    ));
    let mut cmd = host.command(&[]);
    cmd.env("SSL_CERT_FILE", &file).env("SSL_CERT_DIR", &dir);
    let run = run_command(cmd);
    assert!(
        run.stderr
            .contains("the system's trust store holds no usable certificate"),
        "{run:?}"
    );
    assert!(run.stderr.contains("`tls_ca_file`"), "{run:?}");
    assert!(sim.requests().is_empty());
}
