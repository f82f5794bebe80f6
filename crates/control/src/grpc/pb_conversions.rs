//! Every conversion between protobuf messages (update masks included) and
//! domain or store values; the service layer never sees these messages.

use switchboard_domain::catalog;
use switchboard_domain::deployment::{DeploymentKind, SecretDelivery, UnknownValue};
use switchboard_domain::field_paths::snake_case;
use switchboard_domain::names::{ConnectionName, DeploymentName, LinkName, TokenName};
use switchboard_domain::{ConnectionSpec, Overrides};
pub use switchboard_proto::convert::{json_to_struct, struct_to_json, timestamp};
use switchboard_proto::v1 as pb;
use switchboard_store::StoreError;
use switchboard_store::entity::{
    audit_event, connection, deployment, deployment_token, link, policy,
};
use switchboard_store::records::{self, ConnectionSnapshot};

use crate::connections::connection_name;
use crate::error::ControlResult;
use crate::service::etag;

fn non_empty(value: &str) -> Option<String> {
    (!value.is_empty()).then(|| value.to_owned())
}

/// The spec a Connection message describes (before validation).
pub(crate) fn spec_from_pb(message: &pb::Connection) -> ConnectionSpec {
    ConnectionSpec {
        type_key: message.r#type.clone(),
        conn_type: message.conn_type.clone(),
        description: non_empty(&message.description),
        host: non_empty(&message.host),
        schema: non_empty(&message.schema),
        login: non_empty(&message.login),
        password: non_empty(&message.password),
        port: (message.port != 0).then_some(message.port),
        extra: struct_to_json(message.extra.as_ref()),
    }
    .normalized()
}

/// The overrides a LinkOverrides message describes.
pub(crate) fn overrides_from_pb(message: Option<&pb::LinkOverrides>) -> Overrides {
    let Some(message) = message else {
        return Overrides::default();
    };
    Overrides {
        host: message.host.clone(),
        schema: message.schema.clone(),
        login: message.login.clone(),
        password: message.password.clone(),
        port: message.port,
        extra: struct_to_json(message.extra.as_ref()),
    }
}

/// Overrides as sent back through control: secret values left out.
pub(crate) fn overrides_to_pb(overrides: &Overrides) -> pb::LinkOverrides {
    pb::LinkOverrides {
        host: overrides.host.clone(),
        schema: overrides.schema.clone(),
        login: overrides.login.clone(),
        password: None,
        port: overrides.port,
        extra: (!overrides.extra.is_empty()).then(|| json_to_struct(&overrides.extra)),
    }
}

/// A connection message from a snapshot. `secrets` fills secret values when
/// the caller may see them; otherwise they stay empty and are only listed.
pub(crate) fn connection_to_pb(
    name: &ConnectionName,
    snapshot: &ConnectionSnapshot,
    revealed: Option<&ConnectionSpec>,
    row: Option<&connection::Model>,
) -> pb::Connection {
    // The stored public part holds no secret; splitting again keeps it so
    // even for a row no start-up has cleaned yet (see plaintext_secrets).
    let public = snapshot.spec.split_secrets().0;
    let spec = revealed.unwrap_or(&public);
    pb::Connection {
        name: name.to_string(),
        r#type: spec.type_key.clone(),
        conn_type: spec.conn_type.clone(),
        description: spec.description.clone().unwrap_or_default(),
        host: spec.host.clone().unwrap_or_default(),
        schema: spec.schema.clone().unwrap_or_default(),
        login: spec.login.clone().unwrap_or_default(),
        password: spec.password.clone().unwrap_or_default(),
        port: spec.port.unwrap_or_default(),
        extra: Some(json_to_struct(&spec.extra)),
        link_to_all_deployments: snapshot.link_to_all,
        excluded_deployments: snapshot
            .excluded_deployments
            .iter()
            .map(|deployment| {
                DeploymentName {
                    workspace: name.workspace.clone(),
                    deployment: deployment.clone(),
                }
                .to_string()
            })
            .collect(),
        secret_fields_set: snapshot.secret_fields.clone(),
        unknown_extra_keys: catalog::unknown_extra_keys(
            &spec.type_key,
            &public.extra,
            &snapshot.secret_fields,
        ),
        etag: row.map(|row| etag(row.version)).unwrap_or_default(),
        create_time: row.map(|row| timestamp(row.create_time)),
        update_time: row.map(|row| timestamp(row.update_time)),
    }
}

