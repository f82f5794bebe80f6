//! `switchboard bench`: a load generator for a live resolver.
//!
//! In one run it measures the ceiling of this machine's gRPC stack
//! (`grpc.health.v1.Health/Check` on the same server) and the warm resolver
//! (`ResolveConnection`, `ListResolvedConnections`) at each concurrency, and
//! reports every figure also as a ratio to the ceiling measured at the same
//! concurrency. With `--seed` it first creates its own workspace content
//! through control (deployments, connections, links and a deployment token)
//! and then also measures the cache-miss path (a view reloaded after the
//! change feed invalidated it) and change propagation under load.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

mod paging;
mod probes;
mod propagation;
mod seed;

use probes::{process_memory, scrape};
use propagation::propagation;
use seed::{SeedSizes, seed};

use anyhow::{Context, bail};
use clap::Args;
use http::uri::PathAndQuery;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;
use switchboard_proto::v1::deployment_service_client::DeploymentServiceClient;
use switchboard_proto::v1::resolver_service_client::ResolverServiceClient;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tonic::client::Grpc;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Channel, Endpoint};
use tonic::{Code, Request};
use tonic_health::pb::HealthCheckRequest;
use tonic_health::pb::health_client::HealthClient;

/// Longest a single call may take before it counts as an error.
const CALL_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a change may take to reach the resolver before the bench gives up.
const PROPAGATION_GIVE_UP: Duration = Duration::from_secs(30);
/// Total time a `--smoke` run spends on the timed phases.
const SMOKE_BUDGET: Duration = Duration::from_secs(2);

/// Options of `switchboard bench`.
#[derive(Debug, Args)]
pub struct BenchOpt {
    /// gRPC endpoint of the server under test (a resolver, or `switchboard dev`).
    #[arg(
        long,
        env = "SWITCHBOARD_BENCH_ENDPOINT",
        default_value = "http://127.0.0.1:50051"
    )]
    endpoint: String,
    /// Deployment token the resolver is called with.
    #[arg(long, env = "SWITCHBOARD_BENCH_TOKEN", conflicts_with_all = ["token_file", "seed"])]
    token: Option<String>,
    /// File holding the deployment token.
    #[arg(long, env = "SWITCHBOARD_BENCH_TOKEN_FILE", conflicts_with = "seed")]
    token_file: Option<PathBuf>,
    /// Connection to resolve [default: the first the deployment sees].
    #[arg(long, env = "SWITCHBOARD_BENCH_CONN_ID")]
    conn_id: Option<String>,
    /// How long each timed phase runs, e.g. 10s.
    #[arg(long, env = "SWITCHBOARD_BENCH_DURATION", default_value = "10s", value_parser = switchboard_domain::duration::parse)]
    duration: Duration,
    /// Concurrent callers, one phase per value (comma-separated).
    #[arg(
        long,
        env = "SWITCHBOARD_BENCH_CONCURRENCY",
        value_delimiter = ',',
        default_value = "1,16,64"
    )]
    concurrency: Vec<usize>,
    /// HTTP/2 connections the callers share (round-robin).
    #[arg(long, env = "SWITCHBOARD_BENCH_CHANNELS", default_value_t = 4)]
    channels: usize,
    /// A short run (about 2 s of timed phases) that proves the bench works.
    #[arg(long)]
    smoke: bool,
    /// Seeds DEPLOYMENTS,CONNECTIONS,LINKS into --workspace through control
    /// first (existing objects are kept), then benches its first deployment
    /// with a fresh token. Needs --user-token(-file) of an OPERATOR, and
    /// control's --rate-limit raised for large seeds.
    #[arg(
        long,
        env = "SWITCHBOARD_BENCH_SEED",
        value_delimiter = ',',
        num_args = 1
    )]
    seed: Option<Vec<usize>>,
    /// Workspace to seed.
    #[arg(
        long,
        env = "SWITCHBOARD_BENCH_WORKSPACE",
        default_value = "bench",
        requires = "seed"
    )]
    workspace: String,
    /// User token (OPERATOR of --workspace) for seeding and propagation.
    #[arg(
        long,
        env = "SWITCHBOARD_BENCH_USER_TOKEN",
        conflicts_with = "user_token_file"
    )]
    user_token: Option<String>,
    /// File holding the user token.
    #[arg(long, env = "SWITCHBOARD_BENCH_USER_TOKEN_FILE")]
    user_token_file: Option<PathBuf>,
    /// Control's gRPC endpoint [default: --endpoint].
    #[arg(long, env = "SWITCHBOARD_BENCH_CONTROL_ENDPOINT")]
    control_endpoint: Option<String>,
    /// Changes timed from control to the resolver (with --seed).
    #[arg(
        long,
        env = "SWITCHBOARD_BENCH_PROPAGATION_SAMPLES",
        default_value_t = 50
    )]
    propagation_samples: usize,
    /// Callers keeping the resolver busy while propagation is timed.
    #[arg(long, env = "SWITCHBOARD_BENCH_PROPAGATION_LOAD", default_value_t = 16)]
    propagation_load: usize,
    /// The resolver's metrics, e.g. http://127.0.0.1:9090/metrics, to report
    /// its cache hits and misses during the run.
    #[arg(long, env = "SWITCHBOARD_BENCH_METRICS_URL")]
    metrics_url: Option<String>,
    /// A resolver over the same backends started with --no-cache: the cold
    /// path (database and secret store on every call) is timed on it at
    /// concurrency 1.
    #[arg(long, env = "SWITCHBOARD_BENCH_COLD_ENDPOINT")]
    cold_endpoint: Option<String>,
    /// Instead of the resolver phases, walks ListConnections of the seeded
    /// workspace in pages of this size and compares the first pages' latency
    /// with the last ones' (with --seed, e.g. --seed 1,20000,0 --paging 100).
    #[arg(long, env = "SWITCHBOARD_BENCH_PAGING", requires = "seed")]
    paging: Option<i32>,
    /// The resolver's process id, to report its memory (Linux /proc).
    #[arg(long, env = "SWITCHBOARD_BENCH_RESOLVER_PID")]
    resolver_pid: Option<u32>,
}

