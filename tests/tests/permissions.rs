//! The permission matrix: every method of every `switchboard.v1` service ×
//! every kind of caller, with the workspace policy off and on. The expected
//! outcome of each cell is written out below, transcribed from the table
//! "Who may do what" in docs/architecture.md — deliberately not derived from
//! the server's own permission module.
//!
//! Requests are valid (fresh resources are made for each create and delete),
//! so an allowed cell must answer OK; a refused one PERMISSION_DENIED, or
//! UNAUTHENTICATED without a token.

use std::fmt::Write as _;

use prost_types::FieldMask;
use switchboard_proto::v1::{
    Connection, ConnectionView, CreateConnectionRequest, CreateDeploymentRequest,
    CreateDeploymentTokenRequest, CreateLinkRequest, DeleteConnectionRequest,
    DeleteDeploymentRequest, DeleteLinkRequest, Deployment, DeploymentKind, GetConnectionRequest,
    GetDeploymentRequest, GetLinkRequest, GetWorkspacePolicyRequest, Link, LinkOverrides,
    ListAuditEventsRequest, ListConnectionTypesRequest, ListConnectionVersionsRequest,
    ListConnectionsRequest, ListDeploymentTokensRequest, ListDeploymentsRequest, ListLinksRequest,
    ListResolvedConnectionsRequest, ResolveConnectionRequest, RevokeDeploymentTokenRequest,
    RollbackConnectionRequest, UpdateConnectionRequest, UpdateDeploymentRequest, UpdateLinkRequest,
    UpdateWorkspacePolicyRequest, WorkspacePolicy,
};
use switchboard_tests::{Client, Method, TestServer, WorkspaceRole};
use tonic::{Code, Status};

use crate::support::{connection_name, deployment_name, ok, snowflake_connection, workspace_name};

/// The workspace under test.
const W: &str = "acme";
/// Another workspace, with its own deployment.
const OTHER_W: &str = "globex";
/// "This deployment": the one resolve rows name, and the token column's own.
const THIS_D: &str = "this-dep";
/// Another deployment of the same workspace.
const OTHER_D: &str = "other-dep";
/// A deployment of the other workspace.
const FOREIGN_D: &str = "foreign-dep";
/// A connection linked to [`THIS_D`]; what the read and resolve rows read.
const BASE_CONN: &str = "base_conn";
/// A connection linked to [`THIS_D`] that update rows change.
const UPDATE_CONN: &str = "update_conn";
/// A connection with two versions that rollback rows restore to version 1.
const ROLLBACK_CONN: &str = "rollback_conn";
/// A deployment that update rows change.
const UPDATE_D: &str = "update-dep";
/// A deployment whose tokens revoke rows revoke.
const TOKENS_D: &str = "tokens-dep";

/// The callers, in column order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Who {
    /// No `authorization` metadata at all.
    Anonymous,
    /// A user with no role in the workspace (OWNER of another workspace).
    NoRole,
    Member,
    Author,
    Operator,
    Owner,
    /// A deployment token of [`THIS_D`].
    ThisDeployment,
    /// A deployment token of [`OTHER_D`], same workspace.
    OtherDeployment,
    /// A deployment token of [`FOREIGN_D`], another workspace.
    ForeignDeployment,
}

const COLUMNS: [Who; 9] = [
    Who::Anonymous,
    Who::NoRole,
    Who::Member,
    Who::Author,
    Who::Operator,
    Who::Owner,
    Who::ThisDeployment,
    Who::OtherDeployment,
    Who::ForeignDeployment,
];

/// The expected outcome of a cell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    /// Allowed: the (valid) request succeeds.
    A,
    /// Denied: PERMISSION_DENIED.
    D,
    /// No credentials: UNAUTHENTICATED.
    U,
}
use Expect::{A, D, U};

