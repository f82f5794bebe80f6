//! A connection draft from a document, flags and prompts, for create and update.

use super::*;

/// A file's fields, its connection id and its links, apart.
pub(super) struct Document {
    pub(super) id: Option<String>,
    pub(super) fields: Map<String, Value>,
    pub(super) links: Vec<Value>,
}

pub(super) fn read_document(path: &std::path::Path) -> anyhow::Result<Document> {
    let Value::Object(mut fields) = input::read_document(path)? else {
        usage!("{}: the document must be a mapping", path.display());
    };
    let mut id = None;
    for key in ID_KEYS {
        if let Some(value) = fields.remove(*key) {
            match value {
                Value::String(text) if !text.is_empty() => {
                    id = Some(last_segment(&text).to_owned());
                }
                Value::Null => {}
                _ => usage!("{}: {key} must be text", path.display()),
            }
        }
    }
    for key in OUTPUT_ONLY_KEYS {
        fields.remove(*key);
    }
    let links = match fields.remove("links") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(links)) => links,
        Some(_) => usage!("{}: links must be a list", path.display()),
    };
    Ok(Document { id, fields, links })
}

/// `--set` & co. into `draft`, typed by `connection_type`.
pub(super) fn apply_field_flags(
    session: &Session,
    draft: &mut Draft,
    flags: &FieldFlags,
    connection_type: Option<&pb::ConnectionType>,
) -> anyhow::Result<()> {
    let named = [
        ("description", &flags.description),
        ("host", &flags.host),
        ("schema", &flags.schema),
        ("login", &flags.login),
    ];
    for (path, value) in named {
        if let Some(value) = value {
            draft.set(path, Value::String(value.clone()));
        }
    }
    if let Some(port) = flags.port {
        draft.set("port", Value::from(port));
    }
    draft.apply_sets(Target::Connection, connection_type, &flags.set)?;
    if let Some(link_to_all) = flags.link_to_all {
        draft.set("link_to_all_deployments", Value::Bool(link_to_all));
    }
    if !flags.exclude.is_empty() {
        let names = flags
            .exclude
            .iter()
            .map(|id| session.deployment_name(id).map(Value::String))
            .collect::<anyhow::Result<Vec<_>>>()?;
        draft.set("excluded_deployments", Value::Array(names));
    }
    draft.apply_secrets(Target::Connection, &flags.secrets)?;
    Ok(())
}

/// Deployment ids in excluded_deployments become resource names.
pub(super) fn qualify_excluded(session: &Session, draft: &mut Draft) -> anyhow::Result<()> {
    let Some(value) = draft.get("excluded_deployments").cloned() else {
        return Ok(());
    };
    let items: Vec<String> = match value {
        Value::Array(items) => items
            .into_iter()
            .filter_map(|item| item.as_str().map(str::to_owned))
            .collect(),
        Value::String(text) => text.split(',').map(|item| item.trim().to_owned()).collect(),
        _ => usage!("excluded_deployments must be a list of deployment ids"),
    };
    let names = items
        .iter()
        .filter(|item| !item.is_empty())
        .map(|id| session.deployment_name(id).map(Value::String))
        .collect::<anyhow::Result<Vec<_>>>()?;
    draft.set("excluded_deployments", Value::Array(names));
    Ok(())
}

pub(super) fn check_stdin(flags: &FieldFlags) -> anyhow::Result<()> {
    input::check_single_stdin_reader(&[
        (
            "--file -",
            flags
                .file
                .as_ref()
                .is_some_and(|file| file.as_os_str() == "-"),
        ),
        (
            "--password-stdin / --set-secret FIELD=-",
            flags.secrets.reads_stdin(),
        ),
    ])
}

/// Prompts for each required parameter the draft leaves empty; secrets
/// without echo. An empty answer leaves it for the server to report.
pub(super) fn prompt_required(
    draft: &mut Draft,
    connection_type: &pb::ConnectionType,
) -> anyhow::Result<()> {
    let missing: Vec<pb::ConnectionTypeParameter> = draft
        .missing_required(connection_type)
        .into_iter()
        .cloned()
        .collect();
    for parameter in missing {
        let label = if parameter.description.is_empty() {
            format!("{} [{}]", parameter.name, parameter.field)
        } else {
            format!(
                "{} [{}] ({})",
                parameter.name, parameter.field, parameter.description
            )
        };
        let answer = if parameter.secret {
            Some(input::prompt_secret(&label)?).filter(|answer| !answer.is_empty())
        } else {
            input::prompt_line(&label)?
        };
        if let Some(answer) = answer {
            let value = if parameter.secret {
                Value::String(answer)
            } else {
                fields::parse_value(Some(connection_type), &parameter.field, &answer)?
            };
            draft.set(parameter.field.clone(), value);
        }
    }
    Ok(())
}

/// A link of a file: a deployment id, or `{deployment, overrides}`.
pub(super) fn link_from_document(session: &Session, link: &Value) -> anyhow::Result<pb::Link> {
    match link {
        Value::String(deployment) => Ok(pb::Link {
            deployment: session.deployment_name(deployment)?,
            ..Default::default()
        }),
        Value::Object(object) => {
            let Some(deployment) = object.get("deployment").and_then(Value::as_str) else {
                usage!("each link in the file needs a deployment");
            };
            let mut draft = Draft::default();
            match object.get("overrides") {
                None | Some(Value::Null) => {}
                Some(Value::Object(overrides)) => {
                    draft.merge_document(Target::LinkOverrides, overrides)?;
                }
                Some(_) => usage!("link overrides must be a mapping"),
            }
            Ok(pb::Link {
                deployment: session.deployment_name(deployment)?,
                overrides: (!draft.is_empty())
                    .then(|| draft.to_overrides())
                    .transpose()?,
                ..Default::default()
            })
        }
        _ => usage!("links must be deployment ids or {{deployment, overrides}} mappings"),
    }
}
