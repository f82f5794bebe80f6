//! Words for UNIMPLEMENTED. tonic answers a call to a service the process
//! does not serve, or to a method its service lacks, with UNIMPLEMENTED and
//! an empty message; a resolver call sent to `switchboard control` (or the
//! reverse) then tells the caller nothing. This layer keeps the code and
//! fills the message: which services this address serves, and where the
//! other ones are.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::HeaderValue;
use switchboard_proto::SERVICE_NAMES;

use crate::serve::Role;

/// gRPC's code for UNIMPLEMENTED, as it appears in `grpc-status`.
const UNIMPLEMENTED: &str = "12";

/// Tower layer that explains empty UNIMPLEMENTED answers.
#[derive(Debug, Clone)]
pub(crate) struct UnimplementedLayer {
    role: Role,
    served: Arc<[&'static str]>,
}

impl UnimplementedLayer {
    /// Explains for a process of `role` serving `served` (full service names).
    pub(crate) fn new(role: Role, served: &[&'static str]) -> Self {
        Self {
            role,
            served: served.into(),
        }
    }
}

impl<S> tower::Layer<S> for UnimplementedLayer {
    type Service = UnimplementedService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        UnimplementedService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service [`UnimplementedLayer`] wraps around the router.
#[derive(Debug, Clone)]
pub(crate) struct UnimplementedService<S> {
    inner: S,
    layer: UnimplementedLayer,
}

impl<S, B, R> tower::Service<http::Request<B>> for UnimplementedService<S>
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
        let path = request.uri().path().to_owned();
        let layer = self.layer.clone();
        let future = self.inner.call(request);
        Box::pin(async move {
            let mut response = future.await?;
            let headers = response.headers_mut();
            let unimplemented = headers
                .get("grpc-status")
                .is_some_and(|status| status == UNIMPLEMENTED);
            if unimplemented && !headers.contains_key("grpc-message") {
                let message = layer.explain(&path);
                // ASCII without '%' needs no percent-encoding.
                if let Ok(value) = HeaderValue::from_str(&message) {
                    headers.insert("grpc-message", value);
                }
            }
            Ok(response)
        })
    }
}

impl UnimplementedLayer {
    /// Why `path` (`/package.Service/Method`) is not served here.
    fn explain(&self, path: &str) -> String {
        let mut parts = path.trim_start_matches('/').splitn(2, '/');
        let service = parts.next().filter(|name| is_plain(name));
        let method = parts.next().filter(|name| is_plain(name));
        let here = self.here();
        match (service, method) {
            (Some(service), Some(method)) if self.served.contains(&service) => {
                format!("{service} has no method {method}; {here}")
            }
            (Some(service), _) if SERVICE_NAMES.contains(&service) => {
                let elsewhere = match self.role {
                    Role::Control => {
                        "the resolver answers it: call the address of `switchboard resolver` \
                         (or `switchboard dev`, which serves both)"
                    }
                    Role::Resolver | Role::Dev => {
                        "control answers it: call the address of `switchboard control` \
                         (or `switchboard dev`, which serves both)"
                    }
                };
                format!("{here}, not {service}; {elsewhere}")
            }
            (Some(service), _) => format!("unknown service {service}; {here}"),
            (None, _) => format!("no such method; {here}"),
        }
    }

    /// `this address serves switchboard control (…)`.
    fn here(&self) -> String {
        let what = match self.role {
            Role::Dev => "switchboard dev",
            Role::Control => "switchboard control",
            Role::Resolver => "the switchboard resolver",
        };
        let services: Vec<&str> = self
            .served
            .iter()
            .map(|name| name.rsplit('.').next().unwrap_or(name))
            .collect();
        format!("this address serves {what} ({})", services.join(", "))
    }
}

/// Whether a path segment may be repeated in a message: a caller's path is
/// arbitrary text, and only names made of these characters are echoed.
fn is_plain(segment: &str) -> bool {
    !segment.is_empty()
        && segment.len() <= 200
        && segment
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn control() -> UnimplementedLayer {
        UnimplementedLayer::new(
            Role::Control,
            &[
                "switchboard.v1.ConnectionService",
                "switchboard.v1.DeploymentService",
                "switchboard.v1.WorkspaceService",
                "switchboard.v1.AuditService",
            ],
        )
    }

    #[test]
    fn a_call_for_the_other_process_names_both() {
        assert_eq!(
            control().explain("/switchboard.v1.ResolverService/ListResolvedConnections"),
            "this address serves switchboard control (ConnectionService, DeploymentService, \
             WorkspaceService, AuditService), not switchboard.v1.ResolverService; the resolver \
             answers it: call the address of `switchboard resolver` (or `switchboard dev`, which \
             serves both)"
        );
        let resolver = UnimplementedLayer::new(Role::Resolver, &["switchboard.v1.ResolverService"]);
        assert!(
            resolver
                .explain("/switchboard.v1.ConnectionService/ListConnections")
                .starts_with(
                    "this address serves the switchboard resolver (ResolverService), not \
                     switchboard.v1.ConnectionService; control answers it"
                )
        );
    }

    #[test]
    fn unknown_methods_and_services_are_named_and_odd_paths_are_not_echoed() {
        let control = control();
        assert!(
            control
                .explain("/switchboard.v1.ConnectionService/Invented")
                .starts_with("switchboard.v1.ConnectionService has no method Invented; ")
        );
        assert!(
            control
                .explain("/acme.Other/Call")
                .starts_with("unknown service acme.Other; this address serves")
        );
        let odd = control.explain("/evil%0d%0aservice/x");
        assert!(odd.starts_with("no such method; "), "{odd}");
        assert!(!odd.contains("evil"));
    }
}
