//! The ResolverService: catch up with the feed, authenticate, find the
//! deployment, answer from the cache when the feed says it is current, else
//! from the database.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use moka::future::Cache;
use subtle::ConstantTimeEq;
use switchboard_auth::{self as auth, Admission, Authenticator, DEPLOYMENT_TOKEN_PREFIX};
use switchboard_domain::FieldViolation;
use switchboard_domain::conn_id;
use switchboard_domain::names::DeploymentName;
use switchboard_domain::permission::{self, Action, PolicyFlags, Principal};
use switchboard_proto::v1 as pb;
use switchboard_store::audit::AuditRecord;
use switchboard_store::feed::{self, HeadReader};
use switchboard_store::{Clock, Store, visibility};
use tonic::{Request, Response, Status};
use tonic_health::server::HealthReporter;

use crate::cache::{Caches, TokenEntry, View};
use crate::catch_up::CatchUp;
use crate::error::{ResolverError, ResolverResult};
use crate::follower;
use crate::metric_definitions::CacheCounters;
use crate::pb_conversions::resolved_to_pb;

/// Longest a request waits for the database or secret store. With PostgreSQL
/// unreachable, taking a pooled connection would otherwise wait for the
/// pool's own timeout (30 s): longer than callers wait, so they would see
/// CANCELLED or DEADLINE_EXCEEDED instead of UNAVAILABLE.
const BACKEND_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs a backend read, UNAVAILABLE once it took [`BACKEND_TIMEOUT`].
async fn bounded<T>(read: impl Future<Output = ResolverResult<T>>) -> ResolverResult<T> {
    tokio::time::timeout(BACKEND_TIMEOUT, read)
        .await
        .unwrap_or_else(|_| {
            Err(ResolverError::Unavailable(format!(
                "no answer from the backends within {BACKEND_TIMEOUT:?}"
            )))
        })
}

/// A user's resolves of one deployment are audited at most once per this
/// many microseconds of the clock (a minute).
const LOCAL_EXPORT_AUDIT_MICROS: i64 = 60_000_000;
/// Largest number of (caller, deployment, minute) audits remembered. One
/// forgotten early writes one more event, never one fewer.
const MAX_LOCAL_EXPORT_AUDITS: u64 = 10_000;

/// How the resolver follows the feed and tolerates outages.
#[derive(Debug, Clone, Copy)]
pub struct ResolverOptions {
    /// How long cached values are served while the database or secret store is unreachable.
    pub max_stale: Duration,
    /// How often the change feed is polled (PostgreSQL notifications wake it sooner).
    pub poll_interval: Duration,
    /// Whether answers and token lookups are cached. Off, every call reads
    /// the database and secret store (and nothing is held for an outage):
    /// the cold path, for measuring it.
    pub cache: bool,
}

impl Default for ResolverOptions {
    fn default() -> Self {
        Self {
            max_stale: Duration::from_secs(15 * 60),
            poll_interval: Duration::from_millis(250),
            cache: true,
        }
    }
}

/// The resolver's state; cheap to clone.
#[derive(Debug, Clone)]
pub struct Resolver {
    store: Store,
    auth: Authenticator,
    clock: Arc<dyn Clock>,
    caches: Arc<Caches>,
    catch_up: Arc<CatchUp>,
    head_reader: Arc<HeadReader>,
    /// (actor, deployment, minute of the clock) of local exports audited.
    local_export_audits: Cache<(String, String, i64), ()>,
    cache: bool,
    view_counters: CacheCounters,
    token_counters: CacheCounters,
}

