//! The Kubernetes Secret sync against an in-process fake API server that
//! speaks the Secret endpoints (get, server-side apply, delete, list by
//! label) and records every request, over a real SQLite store.

mod fake_kube;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::http::Method;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use fake_kube::{FakeApi, Request, data, data_keys, query_param, secret_path};
use serde_json::{Value, json};
use switchboard_auth::{self as auth, AUDIENCE, Authenticator, JwtSigner, UserClaims};
use switchboard_control::{Control, PageTokenKey};
use switchboard_kube_sync::{
    self as kube_sync, AllowedNamespaces, KUBE_TOKEN_DESCRIPTION, KubeSync, KubeSyncOptions,
    SyncReport,
};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_server::ConnectionService;
use switchboard_proto::v1::deployment_service_server::DeploymentService;
use switchboard_proto::v1::resolver_service_server::ResolverService;
use switchboard_resolver::{Resolver, ResolverOptions};
use switchboard_store::entity::{audit_event, deployment_token};
use switchboard_store::sea_orm::{ColumnTrait, EntityTrait, QueryFilter};
use switchboard_store::{Clock, SecretStore, Store};

const RESOLVER_ADDRESS: &str = "switchboard-resolver.switchboard.svc:50051";
const GRACE: Duration = Duration::from_secs(60);
const KEY: [u8; 32] = [7; 32];

// ---------------------------------------------------------------- harness

/// A client of the fake API server.
fn client(fake: &FakeApi) -> kube::Client {
    let config = kube::Config::new(fake.url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

#[derive(Debug)]
struct TestClock(AtomicI64);

impl Clock for TestClock {
    fn now_micros(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}

impl TestClock {
    fn advance(&self, by: Duration) {
        self.0.fetch_add(by.as_micros() as i64, Ordering::SeqCst);
    }
}

struct Harness {
    store: Store,
    control: Control,
    clock: Arc<TestClock>,
    fake: FakeApi,
    sync: KubeSync,
    user: String,
    _dir: tempfile::TempDir,
}

fn options() -> KubeSyncOptions {
    KubeSyncOptions {
        resolver_address: RESOLVER_ADDRESS.to_owned(),
        token_grace: GRACE,
        resync_every: Duration::from_secs(3600),
        poll_every: Duration::from_millis(50),
        retry_attempts: 4,
        retry_backoff: Duration::from_millis(10),
        retry_backoff_max: Duration::from_millis(50),
        allowed_namespaces: allowed(),
    }
}

/// acme may deliver to airflow-a and airflow-b, globex to airflow-a (shared)
/// and airflow-g.
fn allowed() -> AllowedNamespaces {
    allowing(&[
        ("acme", &["airflow-a", "airflow-b"]),
        ("globex", &["airflow-a", "airflow-g"]),
    ])
}

fn allowing(pairs: &[(&str, &[&str])]) -> AllowedNamespaces {
    AllowedNamespaces::new(
        pairs
            .iter()
            .map(|(workspace, namespaces)| {
                (
                    (*workspace).to_owned(),
                    namespaces
                        .iter()
                        .map(|namespace| (*namespace).to_owned())
                        .collect(),
                )
            })
            .collect(),
    )
}

impl Harness {
    async fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}", dir.path().join("switchboard.db").display());
        let store = Store::connect(&url, SecretStore::embedded(&[3; 32]).unwrap())
            .await
            .unwrap();
        let clock = Arc::new(TestClock(AtomicI64::new(1_700_000_000_000_000)));
        let control = Control::new(
            store.clone(),
            Authenticator::hs256(&KEY),
            clock.clone(),
            PageTokenKey::new(vec![9; 32]),
        )
        .with_kube_namespaces(allowed());
        let fake = FakeApi::start().await;
        let sync = KubeSync::new(store.clone(), client(&fake), clock.clone(), options());
        let user = JwtSigner::hs256(&KEY)
            .sign(&UserClaims {
                sub: "alice".into(),
                exp: 4_000_000_000,
                aud: AUDIENCE.into(),
                iss: None,
                iat: None,
                roles: BTreeMap::from([
                    ("acme".into(), "OWNER".into()),
                    ("globex".into(), "OWNER".into()),
                ]),
            })
            .unwrap();
        Self {
            store,
            control,
            clock,
            fake,
            sync,
            user,
            _dir: dir,
        }
    }

    fn request<T>(&self, message: T) -> tonic::Request<T> {
        let mut request = tonic::Request::new(message);
        request.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.user).parse().unwrap(),
        );
        request
    }

    async fn create_deployment(&self, id: &str, namespace: &str, delivery: pb::SecretDelivery) {
        self.create_deployment_in("acme", id, namespace, delivery)
            .await
            .unwrap();
    }

    async fn create_deployment_in(
        &self,
        workspace: &str,
        id: &str,
        namespace: &str,
        delivery: pb::SecretDelivery,
    ) -> Result<tonic::Response<pb::Deployment>, tonic::Status> {
        self.control
            .create_deployment(self.request(pb::CreateDeploymentRequest {
                parent: format!("workspaces/{workspace}"),
                deployment_id: id.into(),
                deployment: Some(pb::Deployment {
                    kind: pb::DeploymentKind::Standard as i32,
                    namespace: namespace.into(),
                    secret_delivery: delivery as i32,
                    ..Default::default()
                }),
                request_id: String::new(),
            }))
            .await
    }

    async fn set_delivery(&self, id: &str, delivery: pb::SecretDelivery) {
        self.control
            .update_deployment(self.request(pb::UpdateDeploymentRequest {
                deployment: Some(pb::Deployment {
                    name: format!("workspaces/acme/deployments/{id}"),
                    secret_delivery: delivery as i32,
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["secret_delivery".into()],
                }),
                request_id: String::new(),
            }))
            .await
            .unwrap();
    }

    async fn delete_deployment(&self, id: &str) {
        self.control
            .delete_deployment(self.request(pb::DeleteDeploymentRequest {
                name: format!("workspaces/acme/deployments/{id}"),
                ..Default::default()
            }))
            .await
            .unwrap();
    }

    async fn put_connection(&self, conn_id: &str, host: &str, create: bool) {
        let connection = pb::Connection {
            name: format!("workspaces/acme/connections/{conn_id}"),
            r#type: "postgres".into(),
            host: host.into(),
            schema: "analytics".into(),
            login: "etl".into(),
            password: "s3cret:/?".into(),
            port: 5432,
            link_to_all_deployments: true,
            ..Default::default()
        };
        if create {
            self.control
                .create_connection(self.request(pb::CreateConnectionRequest {
                    parent: "workspaces/acme".into(),
                    connection_id: conn_id.into(),
                    connection: Some(connection),
                    ..Default::default()
                }))
                .await
                .unwrap();
        } else {
            self.control
                .update_connection(self.request(pb::UpdateConnectionRequest {
                    connection: Some(connection),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["host".into()],
                    }),
                    request_id: String::new(),
                }))
                .await
                .unwrap();
        }
    }

    async fn kube_tokens(&self, deployment: &str) -> Vec<deployment_token::Model> {
        deployment_token::Entity::find()
            .filter(deployment_token::Column::DeploymentId.eq(deployment))
            .filter(deployment_token::Column::Description.eq(KUBE_TOKEN_DESCRIPTION))
            .all(self.store.db())
            .await
            .unwrap()
    }

    /// What the resolver answers for the deployment, asked with `token`.
    async fn resolve_all(&self, token: &str) -> Result<Vec<pb::ResolvedConnection>, tonic::Status> {
        let resolver = Resolver::start(
            self.store.clone(),
            Authenticator::hs256(&KEY),
            self.clock.clone(),
            ResolverOptions::default(),
            None,
        )
        .await
        .unwrap();
        let mut request = tonic::Request::new(pb::ListResolvedConnectionsRequest::default());
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        resolver
            .list_resolved_connections(request)
            .await
            .map(|response| response.into_inner().connections)
    }

    async fn reconcile(&mut self) -> SyncReport {
        self.sync.reconcile_workspace("acme").await.unwrap()
    }
}

