//! Airflow's encodings of a connection: the JSON `Connection.from_json` reads
//! and the URI `Connection(uri=…)` reads, and `AIRFLOW_CONN_<ID>` names.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::connection::{EffectiveConnection, Extra};

/// Python's `urllib.parse.quote(s, safe="")`: everything but `A-Za-z0-9_.-~`.
const QUOTE: &AsciiSet = &NON_ALPHANUMERIC
    .remove(b'_')
    .remove(b'.')
    .remove(b'-')
    .remove(b'~');

/// The key Airflow uses for a JSON-encoded extra in URIs.
const EXTRA_KEY: &str = "__extra__";

fn quote(text: &str) -> String {
    utf8_percent_encode(text, QUOTE).to_string()
}

/// Python's `quote_plus(s, safe="")`, as `urlencode` applies it.
fn quote_plus(text: &str) -> String {
    quote(text).replace("%20", "+")
}

/// Largest integer an `f64` holds exactly (2^53 - 1); larger whole floats
/// stay floats rather than turning into a different integer.
const MAX_SAFE_INTEGER: f64 = 9_007_199_254_740_991.0;

/// Returns `extra` with every whole-number float (at any depth) written as an
/// integer. Protobuf `Struct` numbers are all `f64`, so without this a port of
/// 5439 would reach Airflow as `5439.0`, which hooks reject or misuse.
pub fn normalize_numbers(extra: &Extra) -> Extra {
    extra
        .iter()
        .map(|(key, value)| (key.clone(), normalize_value(value)))
        .collect()
}

fn normalize_value(value: &Value) -> Value {
    match value {
        Value::Number(number) if !number.is_i64() && !number.is_u64() => {
            match number.as_f64() {
                Some(float) if float.fract() == 0.0 && float.abs() <= MAX_SAFE_INTEGER => {
                    // Exact: a whole float within ±2^53 converts without loss.
                    Value::from(float as i64)
                }
                _ => value.clone(),
            }
        }
        Value::Array(items) => Value::Array(items.iter().map(normalize_value).collect()),
        Value::Object(object) => Value::Object(normalize_numbers(object)),
        other => other.clone(),
    }
}

/// Airflow's JSON form, as `Connection.from_json` reads it: unset fields are
/// omitted, `port` is an integer, `extra` an object whose whole numbers are
/// integers.
pub fn to_json(connection: &EffectiveConnection) -> String {
    let mut object = Map::new();
    object.insert(
        "conn_type".to_owned(),
        Value::from(connection.conn_type.clone()),
    );
    let fields = [
        ("description", &connection.description),
        ("host", &connection.host),
        ("schema", &connection.schema),
        ("login", &connection.login),
        ("password", &connection.password),
    ];
    for (key, value) in fields {
        if let Some(value) = value {
            object.insert(key.to_owned(), Value::from(value.clone()));
        }
    }
    if let Some(port) = connection.port {
        object.insert("port".to_owned(), Value::from(port));
    }
    if !connection.extra.is_empty() {
        object.insert(
            "extra".to_owned(),
            Value::Object(normalize_numbers(&connection.extra)),
        );
    }
    Value::Object(object).to_string()
}

/// Airflow's URI form, as `Connection.get_uri` writes it: conn_type with `_`
/// as `-` in the scheme, percent-encoded parts, extras as query parameters
/// when they are all strings, else one `__extra__` JSON parameter.
///
/// URI schemes are case-insensitive and Airflow turns `-` in them into `_`,
/// so a conn_type with capitals or `-` (Fivetran's `Fivetran`) comes back
/// lower-cased and with `_`; the JSON form keeps it exactly.
pub fn to_uri(connection: &EffectiveConnection) -> String {
    let mut uri = if connection.conn_type.is_empty() {
        "//".to_owned()
    } else {
        format!(
            "{}://",
            connection.conn_type.to_lowercase().replace('_', "-")
        )
    };
    let mut authority = String::new();
    if let Some(login) = &connection.login {
        authority.push_str(&quote(login));
    }
    if let Some(password) = &connection.password {
        authority.push(':');
        authority.push_str(&quote(password));
    }
    if !authority.is_empty() {
        authority.push('@');
        uri.push_str(&authority);
    }
    let mut host = String::new();
    if let Some(name) = &connection.host {
        host.push_str(&quote(name));
    }
    if let Some(port) = connection.port {
        if host.is_empty() && authority.is_empty() {
            host.push_str(&format!("@:{port}"));
        } else {
            host.push_str(&format!(":{port}"));
        }
    }
    if let Some(schema) = &connection.schema {
        host.push('/');
        host.push_str(&quote(schema));
    }
    uri.push_str(&host);
    let extra = normalize_numbers(&connection.extra);
    if !extra.is_empty() {
        uri.push_str(if connection.schema.is_some() {
            "?"
        } else {
            "/?"
        });
        // Airflow reads a query parameter named `__extra__` as the whole
        // extra, so a real key of that name forces the JSON form.
        let plain_query = extra.values().all(Value::is_string) && !extra.contains_key(EXTRA_KEY);
        if plain_query {
            let pairs: Vec<String> = extra
                .iter()
                .map(|(key, value)| {
                    format!(
                        "{}={}",
                        quote_plus(key),
                        quote_plus(value.as_str().unwrap_or_default())
                    )
                })
                .collect();
            uri.push_str(&pairs.join("&"));
        } else {
            let json = Value::Object(extra).to_string();
            uri.push_str(&format!("{EXTRA_KEY}={}", quote_plus(&json)));
        }
    }
    uri
}

