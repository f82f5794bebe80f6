//! `switchboard deployments list|get|create|update|delete|token|tokens|revoke-token`.

use std::path::PathBuf;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::deployment_service_client::DeploymentServiceClient;

use super::pages::{PAGE_SIZE, all_pages};
use crate::connections::quote;
use crate::context::write_private_file;
use crate::error::{CallResult, usage};
use crate::git_ignore;
use crate::input;
use crate::output::{OutputFormat, OutputOpt, Table, print_stdout};
use crate::render;
use crate::session::{ConnectOpt, Session, last_segment};

/// Arguments of `switchboard deployments`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  switchboard deployments create prod --namespace airflow-prod --secret-delivery token\n  switchboard deployments token prod --output-file prod.token\n\n",
    crate::exit_codes_help!()
))]
pub struct DeploymentsArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(flatten)]
    output: OutputOpt,
    #[command(subcommand)]
    command: DeploymentsCommand,
}

#[derive(Debug, Subcommand)]
enum DeploymentsCommand {
    /// Lists the workspace's deployments.
    #[command(after_help = "Examples:\n  switchboard deployments list\n  \
        switchboard deployments list --kind preview --parent prod")]
    List(ListOpt),
    /// Shows one deployment.
    #[command(after_help = "Example:\n  switchboard deployments get prod")]
    Get(IdOpt),
    /// Creates a deployment.
    #[command(after_help = "Examples:\n  \
        switchboard deployments create prod --display-name Production --namespace airflow-prod \
        --secret-delivery token\n  \
        switchboard deployments create pr-42 --kind preview --parent prod")]
    Create(CreateOpt),
    /// Changes a deployment's display name, namespace or secret delivery.
    #[command(after_help = "Example:\n  switchboard deployments update prod --secret-delivery env")]
    Update(UpdateOpt),
    /// Deletes a deployment, its links and tokens.
    #[command(
        after_help = "Example:\n  switchboard deployments delete prod --force   \
        # also deletes its branch and preview deployments"
    )]
    Delete(DeleteOpt),
    /// Issues a token for the Airflow shim; printed once, never shown again.
    #[command(
        after_help = "Examples:\n  switchboard deployments token prod --output-file prod.token\n  \
        TOKEN=$(switchboard deployments token prod --description ci)"
    )]
    Token(TokenOpt),
    /// Lists a deployment's tokens (never their secrets).
    #[command(after_help = "Example:\n  switchboard deployments tokens prod")]
    Tokens(IdOpt),
    /// Revokes a deployment token; the resolver refuses it from then on.
    #[command(after_help = "Example:\n  switchboard deployments revoke-token prod 3f9c0a")]
    RevokeToken(RevokeOpt),
}

/// A deployment kind on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Kind {
    Standard,
    Branch,
    Preview,
}

impl From<Kind> for pb::DeploymentKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Standard => Self::Standard,
            Kind::Branch => Self::Branch,
            Kind::Preview => Self::Preview,
        }
    }
}

/// How a deployment receives its connections in Kubernetes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Delivery {
    /// No Secret.
    None,
    /// A Secret with the resolver address and a token for the shim.
    Token,
    /// A Secret with the connections as AIRFLOW_CONN_* keys.
    Env,
}

impl From<Delivery> for pb::SecretDelivery {
    fn from(delivery: Delivery) -> Self {
        match delivery {
            Delivery::None => Self::None,
            Delivery::Token => Self::Token,
            Delivery::Env => Self::Env,
        }
    }
}

#[derive(Debug, Args)]
struct ListOpt {
    /// Only deployments of this kind.
    #[arg(long, value_enum)]
    kind: Option<Kind>,
    /// Only branch and preview deployments of this parent.
    #[arg(long)]
    parent: Option<String>,
}

#[derive(Debug, Args)]
struct IdOpt {
    /// The deployment id.
    id: String,
}

