//! Kubernetes Secret sync: one Secret per deployment whose `secret_delivery`
//! asks for it, in the deployment's namespace, named
//! `switchboard-<workspace>.<id>` (see [`secret_name`]). Only namespaces the
//! server's [`AllowedNamespaces`] give the workspace are written.
//!
//! - TOKEN mode: keys `address` (the resolver) and `token` (a deployment
//!   token, description "kubernetes secret"). Tokens are stored only as
//!   hashes, so the token is read back from the Secret; a Secret that is gone
//!   or holds an invalid token gets a new token, and the deployment's other
//!   "kubernetes secret" tokens are revoked once the new one is a grace
//!   period old.
//! - ENV mode: one `AIRFLOW_CONN_<ID>` key per effective connection, in
//!   Airflow's JSON. Keys that are not environment variable names are left
//!   out, and a Secret over 1 MiB is not written; both are reported on the
//!   deployment ([`SyncProblem`]), never by failing the workspace.
//!
//! Writes are server-side applies with field manager `switchboard`, made only
//! when the Secret read back differs, so a repeat writes nothing. A Secret
//! without the managed-by label is never written or deleted. The loop
//! follows the change feed (a change in a workspace reconciles that
//! workspace's deployments) and runs a periodic full resync that repairs
//! drift and removes managed Secrets no deployment wants. It runs in its own
//! task: a Kubernetes outage delays Secrets, never control's API.

mod client;
mod desired;
mod error;
pub mod metric_definitions;
mod reconcile;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use switchboard_store::{Clock, Store, feed};
use tokio::time::Instant;

pub use client::connect;
pub use desired::{
    ADDRESS_KEY, DEPLOYMENT_LABEL, FIELD_MANAGER, INSTANCE_LABEL, MANAGED_BY_LABEL,
    MANAGED_BY_VALUE, MAX_SECRET_BYTES, NOTE_ANNOTATION, SOURCE_ANNOTATION, TOKEN_KEY,
    WORKSPACE_LABEL, legacy_secret_name, managed_selector, secret_name,
};
pub use error::{KubeSyncError, KubeSyncResult};
pub use metric_definitions::describe_metrics;
pub use reconcile::{GRANTS_SECRET_ACCESS, KUBE_TOKEN_DESCRIPTION};
pub use switchboard_domain::namespaces::AllowedNamespaces;

use client::SecretClient;
use metric_definitions::FEED_REVISION;

/// Changes read from the feed per poll.
const FEED_BATCH: u64 = 1000;

/// How the sync behaves.
#[derive(Debug, Clone)]
pub struct KubeSyncOptions {
    /// The resolver address TOKEN Secrets carry (`host:port`).
    pub resolver_address: String,
    /// How long a replaced "kubernetes secret" token stays valid.
    pub token_grace: Duration,
    /// How often every Secret is checked, repairing drift.
    pub resync_every: Duration,
    /// How often the change feed is polled.
    pub poll_every: Duration,
    /// Tries per deployment before a reconcile is left for later.
    pub retry_attempts: u32,
    /// First delay between tries; doubles each time.
    pub retry_backoff: Duration,
    /// Longest delay between tries.
    pub retry_backoff_max: Duration,
    /// The namespaces each workspace may deliver to. A deployment in any
    /// other namespace gets no Secret (and loses one it had), and the
    /// refusal is reported on the deployment.
    pub allowed_namespaces: AllowedNamespaces,
}

impl Default for KubeSyncOptions {
    fn default() -> Self {
        Self {
            resolver_address: String::new(),
            token_grace: Duration::from_secs(10 * 60),
            resync_every: Duration::from_secs(5 * 60),
            poll_every: Duration::from_secs(1),
            retry_attempts: 5,
            retry_backoff: Duration::from_millis(200),
            retry_backoff_max: Duration::from_secs(30),
            allowed_namespaces: AllowedNamespaces::default(),
        }
    }
}

