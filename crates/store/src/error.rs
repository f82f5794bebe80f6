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
    /// A stored row could not be decoded.
    #[error("corrupt row in {table}: {reason}")]
    Corrupt { table: &'static str, reason: String },
}

/// What a service tells its caller about a [`StoreError`]: the same for
/// control and the resolver.
#[derive(Debug)]
pub enum StoreFailure {
    /// A backend is unreachable; the caller may retry. The text is logged.
    Unavailable(String),
    /// Anything else. The text is logged, never sent.
    Internal(String),
}

impl From<StoreError> for StoreFailure {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            return Self::Unavailable(err.to_string());
        }
        match err {
            StoreError::SecretsUnavailable(message) => Self::Unavailable(message),
            StoreError::Database(_)
            | StoreError::Secrets(_)
            | StoreError::KeyFile { .. }
            | StoreError::Corrupt { .. } => Self::Internal(err.to_string()),
        }
    }
}

impl StoreError {
    /// A database read that gave no answer within `limit`.
    pub fn database_timeout(limit: std::time::Duration) -> Self {
        Self::Database(sea_orm::DbErr::Custom(format!(
            "no answer within {limit:?}"
        )))
    }

    /// Whether the error means a backend is unreachable (so the caller may retry).
    pub fn is_unavailable(&self) -> bool {
        match self {
            Self::Database(err) => {
                matches!(
                    err,
                    sea_orm::DbErr::Conn(_) | sea_orm::DbErr::ConnectionAcquire(_)
                ) || is_busy(err)
                    || is_connection_lost(err)
            }
            Self::SecretsUnavailable(_) => true,
            Self::Secrets(_) | Self::KeyFile { .. } | Self::Corrupt { .. } => false,
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

/// Whether a statement failed because its connection to the database broke
/// or the server is shutting down (SQLSTATE class 08, 57P01–57P03), as when
/// PostgreSQL stops under a running transaction: the transaction is rolled
/// back and a retry may succeed once the database is back.
fn is_connection_lost(err: &sea_orm::DbErr) -> bool {
    use sea_orm::sqlx::Error as SqlxError;
    use sea_orm::{DbErr, RuntimeErr};

    // DbErr::Conn already counts as unavailable; these arrive as statement errors.
    let (DbErr::Exec(RuntimeErr::SqlxError(err)) | DbErr::Query(RuntimeErr::SqlxError(err))) = err
    else {
        return false;
    };
    match err {
        SqlxError::Io(_)
        | SqlxError::Tls(_)
        | SqlxError::PoolTimedOut
        | SqlxError::PoolClosed
        | SqlxError::WorkerCrashed => true,
        SqlxError::Database(database) => database.code().is_some_and(|code| {
            code.starts_with("08") || matches!(code.as_ref(), "57P01" | "57P02" | "57P03")
        }),
        _ => false,
    }
}

fn is_busy(err: &sea_orm::DbErr) -> bool {
    let text = err.to_string();
    text.contains("database is locked") || text.contains("database is busy")
}

/// Result alias for store operations.
pub type StoreResult<T> = Result<T, StoreError>;
