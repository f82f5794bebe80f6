//! The `switchboard` command line: the clap tree over the servers
//! (`switchboard-server`), the client commands (`switchboard-client`),
//! `token user`, `bench` (`switchboard-bench`) and `completions`.

mod completions;
mod token;

use std::ffi::OsString;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Switchboard: define Airflow connections once per workspace, link them to
/// deployments with per-deployment overrides, and serve each deployment its
/// merged copy.
#[derive(Debug, Parser)]
#[command(name = "switchboard", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serves every service on one address with embedded defaults (SQLite and
    /// encrypted secrets in the data dir).
    ///
    /// Example: switchboard dev --data-dir ./.switchboard --listen 127.0.0.1:50051
    Dev(switchboard_server::ServeOpt),
    /// Serves the control services (connections, deployments, policy, audit).
    ///
    /// Example: switchboard control --database-url postgres://… --listen 0.0.0.0:50051
    Control(switchboard_server::ServeOpt),
    /// Serves the resolver that Airflow deployments call.
    ///
    /// Example: switchboard resolver --database-url sqlite://./.switchboard/switchboard.db --listen 127.0.0.1:50052
    Resolver(switchboard_server::ServeOpt),
    /// Applies pending database migrations and exits (servers also do this at start-up).
    ///
    /// Example: switchboard migrate --database-url postgres://switchboard@db/switchboard
    Migrate(switchboard_server::ServeOpt),
    /// Mints tokens for development.
    #[command(subcommand)]
    Token(token::TokenCommand),
    /// Measures a live resolver: the gRPC ceiling (health), warm resolves and
    /// lists at each concurrency; with --seed also cache misses and propagation.
    ///
    /// Example: switchboard bench --endpoint http://127.0.0.1:50052 --token-file token.txt
    Bench(switchboard_bench::BenchOpt),
    #[command(flatten)]
    Client(switchboard_client::ClientCommand),
    /// Prints a shell completion script.
    #[command(
        after_help = "Examples:\n  switchboard completions bash > /etc/bash_completion.d/switchboard\n  \
        switchboard completions zsh > \"${fpath[1]}/_switchboard\"\n  \
        switchboard completions fish > ~/.config/fish/completions/switchboard.fish"
    )]
    Completions(completions::CompletionsOpt),
}

/// Parses `args` and runs the command; the process exit code.
pub fn startup(args: Vec<OsString>) -> ExitCode {
    let cli = Cli::parse_from(args);
    let result = match cli.command {
        Command::Dev(opt) => switchboard_server::run(switchboard_server::Role::Dev, opt),
        Command::Control(opt) => switchboard_server::run(switchboard_server::Role::Control, opt),
        Command::Resolver(opt) => switchboard_server::run(switchboard_server::Role::Resolver, opt),
        Command::Migrate(opt) => switchboard_server::migrate(opt),
        Command::Token(command) => token::run(command),
        Command::Bench(opt) => switchboard_bench::run(opt),
        Command::Client(command) => return switchboard_client::run(command),
        Command::Completions(opt) => completions::run(&opt),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}
