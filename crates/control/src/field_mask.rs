//! Field masks (AIP-134) for connections and links: which paths an update
//! may name, and applying them to the stored values.

use serde_json::Value;
use switchboard_domain::field_paths::{CONNECTION_FIELDS, snake_case};
use switchboard_domain::{ConnectionSpec, Extra, Overrides};
use switchboard_domain::{catalog, sensitive};

use crate::connections::ConnectionFields;
use crate::error::{ControlError, ControlResult};

/// Connection paths an update mask may name, besides `extra.<key>`: the
/// fields, and `extra` (the whole map) after `port`.
fn known_connection_paths() -> Vec<&'static str> {
    let mut paths = CONNECTION_FIELDS.to_vec();
    let after_port = paths
        .iter()
        .position(|path| *path == "port")
        .map_or(0, |at| at + 1);
    paths.insert(after_port, "extra");
    paths
}

/// The extra key a mask path names: as sent, or its snake_case form when only
/// that one exists (protobuf's JSON form camel-cases `private_key_content`).
fn extra_key(key: &str, maps: &[&Extra]) -> String {
    if maps.iter().any(|map| map.contains_key(key)) {
        return key.to_owned();
    }
    let snake = snake_case(key);
    if maps.iter().any(|map| map.contains_key(&snake)) {
        snake
    } else {
        key.to_owned()
    }
}

/// For a mask key that names no top-level extra key but a way through objects
/// (`session_kwargs.aws_secret_access_key`), its segments, each resolved like
/// [`extra_key`]. This is how one nested value, such as a nested secret that
/// reads never return, is set or removed without resending its siblings. A
/// top-level key that holds dots wins, as before.
fn nested_segments(key: &str, maps: &[&Extra]) -> Option<Vec<String>> {
    if !key.contains('.') || maps.iter().any(|map| map.contains_key(key)) {
        return None;
    }
    let mut levels: Vec<&Extra> = maps.to_vec();
    let mut segments = Vec::new();
    let parts: Vec<&str> = key.split('.').collect();
    for (index, part) in parts.iter().enumerate() {
        let segment = extra_key(part, &levels);
        if index + 1 < parts.len() {
            levels = levels
                .iter()
                .filter_map(|level| match level.get(&segment) {
                    Some(Value::Object(child)) => Some(child),
                    _ => None,
                })
                .collect();
            if levels.is_empty() {
                // No object on this way: not a nested path.
                return None;
            }
        }
        segments.push(segment);
    }
    Some(segments)
}

/// The value at `segments` (object keys) inside `extra`.
fn value_at<'v>(extra: &'v Extra, segments: &[String]) -> Option<&'v Value> {
    let (first, rest) = segments.split_first()?;
    rest.iter().try_fold(extra.get(first)?, |value, segment| {
        value.as_object()?.get(segment)
    })
}

/// Sets (or, for `None`, removes) the value at `segments`, creating objects on
/// the way and replacing a non-object that stands where one must be.
fn set_nested(extra: &mut Extra, segments: &[String], value: Option<Value>) {
    let Some((last, parents)) = segments.split_last() else {
        return;
    };
    let mut object = extra;
    for segment in parents {
        let child = object
            .entry(segment.clone())
            .or_insert_with(|| Value::Object(Extra::new()));
        if !child.is_object() {
            *child = Value::Object(Extra::new());
        }
        let Value::Object(child) = child else {
            return;
        };
        object = child;
    }
    match value {
        Some(value) => {
            object.insert(last.clone(), value);
        }
        None => {
            object.remove(last);
        }
    }
}

