//! ListConnectionVersions and RollbackConnection.

use super::*;

/// A rollback computed from the rows as read.
struct RollbackPlan {
    /// Without links: a rollback does not validate them.
    read: ReadState,
    restored: ConnectionSpec,
    link_to_all: bool,
    excluded: Vec<String>,
    changed: Vec<String>,
    staged: StagedSecrets,
}

impl Control {
    pub(crate) async fn list_versions_inner(
        &self,
        request: Request<pb::ListConnectionVersionsRequest>,
    ) -> ControlResult<pb::ListConnectionVersionsResponse> {
        let name = ConnectionName::parse("parent", &request.get_ref().parent)?;
        self.caller(&request, &name.workspace, Action::Read).await?;
        let message = request.into_inner();
        let page_size = page_token::page_size(message.page_size)?;
        let row = find_connection(self.service.store.db(), &name).await?;
        let fingerprint = format!("versions|{}|{}", name.workspace, row.id);
        let before =
            page_token::decode_number(&self.service.page_key, &fingerprint, &message.page_token)?;
        let mut versions = switchboard_store::connections::versions(
            self.service.store.db(),
            row.id,
            before,
            page_size + 1,
        )
        .await?;
        let next_page_token = page_token::next_page(
            &self.service.page_key,
            &fingerprint,
            &mut versions,
            page_size,
            |version| version.version.to_string(),
        );
        let canonical = connection_name(&row);
        let connection_versions = versions
            .iter()
            .map(|version| {
                let snapshot: ConnectionSnapshot =
                    records::from_json_text("connection_version", &version.snapshot)?;
                Ok(pb::ConnectionVersion {
                    name: format!("{canonical}/versions/{}", version.version),
                    version: version.version,
                    connection: Some(connection_to_pb(&canonical, &snapshot, None, None)),
                    actor: version.actor.clone(),
                    action: version_action(&version.action).to_owned(),
                    changed_fields: records::from_json_text(
                        "connection_version",
                        &version.changed_fields,
                    )?,
                    create_time: Some(pb_conversions::timestamp(version.create_time)),
                })
            })
            .collect::<ControlResult<_>>()?;
        Ok(pb::ListConnectionVersionsResponse {
            connection_versions,
            next_page_token,
        })
    }

    pub(crate) async fn rollback_inner(
        &self,
        request: Request<pb::RollbackConnectionRequest>,
    ) -> ControlResult<pb::Connection> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        if message.version <= 0 {
            return Err(ControlError::invalid(
                "version",
                "must be a positive version number",
            ));
        }
        let remote = self.service.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // As in UpdateConnection: Vault only before the write lock.
            let (write, plan) = if remote {
                let plan = self
                    .plan_rollback(self.service.store.db(), &name, &message)
                    .await?;
                let write = self.service.store.begin_write().await?;
                if !plan.read.still_current(&write.txn).await? {
                    continue;
                }
                (write, plan)
            } else {
                let write = self.service.store.begin_write().await?;
                let plan = self.plan_rollback(&write.txn, &name, &message).await?;
                (write, plan)
            };
            // Deployments deleted since that version can no longer be excluded.
            let mut still_there = Vec::new();
            for id in plan.excluded {
                if visibility::find_deployment(&write.txn, &plan.read.row.workspace, &id)
                    .await?
                    .is_some()
                {
                    still_there.push(id);
                }
            }
            let saved = save_connection(
                &self.service,
                &write,
                plan.read.row,
                ConnectionState {
                    spec: &plan.restored,
                    link_to_all: plan.link_to_all,
                    excluded: still_there,
                },
                plan.staged,
                ConnectionWrite {
                    principal: &principal,
                    action: "RollbackConnection",
                    request_id: &message.request_id,
                    changed: plan.changed,
                },
            )
            .await?;
            write.commit().await?;
            return masked_connection(&saved);
        }
        Err(contended("connection"))
    }

    /// Reads the connection and the version to restore through `db_conn`
    /// (secrets included) and stages the restored secrets.
    async fn plan_rollback<C: DbHandle>(
        &self,
        db_conn: &C,
        name: &ConnectionName,
        message: &pb::RollbackConnectionRequest,
    ) -> ControlResult<RollbackPlan> {
        let row = find_connection(db_conn, name).await?;
        check_etag(&message.etag, row.version, "connection")?;
        let target = switchboard_store::connections::version(db_conn, row.id, message.version)
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!("version {} of {name} not found", message.version))
            })?;
        let snapshot: ConnectionSnapshot =
            records::from_json_text("connection_version", &target.snapshot)?;
        let old_secrets = self
            .service
            .store
            .secrets()
            .get(
                db_conn,
                &row.workspace,
                &records::connection_owner(row.id),
                target.secret_version,
            )
            .await?;
        let restored = snapshot.spec.clone().with_secrets(&old_secrets);
        let current = records::full_spec(self.service.store.secrets(), db_conn, &row).await?;
        let (_, current_secrets) = current.split_secrets();
        let excluded: Vec<String> = snapshot
            .excluded_deployments
            .iter()
            .filter(|id| !id.is_empty())
            .cloned()
            .collect();
        let changed = changed_fields(&current, &restored);
        let staged = stage_connection_secrets(
            &self.service,
            &row.workspace,
            row.id,
            &restored,
            Some(&current_secrets),
        )
        .await?;
        Ok(RollbackPlan {
            read: ReadState {
                row,
                link_rows: None,
            },
            restored,
            link_to_all: snapshot.link_to_all,
            excluded,
            changed,
            staged,
        })
    }
}