// ---------------------------------------------------------------- tests

#[tokio::test]
async fn a_token_secret_is_applied_once_and_then_left_alone() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;

    let report = h.reconcile().await;
    assert_eq!(
        (report.applied, report.tokens_issued, report.failed),
        (1, 1, 0)
    );
    let requests = h.fake.take_requests();
    let path = secret_path("airflow-a", "switchboard-acme.prod");
    assert_eq!(
        requests.iter().map(Request::line).collect::<Vec<_>>(),
        [format!("GET {path}"), format!("PATCH {path}")]
    );
    let apply = &requests[1];
    assert_eq!(apply.content_type, "application/apply-patch+yaml");
    assert_eq!(
        query_param(&apply.query, "fieldManager").as_deref(),
        Some("switchboard")
    );
    assert_eq!(query_param(&apply.query, "force").as_deref(), Some("true"));
    assert_eq!(apply.body["kind"], "Secret");
    assert_eq!(apply.body["type"], "Opaque");
    let instance = h.sync.instance().await.unwrap();
    assert_eq!(instance.len(), 16);
    assert_eq!(
        apply.body["metadata"]["labels"],
        json!({
            "app.kubernetes.io/managed-by": "switchboard",
            "switchboard.dev/instance": instance,
            "switchboard.dev/deployment": "prod",
            "switchboard.dev/workspace": "acme",
        })
    );
    assert_eq!(
        apply.body["metadata"]["annotations"][kube_sync::SOURCE_ANNOTATION],
        "workspaces/acme/deployments/prod"
    );
    assert!(apply.body["metadata"].get("resourceVersion").is_none());
    assert_eq!(data_keys(&apply.body), ["address", "token"]);
    assert_eq!(
        data(&apply.body, "address").as_deref(),
        Some(RESOLVER_ADDRESS)
    );

    // The token is a live deployment token the resolver accepts, issued with an audit event.
    let secret = h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap();
    let token = data(&secret, "token").unwrap();
    let tokens = h.kube_tokens("prod").await;
    assert_eq!(tokens.len(), 1);
    assert_eq!(tokens[0].token_hash, auth::hash_token(&token));
    assert!(tokens[0].revoke_time.is_none());
    h.resolve_all(&token).await.unwrap();
    let audited = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("CreateDeploymentToken"))
        .all(h.store.db())
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].actor, "system:kubernetes-secret-sync");

    // Nothing changed: reads only, no writes, no new token.
    let report = h.reconcile().await;
    assert_eq!(
        (report.applied, report.unchanged, report.tokens_issued),
        (0, 1, 0)
    );
    let requests = h.fake.take_requests();
    assert_eq!(
        requests.iter().map(Request::line).collect::<Vec<_>>(),
        [format!("GET {path}")]
    );
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!((report.applied, report.deleted), (0, 0));
    let requests = h.fake.take_requests();
    assert!(
        requests.iter().all(|request| !request.is_write()),
        "{requests:?}"
    );
    assert_eq!(
        requests.last().unwrap().line(),
        "GET /api/v1/namespaces/airflow-a/secrets"
    );
    assert_eq!(
        query_param(&requests.last().unwrap().query, "labelSelector").as_deref(),
        Some("app.kubernetes.io/managed-by=switchboard")
    );
    assert_eq!(
        data(
            &h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
            "token"
        )
        .unwrap(),
        token
    );
}

