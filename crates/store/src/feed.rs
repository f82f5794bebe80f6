//! The change feed. Every write transaction increments the single
//! `feed_head` row first (`UPDATE … RETURNING`), so a later revision always
//! commits after an earlier one — unlike a sequence, whose values are handed
//! out at insert time and can commit out of order — and records the
//! resources it changed. Followers poll for revisions above their cursor.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect, Statement,
};

use crate::entity::{change, feed_head};
use crate::error::{StoreError, StoreResult};

/// PostgreSQL channel each write transaction notifies at commit.
pub const NOTIFY_CHANNEL: &str = "switchboard_feed";

/// Increments the feed counter inside `txn` and returns the new revision.
pub async fn bump<C: ConnectionTrait>(txn: &C) -> StoreResult<i64> {
    let row = txn
        .query_one(Statement::from_string(
            txn.get_database_backend(),
            "UPDATE feed_head SET revision = revision + 1 WHERE id = 1 RETURNING revision",
        ))
        .await?
        .ok_or_else(|| StoreError::Corrupt {
            table: "feed_head",
            reason: "counter row missing".to_owned(),
        })?;
    Ok(row.try_get::<i64>("", "revision")?)
}

/// Records one changed resource under `revision`.
pub async fn record<C: ConnectionTrait>(
    txn: &C,
    revision: i64,
    workspace: &str,
    kind: &str,
    resource: &str,
    now_micros: i64,
) -> StoreResult<()> {
    change::Entity::insert(change::ActiveModel {
        revision: Set(revision),
        workspace: Set(workspace.to_owned()),
        kind: Set(kind.to_owned()),
        resource: Set(resource.to_owned()),
        create_time: Set(now_micros),
        ..Default::default()
    })
    .exec(txn)
    .await?;
    Ok(())
}

/// The latest committed revision.
pub async fn head<C: ConnectionTrait>(db: &C) -> StoreResult<i64> {
    let head = feed_head::Entity::find_by_id(1).one(db).await?;
    Ok(head.map_or(0, |row| row.revision))
}

/// Changes with a revision above `after`, oldest first, at most `limit`.
pub async fn changes_after<C: ConnectionTrait>(
    db: &C,
    after: i64,
    limit: u64,
) -> StoreResult<Vec<change::Model>> {
    Ok(change::Entity::find()
        .filter(change::Column::Revision.gt(after))
        .order_by_asc(change::Column::Revision)
        .limit(limit)
        .all(db)
        .await?)
}

/// The revision up to which the feed was pruned (0: never). A follower whose
/// cursor is below it may have missed changes and must reload everything.
/// Read it after [`changes_after`]: pruning raises it before deleting.
pub async fn pruned_through<C: ConnectionTrait>(db: &C) -> StoreResult<i64> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT pruned_through FROM feed_horizon WHERE id = 1",
        ))
        .await?;
    Ok(match row {
        Some(row) => row.try_get::<i64>("", "pruned_through")?,
        None => 0,
    })
}
