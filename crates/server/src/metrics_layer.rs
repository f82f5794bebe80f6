//! Prometheus metrics: one request counter (labelled by method and gRPC
//! code) and one latency histogram per RPC, recorded by a tower layer around
//! every service, and served at `/metrics` on `--metrics-listen`.
//!
//! The `method` label names only methods this process serves; any other
//! path counts as [`UNKNOWN_METHOD`], so invented paths cannot create series
//! without bound.

use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use anyhow::Context as _;
use metrics::SharedString;
use metrics_exporter_prometheus::PrometheusBuilder;
use prost::Message as _;

/// Counter of finished RPCs, labelled `method` and `code`.
pub(crate) const GRPC_REQUESTS_TOTAL: &str = "switchboard_grpc_requests_total";
/// Histogram of RPC latency in seconds, labelled `method`.
pub(crate) const GRPC_REQUEST_DURATION_SECONDS: &str = "switchboard_grpc_request_duration_seconds";

/// The `method` label of calls to paths this process does not serve.
pub(crate) const UNKNOWN_METHOD: &str = "unknown";

/// Services every role serves besides its own: health and both reflections.
const COMMON_SERVICES: &[&str] = &[
    "grpc.health.v1.Health",
    "grpc.reflection.v1.ServerReflection",
    "grpc.reflection.v1alpha.ServerReflection",
];

/// The paths (`/package.Service/Method`) of every method of `services` and
/// of health and reflection, read from the descriptor sets the process
/// serves reflection from.
fn served_methods(services: &[&str]) -> anyhow::Result<HashSet<Arc<str>>> {
    let mut methods = HashSet::new();
    for encoded in [
        switchboard_proto::FILE_DESCRIPTOR_SET,
        tonic_health::pb::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1::FILE_DESCRIPTOR_SET,
        tonic_reflection::pb::v1alpha::FILE_DESCRIPTOR_SET,
    ] {
        let set = prost_types::FileDescriptorSet::decode(encoded)
            .context("invalid file descriptor set")?;
        for file in set.file {
            let package = file.package();
            for service in &file.service {
                let full_name = format!("{package}.{}", service.name());
                if !services.contains(&full_name.as_str())
                    && !COMMON_SERVICES.contains(&full_name.as_str())
                {
                    continue;
                }
                for method in &service.method {
                    methods.insert(Arc::from(format!("/{full_name}/{}", method.name())));
                }
            }
        }
    }
    Ok(methods)
}

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
#[derive(Debug, Clone)]
pub(crate) struct MetricsLayer {
    methods: Arc<HashSet<Arc<str>>>,
}

impl MetricsLayer {
    /// Labels the methods of `services` (full names, e.g.
    /// `switchboard.v1.ResolverService`), health and reflection.
    pub(crate) fn new(services: &[&str]) -> anyhow::Result<Self> {
        Ok(Self {
            methods: Arc::new(served_methods(services)?),
        })
    }
}

impl<S> tower::Layer<S> for MetricsLayer {
    type Service = MetricsService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        MetricsService {
            inner,
            methods: self.methods.clone(),
        }
    }
}

/// The service [`MetricsLayer`] wraps around each gRPC service.
#[derive(Debug, Clone)]
pub(crate) struct MetricsService<S> {
    inner: S,
    methods: Arc<HashSet<Arc<str>>>,
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
        let method = match self.methods.get(request.uri().path()) {
            Some(method) => SharedString::from(method.clone()),
            None => SharedString::const_str(UNKNOWN_METHOD),
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_role_labels_its_own_methods_health_and_reflection_only() {
        let resolver = served_methods(&["switchboard.v1.ResolverService"]).unwrap();
        for path in [
            "/switchboard.v1.ResolverService/ResolveConnection",
            "/grpc.health.v1.Health/Check",
            "/grpc.reflection.v1.ServerReflection/ServerReflectionInfo",
            "/grpc.reflection.v1alpha.ServerReflection/ServerReflectionInfo",
        ] {
            assert!(resolver.contains(path), "{path}");
        }
        assert!(!resolver.contains("/switchboard.v1.ConnectionService/CreateConnection"));
        let control = served_methods(&["switchboard.v1.ConnectionService"]).unwrap();
        assert!(control.contains("/switchboard.v1.ConnectionService/CreateConnection"));
        assert!(!control.contains("/switchboard.v1.ResolverService/ResolveConnection"));
        assert!(!control.contains("/switchboard.v1.ConnectionService/Invented"));
    }
}
