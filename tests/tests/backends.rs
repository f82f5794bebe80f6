//! The production backends: `switchboard control` and `switchboard resolver`
//! as separate processes on PostgreSQL + OpenBao (secrets really in OpenBao,
//! never in the database), and outages of either backend (UNAVAILABLE,
//! nothing written, the same request succeeds after recovery).
//!
//! Also the [`Backend`] every parameterized suite runs on, and helpers that
//! look at PostgreSQL (`psql`, `pg_dump`) and OpenBao (`curl`) directly.
//!
//! PostgreSQL + OpenBao tests need `SWITCHBOARD_TEST_DATABASE_URL` and
//! `SWITCHBOARD_TEST_VAULT_ADDR` (scripts/test.sh exports both); without them
//! they print why and pass. The outage tests start their own PostgreSQL and
//! OpenBao on other ports (scripts/postgres.sh, scripts/openbao.sh) so that
//! stopping them never disturbs the shared instances other tests use.

use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_proto::v1::{
    Connection, ConnectionView, CreateConnectionRequest, GetConnectionRequest, Link, LinkOverrides,
    ListConnectionsRequest, ResolveConnectionRequest, ResolvedConnection, UpdateConnectionRequest,
    UpdateWorkspacePolicyRequest, WorkspacePolicy,
};
use switchboard_tests::{Role, TestServer, TestServerConfig, WorkspaceRole, random_hex};
use tonic::Code;

use crate::support::{
    Client, OwnOpenBao, OwnPostgres, assert_status_free_of, connection_name, create_deployment,
    create_deployment_token, deployment_name, expect_code, ok, snowflake_connection,
    workspace_name,
};

/// The KV v2 mount and path prefix the server uses by default.
const VAULT_MOUNT: &str = "secret";
const VAULT_PREFIX: &str = "switchboard";
/// The OpenBao dev server's root token (scripts/openbao.sh).
const VAULT_TOKEN: &str = "root";
/// Upper bound for a change to reach a resolver; a guard against hangs.
pub(crate) const PROPAGATION_DEADLINE: Duration = Duration::from_secs(30);

/// Where a server keeps its data.
#[derive(Debug, Clone)]
pub(crate) enum Backend {
    /// The defaults: SQLite and encrypted secrets in the data dir.
    Embedded,
    /// PostgreSQL and OpenBao KV v2.
    PostgresOpenBao {
        database_url: String,
        vault_addr: String,
    },
}

impl Backend {
    pub(crate) fn embedded() -> Option<Backend> {
        Some(Backend::Embedded)
    }

    /// The shared PostgreSQL and OpenBao, or `None` (with a note) when the
    /// environment names none; a failure instead under
    /// `SWITCHBOARD_REQUIRE_BACKENDS` (see [`switchboard_tests::backend_env`]).
    pub(crate) fn postgres_openbao() -> Option<Backend> {
        let database_url = shared_database_url()?;
        let vault_addr = switchboard_tests::vault_addr()?;
        Some(Backend::PostgresOpenBao {
            database_url,
            vault_addr,
        })
    }

    /// Points `config` at this backend.
    pub(crate) fn apply(&self, config: TestServerConfig) -> TestServerConfig {
        match self {
            Backend::Embedded => config,
            Backend::PostgresOpenBao {
                database_url,
                vault_addr,
            } => config
                .with_arg("--database-url", database_url)
                .with_arg("--vault-addr", vault_addr)
                .with_env("VAULT_TOKEN", VAULT_TOKEN),
        }
    }

    /// `switchboard dev` on this backend.
    pub(crate) async fn dev(&self) -> TestServer {
        self.apply(TestServer::configure()).spawn().await
    }

    /// The database URL, when it is PostgreSQL.
    pub(crate) fn postgres_url(&self) -> Option<&str> {
        match self {
            Backend::Embedded => None,
            Backend::PostgresOpenBao { database_url, .. } => Some(database_url),
        }
    }
}

fn shared_database_url() -> Option<String> {
    switchboard_tests::database_url()
}

/// A workspace id no other test uses, so tests can share one database.
pub(crate) fn unique_workspace(label: &str) -> String {
    format!("{label}-{}", random_hex(6))
}

