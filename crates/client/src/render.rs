//! Messages as JSON values (field names as protobuf's JSON form spells them,
//! every field present) and as short table text.

use serde_json::{Map, Value, json};
use switchboard_proto::convert::struct_to_json;
use switchboard_proto::v1 as pb;

/// A timestamp as RFC 3339 text; empty when unset.
pub(crate) fn time_text(time: Option<&prost_types::Timestamp>) -> String {
    time.and_then(|time| chrono::DateTime::from_timestamp(time.seconds, time.nanos.max(0) as u32))
        .map(|time| time.to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true))
        .unwrap_or_default()
}

fn time_json(time: Option<&prost_types::Timestamp>) -> Value {
    match time_text(time) {
        text if text.is_empty() => Value::Null,
        text => Value::String(text),
    }
}

/// A `Struct` as a JSON object.
pub(crate) fn extra_json(extra: Option<&prost_types::Struct>) -> Value {
    Value::Object(struct_to_json(extra))
}

/// `key=value, …` for a table cell; strings unquoted.
pub(crate) fn extra_text(extra: &Map<String, Value>) -> String {
    extra
        .iter()
        .map(|(key, value)| match value {
            Value::String(text) => format!("{key}={text}"),
            other => format!("{key}={other}"),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Text for an empty table cell.
pub(crate) fn or_dash(text: impl Into<String>) -> String {
    let text = text.into();
    if text.is_empty() {
        "-".to_owned()
    } else {
        text
    }
}

/// A connection as JSON. `password` is present only when the answer holds
/// its value (`--show-secrets`), as in the table: a masked read leaves it
/// empty, which must not read as "no password" (`secretFieldsSet` says it
/// is set).
pub(crate) fn connection_json(connection: &pb::Connection) -> Value {
    let mut value = json!({
        "name": connection.name,
        "type": connection.r#type,
        "connType": connection.conn_type,
        "description": connection.description,
        "host": connection.host,
        "schema": connection.schema,
        "login": connection.login,
        "password": connection.password,
        "port": connection.port,
        "extra": extra_json(connection.extra.as_ref()),
        "linkToAllDeployments": connection.link_to_all_deployments,
        "excludedDeployments": connection.excluded_deployments,
        "secretFieldsSet": connection.secret_fields_set,
        "unknownExtraKeys": connection.unknown_extra_keys,
        "etag": connection.etag,
        "createTime": time_json(connection.create_time.as_ref()),
        "updateTime": time_json(connection.update_time.as_ref()),
    });
    if connection.password.is_empty()
        && let Some(object) = value.as_object_mut()
    {
        object.remove("password");
    }
    value
}

/// What a link overrides, as JSON; unset overrides are absent.
pub(crate) fn overrides_json(overrides: Option<&pb::LinkOverrides>) -> Value {
    let mut object = Map::new();
    if let Some(overrides) = overrides {
        let fields = [
            ("host", overrides.host.as_ref()),
            ("schema", overrides.schema.as_ref()),
            ("login", overrides.login.as_ref()),
            ("password", overrides.password.as_ref()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                object.insert(key.to_owned(), Value::String(value.clone()));
            }
        }
        if let Some(port) = overrides.port {
            object.insert("port".to_owned(), Value::from(port));
        }
        if overrides.extra.is_some() {
            object.insert("extra".to_owned(), extra_json(overrides.extra.as_ref()));
        }
    }
    Value::Object(object)
}

/// `schema=PROD, extra.warehouse=WH` for a table cell; secrets shown only as
/// set, since reads never return them.
pub(crate) fn overrides_text(link: &pb::Link) -> String {
    let mut parts = Vec::new();
    if let Some(overrides) = &link.overrides {
        let fields = [
            ("host", overrides.host.as_ref()),
            ("schema", overrides.schema.as_ref()),
            ("login", overrides.login.as_ref()),
        ];
        for (key, value) in fields {
            if let Some(value) = value {
                parts.push(format!("{key}={value}"));
            }
        }
        if let Some(port) = overrides.port {
            parts.push(format!("port={port}"));
        }
        for (key, value) in struct_to_json(overrides.extra.as_ref()) {
            match value {
                Value::String(text) => parts.push(format!("extra.{key}={text}")),
                Value::Null => parts.push(format!("extra.{key} removed")),
                other => parts.push(format!("extra.{key}={other}")),
            }
        }
    }
    parts.join(", ")
}

pub(crate) fn link_json(link: &pb::Link) -> Value {
    json!({
        "name": link.name,
        "deployment": link.deployment,
        "overrides": overrides_json(link.overrides.as_ref()),
        "secretFieldsSet": link.secret_fields_set,
        "unknownExtraKeys": link.unknown_extra_keys,
        "etag": link.etag,
        "createTime": time_json(link.create_time.as_ref()),
        "updateTime": time_json(link.update_time.as_ref()),
    })
}

pub(crate) fn deployment_json(deployment: &pb::Deployment) -> Value {
    json!({
        "name": deployment.name,
        "displayName": deployment.display_name,
        "kind": deployment.kind().as_str_name(),
        "parentDeployment": deployment.parent_deployment,
        "namespace": deployment.namespace,
        "secretDelivery": deployment.secret_delivery().as_str_name(),
        "etag": deployment.etag,
        "createTime": time_json(deployment.create_time.as_ref()),
        "updateTime": time_json(deployment.update_time.as_ref()),
    })
}

/// `standard`, `branch`, `preview`.
pub(crate) fn kind_text(kind: pb::DeploymentKind) -> &'static str {
    match kind {
        pb::DeploymentKind::Unspecified | pb::DeploymentKind::Standard => "standard",
        pb::DeploymentKind::Branch => "branch",
        pb::DeploymentKind::Preview => "preview",
    }
}

/// `none`, `token`, `env`.
pub(crate) fn delivery_text(delivery: pb::SecretDelivery) -> &'static str {
    match delivery {
        pb::SecretDelivery::Unspecified | pb::SecretDelivery::None => "none",
        pb::SecretDelivery::Token => "token",
        pb::SecretDelivery::Env => "env",
    }
}

pub(crate) fn token_json(token: &pb::DeploymentToken) -> Value {
    json!({
        "name": token.name,
        "token": token.token,
        "description": token.description,
        "createTime": time_json(token.create_time.as_ref()),
        "revokeTime": time_json(token.revoke_time.as_ref()),
    })
}

fn data_type_text(data_type: pb::ParameterDataType) -> &'static str {
    match data_type {
        pb::ParameterDataType::Unspecified | pb::ParameterDataType::String => "string",
        pb::ParameterDataType::Integer => "integer",
        pb::ParameterDataType::Boolean => "boolean",
        pb::ParameterDataType::Json => "json",
    }
}

