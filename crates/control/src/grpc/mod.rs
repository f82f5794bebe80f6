//! The gRPC face of control: tonic adapters that authenticate the caller,
//! decode each request into a service command, and encode the result. Names
//! in the request are parsed before authentication, so a malformed name is
//! INVALID_ARGUMENT whoever asks; everything after authentication
//! (authorization first) is the service layer's.

mod audit;
mod connections;
mod deployments;
pub(crate) mod pb_conversions;
mod workspace;

use std::sync::Arc;

use switchboard_auth::{Admission, Authenticator};
use switchboard_domain::namespaces::AllowedNamespaces;
use switchboard_domain::permission::Principal;
use switchboard_proto::v1 as pb;
use switchboard_store::{Clock, Store};
use tonic::Request;

use crate::error::{ControlError, ControlResult};
use crate::page_token::PageTokenKey;
use crate::service::ControlService;

/// Control's gRPC services; cheap to clone. One value serves every control
/// service.
#[derive(Debug, Clone)]
pub struct Control {
    service: ControlService,
    auth: Authenticator,
}

impl Control {
    /// Builds control over `store`, authenticating with `auth`.
    pub fn new(
        store: Store,
        auth: Authenticator,
        clock: Arc<dyn Clock>,
        page_key: PageTokenKey,
    ) -> Self {
        Self {
            service: ControlService::new(store, clock, page_key),
            auth,
        }
    }

    /// Lets deployments ask for Kubernetes Secrets in these namespaces only
    /// (by default in none).
    pub fn with_kube_namespaces(mut self, allowed: AllowedNamespaces) -> Self {
        self.service = self.service.with_kube_namespaces(allowed);
        self
    }

    /// The gRPC services, ready to add to a tonic router.
    pub fn services(
        &self,
    ) -> (
        pb::connection_service_server::ConnectionServiceServer<Self>,
        pb::deployment_service_server::DeploymentServiceServer<Self>,
        pb::workspace_service_server::WorkspaceServiceServer<Self>,
        pb::audit_service_server::AuditServiceServer<Self>,
    ) {
        (
            pb::connection_service_server::ConnectionServiceServer::new(self.clone()),
            pb::deployment_service_server::DeploymentServiceServer::new(self.clone()),
            pb::workspace_service_server::WorkspaceServiceServer::new(self.clone()),
            pb::audit_service_server::AuditServiceServer::new(self.clone()),
        )
    }

    /// Authenticates the caller from the `authorization` metadata.
    pub(crate) async fn authenticate<T>(&self, request: &Request<T>) -> ControlResult<Principal> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        let outcome = self
            .auth
            .authenticate(self.service.store.db(), header)
            .await;
        // The rate limit is charged once the caller is known (or known to
        // have failed authentication), before any work.
        Admission::check(request.extensions().get(), outcome.as_ref().ok())?;
        let principal = outcome?;
        if let Principal::Deployment { .. } = principal {
            // Valid, but for the resolver: PERMISSION_DENIED, as the
            // permission table's ✗ for deployment tokens says, with words
            // that don't read as a missing role.
            return Err(ControlError::PermissionDenied(format!(
                "this is a deployment token; control needs a user token \
                 (deployment tokens are for Airflow's calls to the resolver): {}",
                self.auth.user_token_advice()
            )));
        }
        Ok(principal)
    }
}