/// Runs `psql URL -tAc SQL` and returns its trimmed output.
pub(crate) fn psql(url: &str, sql: &str) -> String {
    let output = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-tAc", sql])
        .output()
        .expect("run psql (on the machine image at /usr/bin/psql)");
    assert!(
        output.status.success(),
        "psql {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout)
        .expect("psql prints UTF-8")
        .trim()
        .to_owned()
}

/// `psql` for a single number.
pub(crate) fn psql_count(url: &str, sql: &str) -> i64 {
    let text = psql(url, sql);
    text.parse()
        .unwrap_or_else(|_| panic!("{sql:?} printed {text:?}, not a number"))
}

/// Every row of every table, as `pg_dump --data-only` prints it.
fn pg_dump_data(url: &str) -> String {
    let output = Command::new("pg_dump")
        .args(["--data-only", "--no-owner", "--dbname", url])
        .output()
        .expect("run pg_dump");
    assert!(
        output.status.success(),
        "pg_dump failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// An OpenBao HTTP call with the root token: (HTTP status, body).
fn vault_http(vault_addr: &str, method: &str, path: &str) -> (u16, String) {
    let output = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}", "-H"])
        .arg(format!("X-Vault-Token: {VAULT_TOKEN}"))
        .arg(format!("{vault_addr}/v1/{path}"))
        .output()
        .expect("run curl");
    let text = String::from_utf8_lossy(&output.stdout).into_owned();
    let (body, status) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    (status.trim().parse().unwrap_or(0), body.to_owned())
}

/// The keys under a KV v2 folder (`LIST secret/metadata/<folder>/`); empty
/// when the folder does not exist.
pub(crate) fn vault_list(vault_addr: &str, folder: &str) -> Vec<String> {
    let (status, body) = vault_http(
        vault_addr,
        "LIST",
        &format!("{VAULT_MOUNT}/metadata/{folder}/"),
    );
    if status == 404 {
        return Vec::new();
    }
    assert_eq!(status, 200, "LIST {folder}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("OpenBao answers JSON");
    json["data"]["keys"]
        .as_array()
        .expect("a key list")
        .iter()
        .map(|key| key.as_str().expect("keys are strings").to_owned())
        .collect()
}

/// `data.data` of one version of a KV v2 entry.
fn vault_read_version(vault_addr: &str, path: &str, version: i64) -> serde_json::Value {
    let (status, body) = vault_http(
        vault_addr,
        "GET",
        &format!("{VAULT_MOUNT}/data/{path}?version={version}"),
    );
    assert_eq!(status, 200, "GET {path} version {version}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("OpenBao answers JSON");
    json["data"]["data"].clone()
}

/// `data` of a KV v2 entry's metadata (versions, max_versions, …).
fn vault_metadata(vault_addr: &str, path: &str) -> serde_json::Value {
    let (status, body) = vault_http(vault_addr, "GET", &format!("{VAULT_MOUNT}/metadata/{path}"));
    assert_eq!(status, 200, "GET metadata of {path}: {body}");
    let json: serde_json::Value = serde_json::from_str(&body).expect("OpenBao answers JSON");
    json["data"].clone()
}

/// Resolves `conn_id` with a deployment token until `accept` holds; the
/// resolver follows the change feed, so a fresh write may take a moment.
pub(crate) async fn resolve_until(
    clients: &mut Client,
    deployment_token: &str,
    conn_id: &str,
    what: &str,
    accept: impl Fn(&ResolvedConnection) -> bool,
) -> ResolvedConnection {
    let asked = Instant::now();
    loop {
        let result = clients
            .with_token(deployment_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: conn_id.to_owned(),
            })
            .await;
        if let Ok(response) = &result
            && accept(response)
        {
            return response.clone();
        }
        assert!(
            asked.elapsed() < PROPAGATION_DEADLINE,
            "{what}: the resolver never served the expected value; last answer: {:?}",
            result.map(|response| response.conn_id)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

fn create_request(
    workspace: &str,
    conn_id: &str,
    password: &str,
    request_id: &str,
    link_to: &[&str],
) -> CreateConnectionRequest {
    CreateConnectionRequest {
        parent: workspace_name(workspace),
        connection_id: conn_id.to_owned(),
        connection: Some(snowflake_connection(password)),
        request_id: request_id.to_owned(),
        links: link_to
            .iter()
            .map(|deployment| Link {
                deployment: deployment_name(workspace, deployment),
                ..Default::default()
            })
            .collect(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_and_resolver_run_apart_on_postgres_and_openbao() {
    let Some(backend) = Backend::postgres_openbao() else {
        return;
    };
    let Backend::PostgresOpenBao {
        database_url,
        vault_addr,
    } = &backend
    else {
        unreachable!()
    };
    let control = backend
        .apply(TestServer::configure().with_role(Role::Control))
        .spawn()
        .await;
    // The resolver shares the data dir only for the development signing key;
    // its data comes from PostgreSQL and OpenBao.
    let resolver = backend
        .apply(
            TestServer::configure()
                .with_role(Role::Resolver)
                .with_data_dir_of(&control),
        )
        .spawn()
        .await;
    let workspace = unique_workspace("apart");
    let operator = control.user_token("olivia", &[(&workspace, WorkspaceRole::Operator)]);
    let mut at_control = control.client().await;
    let mut at_resolver = resolver.client().await;

    for deployment in ["prod", "staging"] {
        create_deployment(&mut at_control, &operator, &workspace, deployment).await;
    }
    let password = control.marker("pg-bao-password");
    let prod_password = control.marker("pg-bao-prod-password");
    for secret in [&password, &prod_password] {
        resolver.forbid_in_logs(secret);
    }
    let mut request = create_request(&workspace, "warehouse", &password, "", &["prod", "staging"]);
    request.links[0].overrides = Some(LinkOverrides {
        password: Some(prod_password.clone()),
        schema: Some("PROD".to_owned()),
        ..Default::default()
    });
    let created = ok(
        at_control
            .with_token(&operator)
            .create_connection(request)
            .await,
        "CreateConnection on PostgreSQL + OpenBao",
    );
    assert!(
        created.password.is_empty(),
        "the password comes back masked"
    );

    let prod_token =
        create_deployment_token(&control, &mut at_control, &operator, &workspace, "prod").await;
    let staging_token =
        create_deployment_token(&control, &mut at_control, &operator, &workspace, "staging").await;
    for token in [&prod_token, &staging_token] {
        resolver.forbid_in_logs(token);
    }

    // The separate resolver serves each deployment its merged secret.
    let prod = resolve_until(&mut at_resolver, &prod_token, "warehouse", "prod", |_| true).await;
    assert_eq!(
        prod.password, prod_password,
        "prod gets its link's password"
    );
    assert_eq!(prod.schema, "PROD");
    let staging = resolve_until(
        &mut at_resolver,
        &staging_token,
        "warehouse",
        "staging",
        |_| true,
    )
    .await;
    assert_eq!(staging.password, password, "staging gets the base password");
    assert_eq!(staging.schema, "PUBLIC");

    // The secrets live in OpenBao: one entry for the connection and one for
    // the link with a secret override, named by their row ids, at the exact
    // KV version each row records.
    let quoted = workspace.replace('\'', "''");
    let connection_row = psql(
        database_url,
        &format!(
            "select id || ' ' || secret_version from connection \
             where workspace = '{quoted}' and conn_id = 'warehouse'"
        ),
    );
    let (connection_id, connection_version) = connection_row
        .split_once(' ')
        .unwrap_or_else(|| panic!("one connection row with a secret version: {connection_row:?}"));
    let link_rows = psql(
        database_url,
        &format!(
            "select id || ' ' || coalesce(secret_version::text, '-') || ' ' || deployment_id \
             from link where workspace = '{quoted}' order by deployment_id"
        ),
    );
    let links: Vec<Vec<&str>> = link_rows
        .lines()
        .map(|line| line.split(' ').collect())
        .collect();
    assert_eq!(links.len(), 2, "two link rows: {link_rows:?}");
    let prod_link = links
        .iter()
        .find(|row| row[2] == "prod")
        .expect("the prod link row");
    let staging_link = links
        .iter()
        .find(|row| row[2] == "staging")
        .expect("the staging link row");
    assert_eq!(
        staging_link[1], "-",
        "a link without secret overrides points to no KV entry"
    );

    let base = format!("{VAULT_PREFIX}/{workspace}");
    assert_eq!(
        vault_list(vault_addr, &format!("{base}/connections")),
        vec![connection_id.to_owned()],
        "one KV entry per connection, named by its row id"
    );
    assert_eq!(
        vault_list(vault_addr, &format!("{base}/links")),
        vec![prod_link[0].to_owned()],
        "one KV entry for the link with a secret override, none for the other"
    );
    let stored = vault_read_version(
        vault_addr,
        &format!("{base}/connections/{connection_id}"),
        connection_version.parse().expect("a KV version number"),
    );
    assert!(
        stored.to_string().contains(&password),
        "the connection's KV entry at the recorded version holds the password"
    );
    let stored_link = vault_read_version(
        vault_addr,
        &format!("{base}/links/{}", prod_link[0]),
        prod_link[1].parse().expect("a KV version number"),
    );
    assert!(
        stored_link.to_string().contains(&prod_password),
        "the link's KV entry holds the override password"
    );
    let metadata = vault_metadata(vault_addr, &format!("{base}/connections/{connection_id}"));
    assert!(
        metadata["max_versions"].as_u64().unwrap_or(0) > 10,
        "max_versions is raised above the mount's default to keep version history: {metadata}"
    );

    // And not in the database: no row of any table holds either secret, and
    // the embedded secret table is unused.
    let dump = pg_dump_data(database_url);
    assert!(dump.contains(&workspace), "the dump covers this workspace");
    assert!(
        !dump.contains(&password) && !dump.contains(&prod_password),
        "PostgreSQL holds a secret value"
    );
    assert_eq!(
        psql_count(
            database_url,
            &format!("select count(*) from secret where workspace = '{quoted}'")
        ),
        0,
        "with OpenBao configured the embedded secret table stays empty"
    );

    // A password change through control reaches the separate resolver, in a
    // new KV version.
    let new_password = control.marker("pg-bao-new-password");
    resolver.forbid_in_logs(&new_password);
    let name = connection_name(&workspace, "warehouse");
    ok(
        at_control
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    etag: created.etag.clone(),
                    password: new_password.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["password".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection password",
    );
    let staging = resolve_until(
        &mut at_resolver,
        &staging_token,
        "warehouse",
        "staging after the password change",
        |resolved| resolved.password == new_password,
    )
    .await;
    assert_eq!(staging.schema, "PUBLIC");
    let new_version: i64 = psql(
        database_url,
        &format!(
            "select secret_version from connection where workspace = '{quoted}' \
             and conn_id = 'warehouse'"
        ),
    )
    .parse()
    .expect("a KV version number");
    assert!(
        new_version > connection_version.parse::<i64>().expect("a number"),
        "an update writes a new KV version"
    );
    assert!(!pg_dump_data(database_url).contains(&new_password));

    control.assert_logs_clean();
    resolver.assert_logs_clean();
}

/// Turns `allow_secret_reveal` on as `owner`.
pub(crate) async fn allow_reveal(clients: &mut Client, owner: &str, workspace: &str) {
    ok(
        clients
            .with_token(owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: format!("{}/policy", workspace_name(workspace)),
                    allow_secret_reveal: true,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["allow_secret_reveal".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateWorkspacePolicy allow_secret_reveal",
    );
}

pub(crate) async fn revealed_password(clients: &mut Client, owner: &str, name: &str) -> String {
    ok(
        clients
            .with_token(owner)
            .get_connection(GetConnectionRequest {
                name: name.to_owned(),
                view: ConnectionView::WithSecrets as i32,
            })
            .await,
        "GetConnection WITH_SECRETS",
    )
    .password
}

async fn connection_names(clients: &mut Client, token: &str, workspace: &str) -> Vec<String> {
    ok(
        clients
            .with_token(token)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(workspace),
                page_size: 100,
                ..Default::default()
            })
            .await,
        "ListConnections",
    )
    .connections
    .into_iter()
    .map(|connection| connection.name)
    .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_outage_is_unavailable_writes_nothing_and_the_retry_succeeds() {
    let Some(database_url) = shared_database_url() else {
        return;
    };
    if switchboard_tests::vault_addr().is_none() {
        return;
    }
    // OpenBao of this test alone: stopping it must not disturb other tests.
    let mut bao = OwnOpenBao::start_new();
    let control = TestServer::configure()
        .with_role(Role::Control)
        .with_arg("--database-url", &database_url)
        .with_arg("--vault-addr", &bao.addr)
        .with_env("VAULT_TOKEN", VAULT_TOKEN)
        .spawn()
        .await;
    let workspace = unique_workspace("bao-outage");
    let quoted = workspace.replace('\'', "''");
    let owner = control.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = control.client().await;
    create_deployment(&mut clients, &owner, &workspace, "prod").await;
    allow_reveal(&mut clients, &owner, &workspace).await;
    let before_password = control.marker("before-outage");
    let before = ok(
        clients
            .with_token(&owner)
            .create_connection(create_request(
                &workspace,
                "before",
                &before_password,
                "",
                &["prod"],
            ))
            .await,
        "CreateConnection before the outage",
    );
    let audit_before = psql_count(
        &database_url,
        &format!("select count(*) from audit_event where workspace = '{quoted}'"),
    );

    bao.stop();

    let password = control.marker("during-outage");
    let request_id = format!("outage-{}", random_hex(8));
    let request = create_request(&workspace, "during", &password, &request_id, &["prod"]);
    let status = expect_code(
        clients
            .with_token(&owner)
            .create_connection(request.clone())
            .await,
        Code::Unavailable,
        "CreateConnection while OpenBao is down",
    );
    assert_status_free_of(&status, &password);
    let new_password = control.marker("update-during-outage");
    let status = expect_code(
        clients
            .with_token(&owner)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: before.name.clone(),
                    etag: before.etag.clone(),
                    password: new_password.clone(),
                    description: "changed during the outage".to_owned(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["password".to_owned(), "description".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        Code::Unavailable,
        "UpdateConnection of a password while OpenBao is down",
    );
    assert_status_free_of(&status, &new_password);

    // Nothing was written: no row, no request-id record, no audit event, no
    // version, no change-feed entry; the existing connection is untouched.
    assert_eq!(
        psql_count(
            &database_url,
            &format!(
                "select count(*) from connection where workspace = '{quoted}' \
                 and conn_id = 'during'"
            )
        ),
        0
    );
    assert_eq!(
        psql_count(
            &database_url,
            &format!("select count(*) from request_log where request_id = '{request_id}'")
        ),
        0
    );
    assert_eq!(
        psql_count(
            &database_url,
            &format!("select count(*) from audit_event where workspace = '{quoted}'")
        ),
        audit_before,
        "no audit event for refused writes"
    );
    assert_eq!(
        connection_names(&mut clients, &owner, &workspace).await,
        vec![before.name.clone()]
    );
    let unchanged = ok(
        clients
            .with_token(&owner)
            .get_connection(GetConnectionRequest {
                name: before.name.clone(),
                view: ConnectionView::Basic as i32,
            })
            .await,
        "GetConnection (no secrets) while OpenBao is down",
    );
    assert_eq!(
        unchanged.etag, before.etag,
        "the refused update changed nothing"
    );
    assert_eq!(unchanged.description, before.description);
    assert_eq!(
        psql_count(
            &database_url,
            &format!(
                "select count(*) from change where workspace = '{quoted}' \
                 and resource like '%/during'"
            )
        ),
        0,
        "no change-feed entry for the refused create"
    );

    // OpenBao comes back. Dev mode keeps data in memory, so everything
    // written before the outage (the `before` secrets) is gone; the test
    // therefore proves recovery with writes and a fresh connection only.
    bao.start();
    let retried = ok(
        clients
            .with_token(&owner)
            .create_connection(request.clone())
            .await,
        "the same CreateConnection after OpenBao recovered",
    );
    assert_eq!(retried.name, connection_name(&workspace, "during"));
    let again = ok(
        clients.with_token(&owner).create_connection(request).await,
        "the same CreateConnection once more",
    );
    assert_eq!(again.name, retried.name);
    assert_eq!(again.etag, retried.etag, "a retry returns the original");
    assert_eq!(
        revealed_password(&mut clients, &owner, &retried.name).await,
        password,
        "the retried create stored its password"
    );
    assert_eq!(
        psql_count(
            &database_url,
            &format!(
                "select count(*) from connection where workspace = '{quoted}' \
                 and conn_id = 'during'"
            )
        ),
        1,
        "exactly one row after the retries"
    );
    assert_eq!(
        vault_list(
            &bao.addr,
            &format!("{VAULT_PREFIX}/{workspace}/connections")
        )
        .len(),
        1,
        "only the new connection's entry exists in the restarted (empty) OpenBao"
    );
    control.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_is_unavailable_writes_nothing_and_the_retry_succeeds() {
    let Some(backend) = Backend::postgres_openbao() else {
        return;
    };
    let Backend::PostgresOpenBao { vault_addr, .. } = &backend else {
        unreachable!()
    };
    // PostgreSQL of this test alone: stopping it must not disturb other tests.
    let mut postgres = OwnPostgres::start_new();
    let control = TestServer::configure()
        .with_role(Role::Control)
        .with_arg("--database-url", &postgres.url)
        .with_arg("--vault-addr", vault_addr)
        .with_env("VAULT_TOKEN", VAULT_TOKEN)
        .spawn()
        .await;
    let workspace = unique_workspace("pg-outage");
    let quoted = workspace.replace('\'', "''");
    let owner = control.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = control.client().await;
    create_deployment(&mut clients, &owner, &workspace, "prod").await;
    allow_reveal(&mut clients, &owner, &workspace).await;
    let before_password = control.marker("before-pg-outage");
    let before = ok(
        clients
            .with_token(&owner)
            .create_connection(create_request(
                &workspace,
                "before",
                &before_password,
                "",
                &["prod"],
            ))
            .await,
        "CreateConnection before the outage",
    );

    postgres.stop();

    let password = control.marker("during-pg-outage");
    let request_id = format!("pg-outage-{}", random_hex(8));
    let request = create_request(&workspace, "during", &password, &request_id, &["prod"]);
    let status = expect_code(
        clients
            .with_token(&owner)
            .create_connection(request.clone())
            .await,
        Code::Unavailable,
        "CreateConnection while PostgreSQL is down",
    );
    assert_status_free_of(&status, &password);
    let new_password = control.marker("update-during-pg-outage");
    expect_code(
        clients
            .with_token(&owner)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: before.name.clone(),
                    etag: before.etag.clone(),
                    password: new_password,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["password".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        Code::Unavailable,
        "UpdateConnection while PostgreSQL is down",
    );

    postgres.start();

    // Nothing was written while the database was down.
    let count_during = || {
        psql_count(
            &postgres.url,
            &format!(
                "select count(*) from connection where workspace = '{quoted}' \
                 and conn_id = 'during'"
            ),
        )
    };
    assert_eq!(count_during(), 0);
    // The server's pool reconnects by itself; reads recover first.
    let asked = Instant::now();
    let unchanged = loop {
        match clients
            .with_token(&owner)
            .get_connection(GetConnectionRequest {
                name: before.name.clone(),
                view: ConnectionView::Basic as i32,
            })
            .await
        {
            Ok(response) => break response,
            Err(status) => {
                assert_eq!(
                    status.code(),
                    Code::Unavailable,
                    "while reconnecting: {}",
                    status.message()
                );
                assert!(
                    asked.elapsed() < PROPAGATION_DEADLINE,
                    "control never reconnected to PostgreSQL"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    };
    assert_eq!(
        unchanged.etag, before.etag,
        "the refused update changed nothing"
    );
    assert_eq!(
        revealed_password(&mut clients, &owner, &before.name).await,
        before_password,
        "the refused update left the password as it was"
    );

    let retried = ok(
        clients
            .with_token(&owner)
            .create_connection(request.clone())
            .await,
        "the same CreateConnection after PostgreSQL recovered",
    );
    assert_eq!(retried.name, connection_name(&workspace, "during"));
    let again = ok(
        clients.with_token(&owner).create_connection(request).await,
        "the same CreateConnection once more",
    );
    assert_eq!(again.etag, retried.etag, "a retry returns the original");
    assert_eq!(count_during(), 1, "exactly one row after the retries");
    assert_eq!(
        revealed_password(&mut clients, &owner, &retried.name).await,
        password
    );
    let mut names = connection_names(&mut clients, &owner, &workspace).await;
    names.sort();
    assert_eq!(names, vec![before.name.clone(), retried.name.clone()]);
    control.assert_logs_clean();
}
