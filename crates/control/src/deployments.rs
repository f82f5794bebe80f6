//! Deployments (STANDARD, BRANCH, PREVIEW) and their tokens.

use switchboard_domain::FieldViolation;
use switchboard_domain::deployment::{DeploymentKind, SecretDelivery};
use switchboard_domain::names::{self, DeploymentName, TokenName, WorkspaceName};
use switchboard_domain::permission::{Action, Principal};
use switchboard_store::DbHandle;
use switchboard_store::deployments::{self, DeploymentChanges, DeploymentFilter, NewDeployment};
use switchboard_store::entity::{deployment, deployment_token};
use switchboard_store::tokens::IssuedToken;
use switchboard_store::{WriteTxn, tokens};

use crate::audit::{self, AuditRecord};
use crate::connections::deployment_ref;
use crate::error::{ControlError, ControlResult};
use crate::idempotency;
use crate::page_token;
use crate::service::{ControlService, Page, PageRequest, check_etag, required};

const KIND_DEPLOYMENT: &str = "deployment";
const KIND_TOKEN: &str = "token";
const MAX_DISPLAY_NAME: usize = 200;

/// The fields of a new deployment, as the caller sent them.
#[derive(Debug, Default)]
pub(crate) struct DeploymentFields {
    pub display_name: String,
    /// `None`: a kind this server does not know.
    pub kind: Option<DeploymentKind>,
    /// The parent's resource name or id; empty for none.
    pub parent_deployment: String,
    pub namespace: String,
    /// `None`: a delivery this server does not know.
    pub secret_delivery: Option<SecretDelivery>,
}

/// A CreateDeployment.
#[derive(Debug)]
pub(crate) struct DeploymentCreate {
    pub parent: WorkspaceName,
    pub deployment_id: String,
    /// `None` when the request carries no deployment.
    pub deployment: Option<DeploymentFields>,
    pub request_id: String,
}

/// An UpdateDeployment: new values, and which of them to set.
#[derive(Debug)]
pub(crate) struct DeploymentUpdate {
    pub name: DeploymentName,
    pub display_name: String,
    pub namespace: String,
    /// `None`: a delivery this server does not know.
    pub secret_delivery: Option<SecretDelivery>,
    pub etag: String,
    /// The update mask's paths; empty or `*` means every changeable field.
    pub paths: Vec<String>,
    pub request_id: String,
}

/// A DeleteDeployment.
#[derive(Debug)]
pub(crate) struct DeploymentDelete {
    pub name: DeploymentName,
    pub etag: String,
    /// Deletes its branch and preview deployments too.
    pub force: bool,
    pub request_id: String,
}

/// A ListDeployments.
#[derive(Debug)]
pub(crate) struct DeploymentQuery {
    pub parent: WorkspaceName,
    /// Terms on `kind` (a `DEPLOYMENT_KIND_*` name) and `parent_deployment`.
    pub filter: String,
    pub page: PageRequest,
}

/// A CreateDeploymentToken.
#[derive(Debug)]
pub(crate) struct TokenCreate {
    pub parent: DeploymentName,
    pub description: String,
    pub request_id: String,
}

async fn find_deployment<C: DbHandle>(
    db_conn: &C,
    name: &DeploymentName,
) -> ControlResult<deployment::Model> {
    switchboard_store::visibility::find_deployment(db_conn, &name.workspace, &name.deployment)
        .await?
        .ok_or_else(|| ControlError::DeploymentNotFound { name: name.clone() })
}

fn check_namespace(field: &str, namespace: &str, violations: &mut Vec<FieldViolation>) {
    // Kubernetes namespaces are DNS labels; empty means "not in Kubernetes".
    if !namespace.is_empty()
        && let Err(why) = names::validate_deployment_id(namespace)
    {
        violations.push(FieldViolation::new(
            field,
            format!("must be a Kubernetes namespace name: {why}"),
        ));
    }
}

/// Refuses a deployment that asks for a Kubernetes Secret (`delivery` TOKEN
/// or ENV) in a namespace its workspace may not deliver to, so one workspace
/// cannot take Secret names in another's namespace.
fn check_delivery_namespace(
    control: &ControlService,
    workspace: &str,
    namespace: &str,
    delivery: &str,
) -> ControlResult<()> {
    if namespace.is_empty()
        || delivery == SecretDelivery::None.as_str()
        || control.kube_namespaces.allows(workspace, namespace)
    {
        return Ok(());
    }
    Err(ControlError::NamespaceNotAllowed {
        workspace: workspace.to_owned(),
        namespace: namespace.to_owned(),
    })
}

