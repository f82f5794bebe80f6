//! Where secret field values live. The embedded store keeps AES-256-GCM
//! ciphertexts in the database, written in the caller's transaction; each
//! ciphertext's associated data binds it to its workspace, owner, field and
//! version, so ciphertexts cannot be swapped between rows.

use std::fmt;
use std::sync::Arc;

use aes_gcm::aead::{Aead, AeadCore, KeyInit, OsRng, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};
use serde_json::Value;
use switchboard_domain::SecretValues;

use crate::entity::secret;
use crate::error::{StoreError, StoreResult};

/// Length of the embedded store's key file.
pub const EMBEDDED_KEY_LEN: usize = 32;

/// The secret store in use.
#[derive(Debug, Clone)]
pub enum SecretStore {
    /// AES-256-GCM ciphertexts in the database.
    Embedded(EmbeddedSecrets),
    /// Vault or OpenBao KV v2.
    Vault(crate::vault::VaultSecrets),
}

/// The embedded store's cipher. Its `Debug` never shows the key.
#[derive(Clone)]
pub struct EmbeddedSecrets {
    cipher: Arc<Aes256Gcm>,
}

impl fmt::Debug for EmbeddedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedSecrets").finish_non_exhaustive()
    }
}

/// New secret values on their way to a row. Vault is written before the
/// database transaction takes the write lock, so a slow or hung Vault never
/// holds that lock; the embedded store writes inside the transaction.
pub enum StagedSecrets {
    /// The values did not change: the row keeps the version it points to.
    Unchanged,
    /// Already written to Vault as this version (`None`: no secrets).
    Written(Option<i64>),
    /// To be encrypted into the transaction that saves the row.
    Pending(SecretValues),
}

impl fmt::Debug for StagedSecrets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the values.
        match self {
            Self::Unchanged => f.write_str("Unchanged"),
            Self::Written(version) => f.debug_tuple("Written").field(version).finish(),
            Self::Pending(values) => f
                .debug_tuple("Pending")
                .field(&values.keys().collect::<Vec<_>>())
                .finish(),
        }
    }
}

impl SecretStore {
    /// Whether secrets live outside the database (Vault): writes then reach
    /// the store before, and apart from, the database transaction.
    pub fn is_remote(&self) -> bool {
        matches!(self, Self::Vault(_))
    }

    /// Stages `values` as the next version of `owner`'s secrets. Vault is
    /// written now, outside any transaction: a version no committed row
    /// points to is never read, and the sweep destroys it.
    pub async fn stage(
        &self,
        workspace: &str,
        owner: &str,
        values: SecretValues,
    ) -> StoreResult<StagedSecrets> {
        match self {
            Self::Embedded(_) => Ok(StagedSecrets::Pending(values)),
            Self::Vault(_) if values.is_empty() => Ok(StagedSecrets::Written(None)),
            Self::Vault(vault) => Ok(StagedSecrets::Written(Some(
                vault.put(workspace, owner, &values).await?,
            ))),
        }
    }

    /// The secret version a row saved in `txn` points to: `current` when
    /// unchanged, the staged Vault version, or embedded ciphertexts written
    /// now inside `txn`.
    pub async fn record<C: ConnectionTrait>(
        &self,
        txn: &C,
        workspace: &str,
        owner: &str,
        staged: StagedSecrets,
        current: Option<i64>,
        now_micros: i64,
    ) -> StoreResult<Option<i64>> {
        match staged {
            StagedSecrets::Unchanged => Ok(current),
            StagedSecrets::Written(version) => Ok(version),
            StagedSecrets::Pending(values) => {
                self.put(txn, workspace, owner, &values, now_micros).await
            }
        }
    }

    /// The embedded store with a 32-byte key.
    pub fn embedded(key: &[u8]) -> StoreResult<Self> {
        let cipher = Aes256Gcm::new_from_slice(key)
            .map_err(|_| StoreError::Secrets("the secret key must be 32 bytes".to_owned()))?;
        Ok(Self::Embedded(EmbeddedSecrets {
            cipher: Arc::new(cipher),
        }))
    }

    /// Writes `values` as a new version of `owner`'s secrets and returns the
    /// version, or `None` when there is nothing to store. The embedded store
    /// writes inside `txn`, so the secrets commit or roll back with the row
    /// that points to them.
    pub async fn put<C: ConnectionTrait>(
        &self,
        txn: &C,
        workspace: &str,
        owner: &str,
        values: &SecretValues,
        now_micros: i64,
    ) -> StoreResult<Option<i64>> {
        if values.is_empty() {
            return Ok(None);
        }
        match self {
            Self::Embedded(embedded) => embedded
                .put(txn, workspace, owner, values, now_micros)
                .await
                .map(Some),
            // Written before the database commit; a version no committed row
            // points to is never read, and the sweep deletes it.
            Self::Vault(vault) => vault.put(workspace, owner, values).await.map(Some),
        }
    }

