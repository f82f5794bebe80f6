//! Secrets nested in `extra` (issue 13, point 1) and who can read secrets
//! (point 2).
//!
//! A key at any depth of `extra` whose name Airflow's masker treats as
//! sensitive (`extra.session_kwargs.aws_secret_access_key`,
//! `extra.headers.Authorization`, keys of objects inside lists) is kept in the
//! secret store, masked by control (its path listed in `secret_fields_set`),
//! absent from versions, audit events, logs and the database, and delivered
//! whole by the resolver. Rows older releases wrote with such values in
//! plaintext are moved at start-up. Each runs on `switchboard dev` and on
//! PostgreSQL + OpenBao (which needs `SWITCHBOARD_TEST_DATABASE_URL` and
//! `SWITCHBOARD_TEST_VAULT_ADDR`; with `CI` set, their absence fails).

use std::path::{Path, PathBuf};
use std::process::Command;

use prost_types::value::Kind;
use prost_types::{FieldMask, ListValue, Struct, Value};
use switchboard_proto::v1::{
    Connection, ConnectionView, GetConnectionRequest, GetLinkRequest, LinkOverrides,
    ListAuditEventsRequest, ListConnectionVersionsRequest, ListConnectionsRequest,
    ResolvedConnection, RollbackConnectionRequest, UpdateConnectionRequest,
};
use switchboard_tests::{TestServer, TestServerConfig, WorkspaceRole};

use crate::backends::{Backend, psql, resolve_until, unique_workspace};
use crate::support::{
    connection_name, create_connection, create_deployment, create_deployment_token, create_link,
    deployment_name, ok, string_value, workspace_name,
};

/// The shared PostgreSQL + OpenBao (see [`Backend::postgres_openbao`]).
fn postgres_openbao() -> Option<Backend> {
    Backend::postgres_openbao()
}

fn object(entries: Vec<(&str, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(Struct {
            fields: entries
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        })),
    }
}

fn list(items: Vec<Value>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue { values: items })),
    }
}

fn extra(entries: Vec<(&str, Value)>) -> Option<Struct> {
    match object(entries).kind {
        Some(Kind::StructValue(fields)) => Some(fields),
        _ => None,
    }
}

/// A generic AWS connection whose secret access key sits in `session_kwargs`,
/// and an HTTP-style header and list item holding tokens.
fn aws_connection(secret_key: &str, header: &str, item_token: &str) -> Connection {
    Connection {
        r#type: "generic".to_owned(),
        conn_type: "aws".to_owned(),
        login: "AKIAEXAMPLE".to_owned(),
        extra: extra(vec![
            ("region_name", string_value("eu-west-1")),
            (
                "session_kwargs",
                object(vec![
                    ("profile_name", string_value("etl")),
                    ("aws_secret_access_key", string_value(secret_key)),
                ]),
            ),
            (
                "headers",
                object(vec![
                    ("Authorization", string_value(header)),
                    ("Accept", string_value("application/json")),
                ]),
            ),
            (
                "endpoints",
                list(vec![object(vec![
                    ("url", string_value("https://a.example")),
                    ("token", string_value(item_token)),
                ])]),
            ),
        ]),
        ..Default::default()
    }
}

const NESTED_PATHS: [&str; 3] = [
    "extra.endpoints[0].token",
    "extra.headers.Authorization",
    "extra.session_kwargs.aws_secret_access_key",
];

/// The JSON of the resolved connection's `airflow_json`.
fn airflow_json(resolved: &ResolvedConnection) -> serde_json::Value {
    serde_json::from_str(&resolved.airflow_json).expect("airflow_json is JSON")
}

fn assert_free_of(what: &str, text: &str, markers: &[&str]) {
    for marker in markers {
        assert!(
            !text.contains(marker),
            "{what} shows the secret value {marker}: {text}"
        );
    }
}

