//! The Kubernetes calls the sync makes, on Secrets only: get, server-side
//! apply, delete with a uid precondition, and list by the managed label.
//! Every failed call is counted; errors become [`KubeSyncError`]s that say
//! whether retrying can help.

use std::path::Path;

use k8s_openapi::api::core::v1::Secret;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, Preconditions};
use kube::config::{KubeConfigOptions, Kubeconfig};

use crate::desired::{self, DesiredSecret, FIELD_MANAGER};
use crate::error::{KubeSyncError, KubeSyncResult};
use crate::metric_definitions::{APPLIES_TOTAL, DELETES_TOTAL, ERRORS_TOTAL};

/// Builds a Kubernetes client from `kubeconfig`, or from the Pod's service
/// account (in-cluster config) when `None`.
pub async fn connect(kubeconfig: Option<&Path>) -> KubeSyncResult<kube::Client> {
    // The client's TLS needs a process-wide rustls provider; installing twice is harmless.
    switchboard_store::vault::install_crypto_provider();
    let config = match kubeconfig {
        Some(path) => {
            let file = Kubeconfig::read_from(path).map_err(|err| {
                KubeSyncError::Config(format!("cannot read kubeconfig {}: {err}", path.display()))
            })?;
            kube::Config::from_custom_kubeconfig(file, &KubeConfigOptions::default())
                .await
                .map_err(|err| KubeSyncError::Config(format!("invalid kubeconfig: {err}")))?
        }
        None => kube::Config::incluster().map_err(|err| {
            KubeSyncError::Config(format!("no in-cluster Kubernetes configuration: {err}"))
        })?,
    };
    kube::Client::try_from(config)
        .map_err(|err| KubeSyncError::Config(format!("cannot build the Kubernetes client: {err}")))
}

/// Maps a Kubernetes error: conflicts, outages, throttling and server errors
/// are worth retrying; anything else (forbidden, invalid) is refused.
fn classify(operation: &'static str, err: kube::Error) -> KubeSyncError {
    let reason = match &err {
        kube::Error::Api(response) => response.code.to_string(),
        _ => "transport".to_owned(),
    };
    metrics::counter!(ERRORS_TOTAL, "operation" => operation, "reason" => reason).increment(1);
    match &err {
        kube::Error::Api(response) if response.code == 409 => KubeSyncError::Conflict {
            operation,
            source: err,
        },
        kube::Error::Api(response) if response.code == 429 || response.code >= 500 => {
            KubeSyncError::Unavailable {
                operation,
                source: err,
            }
        }
        kube::Error::Api(_)
        | kube::Error::SerdeError(_)
        | kube::Error::BuildRequest(_)
        | kube::Error::InferConfig(_) => KubeSyncError::Refused {
            operation,
            source: err,
        },
        _ => KubeSyncError::Unavailable {
            operation,
            source: err,
        },
    }
}

/// Secrets through one Kubernetes client.
#[derive(Clone)]
pub(crate) struct SecretClient {
    client: kube::Client,
}

impl std::fmt::Debug for SecretClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SecretClient").finish_non_exhaustive()
    }
}

impl SecretClient {
    pub(crate) fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn api(&self, namespace: &str) -> Api<Secret> {
        Api::namespaced(self.client.clone(), namespace)
    }

    /// The Secret, or `None` when it does not exist.
    pub(crate) async fn get(&self, namespace: &str, name: &str) -> KubeSyncResult<Option<Secret>> {
        self.api(namespace)
            .get_opt(name)
            .await
            .map_err(|err| classify("get", err))
    }

    /// Server-side applies `desired`, forcing ownership of its fields.
    pub(crate) async fn apply(
        &self,
        desired: &DesiredSecret,
        resource_version: Option<String>,
    ) -> KubeSyncResult<()> {
        let params = PatchParams::apply(FIELD_MANAGER).force();
        self.api(&desired.namespace)
            .patch(
                &desired.name,
                &params,
                &Patch::Apply(desired.to_apply(resource_version)),
            )
            .await
            .map_err(|err| classify("apply", err))?;
        metrics::counter!(APPLIES_TOTAL).increment(1);
        Ok(())
    }

    /// Deletes the Secret if it is still the object with `uid`; a Secret
    /// already gone counts as deleted.
    pub(crate) async fn delete(
        &self,
        namespace: &str,
        name: &str,
        uid: Option<String>,
    ) -> KubeSyncResult<()> {
        let params = DeleteParams {
            preconditions: Some(Preconditions {
                uid,
                resource_version: None,
            }),
            ..DeleteParams::default()
        };
        match self.api(namespace).delete(name, &params).await {
            Ok(_) => {
                metrics::counter!(DELETES_TOTAL).increment(1);
                Ok(())
            }
            Err(kube::Error::Api(response)) if response.code == 404 => Ok(()),
            Err(err) => Err(classify("delete", err)),
        }
    }

    /// Managed Secrets in `namespace`.
    pub(crate) async fn list_managed(&self, namespace: &str) -> KubeSyncResult<Vec<Secret>> {
        let params = ListParams::default().labels(&desired::managed_selector());
        Ok(self
            .api(namespace)
            .list(&params)
            .await
            .map_err(|err| classify("list", err))?
            .items)
    }
}
