//! UpdateConnection: a field mask applied to the stored connection.

use super::*;

/// What an update asks for, its mask resolved to paths.
#[derive(Clone, Copy)]
struct UpdateRequest<'a> {
    name: &'a ConnectionName,
    connection: &'a ConnectionFields,
    etag: &'a str,
    paths: &'a [String],
    wildcard: bool,
}

/// An update computed from the rows as read.
struct UpdatePlan {
    read: ReadState,
    next: ConnectionSpec,
    link_to_all: bool,
    excluded: Vec<String>,
    changed: Vec<String>,
    staged: StagedSecrets,
}

impl ControlService {
    /// Applies an update mask to a connection.
    pub(crate) async fn update_connection(
        &self,
        principal: &Principal,
        update: ConnectionUpdate,
    ) -> ControlResult<connection::Model> {
        let ConnectionUpdate {
            name,
            connection,
            etag,
            paths,
            wildcard,
            request_id,
        } = update;
        self.authorize(principal, &name.workspace, Action::WriteConnection)
            .await?;
        idempotency::validate(&request_id)?;
        let paths = field_mask::connection_paths(paths, &connection)?;

        let request = UpdateRequest {
            name: &name,
            connection: &connection,
            etag: &etag,
            paths: &paths,
            wildcard,
        };
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // With Vault everything that reads or writes it happens before the
            // write lock, and runs again if the rows changed meanwhile; the
            // embedded store reads and writes inside the transaction.
            let (write, plan) = if remote {
                let plan = self.plan_update(self.store.db(), &request).await?;
                let write = self.store.begin_write().await?;
                if !plan.read.still_current(&write.txn).await? {
                    continue;
                }
                (write, plan)
            } else {
                let write = self.store.begin_write().await?;
                let plan = self.plan_update(&write.txn, &request).await?;
                (write, plan)
            };
            require_deployments(&write.txn, &name.workspace, plan.excluded.iter()).await?;
            let saved = save_connection(
                self,
                &write,
                plan.read.row,
                ConnectionState {
                    spec: &plan.next,
                    link_to_all: plan.link_to_all,
                    excluded: plan.excluded,
                },
                plan.staged,
                ConnectionWrite {
                    principal,
                    action: "UpdateConnection",
                    request_id: &request_id,
                    changed: plan.changed,
                },
            )
            .await?;
            write.commit().await?;
            return Ok(saved);
        }
        Err(contended("connection"))
    }

    /// Reads the connection and its links through `db_conn`, computes and
    /// validates the update, and stages the new secrets.
    async fn plan_update<C: DbHandle>(
        &self,
        db_conn: &C,
        request: &UpdateRequest<'_>,
    ) -> ControlResult<UpdatePlan> {
        let UpdateRequest {
            name,
            connection,
            etag,
            paths,
            wildcard,
        } = *request;
        let row = find_connection(db_conn, name).await?;
        check_etag(etag, row.version, "connection")?;
        let current = records::full_spec(self.store.secrets(), db_conn, &row).await?;
        let (_, current_secrets) = current.split_secrets();
        let next = with_derived_conn_type(field_mask::apply_to_spec(
            &current,
            &connection.spec,
            paths,
            wildcard,
        ));
        let current_snapshot = records::snapshot_from_row(&row)?;
        let mut link_to_all = current_snapshot.link_to_all;
        let mut excluded = current_snapshot.excluded_deployments.clone();
        let mut violations = Vec::new();
        if paths.iter().any(|path| path == "link_to_all_deployments") {
            link_to_all = connection.link_to_all_deployments;
        }
        if paths.iter().any(|path| path == "excluded_deployments") {
            excluded = parse_excluded(
                &name.workspace,
                &connection.excluded_deployments,
                "connection",
                &mut violations,
            );
        }
        if let Err(found) = validate_connection(&next) {
            violations.extend(
                found
                    .into_iter()
                    .map(|violation| violation.scope("connection")),
            );
        }
        let link_rows = switchboard_store::links::of_connection(db_conn, row.id).await?;
        if violations.is_empty() {
            for link_row in &link_rows {
                let overrides =
                    records::full_overrides(self.store.secrets(), db_conn, link_row).await?;
                violations.extend(validate_merged(
                    &next,
                    &overrides,
                    &format!("links[{}].overrides", link_row.deployment_id),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        let mut changed = changed_fields(&current, &next);
        if link_to_all != current_snapshot.link_to_all {
            changed.push("link_to_all_deployments".to_owned());
        }
        if excluded != current_snapshot.excluded_deployments {
            changed.push("excluded_deployments".to_owned());
        }
        let staged =
            stage_connection_secrets(self, &row.workspace, row.id, &next, Some(&current_secrets))
                .await?;
        Ok(UpdatePlan {
            read: ReadState {
                row,
                link_rows: Some(link_rows),
            },
            next,
            link_to_all,
            excluded,
            changed,
            staged,
        })
    }
}