/// The paths an update sets: the update mask's `paths` (split and
/// snake_cased), checked, or for an empty mask the fields `message` sets.
pub(crate) fn connection_paths(
    paths: Vec<String>,
    message: &ConnectionFields,
) -> ControlResult<Vec<String>> {
    if paths.is_empty() {
        let spec = &message.spec;
        let mut implied: Vec<String> = Vec::new();
        let set = [
            ("type", !spec.type_key.is_empty()),
            ("conn_type", !spec.conn_type.is_empty()),
            ("description", spec.description.is_some()),
            ("host", spec.host.is_some()),
            ("schema", spec.schema.is_some()),
            ("login", spec.login.is_some()),
            ("password", spec.password.is_some()),
            ("port", spec.port.is_some()),
            ("link_to_all_deployments", message.link_to_all_deployments),
            (
                "excluded_deployments",
                !message.excluded_deployments.is_empty(),
            ),
        ];
        implied.extend(
            set.iter()
                .filter(|(_, is_set)| *is_set)
                .map(|(path, _)| (*path).to_owned()),
        );
        implied.extend(spec.extra.keys().map(|key| format!("extra.{key}")));
        if implied.is_empty() {
            return Err(ControlError::invalid(
                "update_mask",
                "is empty and the connection sets no field: nothing to update",
            ));
        }
        return Ok(implied);
    }
    if paths.iter().any(|path| path == "*") {
        return Ok(known_connection_paths()
            .iter()
            .map(|path| (*path).to_owned())
            .collect());
    }
    let mut violations = Vec::new();
    let known_paths = known_connection_paths();
    for path in &paths {
        let known = known_paths.contains(&path.as_str())
            || path
                .strip_prefix("extra.")
                .is_some_and(|key| !key.is_empty());
        if !known {
            violations.push(switchboard_domain::FieldViolation::new(
                "update_mask",
                format!(
                    "unknown path '{path}'; use {} or extra.<key>",
                    known_paths.join(", ")
                ),
            ));
        }
    }
    if !violations.is_empty() {
        return Err(ControlError::InvalidArgument(violations));
    }
    Ok(paths)
}

/// Applies the masked fields of `incoming` to `current` (secrets included).
/// With `*`, secret fields the message leaves empty keep their value, since
/// reads never return them.
pub(crate) fn apply_to_spec(
    current: &ConnectionSpec,
    incoming: &ConnectionSpec,
    paths: &[String],
    wildcard: bool,
) -> ConnectionSpec {
    let mut next = current.clone();
    for path in paths {
        match path.as_str() {
            "type" => {
                next.type_key = incoming.type_key.clone();
                if let Some(entry) =
                    catalog::get(&next.type_key).filter(|entry| !entry.conn_type.is_empty())
                {
                    next.conn_type = entry.conn_type.to_owned();
                }
            }
            "conn_type" => {
                if !incoming.conn_type.is_empty() {
                    next.conn_type = incoming.conn_type.clone();
                }
            }
            "description" => next.description = incoming.description.clone(),
            "host" => next.host = incoming.host.clone(),
            "schema" => next.schema = incoming.schema.clone(),
            "login" => next.login = incoming.login.clone(),
            "password" => {
                if !(wildcard && incoming.password.is_none()) {
                    next.password = incoming.password.clone();
                }
            }
            "port" => next.port = incoming.port,
            "extra" => {
                let mut extra = incoming.extra.clone();
                if wildcard {
                    sensitive::keep_unsent_secrets(&current.type_key, &current.extra, &mut extra);
                }
                next.extra = extra;
            }
            other => {
                if let Some(key) = other.strip_prefix("extra.") {
                    if let Some(segments) = nested_segments(key, &[&incoming.extra, &current.extra])
                    {
                        let value = value_at(&incoming.extra, &segments)
                            .filter(|value| !value.is_null())
                            .cloned();
                        set_nested(&mut next.extra, &segments, value);
                        continue;
                    }
                    let key = extra_key(key, &[&incoming.extra, &current.extra]);
                    match incoming.extra.get(&key) {
                        Some(Value::Null) | None => {
                            next.extra.remove(&key);
                        }
                        Some(value) => {
                            next.extra.insert(key, value.clone());
                        }
                    }
                }
            }
        }
    }
    next.normalized()
}

/// Link override paths (besides `overrides.extra.<key>`).
const LINK_PATHS: &[&str] = &[
    "overrides",
    "overrides.host",
    "overrides.schema",
    "overrides.login",
    "overrides.password",
    "overrides.port",
    "overrides.extra",
];

