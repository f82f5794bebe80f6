//! A hung Vault (issue 13, point 4) and concurrent token creates with one
//! request_id (point 10).
//!
//! Vault is frozen with SIGSTOP, not killed: its port still accepts
//! connections and requests, but nothing answers, as when a Vault node hangs.
//! A write that needs Vault then answers UNAVAILABLE within about
//! `--vault-timeout` and leaves nothing written, while writes that need no
//! secret go through at their usual speed, because no Vault request runs
//! under the write lock any more. After SIGCONT everything works again and
//! the failed write can be retried with its request_id.
//!
//! The hang test needs `SWITCHBOARD_TEST_DATABASE_URL` (it starts its own
//! OpenBao, which it freezes); without it the test fails under `CI` and
//! otherwise prints why and passes, as the other PostgreSQL tests do.

use std::process::Command;
use std::time::{Duration, Instant};

use switchboard_proto::v1::{
    Connection, ConnectionView, CreateConnectionRequest, CreateDeploymentRequest,
    CreateDeploymentTokenRequest, CreateLinkRequest, DeleteDeploymentRequest, Deployment,
    DeploymentToken, GetConnectionRequest, Link, LinkOverrides, ListDeploymentTokensRequest,
    ListResolvedConnectionsRequest, RevokeDeploymentTokenRequest, RollbackConnectionRequest,
    UpdateConnectionRequest, UpdateDeploymentRequest, UpdateWorkspacePolicyRequest,
    WorkspacePolicy,
};
use switchboard_tests::{TestServer, WorkspaceRole, random_hex};
use tonic::Code;

use crate::backends::{Backend, allow_reveal, psql_count, revealed_password, unique_workspace};
use crate::support::{
    OwnOpenBao, assert_status_free_of, create_deployment, create_deployment_token, deployment_name,
    expect_code, ok, snowflake_connection, workspace_name,
};

/// The Vault timeout the hang test configures (`SWITCHBOARD_VAULT_TIMEOUT`,
/// the environment form of `--vault-timeout`).
const VAULT_TIMEOUT: Duration = Duration::from_secs(2);
/// How much later than the timeout a refused call may answer: scheduling
/// on a loaded machine, never a wait for Vault.
const ANSWER_SLACK: Duration = Duration::from_secs(3);
/// Upper bound for a write that needs no secret while Vault hangs. Before
/// the fix such writes waited for the hung write's lock, 10 s and more.
const NO_SECRET_WRITE_BOUND: Duration = Duration::from_millis(1500);

/// OpenBao stopped with SIGSTOP until dropped (then SIGCONT), so a failing
/// test never leaves a frozen server that ignores the stop script's SIGTERM.
struct Frozen {
    pid: String,
    thawed: bool,
}

impl Frozen {
    fn freeze(bao: &OwnOpenBao) -> Frozen {
        let port = bao
            .addr
            .rsplit(':')
            .next()
            .expect("the OpenBao address ends in its port");
        // scripts/openbao.sh keeps the server's pid here.
        let pid = std::fs::read_to_string(format!("/tmp/switchboard-bao-{port}.pid"))
            .expect("read OpenBao's pid file")
            .trim()
            .to_owned();
        signal(&pid, "STOP");
        Frozen { pid, thawed: false }
    }

    fn thaw(mut self) {
        signal(&self.pid, "CONT");
        self.thawed = true;
    }
}

impl Drop for Frozen {
    fn drop(&mut self) {
        if !self.thawed {
            let _ = Command::new("kill").args(["-CONT", &self.pid]).status();
        }
    }
}

