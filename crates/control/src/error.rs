//! Control's one error type and its exhaustive mapping to gRPC statuses.

use switchboard_domain::{DomainError, FieldViolation};
use switchboard_store::StoreError;
use switchboard_store::auth::{ERROR_DOMAIN, Refusal};
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

impl From<StoreError> for ControlError {
    fn from(err: StoreError) -> Self {
        if err.is_unavailable() {
            return Self::Unavailable(err.to_string());
        }
        match err {
            StoreError::Unauthenticated(message) => Self::Unauthenticated(message),
            StoreError::SecretsUnavailable(message) => Self::Unavailable(message),
            StoreError::RateLimited => Self::RateLimited,
            StoreError::Database(_)
            | StoreError::Secrets(_)
            | StoreError::KeyFile { .. }
            | StoreError::Corrupt { .. } => Self::Internal(err.to_string()),
        }
    }
}

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::InvalidArgument(violations) => {
                let summary = violations
                    .iter()
                    .map(|violation| format!("{}: {}", violation.field, violation.description))
                    .collect::<Vec<_>>()
                    .join("; ");
                let mut details = ErrorDetails::new();
                for violation in violations {
                    details.add_bad_request_violation(violation.field, violation.description);
                }
                Status::with_error_details(Code::InvalidArgument, truncate(summary), details)
            }
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
            ControlError::Unauthenticated(refusal) => unauthenticated(refusal),
            ControlError::RateLimited => {
                Status::resource_exhausted("rate limit exceeded; slow down and retry")
            }
            ControlError::Unavailable(message) => {
                tracing::warn!(error = %message, "backend unavailable");
                Status::unavailable("a backend is unavailable; nothing was changed, retry later")
            }
            ControlError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}

/// UNAUTHENTICATED with the refusal's words and, for programs, its reason as
/// a `google.rpc.ErrorInfo`.
pub(crate) fn unauthenticated(refusal: Refusal) -> Status {
    let mut details = ErrorDetails::new();
    details.set_error_info(
        refusal.reason.as_str(),
        ERROR_DOMAIN,
        std::collections::HashMap::new(),
    );
    Status::with_error_details(Code::Unauthenticated, truncate(refusal.message), details)
}

fn truncate(mut message: String) -> String {
    const MAX: usize = 1024;
    if message.len() > MAX {
        let mut cut = MAX;
        while !message.is_char_boundary(cut) {
            cut -= 1;
        }
        message.truncate(cut);
        message.push('…');
    }
    message
}