impl Resolver {
    /// Builds a resolver over `store` and starts following the change feed.
    /// `health`, when given, turns NOT_SERVING once cached values are older than `max_stale`.
    pub async fn start(
        store: Store,
        auth: Authenticator,
        clock: Arc<dyn Clock>,
        options: ResolverOptions,
        health: Option<HealthReporter>,
    ) -> ResolverResult<Self> {
        let head = feed::head(store.db()).await?;
        // Three missed polls (plus slack) before the feed counts as down.
        let healthy_within = options.poll_interval * 3 + Duration::from_secs(1);
        let caches = Arc::new(Caches::new(
            clock.clone(),
            options.max_stale,
            healthy_within,
            head,
        ));
        tokio::spawn(follower::run(
            store.clone(),
            caches.clone(),
            options.poll_interval,
            health,
        ));
        Ok(Self {
            head_reader: Arc::new(HeadReader::new(store.db().clone())),
            store,
            auth,
            clock,
            caches,
            catch_up: Arc::new(CatchUp::default()),
            local_export_audits: Cache::builder()
                .max_capacity(MAX_LOCAL_EXPORT_AUDITS)
                // Memory only: a key's minute is over long before this.
                .time_to_live(Duration::from_secs(120))
                .build(),
            cache: options.cache,
            view_counters: CacheCounters::new("view"),
            token_counters: CacheCounters::new("token"),
        })
    }

    /// The gRPC service, ready to add to a tonic router.
    pub fn service(&self) -> pb::resolver_service_server::ResolverServiceServer<Self> {
        pb::resolver_service_server::ResolverServiceServer::new(self.clone())
    }

    /// Counts a hit; during an outage (`outage` non-zero) also a stale answer.
    fn note_hit(counters: &CacheCounters, outage: Duration) {
        counters.hits.increment(1);
        if !outage.is_zero() {
            counters.stale_served.increment(1);
        }
    }

    async fn policy_flags(&self, workspace: &str) -> ResolverResult<PolicyFlags> {
        Ok(switchboard_store::policy::flags(self.store.db(), workspace).await?)
    }

    /// Read your writes: catches the caches up with every write committed
    /// before this call, so that a cached answer (a token, a view, a
    /// NOT_FOUND) is as current as the database. Concurrent calls share the
    /// read (see [`CatchUp`]). While the feed is known unreadable the caches
    /// are served as they are, within `max_stale`; a read that fails or
    /// times out makes it known unreadable until the follower reads again.
    async fn catch_up(&self) {
        if !self.cache || !self.caches.outage().is_zero() {
            return;
        }
        // Boxed, like every database path, to keep the call's future small.
        Box::pin(self.catch_up.run(|| async {
            match follower::catch_up(&self.store, &self.head_reader, &self.caches).await {
                Ok(()) => true,
                Err(err) => {
                    tracing::debug!(error = %err, "cannot read the change feed before answering; serving cached values");
                    self.caches.catch_up_failed();
                    false
                }
            }
        }))
        .await;
    }

    /// Audits a user's resolve of a deployment (a local export reveals
    /// secrets to a person), at most once per caller, deployment and minute
    /// of the clock: `local env --watch` and the shim resolve every few
    /// seconds, and an event per call would bury the rest of the audit log.
    /// Concurrent calls share one insert and fail with it; a failed insert
    /// is not remembered, so nothing is served unaudited.
    async fn audit_local_export(
        &self,
        principal: &Principal,
        name: &DeploymentName,
    ) -> ResolverResult<()> {
        let now = self.clock.now_micros();
        let key = (
            principal.actor(),
            name.to_string(),
            now.div_euclid(LOCAL_EXPORT_AUDIT_MICROS),
        );
        let insert = switchboard_store::audit::insert(
            self.store.db(),
            AuditRecord {
                workspace: &name.workspace,
                actor: principal.actor(),
                action: "ResolveConnections",
                resource: name.to_string(),
                request_id: "",
                changed_fields: Vec::new(),
            },
            None,
            now,
        );
        Box::pin(self.local_export_audits.try_get_with(key, async {
            bounded(async {
                insert.await?;
                Ok(())
            })
            .await
        }))
        .await
        .map_err(|err| (*err).clone())
    }

