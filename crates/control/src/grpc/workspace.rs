//! WorkspaceService over the service layer's policy operations.

use switchboard_domain::names::PolicyName;
use switchboard_proto::v1 as pb;
use tonic::{Request, Response, Status};

use super::Control;
use super::pb_conversions::mask_paths;
use super::pb_conversions::policy_to_pb;
use crate::error::ControlError;
use crate::service::required;
use crate::workspace::PolicyUpdate;

#[tonic::async_trait]
impl pb::workspace_service_server::WorkspaceService for Control {
    async fn get_workspace_policy(
        &self,
        request: Request<pb::GetWorkspacePolicyRequest>,
    ) -> Result<Response<pb::WorkspacePolicy>, Status> {
        let name =
            PolicyName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let row = self.service.get_policy(&principal, &name).await?;
        Ok(Response::new(policy_to_pb(&name.workspace, row.as_ref())))
    }

    async fn update_workspace_policy(
        &self,
        request: Request<pb::UpdateWorkspacePolicyRequest>,
    ) -> Result<Response<pb::WorkspacePolicy>, Status> {
        let policy = required("policy", request.get_ref().policy.as_ref())?;
        let name = PolicyName::parse("policy.name", &policy.name).map_err(ControlError::from)?;
        let principal = self.authenticate(&request).await?;
        let message = request.into_inner();
        let wanted = message.policy.unwrap_or_default();
        let update = PolicyUpdate {
            name,
            allow_secret_reveal: wanted.allow_secret_reveal,
            allow_local_export: wanted.allow_local_export,
            etag: wanted.etag,
            paths: mask_paths(message.update_mask.as_ref()),
            request_id: message.request_id,
        };
        let workspace = update.name.workspace.clone();
        let row = self.service.update_policy(&principal, update).await?;
        Ok(Response::new(policy_to_pb(&workspace, Some(&row))))
    }
}
