//! Prometheus metrics: one request counter (labelled by method and gRPC
//! code) and one latency histogram per RPC, recorded by a tower layer around
//! every service, and served at `/metrics` on `--metrics-listen`.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use metrics_exporter_prometheus::PrometheusBuilder;

/// Counter of finished RPCs, labelled `method` and `code`.
pub(crate) const GRPC_REQUESTS_TOTAL: &str = "switchboard_grpc_requests_total";
/// Histogram of RPC latency in seconds, labelled `method`.
pub(crate) const GRPC_REQUEST_DURATION_SECONDS: &str = "switchboard_grpc_request_duration_seconds";

/// Installs the Prometheus recorder and its HTTP listener.
pub(crate) fn install(address: SocketAddr) -> anyhow::Result<()> {
    PrometheusBuilder::new()
        .with_http_listener(address)
        .set_buckets(&[
            0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
        ])
        .context("invalid histogram buckets")?
        .install()
        .with_context(|| format!("cannot serve metrics on {address}"))?;
    metrics::describe_counter!(
        GRPC_REQUESTS_TOTAL,
        "gRPC requests finished, by method and status code"
    );
    metrics::describe_histogram!(
        GRPC_REQUEST_DURATION_SECONDS,
        "gRPC request latency in seconds, by method"
    );
    switchboard_resolver::describe_metrics();
    Ok(())
}

/// Tower layer recording [`GRPC_REQUESTS_TOTAL`] and [`GRPC_REQUEST_DURATION_SECONDS`].
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct MetricsLayer;

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService { inner }
    }
}

/// The service [`MetricsLayer`] wraps around each gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
}

impl<S, B, R> tower::Service<http::Request<B>> for MetricsService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let method = request.uri().path().to_owned();
        let started = Instant::now();
        let future = self.inner.call(request);
        Box::pin(async move {
            let result = future.await;
            // Errors travel as trailers-only responses with grpc-status in the
            // headers; a successful unary call sends it in trailers, so an
            // absent header means OK.
            let code = match &result {
                Ok(response) => response
                    .headers()
                    .get("grpc-status")
                    .and_then(|value| value.to_str().ok())
                    .and_then(|value| value.parse::<i32>().ok())
                    .map_or(tonic::Code::Ok, tonic::Code::from),
                Err(_) => tonic::Code::Unknown,
            };
            metrics::counter!(GRPC_REQUESTS_TOTAL, "method" => method.clone(), "code" => format!("{code:?}"))
                .increment(1);
            metrics::histogram!(GRPC_REQUEST_DURATION_SECONDS, "method" => method)
                .record(started.elapsed().as_secs_f64());
            result
        })
    }
}
