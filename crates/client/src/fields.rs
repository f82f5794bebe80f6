//! Field assignments (`--set FIELD=VALUE`, `--unset FIELD`, `--set-secret`,
//! files) collected into a [`Draft`]: a map from field path (`host`,
//! `extra.warehouse`) to its new value, from which the connection or link
//! overrides and the update mask are built. Values are typed by the catalog
//! (integers, booleans, JSON), and secret fields are refused from argv.

use std::collections::BTreeMap;

use serde_json::{Map, Value};
use switchboard_domain::field_paths::{CONNECTION_FIELDS, OVERRIDE_FIELDS, snake_case};
use switchboard_proto::convert::json_to_struct;
use switchboard_proto::v1 as pb;

use crate::error::usage;
use crate::input::SecretSource;

/// What a command may assign to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Target {
    Connection,
    LinkOverrides,
}

impl Target {
    fn fields(self) -> &'static [&'static str] {
        match self {
            Self::Connection => CONNECTION_FIELDS,
            Self::LinkOverrides => OVERRIDE_FIELDS,
        }
    }
}

/// A field's new value, or its removal.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Change {
    Set(Value),
    Unset,
}

/// Normalizes a field path: `connType` → `conn_type`, `extra.key` kept.
pub(crate) fn normalize_path(target: Target, path: &str) -> anyhow::Result<String> {
    let path = path.trim();
    if let Some(key) = path.strip_prefix("extra.") {
        if key.is_empty() {
            usage!("'{path}': name the extra key, e.g. extra.warehouse");
        }
        return Ok(path.to_owned());
    }
    let field = snake_case(path);
    if target.fields().contains(&field.as_str()) {
        return Ok(field);
    }
    usage!(
        "unknown field '{path}'; use {} or extra.<key>",
        target.fields().join(", ")
    )
}

/// The catalog parameter for a field path of `connection_type`.
pub(crate) fn parameter<'a>(
    connection_type: Option<&'a pb::ConnectionType>,
    path: &str,
) -> Option<&'a pb::ConnectionTypeParameter> {
    connection_type?
        .parameters
        .iter()
        .find(|parameter| parameter.field == path)
}

/// Whether a field holds a secret: `password` always, extra keys when the
/// catalog says so.
pub(crate) fn is_secret(connection_type: Option<&pb::ConnectionType>, path: &str) -> bool {
    path == "password" || parameter(connection_type, path).is_some_and(|parameter| parameter.secret)
}

/// Converts text typed for `path` into its JSON value.
pub(crate) fn parse_value(
    connection_type: Option<&pb::ConnectionType>,
    path: &str,
    raw: &str,
) -> anyhow::Result<Value> {
    let data_type = match path {
        "port" => pb::ParameterDataType::Integer,
        "link_to_all_deployments" => pb::ParameterDataType::Boolean,
        _ => parameter(connection_type, path)
            .map(|parameter| parameter.data_type())
            .unwrap_or(pb::ParameterDataType::String),
    };
    match data_type {
        pb::ParameterDataType::Integer => match raw.trim().parse::<i64>() {
            Ok(number) => Ok(Value::from(number)),
            Err(_) => usage!("{path}: '{raw}' is not a whole number"),
        },
        pb::ParameterDataType::Boolean => match raw.trim().to_ascii_lowercase().as_str() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => usage!("{path}: '{raw}' is not true or false"),
        },
        pb::ParameterDataType::Json => match serde_json::from_str::<Value>(raw) {
            Ok(value) => Ok(value),
            Err(err) => usage!("{path}: not valid JSON ({err})"),
        },
        pb::ParameterDataType::String | pb::ParameterDataType::Unspecified => {
            Ok(Value::String(raw.to_owned()))
        }
    }
}

/// New field values, keyed by normalized path.
#[derive(Debug, Clone, Default)]
pub(crate) struct Draft {
    changes: BTreeMap<String, Change>,
}

impl Draft {
    pub(crate) fn is_empty(&self) -> bool {
        self.changes.is_empty()
    }

    pub(crate) fn get(&self, path: &str) -> Option<&Value> {
        match self.changes.get(path) {
            Some(Change::Set(value)) => Some(value),
            _ => None,
        }
    }

    pub(crate) fn set(&mut self, path: impl Into<String>, value: Value) {
        self.changes.insert(path.into(), Change::Set(value));
    }

