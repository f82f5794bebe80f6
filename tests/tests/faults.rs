//! Fault tolerance: kill -9 of control mid-write, PostgreSQL and OpenBao
//! stopped and restarted under load, SIGTERM drain under load.
//!
//! Each test drives concurrent writers (and resolvers) while the fault
//! happens, then checks what the design promises: every acknowledged write is
//! present and readable (secrets too, through a resolver), nothing
//! half-written remains in the database, writes refused during an outage are
//! UNAVAILABLE and changed nothing, resolvers serve what they hold throughout,
//! and a SIGTERM drains in-flight calls before exit 0.
//!
//! The PostgreSQL and OpenBao tests need `SWITCHBOARD_TEST_DATABASE_URL` and
//! `SWITCHBOARD_TEST_VAULT_ADDR` (scripts/test.sh exports both); without them
//! they print why and pass. A test that stops a backend starts its own
//! (scripts/postgres.sh; OpenBao on Raft storage, which survives a restart).

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, CreateLinkRequest, Link, LinkOverrides, ListLinksRequest,
    ListResolvedConnectionsRequest, ResolveConnectionRequest, UpdateConnectionRequest,
};
use switchboard_tests::{Role, TestServer, TestServerConfig, WorkspaceRole, random_hex};
use tokio::task::JoinHandle;
use tonic::{Code, Status};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_check_response::ServingStatus;
use tonic_health::pb::health_client::HealthClient;

use crate::backends::{allow_reveal, psql, psql_count, revealed_password, unique_workspace};
use crate::support::{
    Client, OwnPostgres, PersistentOpenBao, connection_name, create_deployment,
    create_deployment_token, deployment_name, ok, snowflake_connection, workspace_name,
};

/// Upper bound of any wait in these tests; a guard against hangs.
const GUARD: Duration = Duration::from_secs(60);
/// The shared OpenBao dev server's root token (scripts/openbao.sh).
const DEV_VAULT_TOKEN: &str = "root";
/// Writers racing each other (and the fault) in every test.
const WRITERS: usize = 4;

