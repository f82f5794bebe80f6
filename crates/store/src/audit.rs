//! The audit log's writes: one row per event, field names only, never values.

use sea_orm::{
    ActiveValue::Set, ColumnTrait, ConnectionTrait, EntityTrait, QueryFilter, QueryOrder,
    QuerySelect,
};

use crate::entity::audit_event;
use crate::error::StoreResult;
use crate::records::to_json_text;
use crate::store::WriteTxn;

/// What one audit event records. Field names only, never values.
#[derive(Debug)]
pub struct AuditRecord<'a> {
    /// The workspace the event belongs to.
    pub workspace: &'a str,
    /// Who acted (`user:…`, `deployment:…`, `system:…`).
    pub actor: String,
    /// The RPC or system action, e.g. `CreateConnection`.
    pub action: &'a str,
    /// The resource name acted on.
    pub resource: String,
    /// The request's `request_id`, empty when it had none.
    pub request_id: &'a str,
    /// The fields that changed (names only).
    pub changed_fields: Vec<String>,
}

/// Inserts `record` at `now` (Unix microseconds) through `db`, a write
/// transaction or the pool. `secret_grant`, when given, marks an action that
/// gives read access to secret values and says which, in `detail`.
pub async fn insert<C: ConnectionTrait>(
    db: &C,
    record: AuditRecord<'_>,
    secret_grant: Option<String>,
    now: i64,
) -> StoreResult<()> {
    audit_event::Entity::insert(audit_event::ActiveModel {
        grants_secret_access: Set(secret_grant.is_some()),
        detail: Set(secret_grant.unwrap_or_default()),
        workspace: Set(record.workspace.to_owned()),
        actor: Set(record.actor),
        action: Set(record.action.to_owned()),
        resource: Set(record.resource),
        request_id: Set(record.request_id.to_owned()),
        changed_fields: Set(to_json_text(&record.changed_fields)),
        create_time: Set(now),
        ..Default::default()
    })
    .exec(db)
    .await?;
    Ok(())
}

/// Writes `record` inside `write` (with `secret_grant` as in [`insert`])
/// and, with `feed_kind`, a change-feed entry for its resource, so followers
/// of that kind see the change.
pub async fn record(
    write: &WriteTxn,
    record: AuditRecord<'_>,
    secret_grant: Option<String>,
    feed_kind: Option<&str>,
    now: i64,
) -> StoreResult<()> {
    if let Some(kind) = feed_kind {
        write
            .record_change(record.workspace, kind, &record.resource, now)
            .await?;
    }
    insert(&write.txn, record, secret_grant, now).await
}

/// A bound on an event's `create_time`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBound {
    /// `>=`
    AtOrAfter,
    /// `>`
    After,
    /// `<=`
    AtOrBefore,
    /// `<`
    Before,
    /// `=`
    At,
}

/// Which events a page of ListAuditEvents holds; every set field must match.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    pub resource: Option<String>,
    pub actor: Option<String>,
    pub action: Option<String>,
    /// Bounds on create_time in Unix microseconds.
    pub times: Vec<(TimeBound, i64)>,
}

/// Up to `limit` events of `workspace` matching `filter`, newest first,
/// older than the event with id `before` when given (keyset paging on id).
pub async fn page<C: ConnectionTrait>(
    db: &C,
    workspace: &str,
    filter: &AuditFilter,
    before: Option<i64>,
    limit: u64,
) -> StoreResult<Vec<audit_event::Model>> {
    let mut query = audit_event::Entity::find()
        .filter(audit_event::Column::Workspace.eq(workspace))
        .order_by_desc(audit_event::Column::Id)
        .limit(limit);
    if let Some(before) = before {
        query = query.filter(audit_event::Column::Id.lt(before));
    }
    if let Some(resource) = &filter.resource {
        query = query.filter(audit_event::Column::Resource.eq(resource));
    }
    if let Some(actor) = &filter.actor {
        query = query.filter(audit_event::Column::Actor.eq(actor));
    }
    for &(bound, micros) in &filter.times {
        let column = audit_event::Column::CreateTime;
        query = query.filter(match bound {
            TimeBound::AtOrAfter => column.gte(micros),
            TimeBound::After => column.gt(micros),
            TimeBound::AtOrBefore => column.lte(micros),
            TimeBound::Before => column.lt(micros),
            TimeBound::At => column.eq(micros),
        });
    }
    if let Some(action) = &filter.action {
        query = query.filter(audit_event::Column::Action.eq(action));
    }
    Ok(query.all(db).await?)
}
