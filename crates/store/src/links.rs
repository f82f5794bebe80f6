//! Links as rows: a connection attached to one deployment, its public
//! overrides in the row and its secret overrides in the secret store under
//! [`records::link_owner`].

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use switchboard_domain::Overrides;

use crate::entity::link;
use crate::error::StoreResult;
use crate::records::{self, to_json_text};
use crate::secrets::{SecretStore, StagedSecrets};

/// The link of connection row `connection_pk` to `deployment_id`, if any.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    connection_pk: i64,
    deployment_id: &str,
) -> StoreResult<Option<link::Model>> {
    Ok(link::Entity::find()
        .filter(link::Column::ConnectionPk.eq(connection_pk))
        .filter(link::Column::DeploymentId.eq(deployment_id))
        .one(db)
        .await?)
}

/// The link with row id `id`, if any.
pub async fn by_id<C: ConnectionTrait>(db: &C, id: i64) -> StoreResult<Option<link::Model>> {
    Ok(link::Entity::find_by_id(id).one(db).await?)
}

/// Every link of connection row `connection_pk`, by row id (the order in
/// which a write compares what it read with what is there under the lock).
pub async fn of_connection<C: ConnectionTrait>(
    db: &C,
    connection_pk: i64,
) -> StoreResult<Vec<link::Model>> {
    Ok(link::Entity::find()
        .filter(link::Column::ConnectionPk.eq(connection_pk))
        .order_by_asc(link::Column::Id)
        .all(db)
        .await?)
}

/// Up to `limit` links of connection row `connection_pk` to deployments
/// after `after`, by deployment id (keyset paging).
pub async fn page<C: ConnectionTrait>(
    db: &C,
    connection_pk: i64,
    after: Option<&str>,
    limit: u64,
) -> StoreResult<Vec<link::Model>> {
    let mut query = link::Entity::find()
        .filter(link::Column::ConnectionPk.eq(connection_pk))
        .order_by_asc(link::Column::DeploymentId)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(link::Column::DeploymentId.gt(after));
    }
    Ok(query.all(db).await?)
}

/// Inserts a link without overrides (version 0) through `txn`, under row id
/// `id` when one was reserved for its secrets; [`set_overrides`] follows.
pub async fn insert<C: ConnectionTrait>(
    txn: &C,
    id: Option<i64>,
    workspace: &str,
    connection_pk: i64,
    deployment_id: &str,
    now: i64,
) -> StoreResult<link::Model> {
    Ok(link::ActiveModel {
        id: id.map_or(NotSet, Set),
        workspace: Set(workspace.to_owned()),
        connection_pk: Set(connection_pk),
        deployment_id: Set(deployment_id.to_owned()),
        overrides: Set("{}".to_owned()),
        secret_fields: Set("[]".to_owned()),
        version: Set(0),
        create_time: Set(now),
        update_time: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?)
}

/// Stores `overrides` on `row` through `txn`: the public part in the row,
/// the secret part as `staged` (staged from `overrides`) in `secrets`, and
/// bumps the row's version.
pub async fn set_overrides<C: ConnectionTrait>(
    txn: &C,
    secrets: &SecretStore,
    row: &link::Model,
    type_key: &str,
    overrides: &Overrides,
    staged: StagedSecrets,
    now: i64,
) -> StoreResult<link::Model> {
    let (public, _) = overrides.split_secrets(type_key);
    let secret_version = secrets
        .record(
            txn,
            &row.workspace,
            &records::link_owner(row.id),
            staged,
            row.secret_version,
            now,
        )
        .await?;
    let mut active = row.clone().into_active_model();
    active.secret_version = Set(secret_version);
    active.overrides = Set(to_json_text(&public));
    active.secret_fields = Set(to_json_text(&overrides.secret_fields_set(type_key)));
    active.version = Set(row.version + 1);
    active.update_time = Set(now);
    Ok(active.update(txn).await?)
}

/// Deletes `row` and its secret overrides through `txn`.
pub async fn delete<C: ConnectionTrait>(
    txn: &C,
    secrets: &SecretStore,
    row: &link::Model,
) -> StoreResult<()> {
    link::Entity::delete_by_id(row.id).exec(txn).await?;
    secrets
        .delete_owner(txn, &row.workspace, &records::link_owner(row.id))
        .await
}
