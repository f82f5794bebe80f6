//! Authentication and the permission table of docs/architecture.md.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use switchboard_proto::v1::{
    CreateConnectionRequest, CreateDeploymentRequest, Deployment, GetConnectionRequest,
    GetWorkspacePolicyRequest, ListConnectionTypesRequest, ListConnectionsRequest,
    ListDeploymentsRequest, ListResolvedConnectionsRequest, ResolveConnectionRequest,
    UpdateWorkspacePolicyRequest, WorkspacePolicy,
};
use switchboard_tests::{TestServer, WorkspaceRole, mint_user_token};
use tonic::Code;

use crate::seed_story::{CONN_ID, WORKSPACE, seed};
use crate::support::{
    connection_name, expect_code, expect_one_of, ok, snowflake_connection, workspace_name,
};

fn create_request(conn_id: &str, password: &str) -> CreateConnectionRequest {
    CreateConnectionRequest {
        parent: workspace_name(WORKSPACE),
        connection_id: conn_id.to_owned(),
        connection: Some(snowflake_connection(password)),
        request_id: String::new(),
        links: Vec::new(),
    }
}

fn seconds_from_now(seconds: u64) -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs()
        + seconds
}

/// An unsigned JWT (`alg: none`) claiming OWNER of the workspace.
fn unsigned_owner_token() -> String {
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
    let claims = serde_json::json!({
        "sub": "mallory",
        "aud": "switchboard",
        "exp": seconds_from_now(3600),
        "roles": { WORKSPACE: "OWNER" },
    });
    let claims = URL_SAFE_NO_PAD.encode(claims.to_string());
    format!("{header}.{claims}.")
}