/// Runs the benchmark and prints its report on stdout.
pub fn run(opt: BenchOpt) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(bench(opt))
}

/// What the callers call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Call {
    Health,
    Resolve,
    List,
    /// ResolveConnection on the cache-less resolver (`--cold-endpoint`).
    Cold,
}

impl Call {
    fn label(self) -> &'static str {
        match self {
            Call::Health => "Health/Check (ceiling)",
            Call::Resolve => "ResolveConnection (warm)",
            Call::List => "ListResolvedConnections (warm)",
            Call::Cold => "ResolveConnection (cold, no cache)",
        }
    }
}

/// The server under test and how to call it.
#[derive(Debug)]
struct Target {
    channels: Vec<Channel>,
    authorization: MetadataValue<Ascii>,
    conn_id: String,
}

impl Target {
    fn channel(&self, worker: usize) -> Channel {
        self.channels[worker % self.channels.len()].clone()
    }

    fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request.set_timeout(CALL_TIMEOUT);
        request
    }
}

/// The outcome of one timed phase.
#[derive(Debug)]
struct Sample {
    calls: usize,
    errors: usize,
    first_error: Option<String>,
    elapsed: Duration,
    /// Latencies of the successful calls, sorted.
    latencies: Vec<Duration>,
}

impl Sample {
    fn rps(&self) -> f64 {
        self.calls as f64 / self.elapsed.as_secs_f64().max(f64::EPSILON)
    }

    /// The report's columns from `phase` to `errors`.
    fn row(&self, phase: &str, concurrency: usize) -> String {
        format!(
            "{phase:<32} {concurrency:>5} {:>9} {:>10.1} {:>8.3} {:>8.3} {:>8.3} {:>8.3} {:>6}",
            self.calls,
            self.rps(),
            millis(self.quantile(0.50)),
            millis(self.quantile(0.90)),
            millis(self.quantile(0.99)),
            millis(self.latencies.last().copied().unwrap_or_default()),
            self.errors,
        )
    }

