//! `switchboard links list|get|create|update|delete`: a connection linked to
//! a deployment, with field overrides (`--set schema=PROD`).

use clap::{Args, Subcommand};
use serde_json::Value;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;

use super::pages::{PAGE_SIZE, all_pages};
use crate::connections;
use crate::error::{CallResult, usage};
use crate::fields::{self, Draft, SecretOpt, Target};
use crate::input;
use crate::output::{OutputOpt, Table};
use crate::render;
use crate::session::{ConnectOpt, Session, last_segment};
use crate::unknown_keys;

/// Arguments of `switchboard links`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  switchboard links list warehouse\n  switchboard links create warehouse --deployment prod --set schema=PROD --set extra.warehouse=WH\n\n",
    crate::exit_codes_help!()
))]
pub struct LinksArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(flatten)]
    output: OutputOpt,
    #[command(subcommand)]
    command: LinksCommand,
}

#[derive(Debug, Subcommand)]
enum LinksCommand {
    /// Lists the deployments a connection is linked to, with their overrides.
    #[command(after_help = "Example:\n  switchboard links list warehouse")]
    List(ListOpt),
    /// Shows one link.
    #[command(after_help = "Example:\n  switchboard links get warehouse --deployment prod")]
    Get(LinkId),
    /// Links a connection to a deployment, with optional overrides.
    #[command(after_help = "Examples:\n  \
        switchboard links create warehouse --deployment prod --set schema=PROD --set extra.warehouse=WH\n  \
        switchboard links create pg --deployment dev --set-secret password=@dev.pass\n  \
        switchboard links create warehouse --deployment sandbox --remove extra.role")]
    Create(Box<CreateOpt>),
    /// Changes a link's overrides; those not named keep their values.
    #[command(after_help = "Examples:\n  \
        switchboard links update warehouse --deployment prod --set extra.warehouse=BIG_WH --unset schema\n  \
        switchboard links update warehouse --deployment prod --unset extra.warehouse")]
    Update(Box<UpdateOpt>),
    /// Unlinks a connection from a deployment.
    #[command(after_help = "Example:\n  switchboard links delete warehouse --deployment prod")]
    Delete(DeleteOpt),
}

#[derive(Debug, Args)]
struct ListOpt {
    /// The connection id.
    connection: String,
}

#[derive(Debug, Args)]
struct LinkId {
    /// The connection id.
    connection: String,
    /// The deployment id.
    #[arg(short = 'd', long)]
    deployment: String,
}

/// Override flags shared by create and update.
#[derive(Debug, Args)]
struct OverrideFlags {
    /// Overrides a field, FIELD=VALUE: host, schema, login, port or
    /// extra.KEY. Repeatable. Use --set-secret for the password and secret
    /// extra keys.
    #[arg(long = "set", value_name = "FIELD=VALUE")]
    set: Vec<String>,
    /// Removes an extra key from what this deployment sees (overrides it with
    /// null), e.g. extra.role. Repeatable.
    #[arg(long = "remove", value_name = "extra.KEY")]
    remove: Vec<String>,
    #[command(flatten)]
    secrets: SecretOpt,
}

