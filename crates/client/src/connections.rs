//! `switchboard connections list|get|create|update|delete|versions|rollback`.

mod draft;

use std::path::PathBuf;

use clap::{Args, Subcommand};
use serde_json::{Map, Value};
use switchboard_proto::convert::struct_to_json;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;
use tonic::{Code, Status};

use super::pages::{PAGE_SIZE, all_pages};
use crate::error::{ApiError, CallResult, usage};
use crate::fields::{self, Draft, SecretOpt, Target};
use crate::input;
use crate::output::{OutputOpt, Table};
use crate::render;
use crate::session::{ConnectOpt, Session, last_segment};
use crate::types;
use crate::unknown_keys;
use draft::{
    Document, apply_field_flags, check_stdin, link_from_document, prompt_required,
    qualify_excluded, read_document,
};

/// Arguments of `switchboard connections`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  switchboard connections list\n  switchboard connections create pg --type postgres --host db.internal --login airflow --password-file pg.pass\n  switchboard connections get pg -o yaml\n\n",
    crate::exit_codes_help!()
))]
pub struct ConnectionsArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(flatten)]
    output: OutputOpt,
    #[command(subcommand)]
    command: ConnectionsCommand,
}

#[derive(Debug, Subcommand)]
enum ConnectionsCommand {
    /// Lists the workspace's connections (secrets never shown).
    #[command(
        after_help = "Examples:\n  switchboard connections list --workspace acme\n  \
        switchboard connections list --type postgres --deployment prod -o json"
    )]
    List(ListOpt),
    /// Shows one connection.
    #[command(after_help = "Examples:\n  switchboard connections get warehouse\n  \
        switchboard connections get warehouse --show-secrets   # needs the policy allow_secret_reveal")]
    Get(GetOpt),
    /// Creates a connection from flags, a JSON/YAML file, or prompts for the
    /// type's required parameters.
    #[command(after_help = "Examples:\n  \
        switchboard connections create pg --type postgres --host db.internal --port 5432 \
        --login airflow --schema analytics --password-file pg.pass\n  \
        switchboard connections create snow --type snowflake_private_key --login SVC \
        --set extra.account=xy12345 --set extra.warehouse=WH \
        --set-secret extra.private_key_content=@rsa_key.p8 --link prod\n  \
        switchboard connections create -f warehouse.yaml\n  \
        switchboard connections create          # prompts for type, id and required parameters\n\n\
        A file holds the connection's fields: connection_id, type, description, host, schema, \
        login, password, port, extra (a mapping), link_to_all_deployments, excluded_deployments \
        and links (deployment ids, or {deployment, overrides}). Flags win over the file.")]
    Create(Box<CreateOpt>),
    /// Updates the fields given; others keep their values.
    #[command(after_help = "Examples:\n  \
        switchboard connections update pg --host db2.internal --set extra.sslmode=require\n  \
        switchboard connections update pg --unset extra.sslmode --password-stdin < new.pass\n  \
        switchboard connections update snow -f snow.yaml --etag 7")]
    Update(Box<UpdateOpt>),
    /// Deletes a connection and its links.
    #[command(after_help = "Example:\n  switchboard connections delete pg")]
    Delete(DeleteOpt),
    /// Lists a connection's versions, newest first.
    #[command(after_help = "Example:\n  switchboard connections versions pg")]
    Versions(VersionsOpt),
    /// Restores a connection, secrets included, to an earlier version.
    #[command(after_help = "Example:\n  switchboard connections rollback pg --version 3")]
    Rollback(RollbackOpt),
}

#[derive(Debug, Args)]
struct ListOpt {
    /// Only connections of this catalog type.
    #[arg(long = "type", value_name = "TYPE")]
    type_key: Option<String>,
    /// Only what this deployment sees (direct links, link-to-all, inherited).
    #[arg(short = 'd', long)]
    deployment: Option<String>,
}

#[derive(Debug, Args)]
struct GetOpt {
    /// The connection id (its Airflow conn_id).
    id: String,
    /// Includes secret values (OPERATOR or OWNER, with the workspace policy
    /// allow_secret_reveal; audited).
    #[arg(long)]
    show_secrets: bool,
}