impl KubeSyncOptions {
    /// The delay after the `failures`-th failure: exponential, capped.
    fn backoff(&self, failures: u32) -> Duration {
        let factor = 2u32.saturating_pow(failures.saturating_sub(1).min(16));
        self.retry_backoff
            .saturating_mul(factor)
            .min(self.retry_backoff_max)
    }
}

/// What one reconcile did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SyncReport {
    /// Secrets written.
    pub applied: usize,
    /// Managed Secrets deleted.
    pub deleted: usize,
    /// Secrets already as wanted.
    pub unchanged: usize,
    /// Secrets left alone (unmanaged, or another deployment's).
    pub skipped: usize,
    /// Deployment tokens issued for TOKEN Secrets.
    pub tokens_issued: usize,
    /// Replaced tokens revoked after their grace period.
    pub tokens_revoked: usize,
    /// Deployments (or namespaces) whose reconcile failed after its retries.
    pub failed: usize,
    /// Deployments whose Secret was refused or written only in part, for a
    /// reason retrying cannot fix (see [`KubeSync::problems`]).
    pub rejected: usize,
}

impl std::ops::AddAssign for SyncReport {
    fn add_assign(&mut self, other: Self) {
        self.applied += other.applied;
        self.deleted += other.deleted;
        self.unchanged += other.unchanged;
        self.skipped += other.skipped;
        self.tokens_issued += other.tokens_issued;
        self.tokens_revoked += other.tokens_revoked;
        self.failed += other.failed;
        self.rejected += other.rejected;
    }
}

/// Why a deployment's Secret was refused or written only in part: reported
/// per deployment (log, the [`metric_definitions::DEPLOYMENT_PROBLEMS`]
/// gauge, [`KubeSync::problems`]) while every other deployment still syncs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncProblem {
    /// `namespace_not_allowed`, `invalid_env_key`, `secret_too_large` or
    /// `name_taken`; the gauge's `reason` label.
    pub reason: &'static str,
    /// What is wrong and what was done, naming no secret value.
    pub message: String,
}

/// The Secret sync. Drive it with [`KubeSync::run`] in its own task, or call
/// the reconcile steps directly.
#[derive(Debug)]
pub struct KubeSync {
    store: Store,
    secrets: SecretClient,
    clock: Arc<dyn Clock>,
    options: KubeSyncOptions,
    /// This installation's id (from the database, shared by every replica),
    /// read on first use.
    instance: Option<String>,
    /// Where each deployment's managed Secret was last seen:
    /// (workspace, deployment) → namespace. Finds the Secret of a deployment
    /// that was deleted or moved.
    known: HashMap<(String, String), String>,
    /// Tokens issued but not yet seen in their Secret, reused while an apply
    /// keeps failing instead of issuing one per try.
    issued: HashMap<(String, String), String>,
    /// Workspaces with a replaced token to revoke, and when (clock micros).
    revoke_due: HashMap<String, i64>,
    /// Deployments whose last reconcile found a problem:
    /// (workspace, deployment) → problems.
    problems: HashMap<(String, String), Vec<SyncProblem>>,
}

impl KubeSync {
    /// A sync writing through `client`.
    pub fn new(
        store: Store,
        client: kube::Client,
        clock: Arc<dyn Clock>,
        options: KubeSyncOptions,
    ) -> Self {
        Self {
            store,
            secrets: SecretClient::new(client),
            clock,
            options,
            instance: None,
            known: HashMap::new(),
            issued: HashMap::new(),
            revoke_due: HashMap::new(),
            problems: HashMap::new(),
        }
    }

    /// The problems the last reconcile of `workspace`/`deployment` found;
    /// empty when its Secret is as wanted.
    pub fn problems(&self, workspace: &str, deployment: &str) -> &[SyncProblem] {
        self.problems
            .get(&(workspace.to_owned(), deployment.to_owned()))
            .map_or(&[], Vec::as_slice)
    }

