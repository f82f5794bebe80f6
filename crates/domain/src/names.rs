//! Resource names (AIP-122): parsing and formatting.

use crate::conn_id;
use crate::error::DomainError;

/// Maximum length of a workspace id.
const MAX_WORKSPACE_ID: usize = 63;
/// Maximum length of a deployment id (a Kubernetes label value / DNS label).
const MAX_DEPLOYMENT_ID: usize = 63;

/// Checks a workspace id: `[A-Za-z0-9_-]`, 1–63 characters.
pub fn validate_workspace_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_WORKSPACE_ID {
        return Err(format!("must be 1 to {MAX_WORKSPACE_ID} characters"));
    }
    if !id
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_' || byte == b'-')
    {
        return Err("may contain only letters, digits, '_' and '-'".to_owned());
    }
    Ok(())
}

/// Checks a deployment id: a DNS label (`[a-z0-9-]`, starts with a letter,
/// does not end with `-`, 1–63 characters), so it can name Kubernetes objects.
pub fn validate_deployment_id(id: &str) -> Result<(), String> {
    if id.is_empty() || id.len() > MAX_DEPLOYMENT_ID {
        return Err(format!("must be 1 to {MAX_DEPLOYMENT_ID} characters"));
    }
    let valid_chars = id
        .bytes()
        .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-');
    let starts_with_letter = id.as_bytes()[0].is_ascii_lowercase();
    if !valid_chars || !starts_with_letter || id.ends_with('-') {
        return Err(
            "must be lower-case letters, digits and '-', start with a letter and not end with '-'"
                .to_owned(),
        );
    }
    Ok(())
}

/// `workspaces/{w}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct WorkspaceName {
    pub workspace: String,
}

/// `workspaces/{w}/connections/{conn_id}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConnectionName {
    pub workspace: String,
    pub conn_id: String,
}

/// `workspaces/{w}/deployments/{d}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DeploymentName {
    pub workspace: String,
    pub deployment: String,
}

/// `workspaces/{w}/connections/{conn_id}/links/{d}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LinkName {
    pub workspace: String,
    pub conn_id: String,
    pub deployment: String,
}

/// `workspaces/{w}/deployments/{d}/tokens/{t}`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenName {
    pub workspace: String,
    pub deployment: String,
    pub token: String,
}

/// `workspaces/{w}/policy`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PolicyName {
    pub workspace: String,
}

fn segments<'a>(field: &str, name: &'a str, pattern: &str) -> Result<Vec<&'a str>, DomainError> {
    let expected: Vec<&str> = pattern.split('/').collect();
    let parts: Vec<&str> = name.split('/').collect();
    let shape_ok = parts.len() == expected.len()
        && parts.iter().zip(&expected).all(|(part, want)| {
            if want.starts_with('{') {
                !part.is_empty()
            } else {
                part == want
            }
        });
    if !shape_ok {
        let description = if name.is_empty() {
            format!("is required, in the form {pattern}")
        } else {
            format!("must have the form {pattern}")
        };
        return Err(DomainError::invalid(field, description));
    }
    Ok(parts
        .iter()
        .zip(&expected)
        .filter(|(_, want)| want.starts_with('{'))
        .map(|(part, _)| *part)
        .collect())
}

fn check(field: &str, result: Result<(), String>, what: &str) -> Result<(), DomainError> {
    result.map_err(|why| DomainError::invalid(field, format!("{what} {why}")))
}

impl WorkspaceName {
    /// Parses `name`, reporting problems against `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self, DomainError> {
        let ids = segments(field, name, "workspaces/{workspace}")?;
        check(field, validate_workspace_id(ids[0]), "workspace id")?;
        Ok(Self {
            workspace: ids[0].to_owned(),
        })
    }
}

impl std::fmt::Display for WorkspaceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "workspaces/{}", self.workspace)
    }
}

impl ConnectionName {
    /// Parses `name`, reporting problems against `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self, DomainError> {
        let ids = segments(field, name, "workspaces/{workspace}/connections/{conn_id}")?;
        check(field, validate_workspace_id(ids[0]), "workspace id")?;
        check(field, conn_id::validate(ids[1]), "conn_id")?;
        Ok(Self {
            workspace: ids[0].to_owned(),
            conn_id: ids[1].to_owned(),
        })
    }
}

