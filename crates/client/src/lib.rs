//! The `switchboard` client commands: `login`, `connections`, `links`,
//! `deployments`, `types`, `policy`, `audit` and `local env`. They call a
//! Switchboard server over gRPC (`switchboard-proto`) with the user's token,
//! print tables, JSON or YAML, and exit with a code that tells scripts what
//! went wrong. No server code is linked in: only the contract, the pure
//! domain rules (Airflow names, durations) and the private-file writer.

mod audit;
mod connections;
mod context;
mod deployments;
mod error;
mod fields;
mod git_ignore;
mod input;
mod links;
mod local;
mod output;
mod pages;
mod policy;
mod render;
mod session;
mod transport;
mod types;
mod unknown_keys;

use std::process::ExitCode;

use clap::Subcommand;

/// The exit codes, as a literal for `concat!` in help texts.
macro_rules! exit_codes_help {
    () => {
        "Exit codes: 0 ok, 1 other error, 2 bad usage or input, 3 the server rejected a field \
         (INVALID_ARGUMENT, each bad field named), 4 not found, 5 already exists, 6 conflict \
         (stale etag or failed precondition), 7 not authenticated or not allowed, 8 server \
         unreachable or unavailable."
    };
}
pub(crate) use exit_codes_help;
pub use output::print_stdout;

/// The client commands, flattened into the top-level `switchboard` command.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Stores an endpoint and a user token as a named context in the config dir.
    #[command(
        after_help = "Example:\n  switchboard token user --subject me --role acme=OWNER \
        | switchboard login --endpoint 127.0.0.1:50051 --workspace acme"
    )]
    Login(context::LoginOpt),
    /// Forgets the token of a context (its endpoint and workspace stay).
    #[command(after_help = "Example:\n  switchboard logout --context prod")]
    Logout(context::LogoutOpt),
    /// Lists, selects and deletes stored contexts.
    #[command(subcommand)]
    Contexts(context::ContextsCommand),
    /// Manages a workspace's connections.
    Connections(connections::ConnectionsArgs),
    /// Links connections to deployments, with per-deployment field overrides.
    Links(links::LinksArgs),
    /// Manages a workspace's deployments and their tokens.
    Deployments(deployments::DeploymentsArgs),
    /// Shows the catalog of connection types, or one type's parameters.
    Types(types::TypesArgs),
    /// Reads and changes the workspace policy.
    Policy(policy::PolicyArgs),
    /// Lists the workspace's audit events, newest first.
    Audit(audit::AuditArgs),
    /// Local development: a deployment's connections for a laptop's Airflow.
    Local(local::LocalArgs),
}

/// Runs a client command; the process exit code.
pub fn run(command: ClientCommand) -> ExitCode {
    let result = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime.block_on(run_async(command)),
        Err(err) => Err(anyhow::Error::new(err).context("cannot start the async runtime")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error::describe(&err));
            ExitCode::from(error::exit_code(&err))
        }
    }
}

async fn run_async(command: ClientCommand) -> anyhow::Result<()> {
    match command {
        ClientCommand::Login(opt) => context::login(opt).await,
        ClientCommand::Logout(opt) => context::logout(&opt),
        ClientCommand::Contexts(command) => context::run_contexts(command),
        ClientCommand::Connections(args) => connections::run(args).await,
        ClientCommand::Links(args) => links::run(args).await,
        ClientCommand::Deployments(args) => deployments::run(args).await,
        ClientCommand::Types(args) => types::run(args).await,
        ClientCommand::Policy(args) => policy::run(args).await,
        ClientCommand::Audit(args) => audit::run(args).await,
        ClientCommand::Local(args) => local::run(args).await,
    }
}
