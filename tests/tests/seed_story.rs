//! The product's story: one Snowflake connection for the workspace, linked to
//! two deployments with their own schema and warehouse, each deployment
//! resolving its merged copy with its own token.

use switchboard_proto::v1::{
    ConnectionView, GetConnectionRequest, GetLinkRequest, ListConnectionTypesRequest,
    ListConnectionsRequest, ListResolvedConnectionsRequest, ResolveConnectionRequest,
    ResolvedConnection,
};
use switchboard_tests::{TestServer, WorkspaceRole};
use tonic::Code;

use crate::support::{
    connection_name, create_connection, create_deployment, create_deployment_token, create_link,
    expect_code, extra_string, ok, schema_and_warehouse, snowflake_connection,
};

pub(crate) const WORKSPACE: &str = "acme";
pub(crate) const CONN_ID: &str = "snowflake_default";

/// What [`seed`] created.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub(crate) operator_token: String,
    pub(crate) password: String,
    pub(crate) prod_token: String,
    pub(crate) staging_token: String,
    /// Token of deployment `sandbox`, which has no link to the connection.
    pub(crate) sandbox_token: String,
}

/// As an OPERATOR of `acme`: deployments `prod`, `staging` and `sandbox`, a
/// `snowflake_password` connection linked to `prod` (schema `PROD`, warehouse
/// `PROD_WH`) and `staging` (schema `STAGING`, warehouse `STAGING_WH`), and a
/// token for each deployment. `control` creates; tokens are registered with
/// `control` and `also_watch` for the log check.
pub(crate) async fn seed(control: &TestServer, also_watch: Option<&TestServer>) -> Seeded {
    let mut clients = control.client().await;
    let operator_token = control.user_token("olivia", &[(WORKSPACE, WorkspaceRole::Operator)]);
    for deployment_id in ["prod", "staging", "sandbox"] {
        create_deployment(&mut clients, &operator_token, WORKSPACE, deployment_id).await;
    }
    let password = control.marker("snowflake-password");
    if let Some(other) = also_watch {
        other.forbid_in_logs(&password);
    }
    let created = create_connection(
        &mut clients,
        &operator_token,
        WORKSPACE,
        CONN_ID,
        snowflake_connection(&password),
    )
    .await;
    assert_eq!(created.conn_type, "snowflake");
    assert!(
        created.password.is_empty(),
        "CreateConnection returns the password masked"
    );
    assert!(
        created
            .secret_fields_set
            .iter()
            .any(|field| field == "password"),
        "secret_fields_set names password: {:?}",
        created.secret_fields_set
    );
    create_link(
        &mut clients,
        &operator_token,
        WORKSPACE,
        CONN_ID,
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    create_link(
        &mut clients,
        &operator_token,
        WORKSPACE,
        CONN_ID,
        "staging",
        schema_and_warehouse("STAGING", "STAGING_WH"),
    )
    .await;
    let mut tokens = Vec::new();
    for deployment_id in ["prod", "staging", "sandbox"] {
        let token = create_deployment_token(
            control,
            &mut clients,
            &operator_token,
            WORKSPACE,
            deployment_id,
        )
        .await;
        if let Some(other) = also_watch {
            other.forbid_in_logs(&token);
        }
        tokens.push(token);
    }
    let sandbox_token = tokens.pop().expect("three tokens");
    let staging_token = tokens.pop().expect("three tokens");
    let prod_token = tokens.pop().expect("three tokens");
    Seeded {
        operator_token,
        password,
        prod_token,
        staging_token,
        sandbox_token,
    }
}

/// Checks one deployment's merged view: its own schema and warehouse, the
/// shared login, password, account and database.
pub(crate) fn assert_effective(
    resolved: &ResolvedConnection,
    password: &str,
    schema: &str,
    warehouse: &str,
) {
    assert_eq!(resolved.conn_id, CONN_ID);
    assert_eq!(resolved.conn_type, "snowflake");
    assert_eq!(resolved.schema, schema, "schema override applies");
    assert_eq!(
        resolved.login, "airflow_svc",
        "login comes from the connection"
    );
    assert_eq!(
        resolved.password, password,
        "password comes from the connection"
    );
    assert_eq!(
        extra_string(&resolved.extra, "warehouse"),
        Some(warehouse),
        "extra.warehouse override applies"
    );
    assert_eq!(
        extra_string(&resolved.extra, "account"),
        Some("xy12345.eu-central-1"),
        "extras merge key by key: account is kept"
    );
    assert_eq!(
        extra_string(&resolved.extra, "database"),
        Some("ANALYTICS"),
        "extras merge key by key: database is kept"
    );
    assert!(resolved.revision > 0, "a resolved value names its revision");

    let json: serde_json::Value = serde_json::from_str(&resolved.airflow_json)
        .unwrap_or_else(|err| panic!("airflow_json is JSON ({err}): {}", resolved.airflow_json));
    assert_eq!(json["conn_type"], "snowflake", "airflow_json: {json}");
    assert_eq!(json["schema"], schema, "airflow_json: {json}");
    assert_eq!(json["login"], "airflow_svc", "airflow_json: {json}");
    assert_eq!(json["password"], password, "airflow_json: {json}");
    let extra = match &json["extra"] {
        // Airflow's from_json accepts extra as an object or as a JSON string.
        serde_json::Value::String(text) => {
            serde_json::from_str(text).expect("extra string holds JSON")
        }
        other => other.clone(),
    };
    assert_eq!(extra["warehouse"], warehouse, "airflow_json extra: {extra}");
    assert_eq!(
        extra["account"], "xy12345.eu-central-1",
        "airflow_json extra: {extra}"
    );
    if let Some(port) = json.get("port").filter(|port| !port.is_null()) {
        assert!(port.is_i64(), "airflow_json port is an integer: {port}");
    }
    assert!(
        resolved.airflow_uri.starts_with("snowflake://"),
        "airflow_uri: {}",
        resolved.airflow_uri
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snowflake_connection_linked_to_two_deployments_resolves_per_deployment() {
    let server = TestServer::configure().spawn().await;
    let clients = server.client().await;

    let operator_token =
        server.user_token("catalog-reader", &[(WORKSPACE, WorkspaceRole::Operator)]);
    let catalog = ok(
        clients
            .with_token(&operator_token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "ListConnectionTypes",
    );
    let snowflake = catalog
        .connection_types
        .iter()
        .find(|entry| entry.r#type == "snowflake_password")
        .expect("the catalog has snowflake_password");
    assert_eq!(snowflake.conn_type, "snowflake");
    assert_eq!(
        snowflake.provider_package,
        "apache-airflow-providers-snowflake"
    );
    let password_parameter = snowflake
        .parameters
        .iter()
        .find(|parameter| parameter.field == "password")
        .expect("snowflake_password has a password parameter");
    assert!(password_parameter.secret, "the password is secret");
    // Every required parameter is one the story's connection sets.
    let sent = [
        "login",
        "password",
        "schema",
        "extra.account",
        "extra.warehouse",
        "extra.database",
        "extra.role",
    ];
    for parameter in snowflake
        .parameters
        .iter()
        .filter(|parameter| parameter.required)
    {
        assert!(
            sent.contains(&parameter.field.as_str()),
            "the catalog requires {}, which the seed story does not set",
            parameter.field
        );
    }
    let expected_types = [
        "aws_redshift",
        "databricks",
        "fivetran",
        "postgres",
        "bigquery",
        "snowflake_private_key",
        "snowflake_password",
        "generic",
    ];
    for expected in expected_types {
        assert!(
            catalog
                .connection_types
                .iter()
                .any(|entry| entry.r#type == expected),
            "the catalog lists {expected}"
        );
    }

    let seeded = seed(&server, None).await;

    // Each deployment token resolves its own merged copy.
    let prod = ok(
        clients
            .with_token(&seeded.prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        "ResolveConnection with prod's token",
    );
    assert_effective(&prod, &seeded.password, "PROD", "PROD_WH");

    let staging = ok(
        clients
            .with_token(&seeded.staging_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        "ResolveConnection with staging's token",
    );
    assert_effective(&staging, &seeded.password, "STAGING", "STAGING_WH");

    // conn_id matches ignoring case, as Airflow's AIRFLOW_CONN_* variables do.
    let upper = ok(
        clients
            .with_token(&seeded.prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: CONN_ID.to_uppercase(),
            })
            .await,
        "ResolveConnection by upper-case conn_id",
    );
    assert_effective(&upper, &seeded.password, "PROD", "PROD_WH");

    for (token, deployment_id, schema, warehouse) in [
        (&seeded.prod_token, "prod", "PROD", "PROD_WH"),
        (&seeded.staging_token, "staging", "STAGING", "STAGING_WH"),
    ] {
        let listed = ok(
            clients
                .with_token(token)
                .list_resolved_connections(ListResolvedConnectionsRequest {
                    deployment: String::new(),
                })
                .await,
            "ListResolvedConnections",
        );
        assert_eq!(
            listed.connections.len(),
            1,
            "the deployment sees exactly the one linked connection"
        );
        assert_effective(&listed.connections[0], &seeded.password, schema, warehouse);
        assert!(listed.revision > 0, "the list names its revision");
        // The token names no deployment; the answer says which one it is.
        assert_eq!(
            listed.deployment,
            crate::support::deployment_name(WORKSPACE, deployment_id),
            "the list names the token's deployment"
        );
    }

    // Control never returns the secret: the connection, listed or fetched,
    // and the links carry the secret's presence only.
    let fetched = ok(
        clients
            .with_token(&seeded.operator_token)
            .get_connection(GetConnectionRequest {
                name: connection_name(WORKSPACE, CONN_ID),
                view: ConnectionView::Basic as i32,
            })
            .await,
        "GetConnection",
    );
    assert!(
        fetched.password.is_empty(),
        "GetConnection masks the password"
    );
    assert!(
        fetched
            .secret_fields_set
            .iter()
            .any(|field| field == "password"),
        "secret_fields_set names password: {:?}",
        fetched.secret_fields_set
    );
    assert_eq!(
        fetched.schema, "PUBLIC",
        "the connection keeps its own schema"
    );
    assert_eq!(extra_string(&fetched.extra, "warehouse"), Some("BASE_WH"));
    assert!(!fetched.etag.is_empty(), "a connection has an etag");

    let listed = ok(
        clients
            .with_token(&seeded.operator_token)
            .list_connections(ListConnectionsRequest {
                parent: format!("workspaces/{WORKSPACE}"),
                ..Default::default()
            })
            .await,
        "ListConnections",
    );
    assert_eq!(listed.connections.len(), 1);
    assert!(
        listed.connections[0].password.is_empty(),
        "ListConnections masks the password"
    );

    let link = ok(
        clients
            .with_token(&seeded.operator_token)
            .get_link(GetLinkRequest {
                name: format!("{}/links/prod", connection_name(WORKSPACE, CONN_ID)),
            })
            .await,
        "GetLink",
    );
    let overrides = link.overrides.expect("the link has overrides");
    assert_eq!(overrides.schema.as_deref(), Some("PROD"));
    assert_eq!(extra_string(&overrides.extra, "warehouse"), Some("PROD_WH"));

    // WITH_SECRETS needs the workspace policy, which is off by default.
    let reveal = clients
        .with_token(&seeded.operator_token)
        .get_connection(GetConnectionRequest {
            name: connection_name(WORKSPACE, CONN_ID),
            view: ConnectionView::WithSecrets as i32,
        })
        .await;
    if let Ok(response) = &reveal {
        assert!(
            response.password.is_empty(),
            "WITH_SECRETS without allow_secret_reveal must not reveal the password"
        );
    } else {
        expect_code(
            reveal,
            Code::PermissionDenied,
            "WITH_SECRETS without policy",
        );
    }

    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolving_from_an_unlinked_deployment_is_not_found() {
    let server = TestServer::configure().spawn().await;
    let clients = server.client().await;
    let seeded = seed(&server, None).await;

    let status = expect_code(
        clients
            .with_token(&seeded.sandbox_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        Code::NotFound,
        "ResolveConnection from a deployment without a link",
    );
    assert!(!status.message().contains(&seeded.password));

    let listed = ok(
        clients
            .with_token(&seeded.sandbox_token)
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: String::new(),
            })
            .await,
        "ListResolvedConnections for a deployment without links",
    );
    assert!(
        listed.connections.is_empty(),
        "an unlinked deployment sees no connections: {:?}",
        listed
            .connections
            .iter()
            .map(|connection| &connection.conn_id)
            .collect::<Vec<_>>()
    );

    expect_code(
        clients
            .with_token(&seeded.prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: "no_such_connection".to_owned(),
            })
            .await,
        Code::NotFound,
        "ResolveConnection of a conn_id that doesn't exist",
    );

    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whole_numbers_reach_airflow_json_as_integers() {
    let server = TestServer::configure().spawn().await;
    let mut clients = server.client().await;
    let token = server.user_token("olivia", &[(WORKSPACE, WorkspaceRole::Operator)]);
    create_deployment(&mut clients, &token, WORKSPACE, "prod").await;

    let password = server.marker("postgres-password");
    let postgres = switchboard_proto::v1::Connection {
        r#type: "postgres".to_owned(),
        host: "db.internal.example".to_owned(),
        port: 5432,
        schema: "analytics".to_owned(),
        login: "airflow".to_owned(),
        password: password.clone(),
        ..Default::default()
    };
    create_connection(&mut clients, &token, WORKSPACE, "warehouse_pg", postgres).await;
    create_link(
        &mut clients,
        &token,
        WORKSPACE,
        "warehouse_pg",
        "prod",
        switchboard_proto::v1::LinkOverrides {
            port: Some(6432),
            ..Default::default()
        },
    )
    .await;

    let generic = switchboard_proto::v1::Connection {
        r#type: "generic".to_owned(),
        conn_type: "http".to_owned(),
        host: "api.example.com".to_owned(),
        extra: Some(prost_types::Struct {
            fields: [(
                "timeout".to_owned(),
                prost_types::Value {
                    kind: Some(prost_types::value::Kind::NumberValue(30.0)),
                },
            )]
            .into_iter()
            .collect(),
        }),
        ..Default::default()
    };
    create_connection(&mut clients, &token, WORKSPACE, "partner_api", generic).await;
    create_link(
        &mut clients,
        &token,
        WORKSPACE,
        "partner_api",
        "prod",
        Default::default(),
    )
    .await;
    let prod_token =
        create_deployment_token(&server, &mut clients, &token, WORKSPACE, "prod").await;

    let resolved = ok(
        clients
            .with_token(&prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: "warehouse_pg".to_owned(),
            })
            .await,
        "ResolveConnection warehouse_pg",
    );
    assert_eq!(resolved.port, 6432, "the link's port override applies");
    assert_eq!(resolved.host, "db.internal.example");
    assert_eq!(resolved.password, password);
    let json: serde_json::Value =
        serde_json::from_str(&resolved.airflow_json).expect("airflow_json is JSON");
    assert_eq!(json["conn_type"], "postgres");
    assert!(
        json["port"].is_i64(),
        "port is an integer: {}",
        resolved.airflow_json
    );
    assert_eq!(json["port"], 6432);
    assert!(
        !resolved.airflow_json.contains("6432.0"),
        "no float port: {}",
        resolved.airflow_json
    );
    assert!(
        resolved.airflow_uri.starts_with("postgres://") && resolved.airflow_uri.contains(":6432"),
        "airflow_uri: {}",
        resolved.airflow_uri
    );

    let resolved = ok(
        clients
            .with_token(&prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: "partner_api".to_owned(),
            })
            .await,
        "ResolveConnection partner_api",
    );
    assert_eq!(resolved.conn_type, "http");
    let json: serde_json::Value =
        serde_json::from_str(&resolved.airflow_json).expect("airflow_json is JSON");
    let extra = match &json["extra"] {
        serde_json::Value::String(text) => {
            serde_json::from_str(text).expect("extra string holds JSON")
        }
        other => other.clone(),
    };
    assert!(
        extra["timeout"].is_i64(),
        "a whole-number extra stays an integer: {}",
        resolved.airflow_json
    );
    assert!(
        !resolved.airflow_json.contains("30.0"),
        "{}",
        resolved.airflow_json
    );

    server.assert_logs_clean();
}
