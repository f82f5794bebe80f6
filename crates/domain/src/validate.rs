//! Validation of connections and overrides against the catalog. Every bad
//! field is reported, not just the first, and no description repeats a value.

use serde_json::Value;

use crate::catalog::{self, DataType, Field, Parameter};
use crate::connection::{ConnectionSpec, Extra, Overrides};
use crate::error::FieldViolation;

/// Largest serialized `extra`, in bytes.
pub const MAX_EXTRA_BYTES: usize = 64 * 1024;
/// Longest extra key.
pub const MAX_EXTRA_KEY: usize = 256;
/// Longest host, schema, login, password or description.
pub const MAX_FIELD_BYTES: usize = 16 * 1024;

/// Longest generic conn_type accepted.
const CONN_TYPE_MAX: usize = 100;

fn check_port(port: Option<i32>, field: &str, violations: &mut Vec<FieldViolation>) {
    if let Some(port) = port
        && !(1..=65535).contains(&port)
    {
        violations.push(FieldViolation::new(field, "must be between 1 and 65535"));
    }
}

fn check_text(value: Option<&String>, field: &str, violations: &mut Vec<FieldViolation>) {
    if let Some(value) = value {
        if value.len() > MAX_FIELD_BYTES {
            violations.push(FieldViolation::new(
                field,
                format!("must be at most {MAX_FIELD_BYTES} bytes"),
            ));
        } else if value.chars().any(|c| c == '\0') {
            violations.push(FieldViolation::new(
                field,
                "must not contain NUL characters",
            ));
        }
    }
}

fn check_extra_shape(extra: &Extra, violations: &mut Vec<FieldViolation>) {
    for key in extra.keys() {
        if key.is_empty() || key.len() > MAX_EXTRA_KEY || key.chars().any(char::is_control) {
            violations.push(FieldViolation::new(
                "extra",
                format!("keys must be 1 to {MAX_EXTRA_KEY} characters without control characters"),
            ));
            break;
        }
    }
    let size = serde_json::to_vec(extra).map_or(usize::MAX, |bytes| bytes.len());
    if size > MAX_EXTRA_BYTES {
        violations.push(FieldViolation::new(
            "extra",
            format!("must be at most {MAX_EXTRA_BYTES} bytes as JSON"),
        ));
    }
}

fn value_as_text(
    field: Field,
    spec_value: Option<String>,
    extra_value: Option<&Value>,
) -> Option<Value> {
    match field {
        Field::Extra(_) => extra_value.cloned(),
        _ => spec_value.map(Value::String),
    }
}

/// Checks one set value against its parameter's type and pattern.
fn check_value(parameter: &Parameter, value: &Value, violations: &mut Vec<FieldViolation>) {
    let path = parameter.field.path();
    let type_ok = match parameter.data_type {
        DataType::String => value.is_string(),
        // Protobuf Struct numbers are all f64: 5439.0 is the integer 5439
        // (the Airflow encoders write it so).
        DataType::Integer => {
            value.is_i64()
                || value.is_u64()
                || value.as_f64().is_some_and(|number| number.fract() == 0.0)
        }
        DataType::Boolean => {
            value.is_boolean()
                || value
                    .as_str()
                    .is_some_and(|text| matches!(text, "true" | "false"))
        }
        DataType::Json => {
            value.is_object()
                || value.is_array()
                || value
                    .as_str()
                    .and_then(|text| serde_json::from_str::<Value>(text).ok())
                    .is_some_and(|parsed| parsed.is_object() || parsed.is_array())
        }
    };
    if !type_ok {
        let expected = match parameter.data_type {
            DataType::String => "a string",
            DataType::Integer => "an integer",
            DataType::Boolean => "a boolean",
            DataType::Json => "a JSON object or array",
        };
        violations.push(FieldViolation::new(path, format!("must be {expected}")));
        return;
    }
    if let (Some(pattern), Some(text)) = (parameter.pattern, value.as_str()) {
        let matches =
            regex::Regex::new(&format!("^(?:{pattern})$")).is_ok_and(|regex| regex.is_match(text));
        if !matches {
            let shown = if parameter.secret {
                "the expected format".to_owned()
            } else {
                format!("/{pattern}/")
            };
            violations.push(FieldViolation::new(path, format!("must match {shown}")));
        }
    }
}

