//! Airflow's encodings of a connection: the JSON `Connection.from_json` reads
//! and the URI `Connection(uri=…)` reads, and `AIRFLOW_CONN_<ID>` names.

use crate::connection::EffectiveConnection;

/// Airflow's JSON form. Whole numbers stay integers.
pub fn to_json(connection: &EffectiveConnection) -> String {
    let _ = connection;
    todo!("domain helper")
}

/// Airflow's URI form.
pub fn to_uri(connection: &EffectiveConnection) -> String {
    let _ = connection;
    todo!("domain helper")
}

/// The environment variable Airflow reads the connection from: `AIRFLOW_CONN_<ID upper-cased>`.
pub fn env_var_name(conn_id: &str) -> String {
    let _ = conn_id;
    todo!("domain helper")
}
