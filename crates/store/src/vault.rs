//! Vault / OpenBao KV v2 secret storage. One KV entry per connection and per
//! link with secret overrides, at `{prefix}/{workspace}/{owner}`; each write
//! makes a new KV version and rows record exactly which one they point to.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use switchboard_domain::SecretValues;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use vaultrs::kv2;

use crate::error::{StoreError, StoreResult};

/// How to reach Vault.
#[derive(Clone)]
pub struct VaultConfig {
    pub address: String,
    pub token: String,
    pub mount: String,
    /// Path prefix under the mount.
    pub prefix: String,
    /// PEM CA certificates to trust for TLS.
    pub ca_certs: Vec<PathBuf>,
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

/// A KV v2 client.
#[derive(Clone)]
pub struct VaultSecrets {
    client: Arc<VaultClient>,
    mount: String,
    prefix: String,
}

impl fmt::Debug for VaultSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultSecrets")
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .finish_non_exhaustive()
    }
}

fn classify(err: ClientError, what: &str) -> StoreError {
    match err {
        ClientError::RestClientError { .. } | ClientError::ResponseEmptyError => {
            StoreError::SecretsUnavailable(format!("{what}: vault unreachable"))
        }
        ClientError::APIError { code, .. } if code >= 500 || code == 429 => {
            StoreError::SecretsUnavailable(format!("{what}: vault answered {code}"))
        }
        ClientError::APIError { code, .. } => {
            StoreError::Secrets(format!("{what}: vault answered {code}"))
        }
        other => StoreError::Secrets(format!("{what}: {other}")),
    }
}

impl VaultSecrets {
    /// Connects (lazily: the first request opens the connection).
    pub fn new(config: &VaultConfig) -> StoreResult<Self> {
        // reqwest needs a process-wide rustls provider; installing twice is harmless.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let settings = VaultClientSettingsBuilder::default()
            .address(&config.address)
            .token(&config.token)
            .ca_certs(
                config
                    .ca_certs
                    .iter()
                    .map(|path| path.display().to_string())
                    .collect(),
            )
            .build()
            .map_err(|err| StoreError::Secrets(format!("invalid vault settings: {err}")))?;
        let client = VaultClient::new(settings).map_err(|err| classify(err, "vault client"))?;
        Ok(Self {
            client: Arc::new(client),
            mount: config.mount.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
        })
    }

    fn path(&self, workspace: &str, owner: &str) -> String {
        format!("{}/{workspace}/{owner}", self.prefix)
    }

    pub(crate) async fn put(
        &self,
        workspace: &str,
        owner: &str,
        values: &SecretValues,
    ) -> StoreResult<i64> {
        let path = self.path(workspace, owner);
        let metadata = kv2::set(self.client.as_ref(), &self.mount, &path, values)
            .await
            .map_err(|err| classify(err, "writing secrets"))?;
        i64::try_from(metadata.version)
            .map_err(|_| StoreError::Secrets("vault version out of range".into()))
    }

    pub(crate) async fn get(
        &self,
        workspace: &str,
        owner: &str,
        version: i64,
    ) -> StoreResult<SecretValues> {
        let path = self.path(workspace, owner);
        let version = u64::try_from(version)
            .map_err(|_| StoreError::Secrets("negative vault version".into()))?;
        kv2::read_version(self.client.as_ref(), &self.mount, &path, version)
            .await
            .map_err(|err| classify(err, "reading secrets"))
    }
}
