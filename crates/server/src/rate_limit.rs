//! Per-caller rate limits: a token bucket per authenticated principal (a
//! user by its subject, a deployment by name, whichever of its tokens is
//! presented), or per peer address for calls that fail authentication, so
//! neither respelling a token nor inventing garbage ones buys a fresh
//! allowance. Control and the resolver each have their own limit.
//!
//! The layer only hands each call an [`Admission`] (in the request's
//! extensions); the services consult it right after they authenticate, so a
//! token is verified once, by the code that serves the call. Exceeding the
//! limit answers RESOURCE_EXHAUSTED.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use switchboard_auth::{Admission, Caller, CallerGate};

/// Buckets kept at most; callers beyond it share one overflow bucket, so a
/// flood of distinct addresses cannot grow the map.
const MAX_BUCKETS: usize = 100_000;
/// Least time between two sweeps of idle buckets when the map is full (a
/// sweep walks every bucket).
const SWEEP_GAP: Duration = Duration::from_secs(1);

/// A token bucket's state.
#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

#[derive(Debug)]
struct Buckets {
    map: HashMap<[u8; 32], Bucket>,
    last_sweep: Option<Instant>,
}

/// One limit: `per_second` calls per caller, in bursts of `burst`.
#[derive(Debug)]
pub(crate) struct Limiter {
    /// `control` or `resolver`, the label of the refusal counter.
    service: &'static str,
    per_second: f64,
    burst: f64,
    max_buckets: usize,
    buckets: Mutex<Buckets>,
}

/// The key of the bucket shared by callers that found the map full.
const OVERFLOW_KEY: [u8; 32] = [0; 32];

impl Limiter {
    pub(crate) fn new(service: &'static str, per_second: u32, burst: u32) -> Self {
        Self::with_capacity(service, per_second, burst, MAX_BUCKETS)
    }

    fn with_capacity(service: &'static str, per_second: u32, burst: u32, max: usize) -> Self {
        Self {
            service,
            per_second: f64::from(per_second.max(1)),
            burst: f64::from(burst.max(1)),
            max_buckets: max.max(1),
            buckets: Mutex::new(Buckets {
                map: HashMap::new(),
                last_sweep: None,
            }),
        }
    }

    fn allow(&self, key: [u8; 32]) -> bool {
        let now = Instant::now();
        let Ok(mut buckets) = self.buckets.lock() else {
            return true;
        };
        let buckets = &mut *buckets;
        let key = if buckets.map.contains_key(&key) || buckets.map.len() < self.max_buckets {
            key
        } else {
            let due = buckets
                .last_sweep
                .is_none_or(|last| now.duration_since(last) >= SWEEP_GAP);
            if due {
                // Buckets idle long enough to be full again carry no state.
                let refill = self.burst / self.per_second;
                buckets
                    .map
                    .retain(|_, bucket| now.duration_since(bucket.updated).as_secs_f64() < refill);
                buckets.last_sweep = Some(now);
            }
            if buckets.map.len() < self.max_buckets {
                key
            } else {
                OVERFLOW_KEY
            }
        };
        let bucket = buckets.map.entry(key).or_insert(Bucket {
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

impl CallerGate for Limiter {
    fn admit(&self, caller: Caller<'_>) -> bool {
        let allowed = self.allow(bucket_key(caller));
        if !allowed {
            metrics::counter!("switchboard_rate_limited_total", "service" => self.service)
                .increment(1);
        }
        allowed
    }
}

/// The bucket of `caller`: a hash, so that no subject or address is kept.
/// Fields are length-prefixed so that no two callers hash alike.
fn bucket_key(caller: Caller<'_>) -> [u8; 32] {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_be_bytes());
        hasher.update(bytes);
    };
    match caller {
        Caller::User { subject } => {
            field(b"user");
            field(subject.as_bytes());
        }
        Caller::Deployment {
            workspace,
            deployment,
        } => {
            field(b"deployment");
            field(workspace.as_bytes());
            field(deployment.as_bytes());
        }
        Caller::Peer(peer) => {
            field(b"peer");
            match peer.map(network_of) {
                Some(IpAddr::V4(address)) => field(&address.octets()),
                Some(IpAddr::V6(address)) => field(&address.octets()),
                None => field(b""),
            }
        }
    }
    let key: [u8; 32] = hasher.finalize().into();
    debug_assert_ne!(key, OVERFLOW_KEY);
    key
}

/// The unit one party controls: an IPv4 address, or an IPv6 /64 (a single
/// host is usually handed a whole /64).
fn network_of(address: IpAddr) -> IpAddr {
    match address {
        IpAddr::V4(_) => address,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let bits = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(bits.into())
            }
        },
    }
}

/// Tower layer giving each call to a limited service its [`Admission`].
#[derive(Debug, Clone)]
pub(crate) struct RateLimitLayer {
    control: Arc<Limiter>,
    resolver: Arc<Limiter>,
}

impl RateLimitLayer {
    /// Control's and the resolver's limits, in calls per second per caller,
    /// each with bursts of five seconds' worth.
    pub(crate) fn new(control_per_second: u32, resolver_per_second: u32) -> Self {
        let limiter = |service, per_second: u32| {
            Arc::new(Limiter::new(
                service,
                per_second,
                per_second.saturating_mul(5),
            ))
        };
        Self {
            control: limiter("control", control_per_second),
            resolver: limiter("resolver", resolver_per_second),
        }
    }
}

impl<S> tower::Layer<S> for RateLimitLayer {
    type Service = RateLimitService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        RateLimitService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`RateLimitLayer`] wraps.
#[derive(Debug, Clone)]
pub(crate) struct RateLimitService<S> {
    inner: S,
    layer: RateLimitLayer,
}

impl<S, B> tower::Service<http::Request<B>> for RateLimitService<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(
        &mut self,
        context: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(context)
    }

