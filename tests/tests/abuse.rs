//! Abuse over the real binary: invented paths cannot grow `/metrics`, and
//! rate limits are keyed on who the caller is (a user's subject, a
//! deployment) or, for calls that fail authentication, on the peer address,
//! so respelling a token or inventing garbage ones buys no fresh allowance.
//! The resolver is limited too.

use std::net::SocketAddr;

use switchboard_proto::v1::{ListConnectionTypesRequest, ListResolvedConnectionsRequest};
use switchboard_tests::{TestServer, WorkspaceRole, authorized};
use tonic::Code;
use tonic::codegen::http::uri::PathAndQuery;

use crate::support::{Client, create_deployment, create_deployment_token, ok};

const W: &str = "abuse";

/// The body of `GET /metrics`.
fn metrics_text(address: SocketAddr) -> String {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(address).expect("connect to /metrics");
    stream
        .write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .expect("send GET /metrics");
    let mut text = String::new();
    stream
        .read_to_string(&mut text)
        .expect("read the metrics response");
    text.split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default()
}

/// The value of the sample `metric{…labels…}` whose label set contains every
/// one of `labels` (`key="value"`), if any.
fn sample(text: &str, metric: &str, labels: &[&str]) -> Option<f64> {
    text.lines()
        .filter(|line| line.starts_with(&format!("{metric}{{")))
        .filter(|line| labels.iter().all(|label| line.contains(label)))
        .find_map(|line| line.rsplit_once(' ')?.1.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invented_paths_share_one_unknown_method_label() {
    let server = TestServer::configure().with_metrics().spawn().await;
    let metrics = server.metrics_address().expect("metrics are served");
    let token = server.user_token("ivan", &[(W, WorkspaceRole::Member)]);
    let clients = server.client().await;
    ok(
        clients
            .with_token(&token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "a served method",
    );
    let channel = server.channel().await;
    let invent = |index: usize| match index % 3 {
        0 => format!("/switchboard.v1.ConnectionService/Invented{index}"),
        1 => format!("/made.up.Service{index}/Call"),
        _ => format!("/grpc.health.v1.Health/Probe{index}"),
    };
    // One first, so that the `unknown` series exist before measuring.
    let mut grpc = tonic::client::Grpc::new(channel.clone());
    let send = |grpc: &mut tonic::client::Grpc<tonic::transport::Channel>, path: String| {
        let path: PathAndQuery = path.parse().expect("a method path");
        let codec = tonic_prost::ProstCodec::<(), ()>::default();
        let request = authorized((), &token);
        let mut grpc = grpc.clone();
        async move {
            grpc.ready().await.expect("the channel is ready");
            grpc.unary(request, path, codec).await
        }
    };
    let first = send(&mut grpc, invent(0)).await;
    assert_eq!(first.map(|_| ()).unwrap_err().code(), Code::Unimplemented);
    let before = metrics_text(metrics);

    for index in 1..=400 {
        let result = send(&mut grpc, invent(index)).await;
        assert_eq!(
            result.map(|_| ()).unwrap_err().code(),
            Code::Unimplemented,
            "{}",
            invent(index)
        );
    }
    let after = metrics_text(metrics);
    let old_lines: std::collections::HashSet<&str> = before
        .lines()
        .map(|line| line.rsplit_once(' ').map_or(line, |(series, _)| series))
        .collect();
    let new_series: Vec<&str> = after
        .lines()
        .filter(|line| line.starts_with("switchboard_grpc_"))
        .filter(|line| {
            !old_lines.contains(line.rsplit_once(' ').map_or(*line, |(series, _)| series))
        })
        .collect();
    // The `unknown` series exist since the first invented call; the rest
    // may only change their values (other gauges appear on their own time).
    assert!(
        new_series.is_empty() && after.len() < before.len() + 2048,
        "400 calls to invented paths added series ({} → {} bytes) to /metrics: {new_series:#?}",
        before.len(),
        after.len()
    );
    assert!(
        !after.contains("Invented") && !after.contains("made.up") && !after.contains("Probe"),
        "no invented path becomes a label"
    );
    let unknown = sample(
        &after,
        "switchboard_grpc_requests_total",
        &[r#"method="unknown""#],
    )
    .expect("calls to invented paths are counted as method=\"unknown\"");
    assert!(unknown >= 401.0, "unknown counted {unknown}");
    assert!(
        sample(
            &after,
            "switchboard_grpc_requests_total",
            &[r#"method="/switchboard.v1.ConnectionService/ListConnectionTypes""#],
        )
        .is_some(),
        "served methods keep their own label"
    );
    server.assert_logs_clean();
}

/// Calls ListConnectionTypes with the `authorization` values in turn until
/// one answers RESOURCE_EXHAUSTED; the number of calls that got through
/// (answered OK or, for garbage, UNAUTHENTICATED).
async fn calls_before_the_limit(clients: &mut Client, values: &[String]) -> usize {
    for call in 0..200 {
        let value = &values[call % values.len()];
        let result = clients
            .with_authorization(value)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await;
        match result {
            Err(status) if status.code() == Code::ResourceExhausted => return call,
            Err(status) if status.code() == Code::Unauthenticated => {}
            Err(status) => panic!("call {call}: {status:?}"),
            Ok(_) => {}
        }
    }
    panic!("200 quick calls were never limited");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_respelled_or_reissued_shares_its_callers_bucket() {
    // 1 call per second, bursts of 5.
    let server = TestServer::configure()
        .with_arg("--rate-limit", "1")
        .spawn()
        .await;
    let mut clients = server.client().await;

    // One spelling: the baseline.
    let single = server.user_token("sam", &[(W, WorkspaceRole::Member)]);
    let baseline = calls_before_the_limit(&mut clients, &[format!("Bearer {single}")]).await;
    assert!((5..=6).contains(&baseline), "limited after {baseline}");

    // The same token spelled three ways, as the services accept them.
    let token = server.user_token("tess", &[(W, WorkspaceRole::Member)]);
    let spellings = [
        format!("Bearer {token}"),
        format!("bearer {token}"),
        format!("Bearer    {token}"),
    ];
    for spelling in &spellings {
        ok(
            clients
                .with_authorization(spelling)
                .list_connection_types(ListConnectionTypesRequest::default())
                .await,
            "an accepted spelling",
        );
    }
    // Already three calls of tess's five were spent.
    let respelled = calls_before_the_limit(&mut clients, &spellings).await + 3;
    assert!(
        respelled.abs_diff(baseline) <= 1,
        "three spellings got {respelled} calls, one spelling {baseline}"
    );

    // Two different tokens of one subject share its bucket too.
    let first = server.user_token("uma", &[(W, WorkspaceRole::Member)]);
    let second = server.user_token("uma", &[(W, WorkspaceRole::Author)]);
    let reissued = calls_before_the_limit(
        &mut clients,
        &[format!("Bearer {first}"), format!("Bearer {second}")],
    )
    .await;
    assert!(
        reissued.abs_diff(baseline) <= 1,
        "two tokens of one subject got {reissued} calls, one token {baseline}"
    );
    let status = clients
        .with_token(&first)
        .list_connection_types(ListConnectionTypesRequest::default())
        .await
        .expect_err("still limited");
    assert_eq!(status.code(), Code::ResourceExhausted);
    assert!(status.message().contains("rate limit"), "{status:?}");
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_tokens_from_one_address_share_its_bucket() {
    let server = TestServer::configure()
        .with_arg("--rate-limit", "1")
        .spawn()
        .await;
    let mut clients = server.client().await;
    let garbage: Vec<String> = (0..100)
        .map(|index| {
            format!(
                "Bearer garbage-{index}-{}",
                switchboard_tests::random_hex(8)
            )
        })
        .collect();
    let through = calls_before_the_limit(&mut clients, &garbage).await;
    assert!(
        (5..=6).contains(&through),
        "distinct garbage tokens from one address got {through} calls before the limit"
    );
    // A caller that authenticates keeps its own allowance from that address.
    let token = server.user_token("vera", &[(W, WorkspaceRole::Member)]);
    ok(
        clients
            .with_token(&token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        "a valid token from the same address",
    );
    server.assert_logs_clean();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_resolver_is_limited_per_deployment() {
    // The resolver: 1 call per second in bursts of 5; control stays generous.
    let server = TestServer::configure()
        .with_arg("--resolver-rate-limit", "1")
        .spawn()
        .await;
    let owner = server.user_token("wes", &[(W, WorkspaceRole::Owner)]);
    let mut clients = server.client().await;
    create_deployment(&mut clients, &owner, W, "prod").await;
    let first = create_deployment_token(&server, &mut clients, &owner, W, "prod").await;
    let second = create_deployment_token(&server, &mut clients, &owner, W, "prod").await;
    let values = [
        format!("Bearer {first}"),
        format!("bearer {second}"),
        format!("Bearer  {first}"),
    ];
    let mut limited_at = None;
    for call in 0..100 {
        let result = clients
            .with_authorization(&values[call % values.len()])
            .list_resolved_connections(ListResolvedConnectionsRequest {
                deployment: String::new(),
            })
            .await;
        match result {
            Ok(_) => {}
            Err(status) if status.code() == Code::ResourceExhausted => {
                limited_at = Some(call);
                break;
            }
            Err(status) => panic!("call {call}: {status:?}"),
        }
    }
    let limited_at = limited_at.expect("the resolver limits a deployment within 100 calls");
    assert!(
        (5..=6).contains(&limited_at),
        "two tokens of one deployment, three spellings: limited after {limited_at}"
    );
    // Control's own limit is separate.
    ok(
        clients
            .with_token(&owner)
            .list_deployments(switchboard_proto::v1::ListDeploymentsRequest {
                parent: crate::support::workspace_name(W),
                ..Default::default()
            })
            .await,
        "control while the resolver limits the deployment",
    );
    server.assert_logs_clean();
}
