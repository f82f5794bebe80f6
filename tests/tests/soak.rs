//! Soak: concurrent writers (control) and resolvers against one `switchboard
//! dev` for a bounded time; zero errors and bounded memory growth. CI runs
//! 60 s; `SWITCHBOARD_SOAK_SECONDS` runs longer by hand, e.g.
//! `SWITCHBOARD_SOAK_SECONDS=1800 cargo test -p switchboard-tests --test e2e soak -- --nocapture`.
//! Prints p50/p99 latencies, call rates and the server's RSS (VmRSS) after
//! warm-up and at the end.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use prost_types::FieldMask;
use switchboard_proto::v1::{
    Connection, CreateConnectionRequest, DeleteConnectionRequest, ListResolvedConnectionsRequest,
    ResolveConnectionRequest, UpdateConnectionRequest,
};
use switchboard_tests::{Role, TestServer, WorkspaceRole};

use crate::backends::{Backend, unique_workspace};

use crate::support::{
    Client, connection_name, create_connection, create_deployment, create_deployment_token,
    create_link, extra_string, ok, schema_and_warehouse, snowflake_connection, string_struct,
    workspace_name,
};

const WORKSPACE: &str = "soak";
/// Writers, each updating its own connection (so etags never race).
const WRITERS: usize = 2;
/// Concurrent resolver callers.
const RESOLVERS: usize = 4;
const DEPLOYMENTS: [&str; 2] = ["prod", "staging"];
/// Pause between one writer's calls: a steady stream, not a flood that
/// would starve the tests running beside this one.
const WRITE_PAUSE: Duration = Duration::from_millis(40);
/// Pause between one resolver caller's calls.
const RESOLVE_PAUSE: Duration = Duration::from_millis(2);
/// Longest any single call may take before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// RSS may grow this much after warm-up, beyond [`RSS_GROWTH_RATIO`].
const RSS_GROWTH_SLACK_KIB: u64 = 48 * 1024;
/// RSS at the end may be at most this multiple of RSS after warm-up, plus the slack.
const RSS_GROWTH_RATIO: f64 = 1.5;

/// The soak's length: `SWITCHBOARD_SOAK_SECONDS`, 60 by default.
fn soak_duration() -> Duration {
    let seconds = std::env::var("SWITCHBOARD_SOAK_SECONDS")
        .ok()
        .map(|value| {
            value
                .parse::<u64>()
                .unwrap_or_else(|_| panic!("SWITCHBOARD_SOAK_SECONDS={value} is not a number"))
        })
        .unwrap_or(60);
    Duration::from_secs(seconds.max(5))
}

/// The process's resident set size in KiB, from `/proc/<pid>/status`.
fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_else(|err| panic!("read /proc/{pid}/status: {err}"));
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or_else(|| panic!("no VmRSS in /proc/{pid}/status"))
}

/// Latencies and failures of one kind of call.
#[derive(Debug, Default)]
struct Record {
    latencies: Vec<Duration>,
    errors: Vec<String>,
}

impl Record {
    fn add<T>(
        &mut self,
        what: &str,
        started: Instant,
        result: Result<T, tonic::Status>,
    ) -> Option<T> {
        self.latencies.push(started.elapsed());
        match result {
            Ok(value) => Some(value),
            Err(status) => {
                switchboard_tests::leaks::record_status(&status);
                if self.errors.len() < 20 {
                    self.errors
                        .push(format!("{what}: {:?} {}", status.code(), status.message()));
                }
                None
            }
        }
    }

    fn merge(&mut self, other: Record) {
        self.latencies.extend(other.latencies);
        self.errors.extend(other.errors);
    }

    fn percentile(&self, fraction: f64) -> Duration {
        let mut sorted = self.latencies.clone();
        sorted.sort();
        let index =
            ((sorted.len() as f64 * fraction).ceil() as usize).clamp(1, sorted.len().max(1));
        sorted.get(index - 1).copied().unwrap_or_default()
    }

