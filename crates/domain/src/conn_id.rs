//! Airflow conn_id rules: `[A-Za-z0-9_.-]`, 1–250 characters, unique per
//! workspace ignoring case (Airflow's `AIRFLOW_CONN_<ID>` upper-cases ids).

/// Longest conn_id Airflow's metastore column holds.
pub const MAX_LEN: usize = 250;

/// Checks `conn_id`; the error says why, without repeating the id.
pub fn validate(conn_id: &str) -> Result<(), String> {
    if conn_id.is_empty() {
        return Err("is required".to_owned());
    }
    if conn_id.len() > MAX_LEN {
        return Err(format!("must be at most {MAX_LEN} characters"));
    }
    let valid = conn_id
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b'.' | b'-'));
    if !valid {
        return Err("may contain only letters, digits, '_', '.' and '-'".to_owned());
    }
    Ok(())
}

/// The case-folded key under which conn_ids collide.
pub fn fold(conn_id: &str) -> String {
    conn_id.to_ascii_uppercase()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_airflow_ids_and_rejects_the_rest() {
        for good in ["snowflake_default", "a", "my.conn-1", &"x".repeat(250)] {
            assert!(validate(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "with space",
            "ünï",
            "a/b",
            "../x",
            &"x".repeat(251),
            "semi;colon",
        ] {
            assert!(validate(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_differing_in_case_collide() {
        assert_eq!(fold("Snowflake_Default"), fold("SNOWFLAKE_default"));
        assert_ne!(fold("a.b"), fold("a_b"));
    }
}
