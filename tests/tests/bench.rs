//! The CI smoke of `switchboard bench`: a short run against `switchboard dev`
//! that must finish without failed calls and print every row of its report.
//! The figures themselves are not checked; they are a benchmark's, not a test's.

use std::process::Command;

use switchboard_proto::v1::{Link, ResolveConnectionRequest, UpdateLinkRequest};
use switchboard_tests::{Role, TestServer, WorkspaceRole, switchboard_binary};

use crate::resolver_feed::metric_value;
use crate::support::{
    Client, create_connection, create_deployment, create_deployment_token, create_link,
    extra_string, ok, schema_and_warehouse, snowflake_connection,
};

const WORKSPACE: &str = "bench";

/// Runs `switchboard bench ARGS` and returns its stdout; fails unless it exits 0.
fn run_bench(server: &TestServer, args: &[&str]) -> String {
    let output = Command::new(switchboard_binary())
        .arg("bench")
        .args(["--endpoint", &server.endpoint()])
        .args(args)
        .env_remove("SWITCHBOARD_BENCH_TOKEN")
        .output()
        .expect("run switchboard bench");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(
        output.status.success(),
        "switchboard bench failed: {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("switchboard bench {args:?}:\n{stdout}");
    stdout
}

/// The row of `phase` at `concurrency`, split in columns.
fn row<'a>(report: &'a str, phase: &str, concurrency: &str) -> Vec<&'a str> {
    report
        .lines()
        .filter_map(|line| line.strip_prefix(phase))
        .map(|rest| rest.split_whitespace().collect::<Vec<_>>())
        .find(|columns| columns.first() == Some(&concurrency))
        .unwrap_or_else(|| panic!("no row for {phase} at concurrency {concurrency}:\n{report}"))
}

fn assert_timed_rows(report: &str) {
    for concurrency in ["1", "16", "64"] {
        for phase in [
            "Health/Check (ceiling)",
            "ResolveConnection (warm)",
            "ListResolvedConnections (warm)",
        ] {
            let columns = row(report, phase, concurrency);
            // conc calls rps p50 p90 p99 max errors rps/ceil p99/ceil
            assert_eq!(columns.len(), 10, "{phase} at {concurrency}: {columns:?}");
            let calls: u64 = columns[1].parse().expect("calls is a number");
            assert!(calls > 0, "{phase} at {concurrency} made no calls");
            assert_eq!(columns[7], "0", "{phase} at {concurrency} had errors");
            assert!(
                columns[8].ends_with('x') && columns[9].ends_with('x'),
                "{phase} at {concurrency} reports ratios to the ceiling: {columns:?}"
            );
        }
    }
}

/// What [`link_warehouse_to_prod`] made.
struct Linked {
    operator: String,
    password: String,
    link: Link,
    token: String,
}

