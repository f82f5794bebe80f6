//! Audit events (written in the mutation's transaction) and ListAuditEvents.

use switchboard_domain::names::WorkspaceName;
use switchboard_domain::permission::Action;
use switchboard_proto::v1 as pb;
use switchboard_store::WriteTxn;
use switchboard_store::audit::{AuditFilter, TimeBound};
use tonic::{Request, Response, Status};

use crate::error::{ControlError, ControlResult};
use crate::grpc::Control;
use crate::page_token;

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

#[tonic::async_trait]
impl pb::audit_service_server::AuditService for Control {
    async fn list_audit_events(
        &self,
        request: Request<pb::ListAuditEventsRequest>,
    ) -> Result<Response<pb::ListAuditEventsResponse>, Status> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)
            .map_err(ControlError::from)?;
        self.caller(&request, &parent.workspace, Action::ListAuditEvents)
            .await?;
        let message = request.into_inner();
        let filter = parse_filter(&message.filter)?;
        let page_size = page_token::page_size(message.page_size)?;
        let fingerprint = format!("audit|{}|{}", parent.workspace, message.filter);
        let before =
            page_token::decode_number(&self.service.page_key, &fingerprint, &message.page_token)?;
        let mut rows = switchboard_store::audit::page(
            self.service.store.db(),
            &parent.workspace,
            &filter,
            before,
            page_size + 1,
        )
        .await
        .map_err(ControlError::from)?;
        let next_page_token = page_token::next_page(
            &self.service.page_key,
            &fingerprint,
            &mut rows,
            page_size,
            |row| row.id.to_string(),
        );
        let audit_events = rows
            .iter()
            .map(crate::pb_conversions::audit_to_pb)
            .collect::<ControlResult<_>>()?;
        Ok(Response::new(pb::ListAuditEventsResponse {
            audit_events,
            next_page_token,
        }))
    }
}
