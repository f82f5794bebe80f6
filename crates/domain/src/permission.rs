//! Who may do what: the permission table of docs/architecture.md, as code.

use std::collections::BTreeMap;

use crate::error::DomainError;

/// A user's role in one workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Member,
    Author,
    Operator,
    Owner,
}

impl Role {
    /// Parses a role claim: `MEMBER`, `AUTHOR`, `OPERATOR`, `OWNER`, with or
    /// without the `WORKSPACE_` prefix, in any case.
    pub fn parse(value: &str) -> Option<Self> {
        let upper = value.trim().to_ascii_uppercase();
        match upper.strip_prefix("WORKSPACE_").unwrap_or(&upper) {
            "MEMBER" => Some(Self::Member),
            "AUTHOR" => Some(Self::Author),
            "OPERATOR" => Some(Self::Operator),
            "OWNER" => Some(Self::Owner),
            _ => None,
        }
    }

    /// The role's canonical name.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Member => "MEMBER",
            Self::Author => "AUTHOR",
            Self::Operator => "OPERATOR",
            Self::Owner => "OWNER",
        }
    }
}

/// Who is calling.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    /// A user authenticated by JWT.
    User {
        subject: String,
        roles: BTreeMap<String, Role>,
    },
    /// An Airflow deployment authenticated by its deployment token.
    Deployment {
        workspace: String,
        deployment: String,
        token_id: String,
    },
}

impl Principal {
    /// The actor recorded in audit events.
    pub fn actor(&self) -> String {
        match self {
            Self::User { subject, .. } => format!("user:{subject}"),
            Self::Deployment {
                workspace,
                deployment,
                token_id,
            } => format!("workspaces/{workspace}/deployments/{deployment}/tokens/{token_id}"),
        }
    }

    /// The user's role in `workspace`, if any.
    pub fn role_in(&self, workspace: &str) -> Option<Role> {
        match self {
            Self::User { roles, .. } => roles.get(workspace).copied(),
            Self::Deployment { .. } => None,
        }
    }
}

/// The rows of the permission table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    ListConnectionTypes,
    /// Get/List connections, links, deployments, versions (secrets masked); GetWorkspacePolicy.
    Read,
    /// GetConnection with secrets shown.
    RevealSecrets,
    /// Create/Update/Delete/Rollback connection; Create/Update/Delete link.
    WriteConnection,
    /// Create/Update/Delete deployment; Create/Revoke deployment token.
    WriteDeployment,
    UpdatePolicy,
    ListAuditEvents,
    /// ResolveConnection / ListResolvedConnections.
    Resolve,
}

impl Action {
    fn describe(&self) -> &'static str {
        match self {
            Self::ListConnectionTypes => "list connection types",
            Self::Read => "read this workspace",
            Self::RevealSecrets => "reveal secrets in this workspace",
            Self::WriteConnection => "change connections in this workspace",
            Self::WriteDeployment => "change deployments in this workspace",
            Self::UpdatePolicy => "change this workspace's policy",
            Self::ListAuditEvents => "list this workspace's audit events",
            Self::Resolve => "resolve connections of this deployment",
        }
    }
}

/// The workspace policy switches the table consults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyFlags {
    pub allow_secret_reveal: bool,
    pub allow_local_export: bool,
}

/// Decides whether `principal` may perform `action` in `workspace`. For
/// `Resolve`, `deployment` names the target deployment (a deployment token
/// may resolve only its own).
pub fn authorize(
    principal: &Principal,
    workspace: &str,
    action: Action,
    policy: PolicyFlags,
    deployment: Option<&str>,
) -> Result<(), DomainError> {
    let allowed = match principal {
        Principal::Deployment {
            workspace: token_workspace,
            deployment: token_deployment,
            ..
        } => {
            action == Action::Resolve
                && token_workspace == workspace
                && deployment.is_some_and(|target| target == token_deployment)
        }
        Principal::User { .. } => match principal.role_in(workspace) {
            None => false,
            Some(role) => role_allows(role, action, policy),
        },
    };
    if allowed {
        Ok(())
    } else {
        Err(DomainError::PermissionDenied(format!(
            "the caller may not {}",
            action.describe()
        )))
    }
}

