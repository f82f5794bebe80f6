//! sea-orm entities, one module per table. Times are Unix microseconds;
//! JSON columns hold serde_json text so SQLite and Postgres store them alike.

pub mod audit_event;
pub mod change;
pub mod connection;
pub mod connection_version;
pub mod deployment;
pub mod deployment_token;
pub mod feed_head;
pub mod link;
pub mod policy;
pub mod request_log;
pub mod secret;
pub mod shared_key;
