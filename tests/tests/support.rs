//! Client, request builders and status assertions shared by the tests.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, CreateDeploymentRequest, CreateDeploymentTokenRequest,
    CreateLinkRequest, Deployment, DeploymentKind, Link, LinkOverrides,
};
use switchboard_tests::{TestServer, workspace_root};
use tempfile::TempDir;
use tonic::{Code, Status};
use tonic_types::StatusExt;

pub(crate) use switchboard_tests::Client;

/// A string `Value`.
pub(crate) fn string_value(text: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(text.to_owned())),
    }
}

/// A null `Value` (removes an extra key in link overrides).
pub(crate) fn null_value() -> Value {
    Value {
        kind: Some(Kind::NullValue(0)),
    }
}

/// A `Struct` of string values.
pub(crate) fn string_struct(entries: &[(&str, &str)]) -> Struct {
    Struct {
        fields: entries
            .iter()
            .map(|(key, value)| ((*key).to_owned(), string_value(value)))
            .collect::<BTreeMap<_, _>>(),
    }
}

/// The string at `key` of an optional `Struct`.
pub(crate) fn extra_string<'a>(extra: &'a Option<Struct>, key: &str) -> Option<&'a str> {
    match extra.as_ref()?.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(text) => Some(text.as_str()),
        _ => None,
    }
}

/// Unwraps a successful call, failing with the status otherwise.
pub(crate) fn ok<T>(result: Result<T, Status>, what: &str) -> T {
    match result {
        Ok(message) => message,
        Err(status) => panic!(
            "{what}: expected OK, got {:?}: {}",
            status.code(),
            status.message()
        ),
    }
}

/// Fails unless the call failed with `code`; the status.
pub(crate) fn expect_code<T: Debug>(result: Result<T, Status>, code: Code, what: &str) -> Status {
    match result {
        Ok(message) => panic!("{what}: expected {code:?}, got OK: {message:?}"),
        Err(status) => {
            switchboard_tests::leaks::record_status(&status);
            assert_eq!(
                status.code(),
                code,
                "{what}: expected {code:?}, got {:?}: {}",
                status.code(),
                status.message()
            );
            status
        }
    }
}

/// Fails unless the call failed with one of `codes`; the status.
pub(crate) fn expect_one_of<T: Debug>(
    result: Result<T, Status>,
    codes: &[Code],
    what: &str,
) -> Status {
    match result {
        Ok(message) => panic!("{what}: expected one of {codes:?}, got OK: {message:?}"),
        Err(status) => {
            switchboard_tests::leaks::record_status(&status);
            assert!(
                codes.contains(&status.code()),
                "{what}: expected one of {codes:?}, got {:?}: {}",
                status.code(),
                status.message()
            );
            status
        }
    }
}

/// The `field` of every `google.rpc.BadRequest` violation in `status`;
/// fails when the status has no BadRequest details.
pub(crate) fn violation_fields(status: &Status) -> Vec<String> {
    let bad_request = status.get_details_bad_request().unwrap_or_else(|| {
        panic!(
            "INVALID_ARGUMENT without google.rpc.BadRequest details: {}",
            status.message()
        )
    });
    assert!(
        !bad_request.field_violations.is_empty(),
        "BadRequest without field violations: {}",
        status.message()
    );
    for violation in &bad_request.field_violations {
        assert!(
            !violation.description.is_empty(),
            "violation of {} has no description",
            violation.field
        );
    }
    bad_request
        .field_violations
        .iter()
        .map(|violation| violation.field.clone())
        .collect()
}

/// Fails unless `status` carries no part of `secret`, in its message or details.
pub(crate) fn assert_status_free_of(status: &Status, secret: &str) {
    assert!(
        !status.message().contains(secret),
        "status message reveals a secret: {}",
        status.message()
    );
    let details = String::from_utf8_lossy(status.details());
    assert!(!details.contains(secret), "status details reveal a secret");
}

/// `workspaces/{workspace}`.
pub(crate) fn workspace_name(workspace: &str) -> String {
    format!("workspaces/{workspace}")
}

/// `workspaces/{workspace}/deployments/{deployment}`.
pub(crate) fn deployment_name(workspace: &str, deployment: &str) -> String {
    format!("workspaces/{workspace}/deployments/{deployment}")
}

/// `workspaces/{workspace}/connections/{conn_id}`.
pub(crate) fn connection_name(workspace: &str, conn_id: &str) -> String {
    format!("workspaces/{workspace}/connections/{conn_id}")
}

