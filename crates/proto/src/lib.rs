//! Generated gRPC code for the `switchboard.v1` package and its file
//! descriptor set, for reflection; [`convert`] between its well-known types
//! and JSON/time, and [`status`], the statuses both services answer with.

/// The `switchboard` proto package.
pub mod switchboard {
    /// Version 1 of the contract.
    pub mod v1 {
        // Generated code: prost and tonic emit items without docs and public
        // items the lints would otherwise flag.
        #![allow(
            missing_docs,
            unreachable_pub,
            missing_debug_implementations,
            clippy::all
        )]
        include!(concat!(env!("OUT_DIR"), "/switchboard.v1.rs"));
    }
}

pub use switchboard::v1;

pub mod convert;
pub mod status;

/// Encoded `FileDescriptorSet` of every proto in the contract, imports included.
pub const FILE_DESCRIPTOR_SET: &[u8] =
    tonic::include_file_descriptor_set!("switchboard_descriptor");

/// Fully qualified names of every service in the contract.
pub const SERVICE_NAMES: &[&str] = &[
    "switchboard.v1.ConnectionService",
    "switchboard.v1.DeploymentService",
    "switchboard.v1.WorkspaceService",
    "switchboard.v1.ResolverService",
    "switchboard.v1.AuditService",
];
