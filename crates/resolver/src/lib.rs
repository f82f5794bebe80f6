//! Switchboard's resolver: the ResolverService Airflow deployments call on
//! their hot path. It authenticates deployment tokens (or users the policy
//! allows) and answers with the deployment's effective connections. It is
//! stateless: a bounded cache in front of the database and secret store,
//! invalidated by following the change feed and caught up with it before each
//! answer (read your writes), and serving cached values for up to `max_stale`
//! when the backends are unreachable.

mod cache;
mod catch_up;
mod error;
mod follower;
mod metric_definitions;
mod pb_conversions;
mod service;

pub use error::{ResolverError, ResolverResult};
pub use metric_definitions::describe_metrics;
pub use service::{Resolver, ResolverOptions};
