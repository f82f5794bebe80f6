//! Connections, their versions, and the catalog. Links live in `links.rs`.

mod create;
mod delete;
mod read;
mod update;
mod versions;

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use switchboard_domain::catalog;
use switchboard_domain::conn_id;
use switchboard_domain::names::{ConnectionName, DeploymentName, WorkspaceName};
use switchboard_domain::permission::{self, Action, Principal};
use switchboard_domain::validate::{validate_connection, validate_overrides};
use switchboard_domain::{ConnectionSpec, FieldViolation, Overrides, SecretValues};
use switchboard_store::DbHandle;
use switchboard_store::connections::VersionNote;
use switchboard_store::entity::{connection, connection_version, deployment, link};
use switchboard_store::records::{self, ConnectionSnapshot};
use switchboard_store::visibility;
use switchboard_store::{StagedSecrets, WriteTxn};

use crate::audit::{self, AuditRecord};
use crate::error::{ControlError, ControlResult};
use crate::field_mask;
use crate::idempotency;
use crate::links::{self, LinkFields};
use crate::page_token;
use crate::service::{ControlService, Page, PageRequest, check_etag, required};

pub(crate) use read::ConnectionRead;
pub(crate) use versions::VersionPage;

pub(crate) const KIND_CONNECTION: &str = "connection";

/// A connection as a create or update describes it.
#[derive(Debug, Default)]
pub(crate) struct ConnectionFields {
    /// The fields as sent; conn_type is derived from the type when empty.
    pub spec: ConnectionSpec,
    pub link_to_all_deployments: bool,
    /// Resource names or ids.
    pub excluded_deployments: Vec<String>,
}

/// A CreateConnection: the connection and the links made with it.
#[derive(Debug)]
pub(crate) struct ConnectionCreate {
    pub parent: WorkspaceName,
    pub connection_id: String,
    /// `None` when the request carries no connection.
    pub connection: Option<ConnectionFields>,
    pub links: Vec<LinkFields>,
    pub request_id: String,
}

/// A ListConnections.
#[derive(Debug)]
pub(crate) struct ConnectionQuery {
    pub parent: WorkspaceName,
    /// Terms on `type` and `deployment`.
    pub filter: String,
    pub page: PageRequest,
}

/// An UpdateConnection: new values, and which of them to set.
#[derive(Debug)]
pub(crate) struct ConnectionUpdate {
    pub name: ConnectionName,
    pub connection: ConnectionFields,
    pub etag: String,
    /// The update mask's paths; empty means the fields the message sets.
    pub paths: Vec<String>,
    /// Whether the mask was `*` (every field; secrets left empty are kept).
    pub wildcard: bool,
    pub request_id: String,
}

/// A DeleteConnection.
#[derive(Debug)]
pub(crate) struct ConnectionDelete {
    pub name: ConnectionName,
    pub etag: String,
    pub request_id: String,
}

/// A RollbackConnection.
#[derive(Debug)]
pub(crate) struct Rollback {
    pub name: ConnectionName,
    pub version: i64,
    pub etag: String,
    pub request_id: String,
}

/// The resource name of a connection row.
pub(crate) fn connection_name(row: &connection::Model) -> ConnectionName {
    ConnectionName {
        workspace: row.workspace.clone(),
        conn_id: row.conn_id.clone(),
    }
}

/// Finds a connection by name (conn_ids match ignoring case).
pub(crate) async fn find_connection<C: DbHandle>(
    db_conn: &C,
    name: &ConnectionName,
) -> ControlResult<connection::Model> {
    switchboard_store::connections::find(db_conn, &name.workspace, &name.conn_id)
        .await?
        .ok_or_else(|| ControlError::ConnectionNotFound { name: name.clone() })
}

