//! What a deployment's Secret should look like, and how to tell a managed
//! Secret that already matches it from one that needs an apply.

use std::collections::BTreeMap;

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "switchboard";
/// Label every managed Secret carries, with value [`MANAGED_BY_VALUE`].
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`] on managed Secrets.
pub const MANAGED_BY_VALUE: &str = "switchboard";
/// Label naming the Switchboard deployment id a Secret belongs to.
pub const DEPLOYMENT_LABEL: &str = "switchboard.dev/deployment";
/// Label naming the workspace a Secret belongs to.
pub const WORKSPACE_LABEL: &str = "switchboard.dev/workspace";
/// Label naming the Switchboard installation (one database) that wrote a
/// Secret, so two installations sharing a namespace never touch each
/// other's Secrets.
pub const INSTANCE_LABEL: &str = "switchboard.dev/instance";
/// Annotation naming the deployment's resource name; marks managed Secrets.
pub const SOURCE_ANNOTATION: &str = "switchboard.dev/source";
/// Annotation telling people that edits are reverted.
pub const NOTE_ANNOTATION: &str = "switchboard.dev/note";
const NOTE: &str =
    "Managed by Switchboard control; edits are reverted. Change the deployment instead.";
/// Key of the resolver address in TOKEN mode.
pub const ADDRESS_KEY: &str = "address";
/// Key of the deployment token in TOKEN mode.
pub const TOKEN_KEY: &str = "token";
/// `type` of every managed Secret.
const SECRET_TYPE: &str = "Opaque";

/// Largest Secret Kubernetes stores: 1 MiB of data.
pub const MAX_SECRET_BYTES: usize = 1024 * 1024;

/// The Secret name of a workspace's deployment:
/// `switchboard-<workspace>.<deployment id>`. Deployment ids never contain
/// a dot, so two workspaces sharing a namespace never get one name. A
/// workspace id that is not already a lower-case DNS label (upper case,
/// `_`, a leading or trailing `-`) is written lower-cased with `_` as `-`
/// and a hash of the exact id appended, so `Acme` and `acme` stay apart.
pub fn secret_name(workspace: &str, deployment_id: &str) -> String {
    let is_label = |text: &str| {
        !text.is_empty()
            && text
                .bytes()
                .all(|byte| byte.is_ascii_lowercase() || byte.is_ascii_digit() || byte == b'-')
            && !text.starts_with('-')
            && !text.ends_with('-')
    };
    if is_label(workspace) {
        return format!("switchboard-{workspace}.{deployment_id}");
    }
    use sha2::Digest as _;
    let digest = sha2::Sha256::digest(workspace.as_bytes());
    let hash: String = digest[..4]
        .iter()
        .map(|byte| format!("{byte:02x}"))
        .collect();
    let slug = workspace.to_ascii_lowercase().replace('_', "-");
    let slug = slug.trim_matches('-');
    if slug.is_empty() {
        format!("switchboard-{hash}.{deployment_id}")
    } else {
        format!("switchboard-{slug}-{hash}.{deployment_id}")
    }
}

/// The name Secrets had before it carried the workspace,
/// `switchboard-<deployment id>`; the resync removes those it wrote.
pub fn legacy_secret_name(deployment_id: &str) -> String {
    format!("switchboard-{deployment_id}")
}

/// Whether `key` can be an environment variable (`[A-Za-z_][A-Za-z0-9_]*`),
/// as ENV-mode keys must be for `envFrom` to set them.
pub(crate) fn is_env_var_name(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|first| first.is_ascii_alphabetic() || first == b'_')
        && bytes.all(|byte| byte.is_ascii_alphanumeric() || byte == b'_')
}

/// The label selector that lists managed Secrets.
pub fn managed_selector() -> String {
    format!("{MANAGED_BY_LABEL}={MANAGED_BY_VALUE}")
}

/// One Secret as the sync wants it.
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct DesiredSecret {
    pub instance: String,
    pub namespace: String,
    pub name: String,
    pub workspace: String,
    pub deployment: String,
    pub data: BTreeMap<String, String>,
}

impl std::fmt::Debug for DesiredSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Values are secrets: keys only.
        f.debug_struct("DesiredSecret")
            .field("instance", &self.instance)
            .field("namespace", &self.namespace)
            .field("name", &self.name)
            .field("workspace", &self.workspace)
            .field("deployment", &self.deployment)
            .field("keys", &self.data.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl DesiredSecret {
    /// Bytes of `data` as Kubernetes counts them against its size limit.
    pub(crate) fn data_bytes(&self) -> usize {
        self.data
            .iter()
            .map(|(key, value)| key.len() + value.len())
            .sum()
    }

    fn labels(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (MANAGED_BY_LABEL.to_owned(), MANAGED_BY_VALUE.to_owned()),
            (INSTANCE_LABEL.to_owned(), self.instance.clone()),
            (DEPLOYMENT_LABEL.to_owned(), self.deployment.clone()),
            (WORKSPACE_LABEL.to_owned(), self.workspace.clone()),
        ])
    }

    fn annotations(&self) -> BTreeMap<String, String> {
        BTreeMap::from([
            (
                SOURCE_ANNOTATION.to_owned(),
                format!(
                    "workspaces/{}/deployments/{}",
                    self.workspace, self.deployment
                ),
            ),
            (NOTE_ANNOTATION.to_owned(), NOTE.to_owned()),
        ])
    }

    /// The server-side apply body. With `resource_version`, the apply fails
    /// with a conflict if the Secret changed since it was read.
    pub(crate) fn to_apply(&self, resource_version: Option<String>) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(self.name.clone()),
                namespace: Some(self.namespace.clone()),
                labels: Some(self.labels()),
                annotations: Some(self.annotations()),
                resource_version,
                ..ObjectMeta::default()
            },
            type_: Some(SECRET_TYPE.to_owned()),
            data: Some(
                self.data
                    .iter()
                    .map(|(key, value)| (key.clone(), ByteString(value.clone().into_bytes())))
                    .collect(),
            ),
            ..Secret::default()
        }
    }

    /// Whether `existing` already holds everything this apply would set, and
    /// no key this field manager applied earlier but no longer wants.
    pub(crate) fn is_satisfied_by(&self, existing: &Secret) -> bool {
        let labels = existing.metadata.labels.clone().unwrap_or_default();
        let annotations = existing.metadata.annotations.clone().unwrap_or_default();
        let data = existing.data.clone().unwrap_or_default();
        let labels_ok = self
            .labels()
            .iter()
            .all(|(key, value)| labels.get(key) == Some(value));
        let annotations_ok = self
            .annotations()
            .iter()
            .all(|(key, value)| annotations.get(key) == Some(value));
        let type_ok = existing.type_.as_deref().unwrap_or(SECRET_TYPE) == SECRET_TYPE;
        let data_ok = self.data.iter().all(|(key, value)| {
            data.get(key).map(|bytes| bytes.0.as_slice()) == Some(value.as_bytes())
        });
        let no_stale_keys = owned_data_keys(existing)
            .iter()
            .all(|key| self.data.contains_key(key) || !data.contains_key(key));
        labels_ok && annotations_ok && type_ok && data_ok && no_stale_keys
    }
}

/// Whether a Secret carries the managed-by label: only those are ever
/// written or deleted.
pub(crate) fn is_managed(secret: &Secret) -> bool {
    label(secret, MANAGED_BY_LABEL) == Some(MANAGED_BY_VALUE)
}

/// Whether a Secret is managed by installation `instance`.
pub(crate) fn is_ours(secret: &Secret, instance: &str) -> bool {
    is_managed(secret) && label(secret, INSTANCE_LABEL) == Some(instance)
}

/// Whether a Secret is installation `instance`'s Secret of `workspace`/`deployment`.
pub(crate) fn belongs_to(
    secret: &Secret,
    instance: &str,
    workspace: &str,
    deployment: &str,
) -> bool {
    is_ours(secret, instance)
        && label(secret, WORKSPACE_LABEL) == Some(workspace)
        && label(secret, DEPLOYMENT_LABEL) == Some(deployment)
}

pub(crate) fn label<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|labels| labels.get(key))
        .map(String::as_str)
}

/// A string value of a Secret's `data`.
pub(crate) fn data_value(secret: &Secret, key: &str) -> Option<String> {
    secret
        .data
        .as_ref()
        .and_then(|data| data.get(key))
        .and_then(|bytes| String::from_utf8(bytes.0.clone()).ok())
}

/// The `data` keys this field manager owns according to `managedFields`.
fn owned_data_keys(secret: &Secret) -> Vec<String> {
    let mut keys = Vec::new();
    for entry in secret.metadata.managed_fields.iter().flatten() {
        if entry.manager.as_deref() != Some(FIELD_MANAGER) {
            continue;
        }
        let Some(fields) = &entry.fields_v1 else {
            continue;
        };
        if let Some(data) = fields.0.get("f:data").and_then(|data| data.as_object()) {
            keys.extend(
                data.keys()
                    .filter_map(|key| key.strip_prefix("f:"))
                    .map(str::to_owned),
            );
        }
    }
    keys
}

#[cfg(test)]
mod tests {
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::{FieldsV1, ManagedFieldsEntry};

    use super::*;

    fn desired(data: &[(&str, &str)]) -> DesiredSecret {
        DesiredSecret {
            instance: "0123456789abcdef".into(),
            namespace: "airflow".into(),
            name: secret_name("acme", "prod"),
            workspace: "acme".into(),
            deployment: "prod".into(),
            data: data
                .iter()
                .map(|(key, value)| ((*key).to_owned(), (*value).to_owned()))
                .collect(),
        }
    }

    #[test]
    fn an_applied_secret_satisfies_its_desire_and_a_changed_one_does_not() {
        let wanted = desired(&[("address", "resolver:50051"), ("token", "t")]);
        let applied = wanted.to_apply(None);
        assert!(is_managed(&applied));
        assert!(belongs_to(&applied, "0123456789abcdef", "acme", "prod"));
        assert!(!belongs_to(&applied, "0123456789abcdef", "other", "prod"));
        assert!(!belongs_to(&applied, "fedcba9876543210", "acme", "prod"));
        assert!(wanted.is_satisfied_by(&applied));
        let changed = desired(&[("address", "resolver:50052"), ("token", "t")]);
        assert!(!changed.is_satisfied_by(&applied));
        let mut unlabelled = applied.clone();
        unlabelled.metadata.labels = None;
        assert!(!wanted.is_satisfied_by(&unlabelled));
        assert!(!is_managed(&unlabelled));
    }

    #[test]
    fn secret_names_carry_the_workspace_and_never_collide_across_workspaces() {
        assert_eq!(secret_name("acme", "prod"), "switchboard-acme.prod");
        assert_eq!(secret_name("team-a", "prod"), "switchboard-team-a.prod");
        // `-` is in both ids, the dot only between them.
        assert_ne!(secret_name("a-b", "c"), secret_name("a", "b-c"));
        // Ids that are not DNS labels get a hash of the exact id.
        let upper = secret_name("Acme", "prod");
        assert!(upper.starts_with("switchboard-acme-") && upper.ends_with(".prod"));
        assert_ne!(upper, secret_name("acme", "prod"));
        assert_ne!(secret_name("a_b", "prod"), secret_name("a-b", "prod"));
        assert_ne!(secret_name("a_b", "prod"), secret_name("A_b", "prod"));
        assert!(secret_name("_", "prod").starts_with("switchboard-"));
        let long = secret_name(&"W".repeat(63), &"d".repeat(63));
        // A DNS subdomain as Kubernetes checks it: at most 253 characters,
        // dot-separated runs of lower-case letters, digits and `-` that start
        // and end alphanumeric.
        for name in [
            upper,
            long,
            secret_name("_", "prod"),
            secret_name("-x-", "prod"),
        ] {
            assert!(name.len() <= 253, "{name}");
            for label in name.split('.') {
                assert!(!label.is_empty(), "{name}");
                assert!(
                    label
                        .bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-'),
                    "{name}"
                );
                assert!(!label.starts_with('-') && !label.ends_with('-'), "{name}");
            }
        }
        assert_eq!(legacy_secret_name("prod"), "switchboard-prod");
    }

    #[test]
    fn env_keys_must_be_environment_variable_names() {
        for good in ["AIRFLOW_CONN_WAREHOUSE", "AIRFLOW_CONN_A1", "_X"] {
            assert!(is_env_var_name(good), "{good}");
        }
        for bad in ["AIRFLOW_CONN_MY-DB", "AIRFLOW_CONN_A.B", "1ABC", ""] {
            assert!(!is_env_var_name(bad), "{bad}");
        }
    }

    #[test]
    fn keys_this_manager_owns_but_no_longer_wants_need_an_apply() {
        let mut existing =
            desired(&[("AIRFLOW_CONN_A", "{}"), ("AIRFLOW_CONN_B", "{}")]).to_apply(None);
        let fewer = desired(&[("AIRFLOW_CONN_A", "{}")]);
        // Someone else's key is left alone.
        assert!(fewer.is_satisfied_by(&existing));
        existing.metadata.managed_fields = Some(vec![ManagedFieldsEntry {
            manager: Some(FIELD_MANAGER.into()),
            operation: Some("Apply".into()),
            fields_v1: Some(FieldsV1(serde_json::json!({
                "f:data": {".": {}, "f:AIRFLOW_CONN_A": {}, "f:AIRFLOW_CONN_B": {}}
            }))),
            ..ManagedFieldsEntry::default()
        }]);
        assert!(!fewer.is_satisfied_by(&existing));
    }
}
