//! Kubernetes delivery over the real binary: the namespaces each workspace
//! may deliver Secrets to (refused otherwise with FAILED_PRECONDITION), and
//! the Secret sync writing workspace-named Secrets into the in-process fake
//! Kubernetes API server, with per-deployment problems in /metrics.

#[path = "../../crates/kube-sync/tests/fake_kube/mod.rs"]
mod fake_kube;

use std::time::Duration;

use switchboard_proto::v1::{
    Connection, CreateDeploymentRequest, Deployment, DeploymentKind, ListAuditEventsRequest,
    SecretDelivery, UpdateDeploymentRequest,
};
use switchboard_tests::{TestServer, WorkspaceRole};
use tonic::{Code, Status};
use tonic_types::StatusExt;

use crate::support::{Client, create_connection, expect_code, ok, workspace_name};
use fake_kube::{FakeApi, data, data_keys};

fn deployment(namespace: &str, delivery: SecretDelivery) -> Deployment {
    Deployment {
        kind: DeploymentKind::Standard as i32,
        namespace: namespace.to_owned(),
        secret_delivery: delivery as i32,
        ..Default::default()
    }
}

async fn create(
    clients: &mut Client,
    token: &str,
    workspace: &str,
    id: &str,
    namespace: &str,
    delivery: SecretDelivery,
) -> Result<Deployment, Status> {
    clients
        .with_token(token)
        .create_deployment(CreateDeploymentRequest {
            parent: workspace_name(workspace),
            deployment_id: id.to_owned(),
            deployment: Some(deployment(namespace, delivery)),
            request_id: String::new(),
        })
        .await
}

async fn update(
    clients: &mut Client,
    token: &str,
    workspace: &str,
    id: &str,
    changed: Deployment,
    paths: &[&str],
) -> Result<Deployment, Status> {
    clients
        .with_token(token)
        .update_deployment(UpdateDeploymentRequest {
            deployment: Some(Deployment {
                name: format!("workspaces/{workspace}/deployments/{id}"),
                ..changed
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: paths.iter().map(|path| (*path).to_owned()).collect(),
            }),
            request_id: String::new(),
        })
        .await
}