#[tokio::test]
async fn env_secrets_hold_the_resolvers_airflow_json_and_follow_changes() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-b", pb::SecretDelivery::Env)
        .await;
    h.put_connection("warehouse", "db-1.example.com", true)
        .await;
    h.put_connection("Reporting_DB", "db-2.example.com", true)
        .await;
    let token = h
        .control
        .create_deployment_token(h.request(pb::CreateDeploymentTokenRequest {
            parent: "workspaces/acme/deployments/prod".into(),
            description: "test".into(),
            ..Default::default()
        }))
        .await
        .unwrap()
        .into_inner()
        .token;

    let report = h.reconcile().await;
    assert_eq!((report.applied, report.tokens_issued), (1, 0));
    let requests = h.fake.take_requests();
    assert_eq!(
        requests.iter().filter(|request| request.is_write()).count(),
        1
    );
    let secret = h.fake.secret("airflow-b", "switchboard-acme.prod").unwrap();
    assert_eq!(
        data_keys(&secret),
        ["AIRFLOW_CONN_REPORTING_DB", "AIRFLOW_CONN_WAREHOUSE"]
    );
    let resolved = h.resolve_all(&token).await.unwrap();
    assert_eq!(resolved.len(), 2);
    for connection in &resolved {
        let key = format!("AIRFLOW_CONN_{}", connection.conn_id.to_ascii_uppercase());
        assert_eq!(
            data(&secret, &key).unwrap(),
            connection.airflow_json,
            "{key}"
        );
    }
    let warehouse: Value =
        serde_json::from_str(&data(&secret, "AIRFLOW_CONN_WAREHOUSE").unwrap()).unwrap();
    assert_eq!(warehouse["host"], "db-1.example.com");
    assert_eq!(warehouse["password"], "s3cret:/?");
    assert_eq!(warehouse["port"], 5432);

    // Unchanged: no write.
    h.reconcile().await;
    assert!(
        h.fake
            .take_requests()
            .iter()
            .all(|request| !request.is_write())
    );

    // A changed connection is applied, equal to what the resolver now answers.
    h.put_connection("warehouse", "db-9.example.com", false)
        .await;
    let report = h.reconcile().await;
    assert_eq!(report.applied, 1);
    let requests = h.fake.take_requests();
    let writes: Vec<&Request> = requests
        .iter()
        .filter(|request| request.is_write())
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].method, Method::PATCH);
    // The apply carried the resourceVersion it read, so a concurrent change conflicts.
    assert_eq!(writes[0].body["metadata"]["resourceVersion"], "1");
    let secret = h.fake.secret("airflow-b", "switchboard-acme.prod").unwrap();
    let resolved = h.resolve_all(&token).await.unwrap();
    let warehouse = resolved
        .iter()
        .find(|connection| connection.conn_id == "warehouse")
        .unwrap();
    assert!(warehouse.airflow_json.contains("db-9.example.com"));
    assert_eq!(
        data(&secret, "AIRFLOW_CONN_WAREHOUSE").unwrap(),
        warehouse.airflow_json
    );

    // A removed connection's key goes too.
    h.control
        .delete_connection(h.request(pb::DeleteConnectionRequest {
            name: "workspaces/acme/connections/Reporting_DB".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    assert_eq!(h.reconcile().await.applied, 1);
    let secret = h.fake.secret("airflow-b", "switchboard-acme.prod").unwrap();
    assert_eq!(data_keys(&secret), ["AIRFLOW_CONN_WAREHOUSE"]);
    h.fake.take_requests();
    assert_eq!(h.reconcile().await.applied, 0);
}

#[tokio::test]
async fn deleting_a_deployment_or_turning_delivery_off_deletes_its_secret() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    h.create_deployment("stage", "airflow-a", pb::SecretDelivery::Env)
        .await;
    assert_eq!(h.reconcile().await.applied, 2);
    h.fake.take_requests();

    h.delete_deployment("prod").await;
    let report = h.reconcile().await;
    assert_eq!((report.deleted, report.applied), (1, 0));
    let requests = h.fake.take_requests();
    let prod = secret_path("airflow-a", "switchboard-acme.prod");
    let writes: Vec<&Request> = requests
        .iter()
        .filter(|request| request.is_write())
        .collect();
    assert_eq!(writes.len(), 1);
    assert_eq!(writes[0].line(), format!("DELETE {prod}"));
    assert_eq!(writes[0].body["preconditions"]["uid"], "uid-1");
    assert!(
        h.fake
            .secret("airflow-a", "switchboard-acme.prod")
            .is_none()
    );
    assert!(
        h.fake
            .secret("airflow-a", "switchboard-acme.stage")
            .is_some()
    );

    h.set_delivery("stage", pb::SecretDelivery::None).await;
    let report = h.reconcile().await;
    assert_eq!(report.deleted, 1);
    let requests = h.fake.take_requests();
    assert_eq!(
        requests
            .iter()
            .filter(|request| request.is_write())
            .map(Request::line)
            .collect::<Vec<_>>(),
        [format!(
            "DELETE {}",
            secret_path("airflow-a", "switchboard-acme.stage")
        )]
    );
    assert!(
        h.fake
            .secret("airflow-a", "switchboard-acme.stage")
            .is_none()
    );

    // Nothing left to do.
    h.sync.reconcile_all().await.unwrap();
    assert!(
        h.fake
            .take_requests()
            .iter()
            .all(|request| !request.is_write())
    );
}

#[tokio::test]
async fn a_managed_secret_no_deployment_wants_is_removed_by_the_resync() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    let instance = h.sync.instance().await.unwrap();
    // Left behind by a deployment deleted while control was down.
    h.fake.put(
        "airflow-a",
        "switchboard-old",
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "switchboard-old", "namespace": "airflow-a", "uid": "uid-old",
                "labels": {"app.kubernetes.io/managed-by": "switchboard",
                    "switchboard.dev/instance": instance,
                    "switchboard.dev/deployment": "old", "switchboard.dev/workspace": "acme"}},
            "data": {"token": STANDARD.encode("sbdt_x")},
        }),
    );
    // Another installation's Secret in the same namespace stays.
    let foreign = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "switchboard-gone", "namespace": "airflow-a", "uid": "uid-foreign",
            "labels": {"app.kubernetes.io/managed-by": "switchboard",
                "switchboard.dev/instance": "ffffffffffffffff",
                "switchboard.dev/deployment": "gone", "switchboard.dev/workspace": "acme"}},
    });
    h.fake.put("airflow-a", "switchboard-gone", foreign.clone());
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!((report.applied, report.deleted), (1, 1));
    let writes: Vec<String> = h
        .fake
        .take_requests()
        .iter()
        .filter(|request| request.is_write())
        .map(Request::line)
        .collect();
    assert_eq!(
        writes,
        [
            format!(
                "PATCH {}",
                secret_path("airflow-a", "switchboard-acme.prod")
            ),
            format!("DELETE {}", secret_path("airflow-a", "switchboard-old")),
        ]
    );
    assert!(h.fake.secret("airflow-a", "switchboard-old").is_none());
    assert_eq!(
        h.fake.secret("airflow-a", "switchboard-gone").unwrap(),
        foreign
    );
}

