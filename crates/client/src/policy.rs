//! `switchboard policy get|set`: the workspace policy.

use clap::{Args, Subcommand};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::workspace_service_client::WorkspaceServiceClient;

use crate::error::{CallResult, usage};
use crate::input;
use crate::output::{OutputOpt, Table};
use crate::render;
use crate::session::{ConnectOpt, Session};

/// Arguments of `switchboard policy`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  switchboard policy get\n  switchboard policy set --allow-local-export\n\n",
    crate::exit_codes_help!()
))]
pub struct PolicyArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(flatten)]
    output: OutputOpt,
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Shows the workspace policy.
    #[command(after_help = "Example:\n  switchboard policy get --workspace acme")]
    Get,
    /// Changes the workspace policy (OWNER only; audited).
    #[command(
        after_help = "Examples:\n  switchboard policy set --allow-local-export\n  \
        switchboard policy set --allow-secret-reveal=false"
    )]
    Set(SetOpt),
}

#[derive(Debug, Args)]
struct SetOpt {
    /// Lets users with a role export a deployment's connections for local
    /// development (`switchboard local env`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_local_export: Option<bool>,
    /// Lets OPERATOR and OWNER read secret values (`connections get --show-secrets`).
    #[arg(long, value_name = "BOOL", num_args = 0..=1, default_missing_value = "true")]
    allow_secret_reveal: Option<bool>,
    /// Changes the policy only if its etag is still this.
    #[arg(long)]
    etag: Option<String>,
}

/// `switchboard policy …`.
pub(crate) async fn run(args: PolicyArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.connect).await?;
    let result = run_with(&session, args).await;
    session.diagnose(result).await
}

async fn run_with(session: &Session, args: PolicyArgs) -> anyhow::Result<()> {
    let name = format!("{}/policy", session.workspace_name()?);
    let mut client = WorkspaceServiceClient::new(session.channel());
    let policy = match args.command {
        PolicyCommand::Get => client
            .get_workspace_policy(
                session.request(pb::GetWorkspacePolicyRequest { name: name.clone() }),
            )
            .await
            .or_refused(|| {
                format!(
                    "cannot get the policy of {}",
                    session.workspace().unwrap_or_default()
                )
            })?,
        PolicyCommand::Set(opt) => {
            let mut policy = pb::WorkspacePolicy {
                name: name.clone(),
                etag: opt.etag.clone().unwrap_or_default(),
                ..Default::default()
            };
            let mut paths = Vec::new();
            if let Some(allow) = opt.allow_local_export {
                policy.allow_local_export = allow;
                paths.push("allow_local_export".to_owned());
            }
            if let Some(allow) = opt.allow_secret_reveal {
                policy.allow_secret_reveal = allow;
                paths.push("allow_secret_reveal".to_owned());
            }
            if paths.is_empty() {
                usage!(
                    "nothing to set: pass --allow-local-export[=BOOL] or --allow-secret-reveal[=BOOL]"
                );
            }
            let updated = client
                .update_workspace_policy(session.request(pb::UpdateWorkspacePolicyRequest {
                    policy: Some(policy),
                    update_mask: Some(prost_types::FieldMask { paths }),
                    request_id: input::new_request_id(),
                }))
                .await
                .or_refused(|| {
                    format!(
                        "cannot change the policy of {}",
                        session.workspace().unwrap_or_default()
                    )
                })?;
            eprintln!(
                "Updated the policy of workspace {}.",
                session.workspace().unwrap_or_default()
            );
            updated
        }
    };
    args.output.emit(&render::policy_json(&policy), || {
        Table::key_value(vec![
            ("name", policy.name.clone()),
            ("allow_local_export", policy.allow_local_export.to_string()),
            (
                "allow_secret_reveal",
                policy.allow_secret_reveal.to_string(),
            ),
            ("etag", policy.etag.clone()),
            (
                "updated",
                render::or_dash(render::time_text(policy.update_time.as_ref())),
            ),
        ])
    })
}
