//! The connection model: base fields, link overrides, secret splitting and the merge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Airflow extra keys and their JSON values.
pub type Extra = serde_json::Map<String, Value>;

/// Secret values keyed by field path: `password` or `extra.<key>`.
pub type SecretValues = BTreeMap<String, Value>;

/// A connection's fields. Empty strings are normalized to `None`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConnectionSpec {
    /// Catalog key, e.g. `snowflake_password`.
    pub type_key: String,
    /// Airflow's conn_type, e.g. `snowflake`.
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i32>,
    pub extra: Extra,
}

/// A link's overrides. `None` keeps the base value; an extra key mapped to
/// `Value::Null` removes that key from the merged extra.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Overrides {
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i32>,
    pub extra: Extra,
}

/// A deployment's effective connection, as Airflow receives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EffectiveConnection {
    pub conn_id: String,
    pub conn_type: String,
    pub description: Option<String>,
    pub host: Option<String>,
    pub schema: Option<String>,
    pub login: Option<String>,
    pub password: Option<String>,
    pub port: Option<i32>,
    pub extra: Extra,
}

impl ConnectionSpec {
    /// Turns empty strings into `None`, so "unset" has one spelling.
    pub fn normalized(self) -> Self {
        todo!("domain helper")
    }

    /// Splits out the secret fields (password and every field the catalog, or
    /// for unknown extra keys Airflow's sensitive-name list, marks secret).
    /// Returns the spec without them and the secret values by path.
    pub fn split_secrets(&self) -> (ConnectionSpec, SecretValues) {
        todo!("domain helper")
    }

    /// Puts secret values (as returned by `split_secrets`) back.
    pub fn with_secrets(self, secrets: &SecretValues) -> Self {
        let _ = secrets;
        todo!("domain helper")
    }

    /// Paths of the secret fields that hold a value, sorted: `password`, `extra.<key>`.
    pub fn secret_fields_set(&self) -> Vec<String> {
        todo!("domain helper")
    }
}

impl Overrides {
    /// Like [`ConnectionSpec::split_secrets`], with `type_key` naming the connection's type.
    pub fn split_secrets(&self, type_key: &str) -> (Overrides, SecretValues) {
        let _ = type_key;
        todo!("domain helper")
    }

    /// Puts secret values back.
    pub fn with_secrets(self, secrets: &SecretValues) -> Self {
        let _ = secrets;
        todo!("domain helper")
    }

    /// Paths of the secret overrides that hold a value.
    pub fn secret_fields_set(&self, type_key: &str) -> Vec<String> {
        let _ = type_key;
        todo!("domain helper")
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        todo!("domain helper")
    }
}

/// Merges `base` with override layers applied in order (parent link, then own
/// link): set fields replace, extras merge key by key, a `null` extra removes the key.
pub fn merge(base: &ConnectionSpec, layers: &[&Overrides]) -> ConnectionSpec {
    let _ = (base, layers);
    todo!("domain helper")
}

impl EffectiveConnection {
    /// Builds what Airflow receives for `conn_id` from a merged spec.
    pub fn from_spec(conn_id: &str, spec: ConnectionSpec) -> Self {
        let _ = (conn_id, spec);
        todo!("domain helper")
    }
}
