//! README's shell blocks, run as a reader pastes them, so the README can't
//! drift from what the binary does: the grpcurl walkthrough and then the
//! "Command line" section in one shell against one `switchboard dev`, and the
//! production shape (control and a resolver on a throwaway PostgreSQL and
//! OpenBao) followed by its stop block. Only addresses, ports, the data dir,
//! passwords and the tool install step are rewritten, each checked to be in
//! README first; `target/release/switchboard` is the debug binary under test.

use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use switchboard_tests::grpcurl::grpcurl_binary;
use switchboard_tests::{TestServer, random_hex, skip_without, switchboard_binary, workspace_root};
use tempfile::TempDir;

use crate::support::free_port_pair;

const WALKTHROUGH: &str = "## Walkthrough with grpcurl";
const COMMAND_LINE: &str = "## Command line";
const PRODUCTION_SHAPE: &str = "### The production shape on one machine";

/// Printed between two sections run in one shell, to split their output.
const SECTION_BREAK: &str = "=== next README section ===";

/// README's text from `heading` up to the next heading of level 2 or 3.
pub(crate) fn section(heading: &str) -> String {
    let readme =
        std::fs::read_to_string(workspace_root().join("README.md")).expect("read README.md");
    let start = readme.find(&format!("\n{heading}\n")).unwrap_or_else(|| {
        panic!("README has a heading {heading:?}; update this test with README")
    });
    let body = &readme[start + heading.len() + 2..];
    let end = [body.find("\n## "), body.find("\n### ")]
        .into_iter()
        .flatten()
        .min()
        .unwrap_or(body.len());
    body[..end].to_owned()
}

/// The fenced blocks of `language` (`sh`, `text`) in `text`, in order.
pub(crate) fn blocks(text: &str, language: &str) -> Vec<String> {
    let fence = format!("```{language}\n");
    let mut found = Vec::new();
    let mut rest = text;
    while let Some((_, after)) = rest.split_once(fence.as_str()) {
        let (block, tail) = after.split_once("```").expect("a fenced block ends");
        found.push(block.to_owned());
        rest = tail;
    }
    found
}

/// The line that puts grpcurl and the release binary on `PATH`, which the
/// working directory below provides.
const PATH_LINE: &str = "export PATH=\"$PWD/tools/bin:$PWD/target/release:$PATH\"";

/// Fails unless README's `block` holds each of `needles`.
fn require(block: &str, needles: &[&str]) {
    for needle in needles {
        assert!(
            block.contains(needle),
            "README's block contains {needle:?}; update this test with README:\n{block}"
        );
    }
}

/// `script` with each `(from, to)` replaced, failing if README lacks `from`.
fn rewrite(script: &str, replacements: &[(&str, String)]) -> String {
    let mut script = script.to_owned();
    for (from, to) in replacements {
        assert!(
            script.contains(from),
            "README's block contains {from:?}; update this test with README:\n{script}"
        );
        script = script.replace(from, to);
    }
    script
}

/// A working directory laid out like the repository root after the first
/// steps: `scripts/`, grpcurl in `tools/bin`, OpenBao in `tools/openbao`,
/// the binary at `target/release/switchboard`, and an empty home.
struct Workdir {
    dir: TempDir,
}

