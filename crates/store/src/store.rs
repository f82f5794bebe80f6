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

    /// A reading for measuring ages (outages, staleness), in microseconds:
    /// only differences mean anything. The wall clock may be stepped, so
    /// [`SystemClock`] answers from a monotonic clock; a test clock may keep
    /// this default.
    fn monotonic_micros(&self) -> i64 {
        self.now_micros()
    }
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

    fn monotonic_micros(&self) -> i64 {
        static START: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
        let elapsed = START.get_or_init(std::time::Instant::now).elapsed();
        i64::try_from(elapsed.as_micros()).unwrap_or(i64::MAX)
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

    /// Whether the database is PostgreSQL (which can notify of feed writes).
    pub fn is_postgres(&self) -> bool {
        self.db.get_database_backend() == sea_orm::DbBackend::Postgres
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

    /// A primary key for a row of `table` (`connection` or `link`) not yet
    /// inserted, so the row's Vault entry can be written before its write
    /// transaction. PostgreSQL hands out a sequence value (never reused);
    /// SQLite the next free one, which [`WriteTxn::claim_id`] confirms under
    /// the write lock.
    pub async fn reserve_id(&self, table: &'static str) -> StoreResult<i64> {
        debug_assert!(matches!(table, "connection" | "link"));
        let backend = self.db.get_database_backend();
        let sql = match backend {
            DbBackend::Postgres => {
                format!("SELECT nextval(pg_get_serial_sequence('\"{table}\"', 'id')) AS id")
            }
            _ => format!(
                "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
                 COALESCE((SELECT MAX(id) FROM \"{table}\"), 0)) + 1 AS id"
            ),
        };
        let row = self
            .db
            .query_one(Statement::from_string(backend, sql))
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table,
                reason: "no id reserved".to_owned(),
            })?;
        Ok(row.try_get::<i64>("", "id")?)
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

    /// Whether `id`, from [`Store::reserve_id`], is still free for a new row
    /// of `table`. On SQLite a concurrent insert may have taken it meanwhile;
    /// a PostgreSQL sequence value is never handed out twice.
    pub async fn claim_id(&self, table: &'static str, id: i64) -> StoreResult<bool> {
        debug_assert!(matches!(table, "connection" | "link"));
        let backend = self.txn.get_database_backend();
        if backend == DbBackend::Postgres {
            return Ok(true);
        }
        let sql = format!(
            "SELECT MAX(COALESCE((SELECT seq FROM sqlite_sequence WHERE name = '{table}'), 0), \
             COALESCE((SELECT MAX(id) FROM \"{table}\"), 0)) AS id"
        );
        let row = self
            .txn
            .query_one(Statement::from_string(backend, sql))
            .await?
            .ok_or_else(|| StoreError::Corrupt {
                table,
                reason: "no highest id".to_owned(),
            })?;
        Ok(row.try_get::<i64>("", "id")? < id)
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
    create_private_database_file(database_url, options.get_filename())?;
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

/// Creates the SQLite file with mode 0600 before sqlx opens it, so it never
/// exists with the umask's mode; SQLite gives its `-wal` and `-shm` files the
/// database file's mode. An existing file is left as it is, with a warning
/// when others may read it.
fn create_private_database_file(database_url: &str, path: &std::path::Path) -> StoreResult<()> {
    use std::os::unix::fs::PermissionsExt;

    let in_memory = database_url.contains(":memory:") || database_url.contains("mode=memory");
    if in_memory || path.as_os_str().is_empty() {
        return Ok(());
    }
    let fail = |err: std::io::Error| {
        StoreError::Database(sea_orm::DbErr::Custom(format!(
            "cannot create the SQLite database file {}: {err}",
            path.display()
        )))
    };
    if !crate::private_file::create_empty(path).map_err(fail)?
        && let Ok(metadata) = std::fs::metadata(path)
        && metadata.permissions().mode() & 0o077 != 0
    {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", metadata.permissions().mode() & 0o777),
            "the SQLite database file is readable by group or others; run chmod 600 on it (and on its -wal and -shm files)"
        );
    }
    Ok(())
}
