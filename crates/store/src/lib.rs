//! Switchboard's persistence: sea-orm entities and migrations for SQLite and
//! PostgreSQL, the change feed every write transaction records into, the
//! embedded encrypted secret store, and the queries control and the resolver
//! share (what a deployment sees).

pub mod audit;
pub mod auth;
pub mod deployments;
pub mod entity;
pub mod feed;
pub mod jwks;
pub mod keyfile;
pub mod migration;
pub mod plaintext_secrets;
pub mod policy;
pub mod private_file;
pub mod records;
pub mod retention;
pub mod secrets;
pub mod tokens;
pub mod vault;
pub mod visibility;

mod error;
mod store;

pub use error::{StoreError, StoreResult};
pub use sea_orm;
pub use secrets::{SecretStore, StagedSecrets};
pub use store::{Clock, Store, SystemClock, WriteTxn};
