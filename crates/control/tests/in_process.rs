//! Control and the resolver served in-process over `tokio::io::duplex`
//! (tonic's `serve_with_incoming`, no socket), called through generated
//! clients, with snapshots of representative answers: what a connection
//! looks like to its writer (secrets masked), a refused field, a refused
//! token, and what a deployment resolves with its link's override. A
//! change in any of them shows as a snapshot diff in review.
//!
//! The clock is fixed, so times and etags in the answers are stable.
//! Update the snapshots with `INSTA_UPDATE=always cargo test -p
//! switchboard-control --test in_process` and review the diff.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use hyper_util::rt::TokioIo;
use switchboard_auth::{AUDIENCE, Authenticator, JwtSigner, UserClaims};
use switchboard_control::{Control, PageTokenKey};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;
use switchboard_proto::v1::deployment_service_client::DeploymentServiceClient;
use switchboard_proto::v1::resolver_service_client::ResolverServiceClient;
use switchboard_resolver::{Resolver, ResolverOptions};
use switchboard_store::{Clock, SecretStore, Store};
use tonic::transport::{Channel, Endpoint, Server};

const KEY: [u8; 32] = [5; 32];
/// 2026-01-01T00:00:00Z, in Unix microseconds.
const NOW_MICROS: i64 = 1_767_225_600_000_000;

#[derive(Debug)]
struct FixedClock;

impl Clock for FixedClock {
    fn now_micros(&self) -> i64 {
        NOW_MICROS
    }
}

/// Control and the resolver on one in-memory connection.
struct InProcess {
    channel: Channel,
    user: String,
    _dir: tempfile::TempDir,
}

impl InProcess {
    async fn start() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
        let store = Store::connect(&url, SecretStore::embedded(&[2; 32]).unwrap())
            .await
            .unwrap();
        let clock: Arc<dyn Clock> = Arc::new(FixedClock);
        let control = Control::new(
            store.clone(),
            Authenticator::hs256(&KEY),
            clock.clone(),
            PageTokenKey::new(vec![4; 32]),
        );
        let resolver = Resolver::start(
            store,
            Authenticator::hs256(&KEY),
            clock,
            ResolverOptions::default(),
            None,
        )
        .await
        .unwrap();
        let (connections, deployments, workspaces, audit) = control.services();
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let router = Server::builder()
            .add_service(connections)
            .add_service(deployments)
            .add_service(workspaces)
            .add_service(audit)
            .add_service(resolver.service());
        tokio::spawn(async move {
            let incoming = tokio_stream::iter([Ok::<_, std::io::Error>(server_io)]);
            router.serve_with_incoming(incoming).await.unwrap();
        });
        // One duplex stream, so the channel connects exactly once.
        let client_io = Arc::new(Mutex::new(Some(client_io)));
        let channel = Endpoint::from_static("http://in-process")
            .connect_with_connector(tower::service_fn(move |_| {
                let io = client_io.lock().unwrap().take();
                async move {
                    io.map(TokioIo::new).ok_or_else(|| {
                        std::io::Error::other("the in-process connection is used up")
                    })
                }
            }))
            .await
            .unwrap();
        let user = JwtSigner::hs256(&KEY)
            .sign(&UserClaims {
                sub: "alice".into(),
                exp: 4_000_000_000,
                aud: AUDIENCE.into(),
                iss: None,
                iat: None,
                roles: BTreeMap::from([("acme".into(), "OWNER".into())]),
            })
            .unwrap();
        Self {
            channel,
            user,
            _dir: dir,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        with_token(message, &self.user)
    }

    fn connections(&self) -> ConnectionServiceClient<Channel> {
        ConnectionServiceClient::new(self.channel.clone())
    }
}

fn with_token<T>(message: T, token: &str) -> tonic::Request<T> {
    let mut request = tonic::Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", format!("Bearer {token}").parse().unwrap());
    request
}