/// Why a caller-named conn_type can't be served as given, if it can't.
///
/// Airflow's conn_type characters are `[A-Za-z0-9_-]`, but both
/// `Connection.from_json` and `Connection(uri=…)` (and the task SDK's
/// equivalents) rewrite `-` to `_` and `postgresql` to `postgres`, so such a
/// conn_type would reach the Deployment changed; it is refused instead. A URI
/// scheme must start with a letter, so Airflow's URI form needs that too.
fn generic_conn_type_problem(conn_type: &str) -> Option<String> {
    if conn_type.is_empty() {
        return Some("is required for generic connections (e.g. http)".to_owned());
    }
    if conn_type.contains('-') {
        return Some("must use '_' instead of '-': airflow reads '-' as '_'".to_owned());
    }
    if conn_type == "postgresql" {
        return Some("must be postgres: airflow reads postgresql as postgres".to_owned());
    }
    let starts_with_letter = conn_type
        .bytes()
        .next()
        .is_some_and(|byte| byte.is_ascii_alphabetic());
    let allowed = conn_type
        .bytes()
        .all(|byte| byte.is_ascii_alphanumeric() || byte == b'_');
    if conn_type.len() > CONN_TYPE_MAX || !starts_with_letter || !allowed {
        return Some(format!(
            "must be 1 to {CONN_TYPE_MAX} letters, digits or '_', starting with a letter"
        ));
    }
    None
}

fn check_conn_type(spec: &ConnectionSpec, violations: &mut Vec<FieldViolation>) {
    let Some(entry) = catalog::get(&spec.type_key) else {
        return;
    };
    if entry.conn_type.is_empty() {
        if let Some(description) = generic_conn_type_problem(&spec.conn_type) {
            violations.push(FieldViolation::new("conn_type", description));
        }
    } else if spec.conn_type != entry.conn_type {
        violations.push(FieldViolation::new(
            "conn_type",
            format!(
                "must be {} for {} connections (or left empty)",
                entry.conn_type, entry.key
            ),
        ));
    }
}

/// Validates a complete connection (a base, or a merged result): type known,
/// conn_type consistent, required parameters present, patterns, data types,
/// port range, size limits.
pub fn validate_connection(spec: &ConnectionSpec) -> Result<(), Vec<FieldViolation>> {
    let mut violations = Vec::new();
    let Some(entry) = catalog::get(&spec.type_key) else {
        let keys: Vec<&str> = catalog::all().iter().map(|entry| entry.key).collect();
        let description = if spec.type_key.is_empty() {
            format!("is required; one of {}", keys.join(", "))
        } else {
            format!("is not a known type; use one of {}", keys.join(", "))
        };
        return Err(vec![FieldViolation::new("type", description)]);
    };
    check_conn_type(spec, &mut violations);
    check_port(spec.port, "port", &mut violations);
    for (field, value) in [
        ("host", &spec.host),
        ("schema", &spec.schema),
        ("login", &spec.login),
        ("password", &spec.password),
        ("description", &spec.description),
    ] {
        check_text(value.as_ref(), field, &mut violations);
    }
    check_extra_shape(&spec.extra, &mut violations);
    for parameter in entry.parameters {
        let spec_value = match parameter.field {
            Field::Host => spec.host.clone(),
            Field::Schema => spec.schema.clone(),
            Field::Login => spec.login.clone(),
            Field::Password => spec.password.clone(),
            Field::Port => spec.port.map(|port| port.to_string()),
            Field::Extra(_) => None,
        };
        let extra_value = match parameter.field {
            Field::Extra(key) => spec.extra.get(key).filter(|value| !is_blank(value)),
            _ => None,
        };
        if parameter.field == Field::Port {
            continue; // Checked above as a number.
        }
        match value_as_text(parameter.field, spec_value, extra_value) {
            Some(value) => check_value(parameter, &value, &mut violations),
            None if parameter.required => violations.push(FieldViolation::new(
                parameter.field.path(),
                format!(
                    "is required for {} connections ({})",
                    entry.key, parameter.description
                ),
            )),
            None => {}
        }
    }
    finish(violations)
}

fn is_blank(value: &Value) -> bool {
    value.is_null() || value.as_str().is_some_and(str::is_empty)
}

fn finish(violations: Vec<FieldViolation>) -> Result<(), Vec<FieldViolation>> {
    if violations.is_empty() {
        Ok(())
    } else {
        Err(violations)
    }
}

