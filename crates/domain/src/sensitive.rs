//! The sensitive-key rule at any depth of `extra`, and how secret values are
//! split off a JSON tree and put back where they were.
//!
//! Airflow's secrets masker walks a connection's extra recursively: inside an
//! object, a key whose lower-cased name contains one of its sensitive names
//! hides the whole value under it; lists are walked item by item (an object in
//! a list has its keys checked the same way). Switchboard classifies the same
//! way, so a value Airflow would hide in its logs is also kept out of the
//! database and out of every read through control.
//!
//! A secret always sits under an object key (a list item is never a secret by
//! itself; a list under a sensitive key is secret as a whole). Its place is a
//! [`SecretPath`]: the keys and list indices from the extra's root. The public
//! part keeps every container, so the path still leads there when the value is
//! restored.

use serde_json::Value;

use crate::catalog;
use crate::connection::{Extra, SecretValues};

/// One step from a JSON container to a child.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Step {
    /// An object key.
    Key(String),
    /// A list index.
    Index(usize),
}

/// Where a secret sits inside `extra`: at least one step, the last a key.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct SecretPath(pub Vec<Step>);

/// Prefix of storage keys for values below the top level of `extra`. Top-level
/// keys keep the older `extra.<key>` spelling (stored secrets use it), and
/// since `extra.` and `extra/` differ in their fifth character, no key of one
/// form can be read as the other.
const NESTED_PREFIX: &str = "extra/";

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

fn unescape_pointer(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

impl SecretPath {
    /// The key the secret store files the value under: `extra.<key>` at the
    /// top level, else `extra/` and an RFC 6901 JSON pointer below the extra
    /// (`extra/session_kwargs/aws_secret_access_key`), which is unambiguous
    /// whatever the keys contain.
    pub fn storage_key(&self) -> String {
        match self.0.as_slice() {
            [Step::Key(key)] => format!("extra.{key}"),
            steps => {
                let segments: Vec<String> = steps
                    .iter()
                    .map(|step| match step {
                        Step::Key(key) => escape_pointer(key),
                        Step::Index(index) => index.to_string(),
                    })
                    .collect();
                format!("{NESTED_PREFIX}{}", segments.join("/"))
            }
        }
    }

    /// The path as shown to people (`secret_fields_set`): keys joined by `.`,
    /// list indices in brackets: `extra.session_kwargs.aws_secret_access_key`,
    /// `extra.hosts[0].token`.
    pub fn display(&self) -> String {
        let mut out = String::from("extra");
        for step in &self.0 {
            match step {
                Step::Key(key) => {
                    out.push('.');
                    out.push_str(key);
                }
                Step::Index(index) => {
                    out.push('[');
                    out.push_str(&index.to_string());
                    out.push(']');
                }
            }
        }
        out
    }
}

/// Where a storage key points, read against the tree it is restored into: a
/// numeric pointer segment is a list index when that container is a list.
fn storage_segments(storage_key: &str) -> Option<Vec<String>> {
    if let Some(key) = storage_key.strip_prefix("extra.") {
        return Some(vec![key.to_owned()]);
    }
    let pointer = storage_key.strip_prefix(NESTED_PREFIX)?;
    Some(pointer.split('/').map(unescape_pointer).collect())
}

/// Whether a key's name is one Airflow's masker hides: its lower-cased form
/// contains one of `catalog::SENSITIVE_NAMES`.
pub fn is_sensitive_name(key: &str) -> bool {
    let lower = key.to_lowercase();
    catalog::SENSITIVE_NAMES
        .iter()
        .any(|name| lower.contains(name))
}

/// Whether the value at `path` is secret for a connection of `type_key`: at
/// the top level the catalog decides for the keys it lists (it was checked
/// against each hook), else the sensitive-name rule on the last key.
pub fn is_secret_path(type_key: &str, path: &SecretPath) -> bool {
    match path.0.as_slice() {
        [Step::Key(key)] => catalog::is_secret(type_key, &format!("extra.{key}")),
        [.., Step::Key(key)] => is_sensitive_name(key),
        _ => false,
    }
}

fn split_value(
    type_key: &str,
    steps: &mut Vec<Step>,
    value: &Value,
    secrets: &mut SecretValues,
) -> Value {
    match value {
        Value::Object(object) => Value::Object(split_object(type_key, steps, object, secrets)),
        Value::Array(items) => Value::Array(
            items
                .iter()
                .enumerate()
                .map(|(index, item)| {
                    steps.push(Step::Index(index));
                    let public = split_value(type_key, steps, item, secrets);
                    steps.pop();
                    public
                })
                .collect(),
        ),
        other => other.clone(),
    }
}

fn split_object(
    type_key: &str,
    steps: &mut Vec<Step>,
    object: &Extra,
    secrets: &mut SecretValues,
) -> Extra {
    let mut public = Extra::new();
    for (key, value) in object {
        steps.push(Step::Key(key.clone()));
        let path = SecretPath(steps.clone());
        if is_secret_path(type_key, &path) {
            secrets.insert(path.storage_key(), value.clone());
        } else {
            public.insert(key.clone(), split_value(type_key, steps, value, secrets));
        }
        steps.pop();
    }
    public
}

/// Moves every secret value of `extra`, at any depth, into `secrets` (keyed by
/// [`SecretPath::storage_key`]) and returns what is left.
pub fn split_extra(type_key: &str, extra: &Extra, secrets: &mut SecretValues) -> Extra {
    split_object(type_key, &mut Vec::new(), extra, secrets)
}

/// The secret paths of `extra` that hold a value, in display form, sorted.
pub fn secret_paths(type_key: &str, extra: &Extra) -> Vec<String> {
    let mut found = Vec::new();
    collect_paths(type_key, &mut Vec::new(), extra, &mut found);
    found.sort();
    found
}

fn collect_paths(type_key: &str, steps: &mut Vec<Step>, object: &Extra, found: &mut Vec<String>) {
    for (key, value) in object {
        steps.push(Step::Key(key.clone()));
        let path = SecretPath(steps.clone());
        if is_secret_path(type_key, &path) {
            found.push(path.display());
        } else {
            collect_value_paths(type_key, steps, value, found);
        }
        steps.pop();
    }
}

fn collect_value_paths(
    type_key: &str,
    steps: &mut Vec<Step>,
    value: &Value,
    found: &mut Vec<String>,
) {
    match value {
        Value::Object(object) => collect_paths(type_key, steps, object, found),
        Value::Array(items) => {
            for (index, item) in items.iter().enumerate() {
                steps.push(Step::Index(index));
                collect_value_paths(type_key, steps, item, found);
                steps.pop();
            }
        }
        _ => {}
    }
}

/// Puts each `extra` secret of `secrets` back at its place in `extra`; other
/// entries (`password`) are left to the caller. Objects missing on the way
/// are created; a value whose way is blocked (a list index out of range, a
/// scalar where a container should be) cannot be placed and is skipped,
/// which only happens when the public part was changed apart from its secrets.
pub fn restore_extra(extra: &mut Extra, secrets: &SecretValues) {
    for (storage_key, value) in secrets {
        if let Some(segments) = storage_segments(storage_key) {
            place(extra, &segments, value.clone());
        }
    }
}

fn place(extra: &mut Extra, segments: &[String], value: Value) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut object = extra;
    let mut rest = parents;
    while let Some((segment, tail)) = rest.split_first() {
        let child = object
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Extra::new()));
        match descend(child, tail) {
            Some((next, remaining)) => {
                object = next;
                rest = remaining;
            }
            None => return,
        }
    }
    object.insert(last.clone(), value);
}