#[tokio::test]
async fn secrets_without_the_managed_label_are_never_written() {
    let mut h = Harness::new().await;
    let foreign = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "switchboard-acme.prod", "namespace": "airflow-a", "uid": "uid-foreign",
            "resourceVersion": "77", "labels": {"team": "data"}},
        "data": {"token": STANDARD.encode("hand-made")},
    });
    h.fake
        .put("airflow-a", "switchboard-acme.prod", foreign.clone());
    // Another workspace's (or installation's) managed Secret with the same name is not ours either.
    let other = json!({
        "apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "switchboard-acme.stage", "namespace": "airflow-a", "uid": "uid-other",
            "labels": {"app.kubernetes.io/managed-by": "switchboard",
                "switchboard.dev/deployment": "stage", "switchboard.dev/workspace": "globex"}},
        "data": {"token": STANDARD.encode("theirs")},
    });
    h.fake
        .put("airflow-a", "switchboard-acme.stage", other.clone());
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    h.create_deployment("stage", "airflow-a", pb::SecretDelivery::Env)
        .await;

    let report = h.reconcile().await;
    assert_eq!(
        (report.applied, report.skipped, report.tokens_issued),
        (0, 2, 0)
    );
    assert!(
        h.fake
            .take_requests()
            .iter()
            .all(|request| !request.is_write())
    );

    h.set_delivery("prod", pb::SecretDelivery::None).await;
    h.delete_deployment("stage").await;
    h.reconcile().await;
    h.sync.reconcile_all().await.unwrap();
    let requests = h.fake.take_requests();
    assert!(
        requests.iter().all(|request| !request.is_write()),
        "{requests:?}"
    );
    assert_eq!(
        h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
        foreign
    );
    assert_eq!(
        h.fake
            .secret("airflow-a", "switchboard-acme.stage")
            .unwrap(),
        other
    );
}

