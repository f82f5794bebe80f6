//! `switchboard types [TYPE]`: the catalog of connection types, and the
//! catalog lookups other commands use to prompt for and type parameters.

use clap::Args;
use serde_json::Value;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;

use super::pages::{PAGE_SIZE, all_pages};
use crate::error::{CallResult, usage};
use crate::output::{OutputOpt, Table, print_stdout};
use crate::render;
use crate::session::{ConnectOpt, Session};

/// Arguments of `switchboard types`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Examples:\n  switchboard types\n  switchboard types snowflake_private_key\n\n\
    The parameters of a type say which fields are required and which are secret (read them \
    with --set-secret, never on the command line), and the provider package to add to the \
    Airflow image's requirements.txt.",
    "\n\n",
    crate::exit_codes_help!()
))]
pub struct TypesArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(flatten)]
    output: OutputOpt,
    /// A catalog key such as `postgres`; shows its parameters.
    #[arg(value_name = "TYPE")]
    type_key: Option<String>,
}

/// Every catalog entry, all pages.
pub(crate) async fn fetch_catalog(session: &Session) -> anyhow::Result<Vec<pb::ConnectionType>> {
    let client = ConnectionServiceClient::new(session.channel());
    all_pages(|page_token| {
        let mut client = client.clone();
        let request = session.request(pb::ListConnectionTypesRequest {
            page_size: PAGE_SIZE,
            page_token,
        });
        async move {
            let page = client
                .list_connection_types(request)
                .await
                .or_refused(|| "cannot list connection types".to_owned())?;
            Ok((page.connection_types, page.next_page_token))
        }
    })
    .await
}

/// One catalog entry; a usage error listing the known keys when absent.
pub(crate) fn find<'a>(
    catalog: &'a [pb::ConnectionType],
    type_key: &str,
) -> anyhow::Result<&'a pb::ConnectionType> {
    match catalog.iter().find(|entry| entry.r#type == type_key) {
        Some(entry) => Ok(entry),
        None => usage!(
            "unknown connection type '{type_key}'; known types: {}",
            catalog
                .iter()
                .map(|entry| entry.r#type.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// `switchboard types`.
pub(crate) async fn run(args: TypesArgs) -> anyhow::Result<()> {
    let session = Session::open(&args.connect).await?;
    let result = run_with(&session, args).await;
    session.diagnose(result).await
}

async fn run_with(session: &Session, args: TypesArgs) -> anyhow::Result<()> {
    let catalog = fetch_catalog(session).await?;
    match &args.type_key {
        None => args.output.emit(
            &Value::Array(catalog.iter().map(render::connection_type_json).collect()),
            || {
                let mut table = Table::new([
                    "TYPE",
                    "NAME",
                    "CONN TYPE",
                    "DEFAULT PORT",
                    "PROVIDER PACKAGE",
                ]);
                for entry in &catalog {
                    table.row([
                        entry.r#type.clone(),
                        entry.display_name.clone(),
                        entry.conn_type.clone(),
                        match entry.default_port {
                            0 => "-".to_owned(),
                            port => port.to_string(),
                        },
                        render::or_dash(entry.provider_package.clone()),
                    ]);
                }
                table
            },
        ),
        Some(type_key) => {
            let entry = find(&catalog, type_key)?;
            if args.output.is_table() {
                let mut header = format!(
                    "{} ({})\nAirflow conn_type: {}\n",
                    entry.display_name, entry.r#type, entry.conn_type
                );
                if entry.default_port != 0 {
                    header.push_str(&format!("Default port: {}\n", entry.default_port));
                }
                if !entry.provider_package.is_empty() {
                    header.push_str(&format!(
                        "Provider package: {} (add it to requirements.txt)\n",
                        entry.provider_package
                    ));
                }
                header.push('\n');
                print_stdout(&header)?;
            }
            args.output.emit(&render::connection_type_json(entry), || {
                let mut table = Table::new([
                    "PARAMETER",
                    "FIELD",
                    "REQUIRED",
                    "SECRET",
                    "TYPE",
                    "DESCRIPTION",
                ]);
                for parameter in &entry.parameters {
                    table.row([
                        parameter.name.clone(),
                        parameter.field.clone(),
                        yes_no(parameter.required),
                        yes_no(parameter.secret),
                        render::parameter_type_text(parameter).to_owned(),
                        parameter.description.clone(),
                    ]);
                }
                table
            })
        }
    }
}

fn yes_no(flag: bool) -> String {
    if flag { "yes" } else { "no" }.to_owned()
}
