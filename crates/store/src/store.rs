//! Connecting, migrating, and write transactions that bump the change feed.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use sea_orm::sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous,
};
use sea_orm::{
    ConnectionTrait, Database, DatabaseConnection, DatabaseTransaction, DbBackend,
    SqlxSqliteConnector, Statement, TransactionTrait,
};
use sea_orm_migration::MigratorTrait;

use crate::error::{StoreError, StoreResult};
use crate::feed;
use crate::migration::Migrator;
use crate::secrets::SecretStore;

/// Source of the current time, injected so tests can control it.
pub trait Clock: Send + Sync + fmt::Debug {
    /// Microseconds since the Unix epoch.
    fn now_micros(&self) -> i64;
}

/// The wall clock.
#[derive(Debug, Clone, Copy, Default)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now_micros(&self) -> i64 {
        let since_epoch = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default();
        i64::try_from(since_epoch.as_micros()).unwrap_or(i64::MAX)
    }
}

/// The database plus the secret store.
#[derive(Debug, Clone)]
pub struct Store {
    db: DatabaseConnection,
    secrets: SecretStore,
}

impl Store {
    /// Connects to `database_url` (`sqlite://…` or `postgres://…`) and runs
    /// pending migrations.
    pub async fn connect(database_url: &str, secrets: SecretStore) -> StoreResult<Self> {
        let db = open_database(database_url).await?;
        migrate(&db).await?;
        Ok(Self { db, secrets })
    }

    /// Runs pending migrations on `database_url` and returns (`switchboard migrate`).
    pub async fn migrate(database_url: &str) -> StoreResult<()> {
        let db = open_database(database_url).await?;
        migrate(&db).await?;
        db.close().await?;
        Ok(())
    }

    /// The database connection pool.
    pub fn db(&self) -> &DatabaseConnection {
        &self.db
    }

    /// The secret store.
    pub fn secrets(&self) -> &SecretStore {
        &self.secrets
    }

    /// Begins a write transaction. Its first statement increments the feed
    /// counter, which takes the write lock at once and gives the transaction
    /// its revision: revisions are handed out in commit order.
    pub async fn begin_write(&self) -> StoreResult<WriteTxn> {
        let txn = self.db.begin().await?;
        let revision = feed::bump(&txn).await?;
        Ok(WriteTxn { txn, revision })
    }

    /// The shared random key called `name` (`len` bytes), created on first use.
    /// Every replica on the same database gets the same key.
    pub async fn shared_key(&self, name: &str, len: usize) -> StoreResult<Vec<u8>> {
        use rand::RngCore;
        use sea_orm::EntityTrait;
        use sea_orm::sea_query::OnConflict;

        use crate::entity::shared_key;

        let mut fresh = vec![0u8; len];
        rand::rngs::OsRng.fill_bytes(&mut fresh);
        // Whoever inserts first wins; the others keep the stored key.
        shared_key::Entity::insert(shared_key::ActiveModel {
            name: sea_orm::ActiveValue::Set(name.to_owned()),
            value: sea_orm::ActiveValue::Set(fresh),
        })
        .on_conflict(
            OnConflict::column(shared_key::Column::Name)
                .do_nothing()
                .to_owned(),
        )
        .do_nothing()
        .exec(&self.db)
        .await?;
        let row = shared_key::Entity::find_by_id(name.to_owned())
            .one(&self.db)
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table: "shared_key",
                reason: format!("{name} missing after insert"),
            })?;
        Ok(row.value)
    }

    /// Closes the pool.
    pub async fn close(self) -> StoreResult<()> {
        self.db.close().await?;
        Ok(())
    }
}

/// A write transaction and the feed revision it will commit as.
#[derive(Debug)]
pub struct WriteTxn {
    pub txn: DatabaseTransaction,
    pub revision: i64,
}

impl WriteTxn {
    /// Records in the feed that `resource` (of `kind`) changed in this transaction.
    pub async fn record_change(
        &self,
        workspace: &str,
        kind: &str,
        resource: &str,
        now_micros: i64,
    ) -> StoreResult<()> {
        feed::record(
            &self.txn,
            self.revision,
            workspace,
            kind,
            resource,
            now_micros,
        )
        .await
    }

    /// Commits. On PostgreSQL the transaction also notifies
    /// [`feed::NOTIFY_CHANNEL`], delivered at commit, so followers wake at once.
    pub async fn commit(self) -> StoreResult<()> {
        if self.txn.get_database_backend() == DbBackend::Postgres {
            self.txn
                .execute(Statement::from_sql_and_values(
                    DbBackend::Postgres,
                    "SELECT pg_notify($1, $2)",
                    [
                        feed::NOTIFY_CHANNEL.into(),
                        self.revision.to_string().into(),
                    ],
                ))
                .await?;
        }
        self.txn.commit().await?;
        Ok(())
    }
}

async fn open_database(database_url: &str) -> StoreResult<DatabaseConnection> {
    if database_url.starts_with("sqlite:") {
        connect_sqlite(database_url).await
    } else {
        // Give up on an unreachable server well before a call's 30 s deadline
        // (sqlx waits 30 s by default), so callers get UNAVAILABLE, not CANCELLED.
        let mut options = sea_orm::ConnectOptions::new(database_url);
        options
            .connect_timeout(POSTGRES_CONNECT_TIMEOUT)
            .acquire_timeout(POSTGRES_CONNECT_TIMEOUT);
        Ok(Database::connect(options).await?)
    }
}

/// How long to wait for a PostgreSQL connection before answering UNAVAILABLE.
const POSTGRES_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs pending migrations in one transaction that first takes a lock, so
/// processes starting together (control and resolvers) migrate once, in turn.
async fn migrate(db: &DatabaseConnection) -> StoreResult<()> {
    let backend = db.get_database_backend();
    let lock = match backend {
        DbBackend::Postgres => "SELECT pg_advisory_xact_lock(7263001)",
        _ => {
            db.execute(Statement::from_string(
                backend,
                "CREATE TABLE IF NOT EXISTS switchboard_migration_lock (id INTEGER)",
            ))
            .await?;
            // A write as the first statement takes SQLite's write lock before
            // the migration table is read.
            "DELETE FROM switchboard_migration_lock"
        }
    };
    let txn = db.begin().await?;
    txn.execute(Statement::from_string(backend, lock)).await?;
    Migrator::up(&txn, None).await?;
    txn.commit().await?;
    Ok(())
}

async fn connect_sqlite(database_url: &str) -> StoreResult<DatabaseConnection> {
    let options = SqliteConnectOptions::from_str(database_url)
        .map_err(|err| StoreError::Database(sea_orm::DbErr::Custom(err.to_string())))?
        .create_if_missing(true)
        .foreign_keys(true)
        // WAL lets the resolver read while control writes, across processes.
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        // Overwrite what a write frees, so a value moved out of a row (a
        // plaintext secret moved into the secret store) leaves no copy in
        // the file's free pages.
        .pragma("secure_delete", "ON")
        .busy_timeout(Duration::from_secs(10));
    let pool = SqlitePoolOptions::new()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|err| {
            StoreError::Database(sea_orm::DbErr::Conn(sea_orm::RuntimeErr::SqlxError(err)))
        })?;
    let db = SqlxSqliteConnector::from_sqlx_sqlite_pool(pool);
    // Fail early with a clear error if the file is not a database.
    db.execute(Statement::from_string(
        db.get_database_backend(),
        "SELECT 1",
    ))
    .await?;
    Ok(db)
}
