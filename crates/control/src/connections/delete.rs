//! DeleteConnection: the connection, its links and versions.

use super::*;

impl Control {
    pub(super) async fn delete_connection_inner(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> ControlResult<()> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        let now = self.now();
        let write = self.store.begin_write().await?;
        let row = find_connection(&write.txn, &name).await?;
        check_etag(&message.etag, row.version, "connection")?;
        let link_rows = db(link::Entity::find()
            .filter(link::Column::ConnectionPk.eq(row.id))
            .all(&write.txn)
            .await)?;
        for link_row in &link_rows {
            links::delete_link_row(
                self,
                &write,
                &row,
                link_row,
                &principal,
                &message.request_id,
            )
            .await?;
        }
        db(connection_version::Entity::delete_many()
            .filter(connection_version::Column::ConnectionPk.eq(row.id))
            .exec(&write.txn)
            .await)?;
        db(connection::Entity::delete_by_id(row.id)
            .exec(&write.txn)
            .await)?;
        self.store
            .secrets()
            .delete_owner(
                &write.txn,
                &row.workspace,
                &records::connection_owner(row.id),
            )
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