    /// Authenticates, serving deployment tokens from the cache when current.
    async fn principal(&self, header: Option<&str>) -> ResolverResult<Principal> {
        let token = header
            .and_then(|header| {
                header
                    .strip_prefix("Bearer ")
                    .or_else(|| header.strip_prefix("bearer "))
            })
            .map(str::trim)
            .filter(|token| token.starts_with(DEPLOYMENT_TOKEN_PREFIX));
        // The database paths are boxed so that the future of a cached call
        // stays small: it is moved and allocated on every call.
        let Some(token) = token.filter(|_| self.cache) else {
            return Box::pin(bounded(async {
                Ok(self.auth.authenticate(self.store.db(), header).await?)
            }))
            .await;
        };
        let token_id = auth::parse_token_id(token)
            .ok_or_else(|| ResolverError::Unauthenticated(auth::deployment_token_refusal()))?;
        let presented = auth::hash_token(token);
        let outage = self.caches.outage();
        if self.caches.trusted(outage)
            && let Some(entry) = self.caches.token(token_id).await
        {
            let matches: bool = presented.as_bytes().ct_eq(entry.hash.as_bytes()).into();
            if !matches {
                return Err(ResolverError::Unauthenticated(
                    auth::deployment_token_refusal(),
                ));
            }
            Self::note_hit(&self.token_counters, outage);
            return Ok(entry.principal.clone());
        }
        self.token_counters.misses.increment(1);
        let (revision, principal) = Box::pin(bounded(async {
            let revision = feed::head(self.store.db()).await?;
            Ok((
                revision,
                self.auth.authenticate(self.store.db(), header).await?,
            ))
        }))
        .await?;
        if let Principal::Deployment { workspace, .. } = &principal {
            let entry = TokenEntry {
                revision,
                workspace: workspace.clone(),
                hash: presented,
                principal: principal.clone(),
            };
            self.caches.put_token(token_id, Arc::new(entry)).await;
        }
        Ok(principal)
    }

