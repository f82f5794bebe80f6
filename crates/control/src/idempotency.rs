//! request_id handling for creates: a retry with the same id returns the
//! resource the first call made, never a duplicate.

use switchboard_store::StoreError;
use switchboard_store::entity::request_log;
use switchboard_store::sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter,
};

use crate::error::{ControlError, ControlResult};

const MAX_REQUEST_ID: usize = 128;

/// Checks a request id's shape: at most 128 printable ASCII characters.
pub(crate) fn validate(request_id: &str) -> ControlResult<()> {
    let printable = request_id.bytes().all(|byte| byte.is_ascii_graphic());
    if request_id.len() > MAX_REQUEST_ID || !printable {
        return Err(ControlError::invalid(
            "request_id",
            format!("must be at most {MAX_REQUEST_ID} printable ASCII characters, e.g. a UUID"),
        ));
    }
    Ok(())
}

/// The resource an earlier call with this request id created, if any.
pub(crate) async fn previous<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    method: &str,
    request_id: &str,
) -> ControlResult<Option<String>> {
    if request_id.is_empty() {
        return Ok(None);
    }
    let row = request_log::Entity::find()
        .filter(request_log::Column::Workspace.eq(workspace))
        .filter(request_log::Column::Method.eq(method))
        .filter(request_log::Column::RequestId.eq(request_id))
        .one(db)
        .await
        .map_err(StoreError::from)?;
    Ok(row.map(|row| row.resource))
}

/// Remembers, inside the create's transaction, what this request id created.
pub(crate) async fn remember<C: ConnectionTrait>(
    txn: &C,
    workspace: &str,
    method: &str,
    request_id: &str,
    resource: &str,
    now: i64,
) -> ControlResult<()> {
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
    .await
    .map_err(StoreError::from)?;
    Ok(())
}
