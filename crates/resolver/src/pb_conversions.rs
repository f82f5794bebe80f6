//! Conversions from effective connections to ResolvedConnection messages.

use switchboard_domain::airflow;
use switchboard_domain::connection::EffectiveConnection;
use switchboard_proto::convert::json_to_struct;
use switchboard_proto::v1 as pb;

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
        extra: Some(json_to_struct(&connection.extra)),
        airflow_json: airflow::to_json(connection),
        airflow_uri: airflow::to_uri(connection),
        revision,
    }
}
