//! Authentication's one error type.

use switchboard_domain::refusal::Refusal;
use switchboard_store::StoreError;

/// Why a call was not let in. Messages never hold a token.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// The caller's credentials are missing, malformed, expired or revoked.
    #[error("unauthenticated: {0}")]
    Refused(Refusal),
    /// The caller made more calls than its rate limit allows.
    #[error("rate limit exceeded; slow down and retry")]
    RateLimited,
    /// The token store (or a key file) could not be read.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Result alias of authentication.
pub type AuthResult<T> = Result<T, AuthError>;