/// Applies a link update: the fields of `incoming` that `mask_paths` (the
/// update mask, split and snake_cased) name. An empty mask means
/// `overrides` (replace them all).
pub(crate) fn apply_to_overrides(
    current: &Overrides,
    incoming: &Overrides,
    mask_paths: &[String],
) -> ControlResult<Overrides> {
    let mut paths = mask_paths.to_vec();
    if paths.is_empty() || paths.iter().any(|path| path == "*") {
        paths = vec!["overrides".to_owned()];
    }
    let mut next = current.clone();
    let mut violations = Vec::new();
    for path in &paths {
        match path.as_str() {
            "overrides" => next = incoming.clone(),
            "overrides.host" => next.host = incoming.host.clone(),
            "overrides.schema" => next.schema = incoming.schema.clone(),
            "overrides.login" => next.login = incoming.login.clone(),
            "overrides.password" => next.password = incoming.password.clone(),
            "overrides.port" => next.port = incoming.port,
            "overrides.extra" => next.extra = incoming.extra.clone(),
            other => match other
                .strip_prefix("overrides.extra.")
                .filter(|key| !key.is_empty())
            {
                Some(key) => {
                    if let Some(segments) = nested_segments(key, &[&incoming.extra, &current.extra])
                    {
                        // As for a top-level key: absent drops it, null is kept.
                        let value = value_at(&incoming.extra, &segments).cloned();
                        set_nested(&mut next.extra, &segments, value);
                        continue;
                    }
                    let key = extra_key(key, &[&incoming.extra, &current.extra]);
                    match incoming.extra.get(&key) {
                        // Absent from the message: drop the override for this key.
                        None => {
                            next.extra.remove(&key);
                        }
                        // Present (null included: null removes the key downstream).
                        Some(value) => {
                            next.extra.insert(key, value.clone());
                        }
                    }
                }
                None => violations.push(switchboard_domain::FieldViolation::new(
                    "update_mask",
                    format!(
                        "unknown path '{other}'; use {} or overrides.extra.<key>",
                        LINK_PATHS.join(", ")
                    ),
                )),
            },
        }
    }
    if !violations.is_empty() {
        return Err(ControlError::InvalidArgument(violations));
    }
    Ok(next)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nested_mask_keys_set_one_value_and_keep_their_siblings() {
        let current: Extra = serde_json::from_value(serde_json::json!({
            "session_kwargs": {"aws_secret_access_key": "old", "profile_name": "p"},
            "a.b": 1
        }))
        .unwrap();
        let incoming: Extra = serde_json::from_value(serde_json::json!({
            "session_kwargs": {"aws_secret_access_key": "new"}
        }))
        .unwrap();
        let segments =
            nested_segments("sessionKwargs.awsSecretAccessKey", &[&incoming, &current]).unwrap();
        assert_eq!(segments, ["session_kwargs", "aws_secret_access_key"]);
        let mut next = current.clone();
        set_nested(
            &mut next,
            &segments,
            value_at(&incoming, &segments).cloned(),
        );
        assert_eq!(next["session_kwargs"]["aws_secret_access_key"], "new");
        assert_eq!(next["session_kwargs"]["profile_name"], "p");
        set_nested(&mut next, &segments, None);
        assert_eq!(
            Value::Object(next["session_kwargs"].as_object().unwrap().clone()),
            serde_json::json!({"profile_name": "p"})
        );
        // A top-level key with a dot, and a way through no object, stay top-level.
        assert_eq!(nested_segments("a.b", &[&current]), None);
        assert_eq!(nested_segments("region.name", &[&current]), None);
    }

    #[test]
    fn camel_cased_extra_keys_find_their_snake_case_key() {
        let mut current = Extra::new();
        current.insert("private_key_content".into(), Value::from("old"));
        assert_eq!(
            extra_key("privateKeyContent", &[&current]),
            "private_key_content"
        );
        assert_eq!(extra_key("newKey", &[&current]), "newKey");
    }
}
