//! ConnectionService: connections, their versions, and the catalog. Links
//! live in `links.rs`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::Value;
use switchboard_domain::catalog;
use switchboard_domain::conn_id;
use switchboard_domain::names::{ConnectionName, DeploymentName, WorkspaceName};
use switchboard_domain::permission::{self, Action, Principal};
use switchboard_domain::validate::{validate_connection, validate_overrides};
use switchboard_domain::{ConnectionSpec, FieldViolation, Overrides, SecretValues};
use switchboard_proto::v1 as pb;
use switchboard_store::entity::{connection, connection_version, deployment, link};
use switchboard_store::records::{self, ConnectionSnapshot, to_json_text};
use switchboard_store::sea_orm::{
    ActiveModelTrait,
    ActiveValue::{NotSet, Set},
    ColumnTrait, ConnectionTrait, EntityTrait, IntoActiveModel, QueryFilter, QueryOrder,
    QuerySelect,
};
use switchboard_store::visibility;
use switchboard_store::{StagedSecrets, StoreError, WriteTxn};
use tonic::{Request, Response, Status};

use crate::audit::{self, AuditRecord};
use crate::error::{ControlError, ControlResult};
use crate::field_mask;
use crate::idempotency;
use crate::links;
use crate::page_token;
use crate::pb_conversions::{
    self, connection_name, connection_to_pb, masked_connection, overrides_from_pb, required,
    spec_from_pb,
};
use crate::service::Control;

pub(crate) const KIND_CONNECTION: &str = "connection";

/// Maps a database error into control's error.
pub(crate) fn db<T>(result: Result<T, switchboard_store::sea_orm::DbErr>) -> ControlResult<T> {
    result.map_err(|err| ControlError::from(StoreError::from(err)))
}

/// Finds a connection by name (conn_ids match ignoring case).
pub(crate) async fn find_connection<C: ConnectionTrait>(
    db_conn: &C,
    name: &ConnectionName,
) -> ControlResult<connection::Model> {
    db(connection::Entity::find()
        .filter(connection::Column::Workspace.eq(&name.workspace))
        .filter(connection::Column::ConnIdFolded.eq(conn_id::fold(&name.conn_id)))
        .one(db_conn)
        .await)?
    .ok_or_else(|| ControlError::NotFound(format!("connection {name} not found")))
}

/// A version's action as ConnectionVersion documents it (create, update or
/// rollback); rows record the method that made the version.
fn version_action(method: &str) -> &str {
    match method {
        "CreateConnection" => "create",
        "UpdateConnection" => "update",
        "RollbackConnection" => "rollback",
        other => other,
    }
}

