//! Read your writes: a resolve sent after control acknowledged a write sees
//! that write, at once, with no retry. In `switchboard dev` and with control
//! and the resolver as separate processes on one database (a shared SQLite
//! file; PostgreSQL + OpenBao). Each scenario first warms the resolver's
//! cache, so a resolver that answers from a cached view the feed has not yet
//! invalidated fails it. Also: a user resolving in a loop (`local env
//! --watch`, the shim) is audited once per deployment and minute.

use std::time::{SystemTime, UNIX_EPOCH};

use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, CreateLinkRequest, DeleteLinkRequest, Link,
    ListAuditEventsRequest, ListResolvedConnectionsRequest, ResolveConnectionRequest,
    ResolvedConnection, UpdateConnectionRequest, UpdateWorkspacePolicyRequest, WorkspacePolicy,
};
use switchboard_tests::{Role, TestServer, TestServerConfig, WorkspaceRole};
use tonic::{Code, Status};

use crate::backends::{Backend, unique_workspace};
use crate::support::{
    Client, connection_name, create_deployment, create_deployment_token, deployment_name,
    expect_code, ok, snowflake_connection, workspace_name,
};

/// Rounds of writes, each resolved at once.
const ITERATIONS: usize = 50;
/// Control's and the resolver's per-caller limit, above what a round sends.
const RATE_LIMIT: &str = "1000";

/// The shared PostgreSQL + OpenBao (see [`Backend::postgres_openbao`]).
fn postgres_openbao() -> Option<Backend> {
    Backend::postgres_openbao()
}

fn with_rate_limit(config: TestServerConfig) -> TestServerConfig {
    config.with_arg("--rate-limit", RATE_LIMIT)
}

/// The writer (control or dev) and the reader (resolver or the same dev).
struct Pair<'a> {
    writer: &'a TestServer,
    reader: &'a TestServer,
}

impl Pair<'_> {
    fn marker(&self, label: &str) -> String {
        let marker = self.writer.marker(label);
        self.reader.forbid_in_logs(&marker);
        marker
    }
}

async fn resolve(
    clients: &mut Client,
    token: &str,
    conn_id: &str,
) -> Result<ResolvedConnection, Status> {
    clients
        .with_token(token)
        .resolve_connection(ResolveConnectionRequest {
            deployment: String::new(),
            conn_id: conn_id.to_owned(),
        })
        .await
}

/// Resolves `conn_id` once, right after a write; fails unless it is served
/// with `schema`.
async fn resolve_now(
    clients: &mut Client,
    token: &str,
    conn_id: &str,
    schema: &str,
    after: &str,
) -> ResolvedConnection {
    let resolved = ok(
        resolve(clients, token, conn_id).await,
        &format!("ResolveConnection {conn_id} right after {after}"),
    );
    assert_eq!(resolved.conn_id, conn_id);
    assert_eq!(
        resolved.schema, schema,
        "{conn_id} right after {after}: the resolver served an older version"
    );
    resolved
}

fn create_request(
    workspace: &str,
    conn_id: &str,
    connection: Connection,
    link_to: Option<&str>,
) -> CreateConnectionRequest {
    CreateConnectionRequest {
        parent: workspace_name(workspace),
        connection_id: conn_id.to_owned(),
        connection: Some(connection),
        request_id: String::new(),
        links: link_to
            .map(|deployment| Link {
                deployment: deployment_name(workspace, deployment),
                ..Default::default()
            })
            .into_iter()
            .collect(),
    }
}