/// Creates a STANDARD deployment; fails unless it succeeds.
pub(crate) async fn create_deployment(
    clients: &mut Client,
    token: &str,
    workspace: &str,
    deployment_id: &str,
) -> Deployment {
    let request = CreateDeploymentRequest {
        parent: workspace_name(workspace),
        deployment_id: deployment_id.to_owned(),
        deployment: Some(Deployment {
            display_name: format!("Deployment {deployment_id}"),
            kind: DeploymentKind::Standard as i32,
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let deployment = ok(
        clients.with_token(token).create_deployment(request).await,
        "CreateDeployment",
    );
    assert_eq!(deployment.name, deployment_name(workspace, deployment_id));
    assert!(
        !deployment.etag.is_empty(),
        "a created deployment has an etag"
    );
    deployment
}

/// Issues a deployment token; fails unless it succeeds. The token is
/// registered as forbidden in `server`'s logs.
pub(crate) async fn create_deployment_token(
    server: &TestServer,
    clients: &mut Client,
    token: &str,
    workspace: &str,
    deployment_id: &str,
) -> String {
    let request = CreateDeploymentTokenRequest {
        parent: deployment_name(workspace, deployment_id),
        description: format!("shim of {deployment_id}"),
        request_id: String::new(),
    };
    let issued = ok(
        clients
            .with_token(token)
            .create_deployment_token(request)
            .await,
        "CreateDeploymentToken",
    );
    assert!(
        issued.name.starts_with(&format!(
            "{}/tokens/",
            deployment_name(workspace, deployment_id)
        )),
        "token name {} lies under its deployment",
        issued.name
    );
    // 256 bits take at least 43 characters in base64 and 64 in hex.
    assert!(
        issued.token.len() >= 43,
        "a deployment token carries at least 256 bits, got {} characters",
        issued.token.len()
    );
    server.forbid_in_logs(&issued.token);
    issued.token
}

/// A `snowflake_password` connection with a marker password: login, schema
/// `PUBLIC` and extras `account`, `warehouse` `BASE_WH`, `database`, `role`.
pub(crate) fn snowflake_connection(password: &str) -> Connection {
    Connection {
        r#type: "snowflake_password".to_owned(),
        description: "Analytics warehouse".to_owned(),
        login: "airflow_svc".to_owned(),
        password: password.to_owned(),
        schema: "PUBLIC".to_owned(),
        extra: Some(string_struct(&[
            ("account", "xy12345.eu-central-1"),
            ("warehouse", "BASE_WH"),
            ("database", "ANALYTICS"),
            ("role", "TRANSFORMER"),
        ])),
        ..Default::default()
    }
}

/// Creates `conn_id` in `workspace`; fails unless it succeeds.
pub(crate) async fn create_connection(
    clients: &mut Client,
    token: &str,
    workspace: &str,
    conn_id: &str,
    connection: Connection,
) -> Connection {
    let request = CreateConnectionRequest {
        parent: workspace_name(workspace),
        connection_id: conn_id.to_owned(),
        connection: Some(connection),
        request_id: String::new(),
        links: Vec::new(),
    };
    let created = ok(
        clients.with_token(token).create_connection(request).await,
        "CreateConnection",
    );
    assert_eq!(created.name, connection_name(workspace, conn_id));
    created
}

/// Links `conn_id` to `deployment_id` with `overrides`; fails unless it succeeds.
pub(crate) async fn create_link(
    clients: &mut Client,
    token: &str,
    workspace: &str,
    conn_id: &str,
    deployment_id: &str,
    overrides: LinkOverrides,
) -> Link {
    let request = CreateLinkRequest {
        parent: connection_name(workspace, conn_id),
        link: Some(Link {
            deployment: deployment_name(workspace, deployment_id),
            overrides: Some(overrides),
            ..Default::default()
        }),
        request_id: String::new(),
    };
    let link = ok(
        clients.with_token(token).create_link(request).await,
        "CreateLink",
    );
    assert_eq!(
        link.name,
        format!(
            "{}/links/{deployment_id}",
            connection_name(workspace, conn_id)
        )
    );
    assert_eq!(link.deployment, deployment_name(workspace, deployment_id));
    link
}

/// Overrides of `schema` and `extra.warehouse`.
pub(crate) fn schema_and_warehouse(schema: &str, warehouse: &str) -> LinkOverrides {
    LinkOverrides {
        schema: Some(schema.to_owned()),
        extra: Some(string_struct(&[("warehouse", warehouse)])),
        ..Default::default()
    }
}

/// A loopback port that was free a moment ago, with the next one free too
/// (OpenBao's dev server also listens on port + 1 for its cluster).
pub(crate) fn free_port_pair() -> u16 {
    loop {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free loopback port");
        let port = listener.local_addr().expect("local address").port();
        if port < u16::MAX && TcpListener::bind(("127.0.0.1", port + 1)).is_ok() {
            return port;
        }
    }
}

pub(crate) fn run_script(script: &str, action: &str, envs: &[(&str, String)]) -> String {
    let mut command = Command::new(workspace_root().join("scripts").join(script));
    command.arg(action);
    for (key, value) in envs {
        command.env(key, value);
    }
    let output = command
        .output()
        .unwrap_or_else(|err| panic!("run scripts/{script} {action}: {err}"));
    assert!(
        output.status.success(),
        "scripts/{script} {action} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// An OpenBao dev server of this test alone, on its own port.
///
/// Dev mode keeps everything in memory: after [`OwnOpenBao::stop`] and
/// [`OwnOpenBao::start`] every secret written before is gone.
pub(crate) struct OwnOpenBao {
    port: u16,
    pub(crate) addr: String,
}

impl OwnOpenBao {
    pub(crate) fn start_new() -> OwnOpenBao {
        let port = free_port_pair();
        let mut bao = OwnOpenBao {
            port,
            addr: String::new(),
        };
        bao.start();
        bao
    }

    fn envs(&self) -> [(&'static str, String); 1] {
        [("SWITCHBOARD_TEST_BAO_PORT", self.port.to_string())]
    }

    pub(crate) fn start(&mut self) {
        self.addr = run_script("openbao.sh", "start", &self.envs());
        assert!(self.addr.ends_with(&format!(":{}", self.port)));
    }

    pub(crate) fn stop(&self) {
        run_script("openbao.sh", "stop", &self.envs());
        // The script signals the server; wait until its port refuses.
        let asked = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                asked.elapsed() < Duration::from_secs(30),
                "OpenBao on port {} did not stop",
                self.port
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for OwnOpenBao {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/openbao.sh"))
            .arg("stop")
            .envs(self.envs())
            .output();
    }
}

/// A PostgreSQL cluster of this test alone, in a temporary dir on its own port.
pub(crate) struct OwnPostgres {
    port: u16,
    dir: TempDir,
    pub(crate) url: String,
}

impl OwnPostgres {
    pub(crate) fn start_new() -> OwnPostgres {
        let dir = tempfile::Builder::new()
            .prefix("switchboard-pg-outage-")
            .tempdir()
            .expect("create a dir for the cluster");
        let mut postgres = OwnPostgres {
            port: free_port_pair(),
            dir,
            url: String::new(),
        };
        postgres.start();
        postgres
    }

    fn envs(&self) -> [(&'static str, String); 2] {
        [
            ("SWITCHBOARD_TEST_PG_PORT", self.port.to_string()),
            (
                "SWITCHBOARD_TEST_PG_DIR",
                PathBuf::from(self.dir.path()).display().to_string(),
            ),
        ]
    }

    pub(crate) fn start(&mut self) {
        self.url = run_script("postgres.sh", "start", &self.envs());
    }

    pub(crate) fn stop(&self) {
        run_script("postgres.sh", "stop", &self.envs());
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ = Command::new(workspace_root().join("scripts/postgres.sh"))
            .arg("stop")
            .envs(self.envs())
            .output();
    }
}

/// An OpenBao of this test alone that, unlike the dev server, keeps its data
/// across a restart: a real server on Raft storage in a temporary dir,
/// initialised with one unseal key, unsealed again after every start, with
/// KV v2 mounted at `secret/` as in dev mode.
pub(crate) struct PersistentOpenBao {
    port: u16,
    dir: TempDir,
    child: Option<std::process::Child>,
    unseal_key: String,
    /// The root token, for `VAULT_TOKEN`.
    pub(crate) root_token: String,
    /// `http://127.0.0.1:PORT`.
    pub(crate) addr: String,
}

/// Upper bound for OpenBao to start, unseal or stop; a guard against hangs.
const OPENBAO_DEADLINE: Duration = Duration::from_secs(30);

impl PersistentOpenBao {
    pub(crate) fn start_new() -> PersistentOpenBao {
        let bao = workspace_root().join("tools/openbao/bin/bao");
        assert!(
            bao.exists(),
            "{} is missing: scripts/openbao.sh start installs it",
            bao.display()
        );
        let dir = tempfile::Builder::new()
            .prefix("switchboard-bao-")
            .tempdir()
            .expect("create a dir for OpenBao");
        let port = free_port_pair();
        let data = dir.path().join("raft");
        std::fs::create_dir(&data).expect("create the Raft dir");
        let config = format!(
            "storage \"raft\" {{\n  path = \"{}\"\n  node_id = \"node1\"\n  \
             performance_multiplier = 1\n}}\n\
             listener \"tcp\" {{\n  address = \"127.0.0.1:{port}\"\n  \
             cluster_address = \"127.0.0.1:{cluster}\"\n  tls_disable = true\n}}\n\
             api_addr = \"http://127.0.0.1:{port}\"\n\
             cluster_addr = \"http://127.0.0.1:{cluster}\"\n",
            data.display(),
            cluster = port + 1,
        );
        std::fs::write(dir.path().join("config.hcl"), config).expect("write the OpenBao config");
        let mut openbao = PersistentOpenBao {
            port,
            dir,
            child: None,
            unseal_key: String::new(),
            root_token: String::new(),
            addr: format!("http://127.0.0.1:{port}"),
        };
        openbao.spawn();
        let (status, init) = openbao.http(
            "PUT",
            "sys/init",
            Some(r#"{"secret_shares":1,"secret_threshold":1}"#),
        );
        assert_eq!(status, 200, "sys/init: {init}");
        openbao.unseal_key = init["keys_base64"][0]
            .as_str()
            .expect("an unseal key")
            .to_owned();
        openbao.root_token = init["root_token"]
            .as_str()
            .expect("a root token")
            .to_owned();
        openbao.unseal();
        let (status, body) = openbao.http(
            "POST",
            "sys/mounts/secret",
            Some(r#"{"type":"kv","options":{"version":"2"}}"#),
        );
        assert_eq!(status, 204, "mount KV v2 at secret/: {body}");
        openbao
    }

    /// Starts the stopped server again and unseals it; its data is kept.
    pub(crate) fn start(&mut self) {
        self.spawn();
        self.unseal();
    }

    /// Stops the server (SIGTERM) and waits until its port refuses.
    pub(crate) fn stop(&mut self) {
        let mut child = self.child.take().expect("OpenBao was running");
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let asked = Instant::now();
        while child.try_wait().expect("poll OpenBao").is_none() {
            if asked.elapsed() > OPENBAO_DEADLINE {
                let _ = child.kill();
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(
                asked.elapsed() < OPENBAO_DEADLINE,
                "OpenBao on port {} did not stop",
                self.port
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("bao.log"))
            .expect("open the OpenBao log");
        let child = Command::new(workspace_root().join("tools/openbao/bin/bao"))
            .arg("server")
            .arg(format!(
                "-config={}",
                self.dir.path().join("config.hcl").display()
            ))
            .stdin(std::process::Stdio::null())
            .stdout(log.try_clone().expect("clone the log handle"))
            .stderr(log)
            .spawn()
            .expect("start bao server");
        self.child = Some(child);
        let asked = Instant::now();
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(
                asked.elapsed() < OPENBAO_DEADLINE,
                "OpenBao did not listen on port {}: {}",
                self.port,
                std::fs::read_to_string(self.dir.path().join("bao.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Unseals and waits until the server is the active node (health 200).
    fn unseal(&self) {
        let body = serde_json::json!({ "key": self.unseal_key }).to_string();
        let (status, answer) = self.http("PUT", "sys/unseal", Some(&body));
        assert_eq!(status, 200, "sys/unseal: {answer}");
        let asked = Instant::now();
        while self.http("GET", "sys/health", None).0 != 200 {
            assert!(
                asked.elapsed() < OPENBAO_DEADLINE,
                "OpenBao never became active after unsealing"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// One HTTP call with the root token (once there is one): (status, JSON body).
    fn http(&self, method: &str, path: &str, body: Option<&str>) -> (u16, serde_json::Value) {
        let mut command = Command::new("curl");
        command.args(["-s", "-X", method, "-w", "\n%{http_code}"]);
        if !self.root_token.is_empty() {
            command
                .arg("-H")
                .arg(format!("X-Vault-Token: {}", self.root_token));
        }
        if let Some(body) = body {
            command.args(["-d", body]);
        }
        let output = command
            .arg(format!("{}/v1/{path}", self.addr))
            .output()
            .expect("run curl");
        let text = String::from_utf8_lossy(&output.stdout).into_owned();
        let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
        let json = serde_json::from_str(body).unwrap_or(serde_json::Value::Null);
        (status.trim().parse().unwrap_or(0), json)
    }
}

impl Drop for PersistentOpenBao {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}