fn check_display_name(field: &str, display_name: &str, violations: &mut Vec<FieldViolation>) {
    if display_name.chars().count() > MAX_DISPLAY_NAME || display_name.chars().any(char::is_control)
    {
        violations.push(FieldViolation::new(
            field,
            format!("must be at most {MAX_DISPLAY_NAME} characters without control characters"),
        ));
    }
}

/// Removes a deployment, its links and tokens, inside `write`.
async fn delete_deployment_row(
    control: &ControlService,
    write: &WriteTxn,
    row: &deployment::Model,
    principal: &Principal,
    request_id: &str,
) -> ControlResult<()> {
    let now = control.now();
    deployments::remove(&write.txn, control.store.secrets(), row).await?;
    audit::record(
        write,
        AuditRecord {
            workspace: &row.workspace,
            actor: principal.actor(),
            action: "DeleteDeployment",
            resource: DeploymentName {
                workspace: row.workspace.clone(),
                deployment: row.deployment_id.clone(),
            }
            .to_string(),
            request_id,
            changed_fields: Vec::new(),
        },
        Some(KIND_DEPLOYMENT),
        now,
    )
    .await
}

/// The token an earlier CreateDeploymentToken with `request_id` issued, as a
/// retry answers it: the same resource without its secret, which only the
/// first answer carries (only its hash is stored).
async fn issued_token<C: DbHandle>(
    db_conn: &C,
    workspace: &str,
    request_id: &str,
) -> ControlResult<Option<IssuedToken>> {
    let Some(resource) =
        idempotency::previous(db_conn, workspace, "CreateDeploymentToken", request_id).await?
    else {
        return Ok(None);
    };
    let name = TokenName::parse("name", &resource)?;
    let row = tokens::find(db_conn, &name.workspace, &name.deployment, &name.token)
        .await?
        .ok_or_else(|| {
            // The deployment (and its tokens) was deleted since; the request log
            // outlives it.
            ControlError::NotFound(format!(
                "token {name} issued for this request_id no longer exists"
            ))
        })?;
    Ok(Some(IssuedToken {
        row,
        token: String::new(),
    }))
}

/// The kind a ListDeployments filter names, spelled as the API's
/// `DeploymentKind` values (unspecified meaning STANDARD, as in a create).
pub(crate) fn kind_from_filter(value: &str) -> Option<DeploymentKind> {
    match value {
        "DEPLOYMENT_KIND_UNSPECIFIED" | "DEPLOYMENT_KIND_STANDARD" => {
            Some(DeploymentKind::Standard)
        }
        "DEPLOYMENT_KIND_BRANCH" => Some(DeploymentKind::Branch),
        "DEPLOYMENT_KIND_PREVIEW" => Some(DeploymentKind::Preview),
        _ => None,
    }
}

/// The resource name of a token row.
fn token_name(row: &deployment_token::Model) -> TokenName {
    TokenName {
        workspace: row.workspace.clone(),
        deployment: row.deployment_id.clone(),
        token: row.token_id.clone(),
    }
}