/// Checks a caller-supplied etag against the current version.
pub(crate) fn check_etag(given: &str, version: i64, what: &str) -> ControlResult<()> {
    if !given.is_empty() && given != pb_conversions::etag(version) {
        return Err(ControlError::Aborted(format!(
            "the {what} changed since it was read (etag mismatch); read it again and retry"
        )));
    }
    Ok(())
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
pub(crate) fn contended(what: &str) -> ControlError {
    ControlError::Aborted(format!(
        "the {what} kept changing while this write ran; read it again and retry"
    ))
}

/// Stages the secrets of `spec` as the next version of connection `pk`'s
/// secrets (with Vault: written now, before any write lock). `previous` is
/// what the row holds now, `None` for a new row.
pub(crate) async fn stage_connection_secrets(
    control: &Control,
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
    control: &Control,
    write: &WriteTxn,
    mut row: connection::Model,
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
    let (public, _) = spec.split_secrets();
    row.secret_version = control
        .store
        .secrets()
        .record(
            &write.txn,
            &row.workspace,
            &records::connection_owner(row.id),
            secrets,
            row.secret_version,
            now,
        )
        .await?;
    let is_new = row.version == 0;
    let mut active = row.clone().into_active_model();
    active.type_key = Set(public.type_key.clone());
    active.conn_type = Set(public.conn_type.clone());
    active.description = Set(public.description.clone());
    active.host = Set(public.host.clone());
    active.schema = Set(public.schema.clone());
    active.login = Set(public.login.clone());
    active.port = Set(public.port);
    active.extra = Set(to_json_text(&public.extra));
    active.link_to_all = Set(link_to_all);
    active.excluded_deployments = Set(to_json_text(&excluded));
    active.secret_version = Set(row.secret_version);
    active.secret_fields = Set(to_json_text(&spec.secret_fields_set()));
    active.version = Set(row.version + 1);
    active.update_time = Set(now);
    if is_new {
        active.create_time = Set(now);
    }
    let saved = db(active.update(&write.txn).await)?;
    let snapshot = records::snapshot_from_row(&saved)?;
    db(
        connection_version::Entity::insert(connection_version::ActiveModel {
            connection_pk: Set(saved.id),
            version: Set(saved.version),
            snapshot: Set(to_json_text(&snapshot)),
            secret_version: Set(saved.secret_version),
            actor: Set(how.principal.actor()),
            action: Set(how.action.to_owned()),
            changed_fields: Set(to_json_text(&how.changed)),
            create_time: Set(now),
            ..Default::default()
        })
        .exec(&write.txn)
        .await,
    )?;
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
    pub(crate) async fn still_current<C: ConnectionTrait>(&self, txn: &C) -> ControlResult<bool> {
        let row = db(connection::Entity::find_by_id(self.row.id).one(txn).await)?;
        if row.as_ref() != Some(&self.row) {
            return Ok(false);
        }
        let Some(expected) = &self.link_rows else {
            return Ok(true);
        };
        let link_rows = db(link::Entity::find()
            .filter(link::Column::ConnectionPk.eq(self.row.id))
            .order_by_asc(link::Column::Id)
            .all(txn)
            .await)?;
        Ok(&link_rows == expected)
    }
}

/// What UpdateConnection asks for.
#[derive(Clone, Copy)]
struct UpdateRequest<'a> {
    name: &'a ConnectionName,
    connection: &'a pb::Connection,
    paths: &'a [String],
    wildcard: bool,
}

/// An update computed from the rows as read.
struct UpdatePlan {
    read: ReadState,
    next: ConnectionSpec,
    link_to_all: bool,
    excluded: Vec<String>,
    changed: Vec<String>,
    staged: StagedSecrets,
}