    /// Follows the change feed and resyncs periodically, until the task is
    /// dropped. Never returns on errors: they are logged, counted and retried.
    pub async fn run(mut self) {
        let mut cursor = loop {
            match feed::head(self.store.db()).await {
                Ok(head) => break head,
                Err(err) => {
                    tracing::warn!(error = %err, "kubernetes sync cannot read the change feed; retrying");
                    tokio::time::sleep(self.options.poll_every).await;
                }
            }
        };
        tracing::info!(revision = cursor, "kubernetes secret sync started");
        let mut next_resync = Instant::now();
        let mut resync_failures = 0u32;
        // Workspaces whose last reconcile failed: (failures, next try).
        let mut retry: HashMap<String, (u32, Instant)> = HashMap::new();
        loop {
            let mut dirty = BTreeSet::new();
            loop {
                let read = match feed::changes_after(self.store.db(), cursor, FEED_BATCH).await {
                    Ok(changes) => feed::pruned_through(self.store.db())
                        .await
                        .map(|horizon| (changes, horizon)),
                    Err(err) => Err(err),
                };
                match read {
                    Ok((changes, horizon)) => {
                        if horizon > cursor {
                            // Changes were pruned before this sync saw them:
                            // resync every workspace now.
                            tracing::warn!(
                                cursor,
                                pruned_through = horizon,
                                "the change feed was pruned past the kubernetes sync's cursor; resyncing everything"
                            );
                            next_resync = Instant::now();
                            cursor = horizon;
                        }
                        for change in &changes {
                            dirty.insert(change.workspace.clone());
                            cursor = cursor.max(change.revision);
                        }
                        metrics::gauge!(FEED_REVISION).set(cursor as f64);
                        if (changes.len() as u64) < FEED_BATCH {
                            break;
                        }
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "kubernetes sync cannot read the change feed; retrying");
                        break;
                    }
                }
            }
            if Instant::now() >= next_resync {
                let failed = match self.reconcile_all().await {
                    Ok(report) => {
                        tracing::info!(
                            applied = report.applied,
                            deleted = report.deleted,
                            unchanged = report.unchanged,
                            skipped = report.skipped,
                            failed = report.failed,
                            "kubernetes secret resync finished"
                        );
                        report.failed > 0
                    }
                    Err(err) => {
                        tracing::warn!(error = %err, "kubernetes secret resync failed");
                        true
                    }
                };
                resync_failures = if failed { resync_failures + 1 } else { 0 };
                let wait = if failed {
                    self.options
                        .backoff(resync_failures)
                        .min(self.options.resync_every)
                } else {
                    self.options.resync_every
                };
                next_resync = Instant::now() + wait;
                // The resync covered every workspace.
                if !failed {
                    retry.clear();
                }
                dirty.clear();
            }
            let now_micros = self.clock.now_micros();
            self.revoke_due.retain(|workspace, due| {
                if *due <= now_micros {
                    dirty.insert(workspace.clone());
                    false
                } else {
                    true
                }
            });
            let now = Instant::now();
            for (workspace, (_, next)) in &retry {
                if *next <= now {
                    dirty.insert(workspace.clone());
                }
            }
            for workspace in dirty {
                let ok = match self.reconcile_workspace(&workspace).await {
                    Ok(report) => report.failed == 0,
                    Err(err) => {
                        tracing::warn!(workspace = %workspace, error = %err, "kubernetes sync of a workspace failed");
                        false
                    }
                };
                if ok {
                    retry.remove(&workspace);
                } else {
                    let failures = retry.get(&workspace).map_or(0, |(failures, _)| *failures) + 1;
                    let next = Instant::now() + self.options.backoff(failures);
                    retry.insert(workspace, (failures, next));
                }
            }
            tokio::time::sleep(self.options.poll_every).await;
        }
    }
}
