//! The catalog of connection types. Each entry names the Airflow conn_type,
//! the provider package that supplies its hook, and the parameters that hook
//! reads, checked against the provider's own hook source (versions noted).

/// Where Airflow reads a parameter from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Host,
    Schema,
    Login,
    Password,
    Port,
    /// A key of the connection's `extra`.
    Extra(&'static str),
}

impl Field {
    /// Path as used in field masks and violations: `host`, …, `extra.<key>`.
    pub fn path(&self) -> String {
        match self {
            Self::Host => "host".to_owned(),
            Self::Schema => "schema".to_owned(),
            Self::Login => "login".to_owned(),
            Self::Password => "password".to_owned(),
            Self::Port => "port".to_owned(),
            Self::Extra(key) => format!("extra.{key}"),
        }
    }
}

/// A parameter's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataType {
    String,
    Integer,
    Boolean,
    /// A JSON object or array (or a string holding one).
    Json,
}

/// One parameter of a connection type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Parameter {
    pub name: &'static str,
    pub field: Field,
    pub required: bool,
    pub secret: bool,
    /// Regular expression the whole value must match.
    pub pattern: Option<&'static str>,
    pub data_type: DataType,
    pub description: &'static str,
}

/// A catalog entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConnectionType {
    /// Catalog key, e.g. `snowflake_private_key`.
    pub key: &'static str,
    pub display_name: &'static str,
    /// Airflow's conn_type; empty for `generic`, where the caller names it.
    pub conn_type: &'static str,
    pub provider_package: &'static str,
    pub default_port: Option<u16>,
    pub parameters: &'static [Parameter],
}

const fn param(
    name: &'static str,
    field: Field,
    data_type: DataType,
    description: &'static str,
) -> Parameter {
    Parameter {
        name,
        field,
        required: false,
        secret: false,
        pattern: None,
        data_type,
        description,
    }
}

const fn required(parameter: Parameter) -> Parameter {
    Parameter {
        required: true,
        ..parameter
    }
}

const fn secret(parameter: Parameter) -> Parameter {
    Parameter {
        secret: true,
        ..parameter
    }
}

const fn pattern(parameter: Parameter, regex: &'static str) -> Parameter {
    Parameter {
        pattern: Some(regex),
        ..parameter
    }
}

use DataType::{Boolean, Integer, Json, String as Text};
use Field::{Extra, Host, Login, Password, Port, Schema};

/// Snowflake account identifiers: `orgname-account`, `locator`, or
/// `locator.region.cloud`.
const SNOWFLAKE_ACCOUNT: &str = r"[A-Za-z0-9][A-Za-z0-9_.-]*";
const SNOWFLAKE_OBJECT: &str = r#"[A-Za-z_][A-Za-z0-9_$]*|"[^"]+""#;
/// The hook's `_ACCOUNT_COMPONENT_PATTERN` for regions: these end up in URLs.
const SNOWFLAKE_REGION: &str = r"[A-Za-z0-9._-]+";

// apache-airflow-providers-amazon 9.39.0, hooks/redshift_sql.py
// (RedshiftSQLHook: conn_type "redshift", port defaults to 5439, database from
// `schema`; extras iam, cluster_identifier, is_serverless,
// serverless_work_group, serverless_token_duration_seconds).
const REDSHIFT: &[Parameter] = &[
    required(param(
        "host",
        Host,
        Text,
        "cluster endpoint, e.g. examplecluster.abc123.us-west-2.redshift.amazonaws.com",
    )),
    required(param("database", Schema, Text, "database to connect to")),
    required(param("user", Login, Text, "database user")),
    secret(param(
        "password",
        Password,
        Text,
        "password of the database user (leave empty with IAM)",
    )),
    param(
        "port",
        Port,
        Integer,
        "port, 5439 unless the cluster says otherwise",
    ),
    param(
        "iam",
        Extra("iam"),
        Boolean,
        "authenticate with IAM instead of the password",
    ),
    param(
        "cluster_identifier",
        Extra("cluster_identifier"),
        Text,
        "cluster identifier, for IAM authentication",
    ),
    param(
        "is_serverless",
        Extra("is_serverless"),
        Boolean,
        "Redshift Serverless workgroup, for IAM authentication",
    ),
    param(
        "serverless_work_group",
        Extra("serverless_work_group"),
        Text,
        "Redshift Serverless workgroup name",
    ),
    param(
        "serverless_token_duration_seconds",
        Extra("serverless_token_duration_seconds"),
        Integer,
        "lifetime of Redshift Serverless IAM credentials",
    ),
];

