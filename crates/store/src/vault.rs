//! Vault / OpenBao KV v2 secret storage. One KV entry per connection and per
//! link with secret overrides, at `{prefix}/{workspace}/{owner}`; each write
//! makes a new KV version and rows record exactly which one they point to.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;

use std::collections::BTreeSet;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};
use switchboard_domain::SecretValues;
use vaultrs::api::kv2::requests::SetSecretMetadataRequest;
use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};
use vaultrs::error::ClientError;
use vaultrs::kv2;

use crate::entity::{connection, connection_version, link};
use crate::error::{StoreError, StoreResult};

/// Installs the process-wide rustls provider (ring) that reqwest-based
/// clients (Vault, JWKS) need; installing twice is harmless.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// KV versions kept per entry: the history rollback can reach.
pub const MAX_VERSIONS: u64 = 1000;

/// How long one Vault request may take before it counts as unavailable.
pub const DEFAULT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// What a sweep removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SweepReport {
    /// Entries examined.
    pub entries: usize,
    /// Versions destroyed because no committed row points to them.
    pub destroyed_versions: usize,
    /// Entries deleted because their connection or link is gone.
    pub deleted_entries: usize,
}

/// AppRole credentials: the service logs in and renews its own token.
#[derive(Clone)]
pub struct AppRole {
    /// Mount of the AppRole auth method, `approle` by default.
    pub mount: String,
    pub role_id: String,
    pub secret_id: String,
}

/// How to reach Vault.
#[derive(Clone)]
pub struct VaultConfig {
    pub address: String,
    /// Token to use; ignored when `approle` is set.
    pub token: String,
    /// Log in with AppRole instead of a fixed token.
    pub approle: Option<AppRole>,
    pub mount: String,
    /// Path prefix under the mount.
    pub prefix: String,
    /// PEM CA certificates to trust for TLS.
    pub ca_certs: Vec<PathBuf>,
    /// Longest a request may take (connect to last byte); a hung Vault then
    /// answers as unavailable instead of stalling the caller.
    pub timeout: std::time::Duration,
}

impl fmt::Debug for AppRole {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppRole")
            .field("mount", &self.mount)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for VaultConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VaultConfig")
            .field("address", &self.address)
            .field("mount", &self.mount)
            .field("prefix", &self.prefix)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}

/// A KV v2 client.
#[derive(Clone)]
pub struct VaultSecrets {
    client: Arc<tokio::sync::RwLock<VaultClient>>,
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
            StoreError::SecretsUnavailable(format!("{what}: vault unreachable or timed out"))
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
        install_crypto_provider();
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
            .timeout(Some(config.timeout))
            .build()
            .map_err(|err| StoreError::Secrets(format!("invalid vault settings: {err}")))?;
        let client = VaultClient::new(settings).map_err(|err| classify(err, "vault client"))?;
        Ok(Self {
            client: Arc::new(tokio::sync::RwLock::new(client)),
            mount: config.mount.clone(),
            prefix: config.prefix.trim_matches('/').to_owned(),
        })
    }

    /// Connects and, with AppRole, logs in now and keeps the token fresh by
    /// logging in again at half its lease.
    pub async fn connect(config: &VaultConfig) -> StoreResult<Self> {
        let secrets = Self::new(config)?;
        if let Some(approle) = config.approle.clone() {
            let lease = secrets.login(&approle).await?;
            let renewer = secrets.clone();
            tokio::spawn(async move {
                let mut wait = lease;
                loop {
                    tokio::time::sleep(wait).await;
                    match renewer.login(&approle).await {
                        Ok(lease) => wait = lease,
                        Err(err) => {
                            tracing::warn!(error = %err, "vault approle login failed; retrying in 10s");
                            wait = std::time::Duration::from_secs(10);
                        }
                    }
                }
            });
        }
        Ok(secrets)
    }

    /// Logs in with AppRole; returns how long to wait before logging in again.
    async fn login(&self, approle: &AppRole) -> StoreResult<std::time::Duration> {
        use vaultrs::client::Client as _;
        let auth = {
            let client = self.client.read().await;
            vaultrs::auth::approle::login(
                &*client,
                &approle.mount,
                &approle.role_id,
                &approle.secret_id,
            )
            .await
            .map_err(|err| classify(err, "approle login"))?
        };
        self.client.write().await.set_token(&auth.client_token);
        tracing::info!(
            lease_seconds = auth.lease_duration,
            "logged in to vault with approle"
        );
        Ok(std::time::Duration::from_secs(
            (auth.lease_duration / 2).max(5),
        ))
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
        let metadata = kv2::set(&*self.client.read().await, &self.mount, &path, values)
            .await
            .map_err(|err| classify(err, "writing secrets"))?;
        if metadata.version == 1 {
            // Keep enough history for rollbacks; the mount's default is 10.
            kv2::set_metadata(
                &*self.client.read().await,
                &self.mount,
                &path,
                Some(SetSecretMetadataRequest::builder().max_versions(MAX_VERSIONS)),
            )
            .await
            .map_err(|err| classify(err, "configuring secret history"))?;
        }
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
        kv2::read_version(&*self.client.read().await, &self.mount, &path, version)
            .await
            .map_err(|err| classify(err, "reading secrets"))
    }
}

