//! request_id handling for creates: a retry with the same id returns the
//! resource the first call made, never a duplicate. What each id made is
//! kept by `switchboard_store::request_log`, re-exported here as
//! [`previous`] and [`remember`].

pub(crate) use switchboard_store::request_log::{previous, remember};

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
