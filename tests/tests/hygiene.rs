//! Hygiene (issue 13, point 10): private files on disk, retention of the
//! change feed, request log and audit table, and TLS for the servers.

use std::ffi::OsStr;
use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::os::unix::fs::{PermissionsExt, symlink};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use switchboard_proto::v1::{
    CreateDeploymentRequest, CreateDeploymentTokenRequest, Deployment, DeploymentKind, Link,
    LinkOverrides, ListAuditEventsRequest, ResolveConnectionRequest, RevokeDeploymentTokenRequest,
    UpdateLinkRequest, UpdateWorkspacePolicyRequest, WorkspacePolicy,
};
use switchboard_tests::{
    Role, TestServer, TestServerConfig, WorkspaceRole, mint_user_token, random_hex,
    switchboard_binary,
};
use tempfile::TempDir;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::backends::Backend;
use crate::support::{
    Client, OwnPostgres, connection_name, create_connection, create_deployment,
    create_deployment_token, create_link, deployment_name, ok, schema_and_warehouse,
    snowflake_connection, workspace_name,
};

/// One client per service on `channel`.
fn clients_on(channel: Channel) -> Client {
    Client::new(channel)
}

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap_or_else(|err| panic!("{}: {err}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

/// A `switchboard` server these tests start themselves, for what the
/// fixture does not do: serve on a data dir it did not create, or TLS.
struct OwnServer {
    child: Option<Child>,
    address: SocketAddr,
    log_path: PathBuf,
    _log_dir: TempDir,
}

impl OwnServer {
    /// Starts `switchboard SUBCOMMAND ARGS… --listen 127.0.0.1:PORT`.
    fn start(subcommand: &str, args: &[&OsStr]) -> OwnServer {
        let address = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
            listener.local_addr().expect("local address")
        };
        let log_dir = tempfile::tempdir().expect("temporary log dir");
        let log_path = log_dir.path().join("server.log");
        let log = File::create(&log_path).expect("create the log");
        let mut command = Command::new(switchboard_binary());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        let child = command
            .arg(subcommand)
            .args(args)
            .arg("--listen")
            .arg(address.to_string())
            .env_remove("VAULT_TOKEN")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start switchboard");
        OwnServer {
            child: Some(child),
            address,
            log_path,
            _log_dir: log_dir,
        }
    }

    fn logs(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits until health over `endpoint` says SERVING.
    async fn wait_until_serving(&mut self, endpoint: Endpoint) {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().ok().flatten())
            {
                panic!("switchboard exited with {status}; log:\n{}", self.logs());
            }
            if let Ok(channel) = endpoint.connect().await
                && let Ok(response) = HealthClient::new(channel)
                    .check(HealthCheckRequest::default())
                    .await
                && response.into_inner().status == ServingStatus::Serving as i32
            {
                return;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "switchboard never served; log:\n{}",
                self.logs()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    fn plaintext_endpoint(&self) -> Endpoint {
        Endpoint::from_shared(format!("http://{}", self.address))
            .expect("an endpoint")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let asked = Instant::now();
        while child.try_wait().ok().flatten().is_none() {
            if asked.elapsed() > Duration::from_secs(20) {
                let _ = child.kill();
                let _ = child.wait();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        if std::thread::panicking() {
            eprintln!("--- switchboard log ---\n{}--- end ---", self.logs());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_creates_its_data_dir_0700_and_the_database_and_side_files_0600() {
    let parent = tempfile::tempdir().expect("temporary dir");
    let data_dir = parent.path().join("fresh");
    let mut server = OwnServer::start("dev", &[OsStr::new("--data-dir"), data_dir.as_os_str()]);
    server.wait_until_serving(server.plaintext_endpoint()).await;
    let owner = mint_user_token(&data_dir, "olivia", &[("acme", WorkspaceRole::Owner)]);
    let mut clients = clients_on(
        server
            .plaintext_endpoint()
            .connect()
            .await
            .expect("connect"),
    );
    // A write, so that SQLite has its write-ahead log and shared memory open.
    create_deployment(&mut clients, &owner, "acme", "prod").await;

    assert_eq!(mode(&data_dir), 0o700, "the data dir");
    for name in [
        "switchboard.db",
        "switchboard.db-wal",
        "switchboard.db-shm",
        "jwt-hs256.key",
        "secrets.key",
    ] {
        assert_eq!(mode(&data_dir.join(name)), 0o600, "{name}");
    }
    // Nothing else (a temporary file left behind, say) sits in the data dir.
    let mut names: Vec<String> = std::fs::read_dir(&data_dir)
        .expect("list the data dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    names.sort();
    assert_eq!(
        names,
        [
            "jwt-hs256.key",
            "secrets.key",
            "switchboard.db",
            "switchboard.db-shm",
            "switchboard.db-wal"
        ]
    );
    assert!(
        !server.logs().contains(&owner),
        "the token stays out of the log"
    );
}

/// A user's shell for the client commands: its own config dir.
struct Shell {
    home: TempDir,
}

impl Shell {
    fn new() -> Self {
        Shell {
            home: tempfile::Builder::new()
                .prefix("switchboard-hygiene-home-")
                .tempdir()
                .expect("temporary home"),
        }
    }

    fn config_dir(&self) -> PathBuf {
        self.home.path().join("config/switchboard")
    }

    fn run(&self, args: &[&str], stdin: &str) -> Output {
        let mut command = Command::new(switchboard_binary());
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        let mut child = command
            .args(args)
            .current_dir(self.home.path())
            .env("HOME", self.home.path())
            .env("XDG_CONFIG_HOME", self.home.path().join("config"))
            .env("NO_COLOR", "1")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start switchboard");
        child
            .stdin
            .take()
            .expect("stdin")
            .write_all(stdin.as_bytes())
            .expect("write stdin");
        child.wait_with_output().expect("wait for switchboard")
    }

    fn ok(&self, args: &[&str], stdin: &str) -> String {
        let output = self.run(args, stdin);
        assert!(
            output.status.success(),
            "{args:?}: exit {:?}\nstderr:\n{}",
            output.status.code(),
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }
}

/// Plants, in `dir`, a symlink to `victim` at every temporary name the
/// client wrote through before this fix (`.NAME.tmp-PID`) for the next
/// process ids, as anyone who can write to the dir could.
fn plant_symlinks_at_predictable_temporary_names(dir: &Path, file_name: &str, victim: &Path) {
    let last_pid: u32 = std::fs::read_to_string("/proc/sys/kernel/ns_last_pid")
        .expect("read the last process id")
        .trim()
        .parse()
        .expect("a process id");
    for pid in last_pid + 1..last_pid + 3000 {
        symlink(victim, dir.join(format!(".{file_name}.tmp-{pid}"))).expect("plant a symlink");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn client_files_holding_secrets_never_follow_planted_symlinks() {
    let server = TestServer::configure().spawn().await;
    let owner = server.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    let password = server.marker("pg-password");
    let mut clients = server.client().await;
    create_deployment(&mut clients, &owner, "acme", "dev").await;
    create_connection(
        &mut clients,
        &owner,
        "acme",
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    create_link(
        &mut clients,
        &owner,
        "acme",
        "warehouse",
        "dev",
        schema_and_warehouse("DEV", "DEV_WH"),
    )
    .await;
    ok(
        clients
            .with_token(&owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: format!("{}/policy", workspace_name("acme")),
                    allow_local_export: true,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["allow_local_export".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateWorkspacePolicy",
    );

    let shell = Shell::new();
    let victim = shell.home.path().join("victim");
    std::fs::write(&victim, "precious").expect("write the victim file");

    // The contexts file, which holds the token.
    std::fs::create_dir_all(shell.config_dir()).expect("create the config dir");
    plant_symlinks_at_predictable_temporary_names(&shell.config_dir(), "config.toml", &victim);
    let config = shell.config_dir().join("config.toml");
    let address = server.address().to_string();
    shell.ok(
        &["login", "--endpoint", &address, "--workspace", "acme"],
        &format!("{owner}\n"),
    );
    assert_eq!(
        std::fs::read_to_string(&victim).expect("the victim"),
        "precious",
        "login wrote through a symlink"
    );
    assert_eq!(mode(&config), 0o600, "the config file holds a token");

    // `local env --output-file` into a dir others can write to.
    let shared = shell.home.path().join("shared");
    std::fs::create_dir(&shared).expect("create the shared dir");
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777))
        .expect("make the dir world-writable");
    plant_symlinks_at_predictable_temporary_names(&shared, "app.env", &victim);
    let env_file = shared.join("app.env");
    symlink(&victim, &env_file).expect("plant a symlink at the .env");
    let env_path = env_file.to_str().expect("utf-8");
    // The resolver's feed may lag the link by a moment.
    let started = Instant::now();
    loop {
        shell.ok(
            &[
                "local",
                "env",
                "--deployment",
                "dev",
                "--output-file",
                env_path,
            ],
            "",
        );
        let written = std::fs::read_to_string(&env_file).expect("the .env");
        if written.contains(&password) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the export never held the connection:\n{written}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(
        std::fs::read_to_string(&victim).expect("the victim"),
        "precious",
        "local env wrote secrets through a symlink"
    );
    assert!(
        std::fs::symlink_metadata(&env_file)
            .expect("the .env")
            .file_type()
            .is_file()
    );
    assert_eq!(mode(&env_file), 0o600, "the .env holds secrets");
    // Only the planted links, the victim's and the written files remain: no
    // temporary file was left behind.
    let leftovers: Vec<String> = std::fs::read_dir(&shared)
        .expect("list the shared dir")
        .map(|entry| {
            entry
                .expect("entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .filter(|name| name.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    server.assert_logs_clean();
}

/// A test CA and a server certificate it signed for `localhost` and
/// 127.0.0.1, made with the `openssl` command (valid two days).
struct TestPki {
    dir: TempDir,
}

impl TestPki {
    fn new() -> TestPki {
        let dir = tempfile::tempdir().expect("temporary PKI dir");
        let run = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .output()
                .expect("run openssl (the TLS tests need the openssl command)");
            assert!(
                output.status.success(),
                "openssl {args:?}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
        };
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        run(&[
            &["req", "-x509"][..],
            &ec,
            &[
                "-keyout",
                "ca.key",
                "-out",
                "ca.crt",
                "-days",
                "2",
                "-subj",
                "/CN=switchboard test CA",
            ],
        ]
        .concat());
        run(&[
            &["req"][..],
            &ec,
            &[
                "-keyout",
                "server.key",
                "-out",
                "server.csr",
                "-subj",
                "/CN=localhost",
            ],
        ]
        .concat());
        std::fs::write(
            dir.path().join("server.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             keyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n",
        )
        .expect("write the extensions");
        run(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ]);
        std::fs::set_permissions(
            dir.path().join("server.key"),
            std::fs::Permissions::from_mode(0o600),
        )
        .expect("chmod the key");
        TestPki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `--tls-cert server.crt --tls-key server.key`.
    fn server_args(&self) -> Vec<std::ffi::OsString> {
        vec![
            "--tls-cert".into(),
            self.path("server.crt").into(),
            "--tls-key".into(),
            self.path("server.key").into(),
        ]
    }

    /// An endpoint at `address` that trusts only the test CA.
    fn endpoint(&self, address: SocketAddr) -> Endpoint {
        let ca = std::fs::read(self.path("ca.crt")).expect("read the CA");
        Endpoint::from_shared(format!("https://{address}"))
            .expect("an endpoint")
            .connect_timeout(Duration::from_secs(2))
            .timeout(Duration::from_secs(5))
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )
            .expect("a TLS config")
    }
}

/// Whether a health check over `endpoint` gets any answer.
async fn health_answers(endpoint: Endpoint) -> bool {
    match endpoint.connect().await {
        Ok(channel) => HealthClient::new(channel)
            .check(HealthCheckRequest::default())
            .await
            .is_ok(),
        Err(_) => false,
    }
}

/// Starts `switchboard SUBCOMMAND` with TLS; waits for health over TLS.
async fn start_tls(subcommand: &str, pki: &TestPki, args: &[&OsStr]) -> OwnServer {
    let tls = pki.server_args();
    let mut all: Vec<&OsStr> = args.to_vec();
    all.extend(tls.iter().map(|arg| arg.as_os_str()));
    let mut server = OwnServer::start(subcommand, &all);
    server
        .wait_until_serving(pki.endpoint(server.address))
        .await;
    server
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolver_serves_tls_to_clients_that_trust_its_ca_and_refuses_plaintext() {
    let pki = TestPki::new();
    // Control in plaintext on the fixture; the resolver apart, over TLS.
    let control = TestServer::configure()
        .with_role(Role::Control)
        .spawn()
        .await;
    let owner = control.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    let password = control.marker("tls-password");
    let mut clients = control.client().await;
    create_deployment(&mut clients, &owner, "acme", "prod").await;
    create_connection(
        &mut clients,
        &owner,
        "acme",
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    create_link(
        &mut clients,
        &owner,
        "acme",
        "warehouse",
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let token = create_deployment_token(&control, &mut clients, &owner, "acme", "prod").await;

    let database_url = format!(
        "sqlite://{}",
        control.data_dir().join("switchboard.db").display()
    );
    let resolver = start_tls(
        "resolver",
        &pki,
        &[
            OsStr::new("--data-dir"),
            control.data_dir().as_os_str(),
            OsStr::new("--database-url"),
            OsStr::new(&database_url),
        ],
    )
    .await;
    let channel = pki
        .endpoint(resolver.address)
        .connect()
        .await
        .expect("connect over TLS");
    let resolved = ok(
        Client::new(channel)
            .with_token(&token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: "warehouse".to_owned(),
            })
            .await,
        "ResolveConnection over TLS",
    );
    assert_eq!(resolved.password, password);
    assert_eq!(resolved.schema, "PROD");

    // Plaintext is refused, and so is a client that does not trust the CA.
    assert!(
        !health_answers(resolver.plaintext_endpoint()).await,
        "a plaintext client got an answer"
    );
    let untrusting = Endpoint::from_shared(format!("https://{}", resolver.address))
        .expect("an endpoint")
        .connect_timeout(Duration::from_secs(2))
        .tls_config(ClientTlsConfig::new().domain_name("localhost"))
        .expect("a TLS config");
    assert!(
        !health_answers(untrusting).await,
        "a client that does not trust the CA got an answer"
    );
    let logs = resolver.logs();
    assert!(logs.contains("serving gRPC over TLS"), "{logs}");
    assert!(
        !logs.contains(&token) && !logs.contains(&password),
        "secrets in the log"
    );
    // The resolver is still serving after the refused handshakes.
    assert!(health_answers(pki.endpoint(resolver.address)).await);
    control.assert_logs_clean();

    check_shim_over_tls(&pki, resolver.address, &token, &password);
}

/// The Airflow shim's `tls_ca` backend kwarg, against the TLS resolver, in
/// the shim's venv (scripts/airflow-shim-venvs.sh builds it); skipped with a
/// note when that venv is absent, as the other Airflow checks are.
fn check_shim_over_tls(pki: &TestPki, address: SocketAddr, token: &str, password: &str) {
    let python = switchboard_tests::workspace_root().join("tools/airflow-shim-3/bin/python");
    if !python.exists() {
        switchboard_tests::skip_without(&format!(
            "{} (scripts/airflow-shim-venvs.sh builds it)",
            python.display()
        ));
        return;
    }
    let home = tempfile::tempdir().expect("AIRFLOW_HOME");
    let script = "import json, os\n\
        from switchboard_airflow import SwitchboardBackend\n\
        backend = SwitchboardBackend(address=os.environ['PROBE_ADDRESS'], token=os.environ['PROBE_TOKEN'],\n\
            tls_ca=os.environ['PROBE_CA'], cache_ttl=0)\n\
        print(json.loads(backend.get_conn_value('warehouse'))['password'] == os.environ['PROBE_PASSWORD'])\n";
    let output = Command::new(&python)
        .arg("-c")
        .arg(script)
        .env("AIRFLOW_HOME", home.path())
        .env("PROBE_ADDRESS", format!("localhost:{}", address.port()))
        .env("PROBE_TOKEN", token)
        .env("PROBE_CA", pki.path("ca.crt"))
        .env("PROBE_PASSWORD", password)
        .stdin(Stdio::null())
        .output()
        .expect("run the shim's python");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success() && stdout.trim_end().ends_with("True"),
        "the shim over TLS: exit {:?}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_over_tls_serves_the_cli_with_its_ca_and_refuses_plaintext() {
    let pki = TestPki::new();
    let data_dir = tempfile::tempdir().expect("data dir");
    let server = start_tls(
        "dev",
        &pki,
        &[OsStr::new("--data-dir"), data_dir.path().as_os_str()],
    )
    .await;
    let owner = mint_user_token(data_dir.path(), "olivia", &[("acme", WorkspaceRole::Owner)]);
    assert!(!health_answers(server.plaintext_endpoint()).await);

    let shell = Shell::new();
    let address = server.address.to_string();
    let ca = pki.path("ca.crt");
    shell.ok(
        &[
            "login",
            "--endpoint",
            &address,
            "--ca-cert",
            ca.to_str().expect("utf-8"),
            "--tls-server-name",
            "localhost",
            "--workspace",
            "acme",
        ],
        &format!("{owner}\n"),
    );
    shell.ok(&["deployments", "create", "prod"], "");
    let listed = shell.ok(&["deployments", "list"], "");
    assert!(listed.contains("prod"), "{listed}");
    // Without the CA, the CLI refuses the server's certificate.
    let refused = shell.run(
        &[
            "login",
            "--endpoint",
            &format!("https://{address}"),
            "--tls-server-name",
            "localhost",
            "--context",
            "untrusting",
        ],
        &format!("{owner}\n"),
    );
    assert!(!refused.status.success(), "login without the CA succeeded");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("the server's certificate is not signed by a CA this client trusts")
            && stderr.contains("hint: pass --ca-cert")
            && !stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    // Plaintext against TLS: the CLI asks the server what it speaks.
    let plaintext = shell.run(
        &[
            "login",
            "--endpoint",
            &format!("http://{address}"),
            "--context",
            "plaintext",
        ],
        &format!("{owner}\n"),
    );
    assert_eq!(plaintext.status.code(), Some(8), "login over plaintext");
    let stderr = String::from_utf8_lossy(&plaintext.stderr);
    assert!(
        stderr.contains(&format!(
            "the connection to http://{address} failed: the server closed the connection: it \
             expects TLS\n  hint: use https://{address}"
        )) && !stderr.contains("h2 protocol error"),
        "{stderr}"
    );
    assert!(
        !server.logs().contains(&owner),
        "the token stays out of the log"
    );
}

/// Tiny retentions: feed rows go after 1 s, request_id records and audit
/// events after 4 s, pruned every second.
const TINY_RETENTION: [(&str, &str); 4] = [
    ("--feed-retention", "1s"),
    ("--request-log-retention", "4s"),
    ("--audit-retention", "4s"),
    ("--prune-interval", "1s"),
];

/// Where the retention test keeps its data: the defaults, or a PostgreSQL of
/// its own (pruning with tiny retentions would empty a shared one's audit
/// table under other tests) with the shared OpenBao.
enum RetentionBackend {
    Embedded,
    Postgres {
        postgres: OwnPostgres,
        vault_addr: String,
    },
}

impl RetentionBackend {
    fn apply(&self, config: TestServerConfig) -> TestServerConfig {
        match self {
            RetentionBackend::Embedded => config,
            RetentionBackend::Postgres {
                postgres,
                vault_addr,
            } => config
                .with_arg("--database-url", &postgres.url)
                .with_arg("--vault-addr", vault_addr)
                .with_env("VAULT_TOKEN", "root"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_rows_and_a_resolver_behind_the_horizon_reloads() {
    retention_scenario(RetentionBackend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retention_prunes_old_rows_and_a_resolver_behind_the_horizon_reloads_on_postgres_openbao() {
    let Some(Backend::PostgresOpenBao { vault_addr, .. }) = Backend::postgres_openbao() else {
        return;
    };
    let postgres = OwnPostgres::start_new();
    retention_scenario(RetentionBackend::Postgres {
        postgres,
        vault_addr,
    })
    .await;
}

async fn retention_scenario(backend: RetentionBackend) {
    let mut control = TestServer::configure().with_role(Role::Control);
    for (flag, value) in TINY_RETENTION {
        control = control.with_arg(flag, value);
    }
    let control = backend.apply(control).spawn().await;
    let resolver = backend
        .apply(
            TestServer::configure()
                .with_role(Role::Resolver)
                .with_data_dir_of(&control),
        )
        .spawn()
        .await;
    let owner = control.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
    resolver.forbid_in_logs(&owner);
    let password = control.marker("retention-password");
    resolver.forbid_in_logs(&password);
    let mut clients = control.client().await;
    let resolver_client = resolver.client().await;

    // A create with a request_id, retried within the window: one deployment.
    let request_id = format!("retention-{}", random_hex(8));
    let create_prod = {
        let (owner_client, request_id) = (clients.with_token(&owner), request_id.clone());
        move || {
            let (client, request_id) = (owner_client.clone(), request_id.clone());
            async move {
                client
                    .create_deployment(CreateDeploymentRequest {
                        parent: workspace_name("acme"),
                        deployment_id: "prod".to_owned(),
                        deployment: Some(Deployment {
                            kind: DeploymentKind::Standard as i32,
                            ..Default::default()
                        }),
                        request_id,
                    })
                    .await
            }
        }
    };
    let first = ok(create_prod().await, "CreateDeployment");
    let retried = ok(
        create_prod().await,
        "a retry within the request log's retention",
    );
    assert_eq!((retried.name, retried.etag), (first.name, first.etag));

    create_connection(
        &mut clients,
        &owner,
        "acme",
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    create_link(
        &mut clients,
        &owner,
        "acme",
        "warehouse",
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let mut tokens = Vec::new();
    for description in ["revoked later", "kept"] {
        let issued = ok(
            clients
                .with_token(&owner)
                .create_deployment_token(CreateDeploymentTokenRequest {
                    parent: deployment_name("acme", "prod"),
                    description: description.to_owned(),
                    request_id: String::new(),
                })
                .await,
            "CreateDeploymentToken",
        );
        control.forbid_in_logs(&issued.token);
        resolver.forbid_in_logs(&issued.token);
        tokens.push(issued);
    }
    let resolve = |token: &str| {
        let client = resolver_client.with_token(token);
        async move {
            client
                .resolve_connection(ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: "warehouse".to_owned(),
                })
                .await
        }
    };
    let mut seen = 0;
    for issued in &tokens {
        let resolved = ok(resolve(&issued.token).await, "ResolveConnection");
        assert_eq!(resolved.schema, "PROD");
        seen = resolved.revision;
    }

    // The resolver stops following the feed while two changes are made and
    // pruned: it must notice it fell behind the horizon and reload.
    resolver.signal("STOP");
    let moved = ok(
        clients
            .with_token(&owner)
            .update_link(UpdateLinkRequest {
                link: Some(Link {
                    name: format!("{}/links/prod", connection_name("acme", "warehouse")),
                    overrides: Some(LinkOverrides {
                        schema: Some("MOVED".to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["overrides.schema".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateLink",
    );
    assert_eq!(
        moved
            .overrides
            .and_then(|overrides| overrides.schema)
            .as_deref(),
        Some("MOVED")
    );
    ok(
        clients
            .with_token(&owner)
            .revoke_deployment_token(RevokeDeploymentTokenRequest {
                name: tokens[0].name.clone(),
            })
            .await,
        "RevokeDeploymentToken",
    );
    // Both writes came after the revision the resolver had seen.
    let pruned_past = seen + 2;
    let horizon =
        regex::Regex::new(r"retention pruning finished.*feed_horizon=(\d+)").expect("regex");
    let started = Instant::now();
    loop {
        let logs = control.logs();
        let reached = horizon
            .captures_iter(&logs)
            .filter_map(|found| found[1].parse::<i64>().ok())
            .any(|revision| revision >= pruned_past);
        if reached {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "control never pruned the feed past revision {pruned_past}:\n{logs}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    resolver.signal("CONT");

    let started = Instant::now();
    loop {
        let revoked = resolve(&tokens[0].token).await;
        let kept = resolve(&tokens[1].token).await;
        let kept_schema = kept.as_ref().map(|response| response.schema.clone());
        if revoked.as_ref().err().map(Status::code) == Some(Code::Unauthenticated)
            && kept_schema.as_ref().is_ok_and(|schema| schema == "MOVED")
        {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(10),
            "the resolver never caught up after the feed was pruned past it: revoked token {:?}, kept token {kept_schema:?}",
            revoked.map(|response| response.schema)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(
        resolver.logs().contains("reloading everything"),
        "the resolver says why it reloaded"
    );

    // Past the request log's retention, the same request is a new one.
    let started = Instant::now();
    loop {
        match create_prod().await {
            Err(status) if status.code() == Code::AlreadyExists => break,
            Ok(_) => {}
            Err(status) => panic!("a late retry: {status:?}"),
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the request_id record was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }

    // Old audit events go; new ones are listed, and the service still works.
    let mut audit = control.client().await;
    let list = |audit: &mut Client| {
        let audit = audit.clone();
        let owner = owner.clone();
        async move {
            ok(
                audit
                    .with_token(&owner)
                    .list_audit_events(ListAuditEventsRequest {
                        parent: workspace_name("acme"),
                        page_size: 100,
                        page_token: String::new(),
                        filter: String::new(),
                    })
                    .await,
                "ListAuditEvents",
            )
            .audit_events
        }
    };
    let started = Instant::now();
    while list(&mut audit)
        .await
        .iter()
        .any(|event| event.request_id == request_id)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the first CreateDeployment's audit event was never pruned"
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    create_deployment(&mut clients, &owner, "acme", "fresh").await;
    let events = list(&mut audit).await;
    assert!(
        events
            .iter()
            .any(|event| event.resource == deployment_name("acme", "fresh")),
        "a new event is listed: {events:?}"
    );
    let resolved = ok(
        resolve(&tokens[1].token).await,
        "ResolveConnection after pruning",
    );
    assert_eq!(resolved.schema, "MOVED");
    control.assert_logs_clean();
    resolver.assert_logs_clean();
}