#[tokio::test]
async fn api_errors_are_retried_with_backoff_and_never_block_control() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    let path = secret_path("airflow-a", "switchboard-acme.prod");

    // A 500 on the read and a 409 on the apply: each retried.
    h.fake.fail(Some(Method::GET), 500);
    h.fake.fail(Some(Method::PATCH), 409);
    let report = h.reconcile().await;
    assert_eq!(
        (report.applied, report.failed, report.tokens_issued),
        (1, 0, 1)
    );
    assert_eq!(
        h.fake
            .take_requests()
            .iter()
            .map(Request::line)
            .collect::<Vec<_>>(),
        [
            format!("GET {path}"),
            format!("GET {path}"),
            format!("PATCH {path}"),
            format!("GET {path}"),
            format!("PATCH {path}"),
        ]
    );
    // The retried apply reused the token issued on the first try.
    assert_eq!(h.kube_tokens("prod").await.len(), 1);

    // A longer outage: the reconcile gives up after its tries, control's API works meanwhile.
    h.fake.remove("airflow-a", "switchboard-acme.prod");
    for _ in 0..10 {
        h.fake.fail(None, 503);
    }
    let report = h.reconcile().await;
    assert_eq!((report.applied, report.failed), (0, 1));
    assert_eq!(
        h.fake.take_requests().len(),
        options().retry_attempts as usize
    );
    h.create_deployment("other", "", pb::SecretDelivery::None)
        .await;
    h.fake.clear_failures();

    let report = h.reconcile().await;
    assert_eq!(
        (report.applied, report.failed, report.tokens_issued),
        (1, 0, 1)
    );
    let writes: Vec<String> = h
        .fake
        .take_requests()
        .iter()
        .filter(|request| request.is_write())
        .map(Request::line)
        .collect();
    assert_eq!(writes, [format!("PATCH {path}")]);
}

#[tokio::test]
async fn drift_is_repaired_and_a_deleted_token_secret_gets_a_new_token_old_revoked_after_grace() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    h.reconcile().await;
    let first = data(
        &h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
        "token",
    )
    .unwrap();
    h.fake.take_requests();

    // Hand-edited: put back, same token.
    let mut edited = h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap();
    edited["data"]["address"] = json!(STANDARD.encode("evil.example.com:50051"));
    h.fake.put("airflow-a", "switchboard-acme.prod", edited);
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!((report.applied, report.tokens_issued), (1, 0));
    let secret = h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap();
    assert_eq!(data(&secret, "address").as_deref(), Some(RESOLVER_ADDRESS));
    assert_eq!(data(&secret, "token").unwrap(), first);

    // Deleted: recreated with a new token; the old one stays valid for the grace period.
    h.fake.remove("airflow-a", "switchboard-acme.prod");
    h.fake.take_requests();
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!(
        (report.applied, report.tokens_issued, report.tokens_revoked),
        (1, 1, 0)
    );
    let second = data(
        &h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
        "token",
    )
    .unwrap();
    assert_ne!(second, first);
    h.resolve_all(&first).await.unwrap();
    h.resolve_all(&second).await.unwrap();

    h.clock.advance(GRACE / 2);
    assert_eq!(h.sync.reconcile_all().await.unwrap().tokens_revoked, 0);
    h.clock.advance(GRACE / 2 + Duration::from_secs(1));
    h.fake.take_requests();
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!(
        (report.tokens_revoked, report.applied, report.tokens_issued),
        (1, 0, 0)
    );
    assert!(
        h.fake
            .take_requests()
            .iter()
            .all(|request| !request.is_write())
    );
    let tokens = h.kube_tokens("prod").await;
    let revoked: Vec<bool> = tokens.iter().map(|row| row.revoke_time.is_some()).collect();
    assert_eq!(revoked.iter().filter(|revoked| **revoked).count(), 1);
    let old = tokens
        .iter()
        .find(|row| row.token_hash == auth::hash_token(&first))
        .unwrap();
    assert!(old.revoke_time.is_some());
    assert!(h.resolve_all(&first).await.is_err());
    h.resolve_all(&second).await.unwrap();

    // A Secret holding a revoked token gets a fresh one.
    let mut stale = h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap();
    stale["data"]["token"] = json!(STANDARD.encode(&first));
    h.fake.put("airflow-a", "switchboard-acme.prod", stale);
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!((report.applied, report.tokens_issued), (1, 1));
    let third = data(
        &h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
        "token",
    )
    .unwrap();
    assert!(third != first && third != second);
}

#[tokio::test]
async fn the_loop_follows_the_change_feed_within_seconds() {
    let h = Harness::new().await;
    let fake = h.fake.clone();
    let task = tokio::spawn(
        KubeSync::new(h.store.clone(), client(&fake), h.clock.clone(), options()).run(),
    );
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Env)
        .await;
    wait_for(|| fake.secret("airflow-a", "switchboard-acme.prod").is_some()).await;
    h.put_connection("warehouse", "db-1.example.com", true)
        .await;
    wait_for(|| {
        fake.secret("airflow-a", "switchboard-acme.prod")
            .is_some_and(|secret| data(&secret, "AIRFLOW_CONN_WAREHOUSE").is_some())
    })
    .await;
    h.delete_deployment("prod").await;
    wait_for(|| fake.secret("airflow-a", "switchboard-acme.prod").is_none()).await;
    task.abort();
}

async fn wait_for(mut condition: impl FnMut() -> bool) {
    for _ in 0..100 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("condition not met within 5 s");
}

