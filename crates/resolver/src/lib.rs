//! Switchboard's resolver: the ResolverService Airflow deployments call on
//! their hot path. It authenticates deployment tokens (or users the policy
//! allows), and answers with the deployment's effective connections read
//! straight from the database and secret store; it holds no state of its own.

mod error;
mod pb_conversions;
mod service;

pub use error::{ResolverError, ResolverResult};
pub use service::Resolver;