/// FAILED_PRECONDITION naming the namespace and the workspace, with a
/// `google.rpc.PreconditionFailure` detail.
fn expect_refused<T: std::fmt::Debug>(
    result: Result<T, Status>,
    workspace: &str,
    namespace: &str,
    what: &str,
) {
    let status = expect_code(result, Code::FailedPrecondition, what);
    assert!(
        status.message().contains(&format!("workspace {workspace}"))
            && status.message().contains(&format!("namespace {namespace}")),
        "{what}: the message names both: {}",
        status.message()
    );
    let failure = status
        .get_details_precondition_failure()
        .unwrap_or_else(|| panic!("{what}: a PreconditionFailure detail"));
    assert_eq!(failure.violations.len(), 1, "{what}");
    assert_eq!(
        failure.violations[0].r#type, "KUBERNETES_NAMESPACE_NOT_ALLOWED",
        "{what}"
    );
    assert_eq!(
        failure.violations[0].subject,
        workspace_name(workspace),
        "{what}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_outside_a_workspaces_allowed_namespaces_are_refused() {
    let server = TestServer::configure()
        .with_arg("--kube-namespace", "acme=airflow-acme")
        .with_arg("--kube-namespace", "globex=airflow-globex")
        .spawn()
        .await;
    let mut clients = server.client().await;
    let token = server.user_token(
        "olivia",
        &[
            ("acme", WorkspaceRole::Operator),
            ("globex", WorkspaceRole::Operator),
        ],
    );

    // Allowed: acme in its namespace, both modes.
    ok(
        create(
            &mut clients,
            &token,
            "acme",
            "prod",
            "airflow-acme",
            SecretDelivery::Token,
        )
        .await,
        "CreateDeployment acme/prod in airflow-acme",
    );
    ok(
        create(
            &mut clients,
            &token,
            "acme",
            "stage",
            "airflow-acme",
            SecretDelivery::Env,
        )
        .await,
        "CreateDeployment acme/stage in airflow-acme",
    );
    // globex cannot take a Secret name in acme's namespace.
    for delivery in [SecretDelivery::Token, SecretDelivery::Env] {
        expect_refused(
            create(
                &mut clients,
                &token,
                "globex",
                "prod",
                "airflow-acme",
                delivery,
            )
            .await,
            "globex",
            "airflow-acme",
            "CreateDeployment globex/prod in airflow-acme",
        );
    }
    // Without a Secret (or without a namespace) there is nothing to refuse.
    ok(
        create(
            &mut clients,
            &token,
            "globex",
            "prod",
            "airflow-acme",
            SecretDelivery::None,
        )
        .await,
        "CreateDeployment globex/prod in airflow-acme without delivery",
    );
    ok(
        create(
            &mut clients,
            &token,
            "globex",
            "local",
            "",
            SecretDelivery::Env,
        )
        .await,
        "CreateDeployment globex/local without a namespace",
    );
    // Turning delivery on there, or moving a delivering deployment there.
    expect_refused(
        update(
            &mut clients,
            &token,
            "globex",
            "prod",
            deployment("", SecretDelivery::Env),
            &["secret_delivery"],
        )
        .await,
        "globex",
        "airflow-acme",
        "UpdateDeployment globex/prod secret_delivery",
    );
    expect_refused(
        update(
            &mut clients,
            &token,
            "acme",
            "stage",
            deployment("airflow-globex", SecretDelivery::Unspecified),
            &["namespace"],
        )
        .await,
        "acme",
        "airflow-globex",
        "UpdateDeployment acme/stage namespace",
    );
    // Moving into its own namespace works; the refused updates changed nothing.
    let moved = ok(
        update(
            &mut clients,
            &token,
            "globex",
            "prod",
            deployment("airflow-globex", SecretDelivery::Token),
            &["namespace", "secret_delivery"],
        )
        .await,
        "UpdateDeployment globex/prod into airflow-globex",
    );
    assert_eq!(moved.namespace, "airflow-globex");
    let stage = ok(
        clients
            .with_token(&token)
            .get_deployment(switchboard_proto::v1::GetDeploymentRequest {
                name: "workspaces/acme/deployments/stage".into(),
            })
            .await,
        "GetDeployment acme/stage",
    );
    assert_eq!(stage.namespace, "airflow-acme");
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allowed_namespaces_come_from_the_config_file_and_default_to_none() {
    let dir = tempfile::tempdir().expect("temporary dir");
    let config = dir.path().join("config.toml");
    std::fs::write(
        &config,
        "[kubernetes.namespaces]\nacme = [\"airflow-a\", \"airflow-b\"]\n",
    )
    .expect("write the config file");
    let configured = TestServer::configure()
        .with_arg("--config", &config)
        .spawn()
        .await;
    let bare = TestServer::configure().spawn().await;
    for server in [&configured, &bare] {
        let mut clients = server.client().await;
        let token = server.user_token("olivia", &[("acme", WorkspaceRole::Owner)]);
        let result = create(
            &mut clients,
            &token,
            "acme",
            "prod",
            "airflow-b",
            SecretDelivery::Env,
        )
        .await;
        if std::ptr::eq(server, &configured) {
            ok(result, "CreateDeployment in a namespace the file allows");
        } else {
            // No map configured: every delivery into a namespace is refused.
            expect_refused(result, "acme", "airflow-b", "CreateDeployment with no map");
            ok(
                create(
                    &mut clients,
                    &token,
                    "acme",
                    "prod",
                    "airflow-b",
                    SecretDelivery::None,
                )
                .await,
                "CreateDeployment without delivery, no map",
            );
        }
        server.assert_logs_clean();
    }
}

fn kubeconfig(dir: &std::path::Path, url: &str) -> std::path::PathBuf {
    let path = dir.join("kubeconfig");
    std::fs::write(
        &path,
        format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: fake\n  cluster:\n    server: {url}\n\
             contexts:\n- name: fake\n  context:\n    cluster: fake\n    user: fake\n\
             current-context: fake\nusers:\n- name: fake\n  user: {{}}\n"
        ),
    )
    .expect("write the kubeconfig");
    path
}

async fn wait_for(what: &str, mut condition: impl FnMut() -> bool) {
    for _ in 0..150 {
        if condition() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("{what} within 15 s");
}

/// The `switchboard_kube_sync_deployment_problems` sample of one deployment and reason.
fn problem_gauge(
    server: &TestServer,
    workspace: &str,
    deployment: &str,
    reason: &str,
) -> Option<f64> {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(server.metrics_address()?).ok()?;
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .ok()?;
    let mut text = String::new();
    stream.read_to_string(&mut text).ok()?;
    text.lines()
        .filter(|line| line.starts_with("switchboard_kube_sync_deployment_problems{"))
        .filter(|line| {
            line.contains(&format!("workspace=\"{workspace}\""))
                && line.contains(&format!("deployment=\"{deployment}\""))
                && line.contains(&format!("reason=\"{reason}\""))
        })
        .find_map(|line| line.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sync_names_secrets_by_workspace_and_reports_bad_env_keys_on_the_deployment() {
    let fake = FakeApi::start().await;
    let dir = tempfile::tempdir().expect("temporary dir");
    let kubeconfig = kubeconfig(dir.path(), &fake.url);
    // Both workspaces may use the shared namespace airflow-shared.
    let server = TestServer::configure()
        .with_metrics()
        .with_flag("--kube-sync")
        .with_arg(
            "--kube-resolver-address",
            "switchboard-resolver.switchboard.svc:50051",
        )
        .with_arg("--kubeconfig", &kubeconfig)
        .with_env(
            "SWITCHBOARD_KUBE_NAMESPACES",
            "acme=airflow-shared,globex=airflow-shared",
        )
        .spawn()
        .await;
    let mut clients = server.client().await;
    let token = server.user_token(
        "olivia",
        &[
            ("acme", WorkspaceRole::Owner),
            ("globex", WorkspaceRole::Owner),
        ],
    );
    let password = server.marker("kube-password");
    for conn_id in ["warehouse", "my-db"] {
        create_connection(
            &mut clients,
            &token,
            "acme",
            conn_id,
            Connection {
                r#type: "postgres".into(),
                host: "db.example.com".into(),
                login: "etl".into(),
                password: password.clone(),
                link_to_all_deployments: true,
                ..Default::default()
            },
        )
        .await;
    }
    // globex creates `prod` in the shared namespace first; acme's `prod` still gets its own.
    ok(
        create(
            &mut clients,
            &token,
            "globex",
            "prod",
            "airflow-shared",
            SecretDelivery::Token,
        )
        .await,
        "CreateDeployment globex/prod",
    );
    ok(
        create(
            &mut clients,
            &token,
            "acme",
            "prod",
            "airflow-shared",
            SecretDelivery::Env,
        )
        .await,
        "CreateDeployment acme/prod",
    );
    wait_for("both Secrets are written", || {
        fake.secret("airflow-shared", "switchboard-acme.prod")
            .is_some()
            && fake
                .secret("airflow-shared", "switchboard-globex.prod")
                .is_some()
    })
    .await;
    let acme = fake
        .secret("airflow-shared", "switchboard-acme.prod")
        .expect("acme's Secret");
    let globex = fake
        .secret("airflow-shared", "switchboard-globex.prod")
        .expect("globex's Secret");
    for (secret, workspace) in [(&acme, "acme"), (&globex, "globex")] {
        let labels = &secret["metadata"]["labels"];
        assert_eq!(labels["switchboard.dev/workspace"], workspace, "{secret}");
        assert_eq!(labels["switchboard.dev/deployment"], "prod", "{secret}");
        assert_eq!(
            labels["app.kubernetes.io/managed-by"], "switchboard",
            "{secret}"
        );
    }
    assert!(fake.secret("airflow-shared", "switchboard-prod").is_none());
    assert_eq!(data_keys(&globex), ["address", "token"]);
    // AIRFLOW_CONN_MY-DB is no environment variable name: left out, reported.
    assert_eq!(data_keys(&acme), ["AIRFLOW_CONN_WAREHOUSE"]);
    assert!(
        data(&acme, "AIRFLOW_CONN_WAREHOUSE")
            .expect("the warehouse key")
            .contains(&password),
        "the ENV Secret holds the connection, password included"
    );
    wait_for("the problem gauge is 1", || {
        problem_gauge(&server, "acme", "prod", "invalid_env_key") == Some(1.0)
    })
    .await;
    assert_eq!(
        problem_gauge(&server, "globex", "prod", "invalid_env_key"),
        None
    );
    let logs = server.logs();
    assert!(
        logs.contains("invalid_env_key") && logs.contains("AIRFLOW_CONN_MY-DB"),
        "the log names the deployment's problem:\n{logs}"
    );

    // The ENV write is audited as granting secret access.
    let audit = server.client().await;
    let events = ok(
        audit
            .with_token(&token)
            .list_audit_events(ListAuditEventsRequest {
                parent: workspace_name("acme"),
                filter: "action = \"ApplyKubernetesSecret\"".into(),
                ..Default::default()
            })
            .await,
        "ListAuditEvents",
    );
    assert_eq!(events.audit_events.len(), 1, "{:?}", events.audit_events);
    let event = &events.audit_events[0];
    assert_eq!(event.resource, "workspaces/acme/deployments/prod");
    assert!(
        event
            .changed_fields
            .iter()
            .any(|field| field == "grants secret access to the deployment's connections"),
        "{event:?}"
    );

    // The bad connection deleted: the gauge goes back to 0.
    ok(
        clients
            .with_token(&token)
            .delete_connection(switchboard_proto::v1::DeleteConnectionRequest {
                name: "workspaces/acme/connections/my-db".into(),
                ..Default::default()
            })
            .await,
        "DeleteConnection my-db",
    );
    wait_for("the problem gauge is 0", || {
        problem_gauge(&server, "acme", "prod", "invalid_env_key") == Some(0.0)
    })
    .await;
    server.assert_logs_clean();
}