#[tokio::test]
async fn after_a_restart_the_resync_finds_secrets_of_deployments_that_stopped_wanting_one() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Env)
        .await;
    h.create_deployment("stage", "airflow-a", pb::SecretDelivery::Env)
        .await;
    assert_eq!(h.reconcile().await.applied, 2);
    // A restarted process knows nothing of the Secrets it wrote.
    h.sync = KubeSync::new(h.store.clone(), client(&h.fake), h.clock.clone(), options());
    h.set_delivery("prod", pb::SecretDelivery::None).await;
    h.delete_deployment("stage").await;
    h.fake.take_requests();
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!((report.deleted, report.applied), (2, 0));
    let writes: Vec<String> = h
        .fake
        .take_requests()
        .iter()
        .filter(|request| request.is_write())
        .map(Request::line)
        .collect();
    assert_eq!(
        writes,
        [
            format!(
                "DELETE {}",
                secret_path("airflow-a", "switchboard-acme.prod")
            ),
            format!(
                "DELETE {}",
                secret_path("airflow-a", "switchboard-acme.stage")
            ),
        ]
    );
}

// ------------------------------------------------- namespaces, names, problems

impl Harness {
    /// A link-to-all connection of `workspace` whose `extra.note` is `note`.
    async fn put_connection_in(&self, workspace: &str, conn_id: &str, note: &str) {
        let mut extra = serde_json::Map::new();
        extra.insert("note".into(), json!(note));
        self.control
            .create_connection(self.request(pb::CreateConnectionRequest {
                parent: format!("workspaces/{workspace}"),
                connection_id: conn_id.into(),
                connection: Some(pb::Connection {
                    r#type: "postgres".into(),
                    host: "db.example.com".into(),
                    login: "etl".into(),
                    password: "pw".into(),
                    link_to_all_deployments: true,
                    extra: Some(switchboard_control::json_to_struct(&extra)),
                    ..Default::default()
                }),
                ..Default::default()
            }))
            .await
            .unwrap();
    }

    async fn update_deployment(
        &self,
        workspace: &str,
        id: &str,
        deployment: pb::Deployment,
        paths: &[&str],
    ) -> Result<tonic::Response<pb::Deployment>, tonic::Status> {
        self.control
            .update_deployment(self.request(pb::UpdateDeploymentRequest {
                deployment: Some(pb::Deployment {
                    name: format!("workspaces/{workspace}/deployments/{id}"),
                    ..deployment
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: paths.iter().map(|path| (*path).to_owned()).collect(),
                }),
                request_id: String::new(),
            }))
            .await
    }
}

fn assert_namespace_refused(status: &tonic::Status, workspace: &str, namespace: &str) {
    use tonic_types::StatusExt as _;
    assert_eq!(status.code(), tonic::Code::FailedPrecondition, "{status:?}");
    assert!(
        status.message().contains(workspace) && status.message().contains(namespace),
        "{status:?}"
    );
    let failure = status
        .get_details_precondition_failure()
        .expect("a PreconditionFailure detail");
    assert_eq!(failure.violations.len(), 1);
    assert_eq!(
        failure.violations[0].r#type,
        "KUBERNETES_NAMESPACE_NOT_ALLOWED"
    );
    assert_eq!(
        failure.violations[0].subject,
        format!("workspaces/{workspace}")
    );
}

#[tokio::test]
async fn a_delivery_outside_the_workspaces_namespaces_is_refused_and_nothing_is_stored() {
    let h = Harness::new().await;
    // globex may not use airflow-b, acme's namespace.
    let status = h
        .create_deployment_in("globex", "prod", "airflow-b", pb::SecretDelivery::Env)
        .await
        .unwrap_err();
    assert_namespace_refused(&status, "globex", "airflow-b");
    let status = h
        .create_deployment_in("globex", "prod", "airflow-b", pb::SecretDelivery::Token)
        .await
        .unwrap_err();
    assert_namespace_refused(&status, "globex", "airflow-b");
    // No Secret asked for, or no namespace: nothing to refuse.
    h.create_deployment_in("globex", "prod", "airflow-b", pb::SecretDelivery::None)
        .await
        .unwrap();
    h.create_deployment_in("globex", "nowhere", "", pb::SecretDelivery::Env)
        .await
        .unwrap();
    // Turning delivery on in a namespace the workspace may not use, or moving
    // a delivering deployment there, is refused too; the row keeps its values.
    let status = h
        .update_deployment(
            "globex",
            "prod",
            pb::Deployment {
                secret_delivery: pb::SecretDelivery::Token as i32,
                ..Default::default()
            },
            &["secret_delivery"],
        )
        .await
        .unwrap_err();
    assert_namespace_refused(&status, "globex", "airflow-b");
    h.create_deployment_in("globex", "stage", "airflow-g", pb::SecretDelivery::Env)
        .await
        .unwrap();
    let status = h
        .update_deployment(
            "globex",
            "stage",
            pb::Deployment {
                namespace: "airflow-b".into(),
                ..Default::default()
            },
            &["namespace"],
        )
        .await
        .unwrap_err();
    assert_namespace_refused(&status, "globex", "airflow-b");
    let stage = h
        .control
        .get_deployment(h.request(pb::GetDeploymentRequest {
            name: "workspaces/globex/deployments/stage".into(),
        }))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(stage.namespace, "airflow-g");
    // Allowed namespaces work, and unrelated fields update regardless.
    h.update_deployment(
        "globex",
        "stage",
        pb::Deployment {
            namespace: "airflow-a".into(),
            ..Default::default()
        },
        &["namespace"],
    )
    .await
    .unwrap();
    h.update_deployment(
        "globex",
        "prod",
        pb::Deployment {
            display_name: "Production".into(),
            ..Default::default()
        },
        &["display_name"],
    )
    .await
    .unwrap();

    // With no map at all, every delivery into a namespace is refused.
    let bare = Control::new(
        h.store.clone(),
        Authenticator::hs256(&KEY),
        h.clock.clone(),
        PageTokenKey::new(vec![9; 32]),
    );
    let status = bare
        .create_deployment(h.request(pb::CreateDeploymentRequest {
            parent: "workspaces/acme".into(),
            deployment_id: "fresh".into(),
            deployment: Some(pb::Deployment {
                kind: pb::DeploymentKind::Standard as i32,
                namespace: "airflow-a".into(),
                secret_delivery: pb::SecretDelivery::Token as i32,
                ..Default::default()
            }),
            request_id: String::new(),
        }))
        .await
        .unwrap_err();
    assert_namespace_refused(&status, "acme", "airflow-a");
}

