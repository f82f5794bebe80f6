//! The Secret sync's one error type, shaped by cause: whether a retry can
//! help is a property of the cause, not of a message.

use switchboard_store::StoreError;

/// Errors of the Kubernetes Secret sync. Messages never hold secret values.
#[derive(Debug, thiserror::Error)]
pub enum KubeSyncError {
    /// No usable Kubernetes client configuration (kubeconfig or in-cluster).
    #[error("{0}")]
    Config(String),
    /// The Secret changed between our read and our write (HTTP 409).
    #[error("kubernetes {operation}: {source}")]
    Conflict {
        operation: &'static str,
        source: kube::Error,
    },
    /// The API server is unreachable, throttling (429) or failing (5xx).
    #[error("kubernetes {operation}: {source}")]
    Unavailable {
        operation: &'static str,
        source: kube::Error,
    },
    /// The API server refused the call (forbidden, invalid) or answered
    /// something unreadable: retrying will not help.
    #[error("kubernetes {operation}: {source}")]
    Refused {
        operation: &'static str,
        source: kube::Error,
    },
    /// The deployment was deleted while its Secret was being reconciled.
    #[error("deployment {deployment} was deleted")]
    DeploymentGone { deployment: String },
    /// The database or secret store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result alias of the Secret sync.
pub type KubeSyncResult<T> = Result<T, KubeSyncError>;

impl KubeSyncError {
    /// Whether a failed reconcile is worth another try.
    pub fn is_retryable(&self) -> bool {
        match self {
            Self::Conflict { .. } | Self::Unavailable { .. } => true,
            Self::Store(err) => err.is_unavailable(),
            Self::Config(_) | Self::Refused { .. } | Self::DeploymentGone { .. } => false,
        }
    }
}