    fn report(&self, what: &str, elapsed: Duration) -> String {
        format!(
            "{what}: {} calls, {:.0}/s, p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms, {} errors",
            self.latencies.len(),
            self.latencies.len() as f64 / elapsed.as_secs_f64(),
            self.percentile(0.50).as_secs_f64() * 1e3,
            self.percentile(0.99).as_secs_f64() * 1e3,
            self.latencies
                .iter()
                .max()
                .copied()
                .unwrap_or_default()
                .as_secs_f64()
                * 1e3,
            self.errors.len()
        )
    }
}

/// RSS samples of one process.
#[derive(Debug)]
struct Rss {
    label: &'static str,
    pid: u32,
    after_warm_up: Option<u64>,
    peak: u64,
    last: u64,
}

impl Rss {
    fn new(label: &'static str, pid: u32) -> Rss {
        Rss {
            label,
            pid,
            after_warm_up: None,
            peak: 0,
            last: 0,
        }
    }

    fn sample(&mut self, warm: bool) {
        self.last = rss_kib(self.pid);
        self.peak = self.peak.max(self.last);
        if warm && self.after_warm_up.is_none() {
            self.after_warm_up = Some(self.last);
        }
    }

    fn report(&self, warm_up: Duration) -> String {
        format!(
            "{} RSS {:.1} MiB after {} s warm-up, {:.1} MiB at the end, {:.1} MiB peak",
            self.label,
            self.after_warm_up.unwrap_or_default() as f64 / 1024.0,
            warm_up.as_secs(),
            self.last as f64 / 1024.0,
            self.peak as f64 / 1024.0
        )
    }

    fn assert_bounded(&self) {
        let baseline = self.after_warm_up.expect("the soak outlasts its warm-up");
        let bound = (baseline as f64 * RSS_GROWTH_RATIO) as u64 + RSS_GROWTH_SLACK_KIB;
        assert!(
            self.last <= bound,
            "{} RSS grew from {baseline} KiB after warm-up to {} KiB (bound {bound} KiB)",
            self.label,
            self.last
        );
    }
}

/// One writer: updates its connection's password and warehouse; every tenth
/// round also creates and deletes a scratch connection. Its records and the
/// last password it wrote successfully.
async fn write_loop(
    password_marker: String,
    clients: Client,
    workspace: String,
    token: String,
    writer: usize,
    mut etag: String,
    stop: Arc<AtomicBool>,
) -> (Record, String) {
    let mut record = Record::default();
    let conn_id = format!("writer_{writer}");
    let mut last_password = String::new();
    let mut round = 0u64;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let warehouse = format!("WH_{writer}_{round}");
        let update = UpdateConnectionRequest {
            connection: Some(Connection {
                name: connection_name(&workspace, &conn_id),
                password: format!("{password_marker}-{round}"),
                extra: Some(string_struct(&[("warehouse", &warehouse)])),
                etag: etag.clone(),
                ..Default::default()
            }),
            update_mask: Some(FieldMask {
                paths: vec!["password".to_owned(), "extra.warehouse".to_owned()],
            }),
            request_id: String::new(),
        };
        let started = Instant::now();
        let result = clients
            .with_token(&token)
            .with_timeout(CALL_TIMEOUT)
            .update_connection(update)
            .await;
        if let Some(updated) = record.add("UpdateConnection", started, result) {
            etag = updated.etag;
            last_password = format!("{password_marker}-{round}");
        }
        if round.is_multiple_of(10) {
            let scratch = format!("scratch_{writer}_{round}");
            let mut connection =
                snowflake_connection(&format!("{password_marker}-scratch-{round}"));
            connection.link_to_all_deployments = true;
            let create = CreateConnectionRequest {
                parent: workspace_name(&workspace),
                connection_id: scratch.clone(),
                connection: Some(connection),
                request_id: format!("soak-{writer}-{round}"),
                links: Vec::new(),
            };
            let started = Instant::now();
            let result = clients
                .with_token(&token)
                .with_timeout(CALL_TIMEOUT)
                .create_connection(create)
                .await;
            if let Some(created) = record.add("CreateConnection", started, result) {
                let delete = DeleteConnectionRequest {
                    name: connection_name(&workspace, &scratch),
                    etag: created.etag,
                    request_id: String::new(),
                };
                let started = Instant::now();
                let result = clients
                    .with_token(&token)
                    .with_timeout(CALL_TIMEOUT)
                    .delete_connection(delete)
                    .await;
                record.add("DeleteConnection", started, result);
            }
        }
        tokio::time::sleep(WRITE_PAUSE).await;
    }
    (record, last_password)
}

