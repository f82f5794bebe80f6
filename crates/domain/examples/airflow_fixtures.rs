//! Prints one JSON line per sample connection: what Airflow must read back,
//! and our JSON and URI encodings of it. `tests/airflow/check_encoding.py`
//! feeds these to real Airflow's `Connection.from_json` and `Connection(uri=…)`.

use serde_json::{Value, json};
use switchboard_domain::airflow;
use switchboard_domain::connection::EffectiveConnection;

fn connection(conn_id: &str, conn_type: &str, fields: Value, extra: Value) -> EffectiveConnection {
    let text = |key: &str| fields.get(key).and_then(Value::as_str).map(str::to_owned);
    EffectiveConnection {
        conn_id: conn_id.to_owned(),
        conn_type: conn_type.to_owned(),
        description: None,
        host: text("host"),
        schema: text("schema"),
        login: text("login"),
        password: text("password"),
        port: fields
            .get("port")
            .and_then(Value::as_i64)
            .map(|port| port as i32),
        extra: extra.as_object().cloned().unwrap_or_default(),
    }
}

fn main() {
    let samples = [
        connection(
            "pg_special",
            "postgres",
            json!({"host": "db.example.com", "schema": "analytics", "login": "etl user", "password": "p@ss:w/rd?#%& +=", "port": 5432}),
            json!({"sslmode": "require", "application_name": "sw itch"}),
        ),
        connection(
            "redshift_main",
            "redshift",
            json!({"host": "cluster.abc123.us-west-2.redshift.amazonaws.com", "schema": "dev", "login": "awsuser", "password": "Ünïcødé-pw", "port": 5439}),
            json!({"iam": false, "serverless_token_duration_seconds": 3600}),
        ),
        connection(
            "snowflake_default",
            "snowflake",
            json!({"schema": "PUBLIC", "login": "loader", "password": "s3cr3t"}),
            json!({"account": "myorg-acct", "warehouse": "WH", "session_parameters": {"QUERY_TAG": "switchboard", "depth": {"n": 1}}}),
        ),
        connection(
            "snowflake_key",
            "snowflake",
            json!({"login": "svc"}),
            json!({"account": "xy12345.eu-west-1.aws", "private_key_content": "-----BEGIN PRIVATE KEY-----\nMIIB\n-----END PRIVATE KEY-----\n"}),
        ),
        connection(
            "databricks_default",
            "databricks",
            json!({"host": "adb-1234.5.azuredatabricks.net", "password": "dapi0123456789"}),
            json!({"http_path": "/sql/1.0/warehouses/abc"}),
        ),
        connection(
            "bigquery_default",
            "google_cloud_platform",
            json!({}),
            json!({"project": "my-project-1", "num_retries": 5, "keyfile_dict": {"type": "service_account", "private_key": "-----BEGIN-----\nabc\n"}}),
        ),
        connection(
            "fivetran",
            "Fivetran",
            json!({"login": "key", "password": "secret/with+plus"}),
            json!({}),
        ),
        connection(
            "http_generic",
            "http_custom",
            json!({"host": "api.example.com", "port": 8443}),
            json!({"retries": 3, "verify": true, "ratio": 0.25}),
        ),
        connection(
            "port_only",
            "generic_type",
            json!({"port": 9000}),
            json!({}),
        ),
        connection(
            "databricks_https_host",
            "databricks",
            json!({"host": "https://adb-1234.5.azuredatabricks.net", "login": "sp-client", "password": "sp:secret@1"}),
            json!({"service_principal_oauth": true}),
        ),
        connection(
            "unicode_everywhere",
            "http",
            json!({"host": "bücher.example", "schema": "schéma/one", "login": "usér@corp", "password": "pässwörd €", "port": 443}),
            json!({"label": "naïve ☃", "key with spaces": "a=b&c", "query?": "#frag"}),
        ),
        connection(
            "password_without_login",
            "postgres",
            json!({"host": "10.0.0.5", "password": "only-password", "port": 5432}),
            json!({}),
        ),
        connection(
            "schema_without_host",
            "sqlite",
            json!({"schema": "/tmp/db.sqlite"}),
            json!({}),
        ),
        connection(
            "protobuf_numbers",
            "redshift",
            json!({"host": "wg.123.eu-west-1.redshift-serverless.amazonaws.com", "schema": "dev", "login": "admin", "password": "x"}),
            json!({"serverless_token_duration_seconds": 900.0, "is_serverless": true, "nested": {"n": 2.0, "list": [1.0, 1.5, null]}}),
        ),
        connection(
            "extra_marker_key",
            "http",
            json!({"host": "h.example"}),
            json!({"__extra__": "not the extra"}),
        ),
        connection(
            "empty_extra_values",
            "http",
            json!({"host": "h"}),
            json!({"blank": "", "space": " "}),
        ),
    ];
    // What Airflow must read for extras sent as protobuf numbers: integers,
    // not floats (the check compares JSON types, so 900.0 would fail).
    let integer_extras = json!({"serverless_token_duration_seconds": 900, "is_serverless": true, "nested": {"n": 2, "list": [1, 1.5, null]}});
    for sample in samples {
        let expected_extra = if sample.conn_id == "protobuf_numbers" {
            integer_extras.clone()
        } else {
            Value::Object(sample.extra.clone())
        };
        let expected = json!({
            "conn_type": sample.conn_type,
            "host": sample.host,
            "schema": sample.schema,
            "login": sample.login,
            "password": sample.password,
            "port": sample.port,
            "extra": expected_extra,
        });
        let line = json!({
            "conn_id": sample.conn_id,
            "expected": expected,
            "json": airflow::to_json(&sample),
            "uri": airflow::to_uri(&sample),
        });
        println!("{line}");
    }
}
