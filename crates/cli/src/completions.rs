//! `switchboard completions SHELL`: a completion script for the shell.

use clap::{Args, CommandFactory};
use clap_complete::Shell;

use switchboard_client::print_stdout;

/// Arguments of `switchboard completions`.
#[derive(Debug, Args)]
pub(crate) struct CompletionsOpt {
    /// The shell to complete for.
    #[arg(value_enum)]
    shell: Shell,
}

/// Prints the script to standard output.
pub(crate) fn run(opt: &CompletionsOpt) -> anyhow::Result<()> {
    let mut command = crate::Cli::command();
    let mut script = Vec::new();
    clap_complete::generate(opt.shell, &mut command, "switchboard", &mut script);
    print_stdout(&String::from_utf8_lossy(&script))
}
