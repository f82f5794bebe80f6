//! The `switchboard` client commands, run as a user would: the real binary
//! with its own config dir, against `switchboard dev`, checking stdout,
//! stderr and exit codes. Secrets go in through files and stdin only, and
//! must not show in tables, argv or the server's logs.

use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;
use switchboard_tests::{TestServer, WorkspaceRole, switchboard_binary, workspace_root};
use tempfile::TempDir;

/// How long the resolver may take to see a change (the feed promises 1 s).
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(10);

/// A user's shell: an empty config dir and the server's address.
pub(crate) struct Shell {
    home: TempDir,
    pub(crate) address: String,
}

impl Shell {
    pub(crate) fn new(server: &TestServer) -> Self {
        Shell {
            home: tempfile::Builder::new()
                .prefix("switchboard-cli-home-")
                .tempdir()
                .expect("temporary home"),
            address: server.address().to_string(),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        self.home.path()
    }

    pub(crate) fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(switchboard_binary());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        command
            .args(args)
            .current_dir(self.dir())
            .env("HOME", self.dir())
            .env("XDG_CONFIG_HOME", self.dir().join("config"))
            .env("NO_COLOR", "1");
        command
    }

    /// Runs with standard input closed.
    pub(crate) fn run(&self, args: &[&str]) -> Output {
        self.command(args)
            .stdin(Stdio::null())
            .output()
            .expect("run switchboard")
    }

    /// Runs with `input` on standard input.
    pub(crate) fn run_with_stdin(&self, args: &[&str], input: &str) -> Output {
        let mut child = self
            .command(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchboard");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(input.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for switchboard")
    }

    pub(crate) fn write(&self, name: &str, contents: &str) -> PathBuf {
        let path = self.dir().join(name);
        std::fs::write(&path, contents).expect("write a file");
        path
    }
}

pub(crate) fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Fails unless the command succeeded; its stdout.
pub(crate) fn ok(output: Output, what: &str) -> String {
    assert!(
        output.status.success(),
        "{what}: exit {:?}\nstdout:\n{}\nstderr:\n{}",
        output.status.code(),
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stdout)
}

/// Fails unless the command exited with `code`; its stderr.
pub(crate) fn fails(output: Output, code: i32, what: &str) -> String {
    assert_eq!(
        output.status.code(),
        Some(code),
        "{what}: exit code\nstdout:\n{}\nstderr:\n{}",
        text(&output.stdout),
        text(&output.stderr)
    );
    text(&output.stderr)
}

pub(crate) fn json(stdout: &str, what: &str) -> Value {
    serde_json::from_str(stdout).unwrap_or_else(|err| panic!("{what}: not JSON ({err}):\n{stdout}"))
}

/// The value of `KEY='…'` in a `.env` text, unquoted.
fn dotenv_value(env: &str, key: &str) -> Option<String> {
    env.lines().find_map(|line| {
        line.strip_prefix(&format!("{key}='"))
            .and_then(|rest| rest.strip_suffix('\''))
            .map(str::to_owned)
    })
}

