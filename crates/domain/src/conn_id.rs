//! Airflow conn_id rules: `[A-Za-z0-9_.-]`, 1–250 characters, unique per
//! workspace ignoring case (Airflow's `AIRFLOW_CONN_<ID>` upper-cases ids).

/// Checks `conn_id`; the error says why, without repeating the id.
pub fn validate(conn_id: &str) -> Result<(), String> {
    let _ = conn_id;
    todo!("domain helper")
}

/// The case-folded key under which conn_ids collide.
pub fn fold(conn_id: &str) -> String {
    let _ = conn_id;
    todo!("domain helper")
}
