//! Reconciling deployments' Secrets: what each should hold, the deployment
//! tokens TOKEN mode needs, and removing Secrets no deployment wants.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Secret;
use switchboard_domain::airflow;
use switchboard_domain::names::TokenName;
use switchboard_store::audit::{self, AuditRecord};
use switchboard_store::entity::{deployment, deployment_token};
use switchboard_store::{deployments, tokens, visibility};

use crate::desired::{
    self, ADDRESS_KEY, DEPLOYMENT_LABEL, DesiredSecret, MAX_SECRET_BYTES, TOKEN_KEY,
    WORKSPACE_LABEL, secret_name,
};
use crate::error::{KubeSyncError, KubeSyncResult};
use crate::metric_definitions::{DEPLOYMENT_PROBLEMS, RECONCILE_FAILURES_TOTAL, SKIPPED_TOTAL};
use crate::{KubeSync, SyncProblem, SyncReport};

/// Description of the deployment tokens the sync issues; only these are
/// revoked when replaced.
pub const KUBE_TOKEN_DESCRIPTION: &str = "kubernetes secret";
/// The actor of the sync's audit events.
const ACTOR: &str = "system:kubernetes-secret-sync";
const KIND_TOKEN: &str = "token";
/// Name of the shared key the installation id comes from.
const INSTANCE_KEY: &str = "kube-sync-instance";
/// Action of the audit event written for each ENV-mode Secret write.
const ACTION_ENV_SECRET: &str = "ApplyKubernetesSecret";
/// What the audit events of Secret writes say in `changed_fields`: whoever
/// can read the Secret's namespace reads the deployment's secrets.
pub const GRANTS_SECRET_ACCESS: &str = "grants secret access to the deployment's connections";

const NAMESPACE_NOT_ALLOWED: &str = "namespace_not_allowed";
const INVALID_ENV_KEY: &str = "invalid_env_key";
const SECRET_TOO_LARGE: &str = "secret_too_large";
const NAME_TAKEN: &str = "name_taken";
/// Every problem reason, so a fixed one's gauge goes back to 0.
const PROBLEM_REASONS: [&str; 4] = [
    NAMESPACE_NOT_ALLOWED,
    INVALID_ENV_KEY,
    SECRET_TOO_LARGE,
    NAME_TAKEN,
];

fn wants_secret(row: &deployment::Model) -> bool {
    !row.namespace.is_empty() && matches!(row.secret_delivery.as_str(), "TOKEN" | "ENV")
}

fn deployment_resource(workspace: &str, deployment_id: &str) -> String {
    format!("workspaces/{workspace}/deployments/{deployment_id}")
}

fn key(row: &deployment::Model) -> (String, String) {
    (row.workspace.clone(), row.deployment_id.clone())
}

fn token_resource(row: &deployment_token::Model) -> String {
    TokenName {
        workspace: row.workspace.clone(),
        deployment: row.deployment_id.clone(),
        token: row.token_id.clone(),
    }
    .to_string()
}

impl KubeSync {
    /// This installation's id: 16 hex digits from a key in the database, so
    /// every replica of control labels Secrets alike.
    pub async fn instance(&mut self) -> KubeSyncResult<String> {
        if let Some(instance) = &self.instance {
            return Ok(instance.clone());
        }
        let key = self.store.shared_key(INSTANCE_KEY, 8).await?;
        let instance: String = key.iter().map(|byte| format!("{byte:02x}")).collect();
        self.instance = Some(instance.clone());
        Ok(instance)
    }

    /// Reconciles every deployment's Secret, then deletes managed Secrets no
    /// deployment wants in the namespaces deployments use.
    pub async fn reconcile_all(&mut self) -> KubeSyncResult<SyncReport> {
        let rows = deployments::all(self.store.db()).await?;
        let mut workspaces: BTreeSet<String> =
            rows.iter().map(|row| row.workspace.clone()).collect();
        workspaces.extend(self.known.keys().map(|(workspace, _)| workspace.clone()));
        let mut report = SyncReport::default();
        for workspace in &workspaces {
            report += self.reconcile_workspace(workspace).await?;
        }
        report += self.remove_orphans().await?;
        Ok(report)
    }