impl VaultSecrets {
    async fn list(&self, path: &str) -> StoreResult<Vec<String>> {
        match kv2::list(&*self.client.read().await, &self.mount, path).await {
            Ok(keys) => Ok(keys),
            Err(ClientError::APIError { code: 404, .. }) => Ok(Vec::new()),
            Err(err) => Err(classify(err, "listing secrets")),
        }
    }

    /// Destroys KV versions that no committed row points to, and deletes
    /// entries whose connection or link is gone. Versions created after
    /// `written_before` are left alone: their transaction may still commit.
    pub async fn sweep<C: ConnectionTrait>(
        &self,
        db: &C,
        written_before: chrono::DateTime<chrono::Utc>,
    ) -> StoreResult<SweepReport> {
        let mut report = SweepReport::default();
        for workspace in self.list(&format!("{}/", self.prefix)).await? {
            let workspace = workspace.trim_end_matches('/').to_owned();
            for kind in ["connections", "links"] {
                for key in self
                    .list(&format!("{}/{workspace}/{kind}/", self.prefix))
                    .await?
                {
                    let Ok(pk) = key.parse::<i64>() else { continue };
                    let owner = format!("{kind}/{pk}");
                    let referenced = referenced_versions(db, &workspace, kind, pk).await?;
                    report.entries += 1;
                    self.sweep_entry(&workspace, &owner, referenced, written_before, &mut report)
                        .await?;
                }
            }
        }
        Ok(report)
    }

    async fn sweep_entry(
        &self,
        workspace: &str,
        owner: &str,
        referenced: Option<BTreeSet<u64>>,
        written_before: chrono::DateTime<chrono::Utc>,
        report: &mut SweepReport,
    ) -> StoreResult<()> {
        let path = self.path(workspace, owner);
        let metadata = kv2::read_metadata(&*self.client.read().await, &self.mount, &path)
            .await
            .map_err(|err| classify(err, "reading secret metadata"))?;
        let old_enough = |created: &str| {
            chrono::DateTime::parse_from_rfc3339(created)
                .map(|created| created < written_before)
                .unwrap_or(false)
        };
        let Some(referenced) = referenced else {
            // The row is gone; once every version is past the grace period the
            // whole entry goes.
            if metadata
                .versions
                .values()
                .all(|version| old_enough(&version.created_time))
            {
                kv2::delete_metadata(&*self.client.read().await, &self.mount, &path)
                    .await
                    .map_err(|err| classify(err, "deleting secrets"))?;
                report.deleted_entries += 1;
            }
            return Ok(());
        };
        let orphans: Vec<u64> = metadata
            .versions
            .iter()
            .filter(|(_, version)| !version.destroyed && old_enough(&version.created_time))
            .filter_map(|(number, _)| number.parse::<u64>().ok())
            .filter(|number| !referenced.contains(number))
            .collect();
        if !orphans.is_empty() {
            report.destroyed_versions += orphans.len();
            kv2::destroy_versions(&*self.client.read().await, &self.mount, &path, orphans)
                .await
                .map_err(|err| classify(err, "destroying secret versions"))?;
        }
        Ok(())
    }
}

/// The KV versions committed rows point to; `None` when the owner row is gone.
async fn referenced_versions<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    kind: &str,
    pk: i64,
) -> StoreResult<Option<BTreeSet<u64>>> {
    let to_u64 = |version: Option<i64>| version.and_then(|version| u64::try_from(version).ok());
    if kind == "links" {
        let row = link::Entity::find_by_id(pk)
            .filter(link::Column::Workspace.eq(workspace))
            .one(db)
            .await?;
        return Ok(row.map(|row| to_u64(row.secret_version).into_iter().collect()));
    }
    let Some(row) = connection::Entity::find_by_id(pk)
        .filter(connection::Column::Workspace.eq(workspace))
        .one(db)
        .await?
    else {
        return Ok(None);
    };
    let mut versions: BTreeSet<u64> = to_u64(row.secret_version).into_iter().collect();
    let history = connection_version::Entity::find()
        .filter(connection_version::Column::ConnectionPk.eq(pk))
        .all(db)
        .await?;
    versions.extend(
        history
            .into_iter()
            .filter_map(|version| to_u64(version.secret_version)),
    );
    Ok(Some(versions))
}
