//! The certificates a run trusts: the system's trust store (what
//! `update-ca-certificates` / `update-ca-trust` maintain, found as OpenSSL
//! finds it, `SSL_CERT_FILE` and `SSL_CERT_DIR` honoured) plus each
//! `client_configs` entry's `tls_ca_file`.
//!
//! The system store is read at most once per run, and not at all when
//! every entry is plainly `http://` and no proxy is set in the environment
//! (a proxy may be reached over TLS even for an `http://` GitLab); redirects
//! are never followed. Reading it was most of a restart's own CPU on a
//! Debian host (the bundle and the ~300 entries of `/etc/ssl/certs`: 5 of
//! 8 ms; `benches/startup.rs`), so it is read on a thread of its own,
//! started as soon as the input is loaded, while the run takes its lock and
//! reads the last output. Once read, every GitLab's client trusts it. Each
//! client's TLS settings are those reqwest would choose itself: ring, TLS
//! 1.2 and 1.3, SNI, ALPN `http/1.1`.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow};
use rustls::RootCertStore;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

use crate::config::ClientConfig;

/// The system's trust store, being read (or not needed).
pub struct SystemRoots {
    /// The reading (done at once if no thread could be started).
    loading: Option<Result<JoinHandle<Loaded>, Loaded>>,
    /// Some GitLab that may need TLS has no `tls_ca_file`: it relies on
    /// this store.
    relied_on: bool,
}

/// What reading the store gives: the certificates, and how long it took.
type Loaded = (rustls_native_certs::CertificateResult, Duration);

/// The proxy variables reqwest reads for an `http://` URL: set, they may
/// name an `https://` proxy, reached over TLS.
const PROXY_VARIABLES: [&str; 4] = ["http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"];

impl SystemRoots {
    /// Starts reading the system's trust store unless no GitLab of
    /// `clients` can need it (`env`: the process environment).
    pub fn start(clients: &[ClientConfig], env: &HashMap<String, String>) -> SystemRoots {
        let proxied = PROXY_VARIABLES
            .iter()
            .any(|name| env.get(*name).is_some_and(|v| !v.is_empty()));
        let may_need_tls = |c: &ClientConfig| proxied || !is_plain_http(&c.url);
        let read = || {
            let started = Instant::now();
            (rustls_native_certs::load_native_certs(), started.elapsed())
        };
        let loading = clients.iter().any(may_need_tls).then(|| {
            // A thread the system refuses (`TasksMax=`) only costs the overlap.
            std::thread::Builder::new()
                .name("trust-store".into())
                .spawn(read)
                .map_err(|_| read())
        });
        SystemRoots {
            loading,
            relied_on: clients
                .iter()
                .any(|c| may_need_tls(c) && c.tls_ca.is_none()),
        }
    }

    /// The certificates read, once reading ended (empty when it was not
    /// needed). A store that yields no usable certificate is not an error:
    /// a GitLab with its own `tls_ca_file` still works, and any other fails
    /// its handshake naming the certificate and `tls_ca_file` (after a
    /// warning that says why).
    pub fn wait(self) -> Arc<RootCertStore> {
        let mut store = RootCertStore::empty();
        let Some(loading) = self.loading else {
            return Arc::new(store);
        };
        let Ok((found, took)) = loading.map_or_else(Ok, JoinHandle::join) else {
            tracing::warn!("reading the system's trust store failed: trusting `tls_ca_file` only");
            return Arc::new(store);
        };
        for error in &found.errors {
            tracing::debug!("system trust store: {error}");
        }
        let (valid, invalid) = store.add_parsable_certificates(found.certs);
        tracing::debug!(
            "system trust store: {valid} certificates, {invalid} unusable, read in {:.1} ms",
            took.as_secs_f64() * 1000.0
        );
        if valid == 0 && self.relied_on {
            let why = found
                .errors
                .first()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default();
            tracing::warn!(
                "the system's trust store holds no usable certificate{why}: an https GitLab is trusted only through its `tls_ca_file`"
            );
        }
        Arc::new(store)
    }
}

/// `url` is `http://` as reqwest will parse it (the string may differ from
/// what the parser makes of it: ` https://…`, `https:host`, `HTTPS://…`).
fn is_plain_http(url: &str) -> bool {
    reqwest::Url::parse(url).is_ok_and(|u| u.scheme() == "http")
}

/// The TLS settings of one GitLab: the system's roots (as read, if they
/// were) plus its `tls_ca_file` (already checked while loading).
pub fn client_config(
    client: &ClientConfig,
    system: &RootCertStore,
) -> Result<rustls::ClientConfig> {
    let mut roots = system.clone();
    if let Some((path, pem)) = &client.tls_ca {
        add_bundle(&mut roots, path, pem)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(rustls::ALL_VERSIONS)
        .context("no TLS version to offer")?
        .with_root_certificates(roots)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn add_bundle(roots: &mut RootCertStore, path: &Path, pem: &[u8]) -> Result<()> {
    for (i, cert) in CertificateDer::pem_slice_iter(pem).enumerate() {
        let cert =
            cert.map_err(|e| anyhow!("`{}`: certificate #{}: {e}", path.display(), i + 1))?;
        roots
            .add(cert)
            .map_err(|e| anyhow!("`{}`: certificate #{}: {e}", path.display(), i + 1))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    #[test]
    fn only_a_plain_http_url_goes_without_the_system_store() {
        assert!(is_plain_http("http://gitlab.example.com"));
        assert!(is_plain_http("HTTP://https.example.com/"));
        for url in [
            "https://gitlab.example.com",
            "HTTPS://gitlab.example.com/",
            // What the URL parser makes https, as reqwest will.
            " https://gitlab.example.com",
            "https:gitlab.example.com",
            "ht\ttps://gitlab.example.com",
            "not a url",
        ] {
            assert!(!is_plain_http(url), "{url:?}");
        }
    }

    fn client(url: &str, ca: bool) -> ClientConfig {
        ClientConfig {
            tls_ca: ca.then(|| (PathBuf::from("ca.pem"), Vec::new())),
            ..ClientConfig::for_test(url, true)
        }
    }

    #[test]
    fn the_store_is_read_when_a_gitlab_or_a_proxy_may_need_it() {
        let none = HashMap::new();
        let proxy: HashMap<String, String> =
            [("HTTP_PROXY".to_string(), "https://proxy:3128".to_string())].into();
        let plain = [client("http://gitlab.example.com", false)];
        let tls = [client("https://gitlab.example.com", false)];
        let tls_with_ca = [client("https://gitlab.example.com", true)];

        let roots = SystemRoots::start(&plain, &none);
        assert!(roots.loading.is_none() && !roots.relied_on);
        let roots = SystemRoots::start(&plain, &proxy);
        assert!(roots.loading.is_some() && roots.relied_on);
        let roots = SystemRoots::start(&tls, &none);
        assert!(roots.loading.is_some() && roots.relied_on);
        let roots = SystemRoots::start(&tls_with_ca, &none);
        assert!(roots.loading.is_some() && !roots.relied_on);
    }
}