#[derive(Debug, Args)]
struct CreateOpt {
    #[command(flatten)]
    link: LinkId,
    #[command(flatten)]
    overrides: OverrideFlags,
    /// Idempotency key: a retry with the same id returns the first result.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Debug, Args)]
struct UpdateOpt {
    #[command(flatten)]
    link: LinkId,
    #[command(flatten)]
    overrides: OverrideFlags,
    /// Drops an override, so the connection's own value shows through again
    /// (host, schema, login, password, port or extra.KEY). Repeatable.
    #[arg(long = "unset", value_name = "FIELD")]
    unset: Vec<String>,
    /// Updates only if the link's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

#[derive(Debug, Args)]
struct DeleteOpt {
    #[command(flatten)]
    link: LinkId,
    /// Deletes only if the link's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

/// `switchboard links …`.
pub(crate) async fn run(args: LinksArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.connect).await?;
    let output = &args.output;
    let result = match args.command {
        LinksCommand::List(opt) => list(&session, output, &opt).await,
        LinksCommand::Get(opt) => get(&session, output, &opt).await,
        LinksCommand::Create(opt) => create(&session, output, &opt).await,
        LinksCommand::Update(opt) => update(&session, output, &opt).await,
        LinksCommand::Delete(opt) => delete(&session, &opt).await,
    };
    session.diagnose(result).await
}

fn client(session: &Session) -> ConnectionServiceClient<tonic::transport::Channel> {
    ConnectionServiceClient::new(session.channel())
}

fn link_name(session: &Session, link: &LinkId) -> anyhow::Result<String> {
    Ok(format!(
        "{}/links/{}",
        session.connection_name(&link.connection)?,
        last_segment(&link.deployment)
    ))
}

fn describe(link: &LinkId) -> String {
    format!(
        "the link of connection \"{}\" to deployment \"{}\"",
        link.connection, link.deployment
    )
}

fn print_link(output: &OutputOpt, link: &pb::Link) -> anyhow::Result<()> {
    output.emit(&render::link_json(link), || {
        Table::key_value(vec![
            ("name", link.name.clone()),
            ("deployment", link.deployment.clone()),
            ("overrides", render::or_dash(render::overrides_text(link))),
            (
                "secret_fields_set",
                render::or_dash(link.secret_fields_set.join(", ")),
            ),
            ("etag", link.etag.clone()),
            ("created", render::time_text(link.create_time.as_ref())),
            ("updated", render::time_text(link.update_time.as_ref())),
        ])
    })
}

async fn list(session: &Session, output: &OutputOpt, opt: &ListOpt) -> anyhow::Result<()> {
    let parent = session.connection_name(&opt.connection)?;
    let client = client(session);
    let links = all_pages(|page_token| {
        let mut client = client.clone();
        let request = session.request(pb::ListLinksRequest {
            parent: parent.clone(),
            page_size: PAGE_SIZE,
            page_token,
        });
        async move {
            let page = client.list_links(request).await.or_refused(|| {
                format!("cannot list the links of connection \"{}\"", opt.connection)
            })?;
            Ok((page.links, page.next_page_token))
        }
    })
    .await?;
    output.emit(
        &Value::Array(links.iter().map(render::link_json).collect()),
        || {
            let mut table = Table::new(["DEPLOYMENT", "OVERRIDES", "SECRETS SET", "UPDATED"]);
            for link in &links {
                table.row([
                    last_segment(&link.deployment).to_owned(),
                    render::or_dash(render::overrides_text(link)),
                    render::or_dash(link.secret_fields_set.join(", ")),
                    render::time_text(link.update_time.as_ref()),
                ]);
            }
            table
        },
    )
}

async fn get(session: &Session, output: &OutputOpt, opt: &LinkId) -> anyhow::Result<()> {
    let link = client(session)
        .get_link(session.request(pb::GetLinkRequest {
            name: link_name(session, opt)?,
        }))
        .await
        .or_refused(|| format!("cannot get {}", describe(opt)))?;
    print_link(output, &link)
}

/// The override draft of `flags` (and `unset`), typed by the connection's
/// type, which is returned too; `action` says what fails if the connection
/// can't be read.
async fn override_draft(
    session: &Session,
    link: &LinkId,
    flags: &OverrideFlags,
    unset: &[String],
    action: impl FnOnce() -> String,
) -> anyhow::Result<(Draft, Option<pb::ConnectionType>)> {
    input::check_single_stdin_reader(&[(
        "--password-stdin / --set-secret FIELD=-",
        flags.secrets.reads_stdin(),
    )])?;
    let connection = connections::fetch(session, &link.connection, action).await?;
    let connection_type = connections::type_of(session, &connection).await?;
    let mut draft = Draft::default();
    draft.apply_sets(Target::LinkOverrides, connection_type.as_ref(), &flags.set)?;
    for path in &flags.remove {
        let path = fields::normalize_path(Target::LinkOverrides, path)?;
        if !path.starts_with("extra.") {
            usage!("--remove {path}: only extra keys can be removed; use --set to override {path}");
        }
        draft.set(path, Value::Null);
    }
    draft.apply_unsets(Target::LinkOverrides, unset)?;
    draft.apply_secrets(Target::LinkOverrides, &flags.secrets)?;
    Ok((draft, connection_type))
}

async fn create(session: &Session, output: &OutputOpt, opt: &CreateOpt) -> anyhow::Result<()> {
    let (draft, connection_type) = override_draft(session, &opt.link, &opt.overrides, &[], || {
        format!("cannot create {}", describe(&opt.link))
    })
    .await?;
    let link = pb::Link {
        deployment: session.deployment_name(&opt.link.deployment)?,
        overrides: (!draft.is_empty())
            .then(|| draft.to_overrides())
            .transpose()?,
        ..Default::default()
    };
    let created = client(session)
        .create_link(session.request(pb::CreateLinkRequest {
            parent: session.connection_name(&opt.link.connection)?,
            link: Some(link),
            request_id: opt.request_id.clone().unwrap_or_else(input::new_request_id),
        }))
        .await
        .or_refused(|| format!("cannot create {}", describe(&opt.link)))?;
    eprintln!(
        "Linked connection \"{}\" to deployment \"{}\".",
        opt.link.connection, opt.link.deployment
    );
    if let Some(connection_type) = &connection_type {
        unknown_keys::warn(connection_type, &created.unknown_extra_keys, |_| true);
    }
    print_link(output, &created)
}

async fn update(session: &Session, output: &OutputOpt, opt: &UpdateOpt) -> anyhow::Result<()> {
    let (draft, connection_type) =
        override_draft(session, &opt.link, &opt.overrides, &opt.unset, || {
            format!("cannot update {}", describe(&opt.link))
        })
        .await?;
    if draft.is_empty() {
        usage!("nothing to update: pass --set, --unset, --remove or a secret option");
    }
    let link = pb::Link {
        name: link_name(session, &opt.link)?,
        deployment: session.deployment_name(&opt.link.deployment)?,
        overrides: Some(draft.to_overrides()?),
        etag: opt.etag.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mask = draft.mask_paths("overrides.");
    let updated = client(session)
        .update_link(session.request(pb::UpdateLinkRequest {
            link: Some(link),
            update_mask: Some(prost_types::FieldMask { paths: mask }),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot update {}", describe(&opt.link)))?;
    eprintln!(
        "Updated the link of connection \"{}\" to deployment \"{}\".",
        opt.link.connection, opt.link.deployment
    );
    if let Some(connection_type) = &connection_type {
        let written = draft.mask_paths("");
        unknown_keys::warn(connection_type, &updated.unknown_extra_keys, |path| {
            unknown_keys::masked(&written, path)
        });
    }
    print_link(output, &updated)
}

async fn delete(session: &Session, opt: &DeleteOpt) -> anyhow::Result<()> {
    client(session)
        .delete_link(session.request(pb::DeleteLinkRequest {
            name: link_name(session, &opt.link)?,
            etag: opt.etag.clone().unwrap_or_default(),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot delete {}", describe(&opt.link)))?;
    eprintln!(
        "Unlinked connection \"{}\" from deployment \"{}\".",
        opt.link.connection, opt.link.deployment
    );
    Ok(())
}