impl std::fmt::Display for ConnectionName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "workspaces/{}/connections/{}",
            self.workspace, self.conn_id
        )
    }
}

impl DeploymentName {
    /// Parses `name`, reporting problems against `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self, DomainError> {
        let ids = segments(
            field,
            name,
            "workspaces/{workspace}/deployments/{deployment}",
        )?;
        check(field, validate_workspace_id(ids[0]), "workspace id")?;
        check(field, validate_deployment_id(ids[1]), "deployment id")?;
        Ok(Self {
            workspace: ids[0].to_owned(),
            deployment: ids[1].to_owned(),
        })
    }
}

impl std::fmt::Display for DeploymentName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "workspaces/{}/deployments/{}",
            self.workspace, self.deployment
        )
    }
}

impl LinkName {
    /// Parses `name`, reporting problems against `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self, DomainError> {
        let ids = segments(
            field,
            name,
            "workspaces/{workspace}/connections/{conn_id}/links/{deployment}",
        )?;
        check(field, validate_workspace_id(ids[0]), "workspace id")?;
        check(field, conn_id::validate(ids[1]), "conn_id")?;
        check(field, validate_deployment_id(ids[2]), "deployment id")?;
        Ok(Self {
            workspace: ids[0].to_owned(),
            conn_id: ids[1].to_owned(),
            deployment: ids[2].to_owned(),
        })
    }
}

impl std::fmt::Display for LinkName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "workspaces/{}/connections/{}/links/{}",
            self.workspace, self.conn_id, self.deployment
        )
    }
}

impl TokenName {
    /// Parses `name`, reporting problems against `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self, DomainError> {
        let ids = segments(
            field,
            name,
            "workspaces/{workspace}/deployments/{deployment}/tokens/{token}",
        )?;
        check(field, validate_workspace_id(ids[0]), "workspace id")?;
        check(field, validate_deployment_id(ids[1]), "deployment id")?;
        let token_ok = ids[2].len() <= 64
            && ids[2]
                .bytes()
                .all(|byte| byte.is_ascii_alphanumeric() || byte == b'-');
        if !token_ok {
            return Err(DomainError::invalid(field, "token id is malformed"));
        }
        Ok(Self {
            workspace: ids[0].to_owned(),
            deployment: ids[1].to_owned(),
            token: ids[2].to_owned(),
        })
    }
}

impl std::fmt::Display for TokenName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "workspaces/{}/deployments/{}/tokens/{}",
            self.workspace, self.deployment, self.token
        )
    }
}

impl PolicyName {
    /// Parses `name`, reporting problems against `field`.
    pub fn parse(field: &str, name: &str) -> Result<Self, DomainError> {
        let ids = segments(field, name, "workspaces/{workspace}/policy")?;
        check(field, validate_workspace_id(ids[0]), "workspace id")?;
        Ok(Self {
            workspace: ids[0].to_owned(),
        })
    }
}

impl std::fmt::Display for PolicyName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "workspaces/{}/policy", self.workspace)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_formats_round_trip() {
        let name = LinkName::parse(
            "name",
            "workspaces/acme/connections/snowflake_default/links/prod",
        )
        .unwrap();
        assert_eq!(name.conn_id, "snowflake_default");
        assert_eq!(name.deployment, "prod");
        assert_eq!(
            name.to_string(),
            "workspaces/acme/connections/snowflake_default/links/prod"
        );
    }

    #[test]
    fn rejects_wrong_shapes_naming_the_field() {
        for bad in [
            "",
            "workspaces/acme",
            "workspaces//deployments/prod",
            "workspaces/acme/deployments/prod/extra",
            "projects/acme/deployments/prod",
            "workspaces/acme/deployments/Prod",
            "workspaces/acme/deployments/../x",
            "workspaces/ac me/deployments/prod",
        ] {
            let err = DeploymentName::parse("deployment", bad).unwrap_err();
            match err {
                DomainError::InvalidArgument(violations) => {
                    assert_eq!(violations[0].field, "deployment", "{bad}");
                }
                other => panic!("{bad}: {other:?}"),
            }
        }
    }

    #[test]
    fn deployment_ids_are_dns_labels() {
        assert!(validate_deployment_id("prod-eu-1").is_ok());
        assert!(validate_deployment_id("1prod").is_err());
        assert!(validate_deployment_id("prod-").is_err());
        assert!(validate_deployment_id(&"a".repeat(64)).is_err());
    }
}
