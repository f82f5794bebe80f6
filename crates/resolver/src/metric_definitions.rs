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
