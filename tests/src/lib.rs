//! End-to-end test fixture: starts the real `switchboard` binary on free
//! loopback ports with a temporary data dir, waits until gRPC health reports
//! SERVING, captures its output to a log file, mints development user tokens
//! with `switchboard token user`, and stops the process with SIGTERM on drop.
//!
//! Secrets used by tests are unique markers ([`TestServer::marker`]); a test
//! ends with [`TestServer::assert_logs_clean`], which fails if any marker or
//! credential the test registered appears in the server's logs. With
//! `SWITCHBOARD_E2E_ARTIFACTS` set, servers also keep their logs, metrics and
//! databases for the post-suite scan in [`leaks`].

use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tempfile::TempDir;
use tonic::metadata::MetadataValue;
use tonic::transport::{Channel, Endpoint};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

mod client;
pub mod grpcurl;
pub mod leaks;

pub use client::{AnyRequest, Client, Method};

/// Upper bound for a server to report SERVING; a guard against hangs, not a
/// performance expectation.
const STARTUP_DEADLINE: Duration = Duration::from_secs(60);
/// Upper bound for a server to exit after SIGTERM before it is killed.
const SHUTDOWN_DEADLINE: Duration = Duration::from_secs(20);
/// Attempts to start a server when the free port picked was taken meanwhile.
const START_ATTEMPTS: usize = 3;

/// Which services a spawned process serves (its subcommand).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// `switchboard dev`: every service on one address.
    Dev,
    /// `switchboard control`: connections, deployments, policy, audit.
    Control,
    /// `switchboard resolver`: the resolver only.
    Resolver,
}

impl Role {
    fn subcommand(self) -> &'static str {
        match self {
            Role::Dev => "dev",
            Role::Control => "control",
            Role::Resolver => "resolver",
        }
    }
}

/// A workspace role in a user token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkspaceRole {
    Member,
    Author,
    Operator,
    Owner,
}

impl WorkspaceRole {
    fn as_str(self) -> &'static str {
        match self {
            WorkspaceRole::Member => "MEMBER",
            WorkspaceRole::Author => "AUTHOR",
            WorkspaceRole::Operator => "OPERATOR",
            WorkspaceRole::Owner => "OWNER",
        }
    }
}

/// Builder for a [`TestServer`].
#[derive(Debug)]
pub struct TestServerConfig {
    role: Role,
    shared_data_dir: Option<Arc<TempDir>>,
    metrics: bool,
    /// Extra command-line arguments, appended after the fixture's own.
    args: Vec<OsString>,
    /// Extra environment variables, set after the fixture cleared
    /// `SWITCHBOARD_*` and `VAULT_TOKEN`.
    envs: Vec<(OsString, OsString)>,
    /// Artifacts root overriding `SWITCHBOARD_E2E_ARTIFACTS`.
    artifacts_root: Option<PathBuf>,
}

/// Where one server keeps what the post-suite scan reads.
#[derive(Debug, Clone)]
struct Artifacts {
    /// The run's root: `markers`, `statuses`, `servers/`.
    root: PathBuf,
    /// `root/servers/<id>`: this server's log, metrics and database copy.
    server_dir: PathBuf,
}

impl Artifacts {
    fn for_new_server(root: PathBuf) -> Artifacts {
        static NEXT_SERVER: AtomicUsize = AtomicUsize::new(0);
        let id = format!(
            "{}-{}-{}",
            std::process::id(),
            NEXT_SERVER.fetch_add(1, Ordering::Relaxed),
            random_hex(3)
        );
        let server_dir = root.join(leaks::SERVERS_DIR).join(id);
        std::fs::create_dir_all(&server_dir).expect("create the server's artifacts dir");
        Artifacts { root, server_dir }
    }
}

