//! request_id handling for creates: a retry with the same id returns the
//! resource the first call made, never a duplicate.

use switchboard_store::DbHandle;
use switchboard_store::request_log;

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
pub(crate) async fn previous<C: DbHandle>(
    db: &C,
    workspace: &str,
    method: &str,
    request_id: &str,
) -> ControlResult<Option<String>> {
    Ok(request_log::previous(db, workspace, method, request_id).await?)
}

/// Remembers, inside the create's transaction, what this request id created.
pub(crate) async fn remember<C: DbHandle>(
    txn: &C,
    workspace: &str,
    method: &str,
    request_id: &str,
    resource: &str,
    now: i64,
) -> ControlResult<()> {
    Ok(request_log::remember(txn, workspace, method, request_id, resource, now).await?)
}
