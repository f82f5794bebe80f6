//! WorkspaceService: the workspace policy.

use switchboard_domain::names::PolicyName;
use switchboard_domain::permission::Action;
use switchboard_proto::v1 as pb;
use switchboard_store::entity::policy;
use switchboard_store::policy as policies;
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditRecord};
use crate::connections::check_etag;
use crate::error::{ControlError, ControlResult};
use crate::pb_conversions::{policy_to_pb, required};
use crate::service::Control;

impl Control {
    async fn update_policy_inner(
        &self,
        request: Request<pb::UpdateWorkspacePolicyRequest>,
    ) -> ControlResult<pb::WorkspacePolicy> {
        let policy_message = required("policy", request.get_ref().policy.as_ref())?;
        let name = PolicyName::parse("policy.name", &policy_message.name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::UpdatePolicy)
            .await?;
        let message = request.into_inner();
        let wanted = message.policy.unwrap_or_default();
        let mut paths = crate::field_mask::mask_paths(message.update_mask.as_ref());
        if paths.is_empty() || paths.iter().any(|path| path == "*") {
            paths = vec!["allow_secret_reveal".into(), "allow_local_export".into()];
        }
        for path in &paths {
            if path != "allow_secret_reveal" && path != "allow_local_export" {
                return Err(ControlError::invalid(
                    "update_mask",
                    format!("unknown path '{path}'; use allow_secret_reveal or allow_local_export"),
                ));
            }
        }
        let now = self.now();
        let write = self.store.begin_write().await?;
        let current = policies::get(&write.txn, &name.workspace).await?;
        let version = current.as_ref().map_or(0, |row| row.version);
        check_etag(&wanted.etag, version, "policy")?;
        let mut reveal = current.as_ref().is_some_and(|row| row.allow_secret_reveal);
        let mut export = current.as_ref().is_some_and(|row| row.allow_local_export);
        let mut changed = Vec::new();
        for path in &paths {
            if path == "allow_secret_reveal" && reveal != wanted.allow_secret_reveal {
                reveal = wanted.allow_secret_reveal;
                changed.push(path.clone());
            }
            if path == "allow_local_export" && export != wanted.allow_local_export {
                export = wanted.allow_local_export;
                changed.push(path.clone());
            }
        }
        let row = policy::Model {
            workspace: name.workspace.clone(),
            allow_secret_reveal: reveal,
            allow_local_export: export,
            version: version + 1,
            update_time: now,
        };
        policies::put(&write.txn, &row).await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "UpdateWorkspacePolicy",
                resource: name.to_string(),
                request_id: &message.request_id,
                changed_fields: changed,
            },
            Some("policy"),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(policy_to_pb(&name.workspace, Some(&row)))
    }
}

#[tonic::async_trait]
impl pb::workspace_service_server::WorkspaceService for Control {
    async fn get_workspace_policy(
        &self,
        request: Request<pb::GetWorkspacePolicyRequest>,
    ) -> Result<Response<pb::WorkspacePolicy>, Status> {
        let name =
            PolicyName::parse("name", &request.get_ref().name).map_err(ControlError::from)?;
        self.caller(&request, &name.workspace, Action::Read).await?;
        let row = policies::get(self.store.db(), &name.workspace)
            .await
            .map_err(ControlError::from)?;
        Ok(Response::new(policy_to_pb(&name.workspace, row.as_ref())))
    }

    async fn update_workspace_policy(
        &self,
        request: Request<pb::UpdateWorkspacePolicyRequest>,
    ) -> Result<Response<pb::WorkspacePolicy>, Status> {
        Ok(Response::new(self.update_policy_inner(request).await?))
    }
}
