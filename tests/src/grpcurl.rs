//! Running the real `grpcurl` (installed by `scripts/install-tools.sh` into
//! `tools/bin`) against a [`TestServer`].

use std::path::PathBuf;
use std::process::Command;

use crate::{TestServer, workspace_root};

/// What one grpcurl run printed.
#[derive(Debug)]
pub struct GrpcurlOutput {
    pub success: bool,
    pub stdout: String,
    pub stderr: String,
}

impl GrpcurlOutput {
    /// Stdout parsed as one JSON value; panics with both streams otherwise.
    pub fn json(&self) -> serde_json::Value {
        assert!(
            self.success,
            "grpcurl failed:\nstdout: {}\nstderr: {}",
            self.stdout, self.stderr
        );
        serde_json::from_str(&self.stdout).unwrap_or_else(|err| {
            panic!(
                "grpcurl printed no JSON ({err}):\n{}\nstderr: {}",
                self.stdout, self.stderr
            )
        })
    }
}

/// `GRPCURL`, else `tools/bin/grpcurl` in the workspace.
pub fn grpcurl_binary() -> PathBuf {
    let binary = std::env::var_os("GRPCURL")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tools").join("bin").join("grpcurl"));
    assert!(
        binary.exists(),
        "{} does not exist: run scripts/install-tools.sh (or set GRPCURL)",
        binary.display()
    );
    binary
}

/// Runs `grpcurl -plaintext [-H authorization] [-d data] ADDRESS args…`.
pub fn grpcurl(
    server: &TestServer,
    token: Option<&str>,
    data: Option<&str>,
    args: &[&str],
) -> GrpcurlOutput {
    let mut command = Command::new(grpcurl_binary());
    command.arg("-plaintext");
    if let Some(token) = token {
        command
            .arg("-H")
            .arg(format!("authorization: Bearer {token}"));
    }
    if let Some(data) = data {
        command.arg("-d").arg(data);
    }
    command.arg(server.address().to_string()).args(args);
    let output = command.output().expect("run grpcurl");
    GrpcurlOutput {
        success: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    }
}