/// One resolver caller: alternates ResolveConnection of a writer's
/// connection with ListResolvedConnections, with a deployment token.
async fn resolve_loop(
    clients: Client,
    token: String,
    caller: usize,
    stop: Arc<AtomicBool>,
) -> Record {
    let mut record = Record::default();
    let mut round = 0usize;
    while !stop.load(Ordering::Relaxed) {
        round += 1;
        let started = Instant::now();
        if round.is_multiple_of(4) {
            let result = clients
                .with_token(&token)
                .with_timeout(CALL_TIMEOUT)
                .list_resolved_connections(ListResolvedConnectionsRequest::default())
                .await;
            if let Some(response) = record.add("ListResolvedConnections", started, result) {
                let count = response.connections.len();
                if count < WRITERS + 1 {
                    record
                        .errors
                        .push(format!("ListResolvedConnections: only {count} connections"));
                }
            }
        } else {
            let conn_id = format!("writer_{}", (caller + round) % WRITERS);
            let request = ResolveConnectionRequest {
                deployment: String::new(),
                conn_id,
            };
            let result = clients
                .with_token(&token)
                .with_timeout(CALL_TIMEOUT)
                .resolve_connection(request)
                .await;
            let resolved = record.add("ResolveConnection", started, result);
            if resolved.is_some_and(|resolved| resolved.password.is_empty()) {
                record
                    .errors
                    .push("ResolveConnection: no password".to_owned());
            }
        }
        tokio::time::sleep(RESOLVE_PAUSE).await;
    }
    record
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_concurrent_writers_and_resolvers_without_errors_or_memory_growth() {
    let server = Arc::new(
        TestServer::configure()
            .with_arg("--rate-limit", "100000")
            .with_arg("--resolver-rate-limit", "100000")
            .spawn()
            .await,
    );
    soak(server.clone(), server, WORKSPACE, soak_duration()).await;
}

/// Control and a separate resolver on PostgreSQL and OpenBao, when the
/// environment names them; half the dev soak's length.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn soak_on_postgres_and_openbao_with_a_separate_resolver() {
    let Some(backend) = Backend::postgres_openbao() else {
        return;
    };
    let control = Arc::new(
        backend
            .apply(
                TestServer::configure()
                    .with_role(Role::Control)
                    .with_arg("--rate-limit", "100000"),
            )
            .spawn()
            .await,
    );
    let resolver = Arc::new(
        backend
            .apply(
                TestServer::configure()
                    .with_role(Role::Resolver)
                    .with_data_dir_of(&control)
                    .with_arg("--resolver-rate-limit", "100000"),
            )
            .spawn()
            .await,
    );
    soak(
        control,
        resolver,
        &unique_workspace("soak"),
        soak_duration() / 2,
    )
    .await;
}