/// Fails if any marker is in the database: the SQLite file (raw bytes, WAL
/// included, and `sqlite3 .dump`) of a stopped server, or PostgreSQL's data.
fn assert_database_free_of(backend: &Backend, data_dir: &Path, markers: &[&str]) {
    match backend.postgres_url() {
        Some(url) => {
            let output = Command::new("pg_dump")
                .args(["--data-only", "--no-owner", "--dbname", url])
                .output()
                .expect("run pg_dump");
            assert!(output.status.success(), "pg_dump failed");
            assert_free_of("pg_dump", &String::from_utf8_lossy(&output.stdout), markers);
        }
        None => {
            for entry in std::fs::read_dir(data_dir)
                .expect("read the data dir")
                .flatten()
            {
                let name = entry.file_name().to_string_lossy().into_owned();
                if name.contains(".db") {
                    let bytes = std::fs::read(entry.path()).expect("read a database file");
                    assert_free_of(&name, &String::from_utf8_lossy(&bytes), markers);
                }
            }
            assert_free_of("sqlite3 .dump", &sqlite(data_dir, ".dump"), markers);
        }
    }
}

fn sqlite(data_dir: &Path, sql: &str) -> String {
    let output = Command::new("sqlite3")
        .arg(data_dir.join("switchboard.db"))
        .arg(sql)
        .output()
        .expect("run sqlite3 (on the machine image at /usr/bin/sqlite3)");
    assert!(
        output.status.success(),
        "sqlite3 {sql:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).trim().to_owned()
}

/// Runs one SQL statement (or query) on the stopped server's database.
fn database_sql(backend: &Backend, data_dir: &Path, sql: &str) -> String {
    match backend.postgres_url() {
        Some(url) => psql(url, sql),
        None => sqlite(data_dir, sql),
    }
}

fn quoted(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

async fn audit_events(server: &TestServer, token: &str, workspace: &str) -> String {
    let audit = server.client().await;
    let response = ok(
        audit
            .with_token(token)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(workspace),
                page_size: 1000,
                ..Default::default()
            })
            .await,
        "ListAuditEvents",
    );
    format!("{:?}", response.audit_events)
}