    /// Authenticates the caller and names the deployment it may resolve.
    async fn target<T>(
        &self,
        request: &Request<T>,
        deployment: &str,
    ) -> ResolverResult<DeploymentName> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        // Caught up before authenticating: a deployment token minted just
        // now is known only once its write is applied.
        self.catch_up().await;
        let outcome = self.principal(header).await;
        // The rate limit is charged once the caller is known (or known to
        // have failed authentication), before any work.
        Admission::check(request.extensions().get(), outcome.as_ref().ok())?;
        let principal = outcome?;
        let name = match (&principal, deployment.is_empty()) {
            (
                Principal::Deployment {
                    workspace,
                    deployment,
                    ..
                },
                true,
            ) => DeploymentName {
                workspace: workspace.clone(),
                deployment: deployment.clone(),
            },
            (Principal::User { .. }, true) => {
                return Err(ResolverError::InvalidArgument(vec![FieldViolation::new(
                    "deployment",
                    "is required with a user token",
                )]));
            }
            (_, false) => DeploymentName::parse("deployment", deployment)?,
        };
        let policy = match principal {
            Principal::User { .. } => Box::pin(bounded(self.policy_flags(&name.workspace))).await?,
            Principal::Deployment { .. } => PolicyFlags::default(),
        };
        permission::authorize(
            &principal,
            &name.workspace,
            Action::Resolve,
            policy,
            Some(&name.deployment),
        )?;
        if let Principal::User { .. } = &principal {
            self.audit_local_export(&principal, &name).await?;
        }
        Ok(name)
    }

    /// The deployment's effective connections, from cache when current.
    /// Without a cache, `only` (a conn_id) limits the load to that connection.
    async fn view(&self, name: &DeploymentName, only: Option<&str>) -> ResolverResult<Arc<View>> {
        let outage = self.caches.outage();
        if !self.cache || !self.caches.trusted(outage) {
            // No cache, or too long without the feed for cached views to be
            // vouched for.
            self.view_counters.misses.increment(1);
            let only = only.filter(|_| !self.cache).map(conn_id::fold);
            return Box::pin(bounded(self.load_view(name, only))).await;
        }
        let (view, loaded) = self
            .caches
            .view_or_load(&name.workspace, &name.deployment, outage, || {
                Box::pin(bounded(self.load_view(name, None)))
            })
            .await?;
        if loaded {
            self.view_counters.misses.increment(1);
        } else {
            Self::note_hit(&self.view_counters, outage);
        }
        Ok(view)
    }

    /// Loads a deployment's effective connections (or, with `only`, a
    /// case-folded conn_id, just that one) from the backends.
    async fn load_view(
        &self,
        name: &DeploymentName,
        only: Option<String>,
    ) -> ResolverResult<Arc<View>> {
        // Rows and their secrets are separate reads, so a write committed
        // between them (a connection deleted, its secrets with it) can fail
        // a load. A failure while the feed moved on is retried on the new state.
        const ATTEMPTS: usize = 3;
        let db = self.store.db();
        let mut attempt = 1;
        loop {
            // Read before the data: a change racing this load marks the view stale.
            let revision = feed::head(db).await?;
            match self.load_view_at(name, only.as_deref(), revision).await {
                Err(err @ (ResolverError::Internal(_) | ResolverError::NotFound(_)))
                    if attempt < ATTEMPTS && feed::head(db).await? != revision =>
                {
                    tracing::debug!(error = %err, attempt, "a write raced a view load; loading again");
                    attempt += 1;
                }
                result => return result,
            }
        }
    }

    async fn load_view_at(
        &self,
        name: &DeploymentName,
        only: Option<&str>,
        revision: i64,
    ) -> ResolverResult<Arc<View>> {
        let db = self.store.db();
        let deployment = visibility::find_deployment(db, &name.workspace, &name.deployment)
            .await?
            .ok_or_else(|| ResolverError::NotFound(format!("deployment {name} not found")))?;
        let visible = visibility::visible_connections(db, &deployment, only).await?;
        let connections = visibility::effective_all(self.store.secrets(), db, &visible)
            .await?
            .iter()
            .map(|effective| {
                (
                    conn_id::fold(&effective.conn_id),
                    resolved_to_pb(effective, revision),
                )
            })
            .collect();
        Ok(Arc::new(View {
            revision,
            connections,
        }))
    }
}

#[tonic::async_trait]
impl pb::resolver_service_server::ResolverService for Resolver {
    // A debug span: at the default info level it costs nothing on this hot path.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn resolve_connection(
        &self,
        request: Request<pb::ResolveConnectionRequest>,
    ) -> Result<Response<pb::ResolvedConnection>, Status> {
        let wanted = &request.get_ref().conn_id;
        conn_id::validate(wanted).map_err(|why| {
            ResolverError::InvalidArgument(vec![FieldViolation::new("conn_id", why)])
        })?;
        let name = self.target(&request, &request.get_ref().deployment).await?;
        let view = self.view(&name, Some(wanted)).await?;
        let folded = conn_id::fold(wanted);
        let (_, connection) = view
            .connections
            .iter()
            .find(|(key, _)| *key == folded)
            .ok_or_else(|| {
                ResolverError::NotFound(format!(
                    "connection {wanted} is not linked to deployment {}",
                    name.deployment
                ))
            })?;
        Ok(Response::new(connection.clone()))
    }

    // A debug span: at the default info level it costs nothing on this hot path.
    #[tracing::instrument(level = "debug", skip_all)]
    async fn list_resolved_connections(
        &self,
        request: Request<pb::ListResolvedConnectionsRequest>,
    ) -> Result<Response<pb::ListResolvedConnectionsResponse>, Status> {
        let name = self.target(&request, &request.get_ref().deployment).await?;
        let view = self.view(&name, None).await?;
        Ok(Response::new(pb::ListResolvedConnectionsResponse {
            connections: view
                .connections
                .iter()
                .map(|(_, connection)| connection.clone())
                .collect(),
            revision: view.revision,
            deployment: name.to_string(),
        }))
    }
}