/// From `value` (reached by one key), follows list indices at the head of
/// `tail` down to the next object, returning it and the segments left.
fn descend<'v, 's>(
    mut value: &'v mut Value,
    mut tail: &'s [String],
) -> Option<(&'v mut Extra, &'s [String])> {
    loop {
        match value {
            Value::Object(object) => return Some((object, tail)),
            Value::Array(items) => {
                let (segment, remaining) = tail.split_first()?;
                let index: usize = segment.parse().ok()?;
                value = items.get_mut(index)?;
                tail = remaining;
            }
            _ => return None,
        }
    }
}

/// The value at `segments` inside `extra`, if there is one.
fn value_at<'v>(extra: &'v Extra, segments: &[String]) -> Option<&'v Value> {
    let (first, rest) = segments.split_first()?;
    let mut value = extra.get(first)?;
    for segment in rest {
        value = match value {
            Value::Object(object) => object.get(segment)?,
            Value::Array(items) => items.get(segment.parse::<usize>().ok()?)?,
            _ => return None,
        };
    }
    Some(value)
}

/// Whether the object a value at `segments` sits in exists in `extra`.
fn parent_exists(extra: &Extra, segments: &[String]) -> bool {
    match segments.split_last() {
        Some((_, [])) => true,
        Some((_, parents)) => matches!(value_at(extra, parents), Some(Value::Object(_))),
        None => false,
    }
}

