//! The resolver as deployed: one `switchboard control` and two `switchboard
//! resolver` processes on one PostgreSQL database, with no traffic between
//! them. Every change made through control must reach both resolvers through
//! the change feed; the resolvers keep serving what they hold while
//! PostgreSQL is down and recover on their own.
//!
//! Skipped unless `SWITCHBOARD_TEST_DATABASE_URL` names a PostgreSQL server
//! (`scripts/postgres.sh start` prints one). Each test works in its own
//! workspace; the outage test runs its own PostgreSQL on another port, so the
//! shared one keeps running.

use std::time::{Duration, Instant};

use prost_types::FieldMask;
use switchboard_proto::v1::{
    Connection, CreateDeploymentRequest, CreateDeploymentTokenRequest, DeleteDeploymentRequest,
    DeleteLinkRequest, Deployment, DeploymentKind, GetDeploymentRequest, LinkOverrides,
    ListLinksRequest, ListResolvedConnectionsRequest, ResolveConnectionRequest, ResolvedConnection,
    RevokeDeploymentTokenRequest, UpdateConnectionRequest, UpdateLinkRequest,
};
use switchboard_tests::{Role, TestServer, WorkspaceRole, random_hex};
use tonic::{Code, Status};
use tonic_health::pb::health_check_response::ServingStatus;

use crate::support::{
    Client, OwnPostgres, connection_name, create_connection, create_deployment, create_link,
    deployment_name, expect_code, extra_string, ok, schema_and_warehouse, snowflake_connection,
    string_struct,
};

/// The design promises 1 s; the tests allow 3 s for a loaded CI machine.
const PROPAGATION_BOUND: Duration = Duration::from_secs(3);
/// Upper bound of any wait that has no promised duration; a guard against hangs.
const GUARD: Duration = Duration::from_secs(60);
const CONN_ID: &str = "warehouse";

fn database_url() -> Option<String> {
    switchboard_tests::database_url()
}

/// A fresh workspace id, so tests sharing the database never meet.
fn fresh_workspace(prefix: &str) -> String {
    format!("{prefix}-{}", random_hex(6))
}

/// Control and two resolvers on `url`; the resolvers share control's data dir.
struct Cluster {
    control: TestServer,
    resolvers: Vec<TestServer>,
}

impl Cluster {
    async fn start(url: &str) -> Self {
        let control = TestServer::configure()
            .with_role(Role::Control)
            .with_arg("--database-url", url)
            .with_arg("--rate-limit", "1000")
            .spawn()
            .await;
        let mut resolvers = Vec::new();
        for _ in 0..2 {
            resolvers.push(resolver_of(&control, url).with_metrics().spawn().await);
        }
        Cluster { control, resolvers }
    }

    fn forbid_everywhere(&self, secret: &str) {
        self.control.forbid_in_logs(secret);
        for resolver in &self.resolvers {
            resolver.forbid_in_logs(secret);
        }
    }

    fn assert_logs_clean(&self) {
        self.control.assert_logs_clean();
        for resolver in &self.resolvers {
            resolver.assert_logs_clean();
        }
    }
}

fn resolver_of(control: &TestServer, url: &str) -> switchboard_tests::TestServerConfig {
    TestServer::configure()
        .with_role(Role::Resolver)
        .with_data_dir_of(control)
        .with_arg("--database-url", url)
}

/// Issues a token for `deployment`; `(token, token resource name)`.
async fn issue_token(
    cluster: &Cluster,
    clients: &mut Client,
    operator: &str,
    workspace: &str,
    deployment: &str,
) -> (String, String) {
    let issued = ok(
        clients
            .with_token(operator)
            .create_deployment_token(CreateDeploymentTokenRequest {
                parent: deployment_name(workspace, deployment),
                description: format!("shim of {deployment}"),
                request_id: String::new(),
            })
            .await,
        "CreateDeploymentToken",
    );
    cluster.forbid_everywhere(&issued.token);
    (issued.token, issued.name)
}

