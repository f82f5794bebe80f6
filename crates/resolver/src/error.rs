//! The resolver's one error type and its exhaustive mapping to gRPC statuses.

use switchboard_auth::AuthError;
use switchboard_domain::DomainError;
use switchboard_domain::refusal::{ERROR_DOMAIN, Refusal};
use switchboard_proto::status::{self, truncate};
use switchboard_store::{StoreError, StoreFailure};
use tonic::Status;

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

impl From<AuthError> for ResolverError {
    fn from(err: AuthError) -> Self {
        match err {
            AuthError::Refused(refusal) => Self::Unauthenticated(refusal),
            AuthError::RateLimited => Self::RateLimited,
            AuthError::Store(err) => err.into(),
        }
    }
}

impl From<StoreError> for ResolverError {
    fn from(err: StoreError) -> Self {
        match StoreFailure::from(err) {
            StoreFailure::Unavailable(message) => Self::Unavailable(message),
            StoreFailure::Internal(message) => Self::Internal(message),
        }
    }
}

impl From<ResolverError> for Status {
    fn from(err: ResolverError) -> Self {
        match err {
            ResolverError::InvalidArgument(violations) => status::invalid_argument(
                violations
                    .into_iter()
                    .map(|violation| (violation.field, violation.description)),
            ),
            ResolverError::NotFound(message) => Status::not_found(truncate(message)),
            ResolverError::PermissionDenied(message) => {
                Status::permission_denied(truncate(message))
            }
            ResolverError::Unauthenticated(refusal) => {
                status::unauthenticated(refusal.reason.as_str(), ERROR_DOMAIN, refusal.message)
            }
            ResolverError::RateLimited => status::rate_limited(),
            ResolverError::Unavailable(message) => {
                status::unavailable(&message, "a backend is unavailable; retry later")
            }
            ResolverError::Internal(message) => status::internal(&message),
        }
    }
}