/// Named flags for the common fields; `--set` covers every field.
#[derive(Debug, Args)]
struct FieldFlags {
    /// Free text for people.
    #[arg(long)]
    description: Option<String>,
    #[arg(long)]
    host: Option<String>,
    #[arg(long)]
    schema: Option<String>,
    #[arg(long)]
    login: Option<String>,
    #[arg(long)]
    port: Option<i32>,
    /// Sets a field, FIELD=VALUE, e.g. extra.warehouse=WH (typed by the
    /// catalog: numbers, true/false, JSON). Repeatable. Secret fields are
    /// refused here: use --set-secret.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    #[command(flatten)]
    secrets: SecretOpt,
    /// Links the connection to every deployment of the workspace, now and
    /// future (--link-to-all=false undoes it).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    link_to_all: Option<bool>,
    /// With --link-to-all: a deployment left out. Repeatable; replaces the list.
    #[arg(long = "exclude", value_name = "DEPLOYMENT")]
    exclude: Vec<String>,
    /// Reads fields from a JSON or YAML file ('-' for standard input).
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct CreateOpt {
    /// The connection id, which is its Airflow conn_id: letters, digits, `_`,
    /// `.` and `-` (or `connection_id` in the file).
    id: Option<String>,
    /// The catalog type (see `switchboard types`).
    #[arg(short = 't', long = "type", value_name = "TYPE")]
    type_key: Option<String>,
    /// Airflow's conn_type, for the `generic` type only.
    #[arg(long)]
    conn_type: Option<String>,
    #[command(flatten)]
    fields: FieldFlags,
    /// Links the new connection to this deployment in the same transaction. Repeatable.
    #[arg(long = "link", value_name = "DEPLOYMENT")]
    link: Vec<String>,
    /// Never prompts, even on a terminal.
    #[arg(long)]
    no_input: bool,
    /// Idempotency key: a retry with the same id returns the first result.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Debug, Args)]
struct UpdateOpt {
    /// The connection id.
    id: String,
    #[command(flatten)]
    fields: FieldFlags,
    /// Clears a field, or removes an extra key (extra.KEY). Repeatable.
    #[arg(long = "unset", value_name = "FIELD")]
    unset: Vec<String>,
    /// Updates only if the connection's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

#[derive(Debug, Args)]
struct DeleteOpt {
    /// The connection id.
    id: String,
    /// Deletes only if the connection's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

#[derive(Debug, Args)]
struct VersionsOpt {
    /// The connection id.
    id: String,
}

#[derive(Debug, Args)]
struct RollbackOpt {
    /// The connection id.
    id: String,
    /// The version to restore (see `switchboard connections versions`).
    #[arg(long)]
    version: i64,
    /// Rolls back only if the connection's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

/// `switchboard connections …`.
pub(crate) async fn run(args: ConnectionsArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.connect).await?;
    let output = &args.output;
    let result = match args.command {
        ConnectionsCommand::List(opt) => list(&session, output, &opt).await,
        ConnectionsCommand::Get(opt) => get(&session, output, &opt).await,
        ConnectionsCommand::Create(opt) => create(&session, output, *opt).await,
        ConnectionsCommand::Update(opt) => update(&session, output, *opt).await,
        ConnectionsCommand::Delete(opt) => delete(&session, &opt).await,
        ConnectionsCommand::Versions(opt) => versions(&session, output, &opt).await,
        ConnectionsCommand::Rollback(opt) => rollback(&session, output, &opt).await,
    };
    session.diagnose(result).await
}

fn client(session: &Session) -> ConnectionServiceClient<tonic::transport::Channel> {
    ConnectionServiceClient::new(session.channel())
}

async fn list(session: &Session, output: &OutputOpt, opt: &ListOpt) -> anyhow::Result<()> {
    let parent = session.workspace_name()?;
    let mut terms = Vec::new();
    if let Some(type_key) = &opt.type_key {
        terms.push(format!("type = {}", quote(type_key)?));
    }
    if let Some(deployment) = &opt.deployment {
        terms.push(format!(
            "deployment = {}",
            quote(&session.deployment_name(deployment)?)?
        ));
    }
    let filter = terms.join(" AND ");
    let client = client(session);
    let connections = all_pages(|page_token| {
        let mut client = client.clone();
        let request = session.request(pb::ListConnectionsRequest {
            parent: parent.clone(),
            page_size: PAGE_SIZE,
            page_token,
            filter: filter.clone(),
        });
        let parent = &parent;
        async move {
            let page = client
                .list_connections(request)
                .await
                .or_refused(|| format!("cannot list the connections of {parent}"))?;
            Ok((page.connections, page.next_page_token))
        }
    })
    .await?;
    output.emit(
        &Value::Array(connections.iter().map(render::connection_json).collect()),
        || {
            let mut table = Table::new([
                "ID",
                "TYPE",
                "HOST",
                "PORT",
                "SCHEMA",
                "LOGIN",
                "SECRETS SET",
                "LINKED TO ALL",
            ]);
            for connection in &connections {
                table.row([
                    last_segment(&connection.name).to_owned(),
                    connection.r#type.clone(),
                    render::or_dash(connection.host.clone()),
                    port_text(connection.port),
                    render::or_dash(connection.schema.clone()),
                    render::or_dash(connection.login.clone()),
                    render::or_dash(connection.secret_fields_set.join(", ")),
                    linked_text(connection),
                ]);
            }
            table
        },
    )
}

/// A filter value in double quotes (the filter syntax has no escapes).
pub(crate) fn quote(value: &str) -> anyhow::Result<String> {
    if value.contains('"') {
        usage!("filter values cannot contain '\"': {value}");
    }
    Ok(format!("\"{value}\""))
}

fn port_text(port: i32) -> String {
    match port {
        0 => "-".to_owned(),
        port => port.to_string(),
    }
}

fn linked_text(connection: &pb::Connection) -> String {
    match (
        connection.link_to_all_deployments,
        connection.excluded_deployments.len(),
    ) {
        (false, _) => "no".to_owned(),
        (true, 0) => "yes".to_owned(),
        (true, excluded) => format!("yes, {excluded} excluded"),
    }
}

/// Prints one connection: a FIELD/VALUE table, or JSON/YAML.
fn print_connection(output: &OutputOpt, connection: &pb::Connection) -> anyhow::Result<()> {
    output.emit(&render::connection_json(connection), || {
        let extra: Map<String, Value> = struct_to_json(connection.extra.as_ref());
        let mut rows = vec![
            ("name", connection.name.clone()),
            ("type", connection.r#type.clone()),
            ("conn_type", connection.conn_type.clone()),
            (
                "description",
                render::or_dash(connection.description.clone()),
            ),
            ("host", render::or_dash(connection.host.clone())),
            ("port", port_text(connection.port)),
            ("schema", render::or_dash(connection.schema.clone())),
            ("login", render::or_dash(connection.login.clone())),
        ];
        // Present only when the caller asked for secrets and may see them.
        if !connection.password.is_empty() {
            rows.push(("password", connection.password.clone()));
        }
        rows.extend([
            ("extra", render::or_dash(render::extra_text(&extra))),
            (
                "secret_fields_set",
                render::or_dash(connection.secret_fields_set.join(", ")),
            ),
            ("link_to_all", linked_text(connection)),
            (
                "excluded",
                render::or_dash(
                    connection
                        .excluded_deployments
                        .iter()
                        .map(|name| last_segment(name))
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            ),
            ("etag", connection.etag.clone()),
            (
                "created",
                render::time_text(connection.create_time.as_ref()),
            ),
            (
                "updated",
                render::time_text(connection.update_time.as_ref()),
            ),
        ]);
        Table::key_value(rows)
    })
}

async fn get(session: &Session, output: &OutputOpt, opt: &GetOpt) -> anyhow::Result<()> {
    let name = session.connection_name(&opt.id)?;
    let view = if opt.show_secrets {
        pb::ConnectionView::WithSecrets
    } else {
        pb::ConnectionView::Basic
    };
    let connection = client(session)
        .get_connection(session.request(pb::GetConnectionRequest {
            name: name.clone(),
            view: view.into(),
        }))
        .await
        .map_err(|status| {
            let denied = status.code() == Code::PermissionDenied && opt.show_secrets;
            let error = ApiError::new(format!("cannot get connection \"{}\"", opt.id), status);
            anyhow::Error::new(if denied {
                error.with_hint(
                    "revealing secrets needs the OPERATOR or OWNER role and the workspace policy \
                     allow_secret_reveal (`switchboard policy set --allow-secret-reveal`)",
                )
            } else {
                error
            })
        })?
        .into_inner();
    print_connection(output, &connection)
}

/// Keys of a file that name the connection rather than set a field.
const ID_KEYS: &[&str] = &["connection_id", "connectionId", "id", "name"];
/// Output-only keys a file copied from `get -o yaml` may hold.
const OUTPUT_ONLY_KEYS: &[&str] = &[
    "secret_fields_set",
    "secretFieldsSet",
    "unknown_extra_keys",
    "unknownExtraKeys",
    "etag",
    "create_time",
    "createTime",
    "update_time",
    "updateTime",
];

async fn create(session: &Session, output: &OutputOpt, opt: CreateOpt) -> anyhow::Result<()> {
    check_stdin(&opt.fields)?;
    let document = opt.fields.file.as_deref().map(read_document).transpose()?;
    let interactive = !opt.no_input && input::stdin_is_terminal();
    let catalog = types::fetch_catalog(session).await?;

    let mut type_key = opt.type_key.clone().or_else(|| {
        document
            .as_ref()
            .and_then(|document| document.fields.get("type"))
            .and_then(Value::as_str)
            .map(str::to_owned)
    });
    if type_key.is_none() && interactive {
        let known: Vec<&str> = catalog.iter().map(|entry| entry.r#type.as_str()).collect();
        type_key = input::prompt_line(&format!("Type ({})", known.join(", ")))?;
    }
    let Some(type_key) = type_key else {
        usage!("--type is required (see `switchboard types`)");
    };
    let connection_type = types::find(&catalog, &type_key)?;

    let mut id = opt
        .id
        .clone()
        .or_else(|| document.as_ref().and_then(|document| document.id.clone()));
    if id.is_none() && interactive {
        id = input::prompt_line("Connection id (Airflow conn_id)")?;
    }
    let Some(id) = id else {
        usage!(
            "the connection id is required: switchboard connections create ID --type {type_key} …"
        );
    };

    let mut draft = Draft::default();
    draft.set("type", Value::String(type_key.clone()));
    if let Some(conn_type) = &opt.conn_type {
        draft.set("conn_type", Value::String(conn_type.clone()));
    }
    apply_field_flags(session, &mut draft, &opt.fields, Some(connection_type))?;
    if let Some(document) = &document {
        draft.merge_document(Target::Connection, &document.fields)?;
    }
    qualify_excluded(session, &mut draft)?;
    if interactive {
        prompt_required(&mut draft, connection_type)?;
    }

    let mut links = Vec::new();
    for deployment in &opt.link {
        links.push(pb::Link {
            deployment: session.deployment_name(deployment)?,
            ..Default::default()
        });
    }
    if let Some(document) = &document {
        for link in &document.links {
            links.push(link_from_document(session, link)?);
        }
    }

    let request = pb::CreateConnectionRequest {
        parent: session.workspace_name()?,
        connection_id: id.clone(),
        connection: Some(draft.to_connection()?),
        request_id: opt.request_id.clone().unwrap_or_else(input::new_request_id),
        links,
    };
    let connection = client(session)
        .create_connection(session.request(request))
        .await
        .or_refused(|| format!("cannot create connection \"{id}\""))?;
    eprintln!("Created connection \"{id}\".");
    if !connection_type.provider_package.is_empty() {
        eprintln!(
            "Airflow needs the provider package {} (add it to requirements.txt).",
            connection_type.provider_package
        );
    }
    unknown_keys::warn(connection_type, &connection.unknown_extra_keys, |_| true);
    print_connection(output, &connection)
}

/// Reads a connection (secrets masked) that `action` (e.g. `cannot update
/// connection "pg"`) needs; a missing one is reported as what stops it.
pub(crate) async fn fetch(
    session: &Session,
    id: &str,
    action: impl FnOnce() -> String,
) -> anyhow::Result<pb::Connection> {
    let name = session.connection_name(id)?;
    client(session)
        .get_connection(session.request(pb::GetConnectionRequest {
            name,
            view: pb::ConnectionView::Basic.into(),
        }))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| {
            if status.code() != Code::NotFound {
                return anyhow::Error::new(ApiError::new(action(), status));
            }
            let workspace = session.workspace().unwrap_or_default();
            let missing = Status::not_found(format!(
                "connection \"{id}\" does not exist in workspace {workspace}"
            ));
            anyhow::Error::new(ApiError::new(action(), missing).with_hint(format!(
                "create it first (`switchboard connections create {id} --type TYPE …`), \
                 or see `switchboard connections list`"
            )))
        })
}

/// The catalog entry of a connection's type, if the catalog has it.
pub(crate) async fn type_of(
    session: &Session,
    connection: &pb::Connection,
) -> anyhow::Result<Option<pb::ConnectionType>> {
    let catalog = types::fetch_catalog(session).await?;
    Ok(catalog
        .into_iter()
        .find(|entry| entry.r#type == connection.r#type))
}

async fn update(session: &Session, output: &OutputOpt, opt: UpdateOpt) -> anyhow::Result<()> {
    check_stdin(&opt.fields)?;
    let document = opt.fields.file.as_deref().map(read_document).transpose()?;
    if let Some(Document { links, .. }) = &document
        && !links.is_empty()
    {
        usage!("update does not change links; use `switchboard links`");
    }
    let current = fetch(session, &opt.id, || {
        format!("cannot update connection \"{}\"", opt.id)
    })
    .await?;
    let connection_type = type_of(session, &current).await?;

    let mut draft = Draft::default();
    apply_field_flags(session, &mut draft, &opt.fields, connection_type.as_ref())?;
    draft.apply_unsets(Target::Connection, &opt.unset)?;
    if let Some(document) = &document {
        draft.merge_document(Target::Connection, &document.fields)?;
    }
    qualify_excluded(session, &mut draft)?;
    if draft.is_empty() {
        usage!("nothing to update: pass --set, --unset, a field flag or --file");
    }
    let mut connection = draft.to_connection()?;
    connection.name = current.name.clone();
    connection.etag = opt.etag.clone().unwrap_or_default();
    let mask = draft.mask_paths("");
    let updated = client(session)
        .update_connection(session.request(pb::UpdateConnectionRequest {
            connection: Some(connection),
            update_mask: Some(prost_types::FieldMask {
                paths: mask.clone(),
            }),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot update connection \"{}\"", opt.id))?;
    eprintln!("Updated connection \"{}\": {}.", opt.id, mask.join(", "));
    if let Some(connection_type) = &connection_type {
        unknown_keys::warn(connection_type, &updated.unknown_extra_keys, |path| {
            unknown_keys::masked(&mask, path)
        });
    }
    print_connection(output, &updated)
}

async fn delete(session: &Session, opt: &DeleteOpt) -> anyhow::Result<()> {
    let name = session.connection_name(&opt.id)?;
    client(session)
        .delete_connection(session.request(pb::DeleteConnectionRequest {
            name,
            etag: opt.etag.clone().unwrap_or_default(),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot delete connection \"{}\"", opt.id))?;
    eprintln!("Deleted connection \"{}\" and its links.", opt.id);
    Ok(())
}

async fn versions(session: &Session, output: &OutputOpt, opt: &VersionsOpt) -> anyhow::Result<()> {
    let parent = session.connection_name(&opt.id)?;
    let client = client(session);
    let versions = all_pages(|page_token| {
        let mut client = client.clone();
        let request = session.request(pb::ListConnectionVersionsRequest {
            parent: parent.clone(),
            page_size: PAGE_SIZE,
            page_token,
        });
        async move {
            let page = client
                .list_connection_versions(request)
                .await
                .or_refused(|| format!("cannot list the versions of connection \"{}\"", opt.id))?;
            Ok((page.connection_versions, page.next_page_token))
        }
    })
    .await?;
    output.emit(
        &Value::Array(versions.iter().map(render::version_json).collect()),
        || {
            let mut table = Table::new(["VERSION", "ACTION", "ACTOR", "CHANGED FIELDS", "TIME"]);
            for version in &versions {
                table.row([
                    version.version.to_string(),
                    version.action.clone(),
                    version.actor.clone(),
                    render::or_dash(version.changed_fields.join(", ")),
                    render::time_text(version.create_time.as_ref()),
                ]);
            }
            table
        },
    )
}

async fn rollback(session: &Session, output: &OutputOpt, opt: &RollbackOpt) -> anyhow::Result<()> {
    let name = session.connection_name(&opt.id)?;
    let connection = client(session)
        .rollback_connection(session.request(pb::RollbackConnectionRequest {
            name,
            version: opt.version,
            etag: opt.etag.clone().unwrap_or_default(),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| {
            format!(
                "cannot roll back connection \"{}\" to version {}",
                opt.id, opt.version
            )
        })?;
    eprintln!(
        "Rolled back connection \"{}\" to version {}.",
        opt.id, opt.version
    );
    print_connection(output, &connection)
}
