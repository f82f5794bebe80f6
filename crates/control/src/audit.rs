//! Audit events: written in the mutation's transaction, and listed.

use switchboard_domain::names::WorkspaceName;
use switchboard_domain::permission::{Action, Principal};
use switchboard_store::WriteTxn;
use switchboard_store::audit::{AuditFilter, TimeBound};
use switchboard_store::entity::audit_event;

use crate::error::{ControlError, ControlResult};
use crate::page_token;
use crate::service::{ControlService, Page, PageRequest};

pub(crate) use switchboard_store::audit::AuditRecord;

/// Writes an audit event and a change-feed entry inside `write`.
pub(crate) async fn record(
    write: &WriteTxn,
    record: AuditRecord<'_>,
    feed_kind: Option<&str>,
    now: i64,
) -> ControlResult<()> {
    Ok(switchboard_store::audit::record(write, record, None, feed_kind, now).await?)
}

/// Like [`record`], for an action that gives read access to secret values:
/// the event says so (`grants_secret_access`) and what, in `detail`.
pub(crate) async fn record_secret_grant(
    write: &WriteTxn,
    record: AuditRecord<'_>,
    detail: String,
    feed_kind: Option<&str>,
    now: i64,
) -> ControlResult<()> {
    Ok(switchboard_store::audit::record(write, record, Some(detail), feed_kind, now).await?)
}

fn parse_filter(filter: &str) -> ControlResult<AuditFilter> {
    let mut parsed = AuditFilter::default();
    for term in crate::page_token::parse_filter_terms(filter)? {
        let equality = |value: String| {
            if term.op == "=" {
                Ok(Some(value))
            } else {
                Err(ControlError::invalid(
                    "filter",
                    format!("{} supports only '='", term.key),
                ))
            }
        };
        match term.key.as_str() {
            "resource" => parsed.resource = equality(term.value.clone())?,
            "actor" => parsed.actor = equality(term.value.clone())?,
            "action" => parsed.action = equality(term.value.clone())?,
            "create_time" => {
                let time = chrono::DateTime::parse_from_rfc3339(&term.value).map_err(|_| {
                    ControlError::invalid(
                        "filter",
                        "create_time must be an RFC 3339 time, e.g. 2026-11-28T00:00:00Z",
                    )
                })?;
                let bound = match term.op {
                    ">=" => TimeBound::AtOrAfter,
                    ">" => TimeBound::After,
                    "<=" => TimeBound::AtOrBefore,
                    "<" => TimeBound::Before,
                    _ => TimeBound::At,
                };
                parsed.times.push((bound, time.timestamp_micros()));
            }
            other => {
                return Err(ControlError::invalid(
                    "filter",
                    format!("unknown field '{other}'; use resource, actor, action or create_time"),
                ));
            }
        }
    }
    Ok(parsed)
}

/// A ListAuditEvents: a workspace's events, newest first, filtered.
#[derive(Debug)]
pub(crate) struct AuditQuery {
    pub parent: WorkspaceName,
    /// Terms on `resource`, `actor`, `action` and `create_time`.
    pub filter: String,
    pub page: PageRequest,
}

impl ControlService {
    /// One page of the audit events `query` asks for.
    pub(crate) async fn list_audit_events(
        &self,
        principal: &Principal,
        query: AuditQuery,
    ) -> ControlResult<Page<audit_event::Model>> {
        let AuditQuery {
            parent,
            filter,
            page,
        } = query;
        self.authorize(principal, &parent.workspace, Action::ListAuditEvents)
            .await?;
        let parsed = parse_filter(&filter)?;
        let page_size = page_token::page_size(page.size)?;
        let fingerprint = format!("audit|{}|{}", parent.workspace, filter);
        let before = page_token::decode_number(&self.page_key, &fingerprint, &page.token)?;
        let mut rows = switchboard_store::audit::page(
            self.store.db(),
            &parent.workspace,
            &parsed,
            before,
            page_size + 1,
        )
        .await?;
        let next_page_token =
            page_token::next_page(&self.page_key, &fingerprint, &mut rows, page_size, |row| {
                row.id.to_string()
            });
        Ok(Page {
            items: rows,
            next_page_token,
        })
    }
}
