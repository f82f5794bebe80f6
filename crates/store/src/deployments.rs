//! Deployments as rows: the reads and writes of control's DeploymentService
//! and the Secret sync.

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel,
    QueryFilter, QueryOrder, QuerySelect,
};

use crate::entity::{connection, deployment, deployment_token, link};
use crate::error::StoreResult;
use crate::links;
use crate::records::{self, to_json_text};
use crate::secrets::SecretStore;

/// A deployment to insert; its version starts at 1.
#[derive(Debug, Clone)]
pub struct NewDeployment {
    pub workspace: String,
    pub deployment_id: String,
    pub display_name: String,
    /// `STANDARD`, `BRANCH` or `PREVIEW`.
    pub kind: String,
    /// For BRANCH/PREVIEW: the parent's deployment id.
    pub parent_deployment: Option<String>,
    pub namespace: String,
    /// `NONE`, `TOKEN` or `ENV`.
    pub secret_delivery: String,
}

/// The fields an update may change; `None` keeps the stored value.
#[derive(Debug, Clone, Default)]
pub struct DeploymentChanges {
    pub display_name: Option<String>,
    pub namespace: Option<String>,
    pub secret_delivery: Option<String>,
}

/// Which deployments a page holds.
#[derive(Debug, Clone, Copy, Default)]
pub struct DeploymentFilter<'a> {
    /// Only this kind (`STANDARD`, `BRANCH`, `PREVIEW`).
    pub kind: Option<&'a str>,
    /// Only branch and preview deployments of this parent.
    pub parent: Option<&'a str>,
}

/// Every deployment of every workspace, by workspace and id.
pub async fn all<C: ConnectionTrait>(db: &C) -> StoreResult<Vec<deployment::Model>> {
    Ok(deployment::Entity::find()
        .order_by_asc(deployment::Column::Workspace)
        .order_by_asc(deployment::Column::DeploymentId)
        .all(db)
        .await?)
}

/// The deployments of `workspace`, by id.
pub async fn of_workspace<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
) -> StoreResult<Vec<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::Workspace.eq(workspace))
        .order_by_asc(deployment::Column::DeploymentId)
        .all(db)
        .await?)
}

/// Up to `limit` deployments of `workspace` matching `filter` with an id
/// after `after`, by id: keyset paging on the (workspace, deployment_id)
/// index, so a late page costs what the first does.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    filter: DeploymentFilter<'_>,
    after: Option<&str>,
    limit: u64,
) -> StoreResult<Vec<deployment::Model>> {
    let mut query = deployment::Entity::find()
        .filter(deployment::Column::Workspace.eq(workspace))
        .order_by_asc(deployment::Column::DeploymentId)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(deployment::Column::DeploymentId.gt(after));
    }
    if let Some(kind) = filter.kind {
        query = query.filter(deployment::Column::Kind.eq(kind));
    }
    if let Some(parent) = filter.parent {
        query = query.filter(deployment::Column::ParentDeployment.eq(parent));
    }
    Ok(query.all(db).await?)
}

/// The branch and preview deployments whose parent is `parent_id`.
pub async fn children<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    parent_id: &str,
) -> StoreResult<Vec<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::Workspace.eq(workspace))
        .filter(deployment::Column::ParentDeployment.eq(parent_id))
        .all(db)
        .await?)
}

/// Inserts `new` at `now` through `txn`.
pub async fn insert<C: ConnectionTrait>(
    txn: &C,
    new: NewDeployment,
    now: i64,
) -> StoreResult<deployment::Model> {
    Ok(deployment::ActiveModel {
        workspace: Set(new.workspace),
        deployment_id: Set(new.deployment_id),
        display_name: Set(new.display_name),
        kind: Set(new.kind),
        parent_deployment: Set(new.parent_deployment),
        namespace: Set(new.namespace),
        secret_delivery: Set(new.secret_delivery),
        version: Set(1),
        create_time: Set(now),
        update_time: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?)
}

/// Applies `changes` to `row` through `txn`, bumping its version.
pub async fn update<C: ConnectionTrait>(
    txn: &C,
    row: deployment::Model,
    changes: DeploymentChanges,
    now: i64,
) -> StoreResult<deployment::Model> {
    let version = row.version;
    let mut active = row.into_active_model();
    if let Some(display_name) = changes.display_name {
        active.display_name = Set(display_name);
    }
    if let Some(namespace) = changes.namespace {
        active.namespace = Set(namespace);
    }
    if let Some(secret_delivery) = changes.secret_delivery {
        active.secret_delivery = Set(secret_delivery);
    }
    active.version = Set(version + 1);
    active.update_time = Set(now);
    Ok(active.update(txn).await?)
}

/// Removes `row` with its links (and their secret overrides) and tokens
/// through `txn`, and drops it from exclusion lists, so a later deployment
/// of the same id starts with a clean slate.
pub async fn remove<C: ConnectionTrait>(
    txn: &C,
    secrets: &SecretStore,
    row: &deployment::Model,
) -> StoreResult<()> {
    let links = link::Entity::find()
        .filter(link::Column::Workspace.eq(&row.workspace))
        .filter(link::Column::DeploymentId.eq(&row.deployment_id))
        .all(txn)
        .await?;
    for link_row in &links {
        links::delete(txn, secrets, link_row).await?;
    }
    let excluding = connection::Entity::find()
        .filter(connection::Column::Workspace.eq(&row.workspace))
        .filter(
            connection::Column::ExcludedDeployments.contains(format!("\"{}\"", row.deployment_id)),
        )
        .all(txn)
        .await?;
    for conn in excluding {
        let mut excluded: Vec<String> =
            records::from_json_text("connection", &conn.excluded_deployments)?;
        excluded.retain(|id| id != &row.deployment_id);
        let mut active = conn.into_active_model();
        active.excluded_deployments = Set(to_json_text(&excluded));
        active.update(txn).await?;
    }
    deployment_token::Entity::delete_many()
        .filter(deployment_token::Column::Workspace.eq(&row.workspace))
        .filter(deployment_token::Column::DeploymentId.eq(&row.deployment_id))
        .exec(txn)
        .await?;
    deployment::Entity::delete_by_id(row.id).exec(txn).await?;
    Ok(())
}
