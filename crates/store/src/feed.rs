//! The change feed. Every write transaction increments the single
//! `feed_head` row first (`UPDATE … RETURNING`), so a later revision always
//! commits after an earlier one — unlike a sequence, whose values are handed
//! out at insert time and can commit out of order — and records the
//! resources it changed. Followers poll for revisions above their cursor.

use sea_orm::sqlx::{self, PgConnection, SqliteConnection};
use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, DatabaseConnection, DbErr, EntityTrait,
    QueryFilter, QueryOrder, QuerySelect, RuntimeErr, Statement,
};
use tokio::sync::Mutex;

use crate::entity::change;
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

/// The latest committed revision: every revision up to it has committed.
/// One read of the counter row by its key; the resolver reads it before
/// answering each call (read your writes), so it is a plain statement,
/// without the query builder's work.
pub async fn head<C: ConnectionTrait>(db: &C) -> StoreResult<i64> {
    let row = db
        .query_one(Statement::from_string(
            db.get_database_backend(),
            "SELECT revision FROM feed_head WHERE id = 1",
        ))
        .await?;
    match row {
        Some(row) => Ok(row.try_get::<i64>("", "revision")?),
        None => Ok(0),
    }
}

/// The statement that reads the head.
const HEAD_SQL: &str = "SELECT revision FROM feed_head WHERE id = 1";

/// Reads the head again and again on a connection of its own, kept between
/// reads. For a caller that reads the head before every answer (the
/// resolver, to read its writers' writes), taking a pooled connection each
/// time, which sqlx first tests with a round trip of its own, costs about as
/// much as the read. Reads run one at a time. A connection whose read failed
/// is dropped; the next read opens another.
#[derive(Debug)]
pub struct HeadReader {
    db: DatabaseConnection,
    held: Mutex<Option<HeldConnection>>,
}

#[derive(Debug)]
enum HeldConnection {
    Sqlite(SqliteConnection),
    Postgres(PgConnection),
}

impl HeadReader {
    /// A reader over `db`'s pool; it takes its connection at the first read.
    pub fn new(db: DatabaseConnection) -> Self {
        Self {
            db,
            held: Mutex::new(None),
        }
    }

    /// The latest committed revision, as [`head`] reads it.
    pub async fn head(&self) -> StoreResult<i64> {
        let mut held = self.held.lock().await;
        let connection = match held.as_mut() {
            Some(connection) => connection,
            None => match self.take_connection().await? {
                Some(connection) => held.insert(connection),
                // Not a pooled SQLite or PostgreSQL database (a mock): the pool's way.
                None => return head(&self.db).await,
            },
        };
        let read = match connection {
            HeldConnection::Sqlite(connection) => {
                sqlx::query_scalar::<_, i64>(HEAD_SQL)
                    .fetch_all(connection)
                    .await
            }
            HeldConnection::Postgres(connection) => {
                sqlx::query_scalar::<_, i64>(HEAD_SQL)
                    .fetch_all(connection)
                    .await
            }
        };
        // Every row read (there is one): the statement runs to its end, so no
        // read transaction stays open on the held connection, which would
        // pin SQLite to an old snapshot of the file.
        match read {
            Ok(revisions) => Ok(revisions.first().copied().unwrap_or(0)),
            Err(err) => {
                *held = None;
                Err(StoreError::Database(DbErr::Conn(RuntimeErr::SqlxError(
                    err,
                ))))
            }
        }
    }

    /// A connection taken out of the pool for good (the pool may open
    /// another in its place), or `None` when `db` has no such pool.
    async fn take_connection(&self) -> StoreResult<Option<HeldConnection>> {
        let acquire_failed = |err| StoreError::Database(DbErr::Conn(RuntimeErr::SqlxError(err)));
        Ok(match &self.db {
            DatabaseConnection::SqlxSqlitePoolConnection(_) => Some(HeldConnection::Sqlite(
                self.db
                    .get_sqlite_connection_pool()
                    .acquire()
                    .await
                    .map_err(acquire_failed)?
                    .detach(),
            )),
            DatabaseConnection::SqlxPostgresPoolConnection(_) => Some(HeldConnection::Postgres(
                self.db
                    .get_postgres_connection_pool()
                    .acquire()
                    .await
                    .map_err(acquire_failed)?
                    .detach(),
            )),
            _ => None,
        })
    }
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

/// Calls `wake` on every notification of a feed write until the process
/// ends; reconnects a second after errors. PostgreSQL only (see
/// [`crate::Store::is_postgres`]): SQLite has no notifications, and its
/// followers poll.
pub async fn on_notifications(store: crate::Store, wake: impl Fn()) {
    loop {
        let pool = store.db().get_postgres_connection_pool().clone();
        match sea_orm::sqlx::postgres::PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen(NOTIFY_CHANNEL).await.is_ok() {
                    while listener.recv().await.is_ok() {
                        wake();
                    }
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot LISTEN for feed notifications; polling only")
            }
        }
        tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    }
}