// apache-airflow-providers-databricks 7.23.0, hooks/databricks_base.py
// (conn_type "databricks"; _get_token takes the legacy extra `token` first,
// then `password` as a personal access token when `login` is empty; with
// `login` set the password goes with it (basic auth, or a service principal
// with service_principal_oauth); `host` may carry https://, which _parse_host
// strips; `http_path` read by hooks/databricks_sql.py). The password form is
// the one catalogued, since the hook logs a warning for the extra.
const DATABRICKS: &[Parameter] = &[
    required(param(
        "host",
        Host,
        Text,
        "workspace URL, e.g. https://adb-123.4.azuredatabricks.net",
    )),
    required(secret(param(
        "token",
        Password,
        Text,
        "personal access token, or the secret that goes with login",
    ))),
    param(
        "login",
        Login,
        Text,
        "user name or service principal client id; empty with a personal access token",
    ),
    param(
        "service_principal_oauth",
        Extra("service_principal_oauth"),
        Boolean,
        "login and password are a service principal's OAuth client id and secret",
    ),
    param(
        "http_path",
        Extra("http_path"),
        Text,
        "HTTP path of a SQL warehouse or cluster, for SQL operators",
    ),
    param(
        "use_azure_managed_identity",
        Extra("use_azure_managed_identity"),
        Boolean,
        "authenticate with the Azure managed identity",
    ),
];

// airflow-provider-fivetran-async 2.4.0, fivetran_provider_async/hooks.py
// (FivetranHook: conn_type "Fivetran" with a capital F, package named
// airflow-provider-*, API key and secret in login and password).
const FIVETRAN: &[Parameter] = &[
    required(param("api_key", Login, Text, "Fivetran API key")),
    required(secret(param(
        "api_secret",
        Password,
        Text,
        "Fivetran API secret",
    ))),
];

// apache-airflow-providers-postgres 7.1.1, hooks/postgres.py (conn_type
// "postgres"; database from `schema`; extras passed to psycopg such as
// sslmode, plus cursor, iam and aws_conn_id read by the hook).
const POSTGRES: &[Parameter] = &[
    required(param("host", Host, Text, "server host name")),
    param("database", Schema, Text, "database to connect to"),
    required(param("user", Login, Text, "database user")),
    secret(param(
        "password",
        Password,
        Text,
        "password of the database user",
    )),
    param("port", Port, Integer, "port, 5432 by default"),
    pattern(
        param("sslmode", Extra("sslmode"), Text, "libpq sslmode"),
        "disable|allow|prefer|require|verify-ca|verify-full",
    ),
    param(
        "sslrootcert",
        Extra("sslrootcert"),
        Text,
        "path of the CA certificate on the workers",
    ),
    param(
        "sslcert",
        Extra("sslcert"),
        Text,
        "path of the client certificate on the workers",
    ),
    param(
        "sslkey",
        Extra("sslkey"),
        Text,
        "path of the client key on the workers",
    ),
    param(
        "application_name",
        Extra("application_name"),
        Text,
        "application name reported to the server",
    ),
    param(
        "connect_timeout",
        Extra("connect_timeout"),
        Integer,
        "seconds to wait for a connection",
    ),
    pattern(
        param("cursor", Extra("cursor"), Text, "cursor class"),
        // The hook lower-cases the name before looking it up.
        "(?i:dictcursor|realdictcursor|namedtuplecursor)",
    ),
    param(
        "iam",
        Extra("iam"),
        Boolean,
        "authenticate with AWS IAM (RDS)",
    ),
    param(
        "aws_conn_id",
        Extra("aws_conn_id"),
        Text,
        "AWS connection used for IAM authentication",
    ),
];

