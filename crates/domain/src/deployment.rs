//! A deployment's kind and how its secrets reach Kubernetes, as stored.
//! Parsing a stored value fails on anything unknown: a corrupt row must
//! surface as an error, not silently become a STANDARD deployment.

use std::fmt;
use std::str::FromStr;

/// A stored value that names no variant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} '{value}'")]
pub struct UnknownValue {
    /// What was parsed, e.g. `deployment kind`.
    pub what: &'static str,
    /// The value found.
    pub value: String,
}

/// What a deployment is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeploymentKind {
    /// An Airflow Deployment of its own.
    Standard,
    /// A branch-based deploy of a STANDARD parent.
    Branch,
    /// A pull-request preview of a STANDARD parent.
    Preview,
}

impl DeploymentKind {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Standard => "STANDARD",
            Self::Branch => "BRANCH",
            Self::Preview => "PREVIEW",
        }
    }

    /// Whether the kind names a parent deployment (BRANCH, PREVIEW).
    pub const fn has_parent(self) -> bool {
        !matches!(self, Self::Standard)
    }
}

impl FromStr for DeploymentKind {
    type Err = UnknownValue;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "STANDARD" => Ok(Self::Standard),
            "BRANCH" => Ok(Self::Branch),
            "PREVIEW" => Ok(Self::Preview),
            _ => Err(UnknownValue {
                what: "deployment kind",
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for DeploymentKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How a deployment's Kubernetes Secret is filled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SecretDelivery {
    /// No Secret is written.
    None,
    /// The Secret holds a deployment token for the shim.
    Token,
    /// The Secret holds `AIRFLOW_CONN_*` values, read as environment variables.
    Env,
}

impl SecretDelivery {
    /// The stored spelling.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::None => "NONE",
            Self::Token => "TOKEN",
            Self::Env => "ENV",
        }
    }
}

impl FromStr for SecretDelivery {
    type Err = UnknownValue;

    fn from_str(value: &str) -> Result<Self, Self::Err> {
        match value {
            "NONE" => Ok(Self::None),
            "TOKEN" => Ok(Self::Token),
            "ENV" => Ok(Self::Env),
            _ => Err(UnknownValue {
                what: "secret delivery",
                value: value.to_owned(),
            }),
        }
    }
}

impl fmt::Display for SecretDelivery {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_spellings_round_trip_and_unknown_ones_fail() {
        for kind in [
            DeploymentKind::Standard,
            DeploymentKind::Branch,
            DeploymentKind::Preview,
        ] {
            assert_eq!(kind.as_str().parse::<DeploymentKind>(), Ok(kind));
        }
        for delivery in [
            SecretDelivery::None,
            SecretDelivery::Token,
            SecretDelivery::Env,
        ] {
            assert_eq!(delivery.as_str().parse::<SecretDelivery>(), Ok(delivery));
        }
        assert!("standard".parse::<DeploymentKind>().is_err());
        assert!("".parse::<DeploymentKind>().is_err());
        assert_eq!(
            "SECRETS".parse::<SecretDelivery>().unwrap_err().to_string(),
            "unknown secret delivery 'SECRETS'"
        );
    }
}
