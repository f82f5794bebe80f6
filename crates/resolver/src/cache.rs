//! The resolver's caches and the change-feed state that invalidates them.
//!
//! Each cached value remembers the feed revision read *before* its data was
//! loaded. The follower records, per workspace, the highest revision that
//! changed it; a value is valid while its revision is at least that. A value
//! loaded concurrently with a change is therefore never mistaken for fresh.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use futures_util::future::BoxFuture;
use moka::future::Cache;
use switchboard_domain::permission::Principal;
use switchboard_proto::v1 as pb;
use switchboard_store::Clock;

use crate::error::{ResolverError, ResolverResult};

/// Largest number of deployments whose connections are cached.
const MAX_VIEWS: u64 = 10_000;
/// Largest number of deployment tokens cached.
const MAX_TOKENS: u64 = 100_000;

/// A deployment's effective connections at a revision.
#[derive(Debug)]
pub(crate) struct View {
    pub revision: i64,
    /// The answers, encoded once per load rather than per call, keyed by the
    /// case-folded conn_id.
    pub connections: Vec<(String, pb::ResolvedConnection)>,
}

/// A verified deployment token.
#[derive(Debug)]
pub(crate) struct TokenEntry {
    pub revision: i64,
    pub workspace: String,
    pub hash: String,
    pub principal: Principal,
}

/// What the follower knows about the feed.
#[derive(Debug)]
struct FeedHealth {
    /// When the feed was last read ([`Clock::monotonic_micros`]).
    last_ok: i64,
    applied: i64,
    /// A request's catch-up read failed since the last successful read:
    /// the database is treated as unreachable until the follower reads again,
    /// so requests stop waiting for reads that fail.
    catch_up_failed: bool,
}

/// Caches plus the follower's invalidation state; shared by every request.
#[derive(Debug)]
pub(crate) struct Caches {
    /// Keyed by workspace, deployment and the workspace's last change, so a
    /// change moves readers to a fresh key and one load serves them all.
    views: Cache<(String, String, i64), Arc<View>>,
    /// The last view loaded per workspace and deployment, served while a
    /// reload after a change finds a backend unavailable (up to `max_stale`
    /// from the first failed reload, kept in `reload_failing_since`).
    last_loaded: Cache<(String, String), Arc<View>>,
    /// When a reload first failed ([`Clock::monotonic_micros`]).
    reload_failing_since: Cache<(String, String), i64>,
    tokens: Cache<String, Arc<TokenEntry>>,
    /// Workspace → highest revision that changed its connections.
    connections_changed: RwLock<HashMap<String, i64>>,
    /// Workspace → highest revision that changed its tokens or deployments.
    tokens_changed: RwLock<HashMap<String, i64>>,
    /// A revision at which every workspace counts as changed: set when the
    /// follower fell behind the feed's pruned horizon and cannot know what
    /// changed.
    everything_changed: AtomicI64,
    health: Mutex<FeedHealth>,
    /// Every age here (outage, failing reloads) is measured on this clock, so
    /// tests can move time instead of waiting.
    clock: Arc<dyn Clock>,
    max_stale: Duration,
    /// A feed silent for longer than this counts as an outage.
    pub healthy_within: Duration,
}

impl Caches {
    pub(crate) fn new(
        clock: Arc<dyn Clock>,
        max_stale: Duration,
        healthy_within: Duration,
        applied: i64,
    ) -> Self {
        let now = clock.monotonic_micros();
        Self {
            views: Cache::new(MAX_VIEWS),
            last_loaded: Cache::new(MAX_VIEWS),
            reload_failing_since: Cache::new(MAX_VIEWS),
            tokens: Cache::new(MAX_TOKENS),
            connections_changed: RwLock::new(HashMap::new()),
            tokens_changed: RwLock::new(HashMap::new()),
            everything_changed: AtomicI64::new(i64::MIN),
            health: Mutex::new(FeedHealth {
                last_ok: now,
                applied,
                catch_up_failed: false,
            }),
            clock,
            max_stale,
            healthy_within,
        }
    }

    fn changed_at(&self, map: &RwLock<HashMap<String, i64>>, workspace: &str) -> i64 {
        let changed = map
            .read()
            .map(|map| map.get(workspace).copied().unwrap_or(i64::MIN))
            .unwrap_or(i64::MAX);
        changed.max(self.everything_changed.load(Ordering::Acquire))
    }