impl ControlService {
    /// Creates a deployment, or returns the one an earlier call with the same
    /// request_id created.
    pub(crate) async fn create_deployment(
        &self,
        principal: &Principal,
        create: DeploymentCreate,
    ) -> ControlResult<deployment::Model> {
        let DeploymentCreate {
            parent,
            deployment_id,
            deployment,
            request_id,
        } = create;
        let workspace = parent.workspace;
        self.authorize(principal, &workspace, Action::WriteDeployment)
            .await?;
        idempotency::validate(&request_id)?;
        let deployment = required("deployment", deployment)?;
        let mut violations = Vec::new();
        if let Err(why) = names::validate_deployment_id(&deployment_id) {
            violations.push(FieldViolation::new("deployment_id", why));
        }
        check_display_name(
            "deployment.display_name",
            &deployment.display_name,
            &mut violations,
        );
        check_namespace(
            "deployment.namespace",
            &deployment.namespace,
            &mut violations,
        );
        let kind = deployment
            .kind
            .ok_or_else(|| ControlError::invalid("deployment.kind", "is not a known kind"))?;
        let delivery = deployment.secret_delivery.ok_or_else(|| {
            ControlError::invalid("deployment.secret_delivery", "is not a known delivery")
        })?;
        let parent_id = if deployment.parent_deployment.is_empty() {
            if kind != DeploymentKind::Standard {
                violations.push(FieldViolation::new(
                    "deployment.parent_deployment",
                    "is required for BRANCH and PREVIEW deployments",
                ));
            }
            None
        } else if kind == DeploymentKind::Standard {
            violations.push(FieldViolation::new(
                "deployment.parent_deployment",
                "must be empty for STANDARD deployments",
            ));
            None
        } else {
            match deployment_ref(
                "deployment.parent_deployment",
                &workspace,
                &deployment.parent_deployment,
            ) {
                Ok(id) => Some(id),
                Err(violation) => {
                    violations.push(violation);
                    None
                }
            }
        };
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        check_delivery_namespace(self, &workspace, &deployment.namespace, delivery.as_str())?;
        let now = self.now();
        let write = self.store.begin_write().await?;
        // Checked under the write lock, so concurrent retries with one
        // request_id return the first result rather than a conflict.
        if let Some(resource) =
            idempotency::previous(&write.txn, &workspace, "CreateDeployment", &request_id).await?
        {
            let name = DeploymentName::parse("name", &resource)?;
            return find_deployment(&write.txn, &name).await;
        }
        let name = DeploymentName {
            workspace: workspace.clone(),
            deployment: deployment_id,
        };
        if switchboard_store::visibility::find_deployment(&write.txn, &workspace, &name.deployment)
            .await?
            .is_some()
        {
            return Err(ControlError::AlreadyExists(format!(
                "deployment {name} already exists"
            )));
        }
        if let Some(parent_id) = &parent_id {
            let parent_name = DeploymentName {
                workspace: workspace.clone(),
                deployment: parent_id.clone(),
            };
            let parent_row = find_deployment(&write.txn, &parent_name).await?;
            if parent_row.kind != DeploymentKind::Standard.as_str() {
                return Err(ControlError::FailedPrecondition(format!(
                    "parent {parent_name} is a {} deployment; branch and preview deployments need a STANDARD parent",
                    parent_row.kind
                )));
            }
        }
        let row = deployments::insert(
            &write.txn,
            NewDeployment {
                workspace: workspace.clone(),
                deployment_id: name.deployment.clone(),
                display_name: deployment.display_name,
                kind: kind.as_str().to_owned(),
                parent_deployment: parent_id,
                namespace: deployment.namespace,
                secret_delivery: delivery.as_str().to_owned(),
            },
            now,
        )
        .await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &workspace,
                actor: principal.actor(),
                action: "CreateDeployment",
                resource: name.to_string(),
                request_id: &request_id,
                changed_fields: vec![
                    "display_name".into(),
                    "kind".into(),
                    "parent_deployment".into(),
                    "namespace".into(),
                    "secret_delivery".into(),
                ],
            },
            Some(KIND_DEPLOYMENT),
            now,
        )
        .await?;
        idempotency::remember(
            &write.txn,
            &workspace,
            "CreateDeployment",
            &request_id,
            &name.to_string(),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(row)
    }

    /// A deployment.
    pub(crate) async fn get_deployment(
        &self,
        principal: &Principal,
        name: &DeploymentName,
    ) -> ControlResult<deployment::Model> {
        self.authorize(principal, &name.workspace, Action::Read)
            .await?;
        find_deployment(self.store.db(), name).await
    }

    /// One page of a workspace's deployments.
    pub(crate) async fn list_deployments(
        &self,
        principal: &Principal,
        query: DeploymentQuery,
    ) -> ControlResult<Page<deployment::Model>> {
        let DeploymentQuery {
            parent,
            filter,
            page,
        } = query;
        self.authorize(principal, &parent.workspace, Action::Read)
            .await?;
        let page_size = page_token::page_size(page.size)?;
        let fingerprint = format!("deployments|{}|{}", parent.workspace, filter);
        let after = page_token::decode(&self.page_key, &fingerprint, &page.token)?;
        let mut kind_filter = None;
        let mut parent_filter = None;
        for (key, value) in page_token::parse_filter(&filter)? {
            match key.as_str() {
                "kind" => {
                    let kind = kind_from_filter(&value).ok_or_else(|| {
                        ControlError::invalid("filter", "kind must be a DEPLOYMENT_KIND_* value")
                    })?;
                    kind_filter = Some(kind.as_str());
                }
                "parent_deployment" => {
                    parent_filter = Some(
                        deployment_ref("filter", &parent.workspace, &value)
                            .map_err(|violation| ControlError::InvalidArgument(vec![violation]))?,
                    );
                }
                other => {
                    return Err(ControlError::invalid(
                        "filter",
                        format!("unknown field '{other}'; use kind or parent_deployment"),
                    ));
                }
            }
        }
        let filter = DeploymentFilter {
            kind: kind_filter,
            parent: parent_filter.as_deref(),
        };
        let mut rows = deployments::page(
            self.store.db(),
            &parent.workspace,
            filter,
            after.as_deref(),
            page_size + 1,
        )
        .await?;
        let next_page_token =
            page_token::next_page(&self.page_key, &fingerprint, &mut rows, page_size, |row| {
                row.deployment_id.clone()
            });
        Ok(Page {
            items: rows,
            next_page_token,
        })
    }

    /// Changes the fields `update` names.
    pub(crate) async fn update_deployment(
        &self,
        principal: &Principal,
        update: DeploymentUpdate,
    ) -> ControlResult<deployment::Model> {
        let DeploymentUpdate {
            name,
            display_name,
            namespace,
            secret_delivery,
            etag,
            mut paths,
            request_id,
        } = update;
        self.authorize(principal, &name.workspace, Action::WriteDeployment)
            .await?;
        if paths.is_empty() || paths.iter().any(|path| path == "*") {
            paths = vec![
                "display_name".into(),
                "namespace".into(),
                "secret_delivery".into(),
            ];
        }
        let mut violations = Vec::new();
        for path in &paths {
            match path.as_str() {
                "display_name" => {
                    check_display_name("deployment.display_name", &display_name, &mut violations)
                }
                "namespace" => check_namespace("deployment.namespace", &namespace, &mut violations),
                "secret_delivery" => {
                    if secret_delivery.is_none() {
                        violations.push(FieldViolation::new(
                            "deployment.secret_delivery",
                            "is not a known delivery",
                        ));
                    }
                }
                "kind" | "parent_deployment" => violations.push(FieldViolation::new(
                    "update_mask",
                    format!("{path} cannot change after creation; create a new deployment instead"),
                )),
                other => violations.push(FieldViolation::new(
                    "update_mask",
                    format!(
                        "unknown path '{other}'; use display_name, namespace or secret_delivery"
                    ),
                )),
            }
        }
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        let now = self.now();
        let write = self.store.begin_write().await?;
        let row = find_deployment(&write.txn, &name).await?;
        check_etag(&etag, row.version, "deployment")?;
        let mut changes = DeploymentChanges::default();
        for path in &paths {
            match path.as_str() {
                "display_name" => changes.display_name = Some(display_name.clone()),
                "namespace" => changes.namespace = Some(namespace.clone()),
                "secret_delivery" => {
                    // Known: an unknown delivery was refused above.
                    let delivery = secret_delivery.unwrap_or(SecretDelivery::None);
                    changes.secret_delivery = Some(delivery.as_str().to_owned());
                }
                _ => {}
            }
        }
        // Checked on the result, and only when the update touches where or
        // how the Secret is delivered, so renaming a deployment still works
        // after its namespace was taken off the allowed list.
        if paths
            .iter()
            .any(|path| path == "namespace" || path == "secret_delivery")
        {
            let namespace = changes.namespace.as_ref().unwrap_or(&row.namespace);
            let delivery = changes
                .secret_delivery
                .as_ref()
                .unwrap_or(&row.secret_delivery);
            check_delivery_namespace(self, &name.workspace, namespace, delivery)?;
        }
        let saved = deployments::update(&write.txn, row, changes, now).await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "UpdateDeployment",
                resource: name.to_string(),
                request_id: &request_id,
                changed_fields: paths,
            },
            Some(KIND_DEPLOYMENT),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(saved)
    }

    /// Deletes a deployment (with `force`, its branch and preview
    /// deployments too), its links and tokens.
    pub(crate) async fn delete_deployment(
        &self,
        principal: &Principal,
        delete: DeploymentDelete,
    ) -> ControlResult<()> {
        let DeploymentDelete {
            name,
            etag,
            force,
            request_id,
        } = delete;
        self.authorize(principal, &name.workspace, Action::WriteDeployment)
            .await?;
        let write = self.store.begin_write().await?;
        let row = find_deployment(&write.txn, &name).await?;
        check_etag(&etag, row.version, "deployment")?;
        let children = deployments::children(&write.txn, &name.workspace, &name.deployment).await?;
        if !children.is_empty() && !force {
            let ids: Vec<&str> = children
                .iter()
                .map(|child| child.deployment_id.as_str())
                .collect();
            return Err(ControlError::FailedPrecondition(format!(
                "deployment {name} has branch or preview deployments ({}); delete them first or set force",
                ids.join(", ")
            )));
        }
        for child in &children {
            delete_deployment_row(self, &write, child, principal, &request_id).await?;
        }
        delete_deployment_row(self, &write, &row, principal, &request_id).await?;
        write.commit().await?;
        Ok(())
    }

    /// Issues a token for a deployment; the answer holds its secret. A retry
    /// with the same request_id returns the same token without it.
    pub(crate) async fn create_token(
        &self,
        principal: &Principal,
        create: TokenCreate,
    ) -> ControlResult<IssuedToken> {
        let TokenCreate {
            parent: name,
            description,
            request_id,
        } = create;
        self.authorize(principal, &name.workspace, Action::WriteDeployment)
            .await?;
        idempotency::validate(&request_id)?;
        let mut violations = Vec::new();
        check_display_name("description", &description, &mut violations);
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        if let Some(first) = issued_token(self.store.db(), &name.workspace, &request_id).await? {
            return Ok(first);
        }
        let now = self.now();
        let write = self.store.begin_write().await?;
        // A concurrent call with the same request_id may have committed since
        // the check above; the write lock orders this one after it.
        if let Some(first) = issued_token(&write.txn, &name.workspace, &request_id).await? {
            return Ok(first);
        }
        find_deployment(&write.txn, &name).await?;
        let issued = tokens::issue(
            &write.txn,
            &name.workspace,
            &name.deployment,
            &description,
            now,
        )
        .await?;
        let token_name = token_name(&issued.row).to_string();
        // Whoever holds the token reads what the deployment reads, secrets
        // included; the event says so plainly.
        audit::record_secret_grant(
            &write,
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "CreateDeploymentToken",
                resource: token_name.clone(),
                request_id: &request_id,
                changed_fields: Vec::new(),
            },
            format!(
                "grants secret access: the holder of this token can read, through the \
                 resolver, the secret values of every connection {name} sees"
            ),
            Some(KIND_TOKEN),
            now,
        )
        .await?;
        idempotency::remember(
            &write.txn,
            &name.workspace,
            "CreateDeploymentToken",
            &request_id,
            &token_name,
            now,
        )
        .await?;
        write.commit().await?;
        Ok(issued)
    }

    /// One page of a deployment's tokens (revoked ones included).
    pub(crate) async fn list_tokens(
        &self,
        principal: &Principal,
        name: &DeploymentName,
        page: PageRequest,
    ) -> ControlResult<Page<deployment_token::Model>> {
        self.authorize(principal, &name.workspace, Action::Read)
            .await?;
        let page_size = page_token::page_size(page.size)?;
        find_deployment(self.store.db(), name).await?;
        let fingerprint = format!("tokens|{name}");
        let after = page_token::decode(&self.page_key, &fingerprint, &page.token)?;
        let mut rows = tokens::page(
            self.store.db(),
            &name.workspace,
            &name.deployment,
            after.as_deref(),
            page_size + 1,
        )
        .await?;
        let next_page_token =
            page_token::next_page(&self.page_key, &fingerprint, &mut rows, page_size, |row| {
                row.token_id.clone()
            });
        Ok(Page {
            items: rows,
            next_page_token,
        })
    }

    /// Revokes a token; revoking a revoked token changes nothing.
    pub(crate) async fn revoke_token(
        &self,
        principal: &Principal,
        name: &TokenName,
    ) -> ControlResult<deployment_token::Model> {
        self.authorize(principal, &name.workspace, Action::WriteDeployment)
            .await?;
        let now = self.now();
        let write = self.store.begin_write().await?;
        let row = tokens::find(&write.txn, &name.workspace, &name.deployment, &name.token)
            .await?
            .ok_or_else(|| ControlError::TokenNotFound { name: name.clone() })?;
        if row.revoke_time.is_some() {
            return Ok(row);
        }
        let saved = tokens::revoke(&write.txn, row, now).await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "RevokeDeploymentToken",
                resource: name.to_string(),
                request_id: "",
                changed_fields: vec!["revoke_time".into()],
            },
            Some(KIND_TOKEN),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(saved)
    }
}