// apache-airflow-providers-google 22.8.0, common/hooks/base_google.py
// (GoogleBaseHook: conn_type "google_cloud_platform"; extras read through
// get_field with or without the extra__google_cloud_platform__ prefix;
// keyfile_dict may be a JSON object or a string holding one; project matches
// _GCP_PROJECT_ID_PATTERN). BigQuery operators use it through gcp_conn_id.
// cloud/hooks/bigquery.py's BigQueryHook declares conn_type "gcpbigquery"
// for its own form, but reads the same extras plus location, use_legacy_sql,
// priority and labels from any connection, so the common type serves both.
const BIGQUERY: &[Parameter] = &[
    required(pattern(
        param("project", Extra("project"), Text, "Google Cloud project id"),
        r"[a-z][-a-z0-9]{4,28}[a-z0-9]",
    )),
    secret(param(
        "keyfile_dict",
        Extra("keyfile_dict"),
        Json,
        "service account key JSON",
    )),
    param(
        "key_path",
        Extra("key_path"),
        Text,
        "path of a service account key file on the workers",
    ),
    param(
        "scope",
        Extra("scope"),
        Text,
        "comma-separated OAuth scopes",
    ),
    param(
        "num_retries",
        Extra("num_retries"),
        Integer,
        "retries of Google API calls",
    ),
    param(
        "impersonation_chain",
        Extra("impersonation_chain"),
        Text,
        "service account to impersonate (comma-separated for a chain)",
    ),
    param(
        "location",
        Extra("location"),
        Text,
        "default BigQuery location, e.g. US or europe-west1",
    ),
    param(
        "use_legacy_sql",
        Extra("use_legacy_sql"),
        Boolean,
        "use legacy SQL; the hook defaults to true with a deprecation warning",
    ),
    pattern(
        param(
            "priority",
            Extra("priority"),
            Text,
            "query priority, INTERACTIVE by default",
        ),
        "INTERACTIVE|BATCH",
    ),
    param(
        "labels",
        Extra("labels"),
        Json,
        "labels added to BigQuery jobs",
    ),
];

// apache-airflow-providers-snowflake 6.20.0, hooks/snowflake.py (conn_type
// "snowflake"; host and port hidden; extras read through _get_field, with or
// without the extra__snowflake__ prefix, which Switchboard never writes;
// get_private_key reads private_key_file or private_key_content and uses the
// password as the key's passphrase: there is no private_key_passphrase extra;
// private_key_content is PEM or base64-encoded PEM; account and region must
// match _ACCOUNT_COMPONENT_PATTERN, as they end up in URLs).
const SNOWFLAKE_PASSWORD: &[Parameter] = &[
    required(pattern(
        param(
            "account",
            Extra("account"),
            Text,
            "account identifier, e.g. myorg-myaccount",
        ),
        SNOWFLAKE_ACCOUNT,
    )),
    required(param("user", Login, Text, "Snowflake user")),
    required(secret(param(
        "password",
        Password,
        Text,
        "password of the Snowflake user",
    ))),
    pattern(
        param("warehouse", Extra("warehouse"), Text, "virtual warehouse"),
        SNOWFLAKE_OBJECT,
    ),
    pattern(
        param("database", Extra("database"), Text, "database"),
        SNOWFLAKE_OBJECT,
    ),
    param("schema", Schema, Text, "schema"),
    pattern(param("role", Extra("role"), Text, "role"), SNOWFLAKE_OBJECT),
    pattern(
        param(
            "region",
            Extra("region"),
            Text,
            "region, for legacy account locators",
        ),
        SNOWFLAKE_REGION,
    ),
    param(
        "authenticator",
        Extra("authenticator"),
        Text,
        "authenticator, snowflake by default",
    ),
    param(
        "insecure_mode",
        Extra("insecure_mode"),
        Boolean,
        "turn off OCSP certificate checks",
    ),
    param(
        "session_parameters",
        Extra("session_parameters"),
        Json,
        "session parameters",
    ),
];

const SNOWFLAKE_PRIVATE_KEY: &[Parameter] = &[
    required(pattern(
        param(
            "account",
            Extra("account"),
            Text,
            "account identifier, e.g. myorg-myaccount",
        ),
        SNOWFLAKE_ACCOUNT,
    )),
    required(param("user", Login, Text, "Snowflake user")),
    required(secret(param(
        "private_key_content",
        Extra("private_key_content"),
        Text,
        "private key, PEM or base64-encoded PEM",
    ))),
    secret(param(
        "private_key_passphrase",
        Password,
        Text,
        "passphrase of an encrypted private key",
    )),
    pattern(
        param("warehouse", Extra("warehouse"), Text, "virtual warehouse"),
        SNOWFLAKE_OBJECT,
    ),
    pattern(
        param("database", Extra("database"), Text, "database"),
        SNOWFLAKE_OBJECT,
    ),
    param("schema", Schema, Text, "schema"),
    pattern(param("role", Extra("role"), Text, "role"), SNOWFLAKE_OBJECT),
    pattern(
        param(
            "region",
            Extra("region"),
            Text,
            "region, for legacy account locators",
        ),
        SNOWFLAKE_REGION,
    ),
    param(
        "session_parameters",
        Extra("session_parameters"),
        Json,
        "session parameters",
    ),
];