/// A running `switchboard` process.
#[derive(Debug)]
pub struct TestServer {
    role: Role,
    child: Option<Child>,
    address: SocketAddr,
    metrics_address: Option<SocketAddr>,
    data_dir: Arc<TempDir>,
    /// Holds the log file; kept apart from the data dir, which may be shared.
    log_dir: TempDir,
    log_path: PathBuf,
    /// Markers and credentials that must never appear in the logs.
    forbidden: Mutex<Vec<String>>,
    /// Kept logs, metrics and database copies, when the run keeps them.
    artifacts: Option<Artifacts>,
}

impl TestServer {
    /// Starts building a server; `dev` by default.
    pub fn configure() -> TestServerConfig {
        TestServerConfig {
            role: Role::Dev,
            shared_data_dir: None,
            metrics: false,
            args: Vec::new(),
            envs: Vec::new(),
            artifacts_root: None,
        }
    }
}

impl TestServerConfig {
    /// Serves `role` instead of `dev`.
    pub fn with_role(mut self, role: Role) -> Self {
        self.role = role;
        self
    }

    /// Uses `other`'s data dir and SQLite file (`--database-url
    /// sqlite://DIR/switchboard.db`), as a separate control or resolver
    /// process of the same installation would.
    pub fn with_data_dir_of(mut self, other: &TestServer) -> Self {
        self.shared_data_dir = Some(other.data_dir.clone());
        self
    }

    /// Serves Prometheus metrics on a second free port.
    pub fn with_metrics(mut self) -> Self {
        self.metrics = true;
        self
    }

    /// Appends `flag value` to the command line, e.g.
    /// `with_arg("--database-url", url)` or `with_arg("--vault-addr", addr)`.
    /// A `--database-url` given here replaces the SQLite URL that
    /// [`with_data_dir_of`](Self::with_data_dir_of) would pass.
    pub fn with_arg(mut self, flag: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.args.push(flag.as_ref().to_owned());
        self.args.push(value.as_ref().to_owned());
        self
    }

    /// Appends a bare flag (no value) to the command line.
    pub fn with_flag(mut self, flag: impl AsRef<OsStr>) -> Self {
        self.args.push(flag.as_ref().to_owned());
        self
    }

    /// Sets an environment variable for the process, e.g.
    /// `with_env("VAULT_TOKEN", "root")`. Applied after the fixture removed
    /// inherited `SWITCHBOARD_*` variables and `VAULT_TOKEN`, so it wins.
    pub fn with_env(mut self, key: impl AsRef<OsStr>, value: impl AsRef<OsStr>) -> Self {
        self.envs
            .push((key.as_ref().to_owned(), value.as_ref().to_owned()));
        self
    }

    /// Keeps this server's artifacts under `root` (markers, log, metrics,
    /// database copy) instead of `SWITCHBOARD_E2E_ARTIFACTS`, e.g. to check
    /// the scan itself without touching the run's.
    pub fn with_artifacts_root(mut self, root: impl Into<PathBuf>) -> Self {
        self.artifacts_root = Some(root.into());
        self
    }

    /// Whether [`with_arg`](Self::with_arg) set `--database-url`.
    fn has_database_url(&self) -> bool {
        self.args.iter().any(|arg| {
            arg == "--database-url" || arg.to_string_lossy().starts_with("--database-url=")
        })
    }

    /// Starts the binary and waits until gRPC health reports SERVING.
    pub async fn spawn(self) -> TestServer {
        let data_dir = match &self.shared_data_dir {
            Some(shared) => shared.clone(),
            None => Arc::new(
                tempfile::Builder::new()
                    .prefix("switchboard-data-")
                    .tempdir()
                    .expect("create a temporary data dir"),
            ),
        };
        let mut last_logs = String::new();
        for _ in 0..START_ATTEMPTS {
            match self.try_spawn(data_dir.clone()).await {
                Ok(server) => return server,
                Err(logs) => last_logs = logs,
            }
        }
        panic!(
            "switchboard {} did not start after {START_ATTEMPTS} attempts; last log:\n{last_logs}",
            self.role.subcommand()
        );
    }

