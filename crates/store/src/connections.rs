//! Connections as rows: the public fields in the row, the secrets in the
//! secret store under [`records::connection_owner`], and one
//! `connection_version` row per saved state.

use sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use switchboard_domain::{ConnectionSpec, conn_id};

use crate::entity::{connection, connection_version};
use crate::error::StoreResult;
use crate::records::{self, to_json_text};
use crate::secrets::{SecretStore, StagedSecrets};

/// The connection of `workspace` whose conn_id is `conn_id` ignoring case.
pub async fn find<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    conn_id: &str,
) -> StoreResult<Option<connection::Model>> {
    Ok(connection::Entity::find()
        .filter(connection::Column::Workspace.eq(workspace))
        .filter(connection::Column::ConnIdFolded.eq(conn_id::fold(conn_id)))
        .one(db)
        .await?)
}

/// The connection with row id `id`, if any.
pub async fn by_id<C: ConnectionTrait>(db: &C, id: i64) -> StoreResult<Option<connection::Model>> {
    Ok(connection::Entity::find_by_id(id).one(db).await?)
}

/// Up to `limit` connections of `workspace` (of `type_key` when given)
/// whose folded conn_id sorts after `after`: keyset paging on the
/// (workspace, conn_id_folded) index, so a page costs the same wherever it
/// starts.
pub async fn page<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    type_key: Option<&str>,
    after: Option<&str>,
    limit: u64,
) -> StoreResult<Vec<connection::Model>> {
    let mut query = connection::Entity::find()
        .filter(connection::Column::Workspace.eq(workspace))
        .order_by_asc(connection::Column::ConnIdFolded)
        .limit(limit);
    if let Some(after) = after {
        query = query.filter(connection::Column::ConnIdFolded.gt(after));
    }
    if let Some(type_key) = type_key {
        query = query.filter(connection::Column::TypeKey.eq(type_key));
    }
    Ok(query.all(db).await?)
}

/// Inserts an empty connection (version 0) through `txn`, under row id `id`
/// when one was reserved for its secrets; [`save`] gives it its state.
pub async fn insert<C: ConnectionTrait>(
    txn: &C,
    id: Option<i64>,
    workspace: &str,
    conn_id: &str,
    spec: &ConnectionSpec,
    now: i64,
) -> StoreResult<connection::Model> {
    Ok(connection::ActiveModel {
        id: id.map_or(NotSet, Set),
        workspace: Set(workspace.to_owned()),
        conn_id: Set(conn_id.to_owned()),
        conn_id_folded: Set(conn_id::fold(conn_id)),
        type_key: Set(spec.type_key.clone()),
        conn_type: Set(spec.conn_type.clone()),
        extra: Set("{}".to_owned()),
        link_to_all: Set(false),
        excluded_deployments: Set("[]".to_owned()),
        secret_fields: Set("[]".to_owned()),
        version: Set(0),
        create_time: Set(now),
        update_time: Set(now),
        ..Default::default()
    }
    .insert(txn)
    .await?)
}

/// What a save records in the connection's version history.
#[derive(Debug)]
pub struct VersionNote<'a> {
    /// Who saved (`user:…`).
    pub actor: String,
    /// The RPC that saved, e.g. `UpdateConnection`.
    pub action: &'a str,
    /// The fields that changed (names only).
    pub changed: &'a [String],
}

/// Stores `spec`, `link_to_all` and `excluded` as the new state of `row`
/// through `txn`, bumping its version, with `staged` (staged from `spec`) as
/// its secrets, and records the state in its version history.
#[allow(clippy::too_many_arguments)]
pub async fn save<C: ConnectionTrait>(
    txn: &C,
    secrets: &SecretStore,
    row: connection::Model,
    spec: &ConnectionSpec,
    link_to_all: bool,
    excluded: &[String],
    staged: StagedSecrets,
    note: VersionNote<'_>,
    now: i64,
) -> StoreResult<connection::Model> {
    let (public, _) = spec.split_secrets();
    let secret_version = secrets
        .record(
            txn,
            &row.workspace,
            &records::connection_owner(row.id),
            staged,
            row.secret_version,
            now,
        )
        .await?;
    let is_new = row.version == 0;
    let version = row.version;
    let mut active = row.into_active_model();
    active.type_key = Set(public.type_key.clone());
    active.conn_type = Set(public.conn_type.clone());
    active.description = Set(public.description.clone());
    active.host = Set(public.host.clone());
    active.schema = Set(public.schema.clone());
    active.login = Set(public.login.clone());
    active.port = Set(public.port);
    active.extra = Set(to_json_text(&public.extra));
    active.link_to_all = Set(link_to_all);
    active.excluded_deployments = Set(to_json_text(&excluded));
    active.secret_version = Set(secret_version);
    active.secret_fields = Set(to_json_text(&spec.secret_fields_set()));
    active.version = Set(version + 1);
    active.update_time = Set(now);
    if is_new {
        active.create_time = Set(now);
    }
    let saved = active.update(txn).await?;
    let snapshot = records::snapshot_from_row(&saved)?;
    connection_version::Entity::insert(connection_version::ActiveModel {
        connection_pk: Set(saved.id),
        version: Set(saved.version),
        snapshot: Set(to_json_text(&snapshot)),
        secret_version: Set(saved.secret_version),
        actor: Set(note.actor),
        action: Set(note.action.to_owned()),
        changed_fields: Set(to_json_text(&note.changed)),
        create_time: Set(now),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(saved)
}

/// Deletes `row`'s version history, the row and its secrets through `txn`.
/// Its links go first, through [`crate::links::delete`].
pub async fn delete<C: ConnectionTrait>(
    txn: &C,
    secrets: &SecretStore,
    row: &connection::Model,
) -> StoreResult<()> {
    connection_version::Entity::delete_many()
        .filter(connection_version::Column::ConnectionPk.eq(row.id))
        .exec(txn)
        .await?;
    connection::Entity::delete_by_id(row.id).exec(txn).await?;
    secrets
        .delete_owner(txn, &row.workspace, &records::connection_owner(row.id))
        .await
}

/// Up to `limit` saved states of connection row `connection_pk`, newest
/// first, older than version `before` when given.
pub async fn versions<C: ConnectionTrait>(
    db: &C,
    connection_pk: i64,
    before: Option<i64>,
    limit: u64,
) -> StoreResult<Vec<connection_version::Model>> {
    let mut query = connection_version::Entity::find()
        .filter(connection_version::Column::ConnectionPk.eq(connection_pk))
        .order_by_desc(connection_version::Column::Version)
        .limit(limit);
    if let Some(before) = before {
        query = query.filter(connection_version::Column::Version.lt(before));
    }
    Ok(query.all(db).await?)
}

/// Saved state `version` of connection row `connection_pk`, if kept.
pub async fn version<C: ConnectionTrait>(
    db: &C,
    connection_pk: i64,
    version: i64,
) -> StoreResult<Option<connection_version::Model>> {
    Ok(connection_version::Entity::find()
        .filter(connection_version::Column::ConnectionPk.eq(connection_pk))
        .filter(connection_version::Column::Version.eq(version))
        .one(db)
        .await?)
}
