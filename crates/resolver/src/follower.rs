//! The change-feed follower: polls for revisions above its cursor, woken
//! early by PostgreSQL `LISTEN/NOTIFY`, and invalidates what changed. It
//! talks only to the database: no coordination between replicas and no
//! traffic to control.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use switchboard_store::feed::{self, HeadReader};
use switchboard_store::{Store, StoreError, StoreResult};
use tokio::sync::Notify;
use tonic_health::ServingStatus;
use tonic_health::server::HealthReporter;

use crate::cache::Caches;
use crate::metric_definitions::{
    FEED_ERRORS_TOTAL, FEED_LAG_SECONDS, FEED_REVISION, STALENESS_SECONDS,
};

/// Changes read per poll.
const BATCH: u64 = 1000;
/// Longest one read of the feed may take before it counts as failed. Without
/// it, an unreachable PostgreSQL holds the read for the pool's acquire
/// timeout (30 s), so an outage would show in health and metrics that late.
const READ_TIMEOUT: Duration = Duration::from_secs(2);
const RESOLVER_SERVICE: &str = "switchboard.v1.ResolverService";

/// Runs one read of the feed, failed once it took [`READ_TIMEOUT`].
async fn timed<T>(read: impl Future<Output = StoreResult<T>>) -> StoreResult<T> {
    tokio::time::timeout(READ_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| Err(StoreError::database_timeout(READ_TIMEOUT)))
}

/// Brings the caches up to the feed head as read now: one read of the
/// counter row, and the changes above the cursor only when it is behind.
/// Afterwards every write committed before this call is applied.
pub(crate) async fn catch_up(
    store: &Store,
    head_reader: &HeadReader,
    caches: &Caches,
) -> StoreResult<()> {
    let head = timed(head_reader.head()).await?;
    if head <= caches.applied() {
        return Ok(());
    }
    read_changes(store, caches).await?;
    // Every revision up to `head` had committed before the changes were
    // read, so all of its changes were applied, including those of
    // revisions that changed nothing the feed records.
    caches.feed_ok(head);
    Ok(())
}

/// Reads the feed above the applied cursor, invalidating what changed, until
/// a read returns less than a full batch: then every change committed before
/// that read began has been applied. Returns the cursor reached.
pub(crate) async fn read_changes(store: &Store, caches: &Caches) -> StoreResult<i64> {
    let mut cursor = caches.applied();
    loop {
        // The horizon is read after the changes: pruning raises it before
        // deleting, so rows missing from this read show in it.
        let changes = timed(feed::changes_after(store.db(), cursor, BATCH)).await?;
        let horizon = timed(feed::pruned_through(store.db())).await?;
        if horizon > cursor {
            tracing::warn!(
                cursor,
                pruned_through = horizon,
                "the change feed was pruned past this resolver's cursor; reloading everything"
            );
            caches.invalidate_everything(horizon);
            cursor = horizon;
        }
        for change in &changes {
            caches.invalidate(&change.workspace, &change.kind, change.revision);
            cursor = cursor.max(change.revision);
        }
        if let Some(last) = changes.last() {
            let now = caches.now_micros();
            metrics::gauge!(FEED_LAG_SECONDS).set((now - last.create_time).max(0) as f64 / 1e6);
        }
        caches.feed_ok(cursor);
        metrics::gauge!(FEED_REVISION).set(cursor as f64);
        if (changes.len() as u64) < BATCH {
            return Ok(cursor);
        }
    }
}

/// Follows the feed until the process ends.
pub(crate) async fn run(
    store: Store,
    caches: Arc<Caches>,
    poll: Duration,
    health: Option<HealthReporter>,
) {
    let wake = Arc::new(Notify::new());
    if store.is_postgres() {
        let (store, wake) = (store.clone(), wake.clone());
        tokio::spawn(async move { feed::on_notifications(store, move || wake.notify_one()).await });
    }
    let mut down = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = wake.notified() => {}
        }
        match read_changes(&store, &caches).await {
            Ok(cursor) => {
                metrics::gauge!(STALENESS_SECONDS).set(0.0);
                if down {
                    down = false;
                    tracing::info!(
                        revision = cursor,
                        "change feed recovered; serving fresh values"
                    );
                    if let Some(health) = &health {
                        health
                            .set_service_status(RESOLVER_SERVICE, ServingStatus::Serving)
                            .await;
                    }
                }
            }
            Err(err) => {
                metrics::counter!(FEED_ERRORS_TOTAL).increment(1);
                let outage = caches.outage();
                metrics::gauge!(STALENESS_SECONDS).set(outage.as_secs_f64());
                if !down {
                    down = true;
                    tracing::warn!(error = %err, "cannot read the change feed; serving cached values for up to max_stale");
                }
                if !caches.trusted(outage)
                    && let Some(health) = &health
                {
                    health
                        .set_service_status(RESOLVER_SERVICE, ServingStatus::NotServing)
                        .await;
                }
            }
        }
    }
}