/// Whether a user with any role anywhere may list connection types (the one
/// call not scoped to a workspace).
pub fn authorize_catalog(principal: &Principal) -> Result<(), DomainError> {
    match principal {
        Principal::User { roles, .. } if !roles.is_empty() => Ok(()),
        _ => Err(DomainError::PermissionDenied(format!(
            "the caller may not {}",
            Action::ListConnectionTypes.describe()
        ))),
    }
}

fn role_allows(role: Role, action: Action, policy: PolicyFlags) -> bool {
    use Role::{Author, Member, Operator, Owner};
    match action {
        Action::ListConnectionTypes | Action::Read => true,
        Action::RevealSecrets => matches!(role, Operator | Owner) && policy.allow_secret_reveal,
        Action::WriteConnection | Action::WriteDeployment | Action::ListAuditEvents => {
            matches!(role, Operator | Owner)
        }
        Action::UpdatePolicy => role == Owner,
        Action::Resolve => match role {
            Member => false,
            Author | Operator | Owner => policy.allow_local_export,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(workspace: &str, role: Role) -> Principal {
        Principal::User {
            subject: "alice".into(),
            roles: BTreeMap::from([(workspace.to_owned(), role)]),
        }
    }

    #[test]
    fn roles_parse_with_or_without_prefix() {
        assert_eq!(Role::parse("WORKSPACE_OPERATOR"), Some(Role::Operator));
        assert_eq!(Role::parse("owner"), Some(Role::Owner));
        assert_eq!(Role::parse("ADMIN"), None);
    }

    #[test]
    fn author_cannot_write_and_other_workspace_is_denied() {
        let off = PolicyFlags::default();
        assert!(
            authorize(
                &user("a", Role::Author),
                "a",
                Action::WriteConnection,
                off,
                None
            )
            .is_err()
        );
        assert!(
            authorize(
                &user("a", Role::Operator),
                "a",
                Action::WriteConnection,
                off,
                None
            )
            .is_ok()
        );
        assert!(authorize(&user("a", Role::Owner), "b", Action::Read, off, None).is_err());
    }

    #[test]
    fn policy_gates_reveal_and_resolve() {
        let off = PolicyFlags::default();
        let on = PolicyFlags {
            allow_secret_reveal: true,
            allow_local_export: true,
        };
        let owner = user("a", Role::Owner);
        assert!(authorize(&owner, "a", Action::RevealSecrets, off, None).is_err());
        assert!(authorize(&owner, "a", Action::RevealSecrets, on, None).is_ok());
        assert!(
            authorize(
                &user("a", Role::Author),
                "a",
                Action::RevealSecrets,
                on,
                None
            )
            .is_err()
        );
        assert!(
            authorize(
                &user("a", Role::Author),
                "a",
                Action::Resolve,
                on,
                Some("d")
            )
            .is_ok()
        );
        assert!(
            authorize(
                &user("a", Role::Member),
                "a",
                Action::Resolve,
                on,
                Some("d")
            )
            .is_err()
        );
    }

    #[test]
    fn deployment_tokens_resolve_only_their_own_deployment() {
        let token = Principal::Deployment {
            workspace: "a".into(),
            deployment: "prod".into(),
            token_id: "t".into(),
        };
        let off = PolicyFlags::default();
        assert!(authorize(&token, "a", Action::Resolve, off, Some("prod")).is_ok());
        assert!(authorize(&token, "a", Action::Resolve, off, Some("dev")).is_err());
        assert!(authorize(&token, "b", Action::Resolve, off, Some("prod")).is_err());
        assert!(authorize(&token, "a", Action::Read, off, None).is_err());
        assert!(authorize_catalog(&token).is_err());
    }
}