/// Parses a deployment reference (resource name, or bare id) in `workspace`.
pub(crate) fn deployment_ref(
    field: &str,
    workspace: &str,
    value: &str,
) -> Result<String, FieldViolation> {
    let name = if value.contains('/') {
        DeploymentName::parse(field, value)
    } else {
        DeploymentName::parse(
            field,
            &format!("workspaces/{workspace}/deployments/{value}"),
        )
    };
    match name {
        Ok(name) if name.workspace == workspace => Ok(name.deployment),
        Ok(_) => Err(FieldViolation::new(
            field,
            "must name a deployment of the same workspace",
        )),
        Err(switchboard_domain::DomainError::InvalidArgument(mut violations)) => {
            Err(violations.remove(0))
        }
        Err(other) => Err(FieldViolation::new(field, other.to_string())),
    }
}

/// Fills conn_type from the catalog for non-generic types when left empty.
pub(crate) fn with_derived_conn_type(mut spec: ConnectionSpec) -> ConnectionSpec {
    if spec.conn_type.is_empty()
        && let Some(entry) = catalog::get(&spec.type_key)
    {
        spec.conn_type = entry.conn_type.to_owned();
    }
    spec
}

/// Every field path of a spec with its value, for diffs (names only leave this module).
fn field_values(spec: &ConnectionSpec) -> BTreeMap<String, Value> {
    let mut values = BTreeMap::new();
    let mut put = |path: &str, value: Option<Value>| {
        if let Some(value) = value {
            values.insert(path.to_owned(), value);
        }
    };
    put("type", Some(Value::from(spec.type_key.clone())));
    put("conn_type", Some(Value::from(spec.conn_type.clone())));
    put("description", spec.description.clone().map(Value::from));
    put("host", spec.host.clone().map(Value::from));
    put("schema", spec.schema.clone().map(Value::from));
    put("login", spec.login.clone().map(Value::from));
    put("password", spec.password.clone().map(Value::from));
    put("port", spec.port.map(Value::from));
    for (key, value) in &spec.extra {
        values.insert(format!("extra.{key}"), value.clone());
    }
    values
}

/// Names of the fields whose value differs between `before` and `after`.
pub(crate) fn changed_fields(before: &ConnectionSpec, after: &ConnectionSpec) -> Vec<String> {
    let before = field_values(before);
    let after = field_values(after);
    let keys: BTreeSet<&String> = before.keys().chain(after.keys()).collect();
    keys.into_iter()
        .filter(|key| before.get(*key) != after.get(*key))
        .cloned()
        .collect()
}

/// Validates the merge of `base` with `overrides`, reporting under `scope`.
pub(crate) fn validate_merged(
    base: &ConnectionSpec,
    overrides: &Overrides,
    scope: &str,
) -> Vec<FieldViolation> {
    let merged = switchboard_domain::connection::merge(base, &[overrides]);
    match validate_connection(&merged) {
        Ok(()) => Vec::new(),
        Err(violations) => violations
            .into_iter()
            .map(|violation| {
                let description = format!(
                    "the merged connection is invalid: {}",
                    violation.description
                );
                FieldViolation::new(violation.field, description).scope(scope)
            })
            .collect(),
    }
}

/// Writes a connection's row state, its secrets when they changed, and a version.
pub(crate) struct ConnectionWrite<'a> {
    pub principal: &'a Principal,
    pub action: &'a str,
    pub request_id: &'a str,
    pub changed: Vec<String>,
}

/// The state a connection is saved with: its spec (secrets included) and sharing.
pub(crate) struct ConnectionState<'a> {
    pub spec: &'a ConnectionSpec,
    pub link_to_all: bool,
    pub excluded: Vec<String>,
}

/// How often a write whose secret-store step ran before the write lock starts
/// over when what it read changed before it got the lock.
pub(crate) const WRITE_ATTEMPTS: usize = 10;

/// The answer when every attempt found its rows changed by concurrent writes.
pub(crate) fn contended(what: &'static str) -> ControlError {
    ControlError::Contended { what }
}