/// Runs the soak: writers against `control`, resolver callers against
/// `resolver` (the same process for `dev`), for `duration`.
async fn soak(
    server: Arc<TestServer>,
    resolver_server: Arc<TestServer>,
    workspace: &str,
    duration: Duration,
) {
    let same_process = Arc::ptr_eq(&server, &resolver_server);
    let pid = resolver_server.pid().expect("the resolver runs");
    let control_pid = server.pid().expect("the control server runs");
    let token = server.user_token("soak-operator", &[(workspace, WorkspaceRole::Operator)]);
    let mut clients = server.client().await;
    for deployment in DEPLOYMENTS {
        create_deployment(&mut clients, &token, workspace, deployment).await;
    }
    let mut etags = Vec::new();
    for writer in 0..WRITERS {
        let conn_id = format!("writer_{writer}");
        let password = server.marker("soak-initial-password");
        let created = create_connection(
            &mut clients,
            &token,
            workspace,
            &conn_id,
            snowflake_connection(&password),
        )
        .await;
        for deployment in DEPLOYMENTS {
            create_link(
                &mut clients,
                &token,
                workspace,
                &conn_id,
                deployment,
                schema_and_warehouse(&deployment.to_uppercase(), &format!("{deployment}_WH")),
            )
            .await;
        }
        // Links don't change the connection's etag.
        etags.push(created.etag);
    }
    // One connection linked to every deployment, never written.
    let mut shared = snowflake_connection(&server.marker("soak-shared-password"));
    shared.link_to_all_deployments = true;
    create_connection(&mut clients, &token, workspace, "shared", shared).await;
    let mut deployment_tokens = Vec::new();
    for deployment in DEPLOYMENTS {
        deployment_tokens.push(
            create_deployment_token(&server, &mut clients, &token, workspace, deployment).await,
        );
    }
    if !same_process {
        for deployment_token in &deployment_tokens {
            resolver_server.forbid_in_logs(deployment_token);
        }
    }

    let stop = Arc::new(AtomicBool::new(false));
    let started = Instant::now();
    let mut writers = Vec::new();
    for (writer, etag) in etags.into_iter().enumerate() {
        let password_marker = server.marker(&format!("soak-password-{writer}"));
        resolver_server.forbid_in_logs(&password_marker);
        writers.push(tokio::spawn(write_loop(
            password_marker,
            server.client().await,
            workspace.to_owned(),
            token.clone(),
            writer,
            etag,
            stop.clone(),
        )));
    }
    let mut resolvers = Vec::new();
    for caller in 0..RESOLVERS {
        resolvers.push(tokio::spawn(resolve_loop(
            resolver_server.client().await,
            deployment_tokens[caller % deployment_tokens.len()].clone(),
            caller,
            stop.clone(),
        )));
    }

    // RSS every second; the figure after warm-up (a sixth of the run, at
    // least 10 s) is each process's baseline.
    let warm_up = (duration / 6)
        .max(Duration::from_secs(10))
        .min(duration / 2);
    let mut processes = vec![Rss::new(if same_process { "dev" } else { "resolver" }, pid)];
    if !same_process {
        processes.push(Rss::new("control", control_pid));
    }
    while started.elapsed() < duration {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let warm = started.elapsed() >= warm_up;
        for process in &mut processes {
            process.sample(warm);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed();
    let mut writes = Record::default();
    let mut last_passwords = Vec::new();
    for writer in writers {
        let (record, password) = writer.await.expect("a writer task");
        writes.merge(record);
        last_passwords.push(password);
    }
    let mut reads = Record::default();
    for resolver in resolvers {
        reads.merge(resolver.await.expect("a resolver task"));
    }
    for process in &mut processes {
        process.sample(true);
    }

    println!(
        "soak: {:.0} s, {WRITERS} writers, {RESOLVERS} resolver callers",
        elapsed.as_secs_f64()
    );
    println!("soak: {}", writes.report("writes", elapsed));
    println!("soak: {}", reads.report("resolves", elapsed));
    for process in &processes {
        println!("soak: {}", process.report(warm_up));
    }

    assert!(
        writes.errors.is_empty() && reads.errors.is_empty(),
        "the soak saw errors: writes {:?}, resolves {:?}",
        writes.errors,
        reads.errors
    );
    assert!(
        writes.latencies.len() >= WRITERS * 10 && reads.latencies.len() >= RESOLVERS * 10,
        "the soak made too few calls to mean anything: {} writes, {} resolves",
        writes.latencies.len(),
        reads.latencies.len()
    );
    for process in &processes {
        process.assert_bounded();
    }

    // Every writer's last acknowledged password is what the resolver serves.
    let resolver_clients = resolver_server.client().await;
    for (writer, password) in last_passwords.iter().enumerate() {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let resolved = ok(
                resolver_clients
                    .with_token(&deployment_tokens[0])
                    .resolve_connection(ResolveConnectionRequest {
                        deployment: String::new(),
                        conn_id: format!("writer_{writer}"),
                    })
                    .await,
                "ResolveConnection after the soak",
            );
            if resolved.password == *password {
                assert_eq!(extra_string(&resolved.extra, "warehouse"), Some("prod_WH"));
                break;
            }
            assert!(
                Instant::now() < deadline,
                "writer {writer}'s last acknowledged password is not what the resolver serves"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    server.assert_logs_clean();
    if !same_process {
        resolver_server.assert_logs_clean();
    }
}
