//! The connection model: base fields, link overrides, secret splitting and the merge.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::sensitive::{self, restore_extra, split_extra};

/// Airflow extra keys and their JSON values.
pub type Extra = serde_json::Map<String, Value>;

/// Secret values keyed by storage key: `password`, `extra.<key>` for a
/// top-level extra key, `extra/<JSON pointer>` below it (see
/// [`sensitive::SecretPath::storage_key`]).
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

fn string_secret(value: Option<&Value>) -> Option<String> {
    match value {
        Some(Value::String(text)) => Some(text.clone()),
        Some(other) => Some(other.to_string()),
        None => None,
    }
}

fn secret_paths(type_key: &str, password: bool, extra: &Extra) -> Vec<String> {
    let mut paths = sensitive::secret_paths(type_key, extra);
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

    /// Splits out the secret fields (password, every field the catalog marks
    /// secret, and at any depth of `extra` every key Airflow's sensitive-name
    /// list matches).
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

    /// Paths of the secret fields that hold a value, sorted: `password`,
    /// `extra.<key>`, `extra.<key>.<nested key>`, `extra.<key>[<index>].<key>`.
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

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn object(value: Value) -> Extra {
        value.as_object().cloned().unwrap_or_default()
    }

    fn snowflake_key() -> ConnectionSpec {
        ConnectionSpec {
            type_key: "snowflake_private_key".into(),
            conn_type: "snowflake".into(),
            login: Some("svc".into()),
            password: Some("passphrase".into()),
            extra: object(json!({
                "account": "myorg-acct",
                "private_key_content": "-----BEGIN PRIVATE KEY-----",
                "client_secret": "s",
                "warehouse": "WH"
            })),
            ..ConnectionSpec::default()
        }
    }

    #[test]
    fn normalized_spells_unset_one_way() {
        let spec = ConnectionSpec {
            host: Some(String::new()),
            schema: Some("s".into()),
            description: Some(String::new()),
            port: Some(0),
            ..ConnectionSpec::default()
        }
        .normalized();
        assert_eq!(spec.host, None);
        assert_eq!(spec.description, None);
        assert_eq!(spec.schema.as_deref(), Some("s"));
        assert_eq!(spec.port, None);
    }

    #[test]
    fn secrets_split_off_by_catalog_and_sensitive_names_and_come_back() {
        let spec = snowflake_key();
        let (public, secrets) = spec.split_secrets();
        assert_eq!(public.password, None);
        assert_eq!(
            public.extra.keys().collect::<Vec<_>>(),
            ["account", "warehouse"]
        );
        assert_eq!(
            secrets.keys().collect::<Vec<_>>(),
            [
                "extra.client_secret",
                "extra.private_key_content",
                "password"
            ]
        );
        assert_eq!(public.secret_fields_set(), Vec::<String>::new());
        assert_eq!(
            spec.secret_fields_set(),
            [
                "extra.client_secret",
                "extra.private_key_content",
                "password"
            ]
        );
        assert_eq!(public.with_secrets(&secrets), spec);
    }

    #[test]
    fn overrides_split_their_secrets_too() {
        let overrides = Overrides {
            password: Some("other".into()),
            extra: object(json!({"warehouse": "WH2", "private_key_content": "k", "role": null})),
            ..Overrides::default()
        };
        assert!(!overrides.is_empty());
        assert!(Overrides::default().is_empty());
        let (public, secrets) = overrides.split_secrets("snowflake_private_key");
        assert_eq!(public.password, None);
        assert_eq!(
            public.extra,
            object(json!({"warehouse": "WH2", "role": null}))
        );
        assert_eq!(
            overrides.secret_fields_set("snowflake_private_key"),
            ["extra.private_key_content", "password"]
        );
        assert_eq!(public.with_secrets(&secrets), overrides);
    }

    #[test]
    fn nested_secrets_are_listed_by_path_and_kept_out_of_the_public_part() {
        let spec = ConnectionSpec {
            type_key: "generic".into(),
            conn_type: "aws".into(),
            extra: object(json!({
                "region_name": "eu-west-1",
                "session_kwargs": {"aws_secret_access_key": "s", "profile_name": "p"}
            })),
            ..ConnectionSpec::default()
        };
        assert_eq!(
            spec.secret_fields_set(),
            ["extra.session_kwargs.aws_secret_access_key"]
        );
        let (public, secrets) = spec.split_secrets();
        assert_eq!(
            Value::Object(public.extra.clone()),
            json!({"region_name": "eu-west-1", "session_kwargs": {"profile_name": "p"}})
        );
        assert_eq!(
            secrets.get("extra/session_kwargs/aws_secret_access_key"),
            Some(&json!("s"))
        );
        assert_eq!(public.with_secrets(&secrets), spec);
    }

    #[test]
    fn an_override_of_a_top_level_key_replaces_its_nested_secrets_too() {
        let base = ConnectionSpec {
            type_key: "generic".into(),
            extra: object(json!({"headers": {"Authorization": "base", "Accept": "json"}})),
            ..ConnectionSpec::default()
        };
        let own = Overrides {
            extra: object(json!({"headers": {"Authorization": "own"}})),
            ..Overrides::default()
        };
        let merged = merge(&base, &[&own]);
        assert_eq!(
            Value::Object(merged.extra),
            json!({"headers": {"Authorization": "own"}})
        );
        assert_eq!(
            own.secret_fields_set("generic"),
            ["extra.headers.Authorization"]
        );
    }

    #[test]
    fn merge_applies_layers_in_order_and_null_removes_extra_keys() {
        let base = snowflake_key();
        let parent = Overrides {
            login: Some("parent".into()),
            extra: object(json!({"warehouse": "PARENT_WH", "role": "R"})),
            ..Overrides::default()
        };
        let own = Overrides {
            login: Some("own".into()),
            port: Some(443),
            extra: object(json!({"role": null, "database": "DB"})),
            ..Overrides::default()
        };
        let merged = merge(&base, &[&parent, &own]);
        assert_eq!(merged.login.as_deref(), Some("own"));
        assert_eq!(merged.port, Some(443));
        assert_eq!(merged.password, base.password);
        assert_eq!(merged.extra.get("warehouse"), Some(&json!("PARENT_WH")));
        assert_eq!(merged.extra.get("database"), Some(&json!("DB")));
        assert!(!merged.extra.contains_key("role"));
        assert_eq!(merged.extra.get("account"), Some(&json!("myorg-acct")));
        // Order matters: the parent applied last would win.
        let reversed = merge(&base, &[&own, &parent]);
        assert_eq!(reversed.login.as_deref(), Some("parent"));
        assert_eq!(reversed.extra.get("role"), Some(&json!("R")));
    }

    #[test]
    fn effective_connection_takes_the_specs_conn_type() {
        let spec = ConnectionSpec {
            type_key: "generic".into(),
            conn_type: "http_custom".into(),
            host: Some(String::new()),
            ..ConnectionSpec::default()
        };
        let effective = EffectiveConnection::from_spec("api", spec);
        assert_eq!(effective.conn_id, "api");
        assert_eq!(effective.conn_type, "http_custom");
        assert_eq!(effective.host, None);
    }
}
