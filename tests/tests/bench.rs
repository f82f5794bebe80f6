//! The CI smoke of `switchboard bench`: a short run against `switchboard dev`
//! that must finish without failed calls and print every row of its report.
//! The figures themselves are not checked; they are a benchmark's, not a test's.

use std::process::Command;

use switchboard_tests::{TestServer, WorkspaceRole, switchboard_binary};

use crate::support::{
    Clients, create_connection, create_deployment, create_deployment_token, create_link,
    schema_and_warehouse, snowflake_connection,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bench_smoke_reports_the_ceiling_warm_resolves_misses_and_propagation() {
    let server = TestServer::configure().with_metrics().spawn().await;
    let mut clients = Clients::connect(&server).await;
    let operator = server.user_token("bench-operator", &[(WORKSPACE, WorkspaceRole::Operator)]);
    create_deployment(&mut clients, &operator, WORKSPACE, "prod").await;
    let password = server.marker("bench-password");
    create_connection(
        &mut clients,
        &operator,
        WORKSPACE,
        "warehouse",
        snowflake_connection(&password),
    )
    .await;
    create_link(
        &mut clients,
        &operator,
        WORKSPACE,
        "warehouse",
        "prod",
        schema_and_warehouse("PROD", "PROD_WH"),
    )
    .await;
    let token = create_deployment_token(&server, &mut clients, &operator, WORKSPACE, "prod").await;
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

    // Seeding its own workspace: also the miss path and propagation under load.
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
    server.assert_logs_clean();
}
