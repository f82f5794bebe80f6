//! Retention settings and control's periodic pruning of the change feed,
//! the request log and the audit table (see `switchboard_store::retention`).

use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use serde::Deserialize;
use switchboard_store::retention::{self, Retention};
use switchboard_store::{Clock, Store};
use tracing::info;

/// Shortest request log retention that still lets retries dedupe as callers expect.
const REQUEST_LOG_ADVISED: Duration = Duration::from_secs(24 * 3600);
const DEFAULT_PRUNE_INTERVAL: Duration = Duration::from_secs(3600);

/// The retention flags.
#[derive(Debug, Default, Args)]
pub(crate) struct RetentionOpt {
    /// Control: how long change feed rows are kept, e.g. 7d; a resolver
    /// further behind reloads everything [default: 7d].
    #[arg(long, env = "SWITCHBOARD_FEED_RETENTION", value_parser = switchboard_domain::duration::parse)]
    feed_retention: Option<Duration>,
    /// Control: how long request_id records are kept, so retries of a create
    /// return its first result, e.g. 7d [default: 7d].
    #[arg(long, env = "SWITCHBOARD_REQUEST_LOG_RETENTION", value_parser = switchboard_domain::duration::parse)]
    request_log_retention: Option<Duration>,
    /// Control: how long audit events are kept, e.g. 400d [default: 400d].
    #[arg(long, env = "SWITCHBOARD_AUDIT_RETENTION", value_parser = switchboard_domain::duration::parse)]
    audit_retention: Option<Duration>,
    /// Control: how often expired rows are pruned, e.g. 1h [default: 1h].
    #[arg(long, env = "SWITCHBOARD_PRUNE_INTERVAL", value_parser = switchboard_domain::duration::parse)]
    prune_interval: Option<Duration>,
}

/// The config file's `[retention]` table: durations such as "7d".
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct RetentionFile {
    feed: Option<String>,
    request_log: Option<String>,
    audit: Option<String>,
    prune_interval: Option<String>,
}

/// Validated retention settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RetentionSettings {
    pub retention: Retention,
    pub prune_interval: Duration,
}

impl RetentionOpt {
    /// Flags over the file over the defaults.
    pub(crate) fn settings(self, file: RetentionFile) -> anyhow::Result<RetentionSettings> {
        let pick =
            |flag: Option<Duration>, text: Option<String>, key: &str, default: Duration| match (
                flag, text,
            ) {
                (Some(flag), _) => Ok(flag),
                (None, Some(text)) => switchboard_domain::duration::parse(&text).map_err(|why| {
                    anyhow::anyhow!("invalid retention.{key} in the config file: {why}")
                }),
                (None, None) => Ok(default),
            };
        let defaults = Retention::default();
        let settings = RetentionSettings {
            retention: Retention {
                feed: pick(self.feed_retention, file.feed, "feed", defaults.feed)?,
                request_log: pick(
                    self.request_log_retention,
                    file.request_log,
                    "request_log",
                    defaults.request_log,
                )?,
                audit: pick(self.audit_retention, file.audit, "audit", defaults.audit)?,
            },
            prune_interval: pick(
                self.prune_interval,
                file.prune_interval,
                "prune_interval",
                DEFAULT_PRUNE_INTERVAL,
            )?,
        };
        Ok(settings)
    }
}

/// Prunes every `prune_interval` until the process ends; errors are logged
/// and retried next round. Several control replicas may run it: deleting is
/// idempotent and the feed's horizon only rises.
pub(crate) async fn prune_periodically(
    store: Store,
    clock: Arc<dyn Clock>,
    settings: RetentionSettings,
) {
    if settings.retention.request_log < REQUEST_LOG_ADVISED {
        tracing::warn!(
            request_log_retention_seconds = settings.retention.request_log.as_secs(),
            "request_log retention is under 24h: a create retried later than that is a new request"
        );
    }
    loop {
        tokio::time::sleep(settings.prune_interval).await;
        match retention::prune(store.db(), clock.now_micros(), &settings.retention).await {
            Ok(report) if report.changes + report.request_log + report.audit_events > 0 => info!(
                changes = report.changes,
                request_log = report.request_log,
                audit_events = report.audit_events,
                feed_horizon = report.feed_horizon,
                "retention pruning finished"
            ),
            Ok(report) => tracing::debug!(
                feed_horizon = report.feed_horizon,
                "retention pruning found nothing to delete"
            ),
            Err(err) => {
                tracing::warn!(error = %err, "retention pruning failed; retrying next round")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_then_the_file_then_flags() {
        let settings = RetentionOpt::default()
            .settings(RetentionFile::default())
            .unwrap();
        assert_eq!(settings.retention, Retention::default());
        assert_eq!(settings.retention.feed, Duration::from_secs(7 * 86_400));
        assert_eq!(settings.retention.audit, Duration::from_secs(400 * 86_400));
        assert_eq!(settings.prune_interval, Duration::from_secs(3600));
        let file = RetentionFile {
            feed: Some("2d".into()),
            audit: Some("90d".into()),
            ..RetentionFile::default()
        };
        let flags = RetentionOpt {
            feed_retention: Some(Duration::from_secs(60)),
            ..RetentionOpt::default()
        };
        let settings = flags.settings(file).unwrap();
        assert_eq!(settings.retention.feed, Duration::from_secs(60));
        assert_eq!(settings.retention.audit, Duration::from_secs(90 * 86_400));
        let bad = RetentionFile {
            request_log: Some("forever".into()),
            ..RetentionFile::default()
        };
        let err = RetentionOpt::default()
            .settings(bad)
            .unwrap_err()
            .to_string();
        assert!(err.contains("retention.request_log"), "{err}");
    }
}