#[tokio::test]
async fn two_workspaces_in_one_namespace_get_separate_secrets_whoever_comes_first() {
    let mut h = Harness::new().await;
    // globex takes `prod` in the shared namespace first; acme's prod still
    // gets its own Secret.
    h.create_deployment_in("globex", "prod", "airflow-a", pb::SecretDelivery::Token)
        .await
        .unwrap();
    assert_eq!(
        h.sync.reconcile_workspace("globex").await.unwrap().applied,
        1
    );
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    let report = h.reconcile().await;
    assert_eq!((report.applied, report.skipped, report.rejected), (1, 0, 0));
    let acme = h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap();
    let globex = h
        .fake
        .secret("airflow-a", "switchboard-globex.prod")
        .unwrap();
    assert_eq!(
        acme["metadata"]["labels"]["switchboard.dev/workspace"],
        "acme"
    );
    assert_eq!(
        globex["metadata"]["labels"]["switchboard.dev/workspace"],
        "globex"
    );
    assert_ne!(data(&acme, "token"), data(&globex, "token"));
    // Deleting one workspace's deployment leaves the other's Secret.
    h.control
        .delete_deployment(h.request(pb::DeleteDeploymentRequest {
            name: "workspaces/globex/deployments/prod".into(),
            ..Default::default()
        }))
        .await
        .unwrap();
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!(report.deleted, 1);
    assert!(
        h.fake
            .secret("airflow-a", "switchboard-globex.prod")
            .is_none()
    );
    assert_eq!(
        data(
            &h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
            "token"
        ),
        data(&acme, "token")
    );
}

#[tokio::test]
async fn secrets_under_the_old_name_are_replaced_by_the_resync() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Env)
        .await;
    let instance = h.sync.instance().await.unwrap();
    let legacy = |instance: &str, uid: &str| {
        json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": "switchboard-prod", "namespace": "airflow-a", "uid": uid,
                "labels": {"app.kubernetes.io/managed-by": "switchboard",
                    "switchboard.dev/instance": instance,
                    "switchboard.dev/deployment": "prod", "switchboard.dev/workspace": "acme"}},
            "data": {"AIRFLOW_CONN_OLD": STANDARD.encode("{}")},
        })
    };
    // Written by this installation before names carried the workspace.
    h.fake.put(
        "airflow-a",
        "switchboard-prod",
        legacy(&instance, "uid-legacy"),
    );
    // The same name in another namespace, by another installation: not ours.
    let foreign = legacy("ffffffffffffffff", "uid-foreign");
    h.fake.put("airflow-b", "switchboard-prod", foreign.clone());
    h.create_deployment("other", "airflow-b", pb::SecretDelivery::None)
        .await;
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!((report.applied, report.deleted), (1, 1));
    let writes: Vec<String> = h
        .fake
        .take_requests()
        .iter()
        .filter(|request| request.is_write())
        .map(Request::line)
        .collect();
    assert_eq!(
        writes,
        [
            format!(
                "PATCH {}",
                secret_path("airflow-a", "switchboard-acme.prod")
            ),
            format!("DELETE {}", secret_path("airflow-a", "switchboard-prod")),
        ]
    );
    assert!(h.fake.secret("airflow-a", "switchboard-prod").is_none());
    assert_eq!(
        h.fake.secret("airflow-b", "switchboard-prod").unwrap(),
        foreign
    );
}

