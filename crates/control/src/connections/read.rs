//! GetConnection and ListConnections.

use super::*;

/// Filters ListConnections understands.
#[derive(Debug, Default)]
struct ConnectionFilter {
    type_key: Option<String>,
    deployment: Option<String>,
}

fn parse_connection_filter(workspace: &str, filter: &str) -> ControlResult<ConnectionFilter> {
    let mut parsed = ConnectionFilter::default();
    for (key, value) in page_token::parse_filter(filter)? {
        match key.as_str() {
            "type" => parsed.type_key = Some(value),
            "deployment" => {
                parsed.deployment = Some(
                    deployment_ref("filter", workspace, &value)
                        .map_err(|violation| ControlError::InvalidArgument(vec![violation]))?,
                );
            }
            other => {
                return Err(ControlError::invalid(
                    "filter",
                    format!("unknown field '{other}'; use type or deployment"),
                ));
            }
        }
    }
    Ok(parsed)
}

impl Control {
    pub(crate) async fn get_connection_inner(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> ControlResult<pb::Connection> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let reveal = matches!(
            pb::ConnectionView::try_from(request.get_ref().view),
            Ok(pb::ConnectionView::WithSecrets)
        );
        let action = if reveal {
            Action::RevealSecrets
        } else {
            Action::Read
        };
        let principal = self.caller(&request, &name.workspace, action).await?;
        let row = find_connection(self.service.store.db(), &name).await?;
        if !reveal {
            return masked_connection(&row);
        }
        let spec =
            records::full_spec(self.service.store.secrets(), self.service.store.db(), &row).await?;
        let snapshot = records::snapshot_from_row(&row)?;
        let now = self.service.now();
        let write = self.service.store.begin_write().await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &row.workspace,
                actor: principal.actor(),
                action: "RevealSecrets",
                resource: connection_name(&row).to_string(),
                request_id: "",
                changed_fields: snapshot.secret_fields.clone(),
            },
            None,
            now,
        )
        .await?;
        write.commit().await?;
        Ok(connection_to_pb(
            &connection_name(&row),
            &snapshot,
            Some(&spec),
            Some(&row),
        ))
    }

    pub(crate) async fn list_connections_inner(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> ControlResult<pb::ListConnectionsResponse> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)?;
        self.caller(&request, &parent.workspace, Action::Read)
            .await?;
        let message = request.into_inner();
        let filter = parse_connection_filter(&parent.workspace, &message.filter)?;
        let page_size = page_token::page_size(message.page_size)?;
        let fingerprint = format!("connections|{}|{}", parent.workspace, message.filter);
        let after = page_token::decode(&self.service.page_key, &fingerprint, &message.page_token)?;
        let db_conn = self.service.store.db();
        let mut rows: Vec<connection::Model> = match &filter.deployment {
            Some(deployment_id) => {
                // What a deployment sees depends on its parent, links and
                // link-to-all exclusions: computed whole, then cut.
                let deployment = require_deployments(db_conn, &parent.workspace, [deployment_id])
                    .await?
                    .remove(0);
                let mut rows: Vec<_> = visibility::visible_connections(db_conn, &deployment, None)
                    .await?
                    .into_iter()
                    .map(|visible| visible.connection)
                    .collect();
                rows.retain(|row| {
                    filter
                        .type_key
                        .as_ref()
                        .is_none_or(|type_key| &row.type_key == type_key)
                        && after
                            .as_ref()
                            .is_none_or(|after| &row.conn_id_folded > after)
                });
                rows
            }
            None => {
                // Keyset paging on the (workspace, conn_id_folded) index: a
                // page costs the same wherever it starts.
                switchboard_store::connections::page(
                    db_conn,
                    &parent.workspace,
                    filter.type_key.as_deref(),
                    after.as_deref(),
                    page_size + 1,
                )
                .await?
            }
        };
        let next_page_token = page_token::next_page(
            &self.service.page_key,
            &fingerprint,
            &mut rows,
            page_size,
            |row| row.conn_id_folded.clone(),
        );
        Ok(pb::ListConnectionsResponse {
            connections: rows
                .iter()
                .map(masked_connection)
                .collect::<ControlResult<_>>()?,
            next_page_token,
        })
    }
}