/// Checks that each deployment id exists in `workspace`.
pub(crate) async fn require_deployments<C: ConnectionTrait>(
    db_conn: &C,
    workspace: &str,
    ids: impl IntoIterator<Item = &String>,
) -> ControlResult<Vec<deployment::Model>> {
    let mut found = Vec::new();
    for id in ids {
        let row = visibility::find_deployment(db_conn, workspace, id)
            .await?
            .ok_or_else(|| {
                ControlError::NotFound(format!(
                    "deployment workspaces/{workspace}/deployments/{id} not found"
                ))
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

/// Filters ListConnections understands.
#[derive(Debug, Default)]
struct ConnectionFilter {
    type_key: Option<String>,
    deployment: Option<String>,
}

fn parse_connection_filter(workspace: &str, filter: &str) -> ControlResult<ConnectionFilter> {
    let mut parsed = ConnectionFilter::default();
    for (key, value) in page_token::parse_filter(filter)? {
        match key.as_str() {
            "type" => parsed.type_key = Some(value),
            "deployment" => {
                parsed.deployment = Some(
                    deployment_ref("filter", workspace, &value)
                        .map_err(|violation| ControlError::InvalidArgument(vec![violation]))?,
                );
            }
            other => {
                return Err(ControlError::invalid(
                    "filter",
                    format!("unknown field '{other}'; use type or deployment"),
                ));
            }
        }
    }
    Ok(parsed)
}

fn catalog_to_pb(entry: &catalog::ConnectionType) -> pb::ConnectionType {
    pb::ConnectionType {
        r#type: entry.key.to_owned(),
        display_name: entry.display_name.to_owned(),
        conn_type: entry.conn_type.to_owned(),
        provider_package: entry.provider_package.to_owned(),
        default_port: entry.default_port.map_or(0, i32::from),
        parameters: entry
            .parameters
            .iter()
            .map(|parameter| pb::ConnectionTypeParameter {
                name: parameter.name.to_owned(),
                field: parameter.field.path(),
                required: parameter.required,
                secret: parameter.secret,
                pattern: parameter.pattern.unwrap_or_default().to_owned(),
                data_type: match parameter.data_type {
                    catalog::DataType::String => pb::ParameterDataType::String,
                    catalog::DataType::Integer => pb::ParameterDataType::Integer,
                    catalog::DataType::Boolean => pb::ParameterDataType::Boolean,
                    catalog::DataType::Json => pb::ParameterDataType::Json,
                } as i32,
                description: parameter.description.to_owned(),
            })
            .collect(),
    }
}

impl Control {
    async fn create_connection_inner(
        &self,
        request: Request<pb::CreateConnectionRequest>,
    ) -> ControlResult<pb::Connection> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)?;
        let workspace = parent.workspace.clone();
        let principal = self
            .caller(&request, &workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        idempotency::validate(&message.request_id)?;
        if let Some(resource) = idempotency::previous(
            self.store.db(),
            &workspace,
            "CreateConnection",
            &message.request_id,
        )
        .await?
        {
            let name = ConnectionName::parse("name", &resource)?;
            return masked_connection(&find_connection(self.store.db(), &name).await?);
        }
        let mut violations = Vec::new();
        if let Err(why) = conn_id::validate(&message.connection_id) {
            violations.push(FieldViolation::new("connection_id", why));
        }
        let connection = required("connection", message.connection.as_ref())?;
        let spec = with_derived_conn_type(spec_from_pb(connection));
        if let Err(found) = validate_connection(&spec) {
            violations.extend(
                found
                    .into_iter()
                    .map(|violation| violation.scope("connection")),
            );
        }
        let excluded = parse_excluded(
            &workspace,
            &connection.excluded_deployments,
            "connection",
            &mut violations,
        );
        let mut new_links: Vec<(String, Overrides)> = Vec::new();
        for (index, link) in message.links.iter().enumerate() {
            let scope = format!("links[{index}]");
            let deployment = match deployment_ref(
                &format!("{scope}.deployment"),
                &workspace,
                &link.deployment,
            ) {
                Ok(id) => id,
                Err(violation) => {
                    violations.push(violation);
                    continue;
                }
            };
            if new_links.iter().any(|(id, _)| *id == deployment) {
                violations.push(FieldViolation::new(
                    format!("{scope}.deployment"),
                    "is linked twice",
                ));
                continue;
            }
            let overrides = overrides_from_pb(link.overrides.as_ref());
            let overrides_scope = format!("{scope}.overrides");
            match validate_overrides(&spec.type_key, &overrides) {
                Err(found) => violations.extend(
                    found
                        .into_iter()
                        .map(|violation| violation.scope(&overrides_scope)),
                ),
                Ok(()) => violations.extend(validate_merged(&spec, &overrides, &overrides_scope)),
            }
            new_links.push((deployment, overrides));
        }
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }

        let name = ConnectionName {
            workspace: workspace.clone(),
            conn_id: message.connection_id.clone(),
        };
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // With Vault the secrets are written first, under row ids reserved
            // now, so no write lock is held while Vault answers.
            let reserved = if remote {
                Some(self.store.reserve_id("connection").await?)
            } else {
                None
            };
            let staged = match reserved {
                Some(pk) => stage_connection_secrets(self, &workspace, pk, &spec, None).await?,
                None => StagedSecrets::Pending(spec.split_secrets().1),
            };
            let mut staged_links = Vec::with_capacity(new_links.len());
            let mut next_link_id = 0;
            for (_, overrides) in &new_links {
                let staged_link = links::stage_new_link(
                    self,
                    &workspace,
                    &spec.type_key,
                    overrides,
                    next_link_id,
                )
                .await?;
                if let Some(id) = staged_link.id {
                    next_link_id = id + 1;
                }
                staged_links.push(staged_link);
            }
            let now = self.now();
            let write = self.store.begin_write().await?;
            // A concurrent call with the same request_id may have committed since
            // the check above; the write lock orders this one after it.
            if let Some(resource) = idempotency::previous(
                &write.txn,
                &workspace,
                "CreateConnection",
                &message.request_id,
            )
            .await?
            {
                let name = ConnectionName::parse("name", &resource)?;
                return masked_connection(&find_connection(&write.txn, &name).await?);
            }
            let existing = db(connection::Entity::find()
                .filter(connection::Column::Workspace.eq(&workspace))
                .filter(connection::Column::ConnIdFolded.eq(conn_id::fold(&name.conn_id)))
                .one(&write.txn)
                .await)?;
            if let Some(existing) = existing {
                return Err(ControlError::AlreadyExists(format!(
                    "connection {} already exists (conn_ids are unique ignoring case)",
                    connection_name(&existing)
                )));
            }
            let referenced: Vec<String> = excluded
                .iter()
                .chain(new_links.iter().map(|(id, _)| id))
                .cloned()
                .collect();
            require_deployments(&write.txn, &workspace, referenced.iter()).await?;
            if !links::claim_ids(&write, reserved, &staged_links).await? {
                continue;
            }
            let row = db(connection::ActiveModel {
                id: reserved.map_or(NotSet, Set),
                workspace: Set(workspace.clone()),
                conn_id: Set(name.conn_id.clone()),
                conn_id_folded: Set(conn_id::fold(&name.conn_id)),
                type_key: Set(spec.type_key.clone()),
                conn_type: Set(spec.conn_type.clone()),
                extra: Set("{}".to_owned()),
                link_to_all: Set(false),
                excluded_deployments: Set("[]".to_owned()),
                secret_fields: Set("[]".to_owned()),
                version: Set(0),
                create_time: Set(now),
                update_time: Set(now),
                ..Default::default()
            }
            .insert(&write.txn)
            .await)?;
            let changed = changed_fields(&ConnectionSpec::default(), &spec);
            let saved = save_connection(
                self,
                &write,
                row,
                ConnectionState {
                    spec: &spec,
                    link_to_all: connection.link_to_all_deployments,
                    excluded: excluded.clone(),
                },
                staged,
                ConnectionWrite {
                    principal: &principal,
                    action: "CreateConnection",
                    request_id: &message.request_id,
                    changed,
                },
            )
            .await?;
            for ((deployment, overrides), staged_link) in new_links.iter().zip(staged_links) {
                links::insert_link(
                    self,
                    &write,
                    &saved,
                    links::NewLink {
                        deployment,
                        overrides,
                        staged: staged_link,
                    },
                    &principal,
                    &message.request_id,
                )
                .await?;
            }
            idempotency::remember(
                &write.txn,
                &workspace,
                "CreateConnection",
                &message.request_id,
                &name.to_string(),
                now,
            )
            .await?;
            write.commit().await?;
            tracing::info!(connection = %connection_name(&saved), links = new_links.len(), "connection created");
            return masked_connection(&saved);
        }
        Err(contended("connection"))
    }

    async fn get_connection_inner(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> ControlResult<pb::Connection> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let reveal = matches!(
            pb::ConnectionView::try_from(request.get_ref().view),
            Ok(pb::ConnectionView::WithSecrets)
        );
        let action = if reveal {
            Action::RevealSecrets
        } else {
            Action::Read
        };
        let principal = self.caller(&request, &name.workspace, action).await?;
        let row = find_connection(self.store.db(), &name).await?;
        if !reveal {
            return masked_connection(&row);
        }
        let spec = records::full_spec(self.store.secrets(), self.store.db(), &row).await?;
        let snapshot = records::snapshot_from_row(&row)?;
        let now = self.now();
        let write = self.store.begin_write().await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &row.workspace,
                actor: principal.actor(),
                action: "RevealSecrets",
                resource: connection_name(&row).to_string(),
                request_id: "",
                changed_fields: snapshot.secret_fields.clone(),
            },
            None,
            now,
        )
        .await?;
        write.commit().await?;
        Ok(connection_to_pb(
            &connection_name(&row),
            &snapshot,
            Some(&spec),
            Some(&row),
        ))
    }

    async fn list_connections_inner(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> ControlResult<pb::ListConnectionsResponse> {
        let parent = WorkspaceName::parse("parent", &request.get_ref().parent)?;
        self.caller(&request, &parent.workspace, Action::Read)
            .await?;
        let message = request.into_inner();
        let filter = parse_connection_filter(&parent.workspace, &message.filter)?;
        let page_size = page_token::page_size(message.page_size)?;
        let fingerprint = format!("connections|{}|{}", parent.workspace, message.filter);
        let after = page_token::decode(&self.page_key, &fingerprint, &message.page_token)?;
        let db_conn = self.store.db();
        let mut rows: Vec<connection::Model> = match &filter.deployment {
            Some(deployment_id) => {
                // What a deployment sees depends on its parent, links and
                // link-to-all exclusions: computed whole, then cut.
                let deployment = require_deployments(db_conn, &parent.workspace, [deployment_id])
                    .await?
                    .remove(0);
                let mut rows: Vec<_> = visibility::visible_connections(db_conn, &deployment, None)
                    .await?
                    .into_iter()
                    .map(|visible| visible.connection)
                    .collect();
                rows.retain(|row| {
                    filter
                        .type_key
                        .as_ref()
                        .is_none_or(|type_key| &row.type_key == type_key)
                        && after
                            .as_ref()
                            .is_none_or(|after| &row.conn_id_folded > after)
                });
                rows
            }
            None => {
                // Keyset paging on the (workspace, conn_id_folded) index: a
                // page costs the same wherever it starts.
                let mut query = connection::Entity::find()
                    .filter(connection::Column::Workspace.eq(&parent.workspace))
                    .order_by_asc(connection::Column::ConnIdFolded)
                    .limit(page_size + 1);
                if let Some(after) = &after {
                    query = query.filter(connection::Column::ConnIdFolded.gt(after.as_str()));
                }
                if let Some(type_key) = &filter.type_key {
                    query = query.filter(connection::Column::TypeKey.eq(type_key.as_str()));
                }
                db(query.all(db_conn).await)?
            }
        };
        let next_page_token =
            page_token::next_page(&self.page_key, &fingerprint, &mut rows, page_size, |row| {
                row.conn_id_folded.clone()
            });
        Ok(pb::ListConnectionsResponse {
            connections: rows
                .iter()
                .map(masked_connection)
                .collect::<ControlResult<_>>()?,
            next_page_token,
        })
    }

    async fn update_connection_inner(
        &self,
        request: Request<pb::UpdateConnectionRequest>,
    ) -> ControlResult<pb::Connection> {
        let message_ref = required("connection", request.get_ref().connection.as_ref())?;
        let name = ConnectionName::parse("connection.name", &message_ref.name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        idempotency::validate(&message.request_id)?;
        let connection = message.connection.unwrap_or_default();
        let paths = field_mask::connection_paths(message.update_mask.as_ref(), &connection)?;
        let wildcard = message
            .update_mask
            .as_ref()
            .is_some_and(|mask| mask.paths.iter().any(|path| path == "*"));

        let request = UpdateRequest {
            name: &name,
            connection: &connection,
            paths: &paths,
            wildcard,
        };
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // With Vault everything that reads or writes it happens before the
            // write lock, and runs again if the rows changed meanwhile; the
            // embedded store reads and writes inside the transaction.
            let (write, plan) = if remote {
                let plan = self.plan_update(self.store.db(), &request).await?;
                let write = self.store.begin_write().await?;
                if !plan.read.still_current(&write.txn).await? {
                    continue;
                }
                (write, plan)
            } else {
                let write = self.store.begin_write().await?;
                let plan = self.plan_update(&write.txn, &request).await?;
                (write, plan)
            };
            require_deployments(&write.txn, &name.workspace, plan.excluded.iter()).await?;
            let saved = save_connection(
                self,
                &write,
                plan.read.row,
                ConnectionState {
                    spec: &plan.next,
                    link_to_all: plan.link_to_all,
                    excluded: plan.excluded,
                },
                plan.staged,
                ConnectionWrite {
                    principal: &principal,
                    action: "UpdateConnection",
                    request_id: &message.request_id,
                    changed: plan.changed,
                },
            )
            .await?;
            write.commit().await?;
            return masked_connection(&saved);
        }
        Err(contended("connection"))
    }

    /// Reads the connection and its links through `db_conn`, computes and
    /// validates the update, and stages the new secrets.
    async fn plan_update<C: ConnectionTrait>(
        &self,
        db_conn: &C,
        request: &UpdateRequest<'_>,
    ) -> ControlResult<UpdatePlan> {
        let UpdateRequest {
            name,
            connection,
            paths,
            wildcard,
        } = *request;
        let row = find_connection(db_conn, name).await?;
        check_etag(&connection.etag, row.version, "connection")?;
        let current = records::full_spec(self.store.secrets(), db_conn, &row).await?;
        let (_, current_secrets) = current.split_secrets();
        let next = with_derived_conn_type(field_mask::apply_to_spec(
            &current, connection, paths, wildcard,
        ));
        let current_snapshot = records::snapshot_from_row(&row)?;
        let mut link_to_all = current_snapshot.link_to_all;
        let mut excluded = current_snapshot.excluded_deployments.clone();
        let mut violations = Vec::new();
        if paths.iter().any(|path| path == "link_to_all_deployments") {
            link_to_all = connection.link_to_all_deployments;
        }
        if paths.iter().any(|path| path == "excluded_deployments") {
            excluded = parse_excluded(
                &name.workspace,
                &connection.excluded_deployments,
                "connection",
                &mut violations,
            );
        }
        if let Err(found) = validate_connection(&next) {
            violations.extend(
                found
                    .into_iter()
                    .map(|violation| violation.scope("connection")),
            );
        }
        let link_rows = db(link::Entity::find()
            .filter(link::Column::ConnectionPk.eq(row.id))
            .order_by_asc(link::Column::Id)
            .all(db_conn)
            .await)?;
        if violations.is_empty() {
            for link_row in &link_rows {
                let overrides =
                    records::full_overrides(self.store.secrets(), db_conn, link_row).await?;
                violations.extend(validate_merged(
                    &next,
                    &overrides,
                    &format!("links[{}].overrides", link_row.deployment_id),
                ));
            }
        }
        if !violations.is_empty() {
            return Err(ControlError::InvalidArgument(violations));
        }
        let mut changed = changed_fields(&current, &next);
        if link_to_all != current_snapshot.link_to_all {
            changed.push("link_to_all_deployments".to_owned());
        }
        if excluded != current_snapshot.excluded_deployments {
            changed.push("excluded_deployments".to_owned());
        }
        let staged =
            stage_connection_secrets(self, &row.workspace, row.id, &next, Some(&current_secrets))
                .await?;
        Ok(UpdatePlan {
            read: ReadState {
                row,
                link_rows: Some(link_rows),
            },
            next,
            link_to_all,
            excluded,
            changed,
            staged,
        })
    }

    async fn delete_connection_inner(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> ControlResult<()> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        let now = self.now();
        let write = self.store.begin_write().await?;
        let row = find_connection(&write.txn, &name).await?;
        check_etag(&message.etag, row.version, "connection")?;
        let link_rows = db(link::Entity::find()
            .filter(link::Column::ConnectionPk.eq(row.id))
            .all(&write.txn)
            .await)?;
        for link_row in &link_rows {
            links::delete_link_row(
                self,
                &write,
                &row,
                link_row,
                &principal,
                &message.request_id,
            )
            .await?;
        }
        db(connection_version::Entity::delete_many()
            .filter(connection_version::Column::ConnectionPk.eq(row.id))
            .exec(&write.txn)
            .await)?;
        db(connection::Entity::delete_by_id(row.id)
            .exec(&write.txn)
            .await)?;
        self.store
            .secrets()
            .delete_owner(
                &write.txn,
                &row.workspace,
                &records::connection_owner(row.id),
            )
            .await?;
        audit::record(
            &write,
            AuditRecord {
                workspace: &row.workspace,
                actor: principal.actor(),
                action: "DeleteConnection",
                resource: connection_name(&row).to_string(),
                request_id: &message.request_id,
                changed_fields: Vec::new(),
            },
            Some(KIND_CONNECTION),
            now,
        )
        .await?;
        write.commit().await?;
        Ok(())
    }

    async fn list_versions_inner(
        &self,
        request: Request<pb::ListConnectionVersionsRequest>,
    ) -> ControlResult<pb::ListConnectionVersionsResponse> {
        let name = ConnectionName::parse("parent", &request.get_ref().parent)?;
        self.caller(&request, &name.workspace, Action::Read).await?;
        let message = request.into_inner();
        let page_size = page_token::page_size(message.page_size)?;
        let row = find_connection(self.store.db(), &name).await?;
        let fingerprint = format!("versions|{}|{}", name.workspace, row.id);
        let before: Option<i64> =
            page_token::decode(&self.page_key, &fingerprint, &message.page_token)?
                .map(|cursor| {
                    cursor
                        .parse()
                        .map_err(|_| ControlError::invalid("page_token", "is malformed"))
                })
                .transpose()?;
        let mut query = connection_version::Entity::find()
            .filter(connection_version::Column::ConnectionPk.eq(row.id))
            .order_by_desc(connection_version::Column::Version)
            .limit(page_size + 1);
        if let Some(before) = before {
            query = query.filter(connection_version::Column::Version.lt(before));
        }
        let mut versions = db(query.all(self.store.db()).await)?;
        let next_page_token = page_token::next_page(
            &self.page_key,
            &fingerprint,
            &mut versions,
            page_size,
            |version| version.version.to_string(),
        );
        let canonical = connection_name(&row);
        let connection_versions = versions
            .iter()
            .map(|version| {
                let snapshot: ConnectionSnapshot =
                    records::from_json_text("connection_version", &version.snapshot)?;
                Ok(pb::ConnectionVersion {
                    name: format!("{canonical}/versions/{}", version.version),
                    version: version.version,
                    connection: Some(connection_to_pb(&canonical, &snapshot, None, None)),
                    actor: version.actor.clone(),
                    action: version_action(&version.action).to_owned(),
                    changed_fields: records::from_json_text(
                        "connection_version",
                        &version.changed_fields,
                    )?,
                    create_time: Some(pb_conversions::timestamp(version.create_time)),
                })
            })
            .collect::<ControlResult<_>>()?;
        Ok(pb::ListConnectionVersionsResponse {
            connection_versions,
            next_page_token,
        })
    }

    async fn rollback_inner(
        &self,
        request: Request<pb::RollbackConnectionRequest>,
    ) -> ControlResult<pb::Connection> {
        let name = ConnectionName::parse("name", &request.get_ref().name)?;
        let principal = self
            .caller(&request, &name.workspace, Action::WriteConnection)
            .await?;
        let message = request.into_inner();
        if message.version <= 0 {
            return Err(ControlError::invalid(
                "version",
                "must be a positive version number",
            ));
        }
        let remote = self.store.secrets().is_remote();
        for _ in 0..WRITE_ATTEMPTS {
            // As in UpdateConnection: Vault only before the write lock.
            let (write, plan) = if remote {
                let plan = self.plan_rollback(self.store.db(), &name, &message).await?;
                let write = self.store.begin_write().await?;
                if !plan.read.still_current(&write.txn).await? {
                    continue;
                }
                (write, plan)
            } else {
                let write = self.store.begin_write().await?;
                let plan = self.plan_rollback(&write.txn, &name, &message).await?;
                (write, plan)
            };
            // Deployments deleted since that version can no longer be excluded.
            let mut still_there = Vec::new();
            for id in plan.excluded {
                if visibility::find_deployment(&write.txn, &plan.read.row.workspace, &id)
                    .await?
                    .is_some()
                {
                    still_there.push(id);
                }
            }
            let saved = save_connection(
                self,
                &write,
                plan.read.row,
                ConnectionState {
                    spec: &plan.restored,
                    link_to_all: plan.link_to_all,
                    excluded: still_there,
                },
                plan.staged,
                ConnectionWrite {
                    principal: &principal,
                    action: "RollbackConnection",
                    request_id: &message.request_id,
                    changed: plan.changed,
                },
            )
            .await?;
            write.commit().await?;
            return masked_connection(&saved);
        }
        Err(contended("connection"))
    }

    /// Reads the connection and the version to restore through `db_conn`
    /// (secrets included) and stages the restored secrets.
    async fn plan_rollback<C: ConnectionTrait>(
        &self,
        db_conn: &C,
        name: &ConnectionName,
        message: &pb::RollbackConnectionRequest,
    ) -> ControlResult<RollbackPlan> {
        let row = find_connection(db_conn, name).await?;
        check_etag(&message.etag, row.version, "connection")?;
        let target = db(connection_version::Entity::find()
            .filter(connection_version::Column::ConnectionPk.eq(row.id))
            .filter(connection_version::Column::Version.eq(message.version))
            .one(db_conn)
            .await)?
        .ok_or_else(|| {
            ControlError::NotFound(format!("version {} of {name} not found", message.version))
        })?;
        let snapshot: ConnectionSnapshot =
            records::from_json_text("connection_version", &target.snapshot)?;
        let old_secrets = self
            .store
            .secrets()
            .get(
                db_conn,
                &row.workspace,
                &records::connection_owner(row.id),
                target.secret_version,
            )
            .await?;
        let restored = snapshot.spec.clone().with_secrets(&old_secrets);
        let current = records::full_spec(self.store.secrets(), db_conn, &row).await?;
        let (_, current_secrets) = current.split_secrets();
        let excluded: Vec<String> = snapshot
            .excluded_deployments
            .iter()
            .filter(|id| !id.is_empty())
            .cloned()
            .collect();
        let changed = changed_fields(&current, &restored);
        let staged = stage_connection_secrets(
            self,
            &row.workspace,
            row.id,
            &restored,
            Some(&current_secrets),
        )
        .await?;
        Ok(RollbackPlan {
            read: ReadState {
                row,
                link_rows: None,
            },
            restored,
            link_to_all: snapshot.link_to_all,
            excluded,
            changed,
            staged,
        })
    }
}

