//! Links: a connection attached to one deployment, with field overrides.

use switchboard_domain::Overrides;
use switchboard_domain::names::{ConnectionName, LinkName};
use switchboard_domain::permission::{Action, Principal};
use switchboard_domain::validate::validate_overrides;
use switchboard_store::DbHandle;
use switchboard_store::entity::{connection, link};
use switchboard_store::records;
use switchboard_store::{StagedSecrets, WriteTxn, links};

use crate::audit::{self, AuditRecord};
use crate::connections::{
    WRITE_ATTEMPTS, contended, deployment_ref, find_connection, require_deployments,
    validate_link_merge,
};
use crate::error::{ControlError, ControlResult};
use crate::idempotency;
use crate::page_token;
use crate::service::{ControlService, Page, PageRequest, check_etag, required};

const KIND_LINK: &str = "link";

/// A link as a create describes it.
#[derive(Debug, Default)]
pub(crate) struct LinkFields {
    /// The deployment's resource name or id.
    pub deployment: String,
    pub overrides: Overrides,
}

/// A CreateLink.
#[derive(Debug)]
pub(crate) struct LinkCreate {
    pub parent: ConnectionName,
    /// `None` when the request carries no link.
    pub link: Option<LinkFields>,
    pub request_id: String,
}

/// An UpdateLink: new overrides, and which of them to set.
#[derive(Debug)]
pub(crate) struct LinkUpdate {
    pub name: LinkName,
    pub overrides: Overrides,
    pub etag: String,
    /// The update mask's paths; empty or `*` means all the overrides.
    pub paths: Vec<String>,
    pub request_id: String,
}

/// A DeleteLink.
#[derive(Debug)]
pub(crate) struct LinkDelete {
    pub name: LinkName,
    pub etag: String,
    pub request_id: String,
}

/// A link with its connection, whose type decides which overrides are secret.
#[derive(Debug)]
pub(crate) struct LinkOf {
    pub connection: connection::Model,
    pub link: link::Model,
}

/// One page of a connection's links, with the connection.
#[derive(Debug)]
pub(crate) struct LinkPage {
    pub connection: connection::Model,
    pub links: Page<link::Model>,
}

fn link_name(conn: &connection::Model, deployment: &str) -> LinkName {
    LinkName {
        workspace: conn.workspace.clone(),
        conn_id: conn.conn_id.clone(),
        deployment: deployment.to_owned(),
    }
}

/// Paths of the overrides that are set, for audit events.
fn override_fields(overrides: &Overrides) -> Vec<String> {
    let mut fields: Vec<String> = [
        ("host", overrides.host.is_some()),
        ("schema", overrides.schema.is_some()),
        ("login", overrides.login.is_some()),
        ("password", overrides.password.is_some()),
        ("port", overrides.port.is_some()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(path, _)| format!("overrides.{path}"))
    .collect();
    fields.extend(
        overrides
            .extra
            .keys()
            .map(|key| format!("overrides.extra.{key}")),
    );
    fields
}

/// The connection a link belongs to.
fn connection_of(name: &LinkName) -> ConnectionName {
    ConnectionName {
        workspace: name.workspace.clone(),
        conn_id: name.conn_id.clone(),
    }
}

async fn find_link<C: DbHandle>(
    db_conn: &C,
    conn: &connection::Model,
    deployment: &str,
) -> ControlResult<link::Model> {
    links::find(db_conn, conn.id, deployment)
        .await?
        .ok_or_else(|| ControlError::LinkNotFound {
            name: link_name(conn, deployment),
        })
}

/// A new link's secret overrides, staged before the write lock.
pub(crate) struct StagedLink {
    /// The row id reserved for the link when its secrets went to Vault
    /// (the Vault entry is named after it).
    pub id: Option<i64>,
    pub secrets: StagedSecrets,
}

/// A link to insert.
pub(crate) struct NewLink<'a> {
    pub deployment: &'a str,
    pub overrides: &'a Overrides,
    pub staged: StagedLink,
}