    /// Reconciles the Secrets of `workspace`'s deployments, and deletes those
    /// of its deployments that are gone.
    pub async fn reconcile_workspace(&mut self, workspace: &str) -> KubeSyncResult<SyncReport> {
        let rows = deployments::of_workspace(self.store.db(), workspace).await?;
        let instance = self.instance().await?;
        let mut report = SyncReport::default();
        for row in &rows {
            let mut problems = Vec::new();
            let result = self
                .reconcile_with_retry(&instance, row, &mut report, &mut problems)
                .await;
            if !problems.is_empty() {
                report.rejected += 1;
            }
            // A failed try says nothing new about the content; keep what the
            // last finished reconcile found.
            if result.is_ok() {
                self.set_problems(&row.workspace, &row.deployment_id, problems);
            }
            if let Err(err) = result {
                metrics::counter!(RECONCILE_FAILURES_TOTAL).increment(1);
                tracing::warn!(
                    workspace = %row.workspace,
                    deployment = %row.deployment_id,
                    error = %err,
                    "cannot reconcile the deployment's Kubernetes secret; retrying later"
                );
                report.failed += 1;
            }
        }
        let present: BTreeSet<&str> = rows.iter().map(|row| row.deployment_id.as_str()).collect();
        let gone: Vec<((String, String), String)> = self
            .known
            .iter()
            .filter(|((known_workspace, deployment_id), _)| {
                known_workspace == workspace && !present.contains(deployment_id.as_str())
            })
            .map(|(key, namespace)| (key.clone(), namespace.clone()))
            .collect();
        let gone_problems: Vec<(String, String)> = self
            .problems
            .keys()
            .filter(|(problem_workspace, deployment_id)| {
                problem_workspace == workspace && !present.contains(deployment_id.as_str())
            })
            .cloned()
            .collect();
        for (problem_workspace, deployment_id) in gone_problems {
            self.set_problems(&problem_workspace, &deployment_id, Vec::new());
        }
        for ((known_workspace, deployment_id), namespace) in gone {
            let name = secret_name(&known_workspace, &deployment_id);
            match self
                .delete_owned(
                    &instance,
                    &namespace,
                    &name,
                    &known_workspace,
                    &deployment_id,
                    &mut report,
                )
                .await
            {
                Ok(()) => {
                    let key = (known_workspace, deployment_id);
                    self.known.remove(&key);
                    self.issued.remove(&key);
                }
                Err(err) => {
                    tracing::warn!(namespace = %namespace, secret = %name, error = %err, "cannot delete the secret of a deleted deployment; retrying later");
                    report.failed += 1;
                }
            }
        }
        Ok(report)
    }

    async fn reconcile_with_retry(
        &mut self,
        instance: &str,
        row: &deployment::Model,
        report: &mut SyncReport,
        problems: &mut Vec<SyncProblem>,
    ) -> KubeSyncResult<()> {
        let mut failures = 0;
        loop {
            problems.clear();
            match self
                .reconcile_deployment(instance, row, report, problems)
                .await
            {
                Ok(()) => return Ok(()),
                Err(err) if err.is_retryable() && failures + 1 < self.options.retry_attempts => {
                    failures += 1;
                    let delay = self.options.backoff(failures);
                    tracing::debug!(
                        deployment = %row.deployment_id,
                        error = %err,
                        delay_ms = delay.as_millis() as u64,
                        "kubernetes secret reconcile failed; retrying"
                    );
                    tokio::time::sleep(delay).await;
                }
                Err(err) => return Err(err),
            }
        }
    }

    /// Records `problems` as the deployment's current ones: logged when they
    /// change, and the gauge set to 1 for each reason present, 0 for the rest.
    fn set_problems(&mut self, workspace: &str, deployment_id: &str, problems: Vec<SyncProblem>) {
        let key = (workspace.to_owned(), deployment_id.to_owned());
        let before = self.problems.get(&key).cloned().unwrap_or_default();
        if before == problems {
            return;
        }
        for reason in PROBLEM_REASONS {
            let had = before.iter().any(|problem| problem.reason == reason);
            let has = problems.iter().any(|problem| problem.reason == reason);
            if had || has {
                metrics::gauge!(
                    DEPLOYMENT_PROBLEMS,
                    "workspace" => workspace.to_owned(),
                    "deployment" => deployment_id.to_owned(),
                    "reason" => reason,
                )
                .set(if has { 1.0 } else { 0.0 });
            }
        }
        for problem in &problems {
            tracing::warn!(
                workspace = %workspace,
                deployment = %deployment_id,
                reason = problem.reason,
                problem = %problem.message,
                "kubernetes secret of the deployment not delivered as asked"
            );
        }
        if problems.is_empty() {
            tracing::info!(
                workspace = %workspace,
                deployment = %deployment_id,
                "kubernetes secret problems of the deployment are resolved"
            );
            self.problems.remove(&key);
        } else {
            self.problems.insert(key, problems);
        }
    }

