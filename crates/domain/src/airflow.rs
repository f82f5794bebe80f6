//! Airflow's encodings of a connection: the JSON `Connection.from_json` reads
//! and the URI `Connection(uri=…)` reads, and `AIRFLOW_CONN_<ID>` names.

use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use serde_json::{Map, Value};

use crate::connection::EffectiveConnection;

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

/// Airflow's JSON form. Whole numbers stay integers.
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
        object.insert("extra".to_owned(), Value::Object(connection.extra.clone()));
    }
    Value::Object(object).to_string()
}

/// Airflow's URI form, as `Connection.get_uri` writes it: conn_type with `_`
/// as `-` in the scheme, percent-encoded parts, extras as query parameters
/// when they are all strings, else one `__extra__` JSON parameter.
pub fn to_uri(connection: &EffectiveConnection) -> String {
    let mut uri = format!(
        "{}://",
        connection.conn_type.to_lowercase().replace('_', "-")
    );
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
    if !connection.extra.is_empty() {
        uri.push_str(if connection.schema.is_some() {
            "?"
        } else {
            "/?"
        });
        let all_strings = connection.extra.values().all(Value::is_string);
        if all_strings {
            let pairs: Vec<String> = connection
                .extra
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
            let json = Value::Object(connection.extra.clone()).to_string();
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
    fn env_var_names_upper_case_the_id() {
        assert_eq!(
            env_var_name("snowflake_default"),
            "AIRFLOW_CONN_SNOWFLAKE_DEFAULT"
        );
    }
}
