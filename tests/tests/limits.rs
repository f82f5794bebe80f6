//! Limits (docs/architecture.md, "Limits"): the 4 MiB message size, the
//! 64 KiB `extra`, the per-caller rate limit on control, and deadlines: a
//! call whose deadline passes while it waits for the database ends then, and
//! changes nothing.

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use prost_types::FieldMask;
use switchboard_proto::v1::{
    Connection, GetConnectionRequest, GetDeploymentRequest, ListConnectionTypesRequest,
    ListConnectionsRequest, ListDeploymentsRequest, ResolveConnectionRequest,
    UpdateConnectionRequest,
};
use switchboard_tests::{TestServer, WorkspaceRole};
use tonic::Code;

use crate::resolver_feed::metric_value;
use crate::support::{
    connection_name, create_connection, create_deployment, create_deployment_token, create_link,
    deployment_name, expect_code, expect_one_of, ok, schema_and_warehouse, snowflake_connection,
    string_struct, workspace_name,
};

const WORKSPACE: &str = "limits";

#[tokio::test]
async fn a_message_over_4_mib_is_refused_and_one_under_it_reaches_validation() {
    let server = TestServer::configure().spawn().await;
    let token = server.user_token("limits", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let clients = server.client().await;
    let password = server.marker("password");
    let mut connection = snowflake_connection(&password);
    connection.description = "x".repeat(5 * 1024 * 1024);
    let request = switchboard_proto::v1::CreateConnectionRequest {
        parent: workspace_name(WORKSPACE),
        connection_id: "huge".to_owned(),
        connection: Some(connection),
        request_id: String::new(),
        links: Vec::new(),
    };
    let status = expect_one_of(
        clients.with_token(&token).create_connection(request).await,
        &[Code::ResourceExhausted, Code::OutOfRange],
        "CreateConnection of 5 MiB",
    );
    println!("a 5 MiB request: {:?} {}", status.code(), status.message());

    // 3 MiB passes the transport and is refused by validation (the extra limit).
    let mut connection = snowflake_connection(&password);
    connection.extra = Some(string_struct(&[
        ("account", "xy12345.eu-central-1"),
        ("big", &"y".repeat(3 * 1024 * 1024)),
    ]));
    let request = switchboard_proto::v1::CreateConnectionRequest {
        parent: workspace_name(WORKSPACE),
        connection_id: "big_extra".to_owned(),
        connection: Some(connection),
        request_id: String::new(),
        links: Vec::new(),
    };
    let status = expect_code(
        clients.with_token(&token).create_connection(request).await,
        Code::InvalidArgument,
        "CreateConnection with a 3 MiB extra",
    );
    assert!(
        crate::support::violation_fields(&status)
            .iter()
            .any(|field| field.contains("extra")),
        "the violation names extra: {status:?}"
    );
    let listed = ok(
        clients
            .with_token(&token)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        "ListConnections",
    );
    assert!(listed.connections.is_empty(), "nothing was stored");
    assert_eq!(
        server.health_status("").await,
        Some(tonic_health::pb::health_check_response::ServingStatus::Serving)
    );
    server.assert_logs_clean();
}

#[tokio::test]
async fn control_limits_each_caller_and_the_resolver_is_not_limited() {
    // 2 calls per second in bursts of 10.
    let server = TestServer::configure()
        .with_arg("--rate-limit", "2")
        .with_metrics()
        .spawn()
        .await;
    let first = server.user_token("first", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let second = server.user_token("second", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &first, WORKSPACE, "prod").await;
    create_connection(
        &mut clients,
        &first,
        WORKSPACE,
        "warehouse",
        snowflake_connection(&server.marker("password")),
    )
    .await;
    create_link(
        &mut clients,
        &first,
        WORKSPACE,
        "warehouse",
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let deployment_token =
        create_deployment_token(&server, &mut clients, &first, WORKSPACE, "prod").await;

    // The first caller used 4 of its 10; more calls soon run out.
    let mut limited = None;
    for call in 0..30 {
        let result = clients
            .with_token(&first)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await;
        if let Err(status) = result {
            limited = Some((call, status));
            break;
        }
    }
    let (call, status) = limited.expect("the first caller is limited within 30 quick calls");
    assert_eq!(status.code(), Code::ResourceExhausted, "{status:?}");
    assert!(
        call >= 4,
        "the burst allows several calls first; limited at {call}"
    );
    // Another caller has its own allowance.
    ok(
        clients
            .with_token(&second)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "ListConnectionTypes by another caller",
    );
    // The resolver, on Airflow's hot path, is not limited.
    for _ in 0..40 {
        ok(
            clients
                .with_token(&deployment_token)
                .resolve_connection(ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: "warehouse".to_owned(),
                })
                .await,
            "ResolveConnection under control's limit",
        );
    }
    // The allowance refills: after a second the first caller may call again.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    ok(
        clients
            .with_token(&first)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "ListConnectionTypes after the refill",
    );
    assert!(
        metric_value(&server, "switchboard_rate_limited_total").unwrap_or(0.0) >= 1.0,
        "limited calls are counted"
    );
    server.assert_logs_clean();
}

/// Holds SQLite's write lock from another process until dropped.
struct WriteLock {
    child: std::process::Child,
}

impl WriteLock {
    fn take(database: &std::path::Path) -> WriteLock {
        let mut child = Command::new("sqlite3")
            .arg(database)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("run sqlite3");
        let stdin = child.stdin.as_mut().expect("sqlite3 stdin");
        stdin
            .write_all(b"BEGIN EXCLUSIVE;\nSELECT 'locked';\n")
            .expect("write to sqlite3");
        stdin.flush().expect("flush sqlite3 stdin");
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().expect("sqlite3 stdout"))
            .read_line(&mut line)
            .expect("read sqlite3");
        assert_eq!(line.trim(), "locked", "sqlite3 took the write lock");
        WriteLock { child }
    }
}