    async fn reconcile_deployment(
        &mut self,
        instance: &str,
        row: &deployment::Model,
        report: &mut SyncReport,
        problems: &mut Vec<SyncProblem>,
    ) -> KubeSyncResult<()> {
        let key = key(row);
        let name = secret_name(&row.workspace, &row.deployment_id);
        let allowed = self
            .options
            .allowed_namespaces
            .allows(&row.workspace, &row.namespace);
        let delivers = wants_secret(row) && allowed;
        // The deployment moved to another namespace, or wants (or may have)
        // no Secret any more. Secrets this process never saw are left to the
        // resync's sweep.
        if let Some(old) = self.known.get(&key).cloned()
            && (old != row.namespace || !delivers)
        {
            self.delete_owned(
                instance,
                &old,
                &name,
                &row.workspace,
                &row.deployment_id,
                report,
            )
            .await?;
            self.known.remove(&key);
        }
        if row.secret_delivery != "TOKEN" {
            self.revoke_replaced_tokens(row, None, report).await?;
        }
        if wants_secret(row) && !allowed {
            // Written before the namespace left the allowed list (or before
            // the list existed): the Secret goes, as for any deployment that
            // may have none.
            self.delete_owned(
                instance,
                &row.namespace,
                &name,
                &row.workspace,
                &row.deployment_id,
                report,
            )
            .await?;
            let namespaces = self.options.allowed_namespaces.of(&row.workspace);
            problems.push(SyncProblem {
                reason: NAMESPACE_NOT_ALLOWED,
                message: format!(
                    "namespace {} is not allowed for workspace {} (allowed: {}); no Secret is written",
                    row.namespace,
                    row.workspace,
                    if namespaces.is_empty() {
                        "none".to_owned()
                    } else {
                        namespaces.join(", ")
                    }
                ),
            });
            return Ok(());
        }
        if !delivers {
            return Ok(());
        }
        let existing = self.secrets.get(&row.namespace, &name).await?;
        if let Some(existing) = &existing
            && !desired::belongs_to(existing, instance, &row.workspace, &row.deployment_id)
        {
            skip(existing, &row.namespace, &name, report);
            problems.push(SyncProblem {
                reason: NAME_TAKEN,
                message: format!(
                    "secret {}/{name} exists and is not this deployment's; it is left alone",
                    row.namespace
                ),
            });
            return Ok(());
        }
        let (data, current_token) = if row.secret_delivery == "TOKEN" {
            let (data, token_row) = self.token_data(row, existing.as_ref(), report).await?;
            (data, Some(token_row))
        } else {
            let mut data = self.env_data(row).await?;
            let invalid: Vec<String> = data
                .keys()
                .filter(|key| !desired::is_env_var_name(key))
                .cloned()
                .collect();
            if !invalid.is_empty() {
                for key in &invalid {
                    data.remove(key);
                }
                problems.push(SyncProblem {
                    reason: INVALID_ENV_KEY,
                    message: format!(
                        "keys {} are not environment variable names (letters, digits and '_'); those connections are left out of the Secret",
                        invalid.join(", ")
                    ),
                });
            }
            (data, None)
        };
        let wanted = DesiredSecret {
            instance: instance.to_owned(),
            namespace: row.namespace.clone(),
            name,
            workspace: row.workspace.clone(),
            deployment: row.deployment_id.clone(),
            data,
        };
        let bytes = wanted.data_bytes();
        if bytes > MAX_SECRET_BYTES {
            // Kubernetes would refuse it; the Secret stays as it was.
            problems.push(SyncProblem {
                reason: SECRET_TOO_LARGE,
                message: format!(
                    "the Secret would hold {bytes} bytes, over Kubernetes' limit of {MAX_SECRET_BYTES}; it is not written"
                ),
            });
            if existing.is_some() {
                self.known.insert(key, row.namespace.clone());
            }
            return Ok(());
        }
        match &existing {
            Some(existing) if wanted.is_satisfied_by(existing) => report.unchanged += 1,
            _ => {
                let resource_version = existing
                    .as_ref()
                    .and_then(|existing| existing.metadata.resource_version.clone());
                self.secrets.apply(&wanted, resource_version).await?;
                report.applied += 1;
                if row.secret_delivery == "ENV" {
                    self.audit_env_write(row).await?;
                }
                tracing::info!(
                    namespace = %wanted.namespace,
                    secret = %wanted.name,
                    delivery = %row.secret_delivery,
                    "applied kubernetes secret"
                );
            }
        }
        self.known.insert(key.clone(), row.namespace.clone());
        if let Some(token_row) = current_token {
            self.issued.remove(&key);
            self.revoke_replaced_tokens(row, Some(&token_row), report)
                .await?;
        }
        Ok(())
    }

