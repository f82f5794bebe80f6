//! README's grpcurl walkthrough, run as pasted against a real server, so the
//! README can't drift from what the server does.

use std::process::Command;

use switchboard_tests::grpcurl::grpcurl_binary;
use switchboard_tests::{TestServer, switchboard_binary, workspace_root};

const README_TOKEN_COMMAND: &str = "cargo run -q --release -p switchboard-cli --";
const README_ADDRESS: &str = "ADDR=127.0.0.1:50051";
const README_PASSWORD: &str = "\"password\": \"change-me\"";

/// The first `sh` block after the walkthrough heading.
fn walkthrough_script() -> String {
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    let section = readme
        .split_once("## Walkthrough with grpcurl")
        .expect("README has a grpcurl walkthrough")
        .1;
    let block = section
        .split_once("```sh\n")
        .expect("the walkthrough has an sh block")
        .1;
    block
        .split_once("```")
        .expect("the sh block ends")
        .0
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_runs_as_pasted() {
    let server = TestServer::configure().spawn().await;
    let password = server.marker("readme-password");

    let script = walkthrough_script();
    for expected in [README_TOKEN_COMMAND, README_ADDRESS, README_PASSWORD] {
        assert!(
            script.contains(expected),
            "the walkthrough contains {expected:?}; update this test with README"
        );
    }
    // The same commands, pointed at this server, its binary and a marker password.
    let script = script
        .replace(
            README_TOKEN_COMMAND,
            &format!("'{}'", switchboard_binary().display()),
        )
        .replace(README_ADDRESS, &format!("ADDR={}", server.address()))
        .replace(README_PASSWORD, &format!("\"password\": \"{password}\""));

    // A working directory laid out like the repository root, whose
    // ./.switchboard is the server's data dir.
    let workdir = tempfile::tempdir().expect("temporary dir");
    let root = workspace_root();
    std::os::unix::fs::symlink(server.data_dir(), workdir.path().join(".switchboard"))
        .expect("link the data dir");
    std::os::unix::fs::symlink(root.join("scripts"), workdir.path().join("scripts"))
        .expect("link scripts/");
    std::fs::create_dir_all(workdir.path().join("tools/bin")).expect("create tools/bin");
    std::os::unix::fs::symlink(grpcurl_binary(), workdir.path().join("tools/bin/grpcurl"))
        .expect("link grpcurl");
    // install-tools.sh installs into the checkout, not the working directory.
    let script = script.replace("scripts/install-tools.sh\n", "");

    let output = Command::new("bash")
        .arg("-c")
        .arg(format!("set -euo pipefail\n{script}"))
        .current_dir(workdir.path())
        .output()
        .expect("run bash");
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "the README walkthrough failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );

    // The resolve steps printed prod's merged connection with the shared password.
    assert!(stdout.contains("\"schema\": \"PROD\""), "stdout:\n{stdout}");
    assert!(stdout.contains("PROD_WH"), "stdout:\n{stdout}");
    assert!(stdout.contains("airflowJson"), "stdout:\n{stdout}");
    assert_eq!(
        stdout.matches(password.as_str()).count(),
        // ResolveConnection: password and airflowJson and airflowUri;
        // ListResolvedConnections: the same again. Control prints it nowhere.
        stdout.matches("\"connId\": \"snowflake_default\"").count() * 3,
        "the password appears only in resolver answers:\n{stdout}"
    );
    server.assert_logs_clean();
}