    fn call(&mut self, mut request: http::Request<B>) -> Self::Future {
        let path = request.uri().path();
        // Health and reflection are not limited; neither authenticates.
        let limiter = if path.starts_with("/switchboard.v1.ResolverService/") {
            Some(&self.layer.resolver)
        } else if path.starts_with("/switchboard.v1.") {
            Some(&self.layer.control)
        } else {
            None
        };
        if let Some(limiter) = limiter {
            let peer = request
                .extensions()
                .get::<tonic::transport::server::TcpConnectInfo>()
                .and_then(|info| info.remote_addr())
                .map(|address: SocketAddr| address.ip());
            let gate: Arc<dyn CallerGate> = limiter.clone();
            request.extensions_mut().insert(Admission::new(gate, peer));
        }
        self.inner.call(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(subject: &str) -> Caller<'_> {
        Caller::User { subject }
    }

    #[test]
    fn buckets_allow_a_burst_then_refill() {
        let limiter = Limiter::new("control", 1, 3);
        assert!((0..3).all(|_| limiter.admit(user("alice"))));
        assert!(!limiter.admit(user("alice")));
        // Another caller has its own bucket.
        assert!(limiter.admit(user("bob")));
    }

    #[test]
    fn callers_are_told_apart_by_kind_and_every_field() {
        let keys = [
            bucket_key(user("prod")),
            bucket_key(Caller::Deployment {
                workspace: "acme",
                deployment: "prod",
            }),
            bucket_key(Caller::Deployment {
                workspace: "acmep",
                deployment: "rod",
            }),
            bucket_key(Caller::Peer(Some("127.0.0.1".parse().unwrap()))),
            bucket_key(Caller::Peer(None)),
        ];
        for (index, key) in keys.iter().enumerate() {
            assert!(keys[index + 1..].iter().all(|other| other != key));
        }
    }

    #[test]
    fn ipv6_peers_share_their_slash_64() {
        let peer = |text: &str| bucket_key(Caller::Peer(Some(text.parse().unwrap())));
        assert_eq!(peer("2001:db8::1"), peer("2001:db8::ffff:1"));
        assert_ne!(peer("2001:db8::1"), peer("2001:db8:0:1::1"));
        assert_eq!(peer("::ffff:10.0.0.1"), peer("10.0.0.1"));
    }

    #[test]
    fn the_map_stays_bounded_and_newcomers_share_the_overflow_bucket() {
        let limiter = Limiter::with_capacity("control", 1, 2, 3);
        for subject in ["a", "b", "c"] {
            assert!(limiter.admit(user(subject)));
        }
        // Full, and nobody idle long enough to drop: newcomers share one bucket.
        assert!(limiter.admit(user("d")));
        assert!(limiter.admit(user("e")));
        assert!(!limiter.admit(user("f")));
        let buckets = limiter.buckets.lock().unwrap();
        assert!(buckets.map.len() <= 4, "{}", buckets.map.len());
        drop(buckets);
        // Callers already known keep their own allowance.
        assert!(limiter.admit(user("a")));
    }
}
