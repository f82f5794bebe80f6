//! The Kubernetes Secret sync's metric names, in one place.

/// Failed Kubernetes API calls, labelled `operation` (`get`, `apply`,
/// `delete`, `list`) and `reason` (the HTTP status, or `transport`).
pub const ERRORS_TOTAL: &str = "switchboard_kube_sync_errors_total";
/// Secrets written by server-side apply.
pub const APPLIES_TOTAL: &str = "switchboard_kube_sync_applies_total";
/// Managed Secrets deleted.
pub const DELETES_TOTAL: &str = "switchboard_kube_sync_deletes_total";
/// Deployment reconciles that gave up after their retries; retried later.
pub const RECONCILE_FAILURES_TOTAL: &str = "switchboard_kube_sync_reconcile_failures_total";
/// Secrets left alone because they lack the managed label or belong to
/// another deployment.
pub const SKIPPED_TOTAL: &str = "switchboard_kube_sync_skipped_total";
/// 1 while a deployment's Secret is refused or written only in part,
/// labelled `workspace`, `deployment` and `reason` (see `SyncProblem`); 0
/// once fixed.
pub const DEPLOYMENT_PROBLEMS: &str = "switchboard_kube_sync_deployment_problems";
/// Latest change-feed revision the sync has acted on.
pub const FEED_REVISION: &str = "switchboard_kube_sync_feed_revision";

/// Registers descriptions with the installed recorder.
pub fn describe_metrics() {
    metrics::describe_counter!(
        ERRORS_TOTAL,
        "failed Kubernetes API calls, by operation and reason"
    );
    metrics::describe_counter!(APPLIES_TOTAL, "Secrets written by server-side apply");
    metrics::describe_counter!(DELETES_TOTAL, "managed Secrets deleted");
    metrics::describe_counter!(
        RECONCILE_FAILURES_TOTAL,
        "deployment reconciles that failed after retries"
    );
    metrics::describe_counter!(
        SKIPPED_TOTAL,
        "Secrets left alone: not managed by Switchboard, or another deployment's"
    );
    metrics::describe_gauge!(
        DEPLOYMENT_PROBLEMS,
        "1 while a deployment's Secret is refused or incomplete, by workspace, deployment and reason"
    );
    metrics::describe_gauge!(
        FEED_REVISION,
        "latest change-feed revision the Secret sync acted on"
    );
}