fn signal(pid: &str, name: &str) {
    let status = Command::new("kill")
        .arg(format!("-{name}"))
        .arg(pid)
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// The shared PostgreSQL, or `None` when none is configured.
fn database_url() -> Option<String> {
    switchboard_tests::database_url()
}

/// Fails unless `elapsed` is below `bound`.
fn assert_quick(elapsed: Duration, bound: Duration, what: &str) {
    assert!(
        elapsed < bound,
        "{what} took {elapsed:?} while Vault hung (bound {bound:?})"
    );
}

fn mask(paths: &[&str]) -> Option<prost_types::FieldMask> {
    Some(prost_types::FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hung_vault_fails_secret_writes_quickly_and_blocks_no_other_write() {
    let Some(database_url) = database_url() else {
        return;
    };
    // OpenBao of this test alone: freezing it must not disturb other tests.
    let bao = OwnOpenBao::start_new();
    let server = TestServer::configure()
        .with_arg("--database-url", &database_url)
        .with_arg("--vault-addr", &bao.addr)
        .with_env(
            "SWITCHBOARD_VAULT_TIMEOUT",
            format!("{}s", VAULT_TIMEOUT.as_secs()),
        )
        .with_env("VAULT_TOKEN", "root")
        .spawn()
        .await;
    let workspace = unique_workspace("vault-hang");
    let quoted = workspace.replace('\'', "''");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    let prod = create_deployment(&mut clients, &owner, &workspace, "prod").await;
    create_deployment(&mut clients, &owner, &workspace, "old").await;
    allow_reveal(&mut clients, &owner, &workspace).await;
    let before_password = server.marker("before-hang");
    let before = ok(
        clients
            .with_token(&owner)
            .create_connection(CreateConnectionRequest {
                parent: workspace_name(&workspace),
                connection_id: "before".to_owned(),
                connection: Some(snowflake_connection(&before_password)),
                request_id: String::new(),
                links: Vec::new(),
            })
            .await,
        "CreateConnection before the hang",
    );
    let shim_token =
        create_deployment_token(&server, &mut clients, &owner, &workspace, "prod").await;
    let spare = ok(
        clients
            .with_token(&owner)
            .create_deployment_token(CreateDeploymentTokenRequest {
                parent: deployment_name(&workspace, "prod"),
                description: "to revoke while Vault hangs".to_owned(),
                request_id: String::new(),
            })
            .await,
        "CreateDeploymentToken (spare)",
    );
    server.forbid_in_logs(&spare.token);

    let frozen = Frozen::freeze(&bao);

    // The write that needs Vault: a connection with a password, linked to prod.
    let password = server.marker("during-hang");
    let request_id = format!("hang-{}", random_hex(8));
    let create_during = CreateConnectionRequest {
        parent: workspace_name(&workspace),
        connection_id: "during".to_owned(),
        connection: Some(snowflake_connection(&password)),
        request_id: request_id.clone(),
        links: vec![Link {
            deployment: deployment_name(&workspace, "prod"),
            ..Default::default()
        }],
    };
    let hung_write = {
        let clients = clients.clone();
        let (request, owner) = (create_during.clone(), owner.clone());
        tokio::spawn(async move {
            let started = Instant::now();
            let result = clients.with_token(&owner).create_connection(request).await;
            (result, started.elapsed())
        })
    };
    // Let it reach Vault (where, before the fix, it held the write lock).
    tokio::time::sleep(Duration::from_millis(300)).await;

    // Writes that need no secret, while that write waits for Vault.
    let started = Instant::now();
    ok(
        clients
            .with_token(&owner)
            .create_deployment(CreateDeploymentRequest {
                parent: workspace_name(&workspace),
                deployment_id: "staging".to_owned(),
                deployment: Some(Deployment {
                    display_name: "Staging".to_owned(),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
        "CreateDeployment while Vault hangs",
    );
    assert_quick(started.elapsed(), NO_SECRET_WRITE_BOUND, "CreateDeployment");

    let started = Instant::now();
    ok(
        clients
            .with_token(&owner)
            .update_deployment(UpdateDeploymentRequest {
                deployment: Some(Deployment {
                    name: prod.name.clone(),
                    etag: prod.etag.clone(),
                    display_name: "Production (renamed while Vault hung)".to_owned(),
                    ..Default::default()
                }),
                update_mask: mask(&["display_name"]),
                request_id: String::new(),
            })
            .await,
        "UpdateDeployment while Vault hangs",
    );
    assert_quick(started.elapsed(), NO_SECRET_WRITE_BOUND, "UpdateDeployment");

    // A link without secret overrides on a connection that has a password.
    let started = Instant::now();
    ok(
        clients
            .with_token(&owner)
            .create_link(CreateLinkRequest {
                parent: before.name.clone(),
                link: Some(Link {
                    deployment: deployment_name(&workspace, "staging"),
                    overrides: Some(LinkOverrides {
                        schema: Some("STAGING".to_owned()),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                request_id: String::new(),
            })
            .await,
        "CreateLink without secret overrides while Vault hangs",
    );
    assert_quick(started.elapsed(), NO_SECRET_WRITE_BOUND, "CreateLink");

    let started = Instant::now();
    ok(
        clients
            .with_token(&owner)
            .revoke_deployment_token(RevokeDeploymentTokenRequest {
                name: spare.name.clone(),
            })
            .await,
        "RevokeDeploymentToken while Vault hangs",
    );
    assert_quick(
        started.elapsed(),
        NO_SECRET_WRITE_BOUND,
        "RevokeDeploymentToken",
    );

    let started = Instant::now();
    ok(
        clients
            .with_token(&owner)
            .update_workspace_policy(UpdateWorkspacePolicyRequest {
                policy: Some(WorkspacePolicy {
                    name: format!("{}/policy", workspace_name(&workspace)),
                    allow_secret_reveal: true,
                    allow_local_export: true,
                    ..Default::default()
                }),
                update_mask: mask(&["allow_local_export"]),
                request_id: String::new(),
            })
            .await,
        "UpdateWorkspacePolicy while Vault hangs",
    );
    assert_quick(
        started.elapsed(),
        NO_SECRET_WRITE_BOUND,
        "UpdateWorkspacePolicy",
    );

    let started = Instant::now();
    ok(
        clients
            .with_token(&owner)
            .delete_deployment(DeleteDeploymentRequest {
                name: deployment_name(&workspace, "old"),
                ..Default::default()
            })
            .await,
        "DeleteDeployment while Vault hangs",
    );
    assert_quick(started.elapsed(), NO_SECRET_WRITE_BOUND, "DeleteDeployment");
    assert!(
        !hung_write.is_finished(),
        "the writes above ran while the write that needs Vault was still waiting for it"
    );

    // The write that needs Vault answers UNAVAILABLE at about the timeout.
    let (result, elapsed) = hung_write.await.expect("the hung write's task");
    let status = expect_code(
        result,
        Code::Unavailable,
        "CreateConnection with a password while Vault hangs",
    );
    assert_status_free_of(&status, &password);
    assert_quick(
        elapsed,
        VAULT_TIMEOUT + ANSWER_SLACK,
        "the refused CreateConnection",
    );

    // Other calls that need Vault answer UNAVAILABLE too, and do not hang.
    let started = Instant::now();
    expect_code(
        clients
            .with_token(&owner)
            .get_connection(GetConnectionRequest {
                name: before.name.clone(),
                view: ConnectionView::WithSecrets as i32,
            })
            .await,
        Code::Unavailable,
        "GetConnection WITH_SECRETS while Vault hangs",
    );
    assert_quick(
        started.elapsed(),
        VAULT_TIMEOUT + ANSWER_SLACK,
        "GetConnection WITH_SECRETS",
    );
    let started = Instant::now();
    expect_code(
        clients
            .with_token(&owner)
            .rollback_connection(RollbackConnectionRequest {
                name: before.name.clone(),
                version: 1,
                ..Default::default()
            })
            .await,
        Code::Unavailable,
        "RollbackConnection while Vault hangs",
    );
    assert_quick(
        started.elapsed(),
        VAULT_TIMEOUT + ANSWER_SLACK,
        "RollbackConnection",
    );
    let new_password = server.marker("update-during-hang");
    let started = Instant::now();
    let status = expect_code(
        clients
            .with_token(&owner)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: before.name.clone(),
                    etag: before.etag.clone(),
                    password: new_password.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["password"]),
                request_id: String::new(),
            })
            .await,
        Code::Unavailable,
        "UpdateConnection of a password while Vault hangs",
    );
    assert_status_free_of(&status, &new_password);
    assert_quick(
        started.elapsed(),
        VAULT_TIMEOUT + ANSWER_SLACK,
        "UpdateConnection of a password",
    );

    // The refused writes left nothing: no row, no request-id record, no
    // audit event, no change-feed entry; `before` is untouched.
    let count = |sql: String| psql_count(&database_url, &sql);
    assert_eq!(
        count(format!(
            "select count(*) from connection where workspace = '{quoted}' and conn_id = 'during'"
        )),
        0
    );
    assert_eq!(
        count(format!(
            "select count(*) from request_log where request_id = '{request_id}'"
        )),
        0
    );
    assert_eq!(
        count(format!(
            "select count(*) from audit_event where workspace = '{quoted}' \
             and (resource like '%/connections/during%' \
                  or action in ('UpdateConnection', 'RollbackConnection'))"
        )),
        0,
        "no audit event for the refused writes"
    );
    assert_eq!(
        count(format!(
            "select count(*) from change where workspace = '{quoted}' \
             and resource like '%/connections/during%'"
        )),
        0,
        "no change-feed entry for the refused create"
    );
    assert_eq!(
        count(format!(
            "select version from connection where workspace = '{quoted}' and conn_id = 'before'"
        )),
        1,
        "the refused update and rollback changed nothing"
    );

    frozen.thaw();

    // Everything works again; the refused create succeeds with its request_id.
    let created = ok(
        clients
            .with_token(&owner)
            .create_connection(create_during.clone())
            .await,
        "CreateConnection retried after Vault recovered",
    );
    let retried = ok(
        clients
            .with_token(&owner)
            .create_connection(create_during)
            .await,
        "CreateConnection retried once more",
    );
    assert_eq!(retried.etag, created.etag, "the retry returns the original");
    assert_eq!(
        revealed_password(&mut clients, &owner, &created.name).await,
        password
    );
    assert_eq!(
        revealed_password(&mut clients, &owner, &before.name).await,
        before_password
    );
    let resolved = ok(
        clients
            .with_token(&shim_token)
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: String::new(),
            })
            .await,
        "ListResolvedConnections after Vault recovered",
    );
    let delivered = resolved
        .connections
        .iter()
        .find(|connection| connection.conn_id == "during")
        .expect("the retried connection reaches prod");
    assert_eq!(delivered.password, password);
    ok(
        clients
            .with_token(&owner)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: before.name.clone(),
                    etag: before.etag.clone(),
                    password: new_password.clone(),
                    ..Default::default()
                }),
                update_mask: mask(&["password"]),
                request_id: String::new(),
            })
            .await,
        "UpdateConnection of a password after Vault recovered",
    );
    assert_eq!(
        revealed_password(&mut clients, &owner, &before.name).await,
        new_password
    );
    server.assert_logs_clean();
}

/// What the concurrent token creates answered, checked against one another.
fn assert_one_issued(answers: &[DeploymentToken]) -> &DeploymentToken {
    let first = &answers[0];
    for answer in answers {
        assert_eq!(answer.name, first.name, "every call names the same token");
        assert_eq!(answer.create_time, first.create_time);
        assert_eq!(answer.description, first.description);
    }
    let with_secret: Vec<&DeploymentToken> = answers
        .iter()
        .filter(|answer| !answer.token.is_empty())
        .collect();
    assert_eq!(
        with_secret.len(),
        1,
        "exactly one answer (the first call's) carries the secret"
    );
    with_secret[0]
}

async fn concurrent_token_creates_with_one_request_id_return_the_first(backend: Backend) {
    const CALLS: usize = 12;
    let server = backend.dev().await;
    let workspace = unique_workspace("token-race");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &owner, &workspace, "prod").await;
    let request = CreateDeploymentTokenRequest {
        parent: deployment_name(&workspace, "prod"),
        description: "shim".to_owned(),
        request_id: format!("token-{}", random_hex(8)),
    };
    // A client whose first attempt timed out retries while it still runs.
    let mut tasks = Vec::new();
    for _ in 0..CALLS {
        let clients = clients.clone();
        let (request, owner) = (request.clone(), owner.clone());
        tasks.push(tokio::spawn(async move {
            clients
                .with_token(&owner)
                .create_deployment_token(request)
                .await
        }));
    }
    let mut answers = Vec::new();
    for task in tasks {
        answers.push(ok(
            task.await.expect("a token task"),
            "CreateDeploymentToken sent concurrently with one request_id",
        ));
    }
    let issued = assert_one_issued(&answers).clone();
    server.forbid_in_logs(&issued.token);
    // A later retry answers the same way.
    let retry = ok(
        clients
            .with_token(&owner)
            .create_deployment_token(request)
            .await,
        "CreateDeploymentToken retried later",
    );
    assert_eq!(retry.name, issued.name);
    assert!(retry.token.is_empty(), "the secret is returned only once");
    // The one token exists and works.
    let listed = ok(
        clients
            .with_token(&owner)
            .list_deployment_tokens(ListDeploymentTokensRequest {
                parent: deployment_name(&workspace, "prod"),
                ..Default::default()
            })
            .await,
        "ListDeploymentTokens",
    );
    let names: Vec<&str> = listed
        .deployment_tokens
        .iter()
        .map(|token| token.name.as_str())
        .collect();
    assert_eq!(names, [issued.name.as_str()], "exactly one token");
    if let Some(url) = backend.postgres_url() {
        assert_eq!(
            psql_count(
                url,
                &format!("select count(*) from deployment_token where workspace = '{workspace}'")
            ),
            1,
            "one token row in PostgreSQL"
        );
        assert_eq!(
            psql_count(
                url,
                &format!(
                    "select count(*) from audit_event where workspace = '{workspace}' \
                     and action = 'CreateDeploymentToken'"
                )
            ),
            1,
            "one audit event"
        );
    }
    ok(
        clients
            .with_token(&issued.token)
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: String::new(),
            })
            .await,
        "ListResolvedConnections with the issued token",
    );
    server.assert_logs_clean();
}