/// Stages the secret overrides of a new link on a connection of `type_key`:
/// with Vault, under a reserved row id of at least `min_id` (so the links of
/// one create get distinct ids on SQLite too), written now; a link without
/// secret overrides touches no secret store.
pub(crate) async fn stage_new_link(
    control: &ControlService,
    workspace: &str,
    type_key: &str,
    overrides: &Overrides,
    min_id: i64,
) -> ControlResult<StagedLink> {
    let (_, secrets) = overrides.split_secrets(type_key);
    let store = control.store.secrets();
    if !store.is_remote() {
        // Embedded: encrypted inside the transaction, under the row's own id.
        return Ok(StagedLink {
            id: None,
            secrets: StagedSecrets::Pending(secrets),
        });
    }
    if secrets.is_empty() {
        return Ok(StagedLink {
            id: None,
            secrets: StagedSecrets::Written(None),
        });
    }
    let id = control.store.reserve_id("link").await?.max(min_id);
    let secrets = store
        .stage(workspace, &records::link_owner(id), secrets)
        .await?;
    Ok(StagedLink {
        id: Some(id),
        secrets,
    })
}

/// Whether the row ids reserved for a new connection and its links are still
/// free, under the write lock; if not the write starts over.
pub(crate) async fn claim_ids(
    write: &WriteTxn,
    connection_id: Option<i64>,
    links: &[StagedLink],
) -> ControlResult<bool> {
    if let Some(id) = connection_id
        && !write.claim_id("connection", id).await?
    {
        return Ok(false);
    }
    for link in links {
        if let Some(id) = link.id
            && !write.claim_id("link", id).await?
        {
            return Ok(false);
        }
    }
    Ok(true)
}

/// Stores `overrides` on `row` (public part in the row, secret part as
/// `secrets`, staged from `overrides`) inside `write`.
async fn store_overrides(
    control: &ControlService,
    write: &WriteTxn,
    row: &link::Model,
    type_key: &str,
    overrides: &Overrides,
    secrets: StagedSecrets,
) -> ControlResult<link::Model> {
    let store = control.store.secrets();
    let now = control.now();
    Ok(links::set_overrides(&write.txn, store, row, type_key, overrides, secrets, now).await?)
}

/// Inserts a link (validated by the caller) inside `write`.
pub(crate) async fn insert_link(
    control: &ControlService,
    write: &WriteTxn,
    conn: &connection::Model,
    link: NewLink<'_>,
    principal: &Principal,
    request_id: &str,
) -> ControlResult<link::Model> {
    let now = control.now();
    let NewLink {
        deployment,
        overrides,
        staged,
    } = link;
    let row = links::insert(
        &write.txn,
        staged.id,
        &conn.workspace,
        conn.id,
        deployment,
        now,
    )
    .await?;
    let saved = store_overrides(
        control,
        write,
        &row,
        &conn.type_key,
        overrides,
        staged.secrets,
    )
    .await?;
    audit::record(
        write,
        AuditRecord {
            workspace: &conn.workspace,
            actor: principal.actor(),
            action: "CreateLink",
            resource: link_name(conn, deployment).to_string(),
            request_id,
            changed_fields: override_fields(overrides),
        },
        Some(KIND_LINK),
        now,
    )
    .await?;
    Ok(saved)
}

/// Deletes a link and its secrets inside `write`.
pub(crate) async fn delete_link_row(
    control: &ControlService,
    write: &WriteTxn,
    conn: &connection::Model,
    row: &link::Model,
    principal: &Principal,
    request_id: &str,
) -> ControlResult<()> {
    let now = control.now();
    links::delete(&write.txn, control.store.secrets(), row).await?;
    audit::record(
        write,
        AuditRecord {
            workspace: &conn.workspace,
            actor: principal.actor(),
            action: "DeleteLink",
            resource: link_name(conn, &row.deployment_id).to_string(),
            request_id,
            changed_fields: Vec::new(),
        },
        Some(KIND_LINK),
        now,
    )
    .await
}