/// Stages the secrets of `spec` as the next version of connection `pk`'s
/// secrets (with Vault: written now, before any write lock). `previous` is
/// what the row holds now, `None` for a new row.
pub(crate) async fn stage_connection_secrets(
    control: &ControlService,
    workspace: &str,
    pk: i64,
    spec: &ConnectionSpec,
    previous: Option<&SecretValues>,
) -> ControlResult<StagedSecrets> {
    let (_, secrets) = spec.split_secrets();
    if previous == Some(&secrets) {
        return Ok(StagedSecrets::Unchanged);
    }
    Ok(control
        .store
        .secrets()
        .stage(workspace, &records::connection_owner(pk), secrets)
        .await?)
}

/// Validates `base_row` merged with a link's `overrides` without reading the
/// base's secrets, so a link without secret overrides never waits for the
/// secret store: each secret field the base holds counts as set, and its
/// value, checked against the same type when it was stored, is not checked
/// again.
pub(crate) fn validate_link_merge(
    base_row: &connection::Model,
    overrides: &Overrides,
    scope: &str,
) -> ControlResult<Vec<FieldViolation>> {
    const PLACEHOLDER: &str = "(secret)";
    let snapshot = records::snapshot_from_row(base_row)?;
    let placeholders: SecretValues = snapshot
        .secret_fields
        .iter()
        .map(|path| (path.clone(), Value::String(PLACEHOLDER.to_owned())))
        .collect();
    let base = snapshot.spec.clone().with_secrets(&placeholders);
    let mut overridden: Vec<String> = overrides
        .extra
        .keys()
        .map(|key| format!("extra.{key}"))
        .collect();
    if overrides.password.is_some() {
        overridden.push("password".to_owned());
    }
    let from_base_secret = |field: &str| {
        snapshot.secret_fields.iter().any(|path| path == field)
            && !overridden
                .iter()
                .any(|path| field == path || field.starts_with(&format!("{path}.")))
    };
    let merged = switchboard_domain::connection::merge(&base, &[overrides]);
    Ok(match validate_connection(&merged) {
        Ok(()) => Vec::new(),
        Err(violations) => violations
            .into_iter()
            .filter(|violation| !from_base_secret(&violation.field))
            .map(|violation| {
                let description = format!(
                    "the merged connection is invalid: {}",
                    violation.description
                );
                FieldViolation::new(violation.field, description).scope(scope)
            })
            .collect(),
    })
}

/// Stores `state` as the new state of `row`, bumping its version; `secrets`
/// were staged from `state.spec` (see [`stage_connection_secrets`]).
pub(crate) async fn save_connection(
    control: &ControlService,
    write: &WriteTxn,
    row: connection::Model,
    state: ConnectionState<'_>,
    secrets: StagedSecrets,
    how: ConnectionWrite<'_>,
) -> ControlResult<connection::Model> {
    let now = control.now();
    let ConnectionState {
        spec,
        link_to_all,
        excluded,
    } = state;
    let note = VersionNote {
        actor: how.principal.actor(),
        action: how.action,
        changed: &how.changed,
    };
    let saved = switchboard_store::connections::save(
        &write.txn,
        control.store.secrets(),
        row,
        spec,
        link_to_all,
        &excluded,
        secrets,
        note,
        now,
    )
    .await?;
    audit::record(
        write,
        AuditRecord {
            workspace: &saved.workspace,
            actor: how.principal.actor(),
            action: how.action,
            resource: connection_name(&saved).to_string(),
            request_id: how.request_id,
            changed_fields: how.changed,
        },
        Some(KIND_CONNECTION),
        now,
    )
    .await?;
    Ok(saved)
}

/// The rows a write read before taking the write lock.
pub(crate) struct ReadState {
    pub row: connection::Model,
    /// The connection's links, by id, when what was computed depends on them.
    pub link_rows: Option<Vec<link::Model>>,
}