    /// One attempt; `Err(logs)` when the process exited because its port was taken.
    async fn try_spawn(&self, data_dir: Arc<TempDir>) -> Result<TestServer, String> {
        let binary = switchboard_binary();
        let address = free_loopback_address();
        let metrics_address = self.metrics.then(free_loopback_address);
        let log_dir = tempfile::Builder::new()
            .prefix("switchboard-log-")
            .tempdir()
            .expect("create a temporary log dir");
        let artifacts = self
            .artifacts_root
            .clone()
            .or_else(leaks::artifacts_root)
            .map(Artifacts::for_new_server);
        let log_path = match &artifacts {
            Some(artifacts) => artifacts.server_dir.join("server.log"),
            None => log_dir.path().join("server.log"),
        };
        let log = File::create(&log_path).expect("create the server log file");
        let log_for_stderr = log.try_clone().expect("clone the log file handle");

        let mut command = Command::new(&binary);
        command
            .arg(self.role.subcommand())
            .arg("--data-dir")
            .arg(data_dir.path())
            .arg("--listen")
            .arg(address.to_string());
        if self.shared_data_dir.is_some() && !self.has_database_url() {
            command.arg("--database-url").arg(format!(
                "sqlite://{}",
                data_dir.path().join("switchboard.db").display()
            ));
        }
        if let Some(metrics_address) = metrics_address {
            command
                .arg("--metrics-listen")
                .arg(metrics_address.to_string());
        }
        // Only what the fixture sets configures the server.
        for (name, _) in std::env::vars_os() {
            if name.to_string_lossy().starts_with("SWITCHBOARD_") {
                command.env_remove(name);
            }
        }
        // The server's own crates log at debug, so that the marker check
        // covers their most talkative level too.
        command
            .env(
                "SWITCHBOARD_LOG",
                "info,switchboard_cli=debug,switchboard_server=debug,switchboard_control=debug,\
                 switchboard_resolver=debug,switchboard_store=debug,switchboard_domain=debug",
            )
            .env("NO_COLOR", "1")
            .env_remove("VAULT_TOKEN")
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(log_for_stderr));
        command.args(&self.args);
        for (key, value) in &self.envs {
            command.env(key, value);
        }
        let child = command.spawn().unwrap_or_else(|err| {
            panic!(
                "cannot start {}: {err}; build it with `cargo build -p switchboard-cli` \
                 or set SWITCHBOARD_BIN",
                binary.display()
            )
        });
        let mut server = TestServer {
            role: self.role,
            child: Some(child),
            address,
            metrics_address,
            data_dir,
            log_dir,
            log_path,
            forbidden: Mutex::new(Vec::new()),
            artifacts,
        };
        match server.wait_until_serving().await {
            Ok(()) => Ok(server),
            Err(StartError::PortTaken) => Err(server.logs()),
            Err(StartError::Exited(status)) => panic!(
                "switchboard {} exited with {status} before serving; log:\n{}",
                self.role.subcommand(),
                server.logs()
            ),
            Err(StartError::Timeout) => panic!(
                "switchboard {} did not report SERVING within {STARTUP_DEADLINE:?}; log:\n{}",
                self.role.subcommand(),
                server.logs()
            ),
        }
    }
}

enum StartError {
    PortTaken,
    Exited(ExitStatus),
    Timeout,
}

