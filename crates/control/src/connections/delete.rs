//! DeleteConnection: the connection, its links and versions.

use super::*;

impl Control {
    pub(crate) async fn delete_connection_inner(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> ControlResult<()> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        let now = self.service.now();
        let write = self.service.store.begin_write().await?;
        let row = find_connection(&write.txn, &name).await?;
        check_etag(&message.etag, row.version, "connection")?;
        let link_rows = switchboard_store::links::of_connection(&write.txn, row.id).await?;
        for link_row in &link_rows {
            links::delete_link_row(
                &self.service,
                &write,
                &row,
                link_row,
                &principal,
                &message.request_id,
            )
            .await?;
        }
        switchboard_store::connections::delete(&write.txn, self.service.store.secrets(), &row)
            .await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &row.workspace,
                actor: principal.actor(),
                action: "DeleteConnection",
                resource: connection_name(&row).to_string(),
                request_id: &message.request_id,
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
