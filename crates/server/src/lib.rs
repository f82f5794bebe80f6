//! Server composition for the `switchboard` binary: flags and the config file
//! (`config`), the layers every call passes (rate limits, metrics, the answer
//! for methods a process doesn't serve), TLS, retention pruning, and
//! [`run`], which starts `dev`, `control` or `resolver` over the store.

mod config;
mod metrics_layer;
mod rate_limit;
mod retention;
mod serve;
mod start_summary;
mod tls;
mod unimplemented_layer;

pub use config::ServeOpt;
pub use serve::{DEV_JWT_KEY_FILE, Role, migrate, run};