impl ControlService {
    /// Links a connection to a deployment, or returns the link an earlier
    /// call with the same request_id made.
    pub(crate) async fn create_link(
        &self,
        principal: &Principal,
        create: LinkCreate,
    ) -> ControlResult<LinkOf> {
        let LinkCreate {
            parent,
            link,
            request_id,
        } = create;
        self.authorize(principal, &parent.workspace, Action::WriteConnection)
            .await?;
        idempotency::validate(&request_id)?;
        let link = required("link", link)?;
        let deployment = deployment_ref("link.deployment", &parent.workspace, &link.deployment)
            .map_err(|violation| ControlError::InvalidArgument(vec![violation]))?;
        let overrides = link.overrides;
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // Which overrides are secret depends on the connection's type, so
            // with Vault it is read first; the secrets go to Vault before the
            // write lock.
            let (type_read, staged) = if remote {
                let conn = find_connection(self.store.db(), &parent).await?;
                let staged =
                    stage_new_link(self, &parent.workspace, &conn.type_key, &overrides, 0).await?;
                (Some(conn.type_key), staged)
            } else {
                let staged = StagedLink {
                    id: None,
                    secrets: StagedSecrets::Written(None),
                };
                (None, staged)
            };
            let write = self.store.begin_write().await?;
            // Checked under the write lock, so concurrent retries with one
            // request_id return the first result rather than a conflict.
            if let Some(resource) =
                idempotency::previous(&write.txn, &parent.workspace, "CreateLink", &request_id)
                    .await?
            {
                let name = LinkName::parse("name", &resource)?;
                let conn = find_connection(&write.txn, &connection_of(&name)).await?;
                let link = find_link(&write.txn, &conn, &name.deployment).await?;
                return Ok(LinkOf {
                    connection: conn,
                    link,
                });
            }
            let conn = find_connection(&write.txn, &parent).await?;
            if type_read
                .as_ref()
                .is_some_and(|type_key| *type_key != conn.type_key)
            {
                continue;
            }
            let staged = match type_read {
                Some(_) => staged,
                None => {
                    stage_new_link(self, &parent.workspace, &conn.type_key, &overrides, 0).await?
                }
            };
            require_deployments(&write.txn, &parent.workspace, [&deployment]).await?;
            let mut violations = match validate_overrides(&conn.type_key, &overrides) {
                Err(found) => found
                    .into_iter()
                    .map(|violation| violation.scope("link.overrides"))
                    .collect(),
                Ok(()) => Vec::new(),
            };
            if violations.is_empty() {
                violations = validate_link_merge(&conn, &overrides, "link.overrides")?;
            }
            if !violations.is_empty() {
                return Err(ControlError::InvalidArgument(violations));
            }
            let existing = links::find(&write.txn, conn.id, &deployment).await?;
            if existing.is_some() {
                return Err(ControlError::AlreadyExists(format!(
                    "link {} already exists; update it instead",
                    link_name(&conn, &deployment)
                )));
            }
            if !claim_ids(&write, None, std::slice::from_ref(&staged)).await? {
                continue;
            }
            let saved = insert_link(
                self,
                &write,
                &conn,
                NewLink {
                    deployment: &deployment,
                    overrides: &overrides,
                    staged,
                },
                principal,
                &request_id,
            )
            .await?;
            idempotency::remember(
                &write.txn,
                &parent.workspace,
                "CreateLink",
                &request_id,
                &link_name(&conn, &deployment).to_string(),
                self.now(),
            )
            .await?;
            write.commit().await?;
            return Ok(LinkOf {
                connection: conn,
                link: saved,
            });
        }
        Err(contended("connection"))
    }

    /// A link.
    pub(crate) async fn get_link(
        &self,
        principal: &Principal,
        name: &LinkName,
    ) -> ControlResult<LinkOf> {
        self.authorize(principal, &name.workspace, Action::Read)
            .await?;
        let conn = find_connection(self.store.db(), &connection_of(name)).await?;
        let link = find_link(self.store.db(), &conn, &name.deployment).await?;
        Ok(LinkOf {
            connection: conn,
            link,
        })
    }

    /// One page of a connection's links.
    pub(crate) async fn list_links(
        &self,
        principal: &Principal,
        parent: &ConnectionName,
        page: PageRequest,
    ) -> ControlResult<LinkPage> {
        self.authorize(principal, &parent.workspace, Action::Read)
            .await?;
        let page_size = page_token::page_size(page.size)?;
        let conn = find_connection(self.store.db(), parent).await?;
        let fingerprint = format!("links|{}|{}", parent.workspace, conn.id);
        let after = page_token::decode(&self.page_key, &fingerprint, &page.token)?;
        let mut rows =
            links::page(self.store.db(), conn.id, after.as_deref(), page_size + 1).await?;
        let next_page_token =
            page_token::next_page(&self.page_key, &fingerprint, &mut rows, page_size, |row| {
                row.deployment_id.clone()
            });
        Ok(LinkPage {
            connection: conn,
            links: Page {
                items: rows,
                next_page_token,
            },
        })
    }

    /// Changes the overrides `update` names.
    pub(crate) async fn update_link(
        &self,
        principal: &Principal,
        update: LinkUpdate,
    ) -> ControlResult<LinkOf> {
        self.authorize(principal, &update.name.workspace, Action::WriteConnection)
            .await?;
        let name = &update.name;
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // With Vault the link's secrets are read and the new ones written
            // before the write lock, and again if the rows changed meanwhile.
            let (write, plan) = if remote {
                let plan = self.plan_link_update(self.store.db(), &update).await?;
                let write = self.store.begin_write().await?;
                let conn = switchboard_store::connections::by_id(&write.txn, plan.conn.id).await?;
                let row = links::by_id(&write.txn, plan.row.id).await?;
                if conn.as_ref() != Some(&plan.conn) || row.as_ref() != Some(&plan.row) {
                    continue;
                }
                (write, plan)
            } else {
                let write = self.store.begin_write().await?;
                let plan = self.plan_link_update(&write.txn, &update).await?;
                (write, plan)
            };
            let LinkUpdatePlan {
                conn,
                row,
                current,
                next,
                staged,
            } = plan;
            let saved = store_overrides(self, &write, &row, &conn.type_key, &next, staged).await?;
            let before: std::collections::BTreeSet<String> =
                override_fields(&current).into_iter().collect();
            let after: std::collections::BTreeSet<String> =
                override_fields(&next).into_iter().collect();
            let changed = before.union(&after).cloned().collect();
            audit::record(
                &write,
                AuditRecord {
                    workspace: &conn.workspace,
                    actor: principal.actor(),
                    action: "UpdateLink",
                    resource: name.to_string(),
                    request_id: &update.request_id,
                    changed_fields: changed,
                },
                Some(KIND_LINK),
                self.now(),
            )
            .await?;
            write.commit().await?;
            return Ok(LinkOf {
                connection: conn,
                link: saved,
            });
        }
        Err(contended("link"))
    }

    /// Reads the link through `db_conn` (its secrets included), computes and
    /// validates the update, and stages the new secrets.
    async fn plan_link_update<C: DbHandle>(
        &self,
        db_conn: &C,
        update: &LinkUpdate,
    ) -> ControlResult<LinkUpdatePlan> {
        let name = &update.name;
        let conn = find_connection(db_conn, &connection_of(name)).await?;
        let row = find_link(db_conn, &conn, &name.deployment).await?;
        check_etag(&update.etag, row.version, "link")?;
        let current = records::full_overrides(self.store.secrets(), db_conn, &row).await?;
        let next =
            crate::field_mask::apply_to_overrides(&current, &update.overrides, &update.paths)?;
        let mut violations = match validate_overrides(&conn.type_key, &next) {
            Err(found) => found
                .into_iter()
                .map(|violation| violation.scope("link.overrides"))
                .collect(),
            Ok(()) => Vec::new(),
        };
        if violations.is_empty() {
            violations = validate_link_merge(&conn, &next, "link.overrides")?;
        }
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        let (_, current_secrets) = current.split_secrets(&conn.type_key);
        let (_, next_secrets) = next.split_secrets(&conn.type_key);
        let staged = if next_secrets == current_secrets {
            StagedSecrets::Unchanged
        } else {
            self.store
                .secrets()
                .stage(&row.workspace, &records::link_owner(row.id), next_secrets)
                .await?
        };
        Ok(LinkUpdatePlan {
            conn,
            row,
            current,
            next,
            staged,
        })
    }

    /// Deletes a link and its secrets.
    pub(crate) async fn delete_link(
        &self,
        principal: &Principal,
        delete: LinkDelete,
    ) -> ControlResult<()> {
        let LinkDelete {
            name,
            etag,
            request_id,
        } = delete;
        self.authorize(principal, &name.workspace, Action::WriteConnection)
            .await?;
        let write = self.store.begin_write().await?;
        let conn = find_connection(&write.txn, &connection_of(&name)).await?;
        let row = find_link(&write.txn, &conn, &name.deployment).await?;
        check_etag(&etag, row.version, "link")?;
        delete_link_row(self, &write, &conn, &row, principal, &request_id).await?;
        write.commit().await?;
        Ok(())
    }
}

/// A link update computed from the rows as read.
struct LinkUpdatePlan {
    conn: connection::Model,
    row: link::Model,
    current: Overrides,
    next: Overrides,
    staged: StagedSecrets,
}
