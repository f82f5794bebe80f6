//! Workspace policy reads.

use sea_orm::{ConnectionTrait, EntityTrait};
use switchboard_domain::permission::PolicyFlags;

use crate::entity::policy;
use crate::error::StoreResult;

/// The policy switches of `workspace`; all off when never set.
pub async fn flags<C: ConnectionTrait>(db: &C, workspace: &str) -> StoreResult<PolicyFlags> {
    let row = policy::Entity::find_by_id(workspace.to_owned())
        .one(db)
        .await?;
    Ok(row.map_or_else(PolicyFlags::default, |row| PolicyFlags {
        allow_secret_reveal: row.allow_secret_reveal,
        allow_local_export: row.allow_local_export,
    }))
}
