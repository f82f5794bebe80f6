//! The service layer's shared state and the checks every operation makes.
//! Operations take the authenticated [`Principal`] and a command, authorize
//! it, and return store rows or domain values; the gRPC adapters in
//! `crate::grpc` authenticate callers and translate messages.

use std::sync::Arc;

use switchboard_domain::namespaces::AllowedNamespaces;
use switchboard_domain::permission::{self, Action, PolicyFlags, Principal};
use switchboard_store::DbHandle;
use switchboard_store::{Clock, Store};

use crate::error::{ControlError, ControlResult};
use crate::page_token::PageTokenKey;

/// The state the operations of every control service share; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ControlService {
    pub(crate) store: Store,
    clock: Arc<dyn Clock>,
    pub(crate) page_key: PageTokenKey,
    /// Where each workspace's deployments may ask for a Kubernetes Secret.
    pub(crate) kube_namespaces: Arc<AllowedNamespaces>,
}

/// Where a list starts and how long its page is, as the caller sent them.
#[derive(Debug, Default)]
pub(crate) struct PageRequest {
    /// 0 for the default size.
    pub size: i32,
    /// Empty for the first page.
    pub token: String,
}

/// One page of a list: its items and the token of the next page (empty on
/// the last page).
#[derive(Debug)]
pub(crate) struct Page<T> {
    pub items: Vec<T>,
    pub next_page_token: String,
}

impl ControlService {
    /// The service over `store`; deployments may ask for Kubernetes Secrets
    /// in no namespace until [`Self::with_kube_namespaces`].
    pub(crate) fn new(store: Store, clock: Arc<dyn Clock>, page_key: PageTokenKey) -> Self {
        Self {
            store,
            clock,
            page_key,
            kube_namespaces: Arc::default(),
        }
    }

    /// Lets deployments ask for Kubernetes Secrets in these namespaces only.
    pub(crate) fn with_kube_namespaces(mut self, allowed: AllowedNamespaces) -> Self {
        self.kube_namespaces = Arc::new(allowed);
        self
    }

    /// Now, in Unix microseconds.
    pub(crate) fn now(&self) -> i64 {
        self.clock.now_micros()
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
}

/// The etag of a row version.
pub(crate) fn etag(version: i64) -> String {
    format!("v{version}")
}

/// Checks a caller-supplied etag against the current version.
pub(crate) fn check_etag(given: &str, version: i64, what: &'static str) -> ControlResult<()> {
    if !given.is_empty() && given != etag(version) {
        return Err(ControlError::StaleEtag { what });
    }
    Ok(())
}

/// Rejects a command whose required part is missing.
pub(crate) fn required<T>(field: &str, value: Option<T>) -> ControlResult<T> {
    value.ok_or_else(|| ControlError::invalid(field, "is required"))
}