/// Validates a link's overrides for a connection of type `type_key` on their
/// own (port range, data types, patterns of set values, size limits).
pub fn validate_overrides(
    type_key: &str,
    overrides: &Overrides,
) -> Result<(), Vec<FieldViolation>> {
    let mut violations = Vec::new();
    check_port(overrides.port, "port", &mut violations);
    for (field, value) in [
        ("host", &overrides.host),
        ("schema", &overrides.schema),
        ("login", &overrides.login),
        ("password", &overrides.password),
    ] {
        check_text(value.as_ref(), field, &mut violations);
    }
    check_extra_shape(&overrides.extra, &mut violations);
    if let Some(entry) = catalog::get(type_key) {
        for parameter in entry.parameters {
            let value = match parameter.field {
                Field::Host => overrides.host.clone().map(Value::String),
                Field::Schema => overrides.schema.clone().map(Value::String),
                Field::Login => overrides.login.clone().map(Value::String),
                Field::Password => overrides.password.clone().map(Value::String),
                Field::Port => None,
                // null removes the key; whether that is allowed is the merge's question.
                Field::Extra(key) => overrides
                    .extra
                    .get(key)
                    .filter(|value| !value.is_null())
                    .cloned(),
            };
            if let Some(value) = value.filter(|value| !is_blank(value)) {
                check_value(parameter, &value, &mut violations);
            }
        }
    }
    finish(violations)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn snowflake() -> ConnectionSpec {
        ConnectionSpec {
            type_key: "snowflake_password".into(),
            conn_type: "snowflake".into(),
            login: Some("loader".into()),
            password: Some("pw".into()),
            extra: json!({"account": "myorg-acct", "warehouse": "WH"})
                .as_object()
                .unwrap()
                .clone(),
            ..ConnectionSpec::default()
        }
    }

    fn fields(result: Result<(), Vec<FieldViolation>>) -> Vec<String> {
        result
            .unwrap_err()
            .into_iter()
            .map(|violation| violation.field)
            .collect()
    }

    #[test]
    fn accepts_a_complete_connection() {
        assert_eq!(validate_connection(&snowflake()), Ok(()));
    }

    #[test]
    fn reports_every_bad_field() {
        let mut spec = snowflake();
        spec.login = None;
        spec.password = None;
        spec.port = Some(70000);
        spec.extra.insert("account".into(), json!("bad account!"));
        spec.extra.insert("insecure_mode".into(), json!(3));
        let mut found = fields(validate_connection(&spec));
        found.sort();
        assert_eq!(
            found,
            [
                "extra.account",
                "extra.insecure_mode",
                "login",
                "password",
                "port"
            ]
        );
    }

    #[test]
    fn unknown_type_and_conn_type_mismatch() {
        let spec = ConnectionSpec {
            type_key: "oracle".into(),
            ..snowflake()
        };
        assert_eq!(fields(validate_connection(&spec)), ["type"]);
        let spec = ConnectionSpec {
            conn_type: "postgres".into(),
            ..snowflake()
        };
        assert_eq!(fields(validate_connection(&spec)), ["conn_type"]);
        for bad in [
            "",
            "http x",
            "1http",
            "http/x",
            "ünï",
            "my-type",
            "postgresql",
        ] {
            let generic = ConnectionSpec {
                type_key: "generic".into(),
                conn_type: bad.into(),
                ..ConnectionSpec::default()
            };
            assert_eq!(
                fields(validate_connection(&generic)),
                ["conn_type"],
                "{bad}"
            );
        }
        for good in ["http", "my_type", "custom_HTTP2"] {
            let generic = ConnectionSpec {
                type_key: "generic".into(),
                conn_type: good.into(),
                ..ConnectionSpec::default()
            };
            assert_eq!(validate_connection(&generic), Ok(()), "{good}");
        }
        let generic = ConnectionSpec {
            type_key: "generic".into(),
            conn_type: "http".into(),
            ..ConnectionSpec::default()
        };
        assert_eq!(validate_connection(&generic), Ok(()));
    }

    #[test]
    fn descriptions_never_repeat_secret_values() {
        let mut spec = ConnectionSpec {
            type_key: "bigquery".into(),
            conn_type: "google_cloud_platform".into(),
            extra: json!({"project": "my-project-1", "keyfile_dict": "sb-marker-not-json"})
                .as_object()
                .unwrap()
                .clone(),
            ..ConnectionSpec::default()
        };
        let violations = validate_connection(&spec).unwrap_err();
        assert_eq!(violations[0].field, "extra.keyfile_dict");
        assert!(!violations[0].description.contains("sb-marker"));
        spec.extra
            .insert("keyfile_dict".into(), json!({"type": "service_account"}));
        assert_eq!(validate_connection(&spec), Ok(()));
    }

    #[test]
    fn overrides_check_only_what_they_set() {
        let overrides = Overrides {
            port: Some(0),
            extra: json!({"warehouse": 5, "role": null})
                .as_object()
                .unwrap()
                .clone(),
            ..Overrides::default()
        };
        let mut found = fields(validate_overrides("snowflake_password", &overrides));
        found.sort();
        assert_eq!(found, ["extra.warehouse", "port"]);
        assert_eq!(
            validate_overrides("snowflake_password", &Overrides::default()),
            Ok(())
        );
    }

    #[test]
    fn extra_size_is_limited() {
        let mut spec = snowflake();
        spec.extra
            .insert("big".into(), json!("x".repeat(MAX_EXTRA_BYTES)));
        assert_eq!(fields(validate_connection(&spec)), ["extra"]);
    }
}
