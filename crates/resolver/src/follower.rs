//! The change-feed follower: polls for revisions above its cursor, woken
//! early by PostgreSQL `LISTEN/NOTIFY`, and invalidates what changed. It
//! talks only to the database: no coordination between replicas and no
//! traffic to control.

use std::sync::Arc;
use std::time::Duration;

use switchboard_store::sea_orm::sqlx::postgres::PgListener;
use switchboard_store::sea_orm::{ConnectionTrait, DbBackend, DbErr};
use switchboard_store::{Store, StoreError, feed};
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

/// Follows the feed until the process ends.
pub(crate) async fn run(
    store: Store,
    caches: Arc<Caches>,
    poll: Duration,
    health: Option<HealthReporter>,
) {
    let wake = Arc::new(Notify::new());
    if store.db().get_database_backend() == DbBackend::Postgres {
        tokio::spawn(listen(store.clone(), wake.clone()));
    }
    let mut cursor = caches.applied();
    let mut down = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(poll) => {}
            _ = wake.notified() => {}
        }
        loop {
            // The horizon is read after the changes: pruning raises it
            // before deleting, so rows missing from this read show in it.
            let read = tokio::time::timeout(READ_TIMEOUT, async {
                let changes = feed::changes_after(store.db(), cursor, BATCH).await?;
                let horizon = feed::pruned_through(store.db()).await?;
                Ok::<_, StoreError>((changes, horizon))
            })
            .await
            .unwrap_or_else(|_| {
                Err(StoreError::Database(DbErr::Custom(format!(
                    "no answer within {READ_TIMEOUT:?}"
                ))))
            });
            match read {
                Ok((changes, horizon)) => {
                    if horizon > cursor {
                        tracing::warn!(
                            cursor,
                            pruned_through = horizon,
                            "the change feed was pruned past this resolver's cursor; reloading everything"
                        );
                        caches.invalidate_everything(horizon);
                        cursor = horizon;
                    }
                    let now = std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .map_or(0, |since| since.as_micros() as i64);
                    for change in &changes {
                        caches.invalidate(&change.workspace, &change.kind, change.revision);
                        cursor = cursor.max(change.revision);
                    }
                    if let Some(last) = changes.last() {
                        metrics::gauge!(FEED_LAG_SECONDS)
                            .set((now - last.create_time).max(0) as f64 / 1e6);
                    }
                    caches.feed_ok(cursor);
                    metrics::gauge!(FEED_REVISION).set(cursor as f64);
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
                    if (changes.len() as u64) < BATCH {
                        break;
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
                    break;
                }
            }
        }
    }
}

/// Wakes the follower on every PostgreSQL notification; reconnects on errors.
async fn listen(store: Store, wake: Arc<Notify>) {
    loop {
        let pool = store.db().get_postgres_connection_pool().clone();
        match PgListener::connect_with(&pool).await {
            Ok(mut listener) => {
                if listener.listen(feed::NOTIFY_CHANNEL).await.is_ok() {
                    while listener.recv().await.is_ok() {
                        wake.notify_one();
                    }
                }
            }
            Err(err) => {
                tracing::debug!(error = %err, "cannot LISTEN for feed notifications; polling only")
            }
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
