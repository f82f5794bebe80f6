//! The `switchboard` binary.

/// Every resolver call allocates a few dozen small objects across threads;
/// mimalloc serves those faster than glibc's allocator and keeps RSS flatter.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    switchboard_cli::startup(std::env::args_os().collect())
}