impl TestServer {
    async fn wait_until_serving(&mut self) -> Result<(), StartError> {
        let started = Instant::now();
        loop {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|child| child.try_wait().expect("poll the server process"))
            {
                let logs = self.logs();
                if logs.contains("cannot listen") || logs.contains("Address already in use") {
                    return Err(StartError::PortTaken);
                }
                return Err(StartError::Exited(status));
            }
            if self.health_status("").await == Some(ServingStatus::Serving) {
                return Ok(());
            }
            if started.elapsed() > STARTUP_DEADLINE {
                return Err(StartError::Timeout);
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// The health status of `service` ("" for the whole server), or `None`
    /// when the server can't be reached or doesn't know the service.
    pub async fn health_status(&self, service: &str) -> Option<ServingStatus> {
        let channel = Endpoint::from_shared(self.endpoint())
            .ok()?
            .connect_timeout(Duration::from_secs(1))
            .connect()
            .await
            .ok()?;
        let response = HealthClient::new(channel)
            .check(HealthCheckRequest {
                service: service.to_owned(),
            })
            .await
            .ok()?;
        ServingStatus::try_from(response.into_inner().status).ok()
    }

    /// Which services this process serves.
    pub fn role(&self) -> Role {
        self.role
    }

    /// The gRPC address, `127.0.0.1:PORT`.
    pub fn address(&self) -> SocketAddr {
        self.address
    }

    /// The metrics address, when started [`TestServerConfig::with_metrics`].
    pub fn metrics_address(&self) -> Option<SocketAddr> {
        self.metrics_address
    }

    /// `http://127.0.0.1:PORT`, for tonic.
    pub fn endpoint(&self) -> String {
        format!("http://{}", self.address)
    }

    /// The process id, while the process runs (e.g. to read its RSS).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log_path
    }

    /// The data dir passed as `--data-dir`.
    pub fn data_dir(&self) -> &Path {
        self.data_dir.path()
    }

    /// A connected channel to the server.
    pub async fn channel(&self) -> Channel {
        Endpoint::from_shared(self.endpoint())
            .expect("a valid endpoint")
            .connect()
            .await
            .unwrap_or_else(|err| panic!("connect to {}: {err}", self.endpoint()))
    }

    /// A typed client on a new channel to the server, sending no
    /// credentials until [`Client::with_token`] says which.
    pub async fn client(&self) -> Client {
        Client::new(self.channel().await)
    }

    /// Mints a user JWT with `switchboard token user`, signed with this
    /// server's development key. The token is registered as forbidden in logs.
    pub fn user_token(&self, subject: &str, roles: &[(&str, WorkspaceRole)]) -> String {
        let token = mint_user_token(self.data_dir(), subject, roles);
        self.forbid_in_logs(&token);
        token
    }

    /// A unique secret value such as `sb-marker-password-3f9c…`, registered
    /// as forbidden in logs.
    pub fn marker(&self, label: &str) -> String {
        let marker = format!("sb-marker-{label}-{}", random_hex(12));
        self.forbid_in_logs(&marker);
        marker
    }

    /// Registers a credential or secret that must never appear in the logs.
    pub fn forbid_in_logs(&self, secret: &str) {
        assert!(!secret.is_empty(), "an empty string can't be checked for");
        self.forbidden
            .lock()
            .expect("forbidden list lock")
            .push(secret.to_owned());
        if let Some(artifacts) = &self.artifacts {
            leaks::append_line(&artifacts.root, leaks::MARKERS_FILE, secret);
        }
    }

    /// Everything the process wrote to stdout and stderr so far.
    pub fn logs(&self) -> String {
        let mut text = String::new();
        if let Ok(mut file) = File::open(&self.log_path) {
            let mut bytes = Vec::new();
            let _ = file.read_to_end(&mut bytes);
            text = String::from_utf8_lossy(&bytes).into_owned();
        }
        text
    }

    /// Fails if any marker or credential registered with this server
    /// appears in its logs.
    pub fn assert_logs_clean(&self) {
        let logs = self.logs();
        let forbidden = self.forbidden.lock().expect("forbidden list lock").clone();
        let leaked: Vec<&String> = forbidden
            .iter()
            .filter(|secret| logs.contains(secret.as_str()))
            .collect();
        assert!(
            leaked.is_empty(),
            "secrets appear in the server log {}: {leaked:?}",
            self.log_path.display()
        );
    }

    /// Sends `signal` (a `kill` name such as `KILL` or `TERM`) to the
    /// process and returns at once; see [`wait_for_exit`](Self::wait_for_exit).
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server process was running");
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} {} failed", child.id());
    }

    /// Waits, without blocking the async runtime, until the process exits;
    /// its exit status. The data dir stays, so a new process can be started
    /// on it with [`TestServerConfig::with_data_dir_of`]. Kills the process
    /// if it has not exited within the shutdown deadline.
    pub async fn wait_for_exit(&mut self) -> ExitStatus {
        let child = self.child.as_mut().expect("the server process was running");
        let asked = Instant::now();
        loop {
            if let Some(status) = child.try_wait().expect("poll the server process") {
                self.child = None;
                return status;
            }
            if asked.elapsed() > SHUTDOWN_DEADLINE {
                let _ = child.kill();
                let status = child.wait().expect("wait for the killed server");
                self.child = None;
                panic!("the server did not exit within {SHUTDOWN_DEADLINE:?}; killed: {status}");
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sends SIGTERM and waits for the process; its exit status.
    pub fn shutdown(mut self) -> ExitStatus {
        self.stop().expect("the server process was running")
    }

    fn stop(&mut self) -> Option<ExitStatus> {
        let mut child = self.child.take()?;
        if let Ok(Some(status)) = child.try_wait() {
            return Some(status);
        }
        self.keep_metrics();
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let asked = Instant::now();
        loop {
            match child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if asked.elapsed() < SHUTDOWN_DEADLINE => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                _ => {
                    let _ = child.kill();
                    return child.wait().ok();
                }
            }
        }
    }
}

impl TestServer {
    /// Saves the server's `/metrics` output, when it serves metrics and the
    /// run keeps artifacts.
    fn keep_metrics(&self) {
        let (Some(artifacts), Some(address)) = (&self.artifacts, self.metrics_address) else {
            return;
        };
        if let Some(text) = http_get(address, "/metrics") {
            let _ = std::fs::write(artifacts.server_dir.join("metrics.txt"), text);
        }
    }

    /// Copies the SQLite database files of the (stopped) server into its
    /// artifacts dir, when the run keeps artifacts.
    fn keep_database(&self) {
        let Some(artifacts) = &self.artifacts else {
            return;
        };
        let Ok(entries) = std::fs::read_dir(self.data_dir()) else {
            return;
        };
        let copies = artifacts.server_dir.join("data");
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if name.contains(".db") && entry.file_type().is_ok_and(|kind| kind.is_file()) {
                let _ = std::fs::create_dir_all(&copies);
                let _ = std::fs::copy(entry.path(), copies.join(&name));
            }
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        let status = self.stop();
        self.keep_database();
        if std::thread::panicking() {
            let logs = self.logs();
            let tail: Vec<&str> = logs.lines().rev().take(80).collect();
            eprintln!(
                "--- switchboard {} at {} exited with {status:?}; last log lines ({}): ---",
                self.role.subcommand(),
                self.address,
                self.log_dir.path().display()
            );
            for line in tail.iter().rev() {
                eprintln!("{line}");
            }
            eprintln!("--- end of switchboard log ---");
        }
    }
}

/// Mints a user JWT with `switchboard token user --data-dir DIR`.
pub fn mint_user_token(data_dir: &Path, subject: &str, roles: &[(&str, WorkspaceRole)]) -> String {
    let mut command = Command::new(switchboard_binary());
    command
        .args(["token", "user", "--data-dir"])
        .arg(data_dir)
        .args(["--subject", subject])
        .env_remove("SWITCHBOARD_DATA_DIR");
    for (workspace, role) in roles {
        command
            .arg("--role")
            .arg(format!("{workspace}={}", role.as_str()));
    }
    let output = command.output().expect("run switchboard token user");
    assert!(
        output.status.success(),
        "switchboard token user failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8(output.stdout)
        .expect("token is UTF-8")
        .trim()
        .to_owned();
    assert_eq!(
        token.split('.').count(),
        3,
        "switchboard token user prints a JWT"
    );
    token
}

/// Set by `scripts/test.sh` once it has started PostgreSQL and OpenBao and built
/// the Airflow venvs: from then on a test whose backend is missing fails
/// instead of skipping, so CI can't pass quietly without one.
pub const REQUIRE_BACKENDS: &str = "SWITCHBOARD_REQUIRE_BACKENDS";

/// Notes that a test (or part of one) skips because `what` is missing, or
/// fails when [`REQUIRE_BACKENDS`] is set.
pub fn skip_without(what: &str) {
    assert!(
        std::env::var_os(REQUIRE_BACKENDS).is_none(),
        "{what} is missing, and {REQUIRE_BACKENDS} says every backend must be there"
    );
    eprintln!("skipping: {what} is missing");
}

/// The environment variable `name` that points a test at a backend (such as
/// `SWITCHBOARD_TEST_DATABASE_URL`); when it is unset or empty, `None` after
/// [`skip_without`]. `hint` says which command prints a value for it.
pub fn backend_env(name: &str, hint: &str) -> Option<String> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Some(value),
        _ => {
            skip_without(&format!("{name} ({hint} prints one)"));
            None
        }
    }
}