async fn create_child(
    clients: &mut Client,
    operator: &str,
    workspace: &str,
    deployment: &str,
    kind: DeploymentKind,
    parent: &str,
) {
    ok(
        clients
            .with_token(operator)
            .create_deployment(CreateDeploymentRequest {
                parent: format!("workspaces/{workspace}"),
                deployment_id: deployment.to_owned(),
                deployment: Some(Deployment {
                    display_name: format!("{deployment} of {parent}"),
                    kind: kind as i32,
                    parent_deployment: deployment_name(workspace, parent),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
        "CreateDeployment (child)",
    );
}

type Resolved = Result<ResolvedConnection, Status>;

async fn resolve(resolver: &TestServer, token: &str, conn_id: &str) -> Resolved {
    let client = resolver.client().await;
    client
        .with_token(token)
        .resolve_connection(ResolveConnectionRequest {
            deployment: String::new(),
            conn_id: conn_id.to_owned(),
        })
        .await
}

/// Polls `resolver` until `done` holds for ResolveConnection of `conn_id`
/// with `token`; how long after `since` it first held.
async fn until_resolved(
    resolver: &TestServer,
    token: &str,
    conn_id: &str,
    since: Instant,
    done: impl Fn(&Resolved) -> bool,
) -> Duration {
    let client = resolver.client().await;
    loop {
        let result = client
            .with_token(token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: conn_id.to_owned(),
            })
            .await;
        if done(&result) {
            return since.elapsed();
        }
        assert!(
            since.elapsed() < GUARD,
            "resolver {} never showed the change; last answer: {result:?}",
            resolver.address()
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// [`until_resolved`] on both resolvers at once; each one's lag.
async fn until_both(
    cluster: &Cluster,
    token: &str,
    conn_id: &str,
    since: Instant,
    done: impl Fn(&Resolved) -> bool + Copy,
) -> [Duration; 2] {
    let (first, second) = tokio::join!(
        until_resolved(&cluster.resolvers[0], token, conn_id, since, done),
        until_resolved(&cluster.resolvers[1], token, conn_id, since, done),
    );
    [first, second]
}

fn code_is(result: &Resolved, code: Code) -> bool {
    matches!(result, Err(status) if status.code() == code)
}

fn schema_is(result: &Resolved, schema: &str) -> bool {
    matches!(result, Ok(resolved) if resolved.schema == schema)
}

fn warehouse_is(result: &Resolved, warehouse: &str) -> bool {
    matches!(result, Ok(resolved) if extra_string(&resolved.extra, "warehouse") == Some(warehouse))
}

fn assert_within_bound(what: &str, lags: [Duration; 2]) {
    eprintln!(
        "propagation of {what}: resolver 1 {:.1} ms, resolver 2 {:.1} ms",
        lags[0].as_secs_f64() * 1e3,
        lags[1].as_secs_f64() * 1e3
    );
    for lag in lags {
        assert!(
            lag < PROPAGATION_BOUND,
            "{what} took {lag:?} to reach a resolver (bound {PROPAGATION_BOUND:?})"
        );
    }
}

/// One deployment `prod` with a token, and a Snowflake connection linked to
/// it (schema PROD, warehouse PROD_WH).
struct Seeded {
    workspace: String,
    operator: String,
    clients: Client,
    prod_token: String,
    prod_token_name: String,
}

async fn seed_prod(cluster: &Cluster, prefix: &str) -> Seeded {
    let workspace = fresh_workspace(prefix);
    let mut clients = cluster.control.client().await;
    let operator = cluster
        .control
        .user_token("olivia", &[(&workspace, WorkspaceRole::Operator)]);
    create_deployment(&mut clients, &operator, &workspace, "prod").await;
    let password = cluster.control.marker("password");
    cluster.forbid_everywhere(&password);
    create_connection(
        &mut clients,
        &operator,
        &workspace,
        CONN_ID,
        snowflake_connection(&password),
    )
    .await;
    create_link(
        &mut clients,
        &operator,
        &workspace,
        CONN_ID,
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let (prod_token, prod_token_name) =
        issue_token(cluster, &mut clients, &operator, &workspace, "prod").await;
    Seeded {
        workspace,
        operator,
        clients,
        prod_token,
        prod_token_name,
    }
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

async fn update_warehouse_override(seeded: &mut Seeded, deployment: &str, warehouse: &str) {
    ok(
        seeded
            .clients
            .with_token(&seeded.operator)
            .update_link(UpdateLinkRequest {
                link: Some(switchboard_proto::v1::Link {
                    name: format!(
                        "{}/links/{deployment}",
                        connection_name(&seeded.workspace, CONN_ID)
                    ),
                    overrides: Some(LinkOverrides {
                        extra: Some(string_struct(&[("warehouse", warehouse)])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["overrides.extra.warehouse"]),
                request_id: String::new(),
            })
            .await,
        "UpdateLink",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_kind_of_change_reaches_both_resolvers_within_the_bound() {
    let Some(url) = database_url() else { return };
    let cluster = Cluster::start(&url).await;
    let mut seeded = seed_prod(&cluster, "feed").await;
    let token = seeded.prod_token.clone();

    // Both resolvers hold the deployment's view before anything changes.
    let warm = until_both(&cluster, &token, CONN_ID, Instant::now(), |result| {
        schema_is(result, "PROD")
    })
    .await;
    eprintln!("first resolve: {warm:?}");
    let list = cluster.resolvers[0].client().await;
    let before = ok(
        list.with_token(&token)
            .list_resolved_connections(ListResolvedConnectionsRequest::default())
            .await,
        "ListResolvedConnections",
    );

    for round in 0..3 {
        // A connection field.
        let login = format!("svc_round_{round}");
        ok(
            seeded
                .clients
                .with_token(&seeded.operator)
                .update_connection(UpdateConnectionRequest {
                    connection: Some(Connection {
                        name: connection_name(&seeded.workspace, CONN_ID),
                        login: login.clone(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["login"]),
                    request_id: String::new(),
                })
                .await,
            "UpdateConnection",
        );
        let written = Instant::now();
        let lags = until_both(
            &cluster,
            &token,
            CONN_ID,
            written,
            |result| matches!(result, Ok(resolved) if resolved.login == login),
        )
        .await;
        assert_within_bound(&format!("UpdateConnection (round {round})"), lags);

        // A link override.
        let warehouse = format!("WH_{round}");
        update_warehouse_override(&mut seeded, "prod", &warehouse).await;
        let written = Instant::now();
        let lags = until_both(&cluster, &token, CONN_ID, written, |result| {
            warehouse_is(result, &warehouse)
        })
        .await;
        assert_within_bound(&format!("UpdateLink (round {round})"), lags);
    }

    // The list says which revision it reflects, and that moved on.
    let after = ok(
        list.with_token(&token)
            .list_resolved_connections(ListResolvedConnectionsRequest::default())
            .await,
        "ListResolvedConnections",
    );
    assert!(
        after.revision > before.revision,
        "revision {} after six changes, {} before",
        after.revision,
        before.revision
    );
    assert!(
        after
            .connections
            .iter()
            .all(|connection| connection.revision == after.revision)
    );

    // Unlinking.
    ok(
        seeded
            .clients
            .with_token(&seeded.operator)
            .delete_link(DeleteLinkRequest {
                name: format!("{}/links/prod", connection_name(&seeded.workspace, CONN_ID)),
                ..Default::default()
            })
            .await,
        "DeleteLink",
    );
    let written = Instant::now();
    let lags = until_both(&cluster, &token, CONN_ID, written, |result| {
        code_is(result, Code::NotFound)
    })
    .await;
    assert_within_bound("DeleteLink", lags);
    cluster.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_token_is_refused_by_both_resolvers_within_the_bound() {
    let Some(url) = database_url() else { return };
    let cluster = Cluster::start(&url).await;
    let mut seeded = seed_prod(&cluster, "revoke").await;
    let (other_token, _) = issue_token(
        &cluster,
        &mut seeded.clients,
        &seeded.operator,
        &seeded.workspace,
        "prod",
    )
    .await;
    for token in [&seeded.prod_token, &other_token] {
        until_both(&cluster, token, CONN_ID, Instant::now(), |result| {
            schema_is(result, "PROD")
        })
        .await;
    }

    ok(
        seeded
            .clients
            .with_token(&seeded.operator)
            .revoke_deployment_token(RevokeDeploymentTokenRequest {
                name: seeded.prod_token_name.clone(),
            })
            .await,
        "RevokeDeploymentToken",
    );
    let revoked = Instant::now();
    let lags = until_both(&cluster, &seeded.prod_token, CONN_ID, revoked, |result| {
        code_is(result, Code::Unauthenticated)
    })
    .await;
    assert_within_bound("RevokeDeploymentToken", lags);

    // Only that token: the deployment's other token still works everywhere.
    for resolver in &cluster.resolvers {
        let result = resolve(resolver, &other_token, CONN_ID).await;
        assert!(schema_is(&result, "PROD"), "other token: {result:?}");
    }
    cluster.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn link_to_all_reaches_every_deployment_but_the_excluded_ones() {
    let Some(url) = database_url() else { return };
    let cluster = Cluster::start(&url).await;
    let workspace = fresh_workspace("all");
    let mut clients = cluster.control.client().await;
    let operator = cluster
        .control
        .user_token("olivia", &[(&workspace, WorkspaceRole::Operator)]);
    for deployment in ["alpha", "beta", "gamma"] {
        create_deployment(&mut clients, &operator, &workspace, deployment).await;
    }
    let password = cluster.control.marker("password");
    cluster.forbid_everywhere(&password);
    let mut shared = snowflake_connection(&password);
    shared.link_to_all_deployments = true;
    shared.excluded_deployments = vec![deployment_name(&workspace, "gamma")];
    create_connection(&mut clients, &operator, &workspace, CONN_ID, shared).await;
    // A link on a linked-to-all connection adds that deployment's overrides.
    create_link(
        &mut clients,
        &operator,
        &workspace,
        CONN_ID,
        "beta",
        schema_and_warehouse("BETA", "BETA_WH"),
    )
    .await;
    let mut tokens = std::collections::BTreeMap::new();
    for deployment in ["alpha", "beta", "gamma"] {
        let (token, _) =
            issue_token(&cluster, &mut clients, &operator, &workspace, deployment).await;
        tokens.insert(deployment, token);
    }

    let now = Instant::now();
    until_both(&cluster, &tokens["alpha"], CONN_ID, now, |result| {
        schema_is(result, "PUBLIC") && warehouse_is(result, "BASE_WH")
    })
    .await;
    until_both(&cluster, &tokens["beta"], CONN_ID, now, |result| {
        schema_is(result, "BETA") && warehouse_is(result, "BETA_WH")
    })
    .await;
    for resolver in &cluster.resolvers {
        let result = resolve(resolver, &tokens["gamma"], CONN_ID).await;
        assert!(
            code_is(&result, Code::NotFound),
            "an excluded deployment does not see the connection: {result:?}"
        );
    }

    // A deployment created later sees it too.
    create_deployment(&mut clients, &operator, &workspace, "delta").await;
    let (delta_token, _) =
        issue_token(&cluster, &mut clients, &operator, &workspace, "delta").await;
    until_both(&cluster, &delta_token, CONN_ID, Instant::now(), |result| {
        schema_is(result, "PUBLIC")
    })
    .await;

    // Moving the exclusion from gamma to alpha propagates both ways.
    ok(
        clients
            .with_token(&operator)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: connection_name(&workspace, CONN_ID),
                    excluded_deployments: vec![deployment_name(&workspace, "alpha")],
                    ..Default::default()
                }),
                update_mask: mask(&["excluded_deployments"]),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection excluded_deployments",
    );
    let written = Instant::now();
    let lags = until_both(&cluster, &tokens["alpha"], CONN_ID, written, |result| {
        code_is(result, Code::NotFound)
    })
    .await;
    assert_within_bound("a new exclusion", lags);
    let lags = until_both(&cluster, &tokens["gamma"], CONN_ID, written, |result| {
        schema_is(result, "PUBLIC")
    })
    .await;
    assert_within_bound("a lifted exclusion", lags);
    cluster.assert_logs_clean();
}

/// The conn_ids a deployment's ListResolvedConnections returns on `resolver`.
async fn listed_conn_ids(resolver: &TestServer, token: &str) -> Vec<String> {
    let client = resolver.client().await;
    let listed = ok(
        client
            .with_token(token)
            .list_resolved_connections(ListResolvedConnectionsRequest::default())
            .await,
        "ListResolvedConnections",
    );
    listed
        .connections
        .into_iter()
        .map(|connection| connection.conn_id)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn previews_and_branches_see_what_their_parent_sees_with_their_own_overrides_on_top() {
    let Some(url) = database_url() else { return };
    let cluster = Cluster::start(&url).await;
    let mut seeded = seed_prod(&cluster, "preview").await;
    let (workspace, operator) = (seeded.workspace.clone(), seeded.operator.clone());
    let clients = &mut seeded.clients;
    create_deployment(clients, &operator, &workspace, "staging").await;
    let password = cluster.control.marker("password");
    cluster.forbid_everywhere(&password);
    // Linked to all but prod: prod's children are excluded with it.
    let mut all_but_prod = snowflake_connection(&password);
    all_but_prod.link_to_all_deployments = true;
    all_but_prod.excluded_deployments = vec![deployment_name(&workspace, "prod")];
    create_connection(clients, &operator, &workspace, "all_but_prod", all_but_prod).await;
    // Linked to all.
    let mut everywhere = snowflake_connection(&password);
    everywhere.link_to_all_deployments = true;
    create_connection(clients, &operator, &workspace, "everywhere", everywhere).await;
    // Linked to staging only.
    create_connection(
        clients,
        &operator,
        &workspace,
        "staging_only",
        snowflake_connection(&password),
    )
    .await;
    create_link(
        clients,
        &operator,
        &workspace,
        "staging_only",
        "staging",
        LinkOverrides::default(),
    )
    .await;

    create_child(
        clients,
        &operator,
        &workspace,
        "pr-7",
        DeploymentKind::Preview,
        "prod",
    )
    .await;
    create_child(
        clients,
        &operator,
        &workspace,
        "feature-x",
        DeploymentKind::Branch,
        "prod",
    )
    .await;
    // The preview's own link overrides the warehouse only.
    create_link(
        clients,
        &operator,
        &workspace,
        CONN_ID,
        "pr-7",
        LinkOverrides {
            extra: Some(string_struct(&[("warehouse", "PR_WH")])),
            ..Default::default()
        },
    )
    .await;
    let (preview_token, _) = issue_token(&cluster, clients, &operator, &workspace, "pr-7").await;
    let (branch_token, _) =
        issue_token(&cluster, clients, &operator, &workspace, "feature-x").await;

    for resolver in &cluster.resolvers {
        let parent = listed_conn_ids(resolver, &seeded.prod_token).await;
        assert_eq!(parent, vec!["everywhere".to_owned(), CONN_ID.to_owned()]);
        for token in [&preview_token, &branch_token] {
            assert_eq!(
                listed_conn_ids(resolver, token).await,
                parent,
                "a child sees exactly what its parent sees, exclusions included"
            );
            let result = resolve(resolver, token, "all_but_prod").await;
            assert!(code_is(&result, Code::NotFound), "{result:?}");
        }
        // Parent's override (schema) under the preview's own (warehouse).
        let result = resolve(resolver, &preview_token, CONN_ID).await;
        assert!(
            schema_is(&result, "PROD") && warehouse_is(&result, "PR_WH"),
            "{result:?}"
        );
        let result = resolve(resolver, &branch_token, CONN_ID).await;
        assert!(
            schema_is(&result, "PROD") && warehouse_is(&result, "PROD_WH"),
            "{result:?}"
        );
    }

    // A change to the parent's link reaches its children; the preview's own
    // override still wins.
    update_warehouse_override(&mut seeded, "prod", "PROD_WH_2").await;
    let written = Instant::now();
    let lags = until_both(&cluster, &branch_token, CONN_ID, written, |result| {
        warehouse_is(result, "PROD_WH_2")
    })
    .await;
    assert_within_bound("the parent's link override, to a branch", lags);
    for resolver in &cluster.resolvers {
        let result = resolve(resolver, &preview_token, CONN_ID).await;
        assert!(warehouse_is(&result, "PR_WH"), "{result:?}");
    }
    cluster.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleting_a_parent_needs_force_which_takes_its_previews_links_and_tokens() {
    let Some(url) = database_url() else { return };
    let cluster = Cluster::start(&url).await;
    let mut seeded = seed_prod(&cluster, "force").await;
    let (workspace, operator) = (seeded.workspace.clone(), seeded.operator.clone());
    let clients = &mut seeded.clients;
    create_child(
        clients,
        &operator,
        &workspace,
        "pr-1",
        DeploymentKind::Preview,
        "prod",
    )
    .await;
    create_link(
        clients,
        &operator,
        &workspace,
        CONN_ID,
        "pr-1",
        schema_and_warehouse("PR", "PR_WH"),
    )
    .await;
    let (preview_token, _) = issue_token(&cluster, clients, &operator, &workspace, "pr-1").await;
    for token in [&seeded.prod_token, &preview_token] {
        until_both(&cluster, token, CONN_ID, Instant::now(), Result::is_ok).await;
    }

    let delete = |force: bool| DeleteDeploymentRequest {
        name: deployment_name(&workspace, "prod"),
        force,
        ..Default::default()
    };
    expect_code(
        clients
            .with_token(&operator)
            .delete_deployment(delete(false))
            .await,
        Code::FailedPrecondition,
        "DeleteDeployment of a parent with previews, without force",
    );
    // Nothing changed.
    for resolver in &cluster.resolvers {
        let result = resolve(resolver, &preview_token, CONN_ID).await;
        assert!(schema_is(&result, "PR"), "{result:?}");
    }

    ok(
        clients
            .with_token(&operator)
            .delete_deployment(delete(true))
            .await,
        "DeleteDeployment with force",
    );
    let deleted = Instant::now();
    for token in [&seeded.prod_token, &preview_token] {
        let lags = until_both(&cluster, token, CONN_ID, deleted, |result| {
            code_is(result, Code::Unauthenticated)
        })
        .await;
        assert_within_bound("a forced delete, to its tokens", lags);
    }
    expect_code(
        clients
            .with_token(&operator)
            .get_deployment(GetDeploymentRequest {
                name: deployment_name(&workspace, "pr-1"),
            })
            .await,
        Code::NotFound,
        "GetDeployment of the preview",
    );
    let links = ok(
        clients
            .with_token(&operator)
            .list_links(ListLinksRequest {
                parent: connection_name(&workspace, CONN_ID),
                ..Default::default()
            })
            .await,
        "ListLinks",
    );
    assert!(
        links.links.is_empty(),
        "the links of the parent and its preview went with them: {:?}",
        links.links
    );
    cluster.assert_logs_clean();
}

/// The largest value among the samples whose line starts with `metric` (a
/// name, or a name with its labels).
pub(crate) fn metric_value(server: &TestServer, metric: &str) -> Option<f64> {
    use std::io::{Read, Write};
    let address = server.metrics_address()?;
    let mut stream = std::net::TcpStream::connect(address).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .filter(|line| line.starts_with(metric))
        .filter_map(|line| line.rsplit_once(' ')?.1.parse().ok())
        .reduce(f64::max)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolvers_serve_what_they_hold_while_postgres_is_down_and_recover_without_a_restart() {
    if database_url().is_none() {
        return;
    }
    let mut postgres = OwnPostgres::start_new();
    let url = postgres.url.clone();
    let cluster = Cluster::start(&url).await;
    // A third resolver whose max_stale runs out during the outage.
    let short = resolver_of(&cluster.control, &url)
        .with_arg("--max-stale", "3s")
        .spawn()
        .await;
    let mut seeded = seed_prod(&cluster, "outage").await;
    create_deployment(
        &mut seeded.clients,
        &seeded.operator,
        &seeded.workspace,
        "staging",
    )
    .await;
    let (staging_token, _) = issue_token(
        &cluster,
        &mut seeded.clients,
        &seeded.operator,
        &seeded.workspace,
        "staging",
    )
    .await;
    short.forbid_in_logs(&staging_token);
    short.forbid_in_logs(&seeded.prod_token);
    let token = seeded.prod_token.clone();
    until_both(&cluster, &token, CONN_ID, Instant::now(), |result| {
        schema_is(result, "PROD")
    })
    .await;
    until_resolved(&short, &token, CONN_ID, Instant::now(), |result| {
        schema_is(result, "PROD")
    })
    .await;

    postgres.stop();
    let stopped = Instant::now();
    // The short resolver gives up once its max_stale has passed...
    loop {
        if short.health_status("switchboard.v1.ResolverService").await
            == Some(ServingStatus::NotServing)
        {
            break;
        }
        assert!(
            stopped.elapsed() < GUARD,
            "the resolver with --max-stale 3s still reports SERVING"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!(
        "--max-stale 3s resolver turned NOT_SERVING {:.1} s into the outage",
        stopped.elapsed().as_secs_f64()
    );
    let result = resolve(&short, &token, CONN_ID).await;
    assert!(
        code_is(&result, Code::Unavailable),
        "beyond max_stale: {result:?}"
    );
    // ...while the others, well inside theirs, serve what they hold.
    for resolver in &cluster.resolvers {
        assert_eq!(
            resolver
                .health_status("switchboard.v1.ResolverService")
                .await,
            Some(ServingStatus::Serving),
            "within max_stale the resolver stays SERVING"
        );
        let result = resolve(resolver, &token, CONN_ID).await;
        assert!(
            schema_is(&result, "PROD") && warehouse_is(&result, "PROD_WH"),
            "cached value during the outage: {result:?}"
        );
        let result = resolve(resolver, &staging_token, CONN_ID).await;
        assert!(
            code_is(&result, Code::Unavailable),
            "what a resolver does not hold is UNAVAILABLE: {result:?}"
        );
        let stale_served = metric_value(resolver, "switchboard_resolver_stale_served_total");
        assert!(
            stale_served.is_some_and(|value| value > 0.0),
            "stale serving is counted: {stale_served:?}"
        );
        let staleness = metric_value(resolver, "switchboard_resolver_staleness_seconds");
        assert!(
            staleness.is_some_and(|value| value > 0.0),
            "staleness is reported: {staleness:?}"
        );
    }

    postgres.start();
    // Control's pool reconnects; retry the write until it does.
    let restarted = Instant::now();
    loop {
        let result = seeded
            .clients
            .with_token(&seeded.operator)
            .update_link(UpdateLinkRequest {
                link: Some(switchboard_proto::v1::Link {
                    name: format!("{}/links/prod", connection_name(&seeded.workspace, CONN_ID)),
                    overrides: Some(LinkOverrides {
                        extra: Some(string_struct(&[("warehouse", "AFTER_WH")])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: mask(&["overrides.extra.warehouse"]),
                request_id: String::new(),
            })
            .await;
        match result {
            Ok(_) => break,
            Err(status) => {
                assert!(
                    restarted.elapsed() < GUARD,
                    "control did not recover: {status:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    }
    let written = Instant::now();
    let lags = until_both(&cluster, &token, CONN_ID, written, |result| {
        warehouse_is(result, "AFTER_WH")
    })
    .await;
    eprintln!("after the restart, the change reached the resolvers in {lags:?}");
    until_resolved(&short, &token, CONN_ID, written, |result| {
        warehouse_is(result, "AFTER_WH")
    })
    .await;
    // Its follower, not the request that just read the database, restores health.
    while short.health_status("switchboard.v1.ResolverService").await
        != Some(ServingStatus::Serving)
    {
        assert!(
            written.elapsed() < GUARD,
            "the short resolver never reported SERVING again"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for resolver in &cluster.resolvers {
        let result = resolve(resolver, &staging_token, CONN_ID).await;
        assert!(
            code_is(&result, Code::NotFound),
            "a token not held during the outage works again (staging has no link): {result:?}"
        );
    }
    cluster.assert_logs_clean();
    short.assert_logs_clean();
}
