//! Conversions from effective connections to ResolvedConnection messages.

use prost_types::value::Kind;
use serde_json::Value;
use switchboard_domain::Extra;
use switchboard_domain::airflow;
use switchboard_domain::connection::EffectiveConnection;
use switchboard_proto::v1 as pb;

fn json_to_value(value: &Value) -> prost_types::Value {
    let kind = match value {
        Value::Null => Kind::NullValue(0),
        Value::Bool(flag) => Kind::BoolValue(*flag),
        Value::Number(number) => Kind::NumberValue(number.as_f64().unwrap_or_default()),
        Value::String(text) => Kind::StringValue(text.clone()),
        Value::Array(items) => Kind::ListValue(prost_types::ListValue {
            values: items.iter().map(json_to_value).collect(),
        }),
        Value::Object(object) => Kind::StructValue(extra_to_struct(object)),
    };
    prost_types::Value { kind: Some(kind) }
}

fn extra_to_struct(extra: &Extra) -> prost_types::Struct {
    prost_types::Struct {
        fields: extra
            .iter()
            .map(|(key, value)| (key.clone(), json_to_value(value)))
            .collect(),
    }
}

/// The message for one effective connection at `revision`.
pub(crate) fn resolved_to_pb(
    connection: &EffectiveConnection,
    revision: i64,
) -> pb::ResolvedConnection {
    pb::ResolvedConnection {
        conn_id: connection.conn_id.clone(),
        conn_type: connection.conn_type.clone(),
        host: connection.host.clone().unwrap_or_default(),
        schema: connection.schema.clone().unwrap_or_default(),
        login: connection.login.clone().unwrap_or_default(),
        password: connection.password.clone().unwrap_or_default(),
        port: connection.port.unwrap_or_default(),
        extra: Some(extra_to_struct(&connection.extra)),
        airflow_json: airflow::to_json(connection),
        airflow_uri: airflow::to_uri(connection),
        revision,
    }
}
