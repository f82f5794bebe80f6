//! The resolver's one error type and its exhaustive mapping to gRPC statuses.

use switchboard_domain::DomainError;
use switchboard_store::StoreError;
use switchboard_store::auth::{ERROR_DOMAIN, Refusal};
use tonic::{Code, Status};
use tonic_types::{ErrorDetails, StatusExt};

/// Errors of the resolver.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ResolverError {
    #[error("invalid argument")]
    InvalidArgument(Vec<switchboard_domain::FieldViolation>),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(Refusal),
    /// The caller exceeded its rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    #[error("backend unavailable: {0}")]
    Unavailable(String),
    #[error("internal error: {0}")]
    Internal(String),
}

/// Result alias for resolver operations.
pub type ResolverResult<T> = Result<T, ResolverError>;

impl From<DomainError> for ResolverError {
    fn from(err: DomainError) -> Self {
        match err {
            DomainError::InvalidArgument(violations) => Self::InvalidArgument(violations),
            DomainError::PermissionDenied(message) => Self::PermissionDenied(message),
        }
    }
}

impl From<StoreError> for ResolverError {
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

impl From<ResolverError> for Status {
    fn from(err: ResolverError) -> Self {
        match err {
            ResolverError::InvalidArgument(violations) => {
                let mut details = ErrorDetails::new();
                let mut summary = Vec::new();
                for violation in violations {
                    summary.push(format!("{}: {}", violation.field, violation.description));
                    details.add_bad_request_violation(violation.field, violation.description);
                }
                Status::with_error_details(Code::InvalidArgument, summary.join("; "), details)
            }
            ResolverError::NotFound(message) => Status::not_found(message),
            ResolverError::PermissionDenied(message) => Status::permission_denied(message),
            ResolverError::Unauthenticated(refusal) => {
                let mut details = ErrorDetails::new();
                details.set_error_info(
                    refusal.reason.as_str(),
                    ERROR_DOMAIN,
                    std::collections::HashMap::new(),
                );
                Status::with_error_details(Code::Unauthenticated, refusal.message, details)
            }
            ResolverError::RateLimited => {
                Status::resource_exhausted("rate limit exceeded; slow down and retry")
            }
            ResolverError::Unavailable(message) => {
                tracing::warn!(error = %message, "backend unavailable");
                Status::unavailable("a backend is unavailable; retry later")
            }
            ResolverError::Internal(message) => {
                tracing::error!(error = %message, "internal error");
                Status::internal("internal error")
            }
        }
    }
}
