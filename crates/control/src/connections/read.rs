//! Reading connections: one, a page of them, and the type catalog.

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

/// A connection as read: the row, and with secrets shown, what it holds.
#[derive(Debug)]
pub(crate) struct ConnectionRead {
    pub row: connection::Model,
    /// When secrets were asked for (and allowed): the row's snapshot and its
    /// spec with the secret values.
    pub revealed: Option<(ConnectionSnapshot, ConnectionSpec)>,
}

impl ControlService {
    /// A connection; with `reveal`, its secret values too (the workspace
    /// policy decides, and the read is audited).
    pub(crate) async fn get_connection(
        &self,
        principal: &Principal,
        name: &ConnectionName,
        reveal: bool,
    ) -> ControlResult<ConnectionRead> {
        let action = if reveal {
            Action::RevealSecrets
        } else {
            Action::Read
        };
        self.authorize(principal, &name.workspace, action).await?;
        let row = find_connection(self.store.db(), name).await?;
        if !reveal {
            return Ok(ConnectionRead {
                row,
                revealed: None,
            });
        }
        let spec = records::full_spec(self.store.secrets(), self.store.db(), &row).await?;
        let snapshot = records::snapshot_from_row(&row)?;
        let now = self.now();
        let write = self.store.begin_write().await?;
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
        Ok(ConnectionRead {
            row,
            revealed: Some((snapshot, spec)),
        })
    }

    /// One page of a workspace's connections, or of those a deployment sees.
    pub(crate) async fn list_connections(
        &self,
        principal: &Principal,
        query: ConnectionQuery,
    ) -> ControlResult<Page<connection::Model>> {
        let ConnectionQuery {
            parent,
            filter: filter_text,
            page,
        } = query;
        self.authorize(principal, &parent.workspace, Action::Read)
            .await?;
        let filter = parse_connection_filter(&parent.workspace, &filter_text)?;
        let page_size = page_token::page_size(page.size)?;
        let fingerprint = format!("connections|{}|{}", parent.workspace, filter_text);
        let after = page_token::decode(&self.page_key, &fingerprint, &page.token)?;
        let db_conn = self.store.db();
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
        let next_page_token =
            page_token::next_page(&self.page_key, &fingerprint, &mut rows, page_size, |row| {
                row.conn_id_folded.clone()
            });
        Ok(Page {
            items: rows,
            next_page_token,
        })
    }

    /// One page of the connection type catalog.
    pub(crate) fn connection_types(
        &self,
        principal: &Principal,
        page: PageRequest,
    ) -> ControlResult<Page<&'static catalog::ConnectionType>> {
        permission::authorize_catalog(principal)?;
        let page_size = page_token::page_size(page.size)?;
        let fingerprint = "connection_types";
        let mut entries: Vec<_> = catalog::all().iter().collect();
        if let Some(after) = page_token::decode(&self.page_key, fingerprint, &page.token)? {
            let position = entries
                .iter()
                .position(|entry| entry.key == after)
                .ok_or_else(|| {
                    ControlError::invalid("page_token", "is not a page token of this request")
                })?;
            entries.drain(..=position);
        }
        let next_page_token = page_token::next_page(
            &self.page_key,
            fingerprint,
            &mut entries,
            page_size,
            |entry| entry.key.to_owned(),
        );
        Ok(Page {
            items: entries,
            next_page_token,
        })
    }
}
