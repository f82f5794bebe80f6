//! The workspace policy: reading it and changing its switches.

use switchboard_domain::names::PolicyName;
use switchboard_domain::permission::{Action, Principal};
use switchboard_store::entity::policy;
use switchboard_store::policy as policies;

use crate::audit::{self, AuditRecord};
use crate::error::{ControlError, ControlResult};
use crate::service::{ControlService, check_etag};

/// An UpdateWorkspacePolicy: the wanted switches, and which of them to set.
#[derive(Debug)]
pub(crate) struct PolicyUpdate {
    pub name: PolicyName,
    pub allow_secret_reveal: bool,
    pub allow_local_export: bool,
    pub etag: String,
    /// The update mask's paths; empty or `*` means both switches.
    pub paths: Vec<String>,
    pub request_id: String,
}

impl ControlService {
    /// The policy of `name`'s workspace; `None` when it was never set (all
    /// switches off).
    pub(crate) async fn get_policy(
        &self,
        principal: &Principal,
        name: &PolicyName,
    ) -> ControlResult<Option<policy::Model>> {
        self.authorize(principal, &name.workspace, Action::Read)
            .await?;
        Ok(policies::get(self.store.db(), &name.workspace).await?)
    }

    /// Sets the switches `update` names, with its audit event.
    pub(crate) async fn update_policy(
        &self,
        principal: &Principal,
        update: PolicyUpdate,
    ) -> ControlResult<policy::Model> {
        let PolicyUpdate {
            name,
            allow_secret_reveal,
            allow_local_export,
            etag,
            mut paths,
            request_id,
        } = update;
        self.authorize(principal, &name.workspace, Action::UpdatePolicy)
            .await?;
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
        check_etag(&etag, version, "policy")?;
        let mut reveal = current.as_ref().is_some_and(|row| row.allow_secret_reveal);
        let mut export = current.as_ref().is_some_and(|row| row.allow_local_export);
        let mut changed = Vec::new();
        for path in &paths {
            if path == "allow_secret_reveal" && reveal != allow_secret_reveal {
                reveal = allow_secret_reveal;
                changed.push(path.clone());
            }
            if path == "allow_local_export" && export != allow_local_export {
                export = allow_local_export;
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
                request_id: &request_id,
                changed_fields: changed,
            },
            Some("policy"),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(row)
    }
}