/// A connection row as sent through control, secrets masked.
pub(crate) fn masked_connection(row: &connection::Model) -> ControlResult<pb::Connection> {
    let snapshot = records::snapshot_from_row(row)?;
    Ok(connection_to_pb(
        &connection_name(row),
        &snapshot,
        None,
        Some(row),
    ))
}

/// A link row as sent through control, secrets masked.
pub(crate) fn link_to_pb(conn: &connection::Model, row: &link::Model) -> ControlResult<pb::Link> {
    let overrides = records::overrides_from_row(row)?
        .split_secrets(&conn.type_key)
        .0;
    let secret_fields: Vec<String> = records::from_json_text("link", &row.secret_fields)?;
    Ok(pb::Link {
        name: LinkName {
            workspace: conn.workspace.clone(),
            conn_id: conn.conn_id.clone(),
            deployment: row.deployment_id.clone(),
        }
        .to_string(),
        deployment: DeploymentName {
            workspace: row.workspace.clone(),
            deployment: row.deployment_id.clone(),
        }
        .to_string(),
        overrides: Some(overrides_to_pb(&overrides)),
        unknown_extra_keys: catalog::unknown_extra_keys(
            &conn.type_key,
            &overrides.extra,
            &secret_fields,
        ),
        secret_fields_set: secret_fields,
        etag: etag(row.version),
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
    })
}

/// A stored value parsed, or the row reported corrupt.
fn stored<T: std::str::FromStr<Err = UnknownValue>>(value: &str) -> ControlResult<T> {
    value.parse().map_err(|err: UnknownValue| {
        StoreError::Corrupt {
            table: "deployment",
            reason: err.to_string(),
        }
        .into()
    })
}

/// Deployment kinds as stored.
fn kind_to_pb(kind: DeploymentKind) -> pb::DeploymentKind {
    match kind {
        DeploymentKind::Standard => pb::DeploymentKind::Standard,
        DeploymentKind::Branch => pb::DeploymentKind::Branch,
        DeploymentKind::Preview => pb::DeploymentKind::Preview,
    }
}

/// Deployment kinds to store; unspecified means STANDARD.
pub(crate) fn kind_from_pb(kind: pb::DeploymentKind) -> DeploymentKind {
    match kind {
        pb::DeploymentKind::Unspecified | pb::DeploymentKind::Standard => DeploymentKind::Standard,
        pb::DeploymentKind::Branch => DeploymentKind::Branch,
        pb::DeploymentKind::Preview => DeploymentKind::Preview,
    }
}

/// Secret delivery as stored.
fn delivery_to_pb(delivery: SecretDelivery) -> pb::SecretDelivery {
    match delivery {
        SecretDelivery::None => pb::SecretDelivery::None,
        SecretDelivery::Token => pb::SecretDelivery::Token,
        SecretDelivery::Env => pb::SecretDelivery::Env,
    }
}

/// Secret delivery to store; unspecified means NONE.
pub(crate) fn delivery_from_pb(delivery: pb::SecretDelivery) -> SecretDelivery {
    match delivery {
        pb::SecretDelivery::Unspecified | pb::SecretDelivery::None => SecretDelivery::None,
        pb::SecretDelivery::Token => SecretDelivery::Token,
        pb::SecretDelivery::Env => SecretDelivery::Env,
    }
}

/// A deployment row as a message.
/// Fails on a corrupt kind or delivery.
pub(crate) fn deployment_to_pb(row: &deployment::Model) -> ControlResult<pb::Deployment> {
    Ok(pb::Deployment {
        name: DeploymentName {
            workspace: row.workspace.clone(),
            deployment: row.deployment_id.clone(),
        }
        .to_string(),
        display_name: row.display_name.clone(),
        kind: kind_to_pb(stored(&row.kind)?) as i32,
        parent_deployment: row
            .parent_deployment
            .as_ref()
            .map(|parent| {
                DeploymentName {
                    workspace: row.workspace.clone(),
                    deployment: parent.clone(),
                }
                .to_string()
            })
            .unwrap_or_default(),
        namespace: row.namespace.clone(),
        secret_delivery: delivery_to_pb(stored(&row.secret_delivery)?) as i32,
        etag: etag(row.version),
        create_time: Some(timestamp(row.create_time)),
        update_time: Some(timestamp(row.update_time)),
    })
}