/// Polls `done` every 20 ms until it holds; fails with `what` after [`GUARD`].
async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let asked = Instant::now();
    while !done() {
        assert!(asked.elapsed() < GUARD, "timed out waiting until {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The shared PostgreSQL and OpenBao, or `None` with a note.
fn shared_postgres_and_openbao() -> Option<(String, String)> {
    Some((
        switchboard_tests::database_url()?,
        switchboard_tests::vault_addr()?,
    ))
}

/// The database a server writes to, queried directly for the integrity checks.
#[derive(Debug, Clone)]
enum Database {
    Postgres(String),
    Sqlite(PathBuf),
}

impl Database {
    /// Runs a query that prints one number.
    fn count(&self, sql: &str) -> i64 {
        match self {
            Database::Postgres(url) => psql_count(url, sql),
            Database::Sqlite(path) => {
                let output = Command::new("sqlite3")
                    .arg("-readonly")
                    .arg(path)
                    .arg(sql)
                    .output()
                    .expect("run sqlite3 (on the machine image at /usr/bin/sqlite3)");
                assert!(
                    output.status.success(),
                    "sqlite3 {sql:?} failed: {}",
                    String::from_utf8_lossy(&output.stderr)
                );
                let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
                text.parse()
                    .unwrap_or_else(|_| panic!("{sql:?} printed {text:?}, not a number"))
            }
        }
    }

    /// Fails on any half-written state in `workspace`: rows that one write
    /// transaction makes together but of which only some exist, references
    /// to missing rows, feed entries beyond the feed head.
    fn assert_consistent(&self, workspace: &str, embedded_secrets: bool) {
        let w = format!("'{}'", workspace.replace('\'', "''"));
        let name = "'workspaces/' || c.workspace || '/connections/' || c.conn_id";
        let mut checks = vec![
            (
                "connections left at version 0 (inserted but never saved)",
                format!("select count(*) from connection where workspace = {w} and version < 1"),
            ),
            (
                "connections whose secret fields and secret version disagree",
                format!(
                    "select count(*) from connection where workspace = {w} \
                     and ((secret_fields = '[]') <> (secret_version is null))"
                ),
            ),
            (
                "connections without exactly one version row per version",
                format!(
                    "select count(*) from connection c where c.workspace = {w} and c.version <> \
                     (select count(*) from connection_version v where v.connection_pk = c.id)"
                ),
            ),
            (
                "connections whose latest version row points at another secret version",
                format!(
                    "select count(*) from connection c join connection_version v \
                     on v.connection_pk = c.id and v.version = c.version \
                     where c.workspace = {w} and v.secret_version is distinct from c.secret_version"
                ),
            ),
            (
                "connections without exactly one change-feed entry per version",
                format!(
                    "select count(*) from connection c where c.workspace = {w} and c.version <> \
                     (select count(*) from change ch where ch.workspace = c.workspace \
                     and ch.kind = 'connection' and ch.resource = {name})"
                ),
            ),
            (
                "connections without exactly one audit event per create or update",
                format!(
                    "select count(*) from connection c where c.workspace = {w} and c.version <> \
                     (select count(*) from audit_event a where a.workspace = c.workspace \
                     and a.action in ('CreateConnection', 'UpdateConnection') \
                     and a.resource = {name})"
                ),
            ),
            (
                "links to a missing connection",
                format!(
                    "select count(*) from link l where l.workspace = {w} and not exists \
                     (select 1 from connection c where c.id = l.connection_pk)"
                ),
            ),
            (
                "links to a missing deployment",
                format!(
                    "select count(*) from link l where l.workspace = {w} and not exists \
                     (select 1 from deployment d where d.workspace = l.workspace \
                     and d.deployment_id = l.deployment_id)"
                ),
            ),
            (
                "links whose secret fields and secret version disagree",
                format!(
                    "select count(*) from link where workspace = {w} \
                     and ((secret_fields = '[]') <> (secret_version is null))"
                ),
            ),
            (
                "request ids remembered for a connection that does not exist",
                format!(
                    "select count(*) from request_log r where r.workspace = {w} \
                     and r.method = 'CreateConnection' and not exists \
                     (select 1 from connection c where {name} = r.resource)"
                ),
            ),
            (
                "change-feed entries beyond the feed head",
                "select count(*) from change where revision > \
                 (select revision from feed_head where id = 1)"
                    .to_owned(),
            ),
        ];
        if embedded_secrets {
            checks.push((
                "connections whose secret version has no ciphertext",
                format!(
                    "select count(*) from connection c where c.workspace = {w} \
                     and c.secret_version is not null and not exists (select 1 from secret s \
                     where s.workspace = c.workspace and s.owner = 'connections/' || c.id \
                     and s.version = c.secret_version)"
                ),
            ));
            checks.push((
                "links whose secret version has no ciphertext",
                format!(
                    "select count(*) from link l where l.workspace = {w} \
                     and l.secret_version is not null and not exists (select 1 from secret s \
                     where s.workspace = l.workspace and s.owner = 'links/' || l.id \
                     and s.version = l.secret_version)"
                ),
            ));
        }
        let broken: Vec<String> = checks
            .iter()
            .filter_map(|(what, sql)| {
                let found = self.count(sql);
                (found != 0).then(|| format!("{found} {what}"))
            })
            .collect();
        assert!(broken.is_empty(), "half-written state: {broken:?}");
    }
}

/// What became of one write.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Fate {
    /// Answered OK: it must be there.
    Acknowledged,
    /// In flight when the server died: it may or may not be there.
    InFlight,
}

/// One connection a kill -9 writer worked on, and which values it may hold.
#[derive(Debug)]
struct Written {
    conn_id: String,
    create: CreateConnectionRequest,
    create_fate: Fate,
    /// The passwords the connection may hold: one once a write is
    /// acknowledged, two while an update's fate is unknown.
    passwords: Vec<String>,
    /// The `staging` link with a password override, when one was attempted.
    staging: Option<(Fate, String)>,
}

/// Creates connections with links and secrets, updates their passwords
/// and adds a link with a secret override, until a call fails; a failure
/// is allowed only once `killed` is set.
async fn kill_writer(
    server: &TestServer,
    clients: Client,
    owner: String,
    workspace: String,
    writer: usize,
    acknowledged: Arc<AtomicUsize>,
    killed: Arc<AtomicBool>,
) -> Vec<Written> {
    let mut written: Vec<Written> = Vec::new();
    let failed = |status: Status, what: &str| {
        assert!(
            killed.load(Ordering::SeqCst),
            "{what} failed before the kill: {:?}: {}",
            status.code(),
            status.message()
        );
    };
    for index in 0.. {
        let conn_id = format!("w{writer}-{index}");
        let first = server.marker(&format!("kill-{conn_id}-create"));
        let create = CreateConnectionRequest {
            parent: workspace_name(&workspace),
            connection_id: conn_id.clone(),
            connection: Some(snowflake_connection(&first)),
            request_id: format!("kill-{conn_id}-{}", random_hex(6)),
            links: vec![Link {
                deployment: deployment_name(&workspace, "prod"),
                ..Default::default()
            }],
        };
        written.push(Written {
            conn_id: conn_id.clone(),
            create: create.clone(),
            create_fate: Fate::InFlight,
            passwords: vec![first.clone()],
            staging: None,
        });
        let entry = written.last_mut().expect("just pushed");
        let created = match clients.with_token(&owner).create_connection(create).await {
            Ok(response) => response,
            Err(status) => {
                failed(status, "CreateConnection");
                return written;
            }
        };
        entry.create_fate = Fate::Acknowledged;
        acknowledged.fetch_add(1, Ordering::SeqCst);

        let second = server.marker(&format!("kill-{conn_id}-update"));
        entry.passwords.push(second.clone());
        let update = UpdateConnectionRequest {
            connection: Some(Connection {
                name: created.name.clone(),
                etag: created.etag,
                password: second.clone(),
                description: format!("updated by writer {writer}"),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["password".to_owned(), "description".to_owned()],
            }),
            request_id: String::new(),
        };
        if let Err(status) = clients.with_token(&owner).update_connection(update).await {
            failed(status, "UpdateConnection");
            return written;
        }
        entry.passwords = vec![second];
        acknowledged.fetch_add(1, Ordering::SeqCst);

        let third = server.marker(&format!("kill-{conn_id}-link"));
        entry.staging = Some((Fate::InFlight, third.clone()));
        let link = CreateLinkRequest {
            parent: created.name,
            link: Some(Link {
                deployment: deployment_name(&workspace, "staging"),
                overrides: Some(LinkOverrides {
                    password: Some(third.clone()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            request_id: String::new(),
        };
        if let Err(status) = clients.with_token(&owner).create_link(link).await {
            failed(status, "CreateLink");
            return written;
        }
        entry.staging = Some((Fate::Acknowledged, third));
        acknowledged.fetch_add(1, Ordering::SeqCst);
    }
    unreachable!("the loop only ends by returning")
}

/// The deployments `conn_id` is linked to, by id.
async fn linked_deployments(
    clients: &mut Client,
    owner: &str,
    workspace: &str,
    conn_id: &str,
) -> BTreeSet<String> {
    ok(
        clients
            .with_token(owner)
            .list_links(ListLinksRequest {
                parent: connection_name(workspace, conn_id),
                page_size: 100,
                page_token: String::new(),
            })
            .await,
        "ListLinks",
    )
    .links
    .into_iter()
    .map(|link| {
        link.deployment
            .rsplit('/')
            .next()
            .expect("a deployment name")
            .to_owned()
    })
    .collect()
}

/// conn_id → password of everything a deployment token resolves.
async fn resolved_passwords(clients: &mut Client, token: &str) -> BTreeMap<String, String> {
    ok(
        clients
            .with_token(token)
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: String::new(),
            })
            .await,
        "ListResolvedConnections",
    )
    .connections
    .into_iter()
    .map(|resolved| (resolved.conn_id, resolved.password))
    .collect()
}

/// Lists what `token` resolves until `accept` holds, and returns it; the
/// resolver follows the change feed, so a fresh write takes a moment.
async fn resolved_until(
    clients: &mut Client,
    token: &str,
    what: &str,
    accept: impl Fn(&BTreeMap<String, String>) -> bool,
) -> BTreeMap<String, String> {
    let asked = Instant::now();
    loop {
        let resolved = resolved_passwords(clients, token).await;
        if accept(&resolved) {
            return resolved;
        }
        assert!(
            asked.elapsed() < GUARD,
            "timed out waiting until the resolver serves {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Kills the writing process (`writer_config`: `control`, or `dev` on
/// SQLite) with SIGKILL while [`WRITERS`] writers are mid-write, restarts
/// it on the same database and secrets, and checks every acknowledged write.
/// `resolver_config` is a resolver on the same backends, running throughout.
async fn kill_nine_mid_write(
    writer_config: impl Fn() -> TestServerConfig,
    resolver_config: impl FnOnce(&TestServer) -> TestServerConfig,
    database: impl FnOnce(&TestServer) -> Database,
    embedded_secrets: bool,
) {
    let started = Instant::now();
    let first = writer_config().spawn().await;
    let resolver = resolver_config(&first).spawn().await;
    let database = database(&first);
    let workspace = unique_workspace("kill-nine");
    let owner = first.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    resolver.forbid_in_logs(&owner);
    let mut clients = first.client().await;
    for deployment in ["prod", "staging"] {
        create_deployment(&mut clients, &owner, &workspace, deployment).await;
    }
    allow_reveal(&mut clients, &owner, &workspace).await;
    let prod_token =
        create_deployment_token(&first, &mut clients, &owner, &workspace, "prod").await;
    let staging_token =
        create_deployment_token(&first, &mut clients, &owner, &workspace, "staging").await;
    for token in [&prod_token, &staging_token] {
        resolver.forbid_in_logs(token);
    }

    let first = Arc::new(first);
    let acknowledged = Arc::new(AtomicUsize::new(0));
    let killed = Arc::new(AtomicBool::new(false));
    let writers: Vec<JoinHandle<Vec<Written>>> = (0..WRITERS)
        .map(|writer| {
            let server = first.clone();
            let clients = clients.clone();
            let owner = owner.clone();
            let workspace = workspace.clone();
            let acknowledged = acknowledged.clone();
            let killed = killed.clone();
            tokio::spawn(async move {
                kill_writer(
                    &server,
                    clients,
                    owner,
                    workspace,
                    writer,
                    acknowledged,
                    killed,
                )
                .await
            })
        })
        .collect();
    // Enough writes for every writer to be in its stride, then SIGKILL.
    until("the writers have 40 acknowledged writes", || {
        acknowledged.load(Ordering::SeqCst) >= 40
    })
    .await;
    killed.store(true, Ordering::SeqCst);
    first.signal("KILL");
    let mut written = Vec::new();
    for writer in writers {
        written.extend(writer.await.expect("a writer panicked"));
    }
    let mut first = Arc::into_inner(first).expect("the writers are done with the server");
    let status = first.wait_for_exit().await;
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9),
        "the process died of SIGKILL: {status}"
    );
    let in_flight = written
        .iter()
        .filter(|entry| {
            entry.create_fate == Fate::InFlight
                || entry.passwords.len() > 1
                || matches!(entry.staging, Some((Fate::InFlight, _)))
        })
        .count();
    assert_eq!(
        in_flight, WRITERS,
        "each writer stopped at its one unanswered write"
    );

    let second = writer_config().with_data_dir_of(&first).spawn().await;
    for entry in &written {
        for password in &entry.passwords {
            second.forbid_in_logs(password);
            resolver.forbid_in_logs(password);
        }
        if let Some((_, password)) = &entry.staging {
            second.forbid_in_logs(password);
            resolver.forbid_in_logs(password);
        }
    }
    let mut clients = second.client().await;
    // A create whose answer was lost is retried with its request_id: it
    // returns the connection if the first attempt committed, or creates it.
    let mut committed_in_flight = 0;
    for entry in &mut written {
        if entry.create_fate == Fate::InFlight {
            let exists = database.count(&format!(
                "select count(*) from connection where workspace = '{workspace}' \
                 and conn_id = '{}'",
                entry.conn_id
            )) == 1;
            committed_in_flight += usize::from(exists);
            let created = ok(
                clients
                    .with_token(&owner)
                    .create_connection(entry.create.clone())
                    .await,
                "retrying an unanswered CreateConnection with its request_id",
            );
            assert_eq!(created.name, connection_name(&workspace, &entry.conn_id));
            entry.create_fate = Fate::Acknowledged;
        }
    }

    // Every connection holds an acknowledged value (or, for the write in
    // flight, the one before or after it), with its links.
    let mut expected_prod = BTreeMap::new();
    let mut expected_staging = BTreeMap::new();
    for entry in &written {
        let name = connection_name(&workspace, &entry.conn_id);
        let password = revealed_password(&mut clients, &owner, &name).await;
        assert!(
            entry.passwords.contains(&password),
            "{name} holds a password no write of it gave it"
        );
        if entry.passwords.len() > 1 && password == entry.passwords[1] {
            committed_in_flight += 1;
        }
        expected_prod.insert(entry.conn_id.clone(), password);
        let links = linked_deployments(&mut clients, &owner, &workspace, &entry.conn_id).await;
        assert!(links.contains("prod"), "{name} lost its link to prod");
        match &entry.staging {
            Some((Fate::Acknowledged, password)) => {
                assert!(links.contains("staging"), "{name} lost its staging link");
                expected_staging.insert(entry.conn_id.clone(), password.clone());
            }
            Some((Fate::InFlight, password)) if links.contains("staging") => {
                committed_in_flight += 1;
                expected_staging.insert(entry.conn_id.clone(), password.clone());
            }
            _ => assert!(
                !links.contains("staging"),
                "{name} has a staging link no one made"
            ),
        }
        assert_eq!(
            links.len(),
            1 + usize::from(expected_staging.contains_key(&entry.conn_id))
        );
    }
    database.assert_consistent(&workspace, embedded_secrets);

    // The resolver, which ran through the crash, serves all of it, secrets
    // included, once it has seen a write made after the restart.
    let sentinel_password = second.marker("kill-sentinel");
    resolver.forbid_in_logs(&sentinel_password);
    let sentinel = CreateConnectionRequest {
        parent: workspace_name(&workspace),
        connection_id: "sentinel".to_owned(),
        connection: Some(snowflake_connection(&sentinel_password)),
        request_id: String::new(),
        links: ["prod", "staging"]
            .iter()
            .map(|deployment| Link {
                deployment: deployment_name(&workspace, deployment),
                ..Default::default()
            })
            .collect(),
    };
    ok(
        clients.with_token(&owner).create_connection(sentinel).await,
        "CreateConnection after the restart",
    );
    let mut at_resolver = resolver.client().await;
    let mut prod = resolved_until(
        &mut at_resolver,
        &prod_token,
        "the write made after the restart",
        |resolved| resolved.contains_key("sentinel"),
    )
    .await;
    prod.remove("sentinel");
    assert_eq!(prod, expected_prod, "what the resolver serves to prod");
    let mut staging = resolved_passwords(&mut at_resolver, &staging_token).await;
    assert_eq!(staging.remove("sentinel"), Some(sentinel_password));
    assert_eq!(
        staging, expected_staging,
        "staging resolves exactly its linked connections, with their password overrides"
    );
    eprintln!(
        "kill -9: {} connections, {} writes acknowledged before the kill, {in_flight} in flight \
         of which {committed_in_flight} had committed; {:.1} s",
        written.len(),
        acknowledged.load(Ordering::SeqCst),
        started.elapsed().as_secs_f64()
    );
    first.assert_logs_clean();
    second.assert_logs_clean();
    resolver.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_control_mid_write_on_postgres_and_openbao_loses_no_acknowledged_write() {
    let Some((database_url, vault_addr)) = shared_postgres_and_openbao() else {
        return;
    };
    let backend = |config: TestServerConfig| {
        config
            .with_arg("--database-url", &database_url)
            .with_arg("--vault-addr", &vault_addr)
            .with_env("VAULT_TOKEN", DEV_VAULT_TOKEN)
    };
    kill_nine_mid_write(
        || {
            backend(TestServer::configure())
                .with_role(Role::Control)
                .with_arg("--rate-limit", "1000")
        },
        |control| {
            backend(
                TestServer::configure()
                    .with_role(Role::Resolver)
                    .with_data_dir_of(control),
            )
        },
        |_| Database::Postgres(database_url.clone()),
        false,
    )
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_nine_of_dev_mid_write_on_sqlite_loses_no_acknowledged_write() {
    kill_nine_mid_write(
        || TestServer::configure().with_arg("--rate-limit", "1000"),
        |dev| {
            TestServer::configure()
                .with_role(Role::Resolver)
                .with_data_dir_of(dev)
        },
        |dev| Database::Sqlite(dev.data_dir().join("switchboard.db")),
        true,
    )
    .await;
}

/// The backend an outage test stops and starts again.
enum Outage {
    /// A PostgreSQL of the test's own; secrets in the shared OpenBao.
    Postgres {
        postgres: OwnPostgres,
        vault_addr: String,
    },
    /// An OpenBao of the test's own (Raft, so its data survives); the
    /// shared PostgreSQL.
    OpenBao {
        openbao: PersistentOpenBao,
        database_url: String,
    },
}

impl Outage {
    fn name(&self) -> &'static str {
        match self {
            Outage::Postgres { .. } => "PostgreSQL",
            Outage::OpenBao { .. } => "OpenBao",
        }
    }

    fn database_url(&self) -> &str {
        match self {
            Outage::Postgres { postgres, .. } => &postgres.url,
            Outage::OpenBao { database_url, .. } => database_url,
        }
    }

    fn apply(&self, config: TestServerConfig) -> TestServerConfig {
        let (vault_addr, vault_token) = match self {
            Outage::Postgres { vault_addr, .. } => (vault_addr.as_str(), DEV_VAULT_TOKEN),
            Outage::OpenBao { openbao, .. } => (openbao.addr.as_str(), openbao.root_token.as_str()),
        };
        config
            .with_arg("--database-url", self.database_url())
            .with_arg("--vault-addr", vault_addr)
            .with_env("VAULT_TOKEN", vault_token)
    }

    fn stop(&mut self) {
        match self {
            Outage::Postgres { postgres, .. } => postgres.stop(),
            Outage::OpenBao { openbao, .. } => openbao.stop(),
        }
    }

    fn start(&mut self) {
        match self {
            Outage::Postgres { postgres, .. } => postgres.start(),
            Outage::OpenBao { openbao, .. } => openbao.start(),
        }
    }
}

/// Where an outage test stands, as seen by the load when it sends a call.
const BEFORE: usize = 0;
const STOPPING: usize = 1;
const DOWN: usize = 2;
const RESTARTING: usize = 3;

/// What an outage test's load shares.
#[derive(Debug, Default)]
struct LoadState {
    /// [`BEFORE`], [`STOPPING`], [`DOWN`] or [`RESTARTING`].
    phase: AtomicUsize,
    stop: AtomicBool,
    /// Cached resolves answered, by the phase they were sent in.
    answered: [AtomicUsize; 4],
    /// Writes refused with an answer while the backend was down.
    refused_while_down: AtomicUsize,
}

/// One write of an outage test: phases at send and at answer, and its result.
#[derive(Debug)]
struct Attempt {
    sent_in: usize,
    answered_in: usize,
    description: String,
    password: String,
    result: Result<(), (Code, String)>,
}

/// Updates its own connection's password and description, one write at a
/// time, until `stop`; every attempt is recorded.
async fn outage_writer(
    clients: Client,
    owner: String,
    name: String,
    mut etag: String,
    markers: Arc<TestServer>,
    load: Arc<LoadState>,
    acknowledged: Arc<[AtomicUsize; 4]>,
) -> Vec<Attempt> {
    let mut attempts = Vec::new();
    while !load.stop.load(Ordering::SeqCst) {
        let description = format!("write {} of {name}", attempts.len());
        let password = markers.marker("outage-write");
        let sent_in = load.phase.load(Ordering::SeqCst);
        let result = clients
            .with_token(&owner)
            .update_connection(UpdateConnectionRequest {
                connection: Some(Connection {
                    name: name.clone(),
                    etag: etag.clone(),
                    password: password.clone(),
                    description: description.clone(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["password".to_owned(), "description".to_owned()],
                }),
                request_id: String::new(),
            })
            .await;
        let answered_in = load.phase.load(Ordering::SeqCst);
        let result = match result {
            Ok(response) => {
                etag = response.etag;
                acknowledged[sent_in].fetch_add(1, Ordering::SeqCst);
                Ok(())
            }
            Err(status) => {
                if answered_in == DOWN {
                    load.refused_while_down.fetch_add(1, Ordering::SeqCst);
                }
                // Paces the retries of a refused write.
                tokio::time::sleep(Duration::from_millis(50)).await;
                Err((status.code(), status.message().to_owned()))
            }
        };
        attempts.push(Attempt {
            sent_in,
            answered_in,
            description,
            password,
            result,
        });
    }
    attempts
}

/// Resolves every connection of `expected` in turn until `stop`; the number
/// of answers per phase, and every failure or wrong answer.
async fn outage_reader(
    clients: Client,
    token: String,
    expected: Arc<BTreeMap<String, String>>,
    load: Arc<LoadState>,
) -> Vec<String> {
    let mut failures = Vec::new();
    while !load.stop.load(Ordering::SeqCst) {
        for (conn_id, password) in expected.iter() {
            let sent_in = load.phase.load(Ordering::SeqCst);
            match clients
                .with_token(&token)
                .resolve_connection(ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: conn_id.clone(),
                })
                .await
            {
                Ok(response) if response.password == *password => {
                    load.answered[sent_in].fetch_add(1, Ordering::SeqCst);
                }
                Ok(_) => failures.push(format!("{conn_id}: a wrong password (phase {sent_in})")),
                Err(status) => failures.push(format!(
                    "{conn_id}: {:?} {} (phase {sent_in})",
                    status.code(),
                    status.message()
                )),
            }
        }
    }
    failures
}

/// Stops and restarts `outage`'s backend under load: [`WRITERS`] writers
/// update connections while two readers resolve cached ones. Resolvers must
/// answer every call; writes sent while the backend is down must be
/// UNAVAILABLE and change nothing; after the restart writes succeed and the
/// resolver, never restarted, serves them.
async fn stopped_and_restarted_under_load(mut outage: Outage) {
    let started = Instant::now();
    let control = outage
        .apply(TestServer::configure().with_role(Role::Control))
        .with_arg("--rate-limit", "1000")
        .spawn()
        .await;
    let resolver = Arc::new(
        outage
            .apply(
                TestServer::configure()
                    .with_role(Role::Resolver)
                    .with_data_dir_of(&control),
            )
            .spawn()
            .await,
    );
    let control = Arc::new(control);
    let workspace = unique_workspace("outage-load");
    let owner = control.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = control.client().await;
    create_deployment(&mut clients, &owner, &workspace, "prod").await;
    allow_reveal(&mut clients, &owner, &workspace).await;
    let token = create_deployment_token(&control, &mut clients, &owner, &workspace, "prod").await;
    resolver.forbid_in_logs(&token);
    let create = |conn_id: &str, password: &str| CreateConnectionRequest {
        parent: workspace_name(&workspace),
        connection_id: conn_id.to_owned(),
        connection: Some(snowflake_connection(password)),
        request_id: String::new(),
        links: vec![Link {
            deployment: deployment_name(&workspace, "prod"),
            ..Default::default()
        }],
    };
    let mut cached = BTreeMap::new();
    for index in 0..6 {
        let conn_id = format!("cached-{index}");
        let password = control.marker("outage-cached");
        resolver.forbid_in_logs(&password);
        ok(
            clients
                .with_token(&owner)
                .create_connection(create(&conn_id, &password))
                .await,
            "CreateConnection",
        );
        cached.insert(conn_id, password);
    }
    let mut churned = Vec::new();
    for writer in 0..WRITERS {
        let password = control.marker("outage-churn");
        let created = ok(
            clients
                .with_token(&owner)
                .create_connection(create(&format!("churn-{writer}"), &password))
                .await,
            "CreateConnection",
        );
        churned.push(created);
    }
    // The resolver holds every cached connection before the load starts.
    let mut at_resolver = resolver.client().await;
    resolved_until(&mut at_resolver, &token, "the seed", |resolved| {
        cached
            .iter()
            .all(|(conn_id, password)| resolved.get(conn_id) == Some(password))
    })
    .await;

    let load = Arc::new(LoadState::default());
    let cached = Arc::new(cached);
    let readers: Vec<JoinHandle<Vec<String>>> = (0..2)
        .map(|_| {
            tokio::spawn(outage_reader(
                at_resolver.clone(),
                token.clone(),
                cached.clone(),
                load.clone(),
            ))
        })
        .collect();
    let acknowledged: Vec<Arc<[AtomicUsize; 4]>> =
        (0..WRITERS).map(|_| Arc::new(Default::default())).collect();
    let writers: Vec<JoinHandle<Vec<Attempt>>> = churned
        .iter()
        .zip(&acknowledged)
        .map(|(connection, acknowledged)| {
            tokio::spawn(outage_writer(
                clients.clone(),
                owner.clone(),
                connection.name.clone(),
                connection.etag.clone(),
                control.clone(),
                load.clone(),
                acknowledged.clone(),
            ))
        })
        .collect();
    // Every writer has some acknowledged writes in `phase`.
    let each_acknowledged = |phase: usize, writes: usize| {
        acknowledged
            .iter()
            .all(|counts| counts[phase].load(Ordering::SeqCst) >= writes)
    };
    until("every writer has 3 acknowledged writes", || {
        each_acknowledged(BEFORE, 3)
    })
    .await;

    load.phase.store(STOPPING, Ordering::SeqCst);
    let name = outage.name();
    outage.stop();
    let stopped = Instant::now();
    load.phase.store(DOWN, Ordering::SeqCst);
    // Lets the load run against the stopped backend for a while: enough
    // refused writes and cached answers to count.
    let outage_answers = || load.answered[DOWN].load(Ordering::SeqCst);
    until(
        "the resolver has answered 200 calls and every writer seen a refusal during the outage",
        || outage_answers() >= 200 && load.refused_while_down.load(Ordering::SeqCst) >= WRITERS,
    )
    .await;
    let outage_lasted = stopped.elapsed();
    assert_eq!(
        resolver
            .health_status("switchboard.v1.ResolverService")
            .await,
        Some(ServingStatus::Serving),
        "within max_stale the resolver stays SERVING while {name} is down"
    );
    load.phase.store(RESTARTING, Ordering::SeqCst);
    outage.start();
    let restarted = Instant::now();
    until(
        "every writer has 3 acknowledged writes after the restart",
        || each_acknowledged(RESTARTING, 3),
    )
    .await;
    let recovered = restarted.elapsed();
    load.stop.store(true, Ordering::SeqCst);
    let mut failures = Vec::new();
    for reader in readers {
        failures.extend(reader.await.expect("a reader panicked"));
    }
    assert!(
        failures.is_empty(),
        "resolves of cached connections failed during the {name} outage: {failures:?}"
    );
    let mut attempts = Vec::new();
    for writer in writers {
        attempts.push(writer.await.expect("a writer panicked"));
    }

    let database_url = outage.database_url().to_owned();
    let mut refused_while_down = 0;
    for (connection, attempts) in churned.iter().zip(&attempts) {
        for attempt in attempts {
            if let Err((code, message)) = &attempt.result {
                assert_eq!(
                    *code,
                    Code::Unavailable,
                    "a write refused around the {name} outage (sent in phase {}, answered in \
                     phase {}) is UNAVAILABLE, nothing else: {message}",
                    attempt.sent_in,
                    attempt.answered_in
                );
            }
            if attempt.sent_in == DOWN && attempt.answered_in == DOWN {
                assert!(
                    attempt.result.is_err(),
                    "a write sent and answered while {name} was down succeeded"
                );
            }
            if attempt.answered_in == DOWN && attempt.result.is_err() {
                refused_while_down += 1;
            }
            if attempt.sent_in == BEFORE && attempt.answered_in == BEFORE {
                assert_eq!(attempt.result, Ok(()), "a write before the outage");
            }
        }
        // Exactly the acknowledged writes are stored: one version each, and
        // none of a refused write.
        let acknowledged: Vec<&Attempt> = attempts
            .iter()
            .filter(|attempt| attempt.result.is_ok())
            .collect();
        let quoted = connection.name.replace('\'', "''");
        let pk = format!(
            "(select id from connection where workspace = '{workspace}' \
             and 'workspaces/' || workspace || '/connections/' || conn_id = '{quoted}')"
        );
        let stored = psql(
            &database_url,
            &format!(
                "select snapshot::json -> 'spec' ->> 'description' from connection_version \
                 where connection_pk = {pk} order by version"
            ),
        );
        let stored: Vec<&str> = stored.lines().skip(1).collect();
        let expected: Vec<&str> = acknowledged
            .iter()
            .map(|attempt| attempt.description.as_str())
            .collect();
        assert_eq!(
            stored, expected,
            "{}: after its create, one version per acknowledged update, none of a refused one",
            connection.name
        );
        let last = acknowledged.last().expect("acknowledged writes");
        assert!(
            acknowledged
                .iter()
                .any(|attempt| attempt.sent_in == RESTARTING),
            "{}: writes succeed again after the restart",
            connection.name
        );
        assert_eq!(
            psql(
                &database_url,
                &format!("select description from connection where id = {pk}")
            ),
            last.description
        );
        assert_eq!(
            revealed_password(&mut clients, &owner, &connection.name).await,
            last.password,
            "{}: the last acknowledged password",
            connection.name
        );
        // The resolver, never restarted, picks the change up.
        let conn_id = connection.name.rsplit('/').next().expect("a conn_id");
        resolved_until(
            &mut at_resolver,
            &token,
            &format!("{conn_id}'s last write after the {name} restart"),
            |resolved| resolved.get(conn_id) == Some(&last.password),
        )
        .await;
    }
    assert!(
        refused_while_down >= WRITERS,
        "every writer tried while {name} was down ({refused_while_down} refused writes)"
    );
    Database::Postgres(database_url).assert_consistent(&workspace, false);
    eprintln!(
        "{name} outage under load: {} cached resolves answered while down, {refused_while_down} \
         writes refused while down, 3 writes per writer acknowledged {:.1} s after the \
         restart, outage {:.1} s; {:.1} s",
        load.answered[DOWN].load(Ordering::SeqCst),
        recovered.as_secs_f64(),
        outage_lasted.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    for attempt in attempts.iter().flatten() {
        resolver.forbid_in_logs(&attempt.password);
    }
    control.assert_logs_clean();
    resolver.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_restarted_under_load() {
    let Some((_, vault_addr)) = shared_postgres_and_openbao() else {
        return;
    };
    stopped_and_restarted_under_load(Outage::Postgres {
        postgres: OwnPostgres::start_new(),
        vault_addr,
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openbao_stopped_and_restarted_under_load() {
    let Some((database_url, _)) = shared_postgres_and_openbao() else {
        return;
    };
    stopped_and_restarted_under_load(Outage::OpenBao {
        openbao: PersistentOpenBao::start_new(),
        database_url,
    })
    .await;
}

/// Calls a SIGTERM test holds in flight: writes waiting for a lock.
const HELD_WRITES: usize = 6;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_under_load_reports_not_serving_drains_in_flight_calls_and_exits_zero() {
    if switchboard_tests::database_url().is_none() {
        return;
    }
    let started = Instant::now();
    // A PostgreSQL of this test alone: it holds the feed row locked to keep
    // writes in flight, which would stall every other test's writes.
    let postgres = OwnPostgres::start_new();
    let server = TestServer::configure()
        .with_arg("--database-url", &postgres.url)
        .with_arg("--rate-limit", "1000")
        .spawn()
        .await;
    let workspace = unique_workspace("sigterm");
    let owner = server.user_token("otto", &[(&workspace, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &owner, &workspace, "prod").await;
    let token = create_deployment_token(&server, &mut clients, &owner, &workspace, "prod").await;
    let password = server.marker("sigterm-cached");
    let create = |conn_id: &str, password: &str| CreateConnectionRequest {
        parent: workspace_name(&workspace),
        connection_id: conn_id.to_owned(),
        connection: Some(snowflake_connection(password)),
        request_id: String::new(),
        links: vec![Link {
            deployment: deployment_name(&workspace, "prod"),
            ..Default::default()
        }],
    };
    ok(
        clients
            .with_token(&owner)
            .create_connection(create("cached", &password))
            .await,
        "CreateConnection",
    );
    let resolve = ResolveConnectionRequest {
        deployment: String::new(),
        conn_id: "cached".to_owned(),
    };
    let resolved = ok(
        clients
            .with_token(&token)
            .resolve_connection(resolve.clone())
            .await,
        "ResolveConnection",
    );
    assert_eq!(resolved.password, password);

    let mut health = HealthClient::new(server.channel().await)
        .watch(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("Health/Watch")
        .into_inner();
    let status = |message: Result<Option<tonic_health::pb::HealthCheckResponse>, Status>| {
        let message = message
            .expect("a health update")
            .expect("the watch stream is open");
        ServingStatus::try_from(message.status).expect("a known status")
    };
    assert_eq!(status(health.message().await), ServingStatus::Serving);

    // Another session locks the feed counter row, which every write
    // transaction updates first: writes wait inside the server.
    let mut locker = Command::new("psql")
        .arg(&postgres.url)
        .args(["-v", "ON_ERROR_STOP=1", "-q"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("run psql");
    let mut lock_session = locker.stdin.take().expect("psql's stdin");
    lock_session
        .write_all(b"BEGIN;\nSELECT revision FROM feed_head WHERE id = 1 FOR UPDATE;\n")
        .expect("send the lock to psql");
    lock_session.flush().expect("flush psql's stdin");
    let sessions = |condition: &str| {
        psql_count(
            &postgres.url,
            &format!("select count(*) from pg_stat_activity where {condition}"),
        )
    };
    until("the feed row is locked", || {
        sessions("state = 'idle in transaction' and query like '%FOR UPDATE%'") == 1
    })
    .await;

    let signalled = Arc::new(AtomicBool::new(false));
    let held: Vec<JoinHandle<Result<(), Status>>> = (0..HELD_WRITES)
        .map(|index| {
            let clients = clients.clone();
            let request = create(&format!("held-{index}"), &server.marker("sigterm-held"));
            let owner = owner.clone();
            tokio::spawn(async move {
                clients
                    .with_token(&owner)
                    .create_connection(request)
                    .await
                    .map(|_| ())
            })
        })
        .collect();
    // Cached resolves keep coming while the server shuts down.
    let readers: Vec<JoinHandle<(usize, Vec<Status>)>> = (0..2)
        .map(|_| {
            let clients = clients.clone();
            let request = resolve.clone();
            let token = token.clone();
            let signalled = signalled.clone();
            tokio::spawn(async move {
                let mut answered = 0;
                let mut refused = Vec::new();
                while refused.is_empty() {
                    match clients
                        .with_token(&token)
                        .resolve_connection(request.clone())
                        .await
                    {
                        Ok(_) => answered += 1,
                        Err(status) => {
                            // Read when the call has failed, not when it was
                            // sent: a call sent just before the signal may
                            // reach the server after its GOAWAY. The flag is
                            // set before the signal, so a failure that the
                            // shutdown caused always finds it set.
                            assert!(
                                signalled.load(Ordering::SeqCst),
                                "a resolve failed before SIGTERM: {status:?}"
                            );
                            refused.push(status);
                        }
                    }
                }
                (answered, refused)
            })
        })
        .collect();
    until(
        "every held write waits for the lock inside the server",
        || sessions("wait_event_type = 'Lock' and query like '%feed_head%'") == HELD_WRITES as i64,
    )
    .await;

    signalled.store(true, Ordering::SeqCst);
    server.signal("TERM");
    let signalled_at = Instant::now();
    let update = tokio::time::timeout(GUARD, health.message())
        .await
        .expect("a health update after SIGTERM");
    assert_eq!(status(update), ServingStatus::NotServing);
    // An open watch is a call in flight too; the drain waits for it.
    drop(health);
    until("the server refuses new connections", || {
        std::net::TcpStream::connect(server.address()).is_err()
    })
    .await;
    assert!(
        held.iter().all(|call| !call.is_finished()),
        "the held writes still wait for the lock"
    );
    let mut answered_reads = 0;
    for reader in readers {
        let (answered, refused) = reader.await.expect("a reader panicked");
        answered_reads += answered;
        // A call that reaches the server after it said GOAWAY never started;
        // tonic reports it as UNAVAILABLE, or CANCELLED when the connection
        // closed under the request.
        for status in refused {
            assert!(
                matches!(status.code(), Code::Unavailable | Code::Cancelled),
                "a call sent during the shutdown is refused: {:?}: {}",
                status.code(),
                status.message()
            );
        }
    }

    lock_session
        .write_all(b"COMMIT;\n")
        .expect("send COMMIT to psql");
    drop(lock_session);
    let locker_status = locker.wait().expect("wait for psql");
    assert!(locker_status.success(), "psql held and released the lock");
    for call in held {
        let result = tokio::time::timeout(GUARD, call)
            .await
            .expect("a held write finished")
            .expect("a held write panicked");
        if let Err(status) = result {
            panic!(
                "a write in flight at SIGTERM failed: {:?}: {}",
                status.code(),
                status.message()
            );
        }
    }
    let mut server = server;
    let status = server.wait_for_exit().await;
    assert_eq!(
        status.code(),
        Some(0),
        "the drained server exits 0: {status}"
    );
    let drained = signalled_at.elapsed();
    assert_eq!(
        psql_count(
            &postgres.url,
            &format!(
                "select count(*) from connection where workspace = '{workspace}' \
                 and conn_id like 'held-%'"
            )
        ),
        HELD_WRITES as i64,
        "every drained write committed"
    );
    eprintln!(
        "SIGTERM under load: {HELD_WRITES} held writes drained, {answered_reads} resolves \
         answered, exit 0 {:.1} s after the signal; {:.1} s",
        drained.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    server.assert_logs_clean();
}