    pub(crate) fn unset(&mut self, path: impl Into<String>) {
        self.changes.insert(path.into(), Change::Unset);
    }

    /// Applies `--set FIELD=VALUE` arguments; secret fields are refused.
    pub(crate) fn apply_sets(
        &mut self,
        target: Target,
        connection_type: Option<&pb::ConnectionType>,
        assignments: &[String],
    ) -> anyhow::Result<()> {
        for assignment in assignments {
            let Some((path, raw)) = assignment.split_once('=') else {
                usage!("--set '{assignment}' must be FIELD=VALUE, e.g. extra.warehouse=WH");
            };
            let path = normalize_path(target, path)?;
            if is_secret(connection_type, &path) {
                usage!(
                    "--set {path}: {path} is secret, and secret values are never taken from the \
                     command line; use --set-secret {path}=@FILE, --set-secret {path}=- \
                     (standard input) or --set-secret {path} (prompt)"
                );
            }
            let value = parse_value(connection_type, &path, raw)?;
            self.set(path, value);
        }
        Ok(())
    }

    /// Applies `--unset FIELD` arguments.
    pub(crate) fn apply_unsets(&mut self, target: Target, paths: &[String]) -> anyhow::Result<()> {
        for path in paths {
            let path = if path == "extra" && target == Target::Connection {
                "extra".to_owned()
            } else {
                normalize_path(target, path)?
            };
            self.unset(path);
        }
        Ok(())
    }

    /// Applies `--set-secret FIELD[=@FILE|-]`, `--password-file` and
    /// `--password-stdin`, reading each secret.
    pub(crate) fn apply_secrets(
        &mut self,
        target: Target,
        secrets: &SecretOpt,
    ) -> anyhow::Result<()> {
        for (path, source) in secrets.sources(target)? {
            let value = source.read(&path)?;
            if value.is_empty() {
                usage!("the secret for {path} is empty");
            }
            self.set(path, Value::String(value));
        }
        Ok(())
    }

    /// Adds every field of a document (a file's mapping) that the draft
    /// does not set yet; flags win over files.
    pub(crate) fn merge_document(
        &mut self,
        target: Target,
        document: &Map<String, Value>,
    ) -> anyhow::Result<()> {
        for (key, value) in document {
            let field = snake_case(key);
            if field == "extra" {
                match value {
                    Value::Object(extra) => {
                        for (extra_key, extra_value) in extra {
                            let path = format!("extra.{extra_key}");
                            self.changes
                                .entry(path)
                                .or_insert_with(|| Change::Set(extra_value.clone()));
                        }
                    }
                    Value::Null => {}
                    _ => usage!("extra must be a mapping of keys to values"),
                }
                continue;
            }
            let path = normalize_path(target, &field)?;
            let value = match (path.as_str(), value) {
                ("port", Value::String(text)) => parse_value(None, "port", text)?,
                (_, Value::Number(number)) if path != "port" && !path.starts_with("extra.") => {
                    Value::String(number.to_string())
                }
                _ => value.clone(),
            };
            self.changes.entry(path).or_insert(Change::Set(value));
        }
        Ok(())
    }

    /// The mask paths, prefixed (e.g. `overrides.`).
    pub(crate) fn mask_paths(&self, prefix: &str) -> Vec<String> {
        self.changes
            .keys()
            .map(|path| format!("{prefix}{path}"))
            .collect()
    }

