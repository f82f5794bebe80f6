//! Retention: the change feed, the request log (request_id records) and the
//! audit table are pruned by age, so they do not grow forever.
//!
//! The feed is pruned as a prefix: the highest revision whose rows are all
//! older than the cutoff becomes the feed's horizon ([`feed::pruned_through`]),
//! raised in its own transaction *before* any row goes, so a follower that
//! reads the changes and then the horizon either sees the rows or learns
//! that it must reload everything.

use std::time::Duration;

use sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};

use crate::error::StoreResult;
use crate::feed;

/// Rows deleted per statement, so one pruning never holds a long lock.
const BATCH: u64 = 5_000;

/// How long each table keeps its rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    /// Change feed rows; a follower further behind than this reloads everything.
    pub feed: Duration,
    /// request_id records; a retry later than this is a new request.
    pub request_log: Duration,
    /// Audit events.
    pub audit: Duration,
}

impl Default for Retention {
    fn default() -> Self {
        const DAY: u64 = 86_400;
        Self {
            feed: Duration::from_secs(7 * DAY),
            request_log: Duration::from_secs(7 * DAY),
            audit: Duration::from_secs(400 * DAY),
        }
    }
}

/// What one pruning removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PruneReport {
    pub changes: u64,
    pub request_log: u64,
    pub audit_events: u64,
    /// The feed's horizon afterwards.
    pub feed_horizon: i64,
}

/// Deletes what is older than `retention` at `now_micros`.
pub async fn prune<C>(db: &C, now_micros: i64, retention: &Retention) -> StoreResult<PruneReport>
where
    C: ConnectionTrait + TransactionTrait,
{
    let cutoff = |keep: Duration| {
        now_micros.saturating_sub(i64::try_from(keep.as_micros()).unwrap_or(i64::MAX))
    };
    let feed_horizon = raise_feed_horizon(db, cutoff(retention.feed)).await?;
    let changes = delete_batched(
        db,
        "DELETE FROM change WHERE id IN (SELECT id FROM change WHERE revision <= $1 LIMIT $2)",
        feed_horizon,
    )
    .await?;
    let request_log = delete_batched(
        db,
        "DELETE FROM request_log WHERE id IN \
         (SELECT id FROM request_log WHERE create_time < $1 LIMIT $2)",
        cutoff(retention.request_log),
    )
    .await?;
    let audit_events = delete_batched(
        db,
        "DELETE FROM audit_event WHERE id IN \
         (SELECT id FROM audit_event WHERE create_time < $1 LIMIT $2)",
        cutoff(retention.audit),
    )
    .await?;
    Ok(PruneReport {
        changes,
        request_log,
        audit_events,
        feed_horizon,
    })
}

/// Raises the horizon to the highest revision recorded before `cutoff`
/// (never lowers it) and returns it. Every revision up to it has committed:
/// revisions are handed out in commit order and it names a committed row.
async fn raise_feed_horizon<C>(db: &C, cutoff: i64) -> StoreResult<i64>
where
    C: ConnectionTrait + TransactionTrait,
{
    let backend = db.get_database_backend();
    let txn = db.begin().await?;
    let newest_expired = txn
        .query_one(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "SELECT MAX(revision) AS revision FROM change WHERE create_time < $1",
            ),
            [cutoff.into()],
        ))
        .await?
        .and_then(|row| row.try_get::<Option<i64>>("", "revision").ok().flatten());
    if let Some(revision) = newest_expired {
        txn.execute(Statement::from_sql_and_values(
            backend,
            sql(
                backend,
                "UPDATE feed_horizon SET pruned_through = $1 WHERE id = 1 AND pruned_through < $1",
            ),
            [revision.into()],
        ))
        .await?;
    }
    txn.commit().await?;
    feed::pruned_through(db).await
}

async fn delete_batched<C: ConnectionTrait>(
    db: &C,
    statement: &str,
    bound: i64,
) -> StoreResult<u64> {
    let backend = db.get_database_backend();
    let statement = sql(backend, statement);
    let mut deleted = 0;
    loop {
        let result = db
            .execute(Statement::from_sql_and_values(
                backend,
                statement.clone(),
                [bound.into(), (BATCH as i64).into()],
            ))
            .await?;
        deleted += result.rows_affected();
        if result.rows_affected() < BATCH {
            return Ok(deleted);
        }
    }
}

/// `$n` placeholders as the backend wants them (SQLite takes `?n`).
fn sql(backend: DbBackend, text: &str) -> String {
    match backend {
        DbBackend::Postgres => text.to_owned(),
        _ => text.replace('$', "?"),
    }
}