/// The shared test PostgreSQL (`SWITCHBOARD_TEST_DATABASE_URL`), as [`backend_env`].
pub fn database_url() -> Option<String> {
    backend_env("SWITCHBOARD_TEST_DATABASE_URL", "scripts/postgres.sh start")
}

/// The shared test OpenBao (`SWITCHBOARD_TEST_VAULT_ADDR`), as [`backend_env`].
pub fn vault_addr() -> Option<String> {
    backend_env("SWITCHBOARD_TEST_VAULT_ADDR", "scripts/openbao.sh start")
}

/// The repository root (the workspace).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ sits in the workspace root")
        .to_path_buf()
}

/// `SWITCHBOARD_BIN`, else `debug/switchboard` in `CARGO_TARGET_DIR` or the
/// workspace's `target/`.
pub fn switchboard_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("SWITCHBOARD_BIN") {
        return PathBuf::from(path);
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let target = if target.is_relative() {
        workspace_root().join(target)
    } else {
        target
    };
    let binary = target.join("debug").join("switchboard");
    assert!(
        binary.exists(),
        "{} does not exist: build it with `cargo build -p switchboard-cli` or set SWITCHBOARD_BIN",
        binary.display()
    );
    binary
}

/// Wraps `message` in a request carrying `authorization: Bearer <token>`.
pub fn authorized<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    let value: MetadataValue<_> = format!("Bearer {token}")
        .parse()
        .expect("a token is valid metadata");
    request.metadata_mut().insert("authorization", value);
    request
}

/// Lowercase hex of `bytes` random bytes from the operating system.
pub fn random_hex(bytes: usize) -> String {
    let mut buffer = vec![0u8; bytes];
    File::open("/dev/urandom")
        .and_then(|mut file| file.read_exact(&mut buffer))
        .expect("read /dev/urandom");
    buffer.iter().map(|byte| format!("{byte:02x}")).collect()
}

/// The body of `GET path` over plain HTTP/1.0, or `None` on any failure.
fn http_get(address: SocketAddr, path: &str) -> Option<String> {
    use std::io::Write;
    let mut stream = std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n").ok()?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response).ok()?;
    let response = String::from_utf8_lossy(&response).into_owned();
    let (_, body) = response.split_once("\r\n\r\n")?;
    Some(body.to_owned())
}

/// A loopback address with a port that was free a moment ago.
fn free_loopback_address() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
    listener.local_addr().expect("local address")
}
