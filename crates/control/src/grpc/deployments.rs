//! DeploymentService over the service layer's deployment and token
//! operations.

use switchboard_domain::names::{DeploymentName, TokenName, WorkspaceName};
use switchboard_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Control;
use super::pb_conversions::mask_paths;
use super::pb_conversions::{delivery_from_pb, deployment_to_pb, kind_from_pb, token_to_pb};
use crate::deployments::{
    DeploymentCreate, DeploymentDelete, DeploymentFields, DeploymentQuery, DeploymentUpdate,
    TokenCreate,
};
use crate::error::{ControlError, ControlResult};
use crate::service::{PageRequest, required};

/// The fields of a Deployment message a create reads; an enum value this
/// server does not know becomes `None`, which the service refuses.
fn deployment_fields(message: pb::Deployment) -> DeploymentFields {
    DeploymentFields {
        display_name: message.display_name,
        kind: pb::DeploymentKind::try_from(message.kind)
            .ok()
            .map(kind_from_pb),
        parent_deployment: message.parent_deployment,
        namespace: message.namespace,
        secret_delivery: pb::SecretDelivery::try_from(message.secret_delivery)
            .ok()
            .map(delivery_from_pb),
    }
}

#[tonic::async_trait]
impl pb::deployment_service_server::DeploymentService for Control {
    async fn create_deployment(
        &self,
        request: Request<pb::CreateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let create = DeploymentCreate {
            parent,
            deployment_id: message.deployment_id,
            deployment: message.deployment.map(deployment_fields),
            request_id: message.request_id,
        };
        let row = self.service.create_deployment(&principal, create).await?;
        Ok(Response::new(deployment_to_pb(&row)?))
    }

    async fn get_deployment(
        &self,
        request: Request<pb::GetDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let name =
            DeploymentName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let row = self.service.get_deployment(&principal, &name).await?;
        Ok(Response::new(deployment_to_pb(&row)?))
    }

    async fn list_deployments(
        &self,
        request: Request<pb::ListDeploymentsRequest>,
    ) -> Result<Response<pb::ListDeploymentsResponse>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let query = DeploymentQuery {
            parent,
            filter: message.filter,
            page: PageRequest {
                size: message.page_size,
                token: message.page_token,
            },
        };
        let page = self.service.list_deployments(&principal, query).await?;
        Ok(Response::new(pb::ListDeploymentsResponse {
            deployments: page
                .items
                .iter()
                .map(deployment_to_pb)
                .collect::<ControlResult<_>>()?,
            next_page_token: page.next_page_token,
        }))
    }

    async fn update_deployment(
        &self,
        request: Request<pb::UpdateDeploymentRequest>,
    ) -> Result<Response<pb::Deployment>, Status> {
        let deployment = required("deployment", request.get_ref().deployment.as_ref())?;
        let name = DeploymentName::parse("deployment.name", &deployment.name)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let deployment = message.deployment.unwrap_or_default();
        let update = DeploymentUpdate {
            name,
            display_name: deployment.display_name,
            namespace: deployment.namespace,
            secret_delivery: pb::SecretDelivery::try_from(deployment.secret_delivery)
                .ok()
                .map(delivery_from_pb),
            etag: deployment.etag,
            paths: mask_paths(message.update_mask.as_ref()),
            request_id: message.request_id,
        };
        let row = self.service.update_deployment(&principal, update).await?;
        Ok(Response::new(deployment_to_pb(&row)?))
    }

    async fn delete_deployment(
        &self,
        request: Request<pb::DeleteDeploymentRequest>,
    ) -> Result<Response<()>, Status> {
        let name =
            DeploymentName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let delete = DeploymentDelete {
            name,
            etag: message.etag,
            force: message.force,
            request_id: message.request_id,
        };
        self.service.delete_deployment(&principal, delete).await?;
        Ok(Response::new(()))
    }

    async fn create_deployment_token(
        &self,
        request: Request<pb::CreateDeploymentTokenRequest>,
    ) -> Result<Response<pb::DeploymentToken>, Status> {
        let parent = DeploymentName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let create = TokenCreate {
            parent,
            description: message.description,
            request_id: message.request_id,
        };
        let issued = self.service.create_token(&principal, create).await?;
        let mut token = token_to_pb(&issued.row);
        // Empty for a retry: only the first answer carries the secret.
        token.token = issued.token;
        Ok(Response::new(token))
    }

    async fn list_deployment_tokens(
        &self,
        request: Request<pb::ListDeploymentTokensRequest>,
    ) -> Result<Response<pb::ListDeploymentTokensResponse>, Status> {
        let parent = DeploymentName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let page = PageRequest {
            size: message.page_size,
            token: message.page_token,
        };
        let page = self.service.list_tokens(&principal, &parent, page).await?;
        Ok(Response::new(pb::ListDeploymentTokensResponse {
            deployment_tokens: page.items.iter().map(token_to_pb).collect(),
            next_page_token: page.next_page_token,
        }))
    }

    async fn revoke_deployment_token(
        &self,
        request: Request<pb::RevokeDeploymentTokenRequest>,
    ) -> Result<Response<pb::DeploymentToken>, Status> {
        let name = TokenName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let row = self.service.revoke_token(&principal, &name).await?;
        Ok(Response::new(token_to_pb(&row)))
    }
}
