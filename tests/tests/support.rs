//! Clients, request builders and status assertions shared by the tests.

use std::collections::BTreeMap;
use std::fmt::Debug;

use prost_types::value::Kind;
use prost_types::{Struct, Value};
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;
use switchboard_proto::v1::deployment_service_client::DeploymentServiceClient;
use switchboard_proto::v1::resolver_service_client::ResolverServiceClient;
use switchboard_proto::v1::workspace_service_client::WorkspaceServiceClient;
use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, CreateDeploymentRequest, CreateDeploymentTokenRequest,
    CreateLinkRequest, Deployment, DeploymentKind, Link, LinkOverrides,
};
use switchboard_tests::{TestServer, authorized};
use tonic::transport::Channel;
use tonic::{Code, Response, Status};
use tonic_types::StatusExt;

/// One client per service, all on one channel.
#[derive(Debug, Clone)]
pub(crate) struct Clients {
    pub(crate) connections: ConnectionServiceClient<Channel>,
    pub(crate) deployments: DeploymentServiceClient<Channel>,
    pub(crate) workspaces: WorkspaceServiceClient<Channel>,
    pub(crate) resolver: ResolverServiceClient<Channel>,
}

impl Clients {
    pub(crate) async fn connect(server: &TestServer) -> Self {
        let channel = server.channel().await;
        Clients {
            connections: ConnectionServiceClient::new(channel.clone()),
            deployments: DeploymentServiceClient::new(channel.clone()),
            workspaces: WorkspaceServiceClient::new(channel.clone()),
            resolver: ResolverServiceClient::new(channel),
        }
    }
}

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
pub(crate) fn ok<T>(result: Result<Response<T>, Status>, what: &str) -> T {
    match result {
        Ok(response) => response.into_inner(),
        Err(status) => panic!(
            "{what}: expected OK, got {:?}: {}",
            status.code(),
            status.message()
        ),
    }
}

/// Fails unless the call failed with `code`; the status.
pub(crate) fn expect_code<T: Debug>(
    result: Result<Response<T>, Status>,
    code: Code,
    what: &str,
) -> Status {
    match result {
        Ok(response) => panic!(
            "{what}: expected {code:?}, got OK: {:?}",
            response.into_inner()
        ),
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
    result: Result<Response<T>, Status>,
    codes: &[Code],
    what: &str,
) -> Status {
    match result {
        Ok(response) => panic!(
            "{what}: expected one of {codes:?}, got OK: {:?}",
            response.into_inner()
        ),
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
    clients: &mut Clients,
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
        clients
            .deployments
            .create_deployment(authorized(request, token))
            .await,
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
    clients: &mut Clients,
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
            .deployments
            .create_deployment_token(authorized(request, token))
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
    clients: &mut Clients,
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
        clients
            .connections
            .create_connection(authorized(request, token))
            .await,
        "CreateConnection",
    );
    assert_eq!(created.name, connection_name(workspace, conn_id));
    created
}

/// Links `conn_id` to `deployment_id` with `overrides`; fails unless it succeeds.
pub(crate) async fn create_link(
    clients: &mut Clients,
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
        clients
            .connections
            .create_link(authorized(request, token))
            .await,
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