pub(crate) fn parameter_json(parameter: &pb::ConnectionTypeParameter) -> Value {
    json!({
        "name": parameter.name,
        "field": parameter.field,
        "required": parameter.required,
        "secret": parameter.secret,
        "pattern": parameter.pattern,
        "dataType": parameter.data_type().as_str_name(),
        "description": parameter.description,
    })
}

/// The parameter's data type in lower case, e.g. `integer`.
pub(crate) fn parameter_type_text(parameter: &pb::ConnectionTypeParameter) -> &'static str {
    data_type_text(parameter.data_type())
}

pub(crate) fn connection_type_json(connection_type: &pb::ConnectionType) -> Value {
    json!({
        "type": connection_type.r#type,
        "displayName": connection_type.display_name,
        "connType": connection_type.conn_type,
        "providerPackage": connection_type.provider_package,
        "defaultPort": connection_type.default_port,
        "parameters": connection_type.parameters.iter().map(parameter_json).collect::<Vec<_>>(),
    })
}

pub(crate) fn policy_json(policy: &pb::WorkspacePolicy) -> Value {
    json!({
        "name": policy.name,
        "allowSecretReveal": policy.allow_secret_reveal,
        "allowLocalExport": policy.allow_local_export,
        "etag": policy.etag,
        "updateTime": time_json(policy.update_time.as_ref()),
    })
}

pub(crate) fn audit_json(event: &pb::AuditEvent) -> Value {
    json!({
        "name": event.name,
        "actor": event.actor,
        "action": event.action,
        "resource": event.resource,
        "requestId": event.request_id,
        "changedFields": event.changed_fields,
        "createTime": time_json(event.create_time.as_ref()),
    })
}

pub(crate) fn version_json(version: &pb::ConnectionVersion) -> Value {
    json!({
        "name": version.name,
        "version": version.version,
        "connection": version.connection.as_ref().map(connection_json),
        "actor": version.actor,
        "action": version.action,
        "changedFields": version.changed_fields,
        "createTime": time_json(version.create_time.as_ref()),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_show_what_is_set() {
        let mut extra = Map::new();
        extra.insert("warehouse".into(), Value::from("WH"));
        extra.insert("role".into(), Value::Null);
        let link = pb::Link {
            overrides: Some(pb::LinkOverrides {
                schema: Some("PROD".into()),
                port: Some(443),
                extra: Some(switchboard_proto::convert::json_to_struct(&extra)),
                ..Default::default()
            }),
            ..Default::default()
        };
        assert_eq!(
            overrides_text(&link),
            "schema=PROD, port=443, extra.role removed, extra.warehouse=WH"
        );
        assert_eq!(
            overrides_json(link.overrides.as_ref()),
            json!({"schema": "PROD", "port": 443, "extra": {"role": null, "warehouse": "WH"}})
        );
    }

    #[test]
    fn a_masked_password_is_left_out_and_a_revealed_one_shown() {
        let masked = pb::Connection {
            secret_fields_set: vec!["password".into()],
            ..Default::default()
        };
        let json = connection_json(&masked);
        assert!(json.get("password").is_none(), "{json}");
        assert_eq!(json["secretFieldsSet"][0], "password");
        let revealed = pb::Connection {
            password: "shown".into(),
            ..masked
        };
        assert_eq!(connection_json(&revealed)["password"], "shown");
    }

    #[test]
    fn times_are_rfc3339() {
        let time = prost_types::Timestamp {
            seconds: 1_700_000_000,
            nanos: 0,
        };
        assert_eq!(time_text(Some(&time)), "2023-11-14T22:13:20Z");
        assert_eq!(time_text(None), "");
    }
}
