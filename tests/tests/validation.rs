//! INVALID_ARGUMENT with `google.rpc.BadRequest` field violations naming each
//! bad field, and nothing changed by a refused request.

use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, CreateDeploymentRequest, CreateLinkRequest, Deployment,
    GetConnectionRequest, Link, LinkOverrides,
};
use switchboard_tests::{TestServer, WorkspaceRole};
use tonic::Code;

use crate::seed_story::WORKSPACE;
use crate::support::{
    Client, assert_status_free_of, connection_name, create_connection, create_deployment,
    deployment_name, expect_code, null_value, snowflake_connection, string_value, violation_fields,
    workspace_name,
};

async fn create_expecting_violations(
    clients: &mut Client,
    token: &str,
    conn_id: &str,
    connection: Connection,
    secret: &str,
) -> Vec<String> {
    let status = expect_code(
        clients
            .with_token(token)
            .create_connection(CreateConnectionRequest {
                parent: workspace_name(WORKSPACE),
                connection_id: conn_id.to_owned(),
                connection: Some(connection),
                request_id: String::new(),
                links: Vec::new(),
            })
            .await,
        Code::InvalidArgument,
        &format!("CreateConnection {conn_id:?}"),
    );
    assert_status_free_of(&status, secret);
    violation_fields(&status)
}

fn assert_names(fields: &[String], expected: &str) {
    assert!(
        fields.iter().any(|field| field == expected),
        "a field violation names {expected}; got {fields:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_connections_are_refused_naming_each_field() {
    let server = TestServer::configure().spawn().await;
    let mut clients = server.client().await;
    let token = server.user_token("olivia", &[(WORKSPACE, WorkspaceRole::Operator)]);

    let password = server.marker("bad-id-password");
    let fields = create_expecting_violations(
        &mut clients,
        &token,
        "bad id!",
        snowflake_connection(&password),
        &password,
    )
    .await;
    assert_names(&fields, "connection_id");

    let too_long = "c".repeat(251);
    let fields = create_expecting_violations(
        &mut clients,
        &token,
        &too_long,
        snowflake_connection(&password),
        &password,
    )
    .await;
    assert_names(&fields, "connection_id");

    let mut out_of_range = snowflake_connection(&password);
    out_of_range.port = 70_000;
    let fields =
        create_expecting_violations(&mut clients, &token, "bad_port", out_of_range, &password)
            .await;
    assert_names(&fields, "connection.port");

    let mut unknown_type = snowflake_connection(&password);
    unknown_type.r#type = "oracle_thin".to_owned();
    let fields =
        create_expecting_violations(&mut clients, &token, "bad_type", unknown_type, &password)
            .await;
    assert_names(&fields, "connection.type");

    let mut no_password = snowflake_connection("");
    no_password.password.clear();
    let fields =
        create_expecting_violations(&mut clients, &token, "no_password", no_password, &password)
            .await;
    assert_names(&fields, "connection.password");

    let mut no_account = snowflake_connection(&password);
    if let Some(extra) = no_account.extra.as_mut() {
        extra.fields.remove("account");
    }
    let fields =
        create_expecting_violations(&mut clients, &token, "no_account", no_account, &password)
            .await;
    assert_names(&fields, "connection.extra.account");

    // Every bad field is named at once.
    let mut several = snowflake_connection(&password);
    several.port = -1;
    if let Some(extra) = several.extra.as_mut() {
        extra.fields.remove("account");
    }
    let fields =
        create_expecting_violations(&mut clients, &token, "bad id!", several, &password).await;
    assert_names(&fields, "connection_id");
    assert_names(&fields, "connection.port");
    assert_names(&fields, "connection.extra.account");

    // Nothing was created.
    for conn_id in ["bad_port", "bad_type", "no_password", "no_account"] {
        expect_code(
            clients
                .with_token(&token)
                .get_connection(GetConnectionRequest {
                    name: connection_name(WORKSPACE, conn_id),
                    view: 0,
                })
                .await,
            Code::NotFound,
            &format!("GetConnection {conn_id} after a refused create"),
        );
    }

    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conn_ids_are_unique_ignoring_case() {
    let server = TestServer::configure().spawn().await;
    let mut clients = server.client().await;
    let token = server.user_token("olivia", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let password = server.marker("first-password");
    create_connection(
        &mut clients,
        &token,
        WORKSPACE,
        "Warehouse.Main",
        snowflake_connection(&password),
    )
    .await;
    let password = server.marker("second-password");
    let status = expect_code(
        clients
            .with_token(&token)
            .create_connection(CreateConnectionRequest {
                parent: workspace_name(WORKSPACE),
                connection_id: "warehouse.main".to_owned(),
                connection: Some(snowflake_connection(&password)),
                request_id: String::new(),
                links: Vec::new(),
            })
            .await,
        Code::AlreadyExists,
        "CreateConnection of an id differing only in case",
    );
    assert_status_free_of(&status, &password);
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deployments_and_links_are_refused_naming_each_field() {
    let server = TestServer::configure().spawn().await;
    let mut clients = server.client().await;
    let token = server.user_token("olivia", &[(WORKSPACE, WorkspaceRole::Operator)]);

    let status = expect_code(
        clients
            .with_token(&token)
            .create_deployment(CreateDeploymentRequest {
                parent: workspace_name(WORKSPACE),
                deployment_id: "Not_A_Valid_Id".to_owned(),
                deployment: Some(Deployment::default()),
                request_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "CreateDeployment with a bad id",
    );
    assert_names(&violation_fields(&status), "deployment_id");

    create_deployment(&mut clients, &token, WORKSPACE, "prod").await;
    let password = server.marker("link-base-password");
    create_connection(
        &mut clients,
        &token,
        WORKSPACE,
        "snowflake_default",
        snowflake_connection(&password),
    )
    .await;

    // Removing a required extra through a link leaves an invalid merged connection.
    let mut overrides_extra = prost_types::Struct::default();
    overrides_extra
        .fields
        .insert("account".to_owned(), null_value());
    overrides_extra
        .fields
        .insert("warehouse".to_owned(), string_value("PROD_WH"));
    let status = expect_code(
        clients
            .with_token(&token)
            .create_link(CreateLinkRequest {
                parent: connection_name(WORKSPACE, "snowflake_default"),
                link: Some(Link {
                    deployment: deployment_name(WORKSPACE, "prod"),
                    overrides: Some(LinkOverrides {
                        extra: Some(overrides_extra),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "CreateLink whose overrides drop a required extra",
    );
    let fields = violation_fields(&status);
    assert!(
        fields
            .iter()
            .any(|field| field.starts_with("link.overrides") && field.ends_with("extra.account")),
        "a violation names link.overrides…extra.account; got {fields:?}"
    );

    let link_password = server.marker("link-override-password");
    let status = expect_code(
        clients
            .with_token(&token)
            .create_link(CreateLinkRequest {
                parent: connection_name(WORKSPACE, "snowflake_default"),
                link: Some(Link {
                    deployment: deployment_name(WORKSPACE, "prod"),
                    overrides: Some(LinkOverrides {
                        port: Some(0x1_0000),
                        password: Some(link_password.clone()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
        Code::InvalidArgument,
        "CreateLink with an out-of-range port override",
    );
    assert_status_free_of(&status, &link_password);
    assert_names(&violation_fields(&status), "link.overrides.port");

    server.assert_logs_clean();
}
