//! Moves secret values that older releases kept in plaintext into the secret
//! store. Releases before nested classification split off only top-level
//! extra keys, so a sensitive key deeper in `extra`
//! (`session_kwargs.aws_secret_access_key`, `headers.Authorization`) sits in
//! the clear in connection rows, link rows and version snapshots. Control runs
//! this at start-up: each row that still holds such a value gets a new secret
//! version with the old secrets plus the moved ones, and its public part
//! without them, in one write transaction per row. Rows with nothing to move
//! are left alone, so running it again changes nothing.

use std::collections::HashMap;

use sea_orm::{
    ActiveModelTrait, ActiveValue::Set, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait,
    IntoActiveModel, QueryFilter, QueryOrder, QuerySelect, Statement,
};
use switchboard_domain::{ConnectionSpec, SecretValues};

use crate::entity::{connection, connection_version, link};
use crate::error::StoreResult;
use crate::records::{
    self, ConnectionSnapshot, connection_owner, from_json_text, link_owner, to_json_text,
};
use crate::store::{Store, WriteTxn};

/// How many rows of each kind had plaintext secrets moved.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct MoveReport {
    pub connections: usize,
    pub links: usize,
    pub versions: usize,
    /// Rows whose move failed (logged each); tried again at the next start.
    pub failed: usize,
}

impl MoveReport {
    /// Whether anything was moved.
    pub fn is_empty(&self) -> bool {
        self.connections == 0 && self.links == 0 && self.versions == 0
    }
}

/// The old secrets with the moved ones added (a key already stored keeps its
/// stored value: it is the newer one).
fn merged(mut stored: SecretValues, moved: SecretValues) -> SecretValues {
    for (key, value) in moved {
        stored.entry(key).or_insert(value);
    }
    stored
}

/// The kinds of row that may hold plaintext secrets.
#[derive(Debug, Clone, Copy)]
enum RowKind {
    Connection,
    Link,
    Version,
}

impl RowKind {
    fn table(self) -> &'static str {
        match self {
            Self::Connection => "connection",
            Self::Link => "link",
            Self::Version => "connection_version",
        }
    }
}

/// [`move_row`], counted: 1 when the row's secrets moved. A failure is
/// logged and counted in `failed`; the row stays masked and is tried again
/// at the next start.
async fn move_or_count_failure(
    store: &Store,
    kind: RowKind,
    id: i64,
    now_micros: i64,
    failed: &mut usize,
) -> usize {
    match move_row(store, kind, id, now_micros).await {
        Ok(moved) => usize::from(moved),
        Err(err) => {
            *failed += 1;
            tracing::warn!(table = kind.table(), id, error = %err, "cannot move plaintext secrets of a row; it stays masked and is tried again at the next start");
            0
        }
    }
}

/// Moves one row's plaintext secrets in its own write transaction.
async fn move_row(store: &Store, kind: RowKind, id: i64, now_micros: i64) -> StoreResult<bool> {
    let write = store.begin_write().await?;
    let moved = match kind {
        RowKind::Connection => move_connection(store, &write, id, now_micros).await?,
        RowKind::Link => move_link(store, &write, id, now_micros).await?,
        RowKind::Version => move_version(store, &write, id, now_micros).await?,
    };
    write.commit().await?;
    Ok(moved)
}

/// Rows read per query while looking for plaintext secrets.
const SCAN_PAGE: u64 = 200;

/// Moves every plaintext secret of every connection, link and version. The
/// scan only reads; a write transaction is opened for a row that needs it,
/// so a start-up with nothing to move takes no write lock.
pub async fn move_plaintext_secrets(store: &Store, now_micros: i64) -> StoreResult<MoveReport> {
    let mut report = MoveReport::default();
    let mut type_keys: HashMap<i64, String> = HashMap::new();
    let mut after = 0;
    loop {
        let rows = connection::Entity::find()
            .filter(connection::Column::Id.gt(after))
            .order_by_asc(connection::Column::Id)
            .limit(SCAN_PAGE)
            .all(store.db())
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            type_keys.insert(row.id, row.type_key.clone());
            if records::spec_from_row(&row)?.split_secrets().1.is_empty() {
                continue;
            }
            report.connections += move_or_count_failure(
                store,
                RowKind::Connection,
                row.id,
                now_micros,
                &mut report.failed,
            )
            .await;
        }
    }
    let mut after = 0;
    loop {
        let rows = link::Entity::find()
            .filter(link::Column::Id.gt(after))
            .order_by_asc(link::Column::Id)
            .limit(SCAN_PAGE)
            .all(store.db())
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            let Some(type_key) = type_keys.get(&row.connection_pk) else {
                continue;
            };
            if records::overrides_from_row(&row)?
                .split_secrets(type_key)
                .1
                .is_empty()
            {
                continue;
            }
            report.links +=
                move_or_count_failure(store, RowKind::Link, row.id, now_micros, &mut report.failed)
                    .await;
        }
    }
    let mut after = 0;
    loop {
        let rows = connection_version::Entity::find()
            .filter(connection_version::Column::Id.gt(after))
            .order_by_asc(connection_version::Column::Id)
            .limit(SCAN_PAGE)
            .all(store.db())
            .await?;
        let Some(last) = rows.last() else { break };
        after = last.id;
        for row in rows {
            let snapshot: ConnectionSnapshot = from_json_text("connection_version", &row.snapshot)?;
            if snapshot.spec.split_secrets().1.is_empty() {
                continue;
            }
            report.versions += move_or_count_failure(
                store,
                RowKind::Version,
                row.id,
                now_micros,
                &mut report.failed,
            )
            .await;
        }
    }
    if report.connections + report.links + report.versions > 0 {
        scrub_old_row_versions(store).await?;
    }
    Ok(report)
}

