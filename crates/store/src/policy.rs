//! Workspace policy: one row per workspace that ever changed it.

use sea_orm::{ActiveValue::Set, ConnectionTrait, EntityTrait, sea_query::OnConflict};
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

/// The stored policy of `workspace`; `None` when never set (all off).
pub async fn get<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
) -> StoreResult<Option<policy::Model>> {
    Ok(policy::Entity::find_by_id(workspace.to_owned())
        .one(db)
        .await?)
}

/// Stores `row` as its workspace's policy through `txn`, replacing any.
pub async fn put<C: ConnectionTrait>(txn: &C, row: &policy::Model) -> StoreResult<()> {
    policy::Entity::insert(policy::ActiveModel {
        workspace: Set(row.workspace.clone()),
        allow_secret_reveal: Set(row.allow_secret_reveal),
        allow_local_export: Set(row.allow_local_export),
        version: Set(row.version),
        update_time: Set(row.update_time),
    })
    .on_conflict(
        OnConflict::column(policy::Column::Workspace)
            .update_columns([
                policy::Column::AllowSecretReveal,
                policy::Column::AllowLocalExport,
                policy::Column::Version,
                policy::Column::UpdateTime,
            ])
            .to_owned(),
    )
    .exec(txn)
    .await?;
    Ok(())
}
