//! The certificates a run trusts: the system's trust store (what
//! `update-ca-certificates` / `update-ca-trust` maintain, found as OpenSSL
//! finds it, `SSL_CERT_FILE` and `SSL_CERT_DIR` honoured) plus each
//! `client_configs` entry's `tls_ca_file`.
//!
//! The system store is read at most once per run, and only when some entry
//! is `https://`: an `http://` GitLab needs no certificate, and redirects
//! are never followed. Reading it is most of a run's own work on a Debian
//! host (the bundle plus ~300 files under `/etc/ssl/certs`: 5 ms of CPU,
//! twice that of everything else a restart does; `benches/startup.rs`), so
//! it is read on a thread of its own, started as soon as the template is
//! loaded, while the run takes its lock and reads the last output. Each
//! GitLab's TLS settings are those reqwest would choose itself: ring, TLS
//! 1.2 and 1.3, SNI, ALPN `http/1.1`.

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
    /// The reading, and how long it took.
    loading: Option<JoinHandle<(rustls_native_certs::CertificateResult, Duration)>>,
    /// Some https GitLab has no `tls_ca_file`: it relies on this store.
    relied_on: bool,
}

impl SystemRoots {
    /// Starts reading the system's trust store if any of `clients` is
    /// `https://`.
    pub fn start(clients: &[ClientConfig]) -> SystemRoots {
        let needed = clients.iter().any(|c| is_https(&c.url));
        SystemRoots {
            loading: needed.then(|| {
                std::thread::spawn(|| {
                    let started = Instant::now();
                    (rustls_native_certs::load_native_certs(), started.elapsed())
                })
            }),
            relied_on: clients
                .iter()
                .any(|c| is_https(&c.url) && c.tls_ca.is_none()),
        }
    }

    /// The certificates read, once reading ended (empty when no GitLab is
    /// `https://`). A store that yields no usable certificate is not an
    /// error: a GitLab with its own `tls_ca_file` still works, and any
    /// other fails its handshake naming the certificate and `tls_ca_file`
    /// (after a warning that says why).
    pub fn wait(self) -> Arc<RootCertStore> {
        let mut store = RootCertStore::empty();
        let Some(loading) = self.loading else {
            return Arc::new(store);
        };
        let Ok((found, took)) = loading.join() else {
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

/// `url` is `https://` (a scheme is case-insensitive).
fn is_https(url: &str) -> bool {
    url.get(..8)
        .is_some_and(|scheme| scheme.eq_ignore_ascii_case("https://"))
}

/// The TLS settings of one GitLab: the system's roots when it is
/// `https://`, plus its `tls_ca_file` (already checked while loading).
pub fn client_config(
    client: &ClientConfig,
    system: &RootCertStore,
) -> Result<rustls::ClientConfig> {
    let mut roots = if is_https(&client.url) {
        system.clone()
    } else {
        RootCertStore::empty()
    };
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
    use super::*;

    #[test]
    fn only_an_https_url_needs_the_system_store() {
        assert!(is_https("https://gitlab.example.com"));
        assert!(is_https("HTTPS://gitlab.example.com/"));
        assert!(!is_https("http://gitlab.example.com"));
        assert!(!is_https("http://https.example.com"));
        assert!(!is_https("https:"));
    }
}