/// Copies into `incoming` each secret of `current` that `incoming` leaves out
/// while still holding the object it sat in. Reads never return secret
/// values, so a client that writes back what it read (`*` mask) sends those
/// objects without them; that must not erase them.
pub fn keep_unsent_secrets(type_key: &str, current: &Extra, incoming: &mut Extra) {
    let mut secrets = SecretValues::new();
    split_extra(type_key, current, &mut secrets);
    for (storage_key, value) in secrets {
        let Some(segments) = storage_segments(&storage_key) else {
            continue;
        };
        if value_at(incoming, &segments).is_none() && parent_exists(incoming, &segments) {
            place(incoming, &segments, value);
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

    #[test]
    fn sensitive_names_match_inside_lower_cased_keys() {
        assert!(is_sensitive_name("aws_secret_access_key"));
        assert!(is_sensitive_name("Authorization"));
        assert!(is_sensitive_name("refresh_TOKEN"));
        assert!(!is_sensitive_name("region"));
        assert!(!is_sensitive_name("X-Api-Key"));
    }

    #[test]
    fn nested_secrets_split_at_their_depth_and_come_back() {
        let extra = object(json!({
            "region_name": "eu-west-1",
            "session_kwargs": {"aws_access_key_id": "AKIA", "aws_secret_access_key": "s3cr3t"},
            "headers": {"Authorization": "Bearer abc", "Accept": "json"},
            "hosts": [{"name": "a", "token": "t0"}, "plain", {"name": "b"}],
            "api_keys": ["k1", "k2"],
        }));
        let mut secrets = SecretValues::new();
        let public = split_extra("generic", &extra, &mut secrets);
        assert_eq!(
            Value::Object(public.clone()),
            json!({
                "region_name": "eu-west-1",
                "session_kwargs": {"aws_access_key_id": "AKIA"},
                "headers": {"Accept": "json"},
                "hosts": [{"name": "a"}, "plain", {"name": "b"}],
            })
        );
        assert_eq!(
            secrets.keys().collect::<Vec<_>>(),
            [
                "extra.api_keys",
                "extra/headers/Authorization",
                "extra/hosts/0/token",
                "extra/session_kwargs/aws_secret_access_key",
            ]
        );
        assert_eq!(
            secret_paths("generic", &extra),
            [
                "extra.api_keys",
                "extra.headers.Authorization",
                "extra.hosts[0].token",
                "extra.session_kwargs.aws_secret_access_key",
            ]
        );
        assert!(secret_paths("generic", &public).is_empty());
        let mut restored = public;
        restore_extra(&mut restored, &secrets);
        assert_eq!(restored, extra);
    }

    #[test]
    fn keys_with_slashes_tildes_and_dots_round_trip() {
        let extra = object(json!({"a/b": {"x~y.token": "v", "c.d": {"password": 1}}}));
        let mut secrets = SecretValues::new();
        let public = split_extra("generic", &extra, &mut secrets);
        assert_eq!(
            secrets.keys().collect::<Vec<_>>(),
            ["extra/a~1b/c.d/password", "extra/a~1b/x~0y.token"]
        );
        let mut restored = public;
        restore_extra(&mut restored, &secrets);
        assert_eq!(restored, extra);
    }

    #[test]
    fn catalog_parameters_decide_at_the_top_level_only() {
        // The catalog lists this Redshift key as a plain duration.
        let extra = object(json!({
            "serverless_token_duration_seconds": 900,
            "session_parameters": {"serverless_token_duration_seconds": 900},
        }));
        assert_eq!(
            secret_paths("aws_redshift", &extra),
            ["extra.session_parameters.serverless_token_duration_seconds"]
        );
    }

    #[test]
    fn unsent_secrets_are_kept_where_their_object_was_sent() {
        let current = object(json!({
            "session_kwargs": {"aws_secret_access_key": "s", "profile": "p"},
            "headers": {"Authorization": "a"},
            "api_key": "k",
        }));
        let mut incoming = object(json!({"session_kwargs": {"profile": "q"}}));
        keep_unsent_secrets("generic", &current, &mut incoming);
        // headers was left out as a whole, so it goes; the top level always exists.
        assert_eq!(
            Value::Object(incoming),
            json!({"session_kwargs": {"aws_secret_access_key": "s", "profile": "q"}, "api_key": "k"})
        );
        let mut replaced = object(json!({"session_kwargs": {"aws_secret_access_key": "new"}}));
        keep_unsent_secrets("generic", &current, &mut replaced);
        assert_eq!(
            replaced["session_kwargs"]["aws_secret_access_key"],
            json!("new")
        );
    }
}
