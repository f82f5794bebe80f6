//! Switchboard's persistence: sea-orm entities and migrations for SQLite and
//! PostgreSQL, the change feed every write transaction records into, the
//! embedded encrypted secret store, and one repository module per table
//! group ([`connections`], [`links`], [`deployments`], [`tokens`], [`audit`],
//! [`policy`], [`request_log`], [`feed`], and [`visibility`]: what a
//! deployment sees). The services name no SQL: this is the only crate that
//! speaks sea-orm.

pub mod audit;
pub mod connections;
pub mod deployments;
pub mod entity;
pub mod feed;
pub mod keyfile;
pub mod links;
pub mod migration;
pub mod plaintext_secrets;
pub mod policy;
pub mod private_file;
pub mod records;
pub mod request_log;
pub mod retention;
pub mod secrets;
pub mod tokens;
pub mod vault;
pub mod visibility;

mod error;
mod store;

pub use error::{StoreError, StoreFailure, StoreResult};
/// For tests that look at rows directly; the services go through the
/// repositories above.
pub use sea_orm;
/// What every repository function reads or writes through: the pool
/// ([`Store::db`]) or a write transaction ([`WriteTxn::txn`]).
pub use sea_orm::ConnectionTrait as DbHandle;
pub use secrets::{SecretStore, StagedSecrets};
pub use store::{Clock, Store, SystemClock, WriteTxn};