    /// Fields the catalog requires that the draft leaves empty.
    pub(crate) fn missing_required<'a>(
        &self,
        connection_type: &'a pb::ConnectionType,
    ) -> Vec<&'a pb::ConnectionTypeParameter> {
        connection_type
            .parameters
            .iter()
            .filter(|parameter| parameter.required)
            .filter(
                |parameter| !matches!(self.get(&parameter.field), Some(value) if !is_blank(value)),
            )
            .collect()
    }

    /// The connection message the draft describes.
    pub(crate) fn to_connection(&self) -> anyhow::Result<pb::Connection> {
        let mut connection = pb::Connection::default();
        let mut extra = Map::new();
        for (path, change) in &self.changes {
            let value = match change {
                Change::Set(value) => value,
                Change::Unset => continue,
            };
            if let Some(key) = path.strip_prefix("extra.") {
                extra.insert(key.to_owned(), value.clone());
                continue;
            }
            match path.as_str() {
                "type" => connection.r#type = text(path, value)?,
                "conn_type" => connection.conn_type = text(path, value)?,
                "description" => connection.description = text(path, value)?,
                "host" => connection.host = text(path, value)?,
                "schema" => connection.schema = text(path, value)?,
                "login" => connection.login = text(path, value)?,
                "password" => connection.password = text(path, value)?,
                "port" => connection.port = port(value)?,
                "link_to_all_deployments" => match value {
                    Value::Bool(flag) => connection.link_to_all_deployments = *flag,
                    _ => usage!("link_to_all_deployments must be true or false"),
                },
                "excluded_deployments" => connection.excluded_deployments = strings(path, value)?,
                other => usage!("'{other}' is not a connection field"),
            }
        }
        connection.extra = (!extra.is_empty()).then(|| json_to_struct(&extra));
        Ok(connection)
    }

    /// The link overrides the draft describes.
    pub(crate) fn to_overrides(&self) -> anyhow::Result<pb::LinkOverrides> {
        let mut overrides = pb::LinkOverrides::default();
        let mut extra = Map::new();
        for (path, change) in &self.changes {
            let value = match change {
                Change::Set(value) => value,
                Change::Unset => continue,
            };
            if let Some(key) = path.strip_prefix("extra.") {
                extra.insert(key.to_owned(), value.clone());
                continue;
            }
            match path.as_str() {
                "host" => overrides.host = Some(text(path, value)?),
                "schema" => overrides.schema = Some(text(path, value)?),
                "login" => overrides.login = Some(text(path, value)?),
                "password" => overrides.password = Some(text(path, value)?),
                "port" => overrides.port = Some(port(value)?),
                other => usage!("'{other}' cannot be overridden by a link"),
            }
        }
        overrides.extra = (!extra.is_empty()).then(|| json_to_struct(&extra));
        Ok(overrides)
    }
}

fn is_blank(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(text) => text.is_empty(),
        _ => false,
    }
}

fn text(path: &str, value: &Value) -> anyhow::Result<String> {
    match value {
        Value::String(text) => Ok(text.clone()),
        Value::Null => Ok(String::new()),
        Value::Number(number) => Ok(number.to_string()),
        Value::Bool(flag) => Ok(flag.to_string()),
        _ => usage!("{path} must be text"),
    }
}

fn port(value: &Value) -> anyhow::Result<i32> {
    match value.as_i64().map(i32::try_from) {
        Some(Ok(port)) => Ok(port),
        _ => usage!("port must be a whole number, not {value}"),
    }
}

fn strings(path: &str, value: &Value) -> anyhow::Result<Vec<String>> {
    match value {
        Value::Array(items) => items.iter().map(|item| text(path, item)).collect(),
        Value::String(text) => Ok(text
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(str::to_owned)
            .collect()),
        Value::Null => Ok(Vec::new()),
        _ => usage!("{path} must be a list"),
    }
}

/// Options that supply secret values without putting them in argv.
#[derive(Debug, Clone, Default, clap::Args)]
pub(crate) struct SecretOpt {
    /// Reads the password from standard input (e.g. from a secret manager's CLI).
    #[arg(long, conflicts_with = "password_file")]
    pub(crate) password_stdin: bool,
    /// Reads the password from a file (its trailing line break is dropped).
    #[arg(long, value_name = "FILE")]
    pub(crate) password_file: Option<std::path::PathBuf>,
    /// Sets a secret field from a file (FIELD=@FILE), standard input (FIELD=-)
    /// or a prompt without echo (FIELD alone), e.g.
    /// extra.private_key_content=@rsa_key.p8. Repeatable.
    #[arg(long = "set-secret", value_name = "FIELD[=@FILE|=-]")]
    pub(crate) set_secret: Vec<String>,
}

impl SecretOpt {
    /// Each secret field and where its value comes from.
    pub(crate) fn sources(&self, target: Target) -> anyhow::Result<Vec<(String, SecretSource)>> {
        let mut sources = Vec::new();
        if self.password_stdin {
            sources.push(("password".to_owned(), SecretSource::Stdin));
        }
        if let Some(path) = &self.password_file {
            sources.push(("password".to_owned(), SecretSource::File(path.clone())));
        }
        for spec in &self.set_secret {
            let (path, source) = match spec.split_once('=') {
                Some((path, source)) => (path, Some(source)),
                None => (spec.as_str(), None),
            };
            let path = normalize_path(target, path)?;
            let source = SecretSource::parse(&path, source)?;
            if sources.iter().any(|(existing, _)| *existing == path) {
                usage!("{path} is given more than once");
            }
            sources.push((path, source));
        }
        Ok(sources)
    }