/// Every method (GetConnection twice: masked and WITH_SECRETS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    ListConnectionTypes,
    CreateConnection,
    GetConnection,
    GetConnectionWithSecrets,
    ListConnections,
    UpdateConnection,
    DeleteConnection,
    CreateLink,
    GetLink,
    ListLinks,
    UpdateLink,
    DeleteLink,
    ListConnectionVersions,
    RollbackConnection,
    CreateDeployment,
    GetDeployment,
    ListDeployments,
    UpdateDeployment,
    DeleteDeployment,
    CreateDeploymentToken,
    ListDeploymentTokens,
    RevokeDeploymentToken,
    GetWorkspacePolicy,
    UpdateWorkspacePolicy,
    ListAuditEvents,
    ResolveConnection,
    ListResolvedConnections,
}

/// One row: a method's cells with the workspace policy off
/// (`allow_secret_reveal` and `allow_local_export` false) and on (both true).
#[derive(Debug)]
struct Row {
    call: Call,
    policy_off: [Expect; 9],
    policy_on: [Expect; 9],
    /// A server bug this row is known to hit: its mismatches are reported,
    /// not asserted.
    known_bug: Option<&'static str>,
}

/// docs/architecture.md's table, cell by cell. Columns:
/// no token | no role | MEMBER | AUTHOR | OPERATOR | OWNER | token of this
/// deployment | of another deployment, same workspace | of a deployment in
/// another workspace.
///
/// Notes on the transcription:
/// - "no role" is a user whose token gives a role only in another workspace;
///   docs/architecture.md: PERMISSION_DENIED for everything in the workspace.
///   The one call not in a workspace, ListConnectionTypes, is open to every
///   user with a role (the table's ✓ for all four roles), so that cell is
///   allowed.
/// - ListDeploymentTokens is not named in the table; it is read as part of
///   "Get/List … deployments" (it never returns token secrets).
/// - "policy" cells are ✗ with the policy off and ✓ with it on
///   (`allow_secret_reveal` for GetConnection WITH_SECRETS,
///   `allow_local_export` for the resolver).
/// - Resolve rows name [`THIS_D`] for users and the other deployments'
///   tokens, and leave `deployment` empty for this deployment's own token.
#[rustfmt::skip]
const MATRIX: &[Row] = &[
    //                                      anon norole MEMB AUTH OPER OWNR this othr frgn
    Row { call: Call::ListConnectionTypes,
          policy_off:                      [U,   A,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   A,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::CreateConnection,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::GetConnection,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::GetConnectionWithSecrets,
          policy_off:                      [U,   D,     D,   D,   D,   D,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ListConnections,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::UpdateConnection,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::DeleteConnection,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::CreateLink,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::GetLink,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ListLinks,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::UpdateLink,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::DeleteLink,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ListConnectionVersions,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::RollbackConnection,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::CreateDeployment,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::GetDeployment,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ListDeployments,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::UpdateDeployment,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::DeleteDeployment,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::CreateDeploymentToken,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ListDeploymentTokens,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::RevokeDeploymentToken,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::GetWorkspacePolicy,
          policy_off:                      [U,   D,     A,   A,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     A,   A,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::UpdateWorkspacePolicy,
          policy_off:                      [U,   D,     D,   D,   D,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   D,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ListAuditEvents,
          policy_off:                      [U,   D,     D,   D,   A,   A,   D,   D,   D],
          policy_on:                       [U,   D,     D,   D,   A,   A,   D,   D,   D],
          known_bug: None },
    Row { call: Call::ResolveConnection,
          policy_off:                      [U,   D,     D,   D,   D,   D,   A,   D,   D],
          policy_on:                       [U,   D,     D,   A,   A,   A,   A,   D,   D],
          known_bug: None },
    Row { call: Call::ListResolvedConnections,
          policy_off:                      [U,   D,     D,   D,   D,   D,   A,   D,   D],
          policy_on:                       [U,   D,     D,   A,   A,   A,   A,   D,   D],
          known_bug: None },
];

/// The server, the callers' tokens and a counter for fresh resource ids.
#[derive(Debug)]
struct Matrix {
    server: TestServer,
    clients: Client,
    /// OWNER of both workspaces; makes the resources cells act on. Not a column.
    setup: String,
    /// Tokens in [`COLUMNS`] order (`None` for [`Who::Anonymous`]).
    tokens: Vec<Option<String>>,
    password: String,
    fresh: usize,
}

fn mask(paths: &[&str]) -> Option<FieldMask> {
    Some(FieldMask {
        paths: paths.iter().map(|path| (*path).to_owned()).collect(),
    })
}

fn link_name(conn_id: &str, deployment: &str) -> String {
    format!("{}/links/{deployment}", connection_name(W, conn_id))
}

fn policy(on: bool) -> WorkspacePolicy {
    WorkspacePolicy {
        name: format!("workspaces/{W}/policy"),
        allow_secret_reveal: on,
        allow_local_export: on,
        ..Default::default()
    }
}

impl Matrix {
    async fn start() -> Self {
        // The matrix makes hundreds of calls, most with the setup token.
        let server = TestServer::configure()
            .with_env("SWITCHBOARD_RATE_LIMIT", "100000")
            .spawn()
            .await;
        let clients = server.client().await;
        let setup = server.user_token(
            "setup",
            &[(W, WorkspaceRole::Owner), (OTHER_W, WorkspaceRole::Owner)],
        );
        let password = server.marker("matrix-password");
        let mut matrix = Matrix {
            server,
            clients,
            setup,
            tokens: Vec::new(),
            password,
            fresh: 0,
        };
        for deployment in [THIS_D, OTHER_D, UPDATE_D, TOKENS_D] {
            matrix.create_deployment(W, deployment).await;
        }
        matrix.create_deployment(OTHER_W, FOREIGN_D).await;
        matrix.create_connection(BASE_CONN).await;
        matrix.create_link(BASE_CONN, THIS_D).await;
        matrix.create_connection(UPDATE_CONN).await;
        matrix.create_link(UPDATE_CONN, THIS_D).await;
        matrix.create_connection(ROLLBACK_CONN).await;
        ok(
            matrix
                .clients
                .with_token(&matrix.setup)
                .update_connection(UpdateConnectionRequest {
                    connection: Some(Connection {
                        name: connection_name(W, ROLLBACK_CONN),
                        description: "second version".to_owned(),
                        ..Default::default()
                    }),
                    update_mask: mask(&["description"]),
                    request_id: String::new(),
                })
                .await,
            "setup: UpdateConnection for a second version",
        );
        let this_token = matrix.create_token(W, THIS_D).await.1;
        let other_token = matrix.create_token(W, OTHER_D).await.1;
        let foreign_token = matrix.create_token(OTHER_W, FOREIGN_D).await.1;
        let server = &matrix.server;
        matrix.tokens = COLUMNS
            .iter()
            .map(|who| match who {
                Who::Anonymous => None,
                Who::NoRole => Some(server.user_token("nora", &[(OTHER_W, WorkspaceRole::Owner)])),
                Who::Member => Some(server.user_token("mia", &[(W, WorkspaceRole::Member)])),
                Who::Author => Some(server.user_token("arthur", &[(W, WorkspaceRole::Author)])),
                Who::Operator => Some(server.user_token("olga", &[(W, WorkspaceRole::Operator)])),
                Who::Owner => Some(server.user_token("owen", &[(W, WorkspaceRole::Owner)])),
                Who::ThisDeployment => Some(this_token.clone()),
                Who::OtherDeployment => Some(other_token.clone()),
                Who::ForeignDeployment => Some(foreign_token.clone()),
            })
            .collect();
        matrix
    }

    fn fresh(&mut self, prefix: &str) -> String {
        self.fresh += 1;
        format!("{prefix}{}", self.fresh)
    }

    async fn create_deployment(&mut self, workspace: &str, deployment_id: &str) {
        ok(
            self.clients
                .with_token(&self.setup)
                .create_deployment(CreateDeploymentRequest {
                    parent: workspace_name(workspace),
                    deployment_id: deployment_id.to_owned(),
                    deployment: Some(Deployment {
                        display_name: deployment_id.to_owned(),
                        kind: DeploymentKind::Standard as i32,
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await,
            &format!("setup: CreateDeployment {workspace}/{deployment_id}"),
        );
    }

    async fn create_connection(&mut self, conn_id: &str) {
        ok(
            self.clients
                .with_token(&self.setup)
                .create_connection(CreateConnectionRequest {
                    parent: workspace_name(W),
                    connection_id: conn_id.to_owned(),
                    connection: Some(snowflake_connection(&self.password)),
                    request_id: String::new(),
                    links: Vec::new(),
                })
                .await,
            &format!("setup: CreateConnection {conn_id}"),
        );
    }

    async fn create_link(&mut self, conn_id: &str, deployment_id: &str) {
        ok(
            self.clients
                .with_token(&self.setup)
                .create_link(CreateLinkRequest {
                    parent: connection_name(W, conn_id),
                    link: Some(Link {
                        deployment: deployment_name(W, deployment_id),
                        overrides: Some(LinkOverrides::default()),
                        ..Default::default()
                    }),
                    request_id: String::new(),
                })
                .await,
            &format!("setup: CreateLink {conn_id} → {deployment_id}"),
        );
    }

    /// Issues a token of `deployment_id`: its resource name and secret.
    async fn create_token(&mut self, workspace: &str, deployment_id: &str) -> (String, String) {
        let issued = ok(
            self.clients
                .with_token(&self.setup)
                .create_deployment_token(CreateDeploymentTokenRequest {
                    parent: deployment_name(workspace, deployment_id),
                    description: "permission matrix".to_owned(),
                    request_id: String::new(),
                })
                .await,
            &format!("setup: CreateDeploymentToken {workspace}/{deployment_id}"),
        );
        self.server.forbid_in_logs(&issued.token);
        (issued.name, issued.token)
    }

    async fn connection_exists(&mut self, conn_id: &str) -> bool {
        self.clients
            .with_token(&self.setup)
            .get_connection(GetConnectionRequest {
                name: connection_name(W, conn_id),
                view: 0,
            })
            .await
            .is_ok()
    }

    async fn deployment_exists(&mut self, deployment_id: &str) -> bool {
        self.clients
            .with_token(&self.setup)
            .get_deployment(GetDeploymentRequest {
                name: deployment_name(W, deployment_id),
            })
            .await
            .is_ok()
    }

    async fn link_exists(&mut self, conn_id: &str) -> bool {
        self.clients
            .with_token(&self.setup)
            .get_link(GetLinkRequest {
                name: link_name(conn_id, THIS_D),
            })
            .await
            .is_ok()
    }

    /// Makes the call of `call` as `who`; `Err` holds a problem beyond the
    /// status code (a side effect of a refused call, an unmasked secret).
    async fn run(&mut self, call: Call, who: Who) -> (Result<(), Status>, Option<String>) {
        let column = COLUMNS
            .iter()
            .position(|candidate| *candidate == who)
            .expect("a column");
        let caller = match &self.tokens[column] {
            Some(token) => self.clients.with_token(token),
            None => self.clients.anonymous(),
        };
        let mut problem = None;
        let result = match call {
            Call::ListConnectionTypes => caller
                .list_connection_types(ListConnectionTypesRequest::default())
                .await
                .map(drop),
            Call::CreateConnection => {
                let conn_id = self.fresh("created_");
                let result = caller
                    .create_connection(CreateConnectionRequest {
                        parent: workspace_name(W),
                        connection_id: conn_id.clone(),
                        connection: Some(snowflake_connection(&self.password)),
                        request_id: String::new(),
                        links: Vec::new(),
                    })
                    .await
                    .map(drop);
                if result.is_err() && self.connection_exists(&conn_id).await {
                    problem = Some("a refused CreateConnection created it".to_owned());
                }
                result
            }
            Call::GetConnection | Call::GetConnectionWithSecrets => {
                let view = if call == Call::GetConnection {
                    ConnectionView::Basic
                } else {
                    ConnectionView::WithSecrets
                };
                let result = caller
                    .get_connection(GetConnectionRequest {
                        name: connection_name(W, BASE_CONN),
                        view: view as i32,
                    })
                    .await;
                if let Ok(response) = &result {
                    let shown = &response.password;
                    match view {
                        ConnectionView::WithSecrets if *shown != self.password => {
                            problem = Some("WITH_SECRETS answered without the password".into());
                        }
                        ConnectionView::WithSecrets => {}
                        _ if !shown.is_empty() => {
                            problem = Some("the basic view shows the password".into());
                        }
                        _ => {}
                    }
                }
                result.map(drop)
            }
            Call::ListConnections => caller
                .list_connections(ListConnectionsRequest {
                    parent: workspace_name(W),
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::UpdateConnection => {
                let description = self.fresh("described by cell ");
                caller
                    .update_connection(UpdateConnectionRequest {
                        connection: Some(Connection {
                            name: connection_name(W, UPDATE_CONN),
                            description,
                            ..Default::default()
                        }),
                        update_mask: mask(&["description"]),
                        request_id: String::new(),
                    })
                    .await
                    .map(drop)
            }
            Call::DeleteConnection => {
                let conn_id = self.fresh("doomed_");
                self.create_connection(&conn_id).await;
                let result = caller
                    .delete_connection(DeleteConnectionRequest {
                        name: connection_name(W, &conn_id),
                        ..Default::default()
                    })
                    .await
                    .map(drop);
                if result.is_err() && !self.connection_exists(&conn_id).await {
                    problem = Some("a refused DeleteConnection deleted it".to_owned());
                }
                result
            }
            Call::CreateLink => {
                let conn_id = self.fresh("unlinked_");
                self.create_connection(&conn_id).await;
                let result = caller
                    .create_link(CreateLinkRequest {
                        parent: connection_name(W, &conn_id),
                        link: Some(Link {
                            deployment: deployment_name(W, THIS_D),
                            overrides: Some(LinkOverrides {
                                schema: Some("LINKED".to_owned()),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await
                    .map(drop);
                if result.is_err() && self.link_exists(&conn_id).await {
                    problem = Some("a refused CreateLink created it".to_owned());
                }
                result
            }
            Call::GetLink => caller
                .get_link(GetLinkRequest {
                    name: link_name(BASE_CONN, THIS_D),
                })
                .await
                .map(drop),
            Call::ListLinks => caller
                .list_links(ListLinksRequest {
                    parent: connection_name(W, BASE_CONN),
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::UpdateLink => {
                let schema = self.fresh("SCHEMA_");
                caller
                    .update_link(UpdateLinkRequest {
                        link: Some(Link {
                            name: link_name(UPDATE_CONN, THIS_D),
                            overrides: Some(LinkOverrides {
                                schema: Some(schema),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        update_mask: mask(&["overrides.schema"]),
                        request_id: String::new(),
                    })
                    .await
                    .map(drop)
            }
            Call::DeleteLink => {
                let conn_id = self.fresh("linked_");
                self.create_connection(&conn_id).await;
                self.create_link(&conn_id, THIS_D).await;
                let result = caller
                    .delete_link(DeleteLinkRequest {
                        name: link_name(&conn_id, THIS_D),
                        ..Default::default()
                    })
                    .await
                    .map(drop);
                if result.is_err() && !self.link_exists(&conn_id).await {
                    problem = Some("a refused DeleteLink deleted it".to_owned());
                }
                result
            }
            Call::ListConnectionVersions => caller
                .list_connection_versions(ListConnectionVersionsRequest {
                    parent: connection_name(W, BASE_CONN),
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::RollbackConnection => caller
                .rollback_connection(RollbackConnectionRequest {
                    name: connection_name(W, ROLLBACK_CONN),
                    version: 1,
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::CreateDeployment => {
                let deployment_id = self.fresh("created-");
                let result = caller
                    .create_deployment(CreateDeploymentRequest {
                        parent: workspace_name(W),
                        deployment_id: deployment_id.clone(),
                        deployment: Some(Deployment {
                            display_name: "by a cell".to_owned(),
                            kind: DeploymentKind::Standard as i32,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    })
                    .await
                    .map(drop);
                if result.is_err() && self.deployment_exists(&deployment_id).await {
                    problem = Some("a refused CreateDeployment created it".to_owned());
                }
                result
            }
            Call::GetDeployment => caller
                .get_deployment(GetDeploymentRequest {
                    name: deployment_name(W, THIS_D),
                })
                .await
                .map(drop),
            Call::ListDeployments => caller
                .list_deployments(ListDeploymentsRequest {
                    parent: workspace_name(W),
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::UpdateDeployment => {
                let display_name = self.fresh("named by cell ");
                caller
                    .update_deployment(UpdateDeploymentRequest {
                        deployment: Some(Deployment {
                            name: deployment_name(W, UPDATE_D),
                            display_name,
                            ..Default::default()
                        }),
                        update_mask: mask(&["display_name"]),
                        request_id: String::new(),
                    })
                    .await
                    .map(drop)
            }
            Call::DeleteDeployment => {
                let deployment_id = self.fresh("doomed-");
                self.create_deployment(W, &deployment_id).await;
                let result = caller
                    .delete_deployment(DeleteDeploymentRequest {
                        name: deployment_name(W, &deployment_id),
                        ..Default::default()
                    })
                    .await
                    .map(drop);
                if result.is_err() && !self.deployment_exists(&deployment_id).await {
                    problem = Some("a refused DeleteDeployment deleted it".to_owned());
                }
                result
            }
            Call::CreateDeploymentToken => {
                let result = caller
                    .create_deployment_token(CreateDeploymentTokenRequest {
                        parent: deployment_name(W, TOKENS_D),
                        description: "by a cell".to_owned(),
                        request_id: String::new(),
                    })
                    .await;
                if let Ok(issued) = &result {
                    self.server.forbid_in_logs(&issued.token);
                }
                result.map(drop)
            }
            Call::ListDeploymentTokens => caller
                .list_deployment_tokens(ListDeploymentTokensRequest {
                    parent: deployment_name(W, THIS_D),
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::RevokeDeploymentToken => {
                let (name, _) = self.create_token(W, TOKENS_D).await;
                let result = caller
                    .revoke_deployment_token(RevokeDeploymentTokenRequest { name: name.clone() })
                    .await;
                if let Ok(revoked) = &result
                    && revoked.revoke_time.is_none()
                {
                    problem = Some("RevokeDeploymentToken answered without revoke_time".into());
                }
                result.map(drop)
            }
            Call::GetWorkspacePolicy => caller
                .get_workspace_policy(GetWorkspacePolicyRequest {
                    name: format!("workspaces/{W}/policy"),
                })
                .await
                .map(drop),
            Call::UpdateWorkspacePolicy => {
                // Sets what the phase already has, so the phase stays as it is.
                let on = self.policy_on().await;
                caller
                    .update_workspace_policy(UpdateWorkspacePolicyRequest {
                        policy: Some(policy(on)),
                        update_mask: None,
                        request_id: String::new(),
                    })
                    .await
                    .map(drop)
            }
            Call::ListAuditEvents => caller
                .list_audit_events(ListAuditEventsRequest {
                    parent: workspace_name(W),
                    ..Default::default()
                })
                .await
                .map(drop),
            Call::ResolveConnection => caller
                .resolve_connection(ResolveConnectionRequest {
                    deployment: resolve_target(who),
                    conn_id: BASE_CONN.to_owned(),
                })
                .await
                .map(drop),
            Call::ListResolvedConnections => caller
                .list_resolved_connections(ListResolvedConnectionsRequest {
                    deployment: resolve_target(who),
                })
                .await
                .map(drop),
        };
        (result, problem)
    }

    async fn policy_on(&mut self) -> bool {
        let policy = ok(
            self.clients
                .with_token(&self.setup)
                .get_workspace_policy(GetWorkspacePolicyRequest {
                    name: format!("workspaces/{W}/policy"),
                })
                .await,
            "setup: GetWorkspacePolicy",
        );
        assert_eq!(
            policy.allow_secret_reveal, policy.allow_local_export,
            "the matrix turns both switches on or off together"
        );
        policy.allow_secret_reveal
    }

    async fn set_policy(&mut self, on: bool) {
        let updated = ok(
            self.clients
                .with_token(&self.setup)
                .update_workspace_policy(UpdateWorkspacePolicyRequest {
                    policy: Some(policy(on)),
                    update_mask: None,
                    request_id: String::new(),
                })
                .await,
            "setup: UpdateWorkspacePolicy",
        );
        assert_eq!(updated.allow_secret_reveal, on);
        assert_eq!(updated.allow_local_export, on);
    }
}

/// Resolve rows name [`THIS_D`], except for its own token, which sends nothing.
fn resolve_target(who: Who) -> String {
    if who == Who::ThisDeployment {
        String::new()
    } else {
        deployment_name(W, THIS_D)
    }
}

fn describe(result: &Result<(), Status>) -> String {
    match result {
        Ok(()) => "OK".to_owned(),
        Err(status) => format!("{:?} ({})", status.code(), status.message()),
    }
}

fn matches(expect: Expect, result: &Result<(), Status>) -> bool {
    match (expect, result) {
        (A, Ok(())) => true,
        (D, Err(status)) => status.code() == Code::PermissionDenied,
        (U, Err(status)) => status.code() == Code::Unauthenticated,
        _ => false,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_method_for_every_caller_matches_the_design_table() {
    let mut matrix = Matrix::start().await;
    let mut failures = Vec::new();
    let mut known = Vec::new();
    let mut cells = 0;
    for policy_on in [false, true] {
        matrix.set_policy(policy_on).await;
        let phase = if policy_on { "policy on" } else { "policy off" };
        for row in MATRIX {
            let expected = if policy_on {
                &row.policy_on
            } else {
                &row.policy_off
            };
            for (who, expect) in COLUMNS.iter().zip(expected) {
                cells += 1;
                let (result, problem) = matrix.run(row.call, *who).await;
                let mut mismatch = String::new();
                if !matches(*expect, &result) {
                    write!(mismatch, "expected {expect:?}, got {}", describe(&result))
                        .expect("write to a String");
                }
                if let Some(problem) = problem {
                    if !mismatch.is_empty() {
                        mismatch.push_str("; ");
                    }
                    mismatch.push_str(&problem);
                }
                if mismatch.is_empty() {
                    continue;
                }
                let line = format!("{:?} as {who:?} ({phase}): {mismatch}", row.call);
                match row.known_bug {
                    Some(bug) => known.push(format!("{line} [known bug: {bug}]")),
                    None => failures.push(line),
                }
            }
        }
        assert_eq!(
            matrix.policy_on().await,
            policy_on,
            "the cells left the policy as the phase set it"
        );
    }
    assert_eq!(cells, MATRIX.len() * COLUMNS.len() * 2);
    for line in &known {
        eprintln!("known failure, not asserted: {line}");
    }
    assert!(
        failures.is_empty(),
        "{} of {cells} cells differ from docs/architecture.md's table:\n{}",
        failures.len(),
        failures.join("\n")
    );
    matrix.server.assert_logs_clean();
}

/// Every method of the contract has a row, so a new method can't slip past
/// the matrix.
#[test]
fn the_matrix_covers_every_method() {
    let mut covered: Vec<Method> = MATRIX.iter().map(|row| method(row.call)).collect();
    covered.sort_unstable();
    covered.dedup();
    let mut every_method = Method::ALL.to_vec();
    every_method.sort_unstable();
    assert_eq!(covered, every_method, "one matrix row per contract method");
    assert!(
        MATRIX
            .iter()
            .any(|row| row.call == Call::GetConnectionWithSecrets)
    );
}

/// The contract method a cell calls: the one its variant is named after.
fn method(call: Call) -> Method {
    let name = match call {
        Call::GetConnectionWithSecrets => "GetConnection".to_owned(),
        other => format!("{other:?}"),
    };
    Method::named(&name).unwrap_or_else(|| panic!("{call:?} is named after no contract method"))
}
