//! The store's one error type.

/// Errors of the persistence layer. Messages never hold secret values.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database refused or could not be reached.
    #[error("database error: {0}")]
    Database(#[from] sea_orm::DbErr),
    /// The secret store failed (I/O, decryption, remote store).
    #[error("secret store error: {0}")]
    Secrets(String),
    /// The remote secret store (Vault/OpenBao) could not be reached.
    #[error("secret store unavailable: {0}")]
    SecretsUnavailable(String),
    /// A key or configuration file could not be used.
    #[error("key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    /// The caller's credentials are missing, malformed, expired or revoked.
    #[error("unauthenticated: {0}")]
    Unauthenticated(String),
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

impl StoreError {
    /// Whether the error means a backend is unreachable (so the caller may retry).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(err) => {
                matches!(
                    err,
                    sea_orm::DbErr::Conn(_) | sea_orm::DbErr::ConnectionAcquire(_)
                ) || is_busy(err)
            }
            Self::SecretsUnavailable(_) => true,
            Self::Secrets(_)
            | Self::KeyFile { .. }
            | Self::Unauthenticated(_)
            | Self::Corrupt { .. } => false,
        }
    }

    /// Whether the error is a unique-constraint violation.
    pub fn is_unique_violation(&self) -> bool {
        match self {
            Self::Database(err) => matches!(
                err.sql_err(),
                Some(sea_orm::SqlErr::UniqueConstraintViolation(_))
            ),
            _ => false,
        }
    }
}

fn is_busy(err: &sea_orm::DbErr) -> bool {
    let text = err.to_string();
    text.contains("database is locked") || text.contains("database is busy")
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;