/// Removes the old copies an update leaves behind. SQLite overwrites freed
/// space (secure_delete) and a checkpoint copies those pages over the main
/// file; PostgreSQL keeps dead row versions until a vacuum, which this runs
/// (a plain one, so readers are not locked out; its freed space is reused,
/// not zeroed: `VACUUM FULL` rewrites the tables for certainty).
async fn scrub_old_row_versions(store: &Store) -> StoreResult<()> {
    let backend = store.db().get_database_backend();
    let statements: &[&str] = match backend {
        DbBackend::Sqlite => &["PRAGMA wal_checkpoint(TRUNCATE)"],
        DbBackend::Postgres => &["VACUUM connection, link, connection_version"],
        _ => &[],
    };
    for sql in statements {
        store
            .db()
            .execute(Statement::from_string(backend, *sql))
            .await?;
    }
    Ok(())
}

/// Re-reads the row inside `write` (another control may have moved it first).
async fn move_connection(
    store: &Store,
    write: &WriteTxn,
    id: i64,
    now_micros: i64,
) -> StoreResult<bool> {
    let Some(row) = connection::Entity::find_by_id(id).one(&write.txn).await? else {
        return Ok(false);
    };
    let (public, moved) = records::spec_from_row(&row)?.split_secrets();
    if moved.is_empty() {
        return Ok(false);
    }
    let owner = connection_owner(row.id);
    let stored = store
        .secrets()
        .get(&write.txn, &row.workspace, &owner, row.secret_version)
        .await?;
    let secrets = merged(stored, moved);
    let version = store
        .secrets()
        .put(&write.txn, &row.workspace, &owner, &secrets, now_micros)
        .await?;
    let full = public.clone().with_secrets(&secrets);
    let mut active = row.into_active_model();
    active.extra = Set(to_json_text(&public.extra));
    active.secret_version = Set(version);
    active.secret_fields = Set(to_json_text(&full.secret_fields_set()));
    active.update(&write.txn).await?;
    Ok(true)
}

async fn move_link(store: &Store, write: &WriteTxn, id: i64, now_micros: i64) -> StoreResult<bool> {
    let Some(row) = link::Entity::find_by_id(id).one(&write.txn).await? else {
        return Ok(false);
    };
    let Some(conn) = connection::Entity::find_by_id(row.connection_pk)
        .one(&write.txn)
        .await?
    else {
        return Ok(false);
    };
    let (public, moved) = records::overrides_from_row(&row)?.split_secrets(&conn.type_key);
    if moved.is_empty() {
        return Ok(false);
    }
    let owner = link_owner(row.id);
    let stored = store
        .secrets()
        .get(&write.txn, &row.workspace, &owner, row.secret_version)
        .await?;
    let secrets = merged(stored, moved);
    let version = store
        .secrets()
        .put(&write.txn, &row.workspace, &owner, &secrets, now_micros)
        .await?;
    let full = public.clone().with_secrets(&secrets);
    let mut active = row.into_active_model();
    active.overrides = Set(to_json_text(&public));
    active.secret_version = Set(version);
    active.secret_fields = Set(to_json_text(&full.secret_fields_set(&conn.type_key)));
    active.update(&write.txn).await?;
    Ok(true)
}

async fn move_version(
    store: &Store,
    write: &WriteTxn,
    id: i64,
    now_micros: i64,
) -> StoreResult<bool> {
    let Some(row) = connection_version::Entity::find_by_id(id)
        .one(&write.txn)
        .await?
    else {
        return Ok(false);
    };
    let Some(conn) = connection::Entity::find_by_id(row.connection_pk)
        .one(&write.txn)
        .await?
    else {
        return Ok(false);
    };
    let snapshot: ConnectionSnapshot = from_json_text("connection_version", &row.snapshot)?;
    let (public, moved) = snapshot.spec.split_secrets();
    if moved.is_empty() {
        return Ok(false);
    }
    let owner = connection_owner(row.connection_pk);
    let stored = store
        .secrets()
        .get(&write.txn, &conn.workspace, &owner, row.secret_version)
        .await?;
    let secrets = merged(stored, moved);
    let version = store
        .secrets()
        .put(&write.txn, &conn.workspace, &owner, &secrets, now_micros)
        .await?;
    let full: ConnectionSpec = public.clone().with_secrets(&secrets);
    let snapshot = ConnectionSnapshot {
        spec: public,
        secret_fields: full.secret_fields_set(),
        ..snapshot
    };
    let mut active = row.into_active_model();
    active.snapshot = Set(to_json_text(&snapshot));
    active.secret_version = Set(version);
    active.update(&write.txn).await?;
    Ok(true)
}
