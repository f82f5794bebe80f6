//! Switchboard's control service: the gRPC ConnectionService,
//! DeploymentService, WorkspaceService and AuditService. Every call is
//! authenticated, authorized against the caller's role in the resource's
//! workspace, and every mutation writes its audit event and change-feed entry
//! in the same transaction as the change.
//!
//! Two layers: `grpc` holds the tonic adapters (authentication, messages in
//! and out) and `service` with the modules beside it the operations
//! (authorization, validation, transactions, audit), which take domain
//! commands and return store rows or domain values.

mod audit;
mod connections;
mod deployments;
mod error;
mod field_mask;
mod grpc;
mod idempotency;
mod links;
mod page_token;
mod service;
mod workspace;

pub use error::{ControlError, ControlResult};
pub use grpc::Control;
pub use grpc::pb_conversions::{json_to_struct, struct_to_json, timestamp};
pub use page_token::PageTokenKey;
