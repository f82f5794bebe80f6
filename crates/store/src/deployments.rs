//! Deployments as rows: the reads shared by control and the Secret sync.

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};

use crate::entity::deployment;
use crate::error::StoreResult;

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