#[tokio::test]
async fn a_namespace_taken_off_the_list_loses_its_secret_and_reports_it() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Token)
        .await;
    h.create_deployment("stage", "airflow-b", pb::SecretDelivery::Env)
        .await;
    assert_eq!(h.reconcile().await.applied, 2);
    // The server restarts with airflow-a no longer allowed for acme.
    let options = KubeSyncOptions {
        allowed_namespaces: allowing(&[("acme", &["airflow-b"])]),
        ..options()
    };
    h.sync = KubeSync::new(h.store.clone(), client(&h.fake), h.clock.clone(), options);
    h.fake.take_requests();
    let report = h.sync.reconcile_all().await.unwrap();
    assert_eq!(
        (
            report.deleted,
            report.rejected,
            report.failed,
            report.applied
        ),
        (1, 1, 0, 0)
    );
    assert!(
        h.fake
            .secret("airflow-a", "switchboard-acme.prod")
            .is_none()
    );
    assert!(
        h.fake
            .secret("airflow-b", "switchboard-acme.stage")
            .is_some()
    );
    let problems = h.sync.problems("acme", "prod");
    assert_eq!(problems.len(), 1);
    assert_eq!(problems[0].reason, "namespace_not_allowed");
    assert!(
        problems[0].message.contains("airflow-a") && problems[0].message.contains("acme"),
        "{problems:?}"
    );
    assert!(h.sync.problems("acme", "stage").is_empty());
    // Moved to an allowed namespace: delivered, problem gone.
    h.update_deployment(
        "acme",
        "prod",
        pb::Deployment {
            namespace: "airflow-b".into(),
            ..Default::default()
        },
        &["namespace"],
    )
    .await
    .unwrap();
    let report = h.reconcile().await;
    assert_eq!((report.applied, report.rejected), (1, 0));
    assert!(h.sync.problems("acme", "prod").is_empty());
    assert!(
        h.fake
            .secret("airflow-b", "switchboard-acme.prod")
            .is_some()
    );
}

#[tokio::test]
async fn bad_env_keys_and_oversized_secrets_are_reported_on_the_deployment_while_others_sync() {
    let mut h = Harness::new().await;
    h.create_deployment("prod", "airflow-a", pb::SecretDelivery::Env)
        .await;
    h.put_connection_in("acme", "warehouse", "fine").await;
    // AIRFLOW_CONN_MY-DB and AIRFLOW_CONN_LAKE.RAW cannot be environment variables.
    h.put_connection_in("acme", "my-db", "dash").await;
    h.put_connection_in("acme", "lake.raw", "dot").await;

    let report = h.reconcile().await;
    assert_eq!((report.applied, report.rejected, report.failed), (1, 1, 0));
    let secret = h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap();
    assert_eq!(data_keys(&secret), ["AIRFLOW_CONN_WAREHOUSE"]);
    let problems = h.sync.problems("acme", "prod").to_vec();
    assert_eq!(problems.len(), 1, "{problems:?}");
    assert_eq!(problems[0].reason, "invalid_env_key");
    assert!(
        problems[0].message.contains("AIRFLOW_CONN_MY-DB")
            && problems[0].message.contains("AIRFLOW_CONN_LAKE.RAW"),
        "{problems:?}"
    );
    // The ENV write is audited as granting secret access.
    let audited = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("ApplyKubernetesSecret"))
        .all(h.store.db())
        .await
        .unwrap();
    assert_eq!(audited.len(), 1);
    assert_eq!(audited[0].resource, "workspaces/acme/deployments/prod");
    assert_eq!(audited[0].actor, "system:kubernetes-secret-sync");
    assert!(
        audited[0]
            .changed_fields
            .contains(kube_sync::GRANTS_SECRET_ACCESS),
        "{:?}",
        audited[0]
    );

    // Past 1 MiB: the Secret is left as it was, reported; a TOKEN deployment
    // of the same workspace still syncs.
    let note = "x".repeat(60 * 1024);
    for index in 0..18 {
        h.put_connection_in("acme", &format!("bulk_{index}"), &note)
            .await;
    }
    h.create_deployment("stage", "airflow-b", pb::SecretDelivery::Token)
        .await;
    h.fake.take_requests();
    let report = h.reconcile().await;
    assert_eq!((report.applied, report.rejected, report.failed), (1, 1, 0));
    let writes: Vec<String> = h
        .fake
        .take_requests()
        .iter()
        .filter(|request| request.is_write())
        .map(Request::line)
        .collect();
    assert_eq!(
        writes,
        [format!(
            "PATCH {}",
            secret_path("airflow-b", "switchboard-acme.stage")
        )]
    );
    assert_eq!(
        h.fake.secret("airflow-a", "switchboard-acme.prod").unwrap(),
        secret
    );
    let reasons: Vec<&str> = h
        .sync
        .problems("acme", "prod")
        .iter()
        .map(|problem| problem.reason)
        .collect();
    assert_eq!(reasons, ["invalid_env_key", "secret_too_large"]);
    assert!(h.sync.problems("acme", "stage").is_empty());
    let audited = audit_event::Entity::find()
        .filter(audit_event::Column::Action.eq("ApplyKubernetesSecret"))
        .all(h.store.db())
        .await
        .unwrap();
    assert_eq!(audited.len(), 1, "no write, no audit event");

    // Fixed: the big connections go, the Secret is written again.
    for index in 0..18 {
        h.control
            .delete_connection(h.request(pb::DeleteConnectionRequest {
                name: format!("workspaces/acme/connections/bulk_{index}"),
                ..Default::default()
            }))
            .await
            .unwrap();
    }
    let report = h.reconcile().await;
    assert_eq!(report.rejected, 1);
    let reasons: Vec<&str> = h
        .sync
        .problems("acme", "prod")
        .iter()
        .map(|problem| problem.reason)
        .collect();
    assert_eq!(reasons, ["invalid_env_key"]);
}