    /// Deletes every version of `owner`'s secrets, inside `txn` for the embedded store.
    pub async fn delete_owner<C: ConnectionTrait>(
        &self,
        txn: &C,
        workspace: &str,
        owner: &str,
    ) -> StoreResult<()> {
        match self {
            Self::Embedded(_) => {
                secret::Entity::delete_many()
                    .filter(secret::Column::Workspace.eq(workspace))
                    .filter(secret::Column::Owner.eq(owner))
                    .exec(txn)
                    .await?;
                Ok(())
            }
            // Vault entries outlive the transaction: the sweep removes those no
            // committed row points to.
            Self::Vault(_) => Ok(()),
        }
    }

    /// Reads exactly `version` of `owner`'s secrets (empty for `None`).
    pub async fn get<C: ConnectionTrait>(
        &self,
        db: &C,
        workspace: &str,
        owner: &str,
        version: Option<i64>,
    ) -> StoreResult<SecretValues> {
        let Some(version) = version else {
            return Ok(SecretValues::new());
        };
        match self {
            Self::Embedded(embedded) => embedded.get(db, workspace, owner, version).await,
            Self::Vault(vault) => vault.get(workspace, owner, version).await,
        }
    }
}

fn associated_data(workspace: &str, owner: &str, field: &str, version: i64) -> Vec<u8> {
    // Length-prefixed so no two tuples encode alike.
    let mut data = Vec::new();
    for part in [workspace, owner, field] {
        data.extend_from_slice(&(part.len() as u64).to_be_bytes());
        data.extend_from_slice(part.as_bytes());
    }
    data.extend_from_slice(&version.to_be_bytes());
    data
}

impl EmbeddedSecrets {
    async fn put<C: ConnectionTrait>(
        &self,
        txn: &C,
        workspace: &str,
        owner: &str,
        values: &SecretValues,
        now_micros: i64,
    ) -> StoreResult<i64> {
        let latest = secret::Entity::find()
            .filter(secret::Column::Owner.eq(owner))
            .order_by_desc(secret::Column::Version)
            .limit(1)
            .one(txn)
            .await?;
        let version = latest.map_or(1, |row| row.version + 1);
        let mut rows = Vec::with_capacity(values.len());
        for (field, value) in values {
            let plaintext = serde_json::to_vec(value)
                .map_err(|err| StoreError::Secrets(format!("cannot encode secret: {err}")))?;
            let nonce = Aes256Gcm::generate_nonce(&mut OsRng);
            let aad = associated_data(workspace, owner, field, version);
            let ciphertext = self
                .cipher
                .encrypt(
                    &nonce,
                    Payload {
                        msg: &plaintext,
                        aad: &aad,
                    },
                )
                .map_err(|_| StoreError::Secrets("encryption failed".to_owned()))?;
            rows.push(secret::ActiveModel {
                workspace: Set(workspace.to_owned()),
                owner: Set(owner.to_owned()),
                version: Set(version),
                field: Set(field.clone()),
                nonce: Set(nonce.to_vec()),
                ciphertext: Set(ciphertext),
                create_time: Set(now_micros),
                ..Default::default()
            });
        }
        secret::Entity::insert_many(rows).exec(txn).await?;
        Ok(version)
    }

    async fn get<C: ConnectionTrait>(
        &self,
        db: &C,
        workspace: &str,
        owner: &str,
        version: i64,
    ) -> StoreResult<SecretValues> {
        let rows = secret::Entity::find()
            .filter(secret::Column::Owner.eq(owner))
            .filter(secret::Column::Version.eq(version))
            .filter(secret::Column::Workspace.eq(workspace))
            .all(db)
            .await?;
        if rows.is_empty() {
            return Err(StoreError::Secrets(format!(
                "secrets of {owner} version {version} are missing"
            )));
        }
        let mut values = SecretValues::new();
        for row in rows {
            if row.nonce.len() != 12 {
                return Err(StoreError::Secrets(format!("bad nonce for {owner}")));
            }
            let aad = associated_data(workspace, owner, &row.field, version);
            let plaintext = self
                .cipher
                .decrypt(
                    Nonce::from_slice(&row.nonce),
                    Payload {
                        msg: &row.ciphertext,
                        aad: &aad,
                    },
                )
                .map_err(|_| {
                    StoreError::Secrets(format!("cannot decrypt {owner} field {}", row.field))
                })?;
            let value: Value = serde_json::from_slice(&plaintext)
                .map_err(|_| StoreError::Secrets(format!("corrupt secret in {owner}")))?;
            values.insert(row.field, value);
        }
        Ok(values)
    }
}
