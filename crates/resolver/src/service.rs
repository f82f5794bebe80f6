//! The ResolverService.

use std::sync::Arc;

use switchboard_domain::conn_id;
use switchboard_domain::names::DeploymentName;
use switchboard_domain::permission::{self, Action, PolicyFlags, Principal};
use switchboard_proto::v1 as pb;
use switchboard_store::auth::Authenticator;
use switchboard_store::entity::{audit_event, deployment, policy};
use switchboard_store::sea_orm::{ActiveValue::Set, EntityTrait};
use switchboard_store::{Clock, Store, StoreError, feed, visibility};
use tonic::{Request, Response, Status};

use crate::error::{ResolverError, ResolverResult};
use crate::pb_conversions::resolved_to_pb;

/// The resolver's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Resolver {
    store: Store,
    auth: Authenticator,
    clock: Arc<dyn Clock>,
}

impl Resolver {
    /// Builds a resolver over `store`.
    pub fn new(store: Store, auth: Authenticator, clock: Arc<dyn Clock>) -> Self {
        Self { store, auth, clock }
    }

    /// The gRPC service, ready to add to a tonic router.
    pub fn service(&self) -> pb::resolver_service_server::ResolverServiceServer<Self> {
        pb::resolver_service_server::ResolverServiceServer::new(self.clone())
    }

    async fn policy_flags(&self, workspace: &str) -> ResolverResult<PolicyFlags> {
        let row = policy::Entity::find_by_id(workspace.to_owned())
            .one(self.store.db())
            .await
            .map_err(StoreError::from)?;
        Ok(row.map_or_else(PolicyFlags::default, |row| PolicyFlags {
            allow_secret_reveal: row.allow_secret_reveal,
            allow_local_export: row.allow_local_export,
        }))
    }

    /// Authenticates the caller and finds the deployment it may resolve.
    async fn target<T>(
        &self,
        request: &Request<T>,
        deployment: &str,
    ) -> ResolverResult<(Principal, deployment::Model)> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        let principal = self.auth.authenticate(self.store.db(), header).await?;
        let name = if deployment.is_empty() {
            match &principal {
                Principal::Deployment {
                    workspace,
                    deployment,
                    ..
                } => DeploymentName {
                    workspace: workspace.clone(),
                    deployment: deployment.clone(),
                },
                Principal::User { .. } => {
                    return Err(ResolverError::InvalidArgument(vec![
                        switchboard_domain::FieldViolation::new(
                            "deployment",
                            "is required with a user token",
                        ),
                    ]));
                }
            }
        } else {
            DeploymentName::parse("deployment", deployment)?
        };
        let policy = match principal {
            Principal::User { .. } => self.policy_flags(&name.workspace).await?,
            Principal::Deployment { .. } => PolicyFlags::default(),
        };
        permission::authorize(
            &principal,
            &name.workspace,
            Action::Resolve,
            policy,
            Some(&name.deployment),
        )?;
        let row = visibility::find_deployment(self.store.db(), &name.workspace, &name.deployment)
            .await?
            .ok_or_else(|| ResolverError::NotFound(format!("deployment {name} not found")))?;
        if let Principal::User { .. } = &principal {
            // Local exports reveal secrets to a person: each one is audited.
            audit_event::Entity::insert(audit_event::ActiveModel {
                workspace: Set(name.workspace.clone()),
                actor: Set(principal.actor()),
                action: Set("ResolveConnections".to_owned()),
                resource: Set(name.to_string()),
                request_id: Set(String::new()),
                changed_fields: Set("[]".to_owned()),
                create_time: Set(self.clock.now_micros()),
                ..Default::default()
            })
            .exec(self.store.db())
            .await
            .map_err(StoreError::from)?;
        }
        Ok((principal, row))
    }
}

#[tonic::async_trait]
impl pb::resolver_service_server::ResolverService for Resolver {
    async fn resolve_connection(
        &self,
        request: Request<pb::ResolveConnectionRequest>,
    ) -> Result<Response<pb::ResolvedConnection>, Status> {
        let (_, deployment) = self.target(&request, &request.get_ref().deployment).await?;
        let wanted = &request.get_ref().conn_id;
        conn_id::validate(wanted).map_err(|why| {
            ResolverError::InvalidArgument(vec![switchboard_domain::FieldViolation::new(
                "conn_id", why,
            )])
        })?;
        let folded = conn_id::fold(wanted);
        let db = self.store.db();
        let revision = feed::head(db).await.map_err(ResolverError::from)?;
        let visible = visibility::visible_connections(db, &deployment)
            .await
            .map_err(ResolverError::from)?
            .into_iter()
            .find(|visible| visible.connection.conn_id_folded == folded)
            .ok_or_else(|| {
                ResolverError::NotFound(format!(
                    "connection {wanted} is not linked to deployment {}",
                    deployment.deployment_id
                ))
            })?;
        let effective = visibility::effective(self.store.secrets(), db, &visible)
            .await
            .map_err(ResolverError::from)?;
        Ok(Response::new(resolved_to_pb(&effective, revision)))
    }

    async fn list_resolved_connections(
        &self,
        request: Request<pb::ListResolvedConnectionsRequest>,
    ) -> Result<Response<pb::ListResolvedConnectionsResponse>, Status> {
        let (_, deployment) = self.target(&request, &request.get_ref().deployment).await?;
        let db = self.store.db();
        let revision = feed::head(db).await.map_err(ResolverError::from)?;
        let mut connections = Vec::new();
        for visible in visibility::visible_connections(db, &deployment)
            .await
            .map_err(ResolverError::from)?
        {
            let effective = visibility::effective(self.store.secrets(), db, &visible)
                .await
                .map_err(ResolverError::from)?;
            connections.push(resolved_to_pb(&effective, revision));
        }
        Ok(Response::new(pb::ListResolvedConnectionsResponse {
            connections,
            revision,
        }))
    }
}
