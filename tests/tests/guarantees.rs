//! The API's write guarantees, on every backend (embedded SQLite + encrypted
//! secrets, and PostgreSQL + OpenBao): etags (stale → ABORTED, nothing
//! changed; 32 concurrent updates), request_id retries, tamper-checked page
//! tokens, filters by type and by deployment, versions and rollback, audit
//! events, and the workspace policy that gates secret reveal.

use std::collections::BTreeSet;
use std::fmt::Debug;

use switchboard_proto::v1::{
    AuditEvent, Connection, ConnectionView, CreateConnectionRequest, CreateDeploymentRequest,
    CreateLinkRequest, DeleteConnectionRequest, DeleteDeploymentRequest, DeleteLinkRequest,
    Deployment, DeploymentKind, GetConnectionRequest, GetDeploymentRequest, GetLinkRequest,
    GetWorkspacePolicyRequest, Link, LinkOverrides, ListAuditEventsRequest,
    ListConnectionVersionsRequest, ListConnectionsRequest, ListDeploymentsRequest,
    ListLinksRequest, RollbackConnectionRequest, UpdateConnectionRequest, UpdateDeploymentRequest,
    UpdateLinkRequest, UpdateWorkspacePolicyRequest, WorkspacePolicy,
};
use switchboard_tests::{TestServer, WorkspaceRole, random_hex};
use tonic::Code;

use crate::backends::{Backend, psql_count, resolve_until, unique_workspace};
use crate::support::{
    Client, create_connection, create_deployment, create_deployment_token, create_link,
    deployment_name, expect_code, expect_one_of, ok, snowflake_connection, workspace_name,
};

/// Generates one test per backend for each `async fn name(Backend)`.
macro_rules! on_every_backend {
    ($($name:ident),* $(,)?) => {
        mod embedded {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = crate::backends::Backend::embedded() {
                        super::$name(backend).await;
                    }
                }
            )*
        }
        mod postgres_openbao {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    if let Some(backend) = crate::backends::Backend::postgres_openbao() {
                        super::$name(backend).await;
                    }
                }
            )*
        }
    };
}

on_every_backend!(
    stale_etags_are_aborted_and_change_nothing,
    concurrent_updates_one_winner_per_etag_and_no_lost_update,
    request_id_retries_return_the_original,
    concurrent_retries_of_one_request_id_return_the_original,
    pages_are_tamper_checked_and_filters_follow_visibility,
    rollback_restores_an_earlier_password,
    audit_events_name_fields_never_values,
    policy_gates_secret_reveal,
);

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

fn policy_name(workspace: &str) -> String {
    format!("{}/policy", workspace_name(workspace))
}

/// Fails if the debug form of `value` contains any of `secrets`.
fn assert_free_of<T: Debug>(value: &T, secrets: &[&str], what: &str) {
    let text = format!("{value:?}");
    for secret in secrets {
        assert!(!text.contains(secret), "{what} reveals a secret value");
    }
}

async fn get_connection(clients: &mut Client, token: &str, name: &str) -> Connection {
    ok(
        clients
            .with_token(token)
            .get_connection(GetConnectionRequest {
                name: name.to_owned(),
                view: ConnectionView::Basic as i32,
            })
            .await,
        "GetConnection",
    )
}

async fn update_description(
    clients: &mut Client,
    token: &str,
    name: &str,
    etag: &str,
    description: &str,
) -> Result<Connection, tonic::Status> {
    clients
        .with_token(token)
        .update_connection(UpdateConnectionRequest {
            connection: Some(Connection {
                name: name.to_owned(),
                etag: etag.to_owned(),
                description: description.to_owned(),
                ..Default::default()
            }),
            update_mask: mask(&["description"]),
            request_id: String::new(),
        })
        .await
}

/// Every audit event matching `filter`, newest first, read in pages of `page_size`.
async fn audit_events(
    server: &TestServer,
    token: &str,
    workspace: &str,
    filter: &str,
    page_size: i32,
) -> Vec<AuditEvent> {
    // list_all fails when a page holds more than page_size events.
    ok(
        server
            .client()
            .await
            .with_token(token)
            .list_all(ListAuditEventsRequest {
                parent: workspace_name(workspace),
                page_size,
                page_token: String::new(),
                filter: filter.to_owned(),
            })
            .await,
        "ListAuditEvents",
    )
}

/// The conn_ids a filtered listing returns, read in pages of 2.
async fn listed_conn_ids(
    clients: &mut Client,
    token: &str,
    workspace: &str,
    filter: &str,
) -> Vec<String> {
    // list_all fails when a page holds more than page_size connections.
    let connections = ok(
        clients
            .with_token(token)
            .list_all(ListConnectionsRequest {
                parent: workspace_name(workspace),
                page_size: 2,
                page_token: String::new(),
                filter: filter.to_owned(),
            })
            .await,
        &format!("ListConnections filter {filter:?}"),
    );
    connections
        .into_iter()
        .map(|connection| {
            connection
                .name
                .rsplit('/')
                .next()
                .expect("a connection name")
                .to_owned()
        })
        .collect()
}

