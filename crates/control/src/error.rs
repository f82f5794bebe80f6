//! Control's one error type and its exhaustive mapping to gRPC statuses.

use switchboard_auth::AuthError;
use switchboard_domain::refusal::{ERROR_DOMAIN, Refusal};
use switchboard_domain::{DomainError, FieldViolation};
use switchboard_proto::status::{self, truncate};
use switchboard_store::{StoreError, StoreFailure};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Errors of the control service.
#[derive(Debug, thiserror::Error)]
pub enum ControlError {
    #[error("invalid argument")]
    InvalidArgument(Vec<FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    FailedPrecondition(String),
    /// A deployment asks for a Kubernetes Secret in a namespace the server's
    /// allowed-namespaces setting does not give its workspace.
    #[error("namespace {namespace} is not allowed for workspace {workspace}")]
    NamespaceNotAllowed {
        workspace: String,
        namespace: String,
    },
    /// A stale etag: the resource changed since the caller read it.
    #[error("{0}")]
    Aborted(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(Refusal),
    /// A backend (database, secret store) is unreachable; nothing changed.
    /// The caller exceeded its rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    /// Anything else. The text is logged, never sent.
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for control operations.
pub type ControlResult<T> = Result<T, ControlError>;

impl ControlError {
    /// A single-field invalid-argument error.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }
}

impl From<DomainError> for ControlError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::InvalidArgument(violations) => Self::InvalidArgument(violations),
            DomainError::PermissionDenied(message) => Self::PermissionDenied(message),
        }
    }
}

impl From<AuthError> for ControlError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Refused(refusal) => Self::Unauthenticated(refusal),
            AuthError::RateLimited => Self::RateLimited,
            AuthError::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ControlError {
    fn from(err: StoreError) -> Self {
        match StoreFailure::from(err) {
            StoreFailure::Unavailable(message) => Self::Unavailable(message),
            StoreFailure::Internal(message) => Self::Internal(message),
        }
    }
}

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::InvalidArgument(violations) => status::invalid_argument(
                violations
                    .into_iter()
                    .map(|violation| (violation.field, violation.description)),
            ),
            ControlError::NotFound(message) => Status::not_found(truncate(message)),
            ControlError::AlreadyExists(message) => Status::already_exists(truncate(message)),
            ControlError::FailedPrecondition(message) => {
                Status::failed_precondition(truncate(message))
            }
            ControlError::NamespaceNotAllowed {
                workspace,
                namespace,
            } => {
                let description = format!(
                    "workspace {workspace} may not deliver Kubernetes Secrets to namespace {namespace}; the server's kubernetes.namespaces setting lists the namespaces each workspace may use"
                );
                let mut details = ErrorDetails::new();
                details.add_precondition_failure_violation(
                    "KUBERNETES_NAMESPACE_NOT_ALLOWED",
                    format!("workspaces/{workspace}"),
                    description.clone(),
                );
                Status::with_error_details(Code::FailedPrecondition, truncate(description), details)
            }
            ControlError::Aborted(message) => Status::aborted(truncate(message)),
            ControlError::PermissionDenied(message) => Status::permission_denied(truncate(message)),
            ControlError::Unauthenticated(refusal) => {
                status::unauthenticated(refusal.reason.as_str(), ERROR_DOMAIN, refusal.message)
            }
            ControlError::RateLimited => status::rate_limited(),
            ControlError::Unavailable(message) => status::unavailable(
                &message,
                "a backend is unavailable; nothing was changed, retry later",
            ),
            ControlError::Internal(message) => status::internal(&message),
        }
    }
}