impl Workdir {
    fn new() -> Workdir {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-readme-")
            .tempdir()
            .expect("temporary dir");
        let root = workspace_root();
        let path = dir.path();
        symlink(root.join("scripts"), path.join("scripts")).expect("link scripts/");
        std::fs::create_dir_all(path.join("tools/bin")).expect("create tools/bin");
        symlink(grpcurl_binary(), path.join("tools/bin/grpcurl")).expect("link grpcurl");
        symlink(root.join("tools/openbao"), path.join("tools/openbao")).expect("link OpenBao");
        std::fs::create_dir_all(path.join("target/release")).expect("create target/release");
        symlink(
            switchboard_binary(),
            path.join("target/release/switchboard"),
        )
        .expect("link the binary");
        std::fs::create_dir(path.join("home")).expect("create the home dir");
        Workdir { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Runs `script` in bash with `-euo pipefail` in this directory, with
    /// its own home and none of the test's `SWITCHBOARD_*` variables.
    fn run(&self, script: &str, envs: &[(&str, String)]) -> Output {
        let mut command = Command::new("bash");
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        command
            .arg("-c")
            .arg(format!("set -euo pipefail\n{script}"))
            .current_dir(self.path())
            .env("HOME", self.path().join("home"))
            .env("XDG_CONFIG_HOME", self.path().join("home/.config"))
            .env("NO_COLOR", "1")
            .env_remove("VAULT_TOKEN");
        for (key, value) in envs {
            command.env(key, value);
        }
        command.output().expect("run bash")
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_walkthrough_and_command_line_run_as_pasted() {
    let server = TestServer::configure().spawn().await;
    let password = server.marker("readme-password");
    let loader_password = server.marker("readme-loader-password");
    let address = server.address().to_string();

    let walkthrough = &blocks(&section(WALKTHROUGH), "sh")[0];
    require(walkthrough, &[PATH_LINE, "switchboard token user"]);
    let walkthrough = rewrite(
        walkthrough,
        &[
            // install-tools.sh installs into the checkout, not the working directory.
            ("scripts/install-tools.sh\n", String::new()),
            ("ADDR=127.0.0.1:50051", format!("ADDR={address}")),
            (
                "\"password\": \"change-me\"",
                format!("\"password\": \"{password}\""),
            ),
        ],
    );
    let command_line = rewrite(
        &blocks(&section(COMMAND_LINE), "sh")[0],
        &[
            ("127.0.0.1:50051", address.clone()),
            ("'loader-secret'", format!("'{loader_password}'")),
        ],
    );

    // ./.switchboard is the server's data dir, as it is dev's in the checkout.
    let workdir = Workdir::new();
    symlink(server.data_dir(), workdir.path().join(".switchboard")).expect("link the data dir");
    let output = workdir.run(
        &format!("{walkthrough}\necho '{SECTION_BREAK}'\n{command_line}"),
        &[],
    );
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "README's walkthrough and command line failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let (walked, commanded) = stdout.split_once(SECTION_BREAK).expect("both sections ran");

    // The walkthrough's resolves printed prod's merged connection with the shared password.
    assert!(walked.contains("\"schema\": \"PROD\""), "stdout:\n{walked}");
    assert!(walked.contains("PROD_WH"), "stdout:\n{walked}");
    assert!(walked.contains("airflowJson"), "stdout:\n{walked}");
    assert_eq!(
        walked.matches(password.as_str()).count(),
        // ResolveConnection: password and airflowJson and airflowUri;
        // ListResolvedConnections: the same again. Control prints it nowhere.
        walked.matches("\"connId\": \"snowflake_default\"").count() * 3,
        "the password appears only in resolver answers:\n{walked}"
    );

    // The command line logged in, created its own objects beside the
    // walkthrough's, and exported qa's connection for a local Airflow.
    for expected in [
        format!("Logged in to http://{address} as alice (acme=OWNER"),
        "Created deployment \"qa\".".to_owned(),
        "Created connection \"snowflake_loader\".".to_owned(),
        "Linked connection \"snowflake_loader\" to deployment \"qa\".".to_owned(),
        "Updated the policy of workspace acme.".to_owned(),
        "Wrote 1 connection(s) of workspaces/acme/deployments/qa to .env".to_owned(),
    ] {
        assert!(
            commanded.contains(&expected) || stderr.contains(&expected),
            "the command line printed {expected:?}:\nstdout:\n{commanded}\nstderr:\n{stderr}"
        );
    }
    // `connections list` prints a table, one row per connection id.
    for conn_id in ["snowflake_default", "snowflake_loader"] {
        assert!(
            commanded
                .lines()
                .any(|line| line.starts_with(&format!("{conn_id} "))),
            "connections list shows {conn_id}:\n{commanded}"
        );
    }
    let dotenv =
        std::fs::read_to_string(workdir.path().join(".env")).expect("local env wrote .env");
    let line = dotenv
        .lines()
        .find(|line| line.starts_with("AIRFLOW_CONN_SNOWFLAKE_LOADER='"))
        .unwrap_or_else(|| panic!(".env holds the loader connection:\n{dotenv}"));
    for expected in [
        loader_password.as_str(),
        "\"schema\":\"QA\"",
        "\"warehouse\":\"QA_WH\"",
        "\"account\":\"xy12345.eu-central-1\"",
    ] {
        assert!(line.contains(expected), "{expected} in {line}");
    }
    assert!(
        !commanded.contains(&loader_password) && !stderr.contains(&loader_password),
        "the command line never prints the password it was given"
    );
    server.assert_logs_clean();
}

/// Stops the throwaway PostgreSQL and OpenBao that README's block started on
/// this test's ports, whatever happened to the block.
struct Backends {
    envs: Vec<(&'static str, String)>,
}

impl Drop for Backends {
    fn drop(&mut self) {
        for script in ["postgres.sh", "openbao.sh"] {
            let _ = Command::new(workspace_root().join("scripts").join(script))
                .arg("stop")
                .envs(self.envs.iter().map(|(key, value)| (*key, value)))
                .output();
        }
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("bind a free loopback port")
        .port()
}

/// Where `scripts/postgres.sh` finds PostgreSQL's binaries.
fn postgres_bin() -> PathBuf {
    std::env::var_os("PG_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/lib/postgresql/15/bin"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_production_shape_runs_as_pasted() {
    if !postgres_bin().join("initdb").exists() {
        skip_without("PostgreSQL 15 (initdb, for scripts/postgres.sh)");
        return;
    }
    if !workspace_root().join("tools/openbao/bin/bao").exists() {
        skip_without("OpenBao in tools/openbao (scripts/openbao.sh start installs it)");
        return;
    }
    let shape = section(PRODUCTION_SHAPE);
    let shape_blocks = blocks(&shape, "sh");
    assert_eq!(
        shape_blocks.len(),
        2,
        "the production shape has a block and its stop block:\n{shape}"
    );
    let (control_port, resolver_port) = (free_port(), free_port());
    let data_dir = tempfile::Builder::new()
        .prefix("switchboard-readme-shape-")
        .tempdir()
        .expect("temporary data dir");
    let password = format!("sb-marker-readme-shape-{}", random_hex(12));
    require(
        &shape_blocks[0],
        &[
            PATH_LINE,
            "scripts/postgres.sh start",
            "scripts/openbao.sh start",
        ],
    );
    let start = rewrite(
        &shape_blocks[0],
        &[
            (
                "CONTROL=127.0.0.1:50061",
                format!("CONTROL=127.0.0.1:{control_port}"),
            ),
            (
                "RESOLVER=127.0.0.1:50062",
                format!("RESOLVER=127.0.0.1:{resolver_port}"),
            ),
            (
                "DATA=/tmp/switchboard-shape",
                format!("DATA={}", data_dir.path().display()),
            ),
            ("'change-me'", format!("'{password}'")),
        ],
    );
    let stop = &shape_blocks[1];

    // The scripts' own knobs give this run a PostgreSQL and an OpenBao of its
    // own, never the shared ones on the default ports.
    let postgres_dir = tempfile::Builder::new()
        .prefix("switchboard-readme-pg-")
        .tempdir()
        .expect("a dir for the cluster");
    let bao_port = free_port_pair();
    let backends = Backends {
        envs: vec![
            ("SWITCHBOARD_TEST_PG_PORT", free_port_pair().to_string()),
            (
                "SWITCHBOARD_TEST_PG_DIR",
                postgres_dir.path().display().to_string(),
            ),
            ("SWITCHBOARD_TEST_BAO_PORT", bao_port.to_string()),
        ],
    };
    let workdir = Workdir::new();
    // The servers are stopped even if a step fails before the stop block.
    let script = format!(
        "trap 'kill ${{CONTROL_PID:-}} ${{RESOLVER_PID:-}} 2>/dev/null || true' EXIT\n\
         {start}\necho '{SECTION_BREAK}'\n\
         # What OpenBao holds, before the stop block ends its in-memory data.\n\
         curl -sf -X LIST -H 'X-Vault-Token: root' \"$SWITCHBOARD_VAULT_ADDR/v1/secret/metadata/switchboard\"\n\
         echo '{SECTION_BREAK}'\n{stop}"
    );
    let output = workdir.run(&script, &backends.envs);
    let stdout = text(&output.stdout);
    let stderr = text(&output.stderr);
    assert!(
        output.status.success(),
        "README's production shape failed:\nstdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut parts = stdout.split(SECTION_BREAK);
    let (shaped, vault_listing) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));

    let control = format!("127.0.0.1:{control_port}");
    for expected in [
        format!("Logged in to http://{control} as alice (acme=OWNER"),
        "Created deployment \"prod\".".to_owned(),
        "Created connection \"snowflake_default\".".to_owned(),
        "Linked connection \"snowflake_default\" to deployment \"prod\".".to_owned(),
    ] {
        assert!(
            shaped.contains(&expected) || stderr.contains(&expected),
            "the production shape printed {expected:?}:\nstdout:\n{shaped}\nstderr:\n{stderr}"
        );
    }
    // local env read prod's connection through the separate resolver.
    let line = shaped
        .lines()
        .find(|line| line.starts_with("AIRFLOW_CONN_SNOWFLAKE_DEFAULT='"))
        .unwrap_or_else(|| panic!("local env printed the connection:\n{shaped}"));
    assert!(
        line.contains(&password) && line.contains("\"schema\":\"PROD\""),
        "{line}"
    );
    // The rows are in PostgreSQL and the secret in OpenBao: no SQLite file
    // in the data dir, and a KV entry for the workspace.
    assert!(
        !data_dir.path().join("switchboard.db").exists(),
        "the servers used PostgreSQL, not a SQLite file"
    );
    assert!(
        vault_listing.contains("acme"),
        "OpenBao holds the workspace's secrets: {vault_listing}"
    );
    // Both servers ran as separate processes, said how to mint a token for
    // the shared data dir (the command the block used), stopped cleanly on
    // the stop block's SIGTERM, and logged no secret.
    for role in ["role=Control", "role=Resolver"] {
        assert!(stderr.contains(role), "{role} in the logs:\n{stderr}");
    }
    assert!(
        stderr.contains(&format!(
            "mint a user token: switchboard token user --data-dir {}",
            data_dir.path().display()
        )),
        "{stderr}"
    );
    assert_eq!(
        stderr
            .matches("INFO switchboard_server::serve: stopped")
            .count(),
        2,
        "{stderr}"
    );
    assert!(!stderr.contains(&password), "no log holds the password");
    // The stop block stopped the backends.
    let postgres_port: u16 = backends.envs[0].1.parse().expect("a port");
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", postgres_port)).is_err(),
        "scripts/postgres.sh stop stopped the cluster"
    );
    drop(backends);
}

/// README's test commands: `scripts/test.sh --help` explains and lists the
/// sections without running any, and an unknown section is refused before
/// anything runs.
#[test]
fn test_sh_help_lists_its_sections_and_refuses_unknown_ones() {
    let script = workspace_root().join("scripts/test.sh");
    let help = Command::new(&script)
        .arg("--help")
        .output()
        .expect("run scripts/test.sh --help");
    assert!(help.status.success(), "{help:?}");
    let text = String::from_utf8_lossy(&help.stdout);
    assert!(
        text.contains("Usage: scripts/test.sh [SECTION...]"),
        "{text}"
    );
    for section in [
        "tools", "buf", "fmt", "clippy", "doc", "build", "deploy", "services", "venv", "test",
        "leaks", "airflow", "shim", "release",
    ] {
        assert!(
            text.lines()
                .any(|line| line.trim_start().starts_with(&format!("{section} "))),
            "--help lists section {section}:\n{text}"
        );
    }
    assert!(!text.contains("=== "), "--help ran a section:\n{text}");

    let unknown = Command::new(&script)
        .arg("lint")
        .output()
        .expect("run scripts/test.sh lint");
    assert_eq!(unknown.status.code(), Some(2), "{unknown:?}");
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("unknown section 'lint'") && stderr.contains("clippy"),
        "{stderr}"
    );
    assert!(!String::from_utf8_lossy(&unknown.stdout).contains("=== tools"));
}