async fn nested_secrets_stay_secret(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("nested");
    let operator = server.user_token("op", &[(&workspace, WorkspaceRole::Operator)]);
    let member = server.user_token("member", &[(&workspace, WorkspaceRole::Member)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &operator, &workspace, "etl").await;
    let deployment_token =
        create_deployment_token(&server, &mut clients, &operator, &workspace, "etl").await;

    let secret_key = server.marker("aws-secret");
    let header = server.marker("authorization");
    let item_token = server.marker("item-token");
    let created = create_connection(
        &mut clients,
        &operator,
        &workspace,
        "aws_default",
        aws_connection(&secret_key, &header, &item_token),
    )
    .await;
    let all = [secret_key.as_str(), header.as_str(), item_token.as_str()];
    assert_free_of("CreateConnection's answer", &format!("{created:?}"), &all);
    assert_eq!(created.secret_fields_set, NESTED_PATHS);
    create_link(
        &mut clients,
        &operator,
        &workspace,
        "aws_default",
        "etl",
        LinkOverrides::default(),
    )
    .await;

    // A MEMBER sees the shape and the paths, never the values.
    let name = connection_name(&workspace, "aws_default");
    let read = ok(
        clients
            .with_token(&member)
            .get_connection(GetConnectionRequest {
                name: name.clone(),
                view: ConnectionView::Basic as i32,
            })
            .await,
        "GetConnection",
    );
    let shown = format!("{read:?}");
    assert_free_of("GetConnection", &shown, &all);
    assert!(shown.contains("profile_name") && shown.contains("https://a.example"));
    assert_eq!(read.secret_fields_set, NESTED_PATHS);
    let listed = ok(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                ..Default::default()
            })
            .await,
        "ListConnections",
    );
    assert_free_of("ListConnections", &format!("{listed:?}"), &all);
    assert_eq!(listed.connections[0].secret_fields_set, NESTED_PATHS);

    // The deployment gets every value, at its depth, in each form.
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "aws_default",
        "nested secrets",
        |_| true,
    )
    .await;
    let json = airflow_json(&resolved);
    assert_eq!(
        json["extra"]["session_kwargs"]["aws_secret_access_key"],
        secret_key.as_str()
    );
    assert_eq!(json["extra"]["session_kwargs"]["profile_name"], "etl");
    assert_eq!(json["extra"]["headers"]["Authorization"], header.as_str());
    assert_eq!(json["extra"]["endpoints"][0]["token"], item_token.as_str());
    assert_eq!(json["extra"]["endpoints"][0]["url"], "https://a.example");
    for marker in all {
        assert!(
            resolved.airflow_uri.contains(marker),
            "airflow_uri lacks {marker}"
        );
        assert!(format!("{:?}", resolved.extra).contains(marker));
    }

    // `extra.<key>` replaces that key, nested secrets included.
    let rotated = server.marker("aws-secret-rotated");
    let updated = ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    extra: extra(vec![(
                        "session_kwargs",
                        object(vec![
                            ("profile_name", string_value("etl")),
                            ("aws_secret_access_key", string_value(&rotated)),
                        ]),
                    )]),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["extra.session_kwargs".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection extra.session_kwargs",
    );
    assert_free_of("UpdateConnection", &format!("{updated:?}"), &[&rotated]);
    assert_eq!(updated.secret_fields_set, NESTED_PATHS);

    // Writing back what was read (`*`, secrets masked) keeps the nested
    // secrets of the objects it sends.
    let read = ok(
        clients
            .with_token(&operator)
            .get_connection(GetConnectionRequest {
                name: name.clone(),
                view: ConnectionView::Basic as i32,
            })
            .await,
        "GetConnection",
    );
    let written_back = ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    description: "edited".to_owned(),
                    ..read
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["*".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection *",
    );
    assert_eq!(written_back.secret_fields_set, NESTED_PATHS);
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "aws_default",
        "the rotated key after a * update",
        |resolved| airflow_json(resolved)["description"] == "edited",
    )
    .await;
    let json = airflow_json(&resolved);
    assert_eq!(
        json["extra"]["session_kwargs"]["aws_secret_access_key"],
        rotated.as_str()
    );
    assert_eq!(json["extra"]["headers"]["Authorization"], header.as_str());
    assert_eq!(json["extra"]["endpoints"][0]["token"], item_token.as_str());

    // A nested mask path sets that one value; its siblings stay.
    let new_header = server.marker("authorization-rotated");
    let rotated_header = ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    extra: extra(vec![(
                        "headers",
                        object(vec![("Authorization", string_value(&new_header))]),
                    )]),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["extra.headers.Authorization".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection extra.headers.Authorization",
    );
    assert_free_of(
        "UpdateConnection",
        &format!("{rotated_header:?}"),
        &[&new_header],
    );
    assert_eq!(rotated_header.secret_fields_set, NESTED_PATHS);
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "aws_default",
        "the rotated header",
        |resolved| resolved.airflow_json.contains(new_header.as_str()),
    )
    .await;
    let json = airflow_json(&resolved);
    assert_eq!(json["extra"]["headers"]["Accept"], "application/json");
    assert_eq!(
        json["extra"]["session_kwargs"]["aws_secret_access_key"],
        rotated.as_str()
    );

    // A link override with a nested secret: masked on the link, delivered merged.
    let link_secret = server.marker("link-aws-secret");
    let link_overrides = LinkOverrides {
        extra: extra(vec![(
            "session_kwargs",
            object(vec![
                ("profile_name", string_value("etl-link")),
                ("aws_secret_access_key", string_value(&link_secret)),
            ]),
        )]),
        ..Default::default()
    };
    create_deployment(&mut clients, &operator, &workspace, "reporting").await;
    let reporting_token =
        create_deployment_token(&server, &mut clients, &operator, &workspace, "reporting").await;
    let link = create_link(
        &mut clients,
        &operator,
        &workspace,
        "aws_default",
        "reporting",
        link_overrides,
    )
    .await;
    assert_free_of("CreateLink", &format!("{link:?}"), &[&link_secret]);
    assert_eq!(
        link.secret_fields_set,
        ["extra.session_kwargs.aws_secret_access_key"]
    );
    let got = ok(
        clients
            .with_token(&member)
            .get_link(GetLinkRequest {
                name: link.name.clone(),
            })
            .await,
        "GetLink",
    );
    assert_free_of("GetLink", &format!("{got:?}"), &[&link_secret]);
    assert!(format!("{got:?}").contains("etl-link"));
    assert_eq!(
        got.secret_fields_set,
        ["extra.session_kwargs.aws_secret_access_key"]
    );
    let resolved = resolve_until(
        &mut clients,
        &reporting_token,
        "aws_default",
        "the link's nested override",
        |resolved| resolved.airflow_json.contains("etl-link"),
    )
    .await;
    let json = airflow_json(&resolved);
    // The override replaces session_kwargs as a whole (extras merge by top-level key).
    assert_eq!(
        json["extra"]["session_kwargs"],
        serde_json::json!({"profile_name": "etl-link", "aws_secret_access_key": link_secret})
    );
    assert_eq!(
        json["extra"]["headers"]["Authorization"],
        new_header.as_str()
    );

    // Versions hold no value; rolling back to version 1 restores its secrets.
    let every = [
        secret_key.as_str(),
        header.as_str(),
        item_token.as_str(),
        rotated.as_str(),
        new_header.as_str(),
        link_secret.as_str(),
    ];
    let versions = ok(
        clients
            .with_token(&member)
            .list_connection_versions(ListConnectionVersionsRequest {
                parent: name.clone(),
                ..Default::default()
            })
            .await,
        "ListConnectionVersions",
    );
    assert_free_of("ListConnectionVersions", &format!("{versions:?}"), &every);
    assert!(versions.connection_versions.len() >= 3);
    for version in &versions.connection_versions {
        let connection = version.connection.as_ref().expect("a version's connection");
        assert_eq!(connection.secret_fields_set, NESTED_PATHS);
    }
    ok(
        clients
            .with_token(&operator)
            .rollback_connection(RollbackConnectionRequest {
                name: name.clone(),
                version: 1,
                etag: String::new(),
                request_id: String::new(),
            })
            .await,
        "RollbackConnection",
    );
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "aws_default",
        "version 1's nested secret after the rollback",
        |resolved| resolved.airflow_json.contains(secret_key.as_str()),
    )
    .await;
    let json = airflow_json(&resolved);
    assert_eq!(
        json["extra"]["session_kwargs"]["aws_secret_access_key"],
        secret_key.as_str()
    );
    assert_eq!(json["extra"]["endpoints"][0]["token"], item_token.as_str());

    let audit = audit_events(&server, &operator, &workspace).await;
    assert!(audit.contains("UpdateConnection") && audit.contains("RollbackConnection"));
    assert_free_of("ListAuditEvents", &audit, &every);

    server.assert_logs_clean();
    let stopped = stop(&backend, server);
    assert_database_free_of(&backend, &stopped.data_dir, &every);
}