mod embedded {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_token_creates_with_one_request_id_return_the_first() {
        let backend = crate::backends::Backend::embedded().expect("the embedded backend");
        super::concurrent_token_creates_with_one_request_id_return_the_first(backend).await;
    }
}

mod postgres_openbao {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_token_creates_with_one_request_id_return_the_first() {
        let Some(backend) = crate::backends::Backend::postgres_openbao() else {
            return;
        };
        super::concurrent_token_creates_with_one_request_id_return_the_first(backend).await;
    }
}

/// With Vault the row ids of a new connection and its links are reserved
/// before the write; on SQLite (next free id) the links of one create must
/// still get distinct ids, so each keeps its own secret overrides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_with_vault_keeps_each_new_links_secrets_apart() {
    let Some(vault_addr) = switchboard_tests::vault_addr() else {
        return;
    };
    let server = TestServer::configure()
        .with_arg("--vault-addr", &vault_addr)
        .with_env("VAULT_TOKEN", "root")
        .spawn()
        .await;
    let workspace = unique_workspace("sqlite-vault");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    let deployments = ["prod", "staging", "dev"];
    let mut tokens = Vec::new();
    for deployment in deployments {
        create_deployment(&mut clients, &owner, &workspace, deployment).await;
        tokens.push(
            create_deployment_token(&server, &mut clients, &owner, &workspace, deployment).await,
        );
    }
    let base_password = server.marker("base");
    let overrides: Vec<String> = deployments[..2]
        .iter()
        .map(|deployment| server.marker(&format!("override-{deployment}")))
        .collect();
    ok(
        clients
            .with_token(&owner)
            .create_connection(CreateConnectionRequest {
                parent: workspace_name(&workspace),
                connection_id: "warehouse".to_owned(),
                connection: Some(snowflake_connection(&base_password)),
                request_id: String::new(),
                links: deployments
                    .iter()
                    .enumerate()
                    .map(|(index, deployment)| Link {
                        deployment: deployment_name(&workspace, deployment),
                        overrides: overrides.get(index).map(|password| LinkOverrides {
                            password: Some(password.clone()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
            })
            .await,
        "CreateConnection with two secret link overrides",
    );
    let expected = [&overrides[0], &overrides[1], &base_password];
    for (token, password) in tokens.iter().zip(expected) {
        let resolved = ok(
            clients
                .with_token(token)
                .list_resolved_connections(ListResolvedConnectionsRequest {
                    deployment: String::new(),
                })
                .await,
            "ListResolvedConnections",
        );
        assert_eq!(resolved.connections.len(), 1);
        assert_eq!(&resolved.connections[0].password, password);
    }
    server.assert_logs_clean();
}
