//! Control's one error type and its exhaustive mapping to gRPC statuses.

use switchboard_auth::AuthError;
use switchboard_domain::names::{ConnectionName, DeploymentName, LinkName, TokenName};
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
    /// No connection has this name (conn_ids compare ignoring case).
    #[error("connection {name} not found")]
    ConnectionNotFound { name: ConnectionName },
    #[error("deployment {name} not found")]
    DeploymentNotFound { name: DeploymentName },
    #[error("link {name} not found")]
    LinkNotFound { name: LinkName },
    #[error("token {name} not found")]
    TokenNotFound { name: TokenName },
    #[error("version {version} of {name} not found")]
    VersionNotFound { name: ConnectionName, version: i64 },
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
    /// A stale etag: the resource (`what`) changed since the caller read it.
    #[error("the {what} changed since it was read (etag mismatch); read it again and retry")]
    StaleEtag { what: &'static str },
    /// Every attempt of a write found the rows it read changed by
    /// concurrent writes before it got the write lock.
    #[error("the {what} kept changing while this write ran; read it again and retry")]
    Contended { what: &'static str },
    #[error("{0}")]
    PermissionDenied(String),
    #[error("{0}")]
    Unauthenticated(Refusal),
    /// The caller exceeded its rate limit.
    #[error("rate limit exceeded")]
    RateLimited,
    /// The database or secret store failed: UNAVAILABLE when unreachable
    /// (nothing changed), otherwise internal. The text is logged, never sent.
    #[error(transparent)]
    Store(#[from] StoreError),
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

impl From<ControlError> for Status {
    fn from(err: ControlError) -> Self {
        match err {
            ControlError::InvalidArgument(violations) => status::invalid_argument(
                violations
                    .into_iter()
                    .map(|violation| (violation.field, violation.description)),
            ),
            ControlError::NotFound(message) => Status::not_found(truncate(message)),
            ref missing @ (ControlError::ConnectionNotFound { .. }
            | ControlError::DeploymentNotFound { .. }
            | ControlError::LinkNotFound { .. }
            | ControlError::TokenNotFound { .. }
            | ControlError::VersionNotFound { .. }) => {
                Status::not_found(truncate(missing.to_string()))
            }
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
            ref changed @ (ControlError::StaleEtag { .. } | ControlError::Contended { .. }) => {
                Status::aborted(truncate(changed.to_string()))
            }
            ControlError::PermissionDenied(message) => Status::permission_denied(truncate(message)),
            ControlError::Unauthenticated(refusal) => {
                status::unauthenticated(refusal.reason.as_str(), ERROR_DOMAIN, refusal.message)
            }
            ControlError::RateLimited => status::rate_limited(),
            ControlError::Store(err) => match StoreFailure::from(err) {
                StoreFailure::Unavailable(message) => status::unavailable(
                    &message,
                    "a backend is unavailable; nothing was changed, retry later",
                ),
                StoreFailure::Internal(message) => status::internal(&message),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn status(err: ControlError) -> (Code, String) {
        let status = Status::from(err);
        (status.code(), status.message().to_owned())
    }

    #[test]
    fn errors_by_cause_answer_with_the_established_code_and_text() {
        let name = ConnectionName {
            workspace: "acme".into(),
            conn_id: "warehouse".into(),
        };
        assert_eq!(
            status(ControlError::ConnectionNotFound { name: name.clone() }),
            (
                Code::NotFound,
                "connection workspaces/acme/connections/warehouse not found".to_owned()
            )
        );
        assert_eq!(
            status(ControlError::VersionNotFound { name, version: 3 }),
            (
                Code::NotFound,
                "version 3 of workspaces/acme/connections/warehouse not found".to_owned()
            )
        );
        assert_eq!(
            status(ControlError::StaleEtag { what: "link" }),
            (
                Code::Aborted,
                "the link changed since it was read (etag mismatch); read it again and retry"
                    .to_owned()
            )
        );
        assert_eq!(
            status(ControlError::Contended { what: "connection" }),
            (
                Code::Aborted,
                "the connection kept changing while this write ran; read it again and retry"
                    .to_owned()
            )
        );
    }
}