/// A rollback computed from the rows as read.
struct RollbackPlan {
    /// Without links: a rollback does not validate them.
    read: ReadState,
    restored: ConnectionSpec,
    link_to_all: bool,
    excluded: Vec<String>,
    changed: Vec<String>,
    staged: StagedSecrets,
}

#[tonic::async_trait]
impl pb::connection_service_server::ConnectionService for Control {
    async fn list_connection_types(
        &self,
        request: Request<pb::ListConnectionTypesRequest>,
    ) -> Result<Response<pb::ListConnectionTypesResponse>, Status> {
        let principal = self.principal(&request).await?;
        permission::authorize_catalog(&principal).map_err(ControlError::from)?;
        let message = request.into_inner();
        let page_size = page_token::page_size(message.page_size)?;
        let fingerprint = "connection_types";
        let mut entries: Vec<_> = catalog::all().iter().collect();
        if let Some(after) = page_token::decode(&self.page_key, fingerprint, &message.page_token)? {
            let position = entries
                .iter()
                .position(|entry| entry.key == after)
                .ok_or_else(|| {
                    ControlError::invalid("page_token", "is not a page token of this request")
                })?;
            entries.drain(..=position);
        }
        let next_page_token = page_token::next_page(
            &self.page_key,
            fingerprint,
            &mut entries,
            page_size,
            |entry| entry.key.to_owned(),
        );
        Ok(Response::new(pb::ListConnectionTypesResponse {
            connection_types: entries.into_iter().map(catalog_to_pb).collect(),
            next_page_token,
        }))
    }

