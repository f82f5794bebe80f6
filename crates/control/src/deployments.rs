//! DeploymentService: deployments (STANDARD, BRANCH, PREVIEW) and their tokens.

use switchboard_domain::FieldViolation;
use switchboard_domain::deployment::{DeploymentKind, SecretDelivery};
use switchboard_domain::names::{self, DeploymentName, TokenName, WorkspaceName};
use switchboard_domain::permission::{Action, Principal};
use switchboard_proto::v1 as pb;
use switchboard_store::DbHandle;
use switchboard_store::deployments::{self, DeploymentChanges, DeploymentFilter, NewDeployment};
use switchboard_store::entity::deployment;
use switchboard_store::{WriteTxn, tokens};
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditRecord};
use crate::connections::deployment_ref;
use crate::error::{ControlError, ControlResult};
use crate::grpc::Control;
use crate::idempotency;
use crate::page_token;
use crate::pb_conversions::{delivery_from_pb, deployment_to_pb, kind_from_pb, token_to_pb};
use crate::service::{ControlService, check_etag, required};

const KIND_DEPLOYMENT: &str = "deployment";
const KIND_TOKEN: &str = "token";
const MAX_DISPLAY_NAME: usize = 200;

async fn find_deployment<C: DbHandle>(
    db_conn: &C,
    name: &DeploymentName,
) -> ControlResult<deployment::Model> {
    switchboard_store::visibility::find_deployment(db_conn, &name.workspace, &name.deployment)
        .await?
        .ok_or_else(|| ControlError::NotFound(format!("deployment {name} not found")))
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
            resource: deployment_to_pb(row)?.name,
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
) -> ControlResult<Option<pb::DeploymentToken>> {
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
    Ok(Some(token_to_pb(&row)))
}