const CATALOG: &[ConnectionType] = &[
    ConnectionType {
        key: "aws_redshift",
        display_name: "AWS Redshift",
        conn_type: "redshift",
        provider_package: "apache-airflow-providers-amazon",
        default_port: Some(5439),
        parameters: REDSHIFT,
    },
    ConnectionType {
        key: "databricks",
        display_name: "Databricks",
        conn_type: "databricks",
        provider_package: "apache-airflow-providers-databricks",
        default_port: None,
        parameters: DATABRICKS,
    },
    ConnectionType {
        key: "fivetran",
        display_name: "Fivetran",
        conn_type: "Fivetran",
        provider_package: "airflow-provider-fivetran-async",
        default_port: None,
        parameters: FIVETRAN,
    },
    ConnectionType {
        key: "postgres",
        display_name: "Postgres",
        conn_type: "postgres",
        provider_package: "apache-airflow-providers-postgres",
        default_port: Some(5432),
        parameters: POSTGRES,
    },
    ConnectionType {
        key: "bigquery",
        display_name: "BigQuery",
        conn_type: "google_cloud_platform",
        provider_package: "apache-airflow-providers-google",
        default_port: None,
        parameters: BIGQUERY,
    },
    ConnectionType {
        key: "snowflake_private_key",
        display_name: "Snowflake (private key)",
        conn_type: "snowflake",
        provider_package: "apache-airflow-providers-snowflake",
        default_port: None,
        parameters: SNOWFLAKE_PRIVATE_KEY,
    },
    ConnectionType {
        key: "snowflake_password",
        display_name: "Snowflake (username and password)",
        conn_type: "snowflake",
        provider_package: "apache-airflow-providers-snowflake",
        default_port: None,
        parameters: SNOWFLAKE_PASSWORD,
    },
    ConnectionType {
        key: "generic",
        display_name: "Generic",
        conn_type: "",
        provider_package: "",
        default_port: None,
        parameters: &[],
    },
];

/// Parts of extra key names Airflow's secrets masker treats as sensitive
/// (`DEFAULT_SENSITIVE_FIELDS`); matched as substrings of the lower-cased key,
/// at any depth of `extra` (see [`crate::sensitive`]).
pub const SENSITIVE_NAMES: &[&str] = &[
    "access_token",
    "api_key",
    "apikey",
    "authorization",
    "passphrase",
    "passwd",
    "password",
    "private_key",
    "secret",
    "token",
    "keyfile_dict",
    "service_account",
];

/// Every catalog entry, in display order.
pub fn all() -> &'static [ConnectionType] {
    CATALOG
}

/// The entry with catalog key `key`.
pub fn get(key: &str) -> Option<&'static ConnectionType> {
    CATALOG.iter().find(|entry| entry.key == key)
}

/// The parameter of `type_key` stored at `path`, if the catalog lists one.
pub fn parameter(type_key: &str, path: &str) -> Option<&'static Parameter> {
    get(type_key)?
        .parameters
        .iter()
        .find(|parameter| parameter.field.path() == path)
}

/// Whether the field at `path` (`password`, `extra.<key>`, …) of a connection
/// of type `type_key` is secret.
pub fn is_secret(type_key: &str, path: &str) -> bool {
    if path == "password" {
        return true;
    }
    if let Some(parameter) = parameter(type_key, path) {
        return parameter.secret;
    }
    path.strip_prefix("extra.")
        .is_some_and(crate::sensitive::is_sensitive_name)
}

