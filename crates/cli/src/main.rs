//! The `switchboard` binary.

fn main() -> std::process::ExitCode {
    switchboard_cli::startup(std::env::args_os().collect())
}
