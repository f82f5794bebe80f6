//! Idempotency of creates: the resource each (workspace, method, request id)
//! produced, so a retry answers with it instead of creating a duplicate.

use sea_orm::{ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter};

use crate::entity::request_log;
use crate::error::StoreResult;

/// The resource an earlier `method` call with `request_id` created, if any.
/// An empty request id never matches.
pub async fn previous<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    method: &str,
    request_id: &str,
) -> StoreResult<Option<String>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let row = request_log::Entity::find()
        .filter(request_log::Column::Workspace.eq(workspace))
        .filter(request_log::Column::Method.eq(method))
        .filter(request_log::Column::RequestId.eq(request_id))
        .one(db)
        .await?;
    Ok(row.map(|row| row.resource))
}

/// Remembers, inside the create's transaction, what `request_id` created.
/// An empty request id is not remembered.
pub async fn remember<C: ConnectionTrait>(
    txn: &C,
    workspace: &str,
    method: &str,
    request_id: &str,
    resource: &str,
    now: i64,
) -> StoreResult<()> {
    if request_id.is_empty() {
        return Ok(());
    }
    request_log::Entity::insert(request_log::ActiveModel {
        workspace: Set(workspace.to_owned()),
        method: Set(method.to_owned()),
        request_id: Set(request_id.to_owned()),
        resource: Set(resource.to_owned()),
        create_time: Set(now),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(())
}