#[derive(Debug, Args)]
struct CreateOpt {
    /// The deployment id: lower-case letters, digits and `-`, starting with a letter.
    id: String,
    #[arg(long)]
    display_name: Option<String>,
    #[arg(long, value_enum, default_value_t = Kind::Standard)]
    kind: Kind,
    /// For branch and preview deployments: the standard deployment whose connections it sees.
    #[arg(long)]
    parent: Option<String>,
    /// Kubernetes namespace of the deployment.
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long, value_enum)]
    secret_delivery: Option<Delivery>,
    /// Idempotency key: a retry with the same id returns the first result.
    #[arg(long)]
    request_id: Option<String>,
}

#[derive(Debug, Args)]
struct UpdateOpt {
    /// The deployment id.
    id: String,
    #[arg(long)]
    display_name: Option<String>,
    #[arg(long)]
    namespace: Option<String>,
    #[arg(long, value_enum)]
    secret_delivery: Option<Delivery>,
    /// Updates only if the deployment's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

#[derive(Debug, Args)]
struct DeleteOpt {
    /// The deployment id.
    id: String,
    /// Also deletes the deployment's branch and preview deployments.
    #[arg(long)]
    force: bool,
    /// Deletes only if the deployment's etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

#[derive(Debug, Args)]
struct TokenOpt {
    /// The deployment id.
    id: String,
    /// What the token is for.
    #[arg(long, default_value = "")]
    description: String,
    /// Writes the token to this file (mode 0600) instead of standard output.
    #[arg(long, value_name = "FILE")]
    output_file: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct RevokeOpt {
    /// The deployment id.
    id: String,
    /// The token's id (the last segment of its name) or full name.
    token: String,
}

/// `switchboard deployments …`.
pub(crate) async fn run(args: DeploymentsArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.connect).await?;
    let output = &args.output;
    let result = match args.command {
        DeploymentsCommand::List(opt) => list(&session, output, &opt).await,
        DeploymentsCommand::Get(opt) => get(&session, output, &opt).await,
        DeploymentsCommand::Create(opt) => create(&session, output, &opt).await,
        DeploymentsCommand::Update(opt) => update(&session, output, &opt).await,
        DeploymentsCommand::Delete(opt) => delete(&session, &opt).await,
        DeploymentsCommand::Token(opt) => token(&session, output, &opt).await,
        DeploymentsCommand::Tokens(opt) => tokens(&session, output, &opt).await,
        DeploymentsCommand::RevokeToken(opt) => revoke(&session, output, &opt).await,
    };
    session.diagnose(result).await
}

fn client(session: &Session) -> DeploymentServiceClient<tonic::transport::Channel> {
    DeploymentServiceClient::new(session.channel())
}

fn print_deployment(output: &OutputOpt, deployment: &pb::Deployment) -> anyhow::Result<()> {
    output.emit(&render::deployment_json(deployment), || {
        Table::key_value(vec![
            ("name", deployment.name.clone()),
            (
                "display_name",
                render::or_dash(deployment.display_name.clone()),
            ),
            ("kind", render::kind_text(deployment.kind()).to_owned()),
            (
                "parent",
                render::or_dash(last_segment(&deployment.parent_deployment)),
            ),
            ("namespace", render::or_dash(deployment.namespace.clone())),
            (
                "secret_delivery",
                render::delivery_text(deployment.secret_delivery()).to_owned(),
            ),
            ("etag", deployment.etag.clone()),
            (
                "created",
                render::time_text(deployment.create_time.as_ref()),
            ),
            (
                "updated",
                render::time_text(deployment.update_time.as_ref()),
            ),
        ])
    })
}

async fn list(session: &Session, output: &OutputOpt, opt: &ListOpt) -> anyhow::Result<()> {
    let parent = session.workspace_name()?;
    let mut terms = Vec::new();
    if let Some(kind) = opt.kind {
        terms.push(format!(
            "kind = {}",
            quote(pb::DeploymentKind::from(kind).as_str_name())?
        ));
    }
    if let Some(parent_deployment) = &opt.parent {
        terms.push(format!(
            "parent_deployment = {}",
            quote(&session.deployment_name(parent_deployment)?)?
        ));
    }
    let filter = terms.join(" AND ");
    let client = client(session);
    let deployments = all_pages(|page_token| {
        let mut client = client.clone();
        let request = session.request(pb::ListDeploymentsRequest {
            parent: parent.clone(),
            page_size: PAGE_SIZE,
            page_token,
            filter: filter.clone(),
        });
        let parent = &parent;
        async move {
            let page = client
                .list_deployments(request)
                .await
                .or_refused(|| format!("cannot list the deployments of {parent}"))?;
            Ok((page.deployments, page.next_page_token))
        }
    })
    .await?;
    output.emit(
        &Value::Array(deployments.iter().map(render::deployment_json).collect()),
        || {
            let mut table = Table::new([
                "ID",
                "DISPLAY NAME",
                "KIND",
                "PARENT",
                "NAMESPACE",
                "SECRET DELIVERY",
            ]);
            for deployment in &deployments {
                table.row([
                    last_segment(&deployment.name).to_owned(),
                    render::or_dash(deployment.display_name.clone()),
                    render::kind_text(deployment.kind()).to_owned(),
                    render::or_dash(last_segment(&deployment.parent_deployment)),
                    render::or_dash(deployment.namespace.clone()),
                    render::delivery_text(deployment.secret_delivery()).to_owned(),
                ]);
            }
            table
        },
    )
}

async fn get(session: &Session, output: &OutputOpt, opt: &IdOpt) -> anyhow::Result<()> {
    let deployment = client(session)
        .get_deployment(session.request(pb::GetDeploymentRequest {
            name: session.deployment_name(&opt.id)?,
        }))
        .await
        .or_refused(|| format!("cannot get deployment \"{}\"", opt.id))?;
    print_deployment(output, &deployment)
}

async fn create(session: &Session, output: &OutputOpt, opt: &CreateOpt) -> anyhow::Result<()> {
    let parent_deployment = match (&opt.parent, opt.kind) {
        (Some(parent), _) => session.deployment_name(parent)?,
        (None, Kind::Branch | Kind::Preview) => {
            usage!(
                "--parent is required for a {} deployment",
                render::kind_text(opt.kind.into())
            )
        }
        (None, Kind::Standard) => String::new(),
    };
    let mut deployment = pb::Deployment {
        display_name: opt.display_name.clone().unwrap_or_default(),
        parent_deployment,
        namespace: opt.namespace.clone().unwrap_or_default(),
        ..Default::default()
    };
    deployment.set_kind(opt.kind.into());
    if let Some(delivery) = opt.secret_delivery {
        deployment.set_secret_delivery(delivery.into());
    }
    let created = client(session)
        .create_deployment(session.request(pb::CreateDeploymentRequest {
            parent: session.workspace_name()?,
            deployment_id: opt.id.clone(),
            deployment: Some(deployment),
            request_id: opt.request_id.clone().unwrap_or_else(input::new_request_id),
        }))
        .await
        .or_refused(|| format!("cannot create deployment \"{}\"", opt.id))?;
    eprintln!("Created deployment \"{}\".", opt.id);
    print_deployment(output, &created)
}

async fn update(session: &Session, output: &OutputOpt, opt: &UpdateOpt) -> anyhow::Result<()> {
    let mut deployment = pb::Deployment {
        name: session.deployment_name(&opt.id)?,
        etag: opt.etag.clone().unwrap_or_default(),
        ..Default::default()
    };
    let mut paths = Vec::new();
    if let Some(display_name) = &opt.display_name {
        deployment.display_name = display_name.clone();
        paths.push("display_name".to_owned());
    }
    if let Some(namespace) = &opt.namespace {
        deployment.namespace = namespace.clone();
        paths.push("namespace".to_owned());
    }
    if let Some(delivery) = opt.secret_delivery {
        deployment.set_secret_delivery(delivery.into());
        paths.push("secret_delivery".to_owned());
    }
    if paths.is_empty() {
        usage!("nothing to update: pass --display-name, --namespace or --secret-delivery");
    }
    let updated = client(session)
        .update_deployment(session.request(pb::UpdateDeploymentRequest {
            deployment: Some(deployment),
            update_mask: Some(prost_types::FieldMask { paths }),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot update deployment \"{}\"", opt.id))?;
    eprintln!("Updated deployment \"{}\".", opt.id);
    print_deployment(output, &updated)
}

async fn delete(session: &Session, opt: &DeleteOpt) -> anyhow::Result<()> {
    client(session)
        .delete_deployment(session.request(pb::DeleteDeploymentRequest {
            name: session.deployment_name(&opt.id)?,
            etag: opt.etag.clone().unwrap_or_default(),
            force: opt.force,
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot delete deployment \"{}\"", opt.id))?;
    eprintln!("Deleted deployment \"{}\".", opt.id);
    Ok(())
}

async fn token(session: &Session, output: &OutputOpt, opt: &TokenOpt) -> anyhow::Result<()> {
    let token = client(session)
        .create_deployment_token(session.request(pb::CreateDeploymentTokenRequest {
            parent: session.deployment_name(&opt.id)?,
            description: opt.description.clone(),
            request_id: input::new_request_id(),
        }))
        .await
        .or_refused(|| format!("cannot create a token for deployment \"{}\"", opt.id))?;
    if let Some(path) = &opt.output_file {
        write_private_file(path, format!("{}\n", token.token).as_bytes())?;
        git_ignore::warn_if_not_ignored(path);
        eprintln!(
            "Wrote token {} to {} (mode 0600); it is not shown again.",
            last_segment(&token.name),
            path.display()
        );
        return Ok(());
    }
    match output.format {
        // Only the token on stdout, so `TOKEN=$(…)` works.
        OutputFormat::Table => {
            eprintln!(
                "Token {} for deployment \"{}\"; it is not shown again:",
                last_segment(&token.name),
                opt.id
            );
            print_stdout(&format!("{}\n", token.token))
        }
        OutputFormat::Json | OutputFormat::Yaml => {
            output.emit(&render::token_json(&token), || Table::new(["TOKEN"]))
        }
    }
}

async fn tokens(session: &Session, output: &OutputOpt, opt: &IdOpt) -> anyhow::Result<()> {
    let parent = session.deployment_name(&opt.id)?;
    let client = client(session);
    let tokens = all_pages(|page_token| {
        let mut client = client.clone();
        let request = session.request(pb::ListDeploymentTokensRequest {
            parent: parent.clone(),
            page_size: PAGE_SIZE,
            page_token,
        });
        async move {
            let page = client
                .list_deployment_tokens(request)
                .await
                .or_refused(|| format!("cannot list the tokens of deployment \"{}\"", opt.id))?;
            Ok((page.deployment_tokens, page.next_page_token))
        }
    })
    .await?;
    output.emit(
        &Value::Array(tokens.iter().map(render::token_json).collect()),
        || {
            let mut table = Table::new(["TOKEN ID", "DESCRIPTION", "CREATED", "REVOKED"]);
            for token in &tokens {
                table.row([
                    last_segment(&token.name).to_owned(),
                    render::or_dash(token.description.clone()),
                    render::time_text(token.create_time.as_ref()),
                    render::or_dash(render::time_text(token.revoke_time.as_ref())),
                ]);
            }
            table
        },
    )
}

async fn revoke(session: &Session, output: &OutputOpt, opt: &RevokeOpt) -> anyhow::Result<()> {
    let name = if opt.token.starts_with("workspaces/") {
        opt.token.clone()
    } else {
        format!("{}/tokens/{}", session.deployment_name(&opt.id)?, opt.token)
    };
    let revoked = client(session)
        .revoke_deployment_token(session.request(pb::RevokeDeploymentTokenRequest { name }))
        .await
        .or_refused(|| {
            format!(
                "cannot revoke token {} of deployment \"{}\"",
                opt.token, opt.id
            )
        })?;
    eprintln!("Revoked token {}.", last_segment(&revoked.name));
    if output.is_table() {
        return Ok(());
    }
    output.emit(&render::token_json(&revoked), || Table::new(["TOKEN"]))
}