/// Deployment `prod`, a Snowflake connection `warehouse` with a marker
/// password linked to it (schema PROD, warehouse PROD_WH), and a token of prod.
async fn link_warehouse_to_prod(server: &TestServer, clients: &mut Client, label: &str) -> Linked {
    let operator = server.user_token(
        &format!("{label}-operator"),
        &[(WORKSPACE, WorkspaceRole::Operator)],
    );
    create_deployment(clients, &operator, WORKSPACE, "prod").await;
    let password = server.marker(&format!("{label}-password"));
    create_connection(
        clients,
        &operator,
        WORKSPACE,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    let link = create_link(
        clients,
        &operator,
        WORKSPACE,
        "warehouse",
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let token = create_deployment_token(server, clients, &operator, WORKSPACE, "prod").await;
    Linked {
        operator,
        password,
        link,
        token,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_reports_the_ceiling_warm_resolves_misses_and_propagation() {
    // One deployment token at full speed: lift the resolver's per-caller limit.
    let server = TestServer::configure()
        .with_metrics()
        .with_arg("--resolver-rate-limit", "1000000")
        .spawn()
        .await;
    let mut clients = server.client().await;
    let Linked {
        operator, token, ..
    } = link_warehouse_to_prod(&server, &mut clients, "bench").await;
    let files = tempfile::tempdir().expect("a temporary dir");
    let token_file = files.path().join("deployment-token");
    std::fs::write(&token_file, &token).expect("write the token file");
    let metrics_url = format!(
        "http://{}/metrics",
        server.metrics_address().expect("started with metrics")
    );

    // A deployment token, as an operator would bench a running resolver.
    let report = run_bench(
        &server,
        &[
            "--smoke",
            "--token-file",
            token_file.to_str().expect("a UTF-8 path"),
            "--conn-id",
            "warehouse",
            "--metrics-url",
            &metrics_url,
        ],
    );
    assert!(report.contains("conn_id=warehouse"), "{report}");
    assert_timed_rows(&report);
    assert!(
        report.contains("resolver cache view :") && report.contains("resolver cache token:"),
        "cache hits and misses from the resolver's metrics:\n{report}"
    );
    assert!(
        report.contains("warm ResolveConnection at c=64:"),
        "{report}"
    );

    // Seeding its own workspace: also the miss path, propagation under load,
    // and the cold path on a resolver without a cache.
    let cold = TestServer::configure()
        .with_role(Role::Resolver)
        .with_data_dir_of(&server)
        .with_flag("--no-cache")
        .with_arg("--resolver-rate-limit", "1000000")
        .spawn()
        .await;
    let user_token_file = files.path().join("user-token");
    std::fs::write(&user_token_file, &operator).expect("write the user token file");
    let report = run_bench(
        &server,
        &[
            "--smoke",
            "--seed",
            "4,3,6",
            "--workspace",
            WORKSPACE,
            "--user-token-file",
            user_token_file.to_str().expect("a UTF-8 path"),
            "--cold-endpoint",
            &cold.endpoint(),
        ],
    );
    assert!(
        report.contains("seeded workspace bench: 4 deployments, 3 connections, 6 links"),
        "{report}"
    );
    assert_timed_rows(&report);
    for phase in [
        "propagation to resolver",
        "UpdateConnection latency (control)",
        "ResolveConnection cache miss (c=1)",
    ] {
        let line = report
            .lines()
            .find(|line| line.starts_with(phase))
            .unwrap_or_else(|| panic!("no {phase} row:\n{report}"));
        let samples = line
            .split_whitespace()
            .rev()
            .nth(4)
            .expect("a samples column");
        assert_eq!(samples, "3", "{phase}: {line}");
    }
    let columns = row(&report, "ResolveConnection (cold, no cache)", "1");
    // conc calls rps p50 p90 p99 max errors
    assert_eq!(columns.len(), 8, "{columns:?}");
    assert!(columns[1].parse::<u64>().expect("calls is a number") > 0);
    assert_eq!(columns[7], "0", "cold calls had errors: {columns:?}");
    assert!(
        report.contains("cold ResolveConnection at c=1: p99"),
        "{report}"
    );
    server.assert_logs_clean();
    cold.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resolver_without_cache_answers_each_call_from_the_backends() {
    let server = TestServer::configure().spawn().await;
    let cold = TestServer::configure()
        .with_role(Role::Resolver)
        .with_data_dir_of(&server)
        .with_flag("--no-cache")
        .with_metrics()
        .spawn()
        .await;
    let mut clients = server.client().await;
    let at_cold = cold.client().await;
    let Linked {
        operator,
        password,
        link,
        token,
    } = link_warehouse_to_prod(&server, &mut clients, "cold").await;
    cold.forbid_in_logs(&password);
    cold.forbid_in_logs(&token);
    let resolve = |conn_id: &str| ResolveConnectionRequest {
        deployment: String::new(),
        conn_id: conn_id.to_owned(),
    };
    let at_cold = at_cold.with_token(&token);

    let resolved = ok(
        at_cold.resolve_connection(resolve("warehouse")).await,
        "ResolveConnection without cache",
    );
    assert_eq!(resolved.schema, "PROD");
    assert_eq!(resolved.password, password);

    // The next call after a write sees it: nothing waits for the change feed
    // (its poll interval is far longer than this gap).
    for (round, warehouse) in ["XL_WH", "XXL_WH", "S_WH"].into_iter().enumerate() {
        let current = ok(
            clients
                .with_token(&operator)
                .get_link(switchboard_proto::v1::GetLinkRequest {
                    name: link.name.clone(),
                })
                .await,
            "GetLink",
        );
        ok(
            clients
                .with_token(&operator)
                .update_link(UpdateLinkRequest {
                    link: Some(Link {
                        name: link.name.clone(),
                        etag: current.etag,
                        overrides: Some(schema_and_warehouse("PROD", warehouse)),
                        ..Default::default()
                    }),
                    update_mask: Some(prost_types::FieldMask {
                        paths: vec!["overrides.extra.warehouse".to_owned()],
                    }),
                    request_id: String::new(),
                })
                .await,
            "UpdateLink",
        );
        let resolved = ok(
            at_cold.resolve_connection(resolve("WAREHOUSE")).await,
            "ResolveConnection right after the write",
        );
        assert_eq!(
            extra_string(&resolved.extra, "warehouse"),
            Some(warehouse),
            "round {round}: the cache-less resolver served an old value"
        );
    }
    let missing = at_cold
        .resolve_connection(resolve("not_linked"))
        .await
        .expect_err("an unlinked conn_id is not served");
    assert_eq!(missing.code(), tonic::Code::NotFound);

    // Nothing came from a cache; every lookup was a miss.
    for cache in ["view", "token"] {
        let hits = metric_value(
            &cold,
            &format!("switchboard_resolver_cache_hits_total{{cache=\"{cache}\"}}"),
        );
        assert!(
            hits.unwrap_or(0.0) == 0.0,
            "{cache} cache hits on a resolver without cache: {hits:?}"
        );
    }
    let misses = metric_value(
        &cold,
        "switchboard_resolver_cache_misses_total{cache=\"view\"}",
    );
    assert!(
        misses.is_some_and(|misses| misses >= 5.0),
        "every call loads from the backends: {misses:?} view misses"
    );
    server.assert_logs_clean();
    cold.assert_logs_clean();
}