    fn quantile(&self, q: f64) -> Duration {
        quantile(&self.latencies, q)
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let rank = (q * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

fn millis(duration: Duration) -> f64 {
    duration.as_secs_f64() * 1e3
}

/// The body of a timed resolver answer, not materialized: prost skips each
/// field without allocating, so the figures are the server's and the
/// stack's, not this client's decoding. (The probe before timing and the
/// propagation phase decode full answers.)
#[derive(Clone, PartialEq, prost::Message)]
struct Discarded {}

/// A unary call on `grpc` whose answer is checked for its status only.
async fn call_discarding<T>(
    grpc: &mut Grpc<Channel>,
    path: &'static str,
    request: Request<T>,
) -> Result<(), tonic::Status>
where
    T: prost::Message + Send + Sync + 'static,
{
    grpc.ready()
        .await
        .map_err(|err| tonic::Status::unavailable(format!("channel not ready: {err}")))?;
    let codec = tonic_prost::ProstCodec::<T, Discarded>::default();
    grpc.unary(request, PathAndQuery::from_static(path), codec)
        .await
        .map(drop)
}

/// Makes one call of `call`.
async fn call_once(
    target: &Target,
    call: Call,
    health: &mut HealthClient<Channel>,
    resolver: &mut Grpc<Channel>,
) -> Result<(), tonic::Status> {
    match call {
        Call::Health => {
            let mut request = Request::new(HealthCheckRequest {
                service: String::new(),
            });
            request.set_timeout(CALL_TIMEOUT);
            health.check(request).await.map(drop)
        }
        Call::Resolve | Call::Cold => {
            call_discarding(
                resolver,
                "/switchboard.v1.ResolverService/ResolveConnection",
                target.request(pb::ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: target.conn_id.clone(),
                }),
            )
            .await
        }
        Call::List => {
            call_discarding(
                resolver,
                "/switchboard.v1.ResolverService/ListResolvedConnections",
                target.request(pb::ListResolvedConnectionsRequest {
                    deployment: String::new(),
                }),
            )
            .await
        }
    }
}

/// Runs `concurrency` callers of `call` for `warmup` untimed, then `duration` timed.
async fn measure(
    target: &Arc<Target>,
    call: Call,
    concurrency: usize,
    warmup: Duration,
    duration: Duration,
) -> Sample {
    let started = Instant::now();
    let timed_from = started + warmup;
    let until = timed_from + duration;
    let mut workers = tokio::task::JoinSet::new();
    for worker in 0..concurrency.max(1) {
        let target = target.clone();
        workers.spawn(async move {
            let channel = target.channel(worker);
            let mut health = HealthClient::new(channel.clone());
            let mut resolver = Grpc::new(channel);
            let mut latencies = Vec::new();
            let mut errors = 0usize;
            let mut first_error = None;
            loop {
                let start = Instant::now();
                if start >= until {
                    break;
                }
                let result = call_once(&target, call, &mut health, &mut resolver).await;
                if start < timed_from {
                    continue;
                }
                match result {
                    Ok(()) => latencies.push(start.elapsed()),
                    Err(status) => {
                        errors += 1;
                        first_error.get_or_insert_with(|| {
                            format!("{:?}: {}", status.code(), status.message())
                        });
                    }
                }
            }
            (latencies, errors, first_error)
        });
    }
    let mut sample = Sample {
        calls: 0,
        errors: 0,
        first_error: None,
        elapsed: Duration::ZERO,
        latencies: Vec::new(),
    };
    while let Some(joined) = workers.join_next().await {
        let Ok((latencies, errors, first_error)) = joined else {
            sample.errors += 1;
            continue;
        };
        sample.latencies.extend(latencies);
        sample.errors += errors;
        if sample.first_error.is_none() {
            sample.first_error = first_error;
        }
    }
    sample.elapsed = Instant::now().saturating_duration_since(timed_from);
    sample.calls = sample.latencies.len() + sample.errors;
    sample.latencies.sort_unstable();
    sample
}

async fn connect(endpoint: &str) -> anyhow::Result<Channel> {
    Endpoint::from_shared(endpoint.to_owned())
        .with_context(|| format!("invalid endpoint {endpoint}"))?
        .connect_timeout(Duration::from_secs(5))
        .tcp_nodelay(true)
        .connect()
        .await
        .with_context(|| format!("cannot connect to {endpoint}"))
}

fn bearer(token: &str) -> anyhow::Result<MetadataValue<Ascii>> {
    format!("Bearer {}", token.trim())
        .parse()
        .context("the token is not valid gRPC metadata")
}

fn read_token(inline: &Option<String>, file: &Option<PathBuf>) -> anyhow::Result<Option<String>> {
    if let Some(token) = inline {
        return Ok(Some(token.trim().to_owned()));
    }
    match file {
        Some(path) => Ok(Some(
            std::fs::read_to_string(path)
                .with_context(|| format!("cannot read {}", path.display()))?
                .trim()
                .to_owned(),
        )),
        None => Ok(None),
    }
}

async fn bench(opt: BenchOpt) -> anyhow::Result<()> {
    let user_token = read_token(&opt.user_token, &opt.user_token_file)?;
    let control_endpoint = opt
        .control_endpoint
        .clone()
        .unwrap_or_else(|| opt.endpoint.clone());
    let mut channels = Vec::new();
    for _ in 0..opt.channels.max(1) {
        channels.push(connect(&opt.endpoint).await?);
    }

    // The deployment token and, when seeding, what was seeded.
    let (token, seeded) = match &opt.seed {
        Some(sizes) => {
            let Some(user_token) = &user_token else {
                bail!(
                    "--seed needs --user-token or --user-token-file (an OPERATOR of --workspace)"
                );
            };
            let [deployments, connections, links] = sizes.as_slice() else {
                bail!("--seed takes DEPLOYMENTS,CONNECTIONS,LINKS, e.g. 1000,2000,20000");
            };
            let sizes = SeedSizes {
                deployments: (*deployments).max(1),
                connections: (*connections).max(1),
                links: *links,
            };
            let control = connect(&control_endpoint).await?;
            let seeded = seed(&control, user_token, &opt.workspace, sizes).await?;
            if let Some(page_size) = opt.paging {
                return paging::run(&control, user_token, &opt.workspace, page_size).await;
            }
            (seeded.token.clone(), Some((control, seeded)))
        }
        None => {
            let Some(token) = read_token(&opt.token, &opt.token_file)? else {
                bail!("give a deployment token with --token or --token-file, or use --seed");
            };
            (token, None)
        }
    };
    let authorization = bearer(&token)?;

    // One checked call before any timing: a wrong token or conn_id fails here.
    let mut probe = ResolverServiceClient::new(channels[0].clone());
    let mut request = Request::new(pb::ListResolvedConnectionsRequest::default());
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    let listed = probe
        .list_resolved_connections(request)
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "ListResolvedConnections failed: {:?}: {}",
                status.code(),
                status.message()
            )
        })?
        .into_inner();
    let conn_id = match (&opt.conn_id, &seeded) {
        (Some(conn_id), _) => conn_id.clone(),
        (None, Some((_, seeded))) => seeded.conn_id.clone(),
        (None, None) => listed
            .connections
            .first()
            .map(|connection| connection.conn_id.clone())
            .context("the deployment sees no connections; pass --conn-id or link one")?,
    };
    let target = Arc::new(Target {
        channels,
        authorization,
        conn_id,
    });
    {
        let mut resolver = Grpc::new(target.channel(0));
        let mut health = HealthClient::new(target.channel(0));
        call_once(&target, Call::Resolve, &mut health, &mut resolver)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "ResolveConnection {} failed: {:?}: {}",
                    target.conn_id,
                    status.code(),
                    status.message()
                )
            })?;
    }

    let calls = [Call::Health, Call::Resolve, Call::List];
    let phases = (opt.concurrency.len() * calls.len()).max(1) as u32;
    let duration = if opt.smoke {
        SMOKE_BUDGET / phases
    } else {
        opt.duration
    };
    let warmup = (duration / 10).min(Duration::from_secs(1));
    println!(
        "switchboard bench: {} conn_id={} revision={} connections_seen={} phase={:.2}s (+{:.2}s warm-up) channels={}",
        opt.endpoint,
        target.conn_id,
        listed.revision,
        listed.connections.len(),
        duration.as_secs_f64(),
        warmup.as_secs_f64(),
        target.channels.len()
    );

    let metrics_before = match &opt.metrics_url {
        Some(url) => Some(scrape(url).await?),
        None => None,
    };
    println!();
    println!(
        "{:<32} {:>5} {:>9} {:>10} {:>8} {:>8} {:>8} {:>8} {:>6} {:>9} {:>9}",
        "phase",
        "conc",
        "calls",
        "rps",
        "p50 ms",
        "p90 ms",
        "p99 ms",
        "max ms",
        "errors",
        "rps/ceil",
        "p99/ceil"
    );
    let mut failures = Vec::new();
    let mut cold_p99 = None;
    let mut results: BTreeMap<(usize, &'static str), (f64, f64)> = BTreeMap::new();
    for &concurrency in &opt.concurrency {
        let mut ceiling: Option<(f64, Duration)> = None;
        for call in calls {
            let sample = measure(&target, call, concurrency, warmup, duration).await;
            let (rps_ratio, p99_ratio) = match ceiling {
                None => {
                    ceiling = Some((sample.rps(), sample.quantile(0.99)));
                    (1.0, 1.0)
                }
                Some((rps, p99)) => (
                    sample.rps() / rps.max(f64::EPSILON),
                    sample.quantile(0.99).as_secs_f64() / p99.as_secs_f64().max(f64::EPSILON),
                ),
            };
            println!(
                "{} {rps_ratio:>8.2}x {p99_ratio:>8.2}x",
                sample.row(call.label(), concurrency)
            );
            results.insert((concurrency, call.label()), (rps_ratio, p99_ratio));
            if let Some(error) = &sample.first_error {
                failures.push(format!(
                    "{} at concurrency {concurrency}: {} errors, first {error}",
                    call.label(),
                    sample.errors
                ));
            }
        }
    }
    if let Some(endpoint) = &opt.cold_endpoint {
        let cold = Arc::new(Target {
            channels: vec![connect(endpoint).await?],
            authorization: target.authorization.clone(),
            conn_id: target.conn_id.clone(),
        });
        let sample = measure(&cold, Call::Cold, 1, warmup, duration).await;
        println!("{}", sample.row(Call::Cold.label(), 1));
        cold_p99 = Some(sample.quantile(0.99));
        if let Some(error) = &sample.first_error {
            failures.push(format!(
                "{} at {endpoint}: {} errors, first {error}",
                Call::Cold.label(),
                sample.errors
            ));
        }
    }
    if let (Some(url), Some(before)) = (&opt.metrics_url, &metrics_before) {
        let after = scrape(url).await?;
        println!();
        for cache in ["view", "token"] {
            let delta = |name: &str| {
                let key = format!("{name}{{cache=\"{cache}\"}}");
                after.get(&key).copied().unwrap_or_default()
                    - before.get(&key).copied().unwrap_or_default()
            };
            let hits = delta("switchboard_resolver_cache_hits_total");
            let misses = delta("switchboard_resolver_cache_misses_total");
            println!(
                "resolver cache {cache:<5}: {hits:.0} hits, {misses:.0} misses during the timed phases (hit ratio {:.4})",
                hits / (hits + misses).max(1.0)
            );
        }
    }

    if let Some((control, seeded)) = &seeded {
        let samples = if opt.smoke {
            opt.propagation_samples.min(3)
        } else {
            opt.propagation_samples
        };
        let user_token = user_token.as_deref().unwrap_or_default();
        propagation(
            &target,
            control,
            user_token,
            seeded,
            samples,
            opt.propagation_load,
        )
        .await?;
    }

    if let Some(pid) = opt.resolver_pid {
        println!();
        match process_memory(pid) {
            Ok((rss, peak)) => println!(
                "resolver memory (pid {pid}): RSS {:.1} MiB, peak RSS {:.1} MiB",
                rss as f64 / 1024.0,
                peak as f64 / 1024.0
            ),
            Err(err) => println!("resolver memory (pid {pid}): unavailable: {err:#}"),
        }
    }

    if let Some(&top) = opt.concurrency.iter().max()
        && let Some((rps, p99)) = results.get(&(top, Call::Resolve.label()))
    {
        println!();
        println!(
            "warm ResolveConnection at c={top}: {rps:.2}x the ceiling's rps (target >= 0.80x), \
                 p99 {p99:.2}x the ceiling's (target <= 1.50x)"
        );
    }
    if let Some(p99) = cold_p99 {
        println!(
            "cold ResolveConnection at c=1: p99 {:.2} ms (target < 10 ms)",
            millis(p99)
        );
    }

    if !failures.is_empty() {
        for failure in &failures {
            eprintln!("error: {failure}");
        }
        bail!("{} phase(s) had failed calls", failures.len());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_pick_the_nearest_rank() {
        let sorted: Vec<Duration> = (1..=100).map(Duration::from_millis).collect();
        assert_eq!(quantile(&sorted, 0.50), Duration::from_millis(50));
        assert_eq!(quantile(&sorted, 0.99), Duration::from_millis(99));
        assert_eq!(quantile(&sorted, 1.0), Duration::from_millis(100));
        assert_eq!(quantile(&[], 0.5), Duration::ZERO);
    }
}
