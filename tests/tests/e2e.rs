//! End-to-end tests: the real `switchboard` binary driven over gRPC (tonic
//! clients and real grpcurl). Build the binary first:
//! `cargo build -p switchboard-cli` (or `scripts/test.sh`, which does).

mod abuse;
mod auth;
mod backends;
mod bad_input;
mod bench;
mod cli;
mod faults;
mod first_hour;
mod first_start;
mod fixture;
mod fuzz_requests;
mod grpcurl;
mod guarantees;
mod hygiene;
mod jwt_claims;
mod kube_namespaces;
mod leak_scan;
mod limits;
mod nested_secrets;
mod permissions;
mod read_your_writes;
mod readme;
mod resolver_feed;
mod seed_story;
mod separate_processes;
mod soak;
mod support;
mod unimplemented;
mod validation;
mod vault_hang;