/// A status as a reader wants to see it: code, words and the fields named.
fn render_status(status: &tonic::Status) -> String {
    use tonic_types::StatusExt as _;
    let fields: Vec<String> = status
        .get_details_bad_request()
        .map(|bad| {
            bad.field_violations
                .into_iter()
                .map(|violation| format!("{}: {}", violation.field, violation.description))
                .collect()
        })
        .unwrap_or_default();
    let reason = status
        .get_details_error_info()
        .map(|info| format!("{} ({})", info.reason, info.domain));
    format!(
        "code: {:?}\nmessage: {}\nfields: {fields:#?}\nreason: {reason:?}",
        status.code(),
        status.message()
    )
}

fn snowflake(schema: &str) -> pb::Connection {
    let extra = serde_json::json!({"account": "acme-xy12345", "warehouse": "COMPUTE_WH"});
    pb::Connection {
        r#type: "snowflake_password".into(),
        login: "loader".into(),
        password: "sf-S3cret!pw".into(),
        schema: schema.into(),
        extra: Some(switchboard_proto::convert::json_to_struct(
            extra.as_object().unwrap(),
        )),
        ..Default::default()
    }
}

#[tokio::test]
async fn representative_answers_of_control_and_the_resolver() {
    let server = InProcess::start().await;
    let mut deployments = DeploymentServiceClient::new(server.channel.clone());
    deployments
        .create_deployment(server.request(pb::CreateDeploymentRequest {
            parent: "workspaces/acme".into(),
            deployment_id: "prod".into(),
            deployment: Some(pb::Deployment {
                display_name: "Production".into(),
                kind: pb::DeploymentKind::Standard as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap();

    // Created with a link whose schema differs: the answer masks the password.
    let created = server
        .connections()
        .create_connection(server.request(pb::CreateConnectionRequest {
            parent: "workspaces/acme".into(),
            connection_id: "snowflake_default".into(),
            connection: Some(snowflake("PUBLIC")),
            request_id: String::new(),
            links: vec![pb::Link {
                deployment: "workspaces/acme/deployments/prod".into(),
                overrides: Some(pb::LinkOverrides {
                    schema: Some("PROD".into()),
                    ..Default::default()
                }),
                ..Default::default()
            }],
        }))
        .await
        .unwrap()
        .into_inner();
    assert!(created.password.is_empty(), "secrets are write-only");
    insta::assert_debug_snapshot!("created_connection", created);

    // A bad field is named, with why.
    let mut bad = snowflake("PUBLIC");
    bad.extra = None;
    let refused = server
        .connections()
        .create_connection(server.request(pb::CreateConnectionRequest {
            parent: "workspaces/acme".into(),
            connection_id: "snowflake_other".into(),
            connection: Some(bad),
            request_id: String::new(),
            links: Vec::new(),
        }))
        .await
        .unwrap_err();
    insta::assert_snapshot!("missing_required_extra", render_status(&refused));

    // No token: refused with a reason programs can read.
    let anonymous = server
        .connections()
        .get_connection(tonic::Request::new(pb::GetConnectionRequest {
            name: "workspaces/acme/connections/snowflake_default".into(),
            ..Default::default()
        }))
        .await
        .unwrap_err();
    insta::assert_snapshot!("no_token", render_status(&anonymous));

    // The deployment resolves the merged copy: its link's schema, the password.
    let token = deployments
        .create_deployment_token(server.request(pb::CreateDeploymentTokenRequest {
            parent: "workspaces/acme/deployments/prod".into(),
            description: "in-process test".into(),
            request_id: String::new(),
        }))
        .await
        .unwrap()
        .into_inner()
        .token;
    let mut resolver = ResolverServiceClient::new(server.channel.clone());
    let resolved = resolver
        .resolve_connection(with_token(
            pb::ResolveConnectionRequest {
                deployment: "workspaces/acme/deployments/prod".into(),
                conn_id: "snowflake_default".into(),
            },
            &token,
        ))
        .await
        .unwrap()
        .into_inner();
    insta::assert_debug_snapshot!("resolved_for_prod", resolved);
}