/// The top-level extra keys of a `type_key` connection that its catalog
/// entry does not list, as `extra.<key>` paths, sorted. They are stored and
/// delivered like any other (providers read more keys than the catalog
/// lists), but a near miss such as `warehose` is most often a typo, so the
/// API reports them for clients to warn about. `generic` and unknown types
/// list no parameters to compare with and report none.
///
/// `public_extra` is the extra without its secrets; `secret_fields` the
/// `secret_fields_set` paths, whose top-level secret keys count too.
pub fn unknown_extra_keys(
    type_key: &str,
    public_extra: &crate::Extra,
    secret_fields: &[String],
) -> Vec<String> {
    let Some(entry) = get(type_key).filter(|entry| !entry.parameters.is_empty()) else {
        return Vec::new();
    };
    let listed = |key: &str| {
        entry
            .parameters
            .iter()
            .any(|parameter| parameter_key(parameter) == Some(key))
    };
    // A secret below the top level keeps its parent key in the public part,
    // so a secret path whose head is no public key is a top-level key itself.
    let secret_keys = secret_fields
        .iter()
        .filter_map(|path| path.strip_prefix("extra."))
        .filter(|rest| {
            !public_extra.keys().any(|key| {
                rest.strip_prefix(key.as_str())
                    .is_some_and(|tail| tail.is_empty() || tail.starts_with(['.', '[']))
            })
        });
    let mut unknown: Vec<String> = public_extra
        .keys()
        .map(String::as_str)
        .chain(secret_keys)
        .filter(|key| !listed(key))
        .map(|key| format!("extra.{key}"))
        .collect();
    unknown.sort();
    unknown.dedup();
    unknown
}

fn parameter_key(parameter: &Parameter) -> Option<&'static str> {
    match parameter.field {
        Field::Extra(key) => Some(key),
        _ => None,
    }
}

/// The provider package that supplies a hook for Airflow `conn_type`, if known.
pub fn provider_for_conn_type(conn_type: &str) -> Option<&'static str> {
    CATALOG
        .iter()
        .find(|entry| !entry.conn_type.is_empty() && entry.conn_type == conn_type)
        .map(|entry| entry.provider_package)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn has_the_eight_seed_types_with_unique_keys() {
        let keys: Vec<&str> = all().iter().map(|entry| entry.key).collect();
        assert_eq!(
            keys,
            [
                "aws_redshift",
                "databricks",
                "fivetran",
                "postgres",
                "bigquery",
                "snowflake_private_key",
                "snowflake_password",
                "generic"
            ]
        );
    }

    #[test]
    fn unknown_extra_keys_are_top_level_keys_the_type_does_not_list() {
        let extra: crate::Extra = serde_json::from_value(serde_json::json!({
            "account": "xy12345",
            "warehose": "WH",
            "session_kwargs": {"token": "masked away"},
        }))
        .unwrap();
        let secrets = [
            "extra.private_key_contnet".to_owned(),
            "extra.session_kwargs.token".to_owned(),
            "password".to_owned(),
        ];
        assert_eq!(
            unknown_extra_keys("snowflake_private_key", &extra, &secrets),
            [
                "extra.private_key_contnet",
                "extra.session_kwargs",
                "extra.warehose"
            ]
        );
        assert!(unknown_extra_keys("generic", &extra, &secrets).is_empty());
        assert!(unknown_extra_keys("no_such_type", &extra, &secrets).is_empty());
        let listed: crate::Extra =
            serde_json::from_value(serde_json::json!({"account": "a", "warehouse": "w"})).unwrap();
        assert!(unknown_extra_keys("snowflake_password", &listed, &[]).is_empty());
    }

    #[test]
    fn every_pattern_compiles_and_parameter_paths_are_unique() {
        for entry in all() {
            let mut paths: Vec<String> = entry.parameters.iter().map(|p| p.field.path()).collect();
            let count = paths.len();
            paths.sort();
            paths.dedup();
            assert_eq!(paths.len(), count, "{}", entry.key);
            for parameter in entry.parameters {
                if let Some(pattern) = parameter.pattern {
                    regex::Regex::new(&format!("^(?:{pattern})$")).unwrap();
                }
            }
        }
    }

    #[test]
    fn secrets_follow_the_catalog_then_airflow_sensitive_names() {
        assert!(is_secret("postgres", "password"));
        assert!(is_secret(
            "snowflake_private_key",
            "extra.private_key_content"
        ));
        assert!(is_secret("bigquery", "extra.keyfile_dict"));
        assert!(!is_secret("snowflake_password", "extra.warehouse"));
        assert!(is_secret("generic", "extra.API_KEY"));
        assert!(is_secret("generic", "extra.client_secret"));
        assert!(!is_secret("generic", "extra.region"));
        assert!(!is_secret("generic", "host"));
    }

    #[test]
    fn provider_packages_by_conn_type() {
        assert_eq!(
            provider_for_conn_type("Fivetran"),
            Some("airflow-provider-fivetran-async")
        );
        assert_eq!(
            provider_for_conn_type("redshift"),
            Some("apache-airflow-providers-amazon")
        );
        assert_eq!(provider_for_conn_type("http"), None);
    }
}
