//! What a deployment sees: connections linked to it directly, linked to all
//! deployments (less exclusions), and — for BRANCH and PREVIEW deployments —
//! everything their STANDARD parent sees, with the parent's link overrides
//! applied before their own.

use std::collections::HashMap;

use sea_orm::{ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
use switchboard_domain::connection::{EffectiveConnection, merge};

use crate::entity::{connection, deployment, link};
use crate::error::StoreResult;
use crate::records;
use crate::secrets::SecretStore;

/// A connection a deployment sees, and the links whose overrides apply, in order.
#[derive(Debug, Clone)]
pub struct Visible {
    pub connection: connection::Model,
    pub layers: Vec<link::Model>,
}

/// Finds a deployment by workspace and id.
pub async fn find_deployment<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    deployment_id: &str,
) -> StoreResult<Option<deployment::Model>> {
    Ok(deployment::Entity::find()
        .filter(deployment::Column::Workspace.eq(workspace))
        .filter(deployment::Column::DeploymentId.eq(deployment_id))
        .one(db)
        .await?)
}

fn sees_through_link_to_all(row: &connection::Model, viewpoint: &str) -> StoreResult<bool> {
    if !row.link_to_all {
        return Ok(false);
    }
    let excluded: Vec<String> = records::from_json_text("connection", &row.excluded_deployments)?;
    Ok(!excluded.iter().any(|id| id == viewpoint))
}

/// The connections `deployment` sees, ordered by conn_id.
pub async fn visible_connections<C: ConnectionTrait>(
    db: &C,
    deployment: &deployment::Model,
) -> StoreResult<Vec<Visible>> {
    // A branch or preview sees what its parent sees; its own links add overrides.
    let parent = deployment.parent_deployment.as_deref();
    let viewpoint = parent.unwrap_or(&deployment.deployment_id);
    let mut deployment_ids = vec![deployment.deployment_id.clone()];
    deployment_ids.extend(parent.map(str::to_owned));
    let links = link::Entity::find()
        .filter(link::Column::Workspace.eq(&deployment.workspace))
        .filter(link::Column::DeploymentId.is_in(deployment_ids))
        .all(db)
        .await?;
    let mut parent_links: HashMap<i64, link::Model> = HashMap::new();
    let mut own_links: HashMap<i64, link::Model> = HashMap::new();
    for row in links {
        if row.deployment_id == deployment.deployment_id {
            own_links.insert(row.connection_pk, row);
        } else {
            parent_links.insert(row.connection_pk, row);
        }
    }
    let connections = connection::Entity::find()
        .filter(connection::Column::Workspace.eq(&deployment.workspace))
        .order_by_asc(connection::Column::ConnIdFolded)
        .all(db)
        .await?;
    let mut visible = Vec::new();
    for row in connections {
        let parent_link = parent_links.remove(&row.id);
        let own_link = own_links.remove(&row.id);
        let seen = own_link.is_some()
            || parent_link.is_some()
            || sees_through_link_to_all(&row, viewpoint)?;
        if seen {
            visible.push(Visible {
                connection: row,
                layers: parent_link.into_iter().chain(own_link).collect(),
            });
        }
    }
    Ok(visible)
}

/// Merges a visible connection with its layers, secrets included.
pub async fn effective<C: ConnectionTrait>(
    secrets: &SecretStore,
    db: &C,
    visible: &Visible,
) -> StoreResult<EffectiveConnection> {
    let base = records::full_spec(secrets, db, &visible.connection).await?;
    let mut layers = Vec::with_capacity(visible.layers.len());
    for layer in &visible.layers {
        layers.push(records::full_overrides(secrets, db, layer).await?);
    }
    let layer_refs: Vec<_> = layers.iter().collect();
    let merged = merge(&base, &layer_refs);
    Ok(EffectiveConnection::from_spec(
        &visible.connection.conn_id,
        merged,
    ))
}