/// Runs [`ITERATIONS`] rounds of writes through `pair.writer`, resolving each
/// at once at `pair.reader` with a deployment token: create with a link,
/// update, link after create, unlink, link to all, and the whole list.
async fn every_write_is_resolved_at_once(pair: Pair<'_>) {
    let workspace = unique_workspace("ryw");
    let operator = pair
        .writer
        .user_token("olga", &[(&workspace, WorkspaceRole::Operator)]);
    let mut writer = pair.writer.client().await;
    let mut reader = pair.reader.client().await;
    create_deployment(&mut writer, &operator, &workspace, "prod").await;
    create_deployment(&mut writer, &operator, &workspace, "staging").await;
    let token =
        create_deployment_token(pair.writer, &mut writer, &operator, &workspace, "prod").await;
    pair.reader.forbid_in_logs(&token);

    // A first connection, waited for: from here on the resolver holds a
    // cached view of prod that each write below makes stale.
    let password = pair.marker("ryw-password");
    ok(
        writer
            .with_token(&operator)
            .create_connection(create_request(
                &workspace,
                "warm",
                snowflake_connection(&password),
                Some("prod"),
            ))
            .await,
        "CreateConnection warm",
    );
    resolve_now(&mut reader, &token, "warm", "PUBLIC", "CreateConnection").await;

    for round in 0..ITERATIONS {
        // Created with a link, as from a Deployment's page.
        let created_id = format!("created-{round}");
        let created = ok(
            writer
                .with_token(&operator)
                .create_connection(create_request(
                    &workspace,
                    &created_id,
                    snowflake_connection(&password),
                    Some("prod"),
                ))
                .await,
            "CreateConnection with a link",
        );
        let resolved = resolve_now(
            &mut reader,
            &token,
            &created_id,
            "PUBLIC",
            "CreateConnection with a link",
        )
        .await;
        assert_eq!(resolved.password, password, "delivered intact");

        // Updated: the new schema, not the cached one.
        let schema = format!("SCHEMA_{round}");
        ok(
            writer
                .with_token(&operator)
                .update_connection(UpdateConnectionRequest {
                    connection: Some(Connection {
                        name: created.name.clone(),
                        etag: created.etag.clone(),
                        schema: schema.clone(),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["schema".to_owned()],
                    }),
                    request_id: String::new(),
                })
                .await,
            "UpdateConnection schema",
        );
        resolve_now(
            &mut reader,
            &token,
            &created_id,
            &schema,
            "UpdateConnection",
        )
        .await;

        // Linked after it was created, then unlinked.
        let later_id = format!("later-{round}");
        ok(
            writer
                .with_token(&operator)
                .create_connection(create_request(
                    &workspace,
                    &later_id,
                    snowflake_connection(&password),
                    None,
                ))
                .await,
            "CreateConnection without a link",
        );
        expect_code(
            resolve(&mut reader, &token, &later_id).await,
            Code::NotFound,
            "an unlinked connection",
        );
        let link = ok(
            writer
                .with_token(&operator)
                .create_link(CreateLinkRequest {
                    parent: connection_name(&workspace, &later_id),
                    link: Some(Link {
                        deployment: deployment_name(&workspace, "prod"),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await,
            "CreateLink",
        );
        resolve_now(&mut reader, &token, &later_id, "PUBLIC", "CreateLink").await;
        ok(
            writer
                .with_token(&operator)
                .delete_link(DeleteLinkRequest {
                    name: link.name,
                    etag: link.etag,
                    request_id: String::new(),
                })
                .await,
            "DeleteLink",
        );
        expect_code(
            resolve(&mut reader, &token, &later_id).await,
            Code::NotFound,
            "right after DeleteLink",
        );

        // Linked to all deployments.
        let everywhere_id = format!("everywhere-{round}");
        ok(
            writer
                .with_token(&operator)
                .create_connection(create_request(
                    &workspace,
                    &everywhere_id,
                    Connection {
                        link_to_all_deployments: true,
                        ..snowflake_connection(&password)
                    },
                    None,
                ))
                .await,
            "CreateConnection linked to all",
        );
        resolve_now(
            &mut reader,
            &token,
            &everywhere_id,
            "PUBLIC",
            "CreateConnection linked to all",
        )
        .await;

        // The whole list reflects every write of the round too.
        let listed = ok(
            reader
                .with_token(&token)
                .list_resolved_connections(ListResolvedConnectionsRequest {
                    deployment: String::new(),
                })
                .await,
            "ListResolvedConnections",
        );
        let schema_of = |conn_id: &str| {
            listed
                .connections
                .iter()
                .find(|connection| connection.conn_id == conn_id)
                .map(|connection| connection.schema.as_str())
        };
        assert_eq!(
            schema_of(&created_id),
            Some(schema.as_str()),
            "round {round}"
        );
        assert_eq!(schema_of(&everywhere_id), Some("PUBLIC"), "round {round}");
        assert_eq!(schema_of(&later_id), None, "round {round}: unlinked");
        assert_eq!(
            listed.connections.len(),
            2 * (round + 1) + 1,
            "round {round}: warm plus two per round"
        );
    }
    pair.writer.assert_logs_clean();
    pair.reader.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_resolves_each_write_at_once() {
    let dev = with_rate_limit(TestServer::configure()).spawn().await;
    every_write_is_resolved_at_once(Pair {
        writer: &dev,
        reader: &dev,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_resolver_on_one_sqlite_file_resolves_each_write_at_once() {
    let control = with_rate_limit(TestServer::configure().with_role(Role::Control))
        .spawn()
        .await;
    let resolver = with_rate_limit(
        TestServer::configure()
            .with_role(Role::Resolver)
            .with_data_dir_of(&control),
    )
    .spawn()
    .await;
    every_write_is_resolved_at_once(Pair {
        writer: &control,
        reader: &resolver,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_separate_resolver_on_postgres_and_openbao_resolves_each_write_at_once() {
    let Some(backend) = postgres_openbao() else {
        return;
    };
    let control = with_rate_limit(backend.apply(TestServer::configure().with_role(Role::Control)))
        .spawn()
        .await;
    let resolver = with_rate_limit(
        backend.apply(
            TestServer::configure()
                .with_role(Role::Resolver)
                .with_data_dir_of(&control),
        ),
    )
    .spawn()
    .await;
    every_write_is_resolved_at_once(Pair {
        writer: &control,
        reader: &resolver,
    })
    .await;
}

/// Minutes since the Unix epoch, as the server's clock counts them.
fn wall_minute() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after the epoch")
        .as_secs()
        / 60
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_user_resolving_in_a_loop_is_audited_once_per_deployment_and_minute() {
    const RESOLVES: usize = 40;
    let dev = with_rate_limit(TestServer::configure()).spawn().await;
    let workspace = unique_workspace("ryw-audit");
    let owner = dev.user_token("owen", &[(&workspace, WorkspaceRole::Owner)]);
    let ursula = dev.user_token("ursula", &[(&workspace, WorkspaceRole::Operator)]);
    let ulrich = dev.user_token("ulrich", &[(&workspace, WorkspaceRole::Author)]);
    let mut clients = dev.client().await;
    for deployment in ["prod", "staging"] {
        create_deployment(&mut clients, &owner, &workspace, deployment).await;
    }
    let password = dev.marker("ryw-audit-password");
    ok(
        clients
            .with_token(&owner)
            .create_connection(create_request(
                &workspace,
                "warehouse",
                snowflake_connection(&password),
                Some("prod"),
            ))
            .await,
        "CreateConnection",
    );
    ok(
        clients
            .with_token(&owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: format!("{}/policy", workspace_name(&workspace)),
                    allow_local_export: true,
                    ..Default::default()
                }),
                update_mask: None,
                request_id: String::new(),
            })
            .await,
        "UpdateWorkspacePolicy allow_local_export",
    );

    let first_minute = wall_minute();
    for round in 0..RESOLVES {
        for user in [&ursula, &ulrich] {
            let resolved = ok(
                clients
                    .with_token(user)
                    .resolve_connection(ResolveConnectionRequest {
                        deployment: deployment_name(&workspace, "prod"),
                        conn_id: "warehouse".to_owned(),
                    })
                    .await,
                "a user's ResolveConnection",
            );
            assert_eq!(resolved.password, password, "round {round}");
            ok(
                clients
                    .with_token(user)
                    .list_resolved_connections(ListResolvedConnectionsRequest {
                        deployment: deployment_name(&workspace, "staging"),
                    })
                    .await,
                "a user's ListResolvedConnections",
            );
        }
    }
    let minutes = usize::try_from(wall_minute() - first_minute + 1).expect("a few minutes");

    let audit = dev.client().await;
    let events = ok(
        audit
            .with_token(&owner)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name(&workspace),
                page_size: 1000,
                page_token: String::new(),
                filter: String::new(),
            })
            .await,
        "ListAuditEvents",
    )
    .audit_events;
    for user in ["ursula", "ulrich"] {
        for deployment in ["prod", "staging"] {
            let resource = deployment_name(&workspace, deployment);
            let audited = events
                .iter()
                .filter(|event| {
                    event.action == "ResolveConnections"
                        && event.actor == format!("user:{user}")
                        && event.resource == resource
                })
                .count();
            assert!(
                (1..=minutes).contains(&audited),
                "{RESOLVES} resolves of {resource} by {user} within {minutes} minute(s) of the \
                 clock: one audit event per minute, got {audited}"
            );
        }
    }
    dev.assert_logs_clean();
}