    /// The deployment's current view, loaded by `load` when the cache has
    /// none for the workspace's latest change. Concurrent callers share one
    /// load. Also says whether this call loaded it. `outage` is the caller's
    /// [`Self::outage`]. When that load finds a
    /// backend unavailable, the last view loaded is served instead, for up
    /// to `max_stale`.
    pub(crate) async fn view_or_load<'a>(
        &self,
        workspace: &str,
        deployment: &str,
        outage: Duration,
        load: impl FnOnce() -> BoxFuture<'a, ResolverResult<Arc<View>>>,
    ) -> ResolverResult<(Arc<View>, bool)> {
        let changed = self.changed_at(&self.connections_changed, workspace);
        let key = (workspace.to_owned(), deployment.to_owned(), changed);
        if let Some(view) = self.views.get(&key).await {
            return Ok((view, false));
        }
        let last_key = (workspace.to_owned(), deployment.to_owned());
        if outage > Duration::ZERO
            && self.trusted(outage)
            && let Some(view) = self.last_loaded.get(&last_key).await
        {
            // The feed is unreadable, so the database is: a reload would
            // only wait for it to time out.
            return Ok((view, false));
        }
        // Boxed: the miss path's future is large and a hit should not carry it.
        let loaded = AtomicBool::new(false);
        let result = Box::pin(self.views.try_get_with(key, async {
            loaded.store(true, Ordering::Relaxed);
            load().await
        }))
        .await
        .map_err(|err| (*err).clone());
        match result {
            Ok(view) => {
                let loaded = loaded.load(Ordering::Relaxed);
                if loaded {
                    self.last_loaded
                        .insert(last_key.clone(), view.clone())
                        .await;
                    self.reload_failing_since.invalidate(&last_key).await;
                }
                Ok((view, loaded))
            }
            Err(ResolverError::Unavailable(why)) => {
                let since = self
                    .reload_failing_since
                    .get_with(last_key.clone(), async { self.clock.monotonic_micros() })
                    .await;
                let failing_for = self.since(since);
                match self.last_loaded.get(&last_key).await {
                    Some(view) if self.trusted(failing_for) => {
                        tracing::debug!(
                            error = %why,
                            stale_for_seconds = failing_for.as_secs(),
                            "cannot reload a changed deployment; serving its last loaded view"
                        );
                        Ok((view, false))
                    }
                    _ => Err(ResolverError::Unavailable(why)),
                }
            }
            Err(err) => Err(err),
        }
    }

    /// A token entry still valid per the feed.
    pub(crate) async fn token(&self, token_id: &str) -> Option<Arc<TokenEntry>> {
        let entry = self.tokens.get(token_id).await?;
        (entry.revision >= self.changed_at(&self.tokens_changed, &entry.workspace)).then_some(entry)
    }

    pub(crate) async fn put_token(&self, token_id: &str, entry: Arc<TokenEntry>) {
        self.tokens.insert(token_id.to_owned(), entry).await;
    }

    /// Records a change of `kind` in `workspace` at `revision`.
    pub(crate) fn invalidate(&self, workspace: &str, kind: &str, revision: i64) {
        let maps: &[&RwLock<HashMap<String, i64>>] = match kind {
            "token" => &[&self.tokens_changed],
            "deployment" => &[&self.tokens_changed, &self.connections_changed],
            "policy" => &[],
            _ => &[&self.connections_changed],
        };
        for map in maps {
            if let Ok(mut map) = map.write() {
                let entry = map.entry(workspace.to_owned()).or_insert(revision);
                *entry = (*entry).max(revision);
            }
        }
    }

    /// Counts every workspace as changed at `revision`: the feed was pruned
    /// past what this follower applied, so the changes in between are
    /// unknown. Views get new keys and reload; a token loaded at or after
    /// `revision` already reflects them and stays valid.
    pub(crate) fn invalidate_everything(&self, revision: i64) {
        self.everything_changed
            .fetch_max(revision, Ordering::AcqRel);
    }

    /// Records a successful feed read up to `applied`.
    pub(crate) fn feed_ok(&self, applied: i64) {
        if let Ok(mut health) = self.health.lock() {
            health.last_ok = self.clock.monotonic_micros();
            health.applied = health.applied.max(applied);
            health.catch_up_failed = false;
        }
    }

    /// Records that a request could not catch up with the feed.
    pub(crate) fn catch_up_failed(&self) {
        if let Ok(mut health) = self.health.lock() {
            health.catch_up_failed = true;
        }
    }

    /// The revision applied so far.
    pub(crate) fn applied(&self) -> i64 {
        self.health
            .lock()
            .map(|health| health.applied)
            .unwrap_or_default()
    }

    /// How long the feed has been unreadable; zero while healthy. A failed
    /// catch-up read counts as an outage from the last successful read.
    pub(crate) fn outage(&self) -> Duration {
        let (since, catch_up_failed) = self
            .health
            .lock()
            .map(|health| (self.since(health.last_ok), health.catch_up_failed))
            .unwrap_or((Duration::MAX, true));
        if since <= self.healthy_within && !catch_up_failed {
            Duration::ZERO
        } else {
            since.max(Duration::from_nanos(1))
        }
    }

    /// The clock's time, in microseconds since the Unix epoch.
    pub(crate) fn now_micros(&self) -> i64 {
        self.clock.now_micros()
    }

    /// How long ago `then` (a [`Clock::monotonic_micros`] reading) was.
    fn since(&self, then: i64) -> Duration {
        Duration::from_micros(u64::try_from(self.clock.monotonic_micros() - then).unwrap_or(0))
    }

    /// Whether cached values may be served without confirming them, the
    /// feed having been unreadable for `outage` (from [`Self::outage`]).
    pub(crate) fn trusted(&self, outage: Duration) -> bool {
        outage < self.max_stale
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(revision: i64) -> Arc<TokenEntry> {
        Arc::new(TokenEntry {
            revision,
            workspace: "acme".to_owned(),
            hash: String::new(),
            principal: Principal::Deployment {
                workspace: "acme".to_owned(),
                deployment: "prod".to_owned(),
                token_id: "t".to_owned(),
            },
        })
    }

    /// A clock that moves only when told to.
    #[derive(Debug, Default)]
    struct TestClock(AtomicI64);

    impl TestClock {
        fn advance(&self, by: Duration) {
            self.0.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
        }
    }

    impl Clock for TestClock {
        fn now_micros(&self) -> i64 {
            self.0.load(Ordering::SeqCst)
        }
    }

    #[test]
    fn outages_and_max_stale_are_measured_on_the_injected_clock() {
        let clock = Arc::new(TestClock::default());
        let caches = Caches::new(
            clock.clone(),
            Duration::from_secs(60),
            Duration::from_secs(1),
            10,
        );
        assert_eq!(caches.outage(), Duration::ZERO);
        clock.advance(Duration::from_secs(30));
        let outage = caches.outage();
        assert_eq!(outage, Duration::from_secs(30));
        assert!(caches.trusted(outage));
        clock.advance(Duration::from_secs(31));
        assert!(!caches.trusted(caches.outage()), "past max_stale");
        caches.feed_ok(11);
        assert_eq!(caches.outage(), Duration::ZERO, "a read ends the outage");
        caches.catch_up_failed();
        assert!(
            caches.outage() > Duration::ZERO,
            "a failed catch-up starts one"
        );
    }

    #[tokio::test]
    async fn a_pruned_feed_invalidates_what_was_loaded_before_its_horizon() {
        let caches = Caches::new(
            Arc::new(TestClock::default()),
            Duration::from_secs(60),
            Duration::from_secs(1),
            10,
        );
        caches.put_token("old", entry(10)).await;
        caches.put_token("new", entry(25)).await;
        assert!(caches.token("old").await.is_some());
        caches.invalidate_everything(20);
        assert!(
            caches.token("old").await.is_none(),
            "loaded before the horizon"
        );
        assert!(
            caches.token("new").await.is_some(),
            "loaded after the horizon"
        );
        // A lower horizon never undoes a higher one.
        caches.invalidate_everything(5);
        assert!(caches.token("old").await.is_none());
        // Views move to a new key, so they reload.
        assert_eq!(caches.changed_at(&caches.connections_changed, "acme"), 20);
    }
}