    /// Audits an ENV-mode Secret write: the Secret holds the deployment's
    /// connections, secrets included, for whoever can read its namespace.
    /// No feed entry, so the write does not trigger another reconcile.
    async fn audit_env_write(&self, row: &deployment::Model) -> KubeSyncResult<()> {
        audit::insert(
            self.store.db(),
            AuditRecord {
                workspace: &row.workspace,
                actor: ACTOR.to_owned(),
                action: ACTION_ENV_SECRET,
                resource: deployment_resource(&row.workspace, &row.deployment_id),
                request_id: "",
                changed_fields: vec![GRANTS_SECRET_ACCESS.to_owned()],
            },
            None,
            self.clock.now_micros(),
        )
        .await?;
        Ok(())
    }

    /// Deletes `namespace/name` if it is the managed Secret of
    /// `workspace`/`deployment_id`; leaves anything else alone.
    async fn delete_owned(
        &mut self,
        instance: &str,
        namespace: &str,
        name: &str,
        workspace: &str,
        deployment_id: &str,
        report: &mut SyncReport,
    ) -> KubeSyncResult<()> {
        if let Some(existing) = self.secrets.get(namespace, name).await? {
            self.delete_if_owned(
                instance,
                &existing,
                namespace,
                name,
                workspace,
                deployment_id,
                report,
            )
            .await?;
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    async fn delete_if_owned(
        &self,
        instance: &str,
        existing: &Secret,
        namespace: &str,
        name: &str,
        workspace: &str,
        deployment_id: &str,
        report: &mut SyncReport,
    ) -> KubeSyncResult<()> {
        if !desired::belongs_to(existing, instance, workspace, deployment_id) {
            skip(existing, namespace, name, report);
            return Ok(());
        }
        self.secrets
            .delete(namespace, name, existing.metadata.uid.clone())
            .await?;
        report.deleted += 1;
        tracing::info!(namespace = %namespace, secret = %name, "deleted kubernetes secret");
        Ok(())
    }

    /// Deletes this installation's managed Secrets that no deployment
    /// wants, in every namespace a deployment uses or a Secret was seen in.
    async fn remove_orphans(&mut self) -> KubeSyncResult<SyncReport> {
        let instance = self.instance().await?;
        // Read after the reconciles, so deployments created meanwhile count.
        let rows = deployments::all(self.store.db()).await?;
        let wanted: BTreeSet<(String, String, String, String)> = rows
            .iter()
            .filter(|row| {
                wants_secret(row)
                    && self
                        .options
                        .allowed_namespaces
                        .allows(&row.workspace, &row.namespace)
            })
            .map(|row| {
                (
                    row.namespace.clone(),
                    secret_name(&row.workspace, &row.deployment_id),
                    row.workspace.clone(),
                    row.deployment_id.clone(),
                )
            })
            .collect();
        let mut namespaces: BTreeSet<String> = rows
            .iter()
            .filter(|row| !row.namespace.is_empty())
            .map(|row| row.namespace.clone())
            .collect();
        namespaces.extend(self.known.values().cloned());
        let mut report = SyncReport::default();
        for namespace in namespaces {
            let listed = match self.secrets.list_managed(&namespace).await {
                Ok(listed) => listed,
                Err(err) => {
                    tracing::warn!(namespace = %namespace, error = %err, "cannot list managed secrets; retrying at the next resync");
                    report.failed += 1;
                    continue;
                }
            };
            for secret in listed {
                let Some(name) = secret.metadata.name.clone() else {
                    continue;
                };
                // The list is by label, but check again before deleting;
                // another installation's Secrets are left alone. Secrets
                // under the name used before it carried the workspace
                // (`switchboard-<deployment>`) are not wanted, so go here.
                if !desired::is_ours(&secret, &instance) {
                    continue;
                }
                let workspace = desired::label(&secret, WORKSPACE_LABEL)
                    .unwrap_or_default()
                    .to_owned();
                let deployment_id = desired::label(&secret, DEPLOYMENT_LABEL)
                    .unwrap_or_default()
                    .to_owned();
                let identity = (namespace.clone(), name.clone(), workspace, deployment_id);
                if wanted.contains(&identity) {
                    continue;
                }
                match self
                    .secrets
                    .delete(&namespace, &name, secret.metadata.uid.clone())
                    .await
                {
                    Ok(()) => {
                        report.deleted += 1;
                        tracing::info!(namespace = %namespace, secret = %name, "deleted a managed kubernetes secret no deployment wants");
                        let (_, _, workspace, deployment_id) = identity;
                        let key = (workspace, deployment_id);
                        if self.known.get(&key) == Some(&namespace) {
                            self.known.remove(&key);
                        }
                    }
                    Err(err) => {
                        tracing::warn!(namespace = %namespace, secret = %name, error = %err, "cannot delete an orphaned managed secret");
                        report.failed += 1;
                    }
                }
            }
        }
        Ok(report)
    }

    /// ENV mode: `AIRFLOW_CONN_<ID>` = Airflow JSON for each effective connection.
    async fn env_data(&self, row: &deployment::Model) -> KubeSyncResult<BTreeMap<String, String>> {
        let db_conn = self.store.db();
        let mut data = BTreeMap::new();
        let visible = visibility::visible_connections(db_conn, row, None).await?;
        for connection in visibility::effective_all(self.store.secrets(), db_conn, &visible).await?
        {
            data.insert(
                airflow::env_var_name(&connection.conn_id),
                airflow::to_json(&connection),
            );
        }
        Ok(data)
    }

    /// TOKEN mode: the resolver address and a valid token — the one in the
    /// Secret while it is valid, else a newly issued one.
    async fn token_data(
        &mut self,
        row: &deployment::Model,
        existing: Option<&Secret>,
        report: &mut SyncReport,
    ) -> KubeSyncResult<(BTreeMap<String, String>, deployment_token::Model)> {
        let key = key(row);
        let candidates = [
            existing.and_then(|secret| desired::data_value(secret, TOKEN_KEY)),
            self.issued.get(&key).cloned(),
        ];
        let mut chosen = None;
        for token in candidates.into_iter().flatten() {
            if let Some(token_row) = self.valid_token(row, &token).await? {
                chosen = Some((token, token_row));
                break;
            }
        }
        let (token, token_row) = match chosen {
            Some(chosen) => chosen,
            None => {
                let issued = self.issue_token(row).await?;
                report.tokens_issued += 1;
                self.issued.insert(key, issued.0.clone());
                issued
            }
        };
        let data = BTreeMap::from([
            (
                ADDRESS_KEY.to_owned(),
                self.options.resolver_address.clone(),
            ),
            (TOKEN_KEY.to_owned(), token),
        ]);
        Ok((data, token_row))
    }

    /// The token's row, if `token` is a live token of this deployment.
    async fn valid_token(
        &self,
        row: &deployment::Model,
        token: &str,
    ) -> KubeSyncResult<Option<deployment_token::Model>> {
        let Some(token_id) = tokens::parse_token_id(token) else {
            return Ok(None);
        };
        let found = tokens::find(
            self.store.db(),
            &row.workspace,
            &row.deployment_id,
            token_id,
        )
        .await?;
        Ok(found.filter(|found| {
            found.revoke_time.is_none() && found.token_hash == tokens::hash_token(token)
        }))
    }

    /// Issues a deployment token for the Secret, audited like CreateDeploymentToken.
    async fn issue_token(
        &self,
        row: &deployment::Model,
    ) -> KubeSyncResult<(String, deployment_token::Model)> {
        let now = self.clock.now_micros();
        let write = self.store.begin_write().await?;
        if visibility::find_deployment(&write.txn, &row.workspace, &row.deployment_id)
            .await?
            .is_none()
        {
            return Err(KubeSyncError::DeploymentGone {
                deployment: row.deployment_id.clone(),
            });
        }
        let issued = tokens::issue(
            &write.txn,
            &row.workspace,
            &row.deployment_id,
            KUBE_TOKEN_DESCRIPTION,
            now,
        )
        .await?;
        let token_row = issued.row;
        audit::record(
            &write,
            AuditRecord {
                workspace: &row.workspace,
                actor: ACTOR.to_owned(),
                action: "CreateDeploymentToken",
                resource: token_resource(&token_row),
                request_id: "",
                changed_fields: vec![GRANTS_SECRET_ACCESS.to_owned()],
            },
            None,
            Some(KIND_TOKEN),
            now,
        )
        .await?;
        write.commit().await?;
        tracing::info!(
            workspace = %row.workspace,
            deployment = %row.deployment_id,
            token_id = %token_row.token_id,
            "issued a deployment token for the kubernetes secret"
        );
        Ok((issued.token, token_row))
    }

    /// Revokes the deployment's "kubernetes secret" tokens other than
    /// `current` once `current` is a grace period old (or, without a current
    /// token, once the deployment stopped using TOKEN delivery a grace period
    /// ago). Until then, schedules another look.
    async fn revoke_replaced_tokens(
        &mut self,
        row: &deployment::Model,
        current: Option<&deployment_token::Model>,
        report: &mut SyncReport,
    ) -> KubeSyncResult<()> {
        let replaced = tokens::unrevoked_with_description(
            self.store.db(),
            &row.workspace,
            &row.deployment_id,
            KUBE_TOKEN_DESCRIPTION,
            current.map(|current| current.token_id.as_str()),
        )
        .await?;
        if replaced.is_empty() {
            return Ok(());
        }
        let since = current.map_or(row.update_time, |current| current.create_time);
        let grace = i64::try_from(self.options.token_grace.as_micros()).unwrap_or(i64::MAX);
        let due = since.saturating_add(grace);
        let now = self.clock.now_micros();
        if now < due {
            let entry = self.revoke_due.entry(row.workspace.clone()).or_insert(due);
            *entry = (*entry).min(due);
            return Ok(());
        }
        let write = self.store.begin_write().await?;
        for token_row in replaced {
            let resource = token_resource(&token_row);
            tokens::revoke(&write.txn, token_row, now).await?;
            audit::record(
                &write,
                AuditRecord {
                    workspace: &row.workspace,
                    actor: ACTOR.to_owned(),
                    action: "RevokeDeploymentToken",
                    resource,
                    request_id: "",
                    changed_fields: vec!["revoke_time".into()],
                },
                None,
                Some(KIND_TOKEN),
                now,
            )
            .await?;
            report.tokens_revoked += 1;
        }
        write.commit().await?;
        tracing::info!(
            workspace = %row.workspace,
            deployment = %row.deployment_id,
            "revoked replaced kubernetes secret tokens after their grace period"
        );
        Ok(())
    }
}

/// Logs and counts a Secret left alone.
fn skip(existing: &Secret, namespace: &str, name: &str, report: &mut SyncReport) {
    metrics::counter!(SKIPPED_TOTAL).increment(1);
    report.skipped += 1;
    if desired::is_managed(existing) {
        tracing::warn!(
            namespace = %namespace,
            secret = %name,
            owner_workspace = desired::label(existing, WORKSPACE_LABEL).unwrap_or_default(),
            owner_deployment = desired::label(existing, DEPLOYMENT_LABEL).unwrap_or_default(),
            "the secret belongs to another Switchboard deployment or installation; left alone"
        );
    } else {
        tracing::warn!(
            namespace = %namespace,
            secret = %name,
            "a secret without Switchboard's managed-by label has this name; left alone"
        );
    }
}
