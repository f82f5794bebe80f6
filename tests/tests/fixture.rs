//! The process itself: health, metrics, development tokens, clean shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;

use switchboard_proto::SERVICE_NAMES;
use switchboard_proto::v1::ListConnectionTypesRequest;
use switchboard_tests::{TestServer, WorkspaceRole, switchboard_binary};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::ok;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_reports_every_service_serving_and_stops_cleanly_on_sigterm() {
    let server = TestServer::configure().with_metrics().spawn().await;
    for service in SERVICE_NAMES {
        assert_eq!(
            server.health_status(service).await,
            Some(ServingStatus::Serving),
            "health of {service}"
        );
    }

    let clients = server.client().await;
    let token = server.user_token("olivia", &[("acme", WorkspaceRole::Operator)]);
    ok(
        clients
            .with_token(&token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "ListConnectionTypes",
    );

    let metrics_address = server.metrics_address().expect("started with metrics");
    let mut stream = TcpStream::connect(metrics_address).expect("connect to the metrics port");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send the metrics request");
    let mut response = String::new();
    stream
        .read_to_string(&mut response)
        .expect("read the metrics response");
    assert!(
        response.starts_with("HTTP/1.1 200") || response.starts_with("HTTP/1.0 200"),
        "GET /metrics answers 200: {}",
        response.lines().next().unwrap_or_default()
    );
    assert!(
        response.contains("# TYPE"),
        "GET /metrics serves Prometheus text"
    );

    // The log capture works, so the marker checks of the other tests aren't vacuous.
    let logs = server.logs();
    assert!(
        logs.contains(&server.address().to_string()),
        "the captured log names the listen address:\n{logs}"
    );
    server.assert_logs_clean();
    let status = server.shutdown();
    assert_eq!(
        status.code(),
        Some(0),
        "SIGTERM stops the server with exit 0"
    );
}

#[test]
fn token_user_refuses_unknown_roles() {
    let data_dir = tempfile::tempdir().expect("temporary dir");
    let output = std::process::Command::new(switchboard_binary())
        .args(["token", "user", "--data-dir"])
        .arg(data_dir.path())
        .args(["--subject", "olivia", "--role", "acme=SUPERUSER"])
        .output()
        .expect("run switchboard token user");
    assert!(!output.status.success(), "an unknown role is refused");
    assert!(output.stdout.is_empty(), "no token is printed");
}