impl Control {
    async fn create_deployment_inner(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> ControlResult<pb::Deployment> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)?;
        let workspace = parent.workspace.clone();
        let principal = self
            .caller(&request, &workspace, Action::WriteDeployment)
            .await?;
        let message = request.into_inner();
        idempotency::validate(&message.request_id)?;
        let deployment = required("deployment", message.deployment.as_ref())?;
        let mut violations = Vec::new();
        if let Err(why) = names::validate_deployment_id(&message.deployment_id) {
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
        let kind = pb::DeploymentKind::try_from(deployment.kind)
            .map_err(|_| ControlError::invalid("deployment.kind", "is not a known kind"))?;
        let delivery = pb::SecretDelivery::try_from(deployment.secret_delivery).map_err(|_| {
            ControlError::invalid("deployment.secret_delivery", "is not a known delivery")
        })?;
        let kind = kind_from_pb(kind);
        let parent_id = if deployment.parent_deployment.is_empty() {
            if kind != DeploymentKind::Standard.as_str() {
                violations.push(FieldViolation::new(
                    "deployment.parent_deployment",
                    "is required for BRANCH and PREVIEW deployments",
                ));
            }
            None
        } else if kind == DeploymentKind::Standard.as_str() {
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
        check_delivery_namespace(
            &self.service,
            &workspace,
            &deployment.namespace,
            delivery_from_pb(delivery),
        )?;
        let now = self.service.now();
        let write = self.service.store.begin_write().await?;
        // Checked under the write lock, so concurrent retries with one
        // request_id return the first result rather than a conflict.
        if let Some(resource) = idempotency::previous(
            &write.txn,
            &workspace,
            "CreateDeployment",
            &message.request_id,
        )
        .await?
        {
            let name = DeploymentName::parse("name", &resource)?;
            return deployment_to_pb(&find_deployment(&write.txn, &name).await?);
        }
        let name = DeploymentName {
            workspace: workspace.clone(),
            deployment: message.deployment_id.clone(),
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
                display_name: deployment.display_name.clone(),
                kind: kind.to_owned(),
                parent_deployment: parent_id,
                namespace: deployment.namespace.clone(),
                secret_delivery: delivery_from_pb(delivery).to_owned(),
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
                request_id: &message.request_id,
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
            &message.request_id,
            &name.to_string(),
            now,
        )
        .await?;
        write.commit().await?;
        deployment_to_pb(&row)
    }

    async fn update_deployment_inner(
        &self,
        request: Request<pb::UpdateDeploymentRequest>,
    ) -> ControlResult<pb::Deployment> {
        let deployment_ref_msg = required("deployment", request.get_ref().deployment.as_ref())?;
        let name = DeploymentName::parse("deployment.name", &deployment_ref_msg.name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteDeployment)
            .await?;
        let message = request.into_inner();
        let deployment = message.deployment.unwrap_or_default();
        let mut paths = crate::field_mask::mask_paths(message.update_mask.as_ref());
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
                "display_name" => check_display_name(
                    "deployment.display_name",
                    &deployment.display_name,
                    &mut violations,
                ),
                "namespace" => check_namespace(
                    "deployment.namespace",
                    &deployment.namespace,
                    &mut violations,
                ),
                "secret_delivery" => {
                    if pb::SecretDelivery::try_from(deployment.secret_delivery).is_err() {
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
        let now = self.service.now();
        let write = self.service.store.begin_write().await?;
        let row = find_deployment(&write.txn, &name).await?;
        check_etag(&deployment.etag, row.version, "deployment")?;
        let mut changes = DeploymentChanges::default();
        for path in &paths {
            match path.as_str() {
                "display_name" => changes.display_name = Some(deployment.display_name.clone()),
                "namespace" => changes.namespace = Some(deployment.namespace.clone()),
                "secret_delivery" => {
                    let delivery = pb::SecretDelivery::try_from(deployment.secret_delivery)
                        .unwrap_or_default();
                    changes.secret_delivery = Some(delivery_from_pb(delivery).to_owned());
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
            check_delivery_namespace(&self.service, &name.workspace, namespace, delivery)?;
        }
        let saved = deployments::update(&write.txn, row, changes, now).await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "UpdateDeployment",
                resource: name.to_string(),
                request_id: &message.request_id,
                changed_fields: paths,
            },
            Some(KIND_DEPLOYMENT),
            now,
        )
        .await?;
        write.commit().await?;
        deployment_to_pb(&saved)
    }

    async fn delete_deployment_inner(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> ControlResult<()> {
        let name = DeploymentName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteDeployment)
            .await?;
        let message = request.into_inner();
        let write = self.service.store.begin_write().await?;
        let row = find_deployment(&write.txn, &name).await?;
        check_etag(&message.etag, row.version, "deployment")?;
        let children = deployments::children(&write.txn, &name.workspace, &name.deployment).await?;
        if !children.is_empty() && !message.force {
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
            delete_deployment_row(
                &self.service,
                &write,
                child,
                &principal,
                &message.request_id,
            )
            .await?;
        }
        delete_deployment_row(&self.service, &write, &row, &principal, &message.request_id).await?;
        write.commit().await?;
        Ok(())
    }

    async fn create_token_inner(
        &self,
        request: Request<pb::CreateDeploymentTokenRequest>,
    ) -> ControlResult<pb::DeploymentToken> {
        let name = DeploymentName::parse("parent", &request.get_ref().parent)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteDeployment)
            .await?;
        let message = request.into_inner();
        idempotency::validate(&message.request_id)?;
        let mut violations = Vec::new();
        check_display_name("description", &message.description, &mut violations);
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        if let Some(first) = issued_token(
            self.service.store.db(),
            &name.workspace,
            &message.request_id,
        )
        .await?
        {
            return Ok(first);
        }
        let now = self.service.now();
        let write = self.service.store.begin_write().await?;
        // A concurrent call with the same request_id may have committed since
        // the check above; the write lock orders this one after it.
        if let Some(first) = issued_token(&write.txn, &name.workspace, &message.request_id).await? {
            return Ok(first);
        }
        find_deployment(&write.txn, &name).await?;
        let issued = tokens::issue(
            &write.txn,
            &name.workspace,
            &name.deployment,
            &message.description,
            now,
        )
        .await?;
        let row = issued.row;
        let mut token = token_to_pb(&row);
        // Whoever holds the token reads what the deployment reads, secrets
        // included; the event says so plainly.
        audit::record_secret_grant(
            &write,
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "CreateDeploymentToken",
                resource: token.name.clone(),
                request_id: &message.request_id,
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
            &message.request_id,
            &token.name,
            now,
        )
        .await?;
        write.commit().await?;
        token.token = issued.token;
        Ok(token)
    }

    async fn list_tokens_inner(
        &self,
        request: Request<pb::ListDeploymentTokensRequest>,
    ) -> ControlResult<pb::ListDeploymentTokensResponse> {
        let name = DeploymentName::parse("parent", &request.get_ref().parent)?;
        self.caller(&request, &name.workspace, Action::Read).await?;
        let message = request.into_inner();
        let page_size = page_token::page_size(message.page_size)?;
        find_deployment(self.service.store.db(), &name).await?;
        let fingerprint = format!("tokens|{name}");
        let after = page_token::decode(&self.service.page_key, &fingerprint, &message.page_token)?;
        let mut rows = tokens::page(
            self.service.store.db(),
            &name.workspace,
            &name.deployment,
            after.as_deref(),
            page_size + 1,
        )
        .await?;
        let next_page_token = page_token::next_page(
            &self.service.page_key,
            &fingerprint,
            &mut rows,
            page_size,
            |row| row.token_id.clone(),
        );
        Ok(pb::ListDeploymentTokensResponse {
            deployment_tokens: rows.iter().map(token_to_pb).collect(),
            next_page_token,
        })
    }

    async fn revoke_token_inner(
        &self,
        request: Request<pb::RevokeDeploymentTokenRequest>,
    ) -> ControlResult<pb::DeploymentToken> {
        let name = TokenName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteDeployment)
            .await?;
        let now = self.service.now();
        let write = self.service.store.begin_write().await?;
        let row = tokens::find(&write.txn, &name.workspace, &name.deployment, &name.token)
            .await?
            .ok_or_else(|| ControlError::NotFound(format!("token {name} not found")))?;
        if row.revoke_time.is_some() {
            return Ok(token_to_pb(&row));
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
        Ok(token_to_pb(&saved))
    }
}

#[tonic::async_trait]
impl pb::deployment_service_server::DeploymentService for Control {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        Ok(Response::new(self.create_deployment_inner(request).await?))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let name =
            DeploymentName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        self.caller(&request, &name.workspace, Action::Read).await?;
        Ok(Response::new(deployment_to_pb(
            &find_deployment(self.service.store.db(), &name).await?,
        )?))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        self.caller(&request, &parent.workspace, Action::Read)
            .await?;
        let message = request.into_inner();
        let page_size = page_token::page_size(message.page_size)?;
        let fingerprint = format!("deployments|{}|{}", parent.workspace, message.filter);
        let after = page_token::decode(&self.service.page_key, &fingerprint, &message.page_token)?;
        let mut kind_filter = None;
        let mut parent_filter = None;
        for (key, value) in page_token::parse_filter(&message.filter)? {
            match key.as_str() {
                "kind" => {
                    let kind = pb::DeploymentKind::from_str_name(&value).ok_or_else(|| {
                        ControlError::invalid("filter", "kind must be a DEPLOYMENT_KIND_* value")
                    })?;
                    kind_filter = Some(kind_from_pb(kind));
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
                    )
                    .into());
                }
            }
        }
        let filter = DeploymentFilter {
            kind: kind_filter,
            parent: parent_filter.as_deref(),
        };
        let mut rows = deployments::page(
            self.service.store.db(),
            &parent.workspace,
            filter,
            after.as_deref(),
            page_size + 1,
        )
        .await
        .map_err(ControlError::from)?;
        let next_page_token = page_token::next_page(
            &self.service.page_key,
            &fingerprint,
            &mut rows,
            page_size,
            |row| row.deployment_id.clone(),
        );
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: rows
                .iter()
                .map(deployment_to_pb)
                .collect::<ControlResult<_>>()?,
            next_page_token,
        }))
    }

    async fn update_deployment(
        &self,
        request: Request<pb::UpdateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        Ok(Response::new(self.update_deployment_inner(request).await?))
    }

    async fn delete_deployment(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete_deployment_inner(request).await?;
        Ok(Response::new(()))
    }

    async fn create_deployment_token(
        &self,
        request: Request<pb::CreateDeploymentTokenRequest>,
    ) -> Result<Response<pb::DeploymentToken>, Status> {
        Ok(Response::new(self.create_token_inner(request).await?))
    }

    async fn list_deployment_tokens(
        &self,
        request: Request<pb::ListDeploymentTokensRequest>,
    ) -> Result<Response<pb::ListDeploymentTokensResponse>, Status> {
        Ok(Response::new(self.list_tokens_inner(request).await?))
    }

    async fn revoke_deployment_token(
        &self,
        request: Request<pb::RevokeDeploymentTokenRequest>,
    ) -> Result<Response<pb::DeploymentToken>, Status> {
        Ok(Response::new(self.revoke_token_inner(request).await?))
    }
}
