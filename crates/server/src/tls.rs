//! Server TLS for `dev`, `control` and `resolver`: a certificate chain and
//! its private key in PEM files, so tokens need not cross a network in
//! clear. rustls with ring, through tonic, the TLS stack the clients use too.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;
use tonic::transport::{Identity, ServerTlsConfig};

/// Longest a client may take over its TLS handshake before the connection is dropped.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS flags.
#[derive(Debug, Default, Args)]
pub(crate) struct TlsOpt {
    /// PEM certificate chain to serve gRPC over TLS with (server certificate
    /// first); needs --tls-key. Unset: plaintext.
    #[arg(long, env = "SWITCHBOARD_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key of --tls-cert; must be mode 0600 (or 0400).
    #[arg(long, env = "SWITCHBOARD_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
}

/// The config file's `[tls]` table.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct TlsFile {
    cert_file: Option<PathBuf>,
    key_file: Option<PathBuf>,
}

/// Where the server's certificate and key are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsSettings {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
}

impl TlsOpt {
    /// Flags over the file; `None` serves plaintext.
    pub(crate) fn settings(self, file: TlsFile) -> anyhow::Result<Option<TlsSettings>> {
        let cert_file = self.tls_cert.or(file.cert_file);
        let key_file = self.tls_key.or(file.key_file);
        match (cert_file, key_file) {
            (Some(cert_file), Some(key_file)) => Ok(Some(TlsSettings {
                cert_file,
                key_file,
            })),
            (None, None) => Ok(None),
            (Some(_), None) => bail!("tls cert_file needs key_file (--tls-key) too"),
            (None, Some(_)) => bail!("tls key_file needs cert_file (--tls-cert) too"),
        }
    }
}

/// Reads and checks the certificate and key; errors name the file, never
/// its contents.
pub(crate) fn server_config(settings: &TlsSettings) -> anyhow::Result<ServerTlsConfig> {
    let cert = std::fs::read(&settings.cert_file).with_context(|| {
        format!(
            "cannot read the TLS certificate {}",
            settings.cert_file.display()
        )
    })?;
    let key = switchboard_store::keyfile::read_private_text(&settings.key_file)
        .context("cannot use the TLS key")?;
    check_pem(&settings.cert_file, &cert, "CERTIFICATE")?;
    check_pem(&settings.key_file, key.as_bytes(), "PRIVATE KEY")?;
    Ok(ServerTlsConfig::new()
        .identity(Identity::from_pem(cert, key))
        .timeout(HANDSHAKE_TIMEOUT))
}

/// A readable error for the common mistakes (swapped files, DER instead of
/// PEM) before rustls's terser one at start-up.
fn check_pem(path: &Path, bytes: &[u8], label: &str) -> anyhow::Result<()> {
    let text = String::from_utf8_lossy(bytes);
    let found = text
        .lines()
        .any(|line| line.starts_with("-----BEGIN ") && line.contains(label));
    if !found {
        bail!(
            "{} holds no PEM block with {label} (-----BEGIN …{label}-----)",
            path.display()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cert_and_key_come_together_from_flags_or_the_file() {
        let file = TlsFile {
            cert_file: Some("file.crt".into()),
            key_file: Some("file.key".into()),
        };
        let flags = TlsOpt {
            tls_cert: Some("flag.crt".into()),
            tls_key: Some("flag.key".into()),
        };
        let settings = flags.settings(file).unwrap().unwrap();
        assert_eq!(settings.cert_file, PathBuf::from("flag.crt"));
        assert_eq!(settings.key_file, PathBuf::from("flag.key"));
        assert!(
            TlsOpt::default()
                .settings(TlsFile::default())
                .unwrap()
                .is_none()
        );
        let half = TlsFile {
            cert_file: Some("file.crt".into()),
            key_file: None,
        };
        let err = TlsOpt::default().settings(half).unwrap_err().to_string();
        assert!(err.contains("key_file"), "{err}");
    }

    #[test]
    fn a_key_where_the_certificate_goes_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.crt");
        let err = check_pem(
            &path,
            b"-----BEGIN PRIVATE KEY-----\nx\n-----END PRIVATE KEY-----\n",
            "CERTIFICATE",
        )
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("server.crt") && err.contains("CERTIFICATE"),
            "{err}"
        );
        assert!(!err.contains("-----BEGIN PRIVATE KEY-----\nx"), "{err}");
        assert!(check_pem(&path, b"-----BEGIN EC PRIVATE KEY-----\nx\n", "PRIVATE KEY").is_ok());
    }
}