/// `token` with its claims replaced by OWNER of the workspace, signature kept.
fn tampered(token: &str) -> String {
    let mut parts = token.split('.');
    let header = parts.next().expect("JWT header");
    let claims = parts.next().expect("JWT claims");
    let signature = parts.next().expect("JWT signature");
    let mut decoded: serde_json::Value = serde_json::from_slice(
        &URL_SAFE_NO_PAD
            .decode(claims)
            .expect("claims are base64url"),
    )
    .expect("claims are JSON");
    decoded["roles"] = serde_json::json!({ WORKSPACE: "OWNER" });
    let claims = URL_SAFE_NO_PAD.encode(decoded.to_string());
    format!("{header}.{claims}.{signature}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn author_and_other_workspace_owner_cannot_create_connections() {
    let server = TestServer::configure().spawn().await;
    let clients = server.client().await;
    let seeded = seed(&server, None).await;

    let author = server.user_token("arthur", &[(WORKSPACE, WorkspaceRole::Author)]);
    let password = server.marker("author-password");
    let status = expect_code(
        clients
            .with_token(&author)
            .create_connection(create_request("by_author", &password))
            .await,
        Code::PermissionDenied,
        "AUTHOR CreateConnection",
    );
    crate::support::assert_status_free_of(&status, &password);

    let foreign_owner = server.user_token("otto", &[("globex", WorkspaceRole::Owner)]);
    let password = server.marker("foreign-password");
    expect_code(
        clients
            .with_token(&foreign_owner)
            .create_connection(create_request("by_foreign_owner", &password))
            .await,
        Code::PermissionDenied,
        "OWNER of another workspace CreateConnection",
    );
    expect_one_of(
        clients
            .with_token(&foreign_owner)
            .get_connection(GetConnectionRequest {
                name: connection_name(WORKSPACE, CONN_ID),
                view: 0,
            })
            .await,
        &[Code::PermissionDenied, Code::NotFound],
        "OWNER of another workspace GetConnection",
    );
    expect_code(
        clients
            .with_token(&foreign_owner)
            .list_deployments(ListDeploymentsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        Code::PermissionDenied,
        "OWNER of another workspace ListDeployments",
    );

    // Nothing was created by the refused calls.
    let listed = ok(
        clients
            .with_token(&seeded.operator_token)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        "ListConnections",
    );
    let ids: Vec<&str> = listed
        .connections
        .iter()
        .map(|connection| connection.name.as_str())
        .collect();
    assert_eq!(ids, [connection_name(WORKSPACE, CONN_ID)]);

    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn member_reads_masked_but_cannot_change_anything() {
    let server = TestServer::configure().spawn().await;
    let clients = server.client().await;
    seed(&server, None).await;
    let member = server.user_token("mia", &[(WORKSPACE, WorkspaceRole::Member)]);

    ok(
        clients
            .with_token(&member)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "MEMBER ListConnectionTypes",
    );
    let fetched = ok(
        clients
            .with_token(&member)
            .get_connection(GetConnectionRequest {
                name: connection_name(WORKSPACE, CONN_ID),
                view: 0,
            })
            .await,
        "MEMBER GetConnection",
    );
    assert!(fetched.password.is_empty());
    ok(
        clients
            .with_token(&member)
            .get_workspace_policy(GetWorkspacePolicyRequest {
                name: format!("workspaces/{WORKSPACE}/policy"),
            })
            .await,
        "MEMBER GetWorkspacePolicy",
    );
    expect_code(
        clients
            .with_token(&member)
            .create_deployment(CreateDeploymentRequest {
                parent: workspace_name(WORKSPACE),
                deployment_id: "by-member".to_owned(),
                deployment: Some(Deployment::default()),
                request_id: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "MEMBER CreateDeployment",
    );
    let password = server.marker("member-password");
    expect_code(
        clients
            .with_token(&member)
            .create_connection(create_request("by_member", &password))
            .await,
        Code::PermissionDenied,
        "MEMBER CreateConnection",
    );

    // UpdateWorkspacePolicy is for OWNERs only.
    let operator = server.user_token("olga", &[(WORKSPACE, WorkspaceRole::Operator)]);
    expect_code(
        clients
            .with_token(&operator)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: format!("workspaces/{WORKSPACE}/policy"),
                    allow_secret_reveal: true,
                    ..Default::default()
                }),
                update_mask: None,
                request_id: String::new(),
            })
            .await,
        Code::PermissionDenied,
        "OPERATOR UpdateWorkspacePolicy",
    );

    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_tokens_only_resolve_and_users_need_the_policy_to_resolve() {
    let server = TestServer::configure().spawn().await;
    let clients = server.client().await;
    let seeded = seed(&server, None).await;

    expect_one_of(
        clients
            .with_token(&seeded.prod_token)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        &[Code::PermissionDenied, Code::Unauthenticated],
        "deployment token ListConnections",
    );
    expect_one_of(
        clients
            .with_token(&seeded.prod_token)
            .get_connection(GetConnectionRequest {
                name: connection_name(WORKSPACE, CONN_ID),
                view: 0,
            })
            .await,
        &[Code::PermissionDenied, Code::Unauthenticated],
        "deployment token GetConnection",
    );
    expect_one_of(
        clients
            .with_token(&seeded.prod_token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        &[Code::PermissionDenied, Code::Unauthenticated],
        "deployment token ListConnectionTypes",
    );
    expect_one_of(
        clients
            .with_token(&seeded.prod_token)
            .create_deployment_token(switchboard_proto::v1::CreateDeploymentTokenRequest {
                parent: crate::support::deployment_name(WORKSPACE, "prod"),
                ..Default::default()
            })
            .await,
        &[Code::PermissionDenied, Code::Unauthenticated],
        "deployment token CreateDeploymentToken",
    );

    // A deployment token serves its own deployment only.
    expect_one_of(
        clients
            .with_token(&seeded.prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: crate::support::deployment_name(WORKSPACE, "staging"),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        &[Code::PermissionDenied, Code::NotFound],
        "prod's token resolving for staging",
    );
    let own = ok(
        clients
            .with_token(&seeded.prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: crate::support::deployment_name(WORKSPACE, "prod"),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        "prod's token naming its own deployment",
    );
    assert_eq!(own.schema, "PROD");

    // Users resolve only with allow_local_export, which is off by default.
    expect_code(
        clients
            .with_token(&seeded.operator_token)
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: crate::support::deployment_name(WORKSPACE, "prod"),
            })
            .await,
        Code::PermissionDenied,
        "OPERATOR ListResolvedConnections without allow_local_export",
    );
    let member = server.user_token("mia", &[(WORKSPACE, WorkspaceRole::Member)]);
    expect_code(
        clients
            .with_token(&member)
            .resolve_connection(ResolveConnectionRequest {
                deployment: crate::support::deployment_name(WORKSPACE, "prod"),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        Code::PermissionDenied,
        "MEMBER ResolveConnection",
    );

    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_forged_and_foreign_tokens_are_unauthenticated() {
    let server = TestServer::configure().spawn().await;
    let clients = server.client().await;
    let seeded = seed(&server, None).await;

    let other_dir = tempfile::tempdir().expect("temporary dir");
    let foreign_key_token = mint_user_token(
        other_dir.path(),
        "eve",
        &[(WORKSPACE, WorkspaceRole::Owner)],
    );
    let forged = [
        ("alg none", unsigned_owner_token()),
        ("tampered claims", tampered(&seeded.operator_token)),
        ("signed with another key", foreign_key_token),
        ("not a JWT", "not-a-token".to_owned()),
        (
            "revoked-looking deployment token",
            format!("{}x", seeded.prod_token),
        ),
    ];

    // Without any token.
    let status = expect_code(
        clients
            .anonymous()
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(WORKSPACE),
                ..Default::default()
            })
            .await,
        Code::Unauthenticated,
        "ListConnections without a token",
    );
    assert!(!status.message().is_empty());
    expect_code(
        clients
            .anonymous()
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: String::new(),
            })
            .await,
        Code::Unauthenticated,
        "ListResolvedConnections without a token",
    );
    let password = server.marker("anonymous-password");
    expect_code(
        clients
            .anonymous()
            .create_connection(create_request("anonymous", &password))
            .await,
        Code::Unauthenticated,
        "CreateConnection without a token",
    );

    for (what, token) in &forged {
        expect_code(
            clients
                .with_token(token)
                .get_connection(GetConnectionRequest {
                    name: connection_name(WORKSPACE, CONN_ID),
                    view: 0,
                })
                .await,
            Code::Unauthenticated,
            &format!("GetConnection with a token {what}"),
        );
        expect_code(
            clients
                .with_token(token)
                .resolve_connection(ResolveConnectionRequest {
                    deployment: crate::support::deployment_name(WORKSPACE, "prod"),
                    conn_id: CONN_ID.to_owned(),
                })
                .await,
            Code::Unauthenticated,
            &format!("ResolveConnection with a token {what}"),
        );
    }
    let password = server.marker("alg-none-password");
    expect_code(
        clients
            .with_token(&unsigned_owner_token())
            .create_connection(create_request("by_alg_none", &password))
            .await,
        Code::Unauthenticated,
        "CreateConnection with an alg none token",
    );

    server.assert_logs_clean();
}
