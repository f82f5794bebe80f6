//! What a deployment sees: connections linked to it directly, linked to all
//! deployments (less exclusions), and — for BRANCH and PREVIEW deployments —
//! everything their STANDARD parent sees, with the parent's link overrides
//! applied before their own.

use std::collections::HashMap;

use futures_util::{
    StreamExt, TryStreamExt,
    future::{try_join, try_join_all},
    stream,
};
use sea_orm::{ColumnTrait, Condition, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder};
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

/// Secret-store reads in flight at once while a deployment's view loads:
/// with Vault each is a network round trip, so a view of many connections
/// would otherwise take their sum.
const CONCURRENT_SECRET_READS: usize = 16;

/// The connections `deployment` sees, ordered by conn_id; with `only` (a
/// case-folded conn_id), just that one if seen.
pub async fn visible_connections<C: ConnectionTrait>(
    db: &C,
    deployment: &deployment::Model,
    only: Option<&str>,
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
    // Only rows that can be seen: linked here or to the parent, or linked to all.
    let linked: Vec<i64> = own_links
        .keys()
        .chain(parent_links.keys())
        .copied()
        .collect();
    let mut query = connection::Entity::find()
        .filter(connection::Column::Workspace.eq(&deployment.workspace))
        .filter(
            Condition::any()
                .add(connection::Column::Id.is_in(linked))
                .add(connection::Column::LinkToAll.eq(true)),
        );
    if let Some(folded) = only {
        query = query.filter(connection::Column::ConnIdFolded.eq(folded));
    }
    let connections = query
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
    let (base, layers) = try_join(
        records::full_spec(secrets, db, &visible.connection),
        try_join_all(
            visible
                .layers
                .iter()
                .map(|layer| records::full_overrides(secrets, db, layer)),
        ),
    )
    .await?;
    let layer_refs: Vec<_> = layers.iter().collect();
    let merged = merge(&base, &layer_refs);
    Ok(EffectiveConnection::from_spec(
        &visible.connection.conn_id,
        merged,
    ))
}

/// [`effective`] for each of `visible`, in order, reading secrets concurrently.
pub async fn effective_all<C: ConnectionTrait>(
    secrets: &SecretStore,
    db: &C,
    visible: &[Visible],
) -> StoreResult<Vec<EffectiveConnection>> {
    // Futures made in a loop, not by a closure: a closure here makes the
    // result's Send-ness unprovable for callers (rust-lang/rust#102211).
    let mut reads = Vec::with_capacity(visible.len());
    for visible in visible {
        reads.push(effective(secrets, db, visible));
    }
    stream::iter(reads)
        .buffered(CONCURRENT_SECRET_READS)
        .try_collect()
        .await
}
