//! Failures below gRPC, in words: a refused TCP connection, a TLS handshake
//! that failed, a connection that broke before an answer. Libraries describe
//! these with their own type names (`InvalidContentType`, `UnknownIssuer`,
//! "h2 protocol error"), which mean nothing to most users; this module says
//! what happened and, after asking the server what it speaks, what to change
//! (`https://` for a TLS server, `http://` for a plaintext one).

use std::error::Error as StdError;
use std::time::Duration;

use rustls::{CertificateError, Error as TlsError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// How long the protocol probe waits to connect and for the first bytes.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The HTTP/2 client preface and an empty SETTINGS frame: a gRPC server
/// answers with its own SETTINGS frame, a TLS server with an alert record.
const HTTP2_PREFACE: &[u8] =
    b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00";

/// What a failure was, in words, and what to do about it.
#[derive(Debug, Default)]
pub(crate) struct Diagnosis {
    pub(crate) cause: String,
    pub(crate) hint: Option<String>,
}

/// Describes `err` (a transport error and its causes) for a connection to
/// `endpoint` (`http://…` or `https://…`), probing the server when the
/// failure may come from speaking the wrong protocol.
pub(crate) async fn diagnose(endpoint: &str, err: &(dyn StdError + 'static)) -> Diagnosis {
    let tls = endpoint.starts_with("https://");
    if let Some(tls_error) = find_tls_error(err) {
        let mut diagnosis = describe_tls(tls_error);
        if diagnosis.hint.is_none() && speaks(endpoint).await == Some(Speaks::Plaintext) {
            diagnosis.hint = Some(format!(
                "the server speaks plaintext gRPC: use {}",
                with_scheme(endpoint, "http")
            ));
        }
        return diagnosis;
    }
    let mut diagnosis = Diagnosis {
        cause: causes(err),
        hint: None,
    };
    if has_io_kind(err, std::io::ErrorKind::ConnectionRefused) {
        diagnosis.cause = "nothing listens there (connection refused)".to_owned();
        diagnosis.hint = Some(
            "check --endpoint (or the context's, see `switchboard contexts list`) and that the \
             server runs"
                .to_owned(),
        );
    } else if is_timeout(err) {
        diagnosis.cause = "no answer within the deadline".to_owned();
        diagnosis.hint = Some("retry, or allow longer with --timeout".to_owned());
    } else if !tls && speaks(endpoint).await == Some(Speaks::Tls) {
        diagnosis.cause = "the server closed the connection: it expects TLS".to_owned();
        diagnosis.hint = Some(format!(
            "use {} (with --ca-cert CA.pem when a private CA signed its certificate)",
            with_scheme(endpoint, "https")
        ));
    }
    diagnosis
}

/// The text of `err` and its causes, each once, joined by `: `.
fn causes(err: &(dyn StdError + 'static)) -> String {
    let mut message = String::new();
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        let text = cause.to_string();
        if !text.is_empty() && !message.contains(&text) {
            if !message.is_empty() {
                message.push_str(": ");
            }
            message.push_str(&text);
        }
        source = cause.source();
    }
    message
}

/// The rustls error in `err`'s chain, also where an `io::Error` wraps it
/// (an `io::Error`'s `source()` skips the error it wraps).
fn find_tls_error<'a>(err: &'a (dyn StdError + 'static)) -> Option<&'a TlsError> {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if let Some(tls) = cause.downcast_ref::<TlsError>() {
            return Some(tls);
        }
        if let Some(tls) = cause
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
            .and_then(|inner| inner.downcast_ref::<TlsError>())
        {
            return Some(tls);
        }
        source = cause.source();
    }
    None
}

fn is_timeout(err: &(dyn StdError + 'static)) -> bool {
    has_io_kind(err, std::io::ErrorKind::TimedOut) || {
        let mut source: Option<&(dyn StdError + 'static)> = Some(err);
        let mut found = false;
        while let Some(cause) = source {
            found |= cause.is::<tonic::TimeoutExpired>();
            source = cause.source();
        }
        found
    }
}

/// Whether an `io::Error` of `kind` is in `err`'s chain.
fn has_io_kind(err: &(dyn StdError + 'static), kind: std::io::ErrorKind) -> bool {
    let mut source: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(cause) = source {
        if cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|io| io.kind() == kind)
        {
            return true;
        }
        source = cause.source();
    }
    false
}

fn describe_tls(err: &TlsError) -> Diagnosis {
    let (cause, hint) = match err {
        TlsError::InvalidCertificate(CertificateError::UnknownIssuer) => (
            "the server's certificate is not signed by a CA this client trusts",
            Some("pass --ca-cert with the PEM file of the CA that signed it"),
        ),
        TlsError::InvalidCertificate(
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
        ) => (
            "the server's certificate does not name this host",
            Some("pass --tls-server-name with a name the certificate lists"),
        ),
        TlsError::InvalidCertificate(
            CertificateError::Expired | CertificateError::ExpiredContext { .. },
        ) => ("the server's certificate has expired", None),
        TlsError::InvalidCertificate(
            CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. },
        ) => (
            "the server's certificate is not valid yet (is this machine's clock right?)",
            None,
        ),
        TlsError::InvalidCertificate(_) => ("the server's certificate was refused", None),
        TlsError::InvalidMessage(_) | TlsError::InappropriateMessage { .. } => {
            ("the server did not answer the TLS handshake", None)
        }
        TlsError::AlertReceived(_) => ("the server refused the TLS handshake", None),
        _ => ("the TLS handshake failed", None),
    };
    Diagnosis {
        cause: cause.to_owned(),
        hint: hint.map(str::to_owned),
    }
}

/// What the server at an endpoint answers to an HTTP/2 preface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Speaks {
    Tls,
    Plaintext,
}

async fn speaks(endpoint: &str) -> Option<Speaks> {
    let authority = authority(endpoint)?;
    let probe = async {
        let mut stream = tokio::net::TcpStream::connect(authority).await.ok()?;
        stream.write_all(HTTP2_PREFACE).await.ok()?;
        let mut first = [0u8; 9];
        let read = stream.read(&mut first).await.ok()?;
        classify(&first[..read])
    };
    tokio::time::timeout(PROBE_TIMEOUT, probe)
        .await
        .ok()
        .flatten()
}

/// A TLS record (alert 0x15 or handshake 0x16, version 3.x), or an HTTP/2
/// frame header whose type byte is SETTINGS (0x4).
fn classify(first: &[u8]) -> Option<Speaks> {
    match first {
        [0x15 | 0x16, 0x03, ..] => Some(Speaks::Tls),
        [_, _, _, 0x04, ..] if first.len() == 9 => Some(Speaks::Plaintext),
        _ => None,
    }
}

/// `host:port` of an `http(s)://host:port[/…]` endpoint.
fn authority(endpoint: &str) -> Option<&str> {
    let (_, rest) = endpoint.split_once("://")?;
    rest.split('/')
        .next()
        .filter(|authority| !authority.is_empty())
}

/// `endpoint` with its scheme replaced by `scheme`.
fn with_scheme(endpoint: &str, scheme: &str) -> String {
    match endpoint.split_once("://") {
        Some((_, rest)) => format!("{scheme}://{rest}"),
        None => format!("{scheme}://{endpoint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_bytes_tell_tls_from_plaintext_http2() {
        assert_eq!(classify(b"\x15\x03\x03\x00\x02\x02\x32"), Some(Speaks::Tls));
        assert_eq!(
            classify(b"\x00\x00\x12\x04\x00\x00\x00\x00\x00"),
            Some(Speaks::Plaintext)
        );
        assert_eq!(classify(b"HTTP/1.1 400"), None);
        assert_eq!(classify(b""), None);
    }

    #[test]
    fn tls_errors_are_told_without_library_names() {
        let unknown = describe_tls(&TlsError::InvalidCertificate(
            CertificateError::UnknownIssuer,
        ));
        assert_eq!(
            unknown.cause,
            "the server's certificate is not signed by a CA this client trusts"
        );
        assert!(unknown.hint.is_some_and(|hint| hint.contains("--ca-cert")));
        let wrapped = std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            TlsError::InvalidMessage(rustls::InvalidMessage::InvalidContentType),
        );
        let found = find_tls_error(&wrapped).expect("found inside the io::Error");
        assert_eq!(
            describe_tls(found).cause,
            "the server did not answer the TLS handshake"
        );
    }

    #[test]
    fn endpoints_change_scheme() {
        assert_eq!(
            with_scheme("https://127.0.0.1:5", "http"),
            "http://127.0.0.1:5"
        );
        assert_eq!(
            authority("http://sb.example.com:443/x"),
            Some("sb.example.com:443")
        );
    }
}
