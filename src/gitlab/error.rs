//! How a request to GitLab fails: [`ApiError`] (method, URL, status and a
//! message fit to print), the text taken from GitLab's error answers, and
//! the reading of transport errors — a TLS certificate problem is found by
//! its type (rustls's error in the `source()` chain), never by its wording.
//! Every message is masked and escaped before it is shown.

use std::error::Error;
use std::fmt;

use reqwest::Method;
use serde_json::Value;

/// How a give-up under GitLab's rate limit begins.
pub const RATE_LIMITED: &str = "rate limited by GitLab (HTTP 429)";

/// A request GitLab refused, or could not be reached for.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub method: Method,
    /// Without any secret: tokens never go in URLs.
    pub url: String,
    pub status: Option<u16>,
    pub message: String,
    /// Connection failures, timeouts and exhausted retries: GitLab is down
    /// or out of reach (or kept asking to wait until the deadline), as
    /// opposed to refusing the request.
    pub unreachable: bool,
}

impl ApiError {
    /// Given up while GitLab's rate limit held the run: for the exit rule
    /// this is like an unreachable GitLab, but it is named differently.
    pub fn rate_limited(&self) -> bool {
        self.message.starts_with(RATE_LIMITED)
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The message is built from GitLab's text: masked and escaped once
        // more here, whoever built it.
        let message = crate::logging::sanitize(&self.message);
        let url = crate::logging::sanitize(&self.url);
        match self.status {
            Some(status) => write!(f, "{} {url}: HTTP {status}: {message}", self.method),
            None => write!(f, "{} {url}: {message}", self.method),
        }
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

/// GitLab's `message` (or Grape's `error`), shortened; never the request.
pub(super) fn gitlab_message(body: &[u8]) -> String {
    let text = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => match map.get("message").or_else(|| map.get("error")) {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => Value::Object(map).to_string(),
        },
        _ => String::from_utf8_lossy(body).trim().to_string(),
    };
    // An echo of the request would quote its tokens: masked before the
    // cut (which could leave a token too short to recognise).
    let text = crate::secret::redact(&text);
    let text = if text.is_empty() {
        "(no message)".to_string()
    } else {
        text
    };
    let mut short: String = text.chars().take(300).collect();
    if short.len() < text.len() {
        short.push('…');
    }
    crate::logging::escape_control(&short).into_owned()
}

/// A TLS certificate problem: no retry will fix it, and it is no outage.
///
/// Found by type: rustls's [`rustls::Error`] somewhere in the chain. It
/// travels inside `io::Error`s (tokio-rustls wraps it in one, reqwest's
/// connector in another: `Custom { kind: Other, error: Custom { kind:
/// InvalidData, error: InvalidCertificate(UnknownIssuer) } }`), and an
/// `io::Error`'s `source()` skips the error it wraps, so the walk goes down
/// through `io::Error::get_ref` where there is one.
pub(super) fn is_certificate_error(e: &(dyn Error + 'static)) -> bool {
    rustls_error(e).is_some_and(is_certificate_problem)
}

/// Whether a TLS handshake got a plain-HTTP answer: the first bytes back
/// were no TLS record (rustls' `InvalidContentType`), as when an `https://`
/// url names a server that speaks plain HTTP. No retry changes that.
pub(super) fn is_plain_http_answer(e: &(dyn Error + 'static)) -> bool {
    matches!(
        rustls_error(e),
        Some(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType
        ))
    )
}

/// The rustls error in a chain, through `io::Error` layers.
fn rustls_error<'a>(e: &'a (dyn Error + 'static)) -> Option<&'a rustls::Error> {
    let mut next: Option<&(dyn Error + 'static)> = Some(e);
    while let Some(e) = next {
        if let Some(tls) = e.downcast_ref::<rustls::Error>() {
            return Some(tls);
        }
        next = match e
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.get_ref())
        {
            Some(inner) => Some(inner as &(dyn Error + 'static)),
            None => e.source(),
        };
    }
    None
}

/// The rustls errors about a certificate: ours to judge (the peer's chain,
/// its revocation list, none sent), the peer's alert about one, or the
/// peer's certificate messages at odds with ours or malformed. The last
/// are the variants whose text named a certificate when this was a match
/// on the word (behaviour kept). Not kept from the word match, as
/// accidents of wording: a handshake message out of order that happens to
/// be a `Certificate` message, and free text (`General`, `Other`); those
/// are retried like any other TLS failure, as are the certificate-message
/// variants whose names never said "certificate" (`BadCertChainExtensions`,
/// `InvalidCertCompression`, `SelectedUnofferedCertCompression`,
/// `UnsolicitedCertExtension`).
fn is_certificate_problem(e: &rustls::Error) -> bool {
    use rustls::AlertDescription as A;
    use rustls::{InvalidMessage, PeerIncompatible, PeerMisbehaved};
    match e {
        rustls::Error::InvalidCertificate(_)
        | rustls::Error::NoCertificatesPresented
        | rustls::Error::InvalidCertRevocationList(_) => true,
        rustls::Error::AlertReceived(alert) => matches!(
            alert,
            A::NoCertificate
                | A::BadCertificate
                | A::UnsupportedCertificate
                | A::CertificateRevoked
                | A::CertificateExpired
                | A::CertificateUnknown
                | A::CertificateUnobtainable
                | A::BadCertificateStatusResponse
                | A::BadCertificateHashValue
                | A::CertificateRequired
        ),
        rustls::Error::PeerIncompatible(why) => matches!(
            why,
            PeerIncompatible::IncorrectCertificateTypeExtension
                | PeerIncompatible::NoCertificateRequestSignatureSchemesInCommon
                | PeerIncompatible::UnsolicitedCertificateTypeExtension
        ),
        rustls::Error::InvalidMessage(why) => matches!(
            why,
            InvalidMessage::CertificatePayloadTooLarge
                | InvalidMessage::InvalidCertificateStatusType
        ),
        rustls::Error::PeerMisbehaved(why) => {
            matches!(why, PeerMisbehaved::OfferedDuplicateCertificateCompressions)
        }
        _ => false,
    }
}

/// What went wrong below HTTP, for the message: the kind, then the
/// innermost cause (rustls's or the OS's own words).
pub(super) fn transport_reason(e: &reqwest::Error) -> String {
    let kind = if e.is_timeout() {
        "timed out"
    } else if e.is_connect() {
        "cannot connect"
    } else {
        "connection failed"
    };
    let mut detail = String::new();
    let mut source = e.source();
    while let Some(s) = source {
        detail = s.to_string();
        source = s.source();
    }
    if detail.is_empty() {
        kind.to_string()
    } else {
        format!("{kind}: {detail}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gitlab_messages() {
        assert_eq!(
            gitlab_message(br#"{"message":"403 Forbidden"}"#),
            "403 Forbidden"
        );
        assert_eq!(
            gitlab_message(br#"{"error":"token is missing"}"#),
            "token is missing"
        );
        assert_eq!(
            gitlab_message(b"<html>bad gateway</html>"),
            "<html>bad gateway</html>"
        );
        assert_eq!(gitlab_message(b""), "(no message)");
    }

    /// An error that wraps another, as hyper and reqwest wrap the
    /// connector's `io::Error`.
    #[derive(Debug)]
    struct Wrapped(Box<dyn Error + Send + Sync>);

    impl fmt::Display for Wrapped {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("client error (Connect)")
        }
    }

    impl Error for Wrapped {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&*self.0)
        }
    }

    /// As reqwest's connector hands it on: rustls's error in tokio-rustls's
    /// `io::Error` in another `io::Error`, under hyper's error.
    fn in_io(e: rustls::Error) -> Wrapped {
        let tls = std::io::Error::new(std::io::ErrorKind::InvalidData, e);
        Wrapped(Box::new(std::io::Error::other(tls)))
    }

    #[test]
    fn certificate_errors_are_recognised_by_type_inside_an_io_error() {
        let unknown_issuer =
            rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer);
        assert!(is_certificate_error(&in_io(unknown_issuer.clone())));
        assert!(is_certificate_error(&Wrapped(Box::new(in_io(
            unknown_issuer.clone()
        )))));
        assert!(is_certificate_error(&unknown_issuer));
        let once = std::io::Error::new(std::io::ErrorKind::InvalidData, unknown_issuer.clone());
        assert!(is_certificate_error(&Wrapped(Box::new(once))));
        assert!(is_certificate_error(&in_io(
            rustls::Error::NoCertificatesPresented
        )));
        assert!(is_certificate_error(&in_io(rustls::Error::AlertReceived(
            rustls::AlertDescription::BadCertificate
        ))));
        assert!(is_certificate_error(&in_io(
            rustls::PeerIncompatible::UnsolicitedCertificateTypeExtension.into()
        )));
    }

    #[test]
    fn other_errors_are_not_certificate_errors_whatever_their_words() {
        // Another TLS failure: a retry may help, and it is not the CA's fault.
        assert!(!is_certificate_error(&in_io(rustls::Error::DecryptError)));
        assert!(!is_certificate_error(&in_io(rustls::Error::AlertReceived(
            rustls::AlertDescription::HandshakeFailure
        ))));
        // The word alone is no certificate error (a proxy's text, say).
        let worded = std::io::Error::other("certificate shop closed");
        assert!(!is_certificate_error(&Wrapped(Box::new(worded))));
        let refused = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        assert!(!is_certificate_error(&Wrapped(Box::new(refused))));
    }
}