/// The environment variable Airflow reads the connection from: `AIRFLOW_CONN_<ID upper-cased>`.
pub fn env_var_name(conn_id: &str) -> String {
    format!("AIRFLOW_CONN_{}", conn_id.to_ascii_uppercase())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn postgres() -> EffectiveConnection {
        EffectiveConnection {
            conn_id: "pg".into(),
            conn_type: "postgres".into(),
            description: None,
            host: Some("db.example.com".into()),
            schema: Some("analytics".into()),
            login: Some("user".into()),
            password: Some("p@ss:w/rd?#%".into()),
            port: Some(5432),
            extra: json!({"sslmode": "require"}).as_object().unwrap().clone(),
        }
    }

    #[test]
    fn json_keeps_integers_and_omits_unset_fields() {
        let mut connection = postgres();
        connection.schema = None;
        connection.extra = json!({"retries": 3, "ratio": 0.5})
            .as_object()
            .unwrap()
            .clone();
        let parsed: Value = serde_json::from_str(&to_json(&connection)).unwrap();
        assert_eq!(parsed["port"], json!(5432));
        assert_eq!(parsed["extra"]["retries"], json!(3));
        assert!(parsed.get("schema").is_none());
        assert!(to_json(&connection).contains("\"port\":5432"));
    }

    #[test]
    fn uri_quotes_like_airflow() {
        assert_eq!(
            to_uri(&postgres()),
            "postgres://user:p%40ss%3Aw%2Frd%3F%23%25@db.example.com:5432/analytics?sslmode=require"
        );
        let mut generic = postgres();
        generic.conn_type = "google_cloud_platform".into();
        generic.schema = None;
        generic.extra = json!({"num_retries": 5}).as_object().unwrap().clone();
        assert_eq!(
            to_uri(&generic),
            "google-cloud-platform://user:p%40ss%3Aw%2Frd%3F%23%25@db.example.com:5432/?__extra__=%7B%22num_retries%22%3A5%7D"
        );
    }

    #[test]
    fn whole_floats_become_integers_at_any_depth() {
        let extra = json!({
            "port": 5439.0,
            "ratio": 0.5,
            "nested": {"retries": 3.0, "list": [1.0, 2.5, "x"]},
            "huge": 1e300,
            "flag": true
        });
        let normalized = normalize_numbers(extra.as_object().unwrap());
        assert_eq!(
            Value::Object(normalized),
            json!({
                "port": 5439,
                "ratio": 0.5,
                "nested": {"retries": 3, "list": [1, 2.5, "x"]},
                "huge": 1e300,
                "flag": true
            })
        );
        let mut connection = postgres();
        connection.extra = json!({"port": 5439.0}).as_object().unwrap().clone();
        assert!(to_json(&connection).contains(r#""extra":{"port":5439}"#));
        assert!(to_uri(&connection).ends_with("__extra__=%7B%22port%22%3A5439%7D"));
    }

    #[test]
    fn uri_without_host_login_or_port_keeps_the_schema() {
        let connection = EffectiveConnection {
            conn_id: "c".into(),
            conn_type: "snowflake".into(),
            description: None,
            host: None,
            schema: Some("PUBLIC".into()),
            login: None,
            password: None,
            port: None,
            extra: json!({"account": "a b&c=d"}).as_object().unwrap().clone(),
        };
        assert_eq!(
            to_uri(&connection),
            "snowflake:///PUBLIC?account=a+b%26c%3Dd"
        );
        let mut port_only = connection.clone();
        port_only.schema = None;
        port_only.extra = Extra::new();
        port_only.port = Some(9000);
        assert_eq!(to_uri(&port_only), "snowflake://@:9000");
    }

    #[test]
    fn a_real_extra_key_named_like_airflows_marker_uses_the_json_form() {
        let mut connection = postgres();
        connection.extra = json!({"__extra__": "x"}).as_object().unwrap().clone();
        assert!(to_uri(&connection).ends_with("?__extra__=%7B%22__extra__%22%3A%22x%22%7D"));
    }

    #[test]
    fn json_has_exactly_airflows_keys() {
        let mut connection = postgres();
        connection.description = Some("main db".into());
        let parsed: Value = serde_json::from_str(&to_json(&connection)).unwrap();
        let mut keys: Vec<&str> = parsed
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort_unstable();
        assert_eq!(
            keys,
            [
                "conn_type",
                "description",
                "extra",
                "host",
                "login",
                "password",
                "port",
                "schema"
            ]
        );
        assert_eq!(parsed["extra"], json!({"sslmode": "require"}));
    }

    #[test]
    fn env_var_names_upper_case_the_id() {
        assert_eq!(
            env_var_name("snowflake_default"),
            "AIRFLOW_CONN_SNOWFLAKE_DEFAULT"
        );
    }
}
