//! The domain's one error type.

/// One bad field of a request: the field's path and why it was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldViolation {
    /// Path of the field relative to the object validated, e.g. `host`,
    /// `extra.account`, `port`.
    pub field: String,
    /// Why the value was refused, in lowercase, never quoting a secret value.
    pub description: String,
}

impl FieldViolation {
    /// Builds a violation of `field`.
    pub fn new(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            description: description.into(),
        }
    }

    /// Prefixes the field path with `scope`, e.g. `connection` + `host` → `connection.host`.
    pub fn scope(mut self, scope: &str) -> Self {
        if !scope.is_empty() {
            self.field = format!("{scope}.{}", self.field);
        }
        self
    }
}

/// Errors of the domain logic.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    /// The input is invalid; each violation names a field.
    #[error("invalid argument: {}", summarize(.0))]
    InvalidArgument(Vec<FieldViolation>),
    /// The caller may not perform the action.
    #[error("permission denied: {0}")]
    PermissionDenied(String),
}

/// Result alias for domain operations.
pub type DomainResult<T> = Result<T, DomainError>;

fn summarize(violations: &[FieldViolation]) -> String {
    violations
        .iter()
        .map(|violation| format!("{}: {}", violation.field, violation.description))
        .collect::<Vec<_>>()
        .join("; ")
}

impl DomainError {
    /// A single-field invalid-argument error.
    pub fn invalid(field: impl Into<String>, description: impl Into<String>) -> Self {
        Self::InvalidArgument(vec![FieldViolation::new(field, description)])
    }

    /// Prefixes every violation's field path with `scope`.
    pub fn scope(self, scope: &str) -> Self {
        match self {
            Self::InvalidArgument(violations) => Self::InvalidArgument(
                violations
                    .into_iter()
                    .map(|violation| violation.scope(scope))
                    .collect(),
            ),
            other => other,
        }
    }
}