impl Drop for WriteLock {
    fn drop(&mut self) {
        if let Some(stdin) = self.child.stdin.as_mut() {
            let _ = stdin.write_all(b"ROLLBACK;\n.quit\n");
        }
        drop(self.child.stdin.take());
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_write_whose_deadline_passes_while_the_database_is_locked_ends_then_and_changes_nothing()
{
    if Command::new("sqlite3").arg("-version").output().is_err() {
        switchboard_tests::skip_without("the sqlite3 command");
        return;
    }
    let server = TestServer::configure().spawn().await;
    let token = server.user_token("limits", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let mut clients = server.client().await;
    let password = server.marker("password");
    let created = create_connection(
        &mut clients,
        &token,
        WORKSPACE,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;

    let lock = WriteLock::take(&server.data_dir().join("switchboard.db"));
    let request = UpdateConnectionRequest {
        connection: Some(Connection {
            name: connection_name(WORKSPACE, "warehouse"),
            host: "late.example.com".to_owned(),
            etag: created.etag.clone(),
            ..Default::default()
        }),
        update_mask: Some(FieldMask {
            paths: vec!["host".to_owned()],
        }),
        request_id: String::new(),
    };
    let started = Instant::now();
    let result = clients
        .with_token(&token)
        .with_timeout(Duration::from_millis(800))
        .update_connection(request)
        .await;
    let waited = started.elapsed();
    let status = result.expect_err("the write can't finish while the database is locked");
    assert!(
        matches!(
            status.code(),
            Code::DeadlineExceeded | Code::Cancelled | Code::Unavailable
        ),
        "{status:?}"
    );
    assert!(
        waited < Duration::from_secs(5),
        "the call ended at its deadline, not after the database's busy timeout: {waited:?}"
    );
    // Past the deadline the write is abandoned, even once the lock is gone.
    drop(lock);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let after = ok(
        clients
            .with_token(&token)
            .get_connection(GetConnectionRequest {
                name: connection_name(WORKSPACE, "warehouse"),
                ..Default::default()
            })
            .await,
        "GetConnection",
    );
    assert_eq!(
        after.etag, created.etag,
        "the timed-out write changed nothing"
    );
    assert_ne!(after.host, "late.example.com");
    server.assert_logs_clean();
}

/// A stored deployment kind the server doesn't know (a corrupt row, or one
/// written by a newer version) is an error naming the table, never a
/// STANDARD deployment.
#[tokio::test]
async fn a_corrupt_deployment_kind_is_an_internal_error_not_a_standard_deployment() {
    if Command::new("sqlite3").arg("-version").output().is_err() {
        switchboard_tests::skip_without("the sqlite3 command");
        return;
    }
    let server = TestServer::configure().spawn().await;
    let token = server.user_token("limits", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &token, WORKSPACE, "corrupt").await;
    let updated = Command::new("sqlite3")
        .arg(server.data_dir().join("switchboard.db"))
        .arg("UPDATE deployment SET kind = 'SIDECAR' WHERE deployment_id = 'corrupt'")
        .output()
        .expect("run sqlite3");
    assert!(updated.status.success(), "{updated:?}");

    let status = clients
        .with_token(&token)
        .get_deployment(GetDeploymentRequest {
            name: deployment_name(WORKSPACE, "corrupt"),
        })
        .await
        .expect_err("a corrupt kind is not served");
    assert_eq!(status.code(), Code::Internal, "{status:?}");
    // Callers get no internals; the operator's log names the row's problem.
    let logs = server.logs();
    assert!(
        logs.contains("unknown deployment kind 'SIDECAR'"),
        "the log says what is corrupt:\n{logs}"
    );
    expect_code(
        clients
            .with_token(&token)
            .list_deployments(ListDeploymentsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        Code::Internal,
        "ListDeployments over a corrupt row",
    );
}