    /// Whether any secret is read from standard input.
    pub(crate) fn reads_stdin(&self) -> bool {
        self.password_stdin
            || self.set_secret.iter().any(|spec| {
                spec.split_once('=')
                    .is_some_and(|(_, source)| source == "-")
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snowflake() -> pb::ConnectionType {
        let parameter = |field: &str, secret: bool, data_type: pb::ParameterDataType| {
            pb::ConnectionTypeParameter {
                name: field.into(),
                field: field.into(),
                required: true,
                secret,
                data_type: data_type.into(),
                ..Default::default()
            }
        };
        pb::ConnectionType {
            r#type: "snowflake_private_key".into(),
            parameters: vec![
                parameter("extra.account", false, pb::ParameterDataType::String),
                parameter(
                    "extra.private_key_content",
                    true,
                    pb::ParameterDataType::String,
                ),
                parameter("extra.insecure_mode", false, pb::ParameterDataType::Boolean),
            ],
            ..Default::default()
        }
    }

    #[test]
    fn sets_are_typed_by_the_catalog_and_refuse_secrets() {
        let catalog = snowflake();
        let mut draft = Draft::default();
        draft
            .apply_sets(
                Target::Connection,
                Some(&catalog),
                &["port=443".into(), "extra.insecure_mode=true".into()],
            )
            .expect("sets");
        assert_eq!(draft.get("port"), Some(&Value::from(443)));
        assert_eq!(draft.get("extra.insecure_mode"), Some(&Value::Bool(true)));
        let refused = draft
            .apply_sets(
                Target::Connection,
                Some(&catalog),
                &["extra.private_key_content=KEY".into()],
            )
            .expect_err("secret from argv");
        assert!(
            refused
                .to_string()
                .contains("never taken from the command line")
        );
        assert!(
            draft
                .apply_sets(Target::Connection, None, &["password=x".into()])
                .is_err()
        );
        assert!(
            draft
                .apply_sets(Target::Connection, None, &["nonsense=x".into()])
                .is_err()
        );
    }

    #[test]
    fn drafts_build_messages_and_masks() {
        let mut draft = Draft::default();
        draft
            .apply_sets(
                Target::LinkOverrides,
                None,
                &["schema=PROD".into(), "extra.warehouse=WH".into()],
            )
            .expect("sets");
        draft
            .apply_unsets(Target::LinkOverrides, &["extra.role".into()])
            .expect("unsets");
        let overrides = draft.to_overrides().expect("overrides");
        assert_eq!(overrides.schema.as_deref(), Some("PROD"));
        let extra = switchboard_proto::convert::struct_to_json(overrides.extra.as_ref());
        assert_eq!(extra.get("warehouse"), Some(&Value::from("WH")));
        assert!(!extra.contains_key("role"));
        assert_eq!(
            draft.mask_paths("overrides."),
            [
                "overrides.extra.role",
                "overrides.extra.warehouse",
                "overrides.schema"
            ]
        );
    }

    #[test]
    fn documents_fill_what_flags_left_and_accept_camel_case() {
        let document: Map<String, Value> = serde_json::from_str(
            r#"{"type":"postgres","host":"file-host","port":"5432","linkToAllDeployments":true,
                "extra":{"sslmode":"require"}}"#,
        )
        .expect("json");
        let mut draft = Draft::default();
        draft.set("host", Value::from("flag-host"));
        draft
            .merge_document(Target::Connection, &document)
            .expect("merge");
        let connection = draft.to_connection().expect("connection");
        assert_eq!(connection.host, "flag-host");
        assert_eq!(connection.port, 5432);
        assert!(connection.link_to_all_deployments);
        let mut bad = Map::new();
        bad.insert("hots".into(), Value::from("x"));
        assert!(
            Draft::default()
                .merge_document(Target::Connection, &bad)
                .is_err()
        );
    }

    #[test]
    fn missing_required_parameters_are_listed() {
        let catalog = snowflake();
        let mut draft = Draft::default();
        draft.set("extra.account", Value::from("xy"));
        let missing: Vec<&str> = draft
            .missing_required(&catalog)
            .iter()
            .map(|parameter| parameter.field.as_str())
            .collect();
        assert_eq!(
            missing,
            ["extra.private_key_content", "extra.insecure_mode"]
        );
    }
}