impl ReadState {
    /// Whether the rows are as read, checked under the write lock: if they
    /// are, what was computed from them (and staged in Vault) still holds.
    pub(crate) async fn still_current<C: DbHandle>(&self, txn: &C) -> ControlResult<bool> {
        let row = switchboard_store::connections::by_id(txn, self.row.id).await?;
        if row.as_ref() != Some(&self.row) {
            return Ok(false);
        }
        let Some(expected) = &self.link_rows else {
            return Ok(true);
        };
        let link_rows = switchboard_store::links::of_connection(txn, self.row.id).await?;
        Ok(&link_rows == expected)
    }
}

/// Checks that each deployment id exists in `workspace`.
pub(crate) async fn require_deployments<C: DbHandle>(
    db_conn: &C,
    workspace: &str,
    ids: impl IntoIterator<Item = &String>,
) -> ControlResult<Vec<deployment::Model>> {
    let mut found = Vec::new();
    for id in ids {
        let row = visibility::find_deployment(db_conn, workspace, id)
            .await?
            .ok_or_else(|| ControlError::DeploymentNotFound {
                name: DeploymentName {
                    workspace: workspace.to_owned(),
                    deployment: id.clone(),
                },
            })?;
        found.push(row);
    }
    Ok(found)
}

fn parse_excluded(
    workspace: &str,
    values: &[String],
    scope: &str,
    violations: &mut Vec<FieldViolation>,
) -> Vec<String> {
    let mut ids = Vec::new();
    for (index, value) in values.iter().enumerate() {
        match deployment_ref(
            &format!("{scope}.excluded_deployments[{index}]"),
            workspace,
            value,
        ) {
            Ok(id) if !ids.contains(&id) => ids.push(id),
            Ok(_) => {}
            Err(violation) => violations.push(violation),
        }
    }
    ids
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snowflake_row(secret_fields: &str) -> connection::Model {
        connection::Model {
            id: 7,
            workspace: "ws".to_owned(),
            conn_id: "warehouse".to_owned(),
            conn_id_folded: "WAREHOUSE".to_owned(),
            type_key: "snowflake_password".to_owned(),
            conn_type: "snowflake".to_owned(),
            description: None,
            host: None,
            schema: Some("PUBLIC".to_owned()),
            login: Some("airflow".to_owned()),
            port: None,
            extra: r#"{"account":"xy12345"}"#.to_owned(),
            link_to_all: false,
            excluded_deployments: "[]".to_owned(),
            secret_version: Some(3),
            secret_fields: secret_fields.to_owned(),
            version: 1,
            create_time: 0,
            update_time: 0,
        }
    }

    fn fields(violations: &[FieldViolation]) -> Vec<&str> {
        violations
            .iter()
            .map(|violation| violation.field.as_str())
            .collect()
    }

    #[test]
    fn a_link_merge_counts_the_base_secrets_as_set_without_reading_them() {
        let schema_only = Overrides {
            schema: Some("STAGING".to_owned()),
            ..Default::default()
        };
        let with_password = snowflake_row(r#"["password"]"#);
        let violations = validate_link_merge(&with_password, &schema_only, "link.overrides")
            .expect("a readable row");
        assert!(violations.is_empty(), "{violations:?}");
        // Only secrets the row records count: a base without its required
        // password still fails the merge.
        let without_password = snowflake_row("[]");
        let violations = validate_link_merge(&without_password, &schema_only, "link.overrides")
            .expect("a readable row");
        assert_eq!(fields(&violations), ["link.overrides.password"]);
        // The link's own values are checked as before.
        let bad_warehouse = Overrides {
            extra: [("warehouse".to_owned(), Value::from("no such wh!"))]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        let violations = validate_link_merge(&with_password, &bad_warehouse, "link.overrides")
            .expect("a readable row");
        assert_eq!(fields(&violations), ["link.overrides.extra.warehouse"]);
    }
}