/// A stopped server: its data dir stays (the restart configuration holds it).
struct Stopped {
    restart: TestServerConfig,
    data_dir: PathBuf,
}

/// Stops `server` (SIGTERM, so SQLite checkpoints its WAL) and keeps what a
/// restart of the same installation needs.
fn stop(backend: &Backend, server: TestServer) -> Stopped {
    let restart = backend.apply(TestServer::configure().with_data_dir_of(&server));
    let data_dir = server.data_dir().to_path_buf();
    server.shutdown();
    Stopped { restart, data_dir }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_secrets_stay_secret_on_dev() {
    nested_secrets_stay_secret(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nested_secrets_stay_secret_on_postgres_and_openbao() {
    let Some(backend) = postgres_openbao() else {
        return;
    };
    nested_secrets_stay_secret(backend).await;
}

/// Runs `sql` with `{text}` replaced by `text` as a quoted SQL literal.
fn write_text(backend: &Backend, data_dir: &Path, sql: &str, text: &str) {
    database_sql(backend, data_dir, &sql.replace("{text}", &quoted(text)));
}

async fn plaintext_nested_secrets_are_moved_at_start_up(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("legacy");
    let operator = server.user_token("op", &[(&workspace, WorkspaceRole::Operator)]);
    let member = server.user_token("member", &[(&workspace, WorkspaceRole::Member)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &operator, &workspace, "etl").await;
    let deployment_token =
        create_deployment_token(&server, &mut clients, &operator, &workspace, "etl").await;
    let password = server.marker("legacy-password");
    let link_password = server.marker("legacy-link-password");
    create_connection(
        &mut clients,
        &operator,
        &workspace,
        "legacy_aws",
        Connection {
            r#type: "generic".to_owned(),
            conn_type: "aws".to_owned(),
            password: password.clone(),
            extra: extra(vec![
                ("region_name", string_value("eu-west-1")),
                (
                    "session_kwargs",
                    object(vec![("profile_name", string_value("etl"))]),
                ),
            ]),
            ..Default::default()
        },
    )
    .await;
    create_link(
        &mut clients,
        &operator,
        &workspace,
        "legacy_aws",
        "etl",
        // With a secret already stored, as the connection has: a server on
        // another secret store sharing the test database can't read it, so
        // it can't move this row into its own store before ours restarts.
        LinkOverrides {
            password: Some(link_password.clone()),
            extra: extra(vec![(
                "headers",
                object(vec![("Accept", string_value("application/json"))]),
            )]),
            ..Default::default()
        },
    )
    .await;
    let secret_key = server.marker("legacy-aws-secret");
    let link_token = server.marker("legacy-link-authorization");
    let stopped = stop(&backend, server);

    // What older releases wrote for such a connection: the nested values in
    // the clear, in the row, the link row and the version snapshot, and not
    // listed among the secret fields.
    let dir = stopped.data_dir.clone();
    let connection_row = format!("workspace = '{workspace}' AND conn_id = 'legacy_aws'");
    let legacy_extra = serde_json::json!({
        "region_name": "eu-west-1",
        "session_kwargs": {"profile_name": "etl", "aws_secret_access_key": secret_key},
    });
    write_text(
        &backend,
        &dir,
        &format!("UPDATE connection SET extra = {{text}} WHERE {connection_row}"),
        &legacy_extra.to_string(),
    );
    let link_row = format!(
        "workspace = '{workspace}' AND connection_pk = (SELECT id FROM connection WHERE {connection_row})"
    );
    let mut overrides: serde_json::Value = serde_json::from_str(&database_sql(
        &backend,
        &dir,
        &format!("SELECT overrides FROM link WHERE {link_row}"),
    ))
    .expect("link overrides are JSON");
    overrides["extra"]["headers"]["Authorization"] = link_token.clone().into();
    write_text(
        &backend,
        &dir,
        &format!("UPDATE link SET overrides = {{text}} WHERE {link_row}"),
        &overrides.to_string(),
    );
    let version_row = format!(
        "version = 1 AND connection_pk = (SELECT id FROM connection WHERE {connection_row})"
    );
    let mut snapshot: serde_json::Value = serde_json::from_str(&database_sql(
        &backend,
        &dir,
        &format!("SELECT snapshot FROM connection_version WHERE {version_row}"),
    ))
    .expect("a version snapshot is JSON");
    snapshot["spec"]["extra"] = legacy_extra.clone();
    write_text(
        &backend,
        &dir,
        &format!("UPDATE connection_version SET snapshot = {{text}} WHERE {version_row}"),
        &snapshot.to_string(),
    );
    let plaintext = [secret_key.as_str(), link_token.as_str()];
    assert!(
        database_sql(
            &backend,
            &dir,
            &format!("SELECT extra FROM connection WHERE {connection_row}")
        )
        .contains(&secret_key),
        "the old-format row holds the plaintext before the restart"
    );

    let server = stopped.restart.spawn().await;
    let mut clients = server.client().await;
    let name = connection_name(&workspace, "legacy_aws");
    let read = ok(
        clients
            .with_token(&member)
            .get_connection(GetConnectionRequest {
                name: name.clone(),
                view: ConnectionView::Basic as i32,
            })
            .await,
        "GetConnection",
    );
    assert_free_of(
        "GetConnection after the move",
        &format!("{read:?}"),
        &plaintext,
    );
    assert_eq!(
        read.secret_fields_set,
        ["extra.session_kwargs.aws_secret_access_key", "password"]
    );
    let link = ok(
        clients
            .with_token(&member)
            .get_link(GetLinkRequest {
                name: format!("{name}/links/etl"),
            })
            .await,
        "GetLink",
    );
    assert_free_of("GetLink after the move", &format!("{link:?}"), &plaintext);
    assert_eq!(
        link.secret_fields_set,
        ["extra.headers.Authorization", "password"]
    );
    let versions = ok(
        clients
            .with_token(&member)
            .list_connection_versions(ListConnectionVersionsRequest {
                parent: name.clone(),
                ..Default::default()
            })
            .await,
        "ListConnectionVersions",
    );
    assert_free_of(
        "versions after the move",
        &format!("{versions:?}"),
        &plaintext,
    );

    // Nothing was lost: the deployment gets the moved values and the old ones.
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "legacy_aws",
        "the moved secrets",
        |_| true,
    )
    .await;
    let json = airflow_json(&resolved);
    assert_eq!(
        json["extra"]["session_kwargs"]["aws_secret_access_key"],
        secret_key.as_str()
    );
    assert_eq!(
        json["extra"]["headers"]["Authorization"],
        link_token.as_str()
    );
    assert_eq!(json["extra"]["headers"]["Accept"], "application/json");
    assert_eq!(resolved.password, link_password);

    // The moved version still rolls back with its secret.
    ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    extra: extra(vec![(
                        "session_kwargs",
                        object(vec![("profile_name", string_value("other"))]),
                    )]),
                    ..Default::default()
                }),
                update_mask: Some(FieldMask {
                    paths: vec!["extra.session_kwargs".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection",
    );
    ok(
        clients
            .with_token(&operator)
            .rollback_connection(RollbackConnectionRequest {
                name: name.clone(),
                version: 1,
                etag: String::new(),
                request_id: String::new(),
            })
            .await,
        "RollbackConnection",
    );
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "legacy_aws",
        "version 1's moved secret after the rollback",
        |resolved| resolved.airflow_json.contains(secret_key.as_str()),
    )
    .await;
    assert_eq!(
        airflow_json(&resolved)["extra"]["session_kwargs"]["profile_name"],
        "etl"
    );
    server.assert_logs_clean();

    // The plaintext is gone from the database, and a second start moves nothing.
    let stopped = stop(&backend, server);
    assert_database_free_of(&backend, &stopped.data_dir, &plaintext);
    let pointers = |dir: &Path| {
        database_sql(
            &backend,
            dir,
            &format!("SELECT secret_version FROM link WHERE {link_row}"),
        )
    };
    let before = pointers(&stopped.data_dir);
    let server = stopped.restart.spawn().await;
    assert_eq!(
        pointers(server.data_dir()),
        before,
        "a second start moved nothing"
    );
    let mut clients = server.client().await;
    let resolved = resolve_until(
        &mut clients,
        &deployment_token,
        "legacy_aws",
        "the moved link secret after a second start",
        |_| true,
    )
    .await;
    assert_eq!(
        airflow_json(&resolved)["extra"]["headers"]["Authorization"],
        link_token.as_str()
    );
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_nested_secrets_are_moved_at_start_up_on_dev() {
    plaintext_nested_secrets_are_moved_at_start_up(Backend::Embedded).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_nested_secrets_are_moved_at_start_up_on_postgres_and_openbao() {
    let Some(backend) = postgres_openbao() else {
        return;
    };
    plaintext_nested_secrets_are_moved_at_start_up(backend).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_token_audit_event_says_it_grants_secret_access() {
    let server = Backend::Embedded.dev().await;
    let workspace = unique_workspace("grants");
    let operator = server.user_token("op", &[(&workspace, WorkspaceRole::Operator)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &operator, &workspace, "etl").await;
    create_deployment_token(&server, &mut clients, &operator, &workspace, "etl").await;
    let audit = server.client().await;
    let events = ok(
        audit
            .with_token(&operator)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(&workspace),
                page_size: 100,
                ..Default::default()
            })
            .await,
        "ListAuditEvents",
    )
    .audit_events;
    let token_event = events
        .iter()
        .find(|event| event.action == "CreateDeploymentToken")
        .expect("CreateDeploymentToken is audited");
    assert!(token_event.grants_secret_access, "{token_event:?}");
    assert!(
        token_event.detail.contains("grants secret access")
            && token_event
                .detail
                .contains(&deployment_name(&workspace, "etl")),
        "the detail says what the token can read: {}",
        token_event.detail
    );
    let deployment_event = events
        .iter()
        .find(|event| event.action == "CreateDeployment")
        .expect("CreateDeployment is audited");
    assert!(!deployment_event.grants_secret_access);
    assert!(deployment_event.detail.is_empty());
}
