//! A connection's versions, and rolling back to one.

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

/// One page of a connection's versions, newest first, with the connection.
#[derive(Debug)]
pub(crate) struct VersionPage {
    pub connection: connection::Model,
    pub versions: Page<connection_version::Model>,
}

impl ControlService {
    /// One page of a connection's versions.
    pub(crate) async fn list_versions(
        &self,
        principal: &Principal,
        name: &ConnectionName,
        page: PageRequest,
    ) -> ControlResult<VersionPage> {
        self.authorize(principal, &name.workspace, Action::Read)
            .await?;
        let page_size = page_token::page_size(page.size)?;
        let row = find_connection(self.store.db(), name).await?;
        let fingerprint = format!("versions|{}|{}", name.workspace, row.id);
        let before = page_token::decode_number(&self.page_key, &fingerprint, &page.token)?;
        let mut versions = switchboard_store::connections::versions(
            self.store.db(),
            row.id,
            before,
            page_size + 1,
        )
        .await?;
        let next_page_token = page_token::next_page(
            &self.page_key,
            &fingerprint,
            &mut versions,
            page_size,
            |version| version.version.to_string(),
        );
        Ok(VersionPage {
            connection: row,
            versions: Page {
                items: versions,
                next_page_token,
            },
        })
    }

    /// Restores a connection (secrets included) to one of its versions.
    pub(crate) async fn rollback_connection(
        &self,
        principal: &Principal,
        rollback: Rollback,
    ) -> ControlResult<connection::Model> {
        let name = &rollback.name;
        self.authorize(principal, &name.workspace, Action::WriteConnection)
            .await?;
        if rollback.version <= 0 {
            return Err(ControlError::invalid(
                "version",
                "must be a positive version number",
            ));
        }
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // As in UpdateConnection: Vault only before the write lock.
            let (write, plan) = if remote {
                let plan = self.plan_rollback(self.store.db(), &rollback).await?;
                let write = self.store.begin_write().await?;
                if !plan.read.still_current(&write.txn).await? {
                    continue;
                }
                (write, plan)
            } else {
                let write = self.store.begin_write().await?;
                let plan = self.plan_rollback(&write.txn, &rollback).await?;
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
                self,
                &write,
                plan.read.row,
                ConnectionState {
                    spec: &plan.restored,
                    link_to_all: plan.link_to_all,
                    excluded: still_there,
                },
                plan.staged,
                ConnectionWrite {
                    principal,
                    action: "RollbackConnection",
                    request_id: &rollback.request_id,
                    changed: plan.changed,
                },
            )
            .await?;
            write.commit().await?;
            return Ok(saved);
        }
        Err(contended("connection"))
    }

    /// Reads the connection and the version to restore through `db_conn`
    /// (secrets included) and stages the restored secrets.
    async fn plan_rollback<C: DbHandle>(
        &self,
        db_conn: &C,
        rollback: &Rollback,
    ) -> ControlResult<RollbackPlan> {
        let Rollback { name, version, .. } = rollback;
        let row = find_connection(db_conn, name).await?;
        check_etag(&rollback.etag, row.version, "connection")?;
        let target = switchboard_store::connections::version(db_conn, row.id, *version)
            .await?
            .ok_or_else(|| ControlError::VersionNotFound {
                name: name.clone(),
                version: *version,
            })?;
        let snapshot: ConnectionSnapshot =
            records::from_json_text("connection_version", &target.snapshot)?;
        let old_secrets = self
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
        let current = records::full_spec(self.store.secrets(), db_conn, &row).await?;
        let (_, current_secrets) = current.split_secrets();
        let excluded: Vec<String> = snapshot
            .excluded_deployments
            .iter()
            .filter(|id| !id.is_empty())
            .cloned()
            .collect();
        let changed = changed_fields(&current, &restored);
        let staged = stage_connection_secrets(
            self,
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