async fn stale_etags_are_aborted_and_change_nothing(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("etag");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    let deployment = create_deployment(&mut clients, &owner, &workspace, "prod").await;
    let password = server.marker("etag-password");
    let created = create_connection(
        &mut clients,
        &owner,
        &workspace,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    let link = create_link(
        &mut clients,
        &owner,
        &workspace,
        "warehouse",
        "prod",
        LinkOverrides {
            schema: Some("PROD".to_owned()),
            ..Default::default()
        },
    )
    .await;
    let prod_token =
        create_deployment_token(&server, &mut clients, &owner, &workspace, "prod").await;

    // Connection: update with the current etag, then with the stale one.
    let name = created.name.clone();
    let updated = ok(
        update_description(&mut clients, &owner, &name, &created.etag, "first").await,
        "UpdateConnection with the current etag",
    );
    assert_ne!(updated.etag, created.etag, "an update changes the etag");
    let stale_password = server.marker("stale-password");
    expect_code(
        clients
            .with_token(&owner)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    etag: created.etag.clone(),
                    description: "stale".to_owned(),
                    password: stale_password.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["description", "password"]),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "UpdateConnection with a stale etag",
    );
    expect_code(
        clients
            .with_token(&owner)
            .delete_connection(DeleteConnectionRequest {
                name: name.clone(),
                etag: created.etag.clone(),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "DeleteConnection with a stale etag",
    );
    expect_code(
        clients
            .with_token(&owner)
            .rollback_connection(RollbackConnectionRequest {
                name: name.clone(),
                version: 1,
                etag: created.etag.clone(),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "RollbackConnection with a stale etag",
    );
    let current = get_connection(&mut clients, &owner, &name).await;
    assert_eq!(current.etag, updated.etag, "stale writes changed nothing");
    assert_eq!(current.description, "first");
    let resolved = resolve_until(&mut clients, &prod_token, "warehouse", "prod", |_| true).await;
    assert_eq!(
        resolved.password, password,
        "the stale update did not reach the password"
    );

    // Link.
    let updated_link = ok(
        clients
            .with_token(&owner)
            .update_link(UpdateLinkRequest {
                link: Some(Link {
                    name: link.name.clone(),
                    etag: link.etag.clone(),
                    overrides: Some(LinkOverrides {
                        schema: Some("PROD_V2".to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["overrides.schema"]),
                request_id: String::new(),
            })
            .await,
        "UpdateLink with the current etag",
    );
    assert_ne!(updated_link.etag, link.etag);
    expect_code(
        clients
            .with_token(&owner)
            .update_link(UpdateLinkRequest {
                link: Some(Link {
                    name: link.name.clone(),
                    etag: link.etag.clone(),
                    overrides: Some(LinkOverrides {
                        schema: Some("STALE".to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["overrides.schema"]),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "UpdateLink with a stale etag",
    );
    expect_code(
        clients
            .with_token(&owner)
            .delete_link(DeleteLinkRequest {
                name: link.name.clone(),
                etag: link.etag.clone(),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "DeleteLink with a stale etag",
    );
    let current_link = ok(
        clients
            .with_token(&owner)
            .get_link(GetLinkRequest {
                name: link.name.clone(),
            })
            .await,
        "GetLink",
    );
    assert_eq!(current_link.etag, updated_link.etag);
    assert_eq!(
        current_link
            .overrides
            .and_then(|overrides| overrides.schema),
        Some("PROD_V2".to_owned())
    );

    // Deployment.
    let updated_deployment = ok(
        clients
            .with_token(&owner)
            .update_deployment(UpdateDeploymentRequest {
                deployment: Some(Deployment {
                    name: deployment.name.clone(),
                    etag: deployment.etag.clone(),
                    display_name: "Production".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                request_id: String::new(),
            })
            .await,
        "UpdateDeployment with the current etag",
    );
    assert_eq!(updated_deployment.display_name, "Production");
    assert_ne!(updated_deployment.etag, deployment.etag);
    expect_code(
        clients
            .with_token(&owner)
            .update_deployment(UpdateDeploymentRequest {
                deployment: Some(Deployment {
                    name: deployment.name.clone(),
                    etag: deployment.etag.clone(),
                    display_name: "Stale".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "UpdateDeployment with a stale etag",
    );
    expect_code(
        clients
            .with_token(&owner)
            .delete_deployment(DeleteDeploymentRequest {
                name: deployment.name.clone(),
                etag: deployment.etag.clone(),
                force: true,
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "DeleteDeployment with a stale etag",
    );
    let current_deployment = ok(
        clients
            .with_token(&owner)
            .get_deployment(GetDeploymentRequest {
                name: deployment.name.clone(),
            })
            .await,
        "GetDeployment",
    );
    assert_eq!(current_deployment.etag, updated_deployment.etag);
    assert_eq!(current_deployment.display_name, "Production");

    // Policy.
    let policy = ok(
        clients
            .with_token(&owner)
            .get_workspace_policy(GetWorkspacePolicyRequest {
                name: policy_name(&workspace),
            })
            .await,
        "GetWorkspacePolicy",
    );
    assert!(!policy.etag.is_empty(), "a policy has an etag");
    let updated_policy = ok(
        clients
            .with_token(&owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: policy_name(&workspace),
                    etag: policy.etag.clone(),
                    allow_local_export: true,
                    ..Default::default()
                }),
                update_mask: mask(&["allow_local_export"]),
                request_id: String::new(),
            })
            .await,
        "UpdateWorkspacePolicy with the current etag",
    );
    assert_ne!(updated_policy.etag, policy.etag);
    expect_code(
        clients
            .with_token(&owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: policy_name(&workspace),
                    etag: policy.etag.clone(),
                    allow_secret_reveal: true,
                    ..Default::default()
                }),
                update_mask: mask(&["allow_secret_reveal"]),
                request_id: String::new(),
            })
            .await,
        Code::Aborted,
        "UpdateWorkspacePolicy with a stale etag",
    );
    let current_policy = ok(
        clients
            .with_token(&owner)
            .get_workspace_policy(GetWorkspacePolicyRequest {
                name: policy_name(&workspace),
            })
            .await,
        "GetWorkspacePolicy",
    );
    assert_eq!(current_policy.etag, updated_policy.etag);
    assert!(current_policy.allow_local_export);
    assert!(
        !current_policy.allow_secret_reveal,
        "the stale policy update changed nothing"
    );

    // Nothing stale reached the audit trail either.
    let events = audit_events(&server, &owner, &workspace, "", 100).await;
    assert_free_of(&events, &[&password, &stale_password], "ListAuditEvents");
    assert!(
        !events.iter().any(|event| event.action == "DeleteConnection"
            || event.action == "DeleteLink"
            || event.action == "DeleteDeployment"
            || event.action == "RollbackConnection"),
        "refused deletes and rollbacks left no audit event: {events:?}"
    );
    server.assert_logs_clean();
}

async fn concurrent_updates_one_winner_per_etag_and_no_lost_update(backend: Backend) {
    const WRITERS: usize = 32;
    // Many calls from one caller in a burst: lift the per-caller rate limit.
    let server = backend
        .apply(TestServer::configure().with_arg("--rate-limit", "100000"))
        .spawn()
        .await;
    let workspace = unique_workspace("race");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    let password = server.marker("race-password");
    let mut connection = snowflake_connection(&password);
    connection.description = "0".to_owned();
    let created = create_connection(&mut clients, &owner, &workspace, "raced", connection).await;
    let name = created.name.clone();

    // Round one: 32 writers all send the same etag; exactly one wins.
    let mut tasks = Vec::new();
    for writer in 0..WRITERS {
        let mut clients = clients.clone();
        let (owner, name, etag) = (owner.clone(), name.clone(), created.etag.clone());
        tasks.push(tokio::spawn(async move {
            let description = format!("writer-{writer}");
            let result = update_description(&mut clients, &owner, &name, &etag, &description).await;
            (description, result)
        }));
    }
    let mut winners = Vec::new();
    for task in tasks {
        let (description, result) = task.await.expect("a writer task");
        match result {
            Ok(updated) => winners.push((description, updated)),
            Err(status) => assert_eq!(
                status.code(),
                Code::Aborted,
                "a losing writer gets ABORTED: {}",
                status.message()
            ),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one update wins per etag, got {}",
        winners.len()
    );
    let (winner_description, winner) = &winners[0];
    let current = get_connection(&mut clients, &owner, &name).await;
    assert_eq!(&current.description, winner_description);
    assert_eq!(current.etag, winner.etag);

    // Round two: every writer increments a counter with read-modify-write
    // under etags, retrying on ABORTED; no increment may be lost.
    ok(
        update_description(&mut clients, &owner, &name, &current.etag, "0").await,
        "reset the counter",
    );
    let mut tasks = Vec::new();
    for _ in 0..WRITERS {
        let mut clients = clients.clone();
        let (owner, name) = (owner.clone(), name.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..10 * WRITERS {
                let read = get_connection(&mut clients, &owner, &name).await;
                let count: usize = read.description.parse().expect("a counter");
                match update_description(
                    &mut clients,
                    &owner,
                    &name,
                    &read.etag,
                    &(count + 1).to_string(),
                )
                .await
                {
                    Ok(_) => return,
                    Err(status) if status.code() == Code::Aborted => continue,
                    Err(status) => panic!(
                        "an etag update failed with {:?}: {}",
                        status.code(),
                        status.message()
                    ),
                }
            }
            panic!("a writer never won a round");
        }));
    }
    for task in tasks {
        task.await.expect("a writer task");
    }
    let last = get_connection(&mut clients, &owner, &name).await;
    assert_eq!(
        last.description,
        WRITERS.to_string(),
        "every increment survived: nothing was silently overwritten"
    );
    server.assert_logs_clean();
}

async fn request_id_retries_return_the_original(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("retry");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;

    // Deployment.
    let deployment_request = CreateDeploymentRequest {
        parent: workspace_name(&workspace),
        deployment_id: "prod".to_owned(),
        deployment: Some(Deployment {
            display_name: "Production".to_owned(),
            ..Default::default()
        }),
        request_id: format!("deployment-{}", random_hex(8)),
    };
    let first = ok(
        clients
            .with_token(&owner)
            .create_deployment(deployment_request.clone())
            .await,
        "CreateDeployment",
    );
    let retry = ok(
        clients
            .with_token(&owner)
            .create_deployment(deployment_request)
            .await,
        "CreateDeployment retried with the same request_id",
    );
    assert_eq!(retry.name, first.name);
    assert_eq!(retry.etag, first.etag);
    assert_eq!(retry.create_time, first.create_time);

    // Connection, with a link in the same transaction.
    let password = server.marker("retry-password");
    let request_id = format!("connection-{}", random_hex(8));
    let connection_request = CreateConnectionRequest {
        parent: workspace_name(&workspace),
        connection_id: "warehouse".to_owned(),
        connection: Some(snowflake_connection(&password)),
        request_id: request_id.clone(),
        links: vec![Link {
            deployment: deployment_name(&workspace, "prod"),
            ..Default::default()
        }],
    };
    let first = ok(
        clients
            .with_token(&owner)
            .create_connection(connection_request.clone())
            .await,
        "CreateConnection",
    );
    for attempt in 0..2 {
        let retry = ok(
            clients
                .with_token(&owner)
                .create_connection(connection_request.clone())
                .await,
            &format!("CreateConnection retry {attempt}"),
        );
        assert_eq!(retry.name, first.name);
        assert_eq!(retry.etag, first.etag, "a retry returns the original");
        assert_eq!(retry.create_time, first.create_time);
        assert!(retry.password.is_empty());
    }
    // The same request without the id is a new create, which conflicts.
    let mut without_id = connection_request.clone();
    without_id.request_id = String::new();
    expect_code(
        clients
            .with_token(&owner)
            .create_connection(without_id)
            .await,
        Code::AlreadyExists,
        "CreateConnection without request_id",
    );
    let listed = ok(
        clients
            .with_token(&owner)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                ..Default::default()
            })
            .await,
        "ListConnections",
    );
    assert_eq!(listed.connections.len(), 1, "no duplicate connection");
    let versions = ok(
        clients
            .with_token(&owner)
            .list_connection_versions(ListConnectionVersionsRequest {
                parent: first.name.clone(),
                ..Default::default()
            })
            .await,
        "ListConnectionVersions",
    );
    assert_eq!(
        versions.connection_versions.len(),
        1,
        "retries made no new version"
    );
    let links = ok(
        clients
            .with_token(&owner)
            .list_links(ListLinksRequest {
                parent: first.name.clone(),
                ..Default::default()
            })
            .await,
        "ListLinks",
    );
    assert_eq!(links.links.len(), 1, "retries made no second link");

    // Link.
    create_deployment(&mut clients, &owner, &workspace, "staging").await;
    let link_request = CreateLinkRequest {
        parent: first.name.clone(),
        link: Some(Link {
            deployment: deployment_name(&workspace, "staging"),
            overrides: Some(LinkOverrides {
                schema: Some("STAGING".to_owned()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        request_id: format!("link-{}", random_hex(8)),
    };
    let first_link = ok(
        clients
            .with_token(&owner)
            .create_link(link_request.clone())
            .await,
        "CreateLink",
    );
    let retry_link = ok(
        clients.with_token(&owner).create_link(link_request).await,
        "CreateLink retried with the same request_id",
    );
    assert_eq!(retry_link.name, first_link.name);
    assert_eq!(retry_link.etag, first_link.etag);

    // One audit event per create, whatever the retries.
    let events = audit_events(&server, &owner, &workspace, "", 100).await;
    let creates = |action: &str| events.iter().filter(|event| event.action == action).count();
    assert_eq!(creates("CreateConnection"), 1, "{events:?}");
    assert_eq!(creates("CreateDeployment"), 2, "{events:?}");
    let create_event = events
        .iter()
        .find(|event| event.action == "CreateConnection")
        .expect("a CreateConnection event");
    assert_eq!(create_event.request_id, request_id);
    if let Some(url) = backend.postgres_url() {
        assert_eq!(
            psql_count(
                url,
                &format!(
                    "select count(*) from connection where workspace = '{workspace}' \
                     and conn_id = 'warehouse'"
                )
            ),
            1,
            "one row in PostgreSQL"
        );
    }
    server.assert_logs_clean();
}

async fn concurrent_retries_of_one_request_id_return_the_original(backend: Backend) {
    const RETRIES: usize = 8;
    let server = backend.dev().await;
    let workspace = unique_workspace("retry-race");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let clients = server.client().await;
    let password = server.marker("retry-race-password");
    let request = CreateConnectionRequest {
        parent: workspace_name(&workspace),
        connection_id: "warehouse".to_owned(),
        connection: Some(snowflake_connection(&password)),
        request_id: format!("race-{}", random_hex(8)),
        links: Vec::new(),
    };
    // A client whose first attempt timed out retries while it still runs.
    let mut tasks = Vec::new();
    for _ in 0..RETRIES {
        let clients = clients.clone();
        let (request, owner) = (request.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            clients.with_token(&owner).create_connection(request).await
        }));
    }
    let mut results = Vec::new();
    for task in tasks {
        results.push(ok(
            task.await.expect("a create task"),
            "CreateConnection sent concurrently with one request_id",
        ));
    }
    for result in &results {
        assert_eq!(result.name, results[0].name);
        assert_eq!(
            result.etag, results[0].etag,
            "every retry returns the original"
        );
    }
    let mut clients = clients;
    let listed = listed_conn_ids(&mut clients, &owner, &workspace, "").await;
    assert_eq!(listed, ["warehouse"], "no duplicate");
    server.assert_logs_clean();
}

async fn pages_are_tamper_checked_and_filters_follow_visibility(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("pages");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let member = server.user_token("mia", &[(&workspace, WorkspaceRole::Member)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &owner, &workspace, "prod").await;
    create_deployment(&mut clients, &owner, &workspace, "staging").await;
    ok(
        clients
            .with_token(&owner)
            .create_deployment(CreateDeploymentRequest {
                parent: workspace_name(&workspace),
                deployment_id: "pr-1".to_owned(),
                deployment: Some(Deployment {
                    display_name: "Preview of PR 1".to_owned(),
                    kind: DeploymentKind::Preview as i32,
                    parent_deployment: deployment_name(&workspace, "prod"),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
        "CreateDeployment PREVIEW of prod",
    );

    let password = server.marker("pages-password");
    let postgres = |link_to_all: bool, excluded: &[&str]| Connection {
        r#type: "postgres".to_owned(),
        host: "db.internal".to_owned(),
        login: "airflow".to_owned(),
        password: password.clone(),
        schema: "analytics".to_owned(),
        port: 5432,
        link_to_all_deployments: link_to_all,
        excluded_deployments: excluded
            .iter()
            .map(|id| deployment_name(&workspace, id))
            .collect(),
        ..Default::default()
    };
    let snowflake = |link_to_all: bool, excluded: &[&str]| Connection {
        link_to_all_deployments: link_to_all,
        excluded_deployments: excluded
            .iter()
            .map(|id| deployment_name(&workspace, id))
            .collect(),
        ..snowflake_connection(&password)
    };
    // a_direct: postgres, linked to prod only.
    // b_all_but_staging: postgres, linked to all but staging.
    // c_all: snowflake, linked to all.
    // d_staging: snowflake, linked to staging only.
    // e_unlinked: postgres, linked nowhere.
    // f_all_but_prod: snowflake, linked to all but prod (so not pr-1 either).
    let specs = [
        ("a_direct", postgres(false, &[])),
        ("b_all_but_staging", postgres(true, &["staging"])),
        ("c_all", snowflake(true, &[])),
        ("d_staging", snowflake(false, &[])),
        ("e_unlinked", postgres(false, &[])),
        ("f_all_but_prod", snowflake(true, &["prod"])),
    ];
    for (conn_id, connection) in specs {
        create_connection(&mut clients, &owner, &workspace, conn_id, connection).await;
    }
    create_link(
        &mut clients,
        &owner,
        &workspace,
        "a_direct",
        "prod",
        LinkOverrides::default(),
    )
    .await;
    create_link(
        &mut clients,
        &owner,
        &workspace,
        "d_staging",
        "staging",
        LinkOverrides::default(),
    )
    .await;
    // A link on a link-to-all connection adds overrides, not a second entry.
    create_link(
        &mut clients,
        &owner,
        &workspace,
        "c_all",
        "prod",
        LinkOverrides {
            schema: Some("PROD".to_owned()),
            ..Default::default()
        },
    )
    .await;

    // Pages of 2 cover everything once, in order.
    let all = listed_conn_ids(&mut clients, &member, &workspace, "").await;
    assert_eq!(
        all,
        [
            "a_direct",
            "b_all_but_staging",
            "c_all",
            "d_staging",
            "e_unlinked",
            "f_all_but_prod"
        ],
        "pages of 2 list every connection exactly once"
    );

    let first_page = ok(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                ..Default::default()
            })
            .await,
        "ListConnections page 1",
    );
    let token = first_page.next_page_token.clone();
    assert!(!token.is_empty(), "a next page exists");
    assert_free_of(&first_page, &[&password], "ListConnections");

    // A tampered token: each position changed in turn must be refused
    // (checking a few spread over the token: start, middle, end).
    for position in [0, token.len() / 2, token.len() - 1] {
        let mut bytes = token.clone().into_bytes();
        bytes[position] = if bytes[position] == b'A' { b'B' } else { b'A' };
        let tampered = String::from_utf8(bytes).expect("ASCII");
        expect_code(
            clients
                .with_token(&member)
                .list_connections(ListConnectionsRequest {
                    parent: workspace_name(&workspace),
                    page_size: 2,
                    page_token: tampered,
                    ..Default::default()
                })
                .await,
            Code::InvalidArgument,
            &format!("ListConnections with a token tampered at {position}"),
        );
    }
    expect_code(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                page_token: "not-a-page-token".to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "ListConnections with garbage for a token",
    );
    // The token of an unfiltered listing, reused with a filter.
    expect_code(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                page_token: token.clone(),
                filter: r#"type = "postgres""#.to_owned(),
            })
            .await,
        Code::InvalidArgument,
        "ListConnections with another filter's page token",
    );
    // The untampered token still works.
    let second_page = ok(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                page_token: token,
                ..Default::default()
            })
            .await,
        "ListConnections page 2",
    );
    assert_eq!(second_page.connections.len(), 2);

    // Filters.
    let deployment = |id: &str| format!(r#"deployment = "{}""#, deployment_name(&workspace, id));
    let cases = [
        (
            r#"type = "postgres""#.to_owned(),
            vec!["a_direct", "b_all_but_staging", "e_unlinked"],
        ),
        (
            r#"type = "snowflake_password""#.to_owned(),
            vec!["c_all", "d_staging", "f_all_but_prod"],
        ),
        (
            deployment("prod"),
            vec!["a_direct", "b_all_but_staging", "c_all"],
        ),
        (
            deployment("staging"),
            vec!["c_all", "d_staging", "f_all_but_prod"],
        ),
        // A PREVIEW sees exactly what its parent sees, exclusions included.
        (
            deployment("pr-1"),
            vec!["a_direct", "b_all_but_staging", "c_all"],
        ),
        (
            format!(r#"type = "postgres" AND {}"#, deployment("pr-1")),
            vec!["a_direct", "b_all_but_staging"],
        ),
        (
            format!(
                r#"{} AND type = "snowflake_password""#,
                deployment("staging")
            ),
            vec!["c_all", "d_staging", "f_all_but_prod"],
        ),
    ];
    for (filter, expected) in cases {
        let listed = listed_conn_ids(&mut clients, &member, &workspace, &filter).await;
        assert_eq!(listed, expected, "filter {filter:?}");
    }
    expect_one_of(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                filter: deployment("nowhere"),
                ..Default::default()
            })
            .await,
        &[Code::NotFound, Code::InvalidArgument],
        "a filter on a deployment that does not exist",
    );
    expect_code(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                filter: r#"color = "blue""#.to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a filter on an unknown field",
    );

    // Deployments page the same way, with their own tamper check.
    let deployments = ok(
        clients
            .with_token(&member)
            .list_deployments(ListDeploymentsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                ..Default::default()
            })
            .await,
        "ListDeployments page 1",
    );
    assert_eq!(deployments.deployments.len(), 2);
    assert!(!deployments.next_page_token.is_empty());
    expect_code(
        clients
            .with_token(&member)
            .list_connections(ListConnectionsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                page_token: deployments.next_page_token,
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "a ListDeployments token given to ListConnections",
    );
    server.assert_logs_clean();
}

async fn rollback_restores_an_earlier_password(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("rollback");
    let operator = server.user_token("olivia", &[(&workspace, WorkspaceRole::Operator)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &operator, &workspace, "prod").await;
    let prod_token =
        create_deployment_token(&server, &mut clients, &operator, &workspace, "prod").await;
    let first_password = server.marker("first-password");
    let second_password = server.marker("second-password");
    let created = ok(
        clients
            .with_token(&operator)
            .create_connection(CreateConnectionRequest {
                parent: workspace_name(&workspace),
                connection_id: "warehouse".to_owned(),
                connection: Some(snowflake_connection(&first_password)),
                request_id: String::new(),
                links: vec![Link {
                    deployment: deployment_name(&workspace, "prod"),
                    ..Default::default()
                }],
            })
            .await,
        "CreateConnection",
    );
    let name = created.name.clone();
    resolve_until(
        &mut clients,
        &prod_token,
        "warehouse",
        "first password",
        |r| r.password == first_password,
    )
    .await;

    let second = ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    etag: created.etag.clone(),
                    password: second_password.clone(),
                    description: "rotated".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["password", "description"]),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection password and description",
    );
    let third = ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    etag: second.etag.clone(),
                    schema: "REPORTING".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["schema"]),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection schema",
    );
    resolve_until(
        &mut clients,
        &prod_token,
        "warehouse",
        "second password",
        |r| r.password == second_password && r.schema == "REPORTING",
    )
    .await;

    let versions = ok(
        clients
            .with_token(&operator)
            .list_connection_versions(ListConnectionVersionsRequest {
                parent: name.clone(),
                ..Default::default()
            })
            .await,
        "ListConnectionVersions",
    )
    .connection_versions;
    assert_free_of(
        &versions,
        &[&first_password, &second_password],
        "ListConnectionVersions",
    );
    assert_eq!(versions.len(), 3, "one version per change: {versions:?}");
    let numbers: Vec<i64> = versions.iter().map(|version| version.version).collect();
    assert!(
        numbers.windows(2).all(|pair| pair[0] > pair[1]),
        "newest first: {numbers:?}"
    );
    let actions: Vec<&str> = versions.iter().map(|v| v.action.as_str()).collect();
    assert_eq!(actions, ["update", "update", "create"]);
    for version in &versions {
        assert_eq!(version.actor, "user:olivia");
        assert!(version.create_time.is_some());
        assert!(
            version
                .name
                .ends_with(&format!("/versions/{}", version.version)),
            "{}",
            version.name
        );
        let snapshot = version.connection.as_ref().expect("the connection");
        assert!(snapshot.password.is_empty(), "versions mask secrets");
    }
    let fields = |index: usize| -> BTreeSet<&str> {
        versions[index]
            .changed_fields
            .iter()
            .map(String::as_str)
            .collect()
    };
    assert_eq!(fields(0), BTreeSet::from(["schema"]));
    assert_eq!(fields(1), BTreeSet::from(["description", "password"]));
    assert!(fields(2).contains("password"), "{:?}", fields(2));
    assert_eq!(
        versions[0].connection.as_ref().map(|c| c.schema.as_str()),
        Some("REPORTING")
    );
    assert_eq!(
        versions[2].connection.as_ref().map(|c| c.schema.as_str()),
        Some("PUBLIC")
    );

    // Roll back to the first version: the first password, schema and
    // description come back.
    let first_version = versions[2].version;
    let rolled_back = ok(
        clients
            .with_token(&operator)
            .rollback_connection(RollbackConnectionRequest {
                name: name.clone(),
                version: first_version,
                etag: third.etag.clone(),
                request_id: String::new(),
            })
            .await,
        "RollbackConnection to the first version",
    );
    assert!(rolled_back.password.is_empty());
    assert_eq!(rolled_back.schema, "PUBLIC");
    assert_eq!(rolled_back.description, created.description);
    assert_ne!(rolled_back.etag, third.etag);
    let resolved = resolve_until(
        &mut clients,
        &prod_token,
        "warehouse",
        "the rolled-back password",
        |r| r.password == first_password,
    )
    .await;
    assert_eq!(resolved.schema, "PUBLIC");

    let after = ok(
        clients
            .with_token(&operator)
            .list_connection_versions(ListConnectionVersionsRequest {
                parent: name.clone(),
                page_size: 2,
                ..Default::default()
            })
            .await,
        "ListConnectionVersions after the rollback",
    );
    assert_eq!(after.connection_versions.len(), 2, "page_size 2");
    assert!(!after.next_page_token.is_empty());
    let newest = &after.connection_versions[0];
    assert_eq!(newest.action, "rollback");
    let rollback_fields: BTreeSet<&str> =
        newest.changed_fields.iter().map(String::as_str).collect();
    assert!(
        rollback_fields.contains("password") && rollback_fields.contains("schema"),
        "the rollback names what it restored: {rollback_fields:?}"
    );
    let rest = ok(
        clients
            .with_token(&operator)
            .list_connection_versions(ListConnectionVersionsRequest {
                parent: name.clone(),
                page_size: 2,
                page_token: after.next_page_token,
            })
            .await,
        "ListConnectionVersions page 2",
    );
    assert_eq!(rest.connection_versions.len(), 2);
    assert!(rest.next_page_token.is_empty(), "four versions in all");

    // Rolling back to a version that doesn't exist is NOT_FOUND.
    expect_code(
        clients
            .with_token(&operator)
            .rollback_connection(RollbackConnectionRequest {
                name: name.clone(),
                version: 999,
                etag: String::new(),
                request_id: String::new(),
            })
            .await,
        Code::NotFound,
        "RollbackConnection to a missing version",
    );
    server.assert_logs_clean();
}

async fn audit_events_name_fields_never_values(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("audit");
    let alice = server.user_token("alice", &[(&workspace, WorkspaceRole::Operator)]);
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let author = server.user_token("arthur", &[(&workspace, WorkspaceRole::Author)]);
    let member = server.user_token("mia", &[(&workspace, WorkspaceRole::Member)]);
    let mut clients = server.client().await;
    let started = std::time::SystemTime::now() - std::time::Duration::from_secs(5);

    let deployment = create_deployment(&mut clients, &alice, &workspace, "prod").await;
    let password = server.marker("audit-password");
    let new_password = server.marker("audit-new-password");
    let link_password = server.marker("audit-link-password");
    let created = create_connection(
        &mut clients,
        &alice,
        &workspace,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    let name = created.name.clone();
    let update_request_id = format!("update-{}", random_hex(8));
    let updated = ok(
        clients
            .with_token(&alice)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    etag: created.etag.clone(),
                    password: new_password.clone(),
                    host: "example.snowflakecomputing.com".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["password", "host"]),
                request_id: update_request_id.clone(),
            })
            .await,
        "UpdateConnection",
    );
    let link = create_link(
        &mut clients,
        &alice,
        &workspace,
        "warehouse",
        "prod",
        LinkOverrides {
            password: Some(link_password.clone()),
            schema: Some("PROD".to_owned()),
            ..Default::default()
        },
    )
    .await;
    let link = ok(
        clients
            .with_token(&alice)
            .update_link(UpdateLinkRequest {
                link: Some(Link {
                    name: link.name.clone(),
                    etag: link.etag.clone(),
                    overrides: Some(LinkOverrides {
                        schema: Some("PROD_V2".to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["overrides.schema"]),
                request_id: String::new(),
            })
            .await,
        "UpdateLink",
    );
    ok(
        clients
            .with_token(&alice)
            .delete_link(DeleteLinkRequest {
                name: link.name.clone(),
                etag: link.etag.clone(),
                request_id: String::new(),
            })
            .await,
        "DeleteLink",
    );
    ok(
        clients
            .with_token(&alice)
            .update_deployment(UpdateDeploymentRequest {
                deployment: Some(Deployment {
                    name: deployment.name.clone(),
                    etag: deployment.etag.clone(),
                    display_name: "Production".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                request_id: String::new(),
            })
            .await,
        "UpdateDeployment",
    );
    ok(
        clients
            .with_token(&owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: policy_name(&workspace),
                    allow_secret_reveal: true,
                    ..Default::default()
                }),
                update_mask: mask(&["allow_secret_reveal"]),
                request_id: String::new(),
            })
            .await,
        "UpdateWorkspacePolicy",
    );
    let revealed = ok(
        clients
            .with_token(&alice)
            .get_connection(GetConnectionRequest {
                name: name.clone(),
                view: ConnectionView::WithSecrets as i32,
            })
            .await,
        "GetConnection WITH_SECRETS",
    );
    assert_eq!(revealed.password, new_password);
    ok(
        clients
            .with_token(&alice)
            .delete_connection(DeleteConnectionRequest {
                name: name.clone(),
                etag: updated.etag.clone(),
                request_id: String::new(),
            })
            .await,
        "DeleteConnection",
    );

    for (token, role) in [(&author, "AUTHOR"), (&member, "MEMBER")] {
        expect_code(
            server
                .client()
                .await
                .with_token(token)
                .list_audit_events(ListAuditEventsRequest {
                    parent: workspace_name(&workspace),
                    ..Default::default()
                })
                .await,
            Code::PermissionDenied,
            &format!("ListAuditEvents as {role}"),
        );
    }

    let events = audit_events(&server, &alice, &workspace, "", 100).await;
    assert_free_of(
        &events,
        &[&password, &new_password, &link_password],
        "ListAuditEvents",
    );
    // Paging with page_size 2 returns the same events in the same order.
    let paged = audit_events(&server, &owner, &workspace, "", 2).await;
    assert_eq!(paged, events, "pages of 2 cover the same events");
    let times: Vec<_> = events
        .iter()
        .map(|event| {
            let time = event.create_time.expect("create_time");
            (time.seconds, time.nanos)
        })
        .collect();
    assert!(
        times.windows(2).all(|pair| pair[0] >= pair[1]),
        "newest first"
    );

    let link_name = link.name.clone();
    let expected: Vec<(&str, String, &str, Vec<&str>)> = vec![
        (
            "CreateDeployment",
            deployment.name.clone(),
            "user:alice",
            vec![],
        ),
        (
            "CreateConnection",
            name.clone(),
            "user:alice",
            vec!["password"],
        ),
        (
            "UpdateConnection",
            name.clone(),
            "user:alice",
            vec!["host", "password"],
        ),
        ("CreateLink", link_name.clone(), "user:alice", vec![]),
        ("UpdateLink", link_name.clone(), "user:alice", vec![]),
        ("DeleteLink", link_name.clone(), "user:alice", vec![]),
        (
            "UpdateDeployment",
            deployment.name.clone(),
            "user:alice",
            vec!["display_name"],
        ),
        (
            "UpdateWorkspacePolicy",
            policy_name(&workspace),
            "user:otto",
            vec!["allow_secret_reveal"],
        ),
        (
            "RevealSecrets",
            name.clone(),
            "user:alice",
            vec!["password"],
        ),
        ("DeleteConnection", name.clone(), "user:alice", vec![]),
    ];
    for (action, resource, actor, fields) in &expected {
        let matching: Vec<&AuditEvent> = events
            .iter()
            .filter(|event| event.action == *action && event.resource == *resource)
            .collect();
        assert_eq!(
            matching.len(),
            1,
            "one {action} event on {resource}; all events: {events:#?}"
        );
        let event = matching[0];
        assert_eq!(event.actor, *actor, "{action} actor");
        assert!(
            event
                .name
                .starts_with(&format!("{}/auditEvents/", workspace_name(&workspace))),
            "{}",
            event.name
        );
        for field in fields {
            assert!(
                event.changed_fields.iter().any(|changed| changed == field),
                "{action} names changed field {field}: {:?}",
                event.changed_fields
            );
        }
    }
    let update_link = events
        .iter()
        .find(|event| event.action == "UpdateLink")
        .expect("UpdateLink event");
    assert!(
        update_link
            .changed_fields
            .iter()
            .any(|field| field.contains("schema")),
        "UpdateLink names the schema override: {:?}",
        update_link.changed_fields
    );
    let create_link_event = events
        .iter()
        .find(|event| event.action == "CreateLink")
        .expect("CreateLink event");
    assert!(
        create_link_event
            .changed_fields
            .iter()
            .any(|field| field.contains("password")),
        "CreateLink names the password override (never its value): {:?}",
        create_link_event.changed_fields
    );

    // Filters: resource, actor, action and time, joined by AND.
    let filter =
        format!(r#"resource = "{name}" AND actor = "user:alice" AND action = "UpdateConnection""#);
    let filtered = audit_events(&server, &alice, &workspace, &filter, 10).await;
    assert_eq!(filtered.len(), 1, "{filtered:?}");
    assert_eq!(filtered[0].request_id, update_request_id);
    let mut fields = filtered[0].changed_fields.clone();
    fields.sort();
    assert_eq!(fields, ["host", "password"]);

    let by_owner = audit_events(&server, &alice, &workspace, r#"actor = "user:otto""#, 10).await;
    assert_eq!(by_owner.len(), 1);
    assert_eq!(by_owner[0].action, "UpdateWorkspacePolicy");

    let on_connection = audit_events(
        &server,
        &alice,
        &workspace,
        &format!(r#"resource = "{name}""#),
        2,
    )
    .await;
    let actions: BTreeSet<&str> = on_connection.iter().map(|e| e.action.as_str()).collect();
    assert_eq!(
        actions,
        BTreeSet::from([
            "CreateConnection",
            "UpdateConnection",
            "RevealSecrets",
            "DeleteConnection"
        ])
    );

    let rfc3339 = |time: std::time::SystemTime| {
        let seconds = time
            .duration_since(std::time::UNIX_EPOCH)
            .expect("after 1970")
            .as_secs();
        let output = std::process::Command::new("date")
            .args(["-u", "-d", &format!("@{seconds}"), "+%Y-%m-%dT%H:%M:%SZ"])
            .output()
            .expect("run date");
        String::from_utf8(output.stdout)
            .expect("UTF-8")
            .trim()
            .to_owned()
    };
    let since_start = audit_events(
        &server,
        &alice,
        &workspace,
        &format!(r#"create_time >= "{}""#, rfc3339(started)),
        100,
    )
    .await;
    assert_eq!(since_start, events, "every event is after the test started");
    let future = std::time::SystemTime::now() + std::time::Duration::from_secs(3600);
    let since_future = audit_events(
        &server,
        &alice,
        &workspace,
        &format!(
            r#"create_time >= "{}" AND actor = "user:alice""#,
            rfc3339(future)
        ),
        100,
    )
    .await;
    assert!(since_future.is_empty(), "nothing happened in the future");
    let before_start = audit_events(
        &server,
        &alice,
        &workspace,
        &format!(r#"create_time < "{}""#, rfc3339(started)),
        100,
    )
    .await;
    assert!(before_start.is_empty(), "nothing happened before the test");

    expect_code(
        server
            .client()
            .await
            .with_token(&alice)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(&workspace),
                filter: r#"secret = "x""#.to_owned(),
                ..Default::default()
            })
            .await,
        Code::InvalidArgument,
        "ListAuditEvents with an unknown filter field",
    );
    let first_page = ok(
        server
            .client()
            .await
            .with_token(&alice)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                ..Default::default()
            })
            .await,
        "ListAuditEvents page 1",
    );
    expect_code(
        server
            .client()
            .await
            .with_token(&alice)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(&workspace),
                page_size: 2,
                page_token: first_page.next_page_token,
                filter: r#"actor = "user:alice""#.to_owned(),
            })
            .await,
        Code::InvalidArgument,
        "ListAuditEvents with another filter's page token",
    );

    if let Some(url) = backend.postgres_url() {
        assert_eq!(
            psql_count(
                url,
                &format!("select count(*) from audit_event where workspace = '{workspace}'")
            ),
            events.len() as i64,
            "ListAuditEvents shows every stored event"
        );
    }
    server.assert_logs_clean();
}

async fn policy_gates_secret_reveal(backend: Backend) {
    let server = backend.dev().await;
    let workspace = unique_workspace("policy");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let operator = server.user_token("olivia", &[(&workspace, WorkspaceRole::Operator)]);
    let author = server.user_token("arthur", &[(&workspace, WorkspaceRole::Author)]);
    let member = server.user_token("mia", &[(&workspace, WorkspaceRole::Member)]);
    let outsider = server.user_token("oscar", &[("elsewhere", WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    let password = server.marker("policy-password");
    let created = create_connection(
        &mut clients,
        &operator,
        &workspace,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    let name = created.name.clone();
    let reveal = {
        let (clients, name) = (clients.clone(), name.clone());
        move |token: &str| {
            let client = clients.with_token(token);
            let request = GetConnectionRequest {
                name: name.clone(),
                view: ConnectionView::WithSecrets as i32,
            };
            async move { client.get_connection(request).await }
        }
    };
    let set_reveal = {
        let (clients, workspace) = (clients.clone(), workspace.clone());
        move |allow: bool, token: &str| {
            let client = clients.with_token(token);
            let request = UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: policy_name(&workspace),
                    allow_secret_reveal: allow,
                    ..Default::default()
                }),
                update_mask: mask(&["allow_secret_reveal"]),
                request_id: String::new(),
            };
            async move { client.update_workspace_policy(request).await }
        }
    };

    let policy = ok(
        clients
            .with_token(&member)
            .get_workspace_policy(GetWorkspacePolicyRequest {
                name: policy_name(&workspace),
            })
            .await,
        "GetWorkspacePolicy as MEMBER",
    );
    assert_eq!(policy.name, policy_name(&workspace));
    assert!(!policy.allow_secret_reveal, "off by default");
    assert!(!policy.allow_local_export, "off by default");

    // Off: nobody sees secrets.
    for (token, role) in [
        (&owner, "OWNER"),
        (&operator, "OPERATOR"),
        (&author, "AUTHOR"),
        (&member, "MEMBER"),
        (&outsider, "a user of another workspace"),
    ] {
        let status = expect_one_of(
            reveal(token).await,
            &[Code::PermissionDenied, Code::NotFound],
            &format!("WITH_SECRETS as {role} while allow_secret_reveal is off"),
        );
        assert!(!status.message().contains(&password));
    }
    // Only an OWNER changes the policy.
    for (token, role) in [
        (&operator, "OPERATOR"),
        (&author, "AUTHOR"),
        (&member, "MEMBER"),
    ] {
        expect_code(
            set_reveal(true, token).await,
            Code::PermissionDenied,
            &format!("UpdateWorkspacePolicy as {role}"),
        );
    }
    let unchanged = ok(
        clients
            .with_token(&owner)
            .get_workspace_policy(GetWorkspacePolicyRequest {
                name: policy_name(&workspace),
            })
            .await,
        "GetWorkspacePolicy",
    );
    assert!(!unchanged.allow_secret_reveal);
    assert_eq!(
        unchanged.etag, policy.etag,
        "refused updates changed nothing"
    );

    let on = ok(
        set_reveal(true, &owner).await,
        "UpdateWorkspacePolicy as OWNER",
    );
    assert!(on.allow_secret_reveal);
    assert!(!on.allow_local_export, "the mask touched one field only");

    // On: OPERATOR and OWNER see the password; AUTHOR and MEMBER still don't.
    for (token, role) in [(&owner, "OWNER"), (&operator, "OPERATOR")] {
        let revealed = ok(
            reveal(token).await,
            &format!("WITH_SECRETS as {role} with allow_secret_reveal on"),
        );
        assert_eq!(revealed.password, password, "{role} sees the password");
        let basic = get_connection(&mut clients, token, &name).await;
        assert!(basic.password.is_empty(), "BASIC still masks");
    }
    for (token, role) in [
        (&author, "AUTHOR"),
        (&member, "MEMBER"),
        (&outsider, "a user of another workspace"),
    ] {
        expect_one_of(
            reveal(token).await,
            &[Code::PermissionDenied, Code::NotFound],
            &format!("WITH_SECRETS as {role} with allow_secret_reveal on"),
        );
    }

    // Off again: refused again.
    ok(set_reveal(false, &owner).await, "UpdateWorkspacePolicy off");
    expect_code(
        reveal(&operator).await,
        Code::PermissionDenied,
        "WITH_SECRETS as OPERATOR after the policy was turned off",
    );

    // Every reveal, and only the reveals that happened, is audited.
    let events = audit_events(&server, &owner, &workspace, "", 100).await;
    assert_free_of(&events, &[&password], "ListAuditEvents");
    let reveals: BTreeSet<&str> = events
        .iter()
        .filter(|event| event.action == "RevealSecrets")
        .map(|event| {
            assert_eq!(event.resource, name);
            assert_eq!(
                event.changed_fields,
                ["password"],
                "a reveal names what it read"
            );
            event.actor.as_str()
        })
        .collect();
    assert_eq!(reveals, BTreeSet::from(["user:olivia", "user:otto"]));
    assert_eq!(
        events
            .iter()
            .filter(|event| event.action == "RevealSecrets")
            .count(),
        2,
        "refused reveals are not recorded as reveals"
    );
    let policy_changes: Vec<&AuditEvent> = events
        .iter()
        .filter(|event| event.action == "UpdateWorkspacePolicy")
        .collect();
    assert_eq!(policy_changes.len(), 2, "on and off");
    for event in policy_changes {
        assert_eq!(event.actor, "user:otto");
        assert_eq!(event.changed_fields, ["allow_secret_reveal"]);
    }
    server.assert_logs_clean();
}
