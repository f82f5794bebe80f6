//! DeleteConnection: the connection, its links and versions.

use super::*;

impl ControlService {
    /// Deletes a connection with its links, versions and secrets.
    pub(crate) async fn delete_connection(
        &self,
        principal: &Principal,
        delete: ConnectionDelete,
    ) -> ControlResult<()> {
        let ConnectionDelete {
            name,
            etag,
            request_id,
        } = delete;
        self.authorize(principal, &name.workspace, Action::WriteConnection)
            .await?;
        let now = self.now();
        let write = self.store.begin_write().await?;
        let row = find_connection(&write.txn, &name).await?;
        check_etag(&etag, row.version, "connection")?;
        let link_rows = switchboard_store::links::of_connection(&write.txn, row.id).await?;
        for link_row in &link_rows {
            links::delete_link_row(self, &write, &row, link_row, principal, &request_id).await?;
        }
        switchboard_store::connections::delete(&write.txn, self.store.secrets(), &row).await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &row.workspace,
                actor: principal.actor(),
                action: "DeleteConnection",
                resource: connection_name(&row).to_string(),
                request_id: &request_id,
                changed_fields: Vec::new(),
            },
            Some(KIND_CONNECTION),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(())
    }
}
