//! A per-caller rate limit on control's methods: a token bucket per bearer
//! token (hashed; the token itself is never kept), or per peer address for
//! unauthenticated calls. Exceeding it answers RESOURCE_EXHAUSTED. The
//! resolver, on Airflow's hot path, is not limited here.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// Buckets kept before idle ones are dropped.
const MAX_BUCKETS: usize = 100_000;

/// A token bucket's state.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Shared limiter state.
#[derive(Debug)]
struct Limiter {
    per_second: f64,
    burst: f64,
    buckets: Mutex<HashMap<[u8; 32], Bucket>>,
}

impl Limiter {
    fn allow(&self, key: [u8; 32]) -> bool {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        if buckets.len() >= MAX_BUCKETS {
            // Buckets idle long enough to be full again carry no state.
            let refill = self.burst / self.per_second;
            buckets.retain(|_, bucket| now.duration_since(bucket.updated).as_secs_f64() < refill);
        }
        let bucket = buckets.entry(key).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        let elapsed = now.duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * self.per_second).min(self.burst);
        bucket.updated = now;
        if bucket.tokens >= 1.0 {
            bucket.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Tower layer limiting each caller to `per_second` calls (bursts of `burst`).
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    limiter: Arc<Limiter>,
}

impl RateLimitLayer {
    pub(crate) fn new(per_second: u32, burst: u32) -> Self {
        Self {
            limiter: Arc::new(Limiter {
                per_second: f64::from(per_second.max(1)),
                burst: f64::from(burst.max(1)),
                buckets: Mutex::new(HashMap::new()),
            }),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            limiter: self.limiter.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitService<S> {
    inner: S,
    limiter: Arc<Limiter>,
}

fn caller_key<B>(request: &http::Request<B>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    match request.headers().get("authorization") {
        Some(value) => hasher.update(value.as_bytes()),
        None => {
            let peer = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|address: SocketAddr| address.ip().to_string())
                .unwrap_or_default();
            hasher.update(b"peer:");
            hasher.update(peer.as_bytes());
        }
    }
    hasher.finalize().into()
}

impl<S, B, R> tower::Service<http::Request<B>> for RateLimitService<S>
where
    S: tower::Service<http::Request<B>, Response = http::Response<R>>,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    R: Default + Send + 'static,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, Self::Error>> + Send>>;

    fn poll_ready(&mut self, context: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        let limited = path.starts_with("/switchboard.v1.")
            && !path.starts_with("/switchboard.v1.ResolverService/");
        if limited && !self.limiter.allow(caller_key(&request)) {
            metrics::counter!("switchboard_rate_limited_total").increment(1);
            let status =
                tonic::Status::resource_exhausted("rate limit exceeded; slow down and retry");
            return Box::pin(async move { Ok(status.into_http::<R>()) });
        }
        Box::pin(self.inner.call(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buckets_allow_a_burst_then_refill() {
        let limiter = RateLimitLayer::new(1, 3).limiter;
        let key = [1; 32];
        assert!((0..3).all(|_| limiter.allow(key)));
        assert!(!limiter.allow(key));
        // Another caller has its own bucket.
        assert!(limiter.allow([2; 32]));
    }
}