/// A token row as a message; the secret is never stored, so never sent here.
pub(crate) fn token_to_pb(row: &deployment_token::Model) -> pb::DeploymentToken {
    pb::DeploymentToken {
        name: TokenName {
            workspace: row.workspace.clone(),
            deployment: row.deployment_id.clone(),
            token: row.token_id.clone(),
        }
        .to_string(),
        token: String::new(),
        description: row.description.clone(),
        create_time: Some(timestamp(row.create_time)),
        revoke_time: row.revoke_time.map(timestamp),
    }
}

/// A workspace's policy, defaults when no row exists.
pub(crate) fn policy_to_pb(workspace: &str, row: Option<&policy::Model>) -> pb::WorkspacePolicy {
    pb::WorkspacePolicy {
        name: format!("workspaces/{workspace}/policy"),
        allow_secret_reveal: row.is_some_and(|row| row.allow_secret_reveal),
        allow_local_export: row.is_some_and(|row| row.allow_local_export),
        etag: etag(row.map_or(0, |row| row.version)),
        update_time: row.map(|row| timestamp(row.update_time)),
    }
}

/// An audit row as a message.
pub(crate) fn audit_to_pb(row: &audit_event::Model) -> ControlResult<pb::AuditEvent> {
    Ok(pb::AuditEvent {
        name: format!("workspaces/{}/auditEvents/{}", row.workspace, row.id),
        actor: row.actor.clone(),
        action: row.action.clone(),
        resource: row.resource.clone(),
        request_id: row.request_id.clone(),
        changed_fields: records::from_json_text("audit_event", &row.changed_fields)?,
        create_time: Some(timestamp(row.create_time)),
        grants_secret_access: row.grants_secret_access,
        detail: row.detail.clone(),
    })
}

/// A catalog entry as a message.
pub(crate) fn catalog_to_pb(entry: &catalog::ConnectionType) -> pb::ConnectionType {
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

/// A version's action as ConnectionVersion documents it (create, update or
/// rollback); rows record the method that made the version.
pub(crate) fn version_action(method: &str) -> &str {
    match method {
        "CreateConnection" => "create",
        "UpdateConnection" => "update",
        "RollbackConnection" => "rollback",
        other => other,
    }
}

/// The mask's paths, split on commas, with field names in snake_case. Extra
/// keys (after `extra.`) are kept as sent; the field-mask code resolves them.
pub(crate) fn mask_paths(mask: Option<&prost_types::FieldMask>) -> Vec<String> {
    let mut paths = Vec::new();
    for entry in mask.map(|mask| mask.paths.as_slice()).unwrap_or_default() {
        for path in entry
            .split(',')
            .map(str::trim)
            .filter(|path| !path.is_empty())
        {
            let mut segments = Vec::new();
            let mut rest = path;
            loop {
                let (segment, tail) = rest.split_once('.').unwrap_or((rest, ""));
                let segment = snake_case(segment);
                let is_extra = segment == "extra";
                segments.push(segment);
                if tail.is_empty() {
                    break;
                }
                if is_extra {
                    segments.push(tail.to_owned());
                    break;
                }
                rest = tail;
            }
            paths.push(segments.join("."));
        }
    }
    paths
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mask(paths: &[&str]) -> prost_types::FieldMask {
        prost_types::FieldMask {
            paths: paths.iter().map(|path| (*path).to_owned()).collect(),
        }
    }

    #[test]
    fn paths_are_split_and_snake_cased_except_extra_keys() {
        let paths = mask_paths(Some(&mask(&[
            "linkToAllDeployments,schema",
            "extra.privateKeyContent",
            "overrides.extra.http_path",
        ])));
        assert_eq!(
            paths,
            [
                "link_to_all_deployments",
                "schema",
                "extra.privateKeyContent",
                "overrides.extra.http_path"
            ]
        );
    }

    #[test]
    fn list_filters_spell_kinds_as_the_api_does() {
        for kind in [
            pb::DeploymentKind::Unspecified,
            pb::DeploymentKind::Standard,
            pb::DeploymentKind::Branch,
            pb::DeploymentKind::Preview,
        ] {
            assert_eq!(
                crate::deployments::kind_from_filter(kind.as_str_name()),
                Some(kind_from_pb(kind))
            );
        }
        assert_eq!(crate::deployments::kind_from_filter("STANDARD"), None);
    }
}
