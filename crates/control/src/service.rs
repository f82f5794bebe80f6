//! The shared state of control's services and the checks every call makes.

use std::sync::Arc;

use switchboard_auth::{Admission, Authenticator};
use switchboard_domain::permission::{self, Action, PolicyFlags, Principal};
use switchboard_proto::v1 as pb;
use switchboard_store::DbHandle;
use switchboard_store::{Clock, Store};
use tonic::Request;

use crate::error::{ControlError, ControlResult};
use crate::page_token::PageTokenKey;
use switchboard_domain::namespaces::AllowedNamespaces;

/// Control's state; cheap to clone. One value serves every control service.
#[derive(Debug, Clone)]
pub struct Control {
    pub(crate) store: Store,
    auth: Authenticator,
    clock: Arc<dyn Clock>,
    pub(crate) page_key: PageTokenKey,
    /// Where each workspace's deployments may ask for a Kubernetes Secret.
    pub(crate) kube_namespaces: Arc<AllowedNamespaces>,
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
            store,
            auth,
            clock,
            page_key,
            kube_namespaces: Arc::default(),
        }
    }

    /// Lets deployments ask for Kubernetes Secrets in these namespaces only
    /// (by default in none).
    pub fn with_kube_namespaces(mut self, allowed: AllowedNamespaces) -> Self {
        self.kube_namespaces = Arc::new(allowed);
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

    /// Now, in Unix microseconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_micros()
    }

    /// Authenticates the caller from the `authorization` metadata.
    pub(crate) async fn principal<T>(&self, request: &Request<T>) -> ControlResult<Principal> {
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        let outcome = self.auth.authenticate(self.store.db(), header).await;
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

    /// The policy switches of `workspace` (all off when never set).
    pub(crate) async fn policy_flags<C: DbHandle>(
        &self,
        db: &C,
        workspace: &str,
    ) -> ControlResult<PolicyFlags> {
        Ok(switchboard_store::policy::flags(db, workspace).await?)
    }

    /// Checks that `principal` may perform `action` in `workspace`, reading
    /// the workspace policy only for the actions it gates.
    pub(crate) async fn authorize(
        &self,
        principal: &Principal,
        workspace: &str,
        action: Action,
    ) -> ControlResult<()> {
        let policy = match action {
            Action::RevealSecrets | Action::Resolve => {
                self.policy_flags(self.store.db(), workspace).await?
            }
            _ => PolicyFlags::default(),
        };
        Ok(permission::authorize(
            principal, workspace, action, policy, None,
        )?)
    }

    /// Authenticates, then authorizes `action` in `workspace`.
    pub(crate) async fn caller<T>(
        &self,
        request: &Request<T>,
        workspace: &str,
        action: Action,
    ) -> ControlResult<Principal> {
        let principal = self.principal(request).await?;
        self.authorize(&principal, workspace, action).await?;
        Ok(principal)
    }
}
