//! The resolver's metric names, in one place.

/// Cache lookups that found a valid entry, labelled `cache` (`view`, `token`).
pub(crate) const CACHE_HITS_TOTAL: &str = "switchboard_resolver_cache_hits_total";
/// Cache lookups that had to read the database, labelled `cache`.
pub(crate) const CACHE_MISSES_TOTAL: &str = "switchboard_resolver_cache_misses_total";
/// Answers served from cache while the database or secret store was unreachable.
pub(crate) const STALE_SERVED_TOTAL: &str = "switchboard_resolver_stale_served_total";
/// Seconds since the change feed was last read successfully (0 when healthy).
pub(crate) const STALENESS_SECONDS: &str = "switchboard_resolver_staleness_seconds";
/// Latest change-feed revision this replica has applied.
pub(crate) const FEED_REVISION: &str = "switchboard_resolver_feed_revision";
/// Seconds between a change's commit and this replica applying it (last batch).
pub(crate) const FEED_LAG_SECONDS: &str = "switchboard_resolver_feed_lag_seconds";
/// Change-feed polls that failed.
pub(crate) const FEED_ERRORS_TOTAL: &str = "switchboard_resolver_feed_errors_total";

/// One cache's counters, registered once at start: looking a counter up by
/// name and label on every call costs about as much as the cached answer.
/// (Made after the recorder is installed, or they count nowhere.)
#[derive(Clone)]
pub(crate) struct CacheCounters {
    pub hits: metrics::Counter,
    pub misses: metrics::Counter,
    pub stale_served: metrics::Counter,
}

impl CacheCounters {
    pub(crate) fn new(cache: &'static str) -> Self {
        Self {
            hits: metrics::counter!(CACHE_HITS_TOTAL, "cache" => cache),
            misses: metrics::counter!(CACHE_MISSES_TOTAL, "cache" => cache),
            stale_served: metrics::counter!(STALE_SERVED_TOTAL, "cache" => cache),
        }
    }
}

impl std::fmt::Debug for CacheCounters {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("CacheCounters")
            .finish_non_exhaustive()
    }
}

/// Registers descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(CACHE_HITS_TOTAL, "resolver cache hits, by cache");
    metrics::describe_counter!(CACHE_MISSES_TOTAL, "resolver cache misses, by cache");
    metrics::describe_counter!(
        STALE_SERVED_TOTAL,
        "answers served from cache during a backend outage"
    );
    metrics::describe_gauge!(
        STALENESS_SECONDS,
        "seconds since the change feed was last read"
    );
    metrics::describe_gauge!(FEED_REVISION, "latest change-feed revision applied");
    metrics::describe_gauge!(FEED_LAG_SECONDS, "seconds from commit to applying a change");
    metrics::describe_counter!(FEED_ERRORS_TOTAL, "failed change-feed polls");
}
