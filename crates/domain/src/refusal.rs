//! Why a credential was refused, as the services say it: a reason for
//! programs (the `google.rpc.ErrorInfo` reason) and words for people.

/// The `domain` of the `google.rpc.ErrorInfo` sent with a refusal.
pub const ERROR_DOMAIN: &str = "switchboard";

/// Why a credential was refused, for programs: sent as the `reason` of a
/// `google.rpc.ErrorInfo` beside the words, so that a client can give advice
/// without reading the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefusalReason {
    /// No credentials, or not `Bearer <token>`.
    Missing,
    /// A user token past its `exp` (and the leeway).
    Expired,
    /// A user token whose signature the server's keys do not verify: minted
    /// with another key, or altered.
    BadSignature,
    /// A deployment token where a user token is needed (control's services).
    UserTokenRequired,
    /// A deployment token that is malformed, unknown or revoked.
    DeploymentTokenInvalid,
    /// Anything else wrong with a user token.
    Invalid,
}

impl RefusalReason {
    const ALL: [RefusalReason; 6] = [
        Self::Missing,
        Self::Expired,
        Self::BadSignature,
        Self::UserTokenRequired,
        Self::DeploymentTokenInvalid,
        Self::Invalid,
    ];

    /// The `ErrorInfo.reason` text, UPPER_SNAKE_CASE as AIP-193 asks.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Missing => "TOKEN_MISSING",
            Self::Expired => "TOKEN_EXPIRED",
            Self::BadSignature => "TOKEN_SIGNATURE_INVALID",
            Self::UserTokenRequired => "USER_TOKEN_REQUIRED",
            Self::DeploymentTokenInvalid => "DEPLOYMENT_TOKEN_INVALID",
            Self::Invalid => "TOKEN_INVALID",
        }
    }

    /// The reason an `ErrorInfo.reason` text names, if it is one of ours.
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|reason| reason.as_str() == text)
    }
}

/// A refused credential: why, for programs, and in words, for people. The
/// words never hold the token or a library's own error text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct Refusal {
    pub reason: RefusalReason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: RefusalReason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

/// A refusal of reason [`RefusalReason::Invalid`] with these words.
impl From<&str> for Refusal {
    fn from(message: &str) -> Self {
        Self::new(RefusalReason::Invalid, message)
    }
}

/// A refusal of reason [`RefusalReason::Invalid`] with these words.
impl From<String> for Refusal {
    fn from(message: String) -> Self {
        Self::new(RefusalReason::Invalid, message)
    }
}