    async fn create_connection(
        &self,
        request: Request<pb::CreateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.create_connection_inner(request).await?))
    }

    async fn get_connection(
        &self,
        request: Request<pb::GetConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.get_connection_inner(request).await?))
    }

    async fn list_connections(
        &self,
        request: Request<pb::ListConnectionsRequest>,
    ) -> Result<Response<pb::ListConnectionsResponse>, Status> {
        Ok(Response::new(self.list_connections_inner(request).await?))
    }

    async fn update_connection(
        &self,
        request: Request<pb::UpdateConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.update_connection_inner(request).await?))
    }

    async fn delete_connection(
        &self,
        request: Request<pb::DeleteConnectionRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete_connection_inner(request).await?;
        Ok(Response::new(()))
    }

    async fn create_link(
        &self,
        request: Request<pb::CreateLinkRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        Ok(Response::new(self.create_link_inner(request).await?))
    }

    async fn get_link(
        &self,
        request: Request<pb::GetLinkRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        Ok(Response::new(self.get_link_inner(request).await?))
    }

    async fn list_links(
        &self,
        request: Request<pb::ListLinksRequest>,
    ) -> Result<Response<pb::ListLinksResponse>, Status> {
        Ok(Response::new(self.list_links_inner(request).await?))
    }

    async fn update_link(
        &self,
        request: Request<pb::UpdateLinkRequest>,
    ) -> Result<Response<pb::Link>, Status> {
        Ok(Response::new(self.update_link_inner(request).await?))
    }

    async fn delete_link(
        &self,
        request: Request<pb::DeleteLinkRequest>,
    ) -> Result<Response<()>, Status> {
        self.delete_link_inner(request).await?;
        Ok(Response::new(()))
    }

    async fn list_connection_versions(
        &self,
        request: Request<pb::ListConnectionVersionsRequest>,
    ) -> Result<Response<pb::ListConnectionVersionsResponse>, Status> {
        Ok(Response::new(self.list_versions_inner(request).await?))
    }

    async fn rollback_connection(
        &self,
        request: Request<pb::RollbackConnectionRequest>,
    ) -> Result<Response<pb::Connection>, Status> {
        Ok(Response::new(self.rollback_inner(request).await?))
    }
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
