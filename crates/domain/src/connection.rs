//! The connection model: base fields, link overrides, secret splitting and the merge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::catalog;

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

fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|text| !text.is_empty())
}

/// Moves secret extra keys of `extra` into `secrets` (keyed `extra.<key>`).
fn split_extra(type_key: &str, extra: &Extra, secrets: &mut SecretValues) -> Extra {
    let mut public = Extra::new();
    for (key, value) in extra {
        let path = format!("extra.{key}");
        if catalog::is_secret(type_key, &path) {
            secrets.insert(path, value.clone());
        } else {
            public.insert(key.clone(), value.clone());
        }
    }
    public
}

fn string_secret(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    }
}

fn restore_extra(extra: &mut Extra, secrets: &SecretValues) {
    for (path, value) in secrets {
        if let Some(key) = path.strip_prefix("extra.") {
            extra.insert(key.to_owned(), value.clone());
        }
    }
}

fn secret_paths(type_key: &str, password: bool, extra: &Extra) -> Vec<String> {
    let mut paths: Vec<String> = extra
        .keys()
        .map(|key| format!("extra.{key}"))
        .filter(|path| catalog::is_secret(type_key, path))
        .collect();
    if password {
        paths.push("password".to_owned());
    }
    paths.sort();
    paths
}

impl ConnectionSpec {
    /// Turns empty strings into `None`, so "unset" has one spelling.
    pub fn normalized(self) -> Self {
        Self {
            description: non_empty(self.description),
            host: non_empty(self.host),
            schema: non_empty(self.schema),
            login: non_empty(self.login),
            password: non_empty(self.password),
            port: self.port.filter(|port| *port != 0),
            ..self
        }
    }

    /// Splits out the secret fields (password and every field the catalog, or
    /// for unknown extra keys Airflow's sensitive-name list, marks secret).
    /// Returns the spec without them and the secret values by path.
    pub fn split_secrets(&self) -> (ConnectionSpec, SecretValues) {
        let mut secrets = SecretValues::new();
        if let Some(password) = &self.password {
            secrets.insert("password".to_owned(), Value::String(password.clone()));
        }
        let extra = split_extra(&self.type_key, &self.extra, &mut secrets);
        let public = ConnectionSpec {
            password: None,
            extra,
            ..self.clone()
        };
        (public, secrets)
    }

    /// Puts secret values (as returned by `split_secrets`) back.
    pub fn with_secrets(mut self, secrets: &SecretValues) -> Self {
        if let Some(password) = string_secret(secrets.get("password")) {
            self.password = Some(password);
        }
        restore_extra(&mut self.extra, secrets);
        self
    }

    /// Paths of the secret fields that hold a value, sorted: `password`, `extra.<key>`.
    pub fn secret_fields_set(&self) -> Vec<String> {
        secret_paths(&self.type_key, self.password.is_some(), &self.extra)
    }
}

impl Overrides {
    /// Like [`ConnectionSpec::split_secrets`], with `type_key` naming the connection's type.
    pub fn split_secrets(&self, type_key: &str) -> (Overrides, SecretValues) {
        let mut secrets = SecretValues::new();
        if let Some(password) = &self.password {
            secrets.insert("password".to_owned(), Value::String(password.clone()));
        }
        let extra = split_extra(type_key, &self.extra, &mut secrets);
        let public = Overrides {
            password: None,
            extra,
            ..self.clone()
        };
        (public, secrets)
    }

    /// Puts secret values back.
    pub fn with_secrets(mut self, secrets: &SecretValues) -> Self {
        if let Some(password) = string_secret(secrets.get("password")) {
            self.password = Some(password);
        }
        restore_extra(&mut self.extra, secrets);
        self
    }

    /// Paths of the secret overrides that hold a value.
    pub fn secret_fields_set(&self, type_key: &str) -> Vec<String> {
        secret_paths(type_key, self.password.is_some(), &self.extra)
    }

    /// True when nothing is overridden.
    pub fn is_empty(&self) -> bool {
        self.host.is_none()
            && self.schema.is_none()
            && self.login.is_none()
            && self.password.is_none()
            && self.port.is_none()
            && self.extra.is_empty()
    }
}

/// Merges `base` with override layers applied in order (parent link, then own
/// link): set fields replace, extras merge key by key, a `null` extra removes the key.
pub fn merge(base: &ConnectionSpec, layers: &[&Overrides]) -> ConnectionSpec {
    let mut merged = base.clone();
    for layer in layers {
        if let Some(host) = &layer.host {
            merged.host = Some(host.clone());
        }
        if let Some(schema) = &layer.schema {
            merged.schema = Some(schema.clone());
        }
        if let Some(login) = &layer.login {
            merged.login = Some(login.clone());
        }
        if let Some(password) = &layer.password {
            merged.password = Some(password.clone());
        }
        if let Some(port) = layer.port {
            merged.port = Some(port);
        }
        for (key, value) in &layer.extra {
            if value.is_null() {
                merged.extra.remove(key);
            } else {
                merged.extra.insert(key.clone(), value.clone());
            }
        }
    }
    merged.normalized()
}

impl EffectiveConnection {
    /// Builds what Airflow receives for `conn_id` from a merged spec.
    pub fn from_spec(conn_id: &str, spec: ConnectionSpec) -> Self {
        let spec = spec.normalized();
        Self {
            conn_id: conn_id.to_owned(),
            conn_type: spec.conn_type,
            description: spec.description,
            host: spec.host,
            schema: spec.schema,
            login: spec.login,
            password: spec.password,
            port: spec.port,
            extra: spec.extra,
        }
    }
}
