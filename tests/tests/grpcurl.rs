//! Smoke path with the real grpcurl (1.8.6, reflection v1alpha only), as a
//! newcomer following README would use it.

use switchboard_tests::grpcurl::grpcurl;
use switchboard_tests::{TestServer, WorkspaceRole};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpcurl_lists_describes_creates_and_gets() {
    let server = TestServer::configure().spawn().await;
    let token = server.user_token("olivia", &[("acme", WorkspaceRole::Operator)]);

    let listed = grpcurl(&server, None, None, &["list"]);
    assert!(listed.success, "grpcurl list: {}", listed.stderr);
    for service in switchboard_proto::SERVICE_NAMES {
        assert!(
            listed.stdout.lines().any(|line| line.trim() == *service),
            "grpcurl list shows {service}:\n{}",
            listed.stdout
        );
    }

    let described = grpcurl(
        &server,
        None,
        None,
        &["describe", "switchboard.v1.ConnectionService"],
    );
    assert!(described.success, "grpcurl describe: {}", described.stderr);
    for method in ["CreateConnection", "CreateLink", "ListConnectionTypes"] {
        assert!(
            described.stdout.contains(&format!("rpc {method}")),
            "describe shows {method}:\n{}",
            described.stdout
        );
    }

    let created = grpcurl(
        &server,
        Some(&token),
        Some(
            r#"{"parent": "workspaces/acme", "deploymentId": "prod",
                "deployment": {"displayName": "Production", "kind": "DEPLOYMENT_KIND_STANDARD"}}"#,
        ),
        &["switchboard.v1.DeploymentService/CreateDeployment"],
    )
    .json();
    assert_eq!(created["name"], "workspaces/acme/deployments/prod");
    assert_eq!(created["displayName"], "Production");
    assert!(created["etag"].is_string(), "created: {created}");

    let fetched = grpcurl(
        &server,
        Some(&token),
        Some(r#"{"name": "workspaces/acme/deployments/prod"}"#),
        &["switchboard.v1.DeploymentService/GetDeployment"],
    )
    .json();
    assert_eq!(fetched["name"], "workspaces/acme/deployments/prod");
    assert_eq!(fetched["displayName"], "Production");
    assert_eq!(fetched["etag"], created["etag"]);

    let refused = grpcurl(
        &server,
        None,
        Some(r#"{"name": "workspaces/acme/deployments/prod"}"#),
        &["switchboard.v1.DeploymentService/GetDeployment"],
    );
    assert!(!refused.success, "a call without a token fails");
    assert!(
        refused.stderr.contains("Unauthenticated"),
        "grpcurl reports Unauthenticated: {}",
        refused.stderr
    );

    server.assert_logs_clean();
}