/// Runs `local env` until its output satisfies `done` (the resolver follows
/// the change feed), returning the file's text.
fn export_until(shell: &Shell, args: &[&str], file: &Path, done: impl Fn(&str) -> bool) -> String {
    let started = Instant::now();
    loop {
        ok(shell.run(args), "local env");
        let written = std::fs::read_to_string(file).expect("the exported file");
        if done(&written) {
            return written;
        }
        assert!(
            started.elapsed() < PROPAGATION_DEADLINE,
            "the export never showed the change:\n{written}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_creates_links_exports_and_reports_errors_as_a_user_would() {
    let server = TestServer::configure().spawn().await;
    let shell = Shell::new(&server);
    let owner = server.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    // A password with every character a .env dialect might mangle.
    let password = format!("{}'\"\\$HOME", server.marker("pg-password"));
    let private_key = server.marker("private-key");

    // Login reads the token from stdin and stores it with mode 0600.
    let stdout = ok(
        shell.run_with_stdin(
            &["login", "--endpoint", &shell.address, "--workspace", "acme"],
            &format!("{owner}\n"),
        ),
        "login",
    );
    assert!(stdout.contains("olivia"), "login names the user:\n{stdout}");
    let config = shell.dir().join("config/switchboard/config.toml");
    let mode = std::fs::metadata(&config)
        .expect("login writes the config file")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the config file is private");
    let stdout = ok(shell.run(&["contexts", "list"]), "contexts list");
    assert!(
        !stdout.contains(&owner),
        "contexts list never prints tokens"
    );

    ok(
        shell.run(&[
            "deployments",
            "create",
            "prod",
            "--namespace",
            "airflow-prod",
        ]),
        "create prod",
    );
    ok(shell.run(&["deployments", "create", "dev"]), "create dev");

    // A connection from a YAML file, the private key inside it.
    let file = shell.write(
        "warehouse.yaml",
        &format!(
            "connection_id: warehouse\ntype: snowflake_private_key\nlogin: SVC\n\
             extra:\n  account: myorg-acct\n  warehouse: WH\n  private_key_content: {private_key}\n\
             links:\n  - prod\n  - dev\n"
        ),
    );
    let stdout = ok(
        shell.run(&["connections", "create", "-f", file.to_str().expect("utf-8")]),
        "create from YAML",
    );
    assert!(
        !stdout.contains(&private_key),
        "create's table hides secrets"
    );

    // A connection from flags, its password on stdin.
    ok(
        shell.run_with_stdin(
            &[
                "connections",
                "create",
                "pg",
                "--type",
                "postgres",
                "--host",
                "db.internal",
                "--port",
                "5432",
                "--login",
                "airflow",
                "--schema",
                "analytics",
                "--password-stdin",
                "--link",
                "dev",
            ],
            &password,
        ),
        "create from flags",
    );

    // Overrides for one deployment.
    ok(
        shell.run(&[
            "links",
            "update",
            "warehouse",
            "--deployment",
            "dev",
            "--set",
            "schema=DEV",
            "--set",
            "extra.warehouse=DEV_WH",
        ]),
        "links update --set",
    );
    let links = json(
        &ok(
            shell.run(&["links", "list", "warehouse", "-o", "json"]),
            "links list",
        ),
        "links list -o json",
    );
    let dev_link = links
        .as_array()
        .expect("a list")
        .iter()
        .find(|link| link["deployment"] == "workspaces/acme/deployments/dev")
        .unwrap_or_else(|| panic!("the dev link is listed: {links}"));
    assert_eq!(dev_link["overrides"]["schema"], "DEV");
    assert_eq!(dev_link["overrides"]["extra"]["warehouse"], "DEV_WH");

    // JSON output parses; tables and JSON hide secrets.
    let listed = json(
        &ok(
            shell.run(&["connections", "list", "-o", "json"]),
            "list -o json",
        ),
        "connections list -o json",
    );
    let ids: Vec<&str> = listed
        .as_array()
        .expect("a list")
        .iter()
        .map(|connection| connection["name"].as_str().expect("name"))
        .collect();
    assert_eq!(
        ids,
        [
            "workspaces/acme/connections/pg",
            "workspaces/acme/connections/warehouse"
        ]
    );
    assert_eq!(listed[0]["secretFieldsSet"][0], "password");
    for args in [
        &["connections", "list"][..],
        &["connections", "get", "warehouse"][..],
        &["connections", "get", "pg", "-o", "yaml"][..],
    ] {
        let stdout = ok(shell.run(args), "read");
        assert!(
            !stdout.contains(&private_key) && !stdout.contains(&password),
            "{args:?} shows no secret:\n{stdout}"
        );
    }

    // Bad input: the field is named and the exit code says so.
    let stderr = fails(
        shell.run(&[
            "connections",
            "create",
            "bad",
            "--type",
            "postgres",
            "--host",
            "db",
            "--login",
            "x",
            "--port",
            "70000",
        ]),
        3,
        "a port out of range",
    );
    assert!(
        stderr.contains("connection.port"),
        "names the field:\n{stderr}"
    );
    let stderr = fails(
        shell.run(&[
            "connections",
            "create",
            "snow",
            "--type",
            "snowflake_private_key",
            "--no-input",
        ]),
        3,
        "required parameters missing",
    );
    assert!(
        stderr.contains("connection.extra.account") && stderr.contains("connection.login"),
        "names each missing field:\n{stderr}"
    );
    // Secrets are never taken from argv.
    let stderr = fails(
        shell.run(&["connections", "update", "pg", "--set", "password=from-argv"]),
        2,
        "a password on the command line",
    );
    assert!(
        stderr.contains("never taken from the command line"),
        "{stderr}"
    );
    fails(
        shell.run(&[
            "connections",
            "update",
            "warehouse",
            "--set-secret",
            "extra.private_key_content=from-argv",
        ]),
        2,
        "a secret value on the command line",
    );
    fails(
        shell.run(&["connections", "get", "nope"]),
        4,
        "an unknown connection",
    );
    fails(
        shell.run(&["deployments", "create", "prod"]),
        5,
        "a deployment that exists",
    );
    fails(
        shell.run(&["connections", "list", "--workspace", "other"]),
        7,
        "a workspace without a role",
    );

    // Local export: refused while the policy is off, written once it is on.
    let env_file = shell.dir().join(".env");
    let export = [
        "local",
        "env",
        "--deployment",
        "dev",
        "--output-file",
        env_file.to_str().expect("utf-8"),
    ];
    let stderr = fails(shell.run(&export), 7, "export with the policy off");
    assert!(stderr.contains("allow_local_export"), "says why:\n{stderr}");
    assert!(!env_file.exists(), "nothing is written when refused");
    let policy = json(
        &ok(
            shell.run(&["policy", "set", "--allow-local-export", "-o", "json"]),
            "policy set",
        ),
        "policy set -o json",
    );
    assert_eq!(policy["allowLocalExport"], true);
    let env = export_until(&shell, &export, &env_file, |env| {
        env.contains("AIRFLOW_CONN_PG=")
    });
    let mode = std::fs::metadata(&env_file)
        .expect("the .env")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the .env is private");
    let warehouse: Value = json(
        &dotenv_value(&env, "AIRFLOW_CONN_WAREHOUSE").expect("a warehouse line"),
        "AIRFLOW_CONN_WAREHOUSE",
    );
    assert_eq!(warehouse["schema"], "DEV");
    assert_eq!(warehouse["extra"]["warehouse"], "DEV_WH");
    assert_eq!(
        warehouse["extra"]["private_key_content"],
        private_key.as_str()
    );
    let pg: Value = json(
        &dotenv_value(&env, "AIRFLOW_CONN_PG").expect("a pg line"),
        "AIRFLOW_CONN_PG",
    );
    assert_eq!(pg["password"], password.as_str());

    // The settings file for the Astro CLI.
    let settings_file = shell.dir().join("airflow_settings.yaml");
    ok(
        shell.run(&[
            "local",
            "env",
            "--deployment",
            "dev",
            "--format",
            "airflow-settings",
            "--output-file",
            settings_file.to_str().expect("utf-8"),
        ]),
        "local env --format airflow-settings",
    );
    let settings = std::fs::read_to_string(&settings_file).expect("airflow_settings.yaml");
    for expected in [
        "airflow:",
        "connections:",
        "conn_id: warehouse",
        "conn_schema: DEV",
    ] {
        assert!(settings.contains(expected), "{expected} in:\n{settings}");
    }

    check_with_airflow(&env_file, &password, &private_key);

    // The change is audited, and --unset drops an override again.
    let audit = ok(
        shell.run(&["audit", "--action", "ResolveConnections"]),
        "audit",
    );
    assert!(
        audit.contains("deployments/dev"),
        "exports are audited:\n{audit}"
    );
    ok(
        shell.run(&[
            "links",
            "update",
            "warehouse",
            "-d",
            "dev",
            "--unset",
            "extra.warehouse",
        ]),
        "links update --unset",
    );
    export_until(&shell, &export, &env_file, |env| {
        dotenv_value(env, "AIRFLOW_CONN_WAREHOUSE")
            .is_some_and(|line| line.contains(r#""warehouse":"WH""#))
    });

    server.assert_logs_clean();
}

/// Loads the `.env` into the pinned Airflow 3 (scripts/airflow-venv.sh) the
/// ways people do, a shell's `set -a; . .env` and python-dotenv, and checks
/// that `airflow connections get` shows the merged connection. Skipped when
/// the venv hasn't been built.
fn check_with_airflow(env_file: &Path, password: &str, private_key: &str) {
    let venv = std::env::var_os("SWITCHBOARD_AIRFLOW_VENV")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("tools/airflow-3"));
    let airflow = venv.join("bin/airflow");
    if !airflow.exists() {
        switchboard_tests::skip_without(&format!(
            "{} (scripts/airflow-venv.sh 3 builds it)",
            airflow.display()
        ));
        return;
    }
    let airflow_home = tempfile::tempdir().expect("AIRFLOW_HOME");
    let loaders = [
        format!(
            "set -a; . '{}'; set +a; exec '{}' connections get warehouse -o json",
            env_file.display(),
            airflow.display()
        ),
        format!(
            "exec '{}' -f '{}' run -- '{}' connections get pg -o json",
            venv.join("bin/dotenv").display(),
            env_file.display(),
            airflow.display()
        ),
    ];
    for (index, script) in loaders.iter().enumerate() {
        let output = Command::new("bash")
            .arg("-c")
            .arg(script)
            .env("AIRFLOW_HOME", airflow_home.path())
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .stdin(Stdio::null())
            .output()
            .expect("run airflow");
        let stdout = ok(output, "airflow connections get");
        let start = stdout
            .find('[')
            .unwrap_or_else(|| panic!("JSON in:\n{stdout}"));
        let shown = json(&stdout[start..], "airflow connections get -o json");
        let connection = &shown[0];
        if index == 0 {
            assert_eq!(connection["conn_type"], "snowflake");
            assert_eq!(connection["schema"], "DEV");
            assert_eq!(connection["extra_dejson"]["warehouse"], "DEV_WH");
            assert_eq!(
                connection["extra_dejson"]["private_key_content"],
                private_key
            );
        } else {
            assert_eq!(connection["conn_type"], "postgres");
            assert_eq!(connection["password"], password);
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cli_takes_its_token_from_the_environment_and_explains_failures() {
    let server = TestServer::configure().spawn().await;
    let shell = Shell::new(&server);
    let member = server.user_token("mia", &[("acme", WorkspaceRole::Member)]);
    let token_file = shell.write("token", &member);

    // No context: the environment and flags say everything.
    let mut command = shell.command(&["types", "postgres", "-o", "json"]);
    command
        .env("SWITCHBOARD_ENDPOINT", &shell.address)
        .env("SWITCHBOARD_TOKEN", &member)
        .stdin(Stdio::null());
    let postgres = json(
        &ok(command.output().expect("run"), "types postgres"),
        "types -o json",
    );
    assert_eq!(
        postgres["providerPackage"],
        "apache-airflow-providers-postgres"
    );
    let password = postgres["parameters"]
        .as_array()
        .expect("parameters")
        .iter()
        .find(|parameter| parameter["field"] == "password")
        .expect("a password parameter");
    assert_eq!(password["secret"], true);

    let token_arg = token_file.to_str().expect("utf-8");
    let base = [
        "--endpoint",
        shell.address.as_str(),
        "--token-file",
        token_arg,
        "-w",
        "acme",
    ];
    let args = |rest: &[&'static str]| -> Vec<String> {
        rest.iter()
            .copied()
            .chain(base.iter().copied())
            .map(str::to_owned)
            .collect()
    };
    let run = |rest: &[&'static str]| {
        let args = args(rest);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        shell.run(&args)
    };
    // Server options go after the command group, before or after its subcommand.
    let mut listed = vec!["connections"];
    listed.extend(base.iter().copied());
    listed.push("list");
    ok(shell.run(&listed), "list as a member");
    let stderr = fails(
        run(&[
            "connections",
            "create",
            "pg",
            "--type",
            "postgres",
            "--host",
            "h",
            "--login",
            "l",
        ]),
        7,
        "a member creating",
    );
    assert!(stderr.contains("permission denied"), "{stderr}");
    fails(
        run(&["policy", "set", "--allow-local-export"]),
        7,
        "a member setting policy",
    );
    fails(run(&["policy", "set"]), 2, "policy set with nothing to set");

    let stderr = fails(
        shell.run(&[
            "connections",
            "list",
            "--endpoint",
            "127.0.0.1:1",
            "--token-file",
            token_arg,
        ]),
        8,
        "an unreachable server",
    );
    assert!(stderr.contains("cannot reach"), "{stderr}");
    let stderr = fails(shell.run(&["connections", "list"]), 2, "no endpoint at all");
    assert!(
        stderr.contains("switchboard login"),
        "says what to do:\n{stderr}"
    );
    let stderr = fails(
        shell.run(&[
            "connections",
            "list",
            "--endpoint",
            &shell.address,
            "--token-file",
            token_arg,
        ]),
        2,
        "no workspace",
    );
    assert!(stderr.contains("--workspace"), "{stderr}");

    // A refused token is not stored.
    let stderr = fails(
        shell.run_with_stdin(&["login", "--endpoint", &shell.address], "not-a-token\n"),
        7,
        "login with a bad token",
    );
    assert!(stderr.contains("not authenticated"), "{stderr}");
    assert!(!shell.dir().join("config/switchboard/config.toml").exists());

    // Completions and help for every command.
    let bash = ok(shell.run(&["completions", "bash"]), "completions bash");
    assert!(bash.contains("switchboard") && bash.contains("connections"));
    for group in ["connections", "links", "deployments", "policy"] {
        let help = ok(shell.run(&[group, "--help"]), "group help");
        let subcommands: Vec<String> = help
            .lines()
            .skip_while(|line| !line.starts_with("Commands:"))
            .skip(1)
            .take_while(|line| line.starts_with("  "))
            .filter_map(|line| line.split_whitespace().next().map(str::to_owned))
            .filter(|name| name != "help")
            .collect();
        assert!(
            !subcommands.is_empty(),
            "{group} lists subcommands:\n{help}"
        );
        for subcommand in subcommands {
            let help = ok(shell.run(&[group, subcommand.as_str(), "--help"]), "help");
            assert!(
                help.contains("Example"),
                "`switchboard {group} {subcommand} --help` shows an example:\n{help}"
            );
        }
    }
    for command in [
        &["types", "--help"][..],
        &["audit", "--help"][..],
        &["local", "env", "--help"][..],
        &["login", "--help"][..],
        &["completions", "--help"][..],
    ] {
        let help = ok(shell.run(command), "help");
        assert!(
            help.contains("Example"),
            "{command:?} shows an example:\n{help}"
        );
    }
    server.assert_logs_clean();
}
