//! Switchboard's pure logic: the connection-type catalog, conn_id rules,
//! validation, the merge of a connection with its link overrides, Airflow's
//! JSON and URI encodings, resource names and the permission table.
//!
//! Nothing here performs I/O or knows about gRPC, databases or Vault.

pub mod airflow;
pub mod catalog;
pub mod conn_id;
pub mod connection;
pub mod deployment;
pub mod duration;
pub mod error;
pub mod field_paths;
pub mod names;
pub mod namespaces;
pub mod permission;
pub mod refusal;
pub mod sensitive;
pub mod validate;

pub use connection::{ConnectionSpec, Extra, Overrides, SecretValues};
pub use error::{DomainError, DomainResult, FieldViolation};
