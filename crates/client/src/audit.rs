//! `switchboard audit`: the workspace's audit events, newest first.

use clap::Args;
use serde_json::Value;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::audit_service_client::AuditServiceClient;

use crate::connections::quote;
use crate::error::{CallResult, usage};
use crate::output::{OutputOpt, Table};
use crate::render;
use crate::session::{ConnectOpt, Session};

/// Arguments of `switchboard audit`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  switchboard audit --since 24h\n  \
    switchboard audit --resource connections/warehouse --action UpdateConnection\n  \
    switchboard audit --actor alice --since 2026-01-01T00:00:00Z -o json",
    "\n\n",
    crate::exit_codes_help!()
))]
pub struct AuditArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(flatten)]
    output: OutputOpt,
    /// Only events on this resource: a full name, or one relative to the
    /// workspace such as connections/warehouse.
    #[arg(long)]
    resource: Option<String>,
    /// Only events by this actor (a user's subject).
    #[arg(long)]
    actor: Option<String>,
    /// Only events of this action, e.g. CreateConnection or RevealSecrets.
    #[arg(long)]
    action: Option<String>,
    /// Only events at or after this time: RFC 3339, or a duration ago such as 1h or 7d.
    #[arg(long)]
    since: Option<String>,
    /// Only events before this time: RFC 3339, or a duration ago.
    #[arg(long)]
    until: Option<String>,
    /// At most this many events.
    #[arg(long, default_value_t = 100)]
    limit: usize,
}

/// RFC 3339 text for `--since`/`--until`.
fn time_bound(flag: &str, value: &str) -> anyhow::Result<String> {
    if let Ok(time) = chrono::DateTime::parse_from_rfc3339(value) {
        return Ok(time
            .to_utc()
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true));
    }
    match switchboard_domain::duration::parse(value) {
        Ok(ago) => {
            let ago = chrono::Duration::from_std(ago)?;
            Ok((chrono::Utc::now() - ago).to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
        }
        Err(_) => usage!(
            "{flag} '{value}' is neither an RFC 3339 time (2026-01-01T00:00:00Z) nor a duration (1h)"
        ),
    }
}

/// `switchboard audit`.
pub(crate) async fn run(args: AuditArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.connect).await?;
    let result = run_with(&session, args).await;
    session.diagnose(result).await
}

async fn run_with(session: &Session, args: AuditArgs) -> anyhow::Result<()> {
    let parent = session.workspace_name()?;
    let mut terms = Vec::new();
    if let Some(resource) = &args.resource {
        let resource = if resource.starts_with("workspaces/") {
            resource.clone()
        } else {
            format!("{parent}/{resource}")
        };
        terms.push(format!("resource = {}", quote(&resource)?));
    }
    if let Some(actor) = &args.actor {
        terms.push(format!("actor = {}", quote(actor)?));
    }
    if let Some(action) = &args.action {
        terms.push(format!("action = {}", quote(action)?));
    }
    if let Some(since) = &args.since {
        terms.push(format!(
            "create_time >= {}",
            quote(&time_bound("--since", since)?)?
        ));
    }
    if let Some(until) = &args.until {
        terms.push(format!(
            "create_time < {}",
            quote(&time_bound("--until", until)?)?
        ));
    }
    let filter = terms.join(" AND ");
    let mut client = AuditServiceClient::new(session.channel());
    let mut events = Vec::new();
    let mut page_token = String::new();
    while events.len() < args.limit {
        let page = client
            .list_audit_events(
                session.request(pb::ListAuditEventsRequest {
                    parent: parent.clone(),
                    page_size: i32::try_from(args.limit - events.len())
                        .unwrap_or(i32::MAX)
                        .min(100),
                    page_token: page_token.clone(),
                    filter: filter.clone(),
                }),
            )
            .await
            .or_refused(|| format!("cannot list the audit events of {parent}"))?;
        events.extend(page.audit_events);
        if page.next_page_token.is_empty() {
            break;
        }
        page_token = page.next_page_token;
    }
    events.truncate(args.limit);
    args.output.emit(
        &Value::Array(events.iter().map(render::audit_json).collect()),
        || {
            let mut table = Table::new(["TIME", "ACTOR", "ACTION", "RESOURCE", "FIELDS"]);
            let prefix = format!("{parent}/");
            for event in &events {
                table.row([
                    render::time_text(event.create_time.as_ref()),
                    event.actor.clone(),
                    event.action.clone(),
                    event
                        .resource
                        .strip_prefix(&prefix)
                        .unwrap_or(&event.resource)
                        .to_owned(),
                    render::or_dash(event.changed_fields.join(", ")),
                ]);
            }
            table
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds_accept_rfc3339_and_durations() {
        assert_eq!(
            time_bound("--since", "2026-01-01T01:00:00+01:00").expect("rfc3339"),
            "2026-01-01T00:00:00Z"
        );
        assert!(
            time_bound("--since", "1h")
                .expect("duration")
                .ends_with('Z')
        );
        assert!(time_bound("--since", "yesterday").is_err());
    }
}
