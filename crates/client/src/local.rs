//! `switchboard local env`: a deployment's effective connections for a
//! laptop's Airflow, as `AIRFLOW_CONN_*` lines for a `.env` or as an Astro
//! CLI `airflow_settings.yaml`. Calls ResolverService.ListResolvedConnections
//! with the user's token, which the workspace policy `allow_local_export`
//! must allow; `--watch` rewrites the file when the revision changes.

use std::path::PathBuf;
use std::time::Duration;

use clap::{Args, Subcommand, ValueEnum};
use serde::Serialize;
use serde_json::Value;
use switchboard_domain::airflow::env_var_name;
use switchboard_proto::convert::struct_to_json;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::resolver_service_client::ResolverServiceClient;
use tonic::Code;

use crate::context::write_private_file;
use crate::error::ApiError;
use crate::git_ignore;
use crate::output::print_stdout;
use crate::session::{ConnectOpt, Session, Target};

/// Arguments of `switchboard local`.
#[derive(Debug, Args)]
#[command(after_help = concat!(
    "Example:\n  switchboard local env --deployment dev --output-file .env\n\n",
    crate::exit_codes_help!()
))]
pub struct LocalArgs {
    #[command(flatten)]
    connect: ConnectOpt,
    #[command(subcommand)]
    command: LocalCommand,
}

#[derive(Debug, Subcommand)]
enum LocalCommand {
    /// Writes a deployment's connections, secrets included, for local Airflow.
    /// Needs the workspace policy allow_local_export; every export is audited.
    #[command(after_help = "Examples:\n  \
        switchboard local env --deployment dev --output-file .env\n  \
        switchboard local env --deployment dev --format airflow-settings --output-file airflow_settings.yaml\n  \
        switchboard local env --deployment dev --output-file .env --watch\n\n\
        The .env lines are AIRFLOW_CONN_<CONN_ID>='<json>', which Airflow reads as connections. \
        The file holds secrets: it is written with mode 0600; keep it out of version control \
        (inside a git work tree that does not ignore it, a warning says so).")]
    Env(EnvOpt),
}

/// What `local env` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Format {
    /// `AIRFLOW_CONN_<ID>='<json>'` lines for a `.env` file.
    Dotenv,
    /// An Astro CLI `airflow_settings.yaml` (airflow.connections).
    AirflowSettings,
}

#[derive(Debug, Args)]
struct EnvOpt {
    /// The deployment whose effective connections are exported.
    #[arg(short = 'd', long)]
    deployment: String,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Dotenv)]
    format: Format,
    /// Writes this file (mode 0600, replaced atomically) instead of standard output.
    #[arg(long, value_name = "FILE")]
    output_file: Option<PathBuf>,
    /// Keeps running and rewrites the file whenever the deployment's
    /// connections change (needs --output-file).
    #[arg(long, requires = "output_file")]
    watch: bool,
    /// How often --watch asks the resolver, e.g. 30s. Each poll is an audited export.
    #[arg(long, default_value = "10s", value_parser = switchboard_domain::duration::parse)]
    interval: Duration,
    /// The resolver's address when it is served apart from control (default:
    /// the context's resolver endpoint, else the endpoint).
    #[arg(long, env = "SWITCHBOARD_RESOLVER_ENDPOINT")]
    resolver_endpoint: Option<String>,
}

/// `switchboard local …`.
pub(crate) async fn run(args: LocalArgs) -> anyhow::Result<()> {
    match args.command {
        LocalCommand::Env(opt) => env(&args.connect, &opt).await,
    }
}

async fn env(connect: &ConnectOpt, opt: &EnvOpt) -> anyhow::Result<()> {
    let target = Target::resolve(connect)?.for_resolver(opt.resolver_endpoint.as_deref())?;
    let session = target.connect().await?;
    let deployment = session.deployment_name(&opt.deployment)?;
    let mut client = ResolverServiceClient::new(session.channel());
    let response = session
        .diagnose(fetch(&session, &mut client, &deployment, &opt.deployment).await)
        .await?;
    let mut written = write(opt, &deployment, &response)?;
    if let Some(path) = &opt.output_file {
        git_ignore::warn_if_not_ignored(path);
    }
    if !opt.watch {
        return Ok(());
    }
    let mut revision = response.revision;
    eprintln!(
        "Watching deployment \"{}\" every {}s; Ctrl-C stops.",
        opt.deployment,
        opt.interval.as_secs()
    );
    loop {
        tokio::select! {
            _ = tokio::signal::ctrl_c() => return Ok(()),
            () = tokio::time::sleep(opt.interval) => {}
        }
        let response = match fetch(&session, &mut client, &deployment, &opt.deployment).await {
            Ok(response) => response,
            Err(err) if is_transient(&err) => {
                eprintln!("warning: {err:#}; retrying");
                continue;
            }
            Err(err) => return Err(err),
        };
        if response.revision == revision {
            continue;
        }
        revision = response.revision;
        let rendered = render(opt.format, &deployment, &response)?;
        if rendered != written {
            written = write(opt, &deployment, &response)?;
        }
    }
}

fn is_transient(err: &anyhow::Error) -> bool {
    err.downcast_ref::<ApiError>().is_some_and(|api| {
        matches!(
            api.code(),
            Code::Unavailable | Code::DeadlineExceeded | Code::ResourceExhausted
        )
    })
}

async fn fetch(
    session: &Session,
    client: &mut ResolverServiceClient<tonic::transport::Channel>,
    deployment: &str,
    deployment_id: &str,
) -> anyhow::Result<pb::ListResolvedConnectionsResponse> {
    client
        .list_resolved_connections(session.request(pb::ListResolvedConnectionsRequest {
            deployment: deployment.to_owned(),
        }))
        .await
        .map(tonic::Response::into_inner)
        .map_err(|status| {
            let code = status.code();
            let error = ApiError::new(
                format!("cannot export the connections of deployment \"{deployment_id}\""),
                status,
            );
            anyhow::Error::new(match code {
                Code::PermissionDenied => error.with_hint(
                    "local export needs the workspace policy allow_local_export and the AUTHOR, \
                     OPERATOR or OWNER role; an OWNER can enable it with \
                     `switchboard policy set --allow-local-export`",
                ),
                Code::Unimplemented => error.with_hint(
                    "this address does not serve the resolver: pass --resolver-endpoint \
                     HOST:PORT, or store it with `switchboard login --resolver-endpoint HOST:PORT`",
                ),
                _ => error,
            })
        })
}

/// Renders and writes the file (or standard output); the text written.
fn write(
    opt: &EnvOpt,
    deployment: &str,
    response: &pb::ListResolvedConnectionsResponse,
) -> anyhow::Result<String> {
    let text = render(opt.format, deployment, response)?;
    match &opt.output_file {
        Some(path) => {
            write_private_file(path, text.as_bytes())?;
            eprintln!(
                "Wrote {} connection(s) of {deployment} to {} (revision {}).",
                response.connections.len(),
                path.display(),
                response.revision
            );
        }
        None => print_stdout(&text)?,
    }
    for connection in &response.connections {
        let name = env_var_name(&connection.conn_id);
        if opt.format == Format::Dotenv && !is_shell_name(&name) {
            eprintln!(
                "warning: {name} holds '.' or '-': docker compose and python-dotenv read it, \
                 but a POSIX shell cannot `source` it"
            );
        }
    }
    Ok(text)
}

fn is_shell_name(name: &str) -> bool {
    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

fn render(
    format: Format,
    deployment: &str,
    response: &pb::ListResolvedConnectionsResponse,
) -> anyhow::Result<String> {
    let mut connections: Vec<&pb::ResolvedConnection> = response.connections.iter().collect();
    connections.sort_by(|left, right| left.conn_id.cmp(&right.conn_id));
    match format {
        Format::Dotenv => Ok(dotenv(deployment, response.revision, &connections)),
        Format::AirflowSettings => airflow_settings(deployment, response.revision, &connections),
    }
}

/// `AIRFLOW_CONN_<ID>='<json>'` lines.
fn dotenv(deployment: &str, revision: i64, connections: &[&pb::ResolvedConnection]) -> String {
    let mut text = format!(
        "# Airflow connections of {deployment} (revision {revision}), written by `switchboard local env`.\n\
         # Holds secrets: keep this file out of version control.\n"
    );
    for connection in connections {
        text.push_str(&format!(
            "{}='{}'\n",
            env_var_name(&connection.conn_id),
            dotenv_safe_json(&connection.airflow_json)
        ));
    }
    text
}

/// Rewrites JSON so that it can sit between single quotes in any `.env`
/// dialect: `'` becomes `\u0027` and a backslash escape `\\` becomes
/// `\u005c` (python-dotenv unescapes `\\` and `\'` even in single quotes;
/// shells and docker compose take single-quoted text literally). The JSON
/// still decodes to the same value; serialized JSON holds no raw line breaks.
fn dotenv_safe_json(json: &str) -> String {
    let mut out = String::with_capacity(json.len());
    let mut chars = json.chars();
    while let Some(c) = chars.next() {
        match c {
            '\'' => out.push_str("\\u0027"),
            '\\' => match chars.next() {
                Some('\\') => out.push_str("\\u005c"),
                Some(next) => {
                    out.push('\\');
                    out.push(next);
                }
                None => out.push('\\'),
            },
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            other => out.push(other),
        }
    }
    out
}

/// The Astro CLI's `airflow_settings.yaml`.
#[derive(Debug, Serialize)]
struct AirflowSettings {
    airflow: AirflowSection,
}

#[derive(Debug, Serialize)]
struct AirflowSection {
    connections: Vec<SettingsConnection>,
}

#[derive(Debug, Serialize)]
struct SettingsConnection {
    conn_id: String,
    conn_type: String,
    conn_host: String,
    conn_schema: String,
    conn_login: String,
    conn_password: String,
    conn_port: Option<i32>,
    conn_extra: Value,
}

fn airflow_settings(
    deployment: &str,
    revision: i64,
    connections: &[&pb::ResolvedConnection],
) -> anyhow::Result<String> {
    let settings = AirflowSettings {
        airflow: AirflowSection {
            connections: connections
                .iter()
                .map(|connection| SettingsConnection {
                    conn_id: connection.conn_id.clone(),
                    conn_type: connection.conn_type.clone(),
                    conn_host: connection.host.clone(),
                    conn_schema: connection.schema.clone(),
                    conn_login: connection.login.clone(),
                    conn_password: connection.password.clone(),
                    conn_port: (connection.port != 0).then_some(connection.port),
                    conn_extra: Value::Object(struct_to_json(connection.extra.as_ref())),
                })
                .collect(),
        },
    };
    let yaml = serde_yaml::to_string(&settings)?;
    Ok(format!(
        "# Airflow connections of {deployment} (revision {revision}), written by `switchboard local env`.\n\
         # Holds secrets: keep this file out of version control.\n{yaml}"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolved(conn_id: &str, json: &str) -> pb::ResolvedConnection {
        let mut extra = serde_json::Map::new();
        extra.insert("warehouse".into(), Value::from("WH"));
        pb::ResolvedConnection {
            conn_id: conn_id.into(),
            conn_type: "snowflake".into(),
            login: "svc".into(),
            password: "p'w\\d".into(),
            port: 443,
            extra: Some(switchboard_proto::convert::json_to_struct(&extra)),
            airflow_json: json.into(),
            ..Default::default()
        }
    }

    #[test]
    fn json_is_safe_between_single_quotes_and_decodes_the_same() {
        let original = r#"{"password":"it's a \\ back\"slash\u00e9","n":1}"#;
        let safe = dotenv_safe_json(original);
        assert!(!safe.contains('\''));
        assert!(!safe.contains("\\\\"));
        let left: Value = serde_json::from_str(original).expect("original");
        let right: Value = serde_json::from_str(&safe).expect("safe");
        assert_eq!(left, right);
    }

    #[test]
    fn dotenv_lines_are_sorted_and_upper_cased() {
        let first = resolved("warehouse", r#"{"conn_type":"snowflake"}"#);
        let second = resolved("Analytics", r#"{"conn_type":"postgres"}"#);
        let response = pb::ListResolvedConnectionsResponse {
            connections: vec![first, second],
            revision: 7,
            deployment: "workspaces/acme/deployments/dev".to_owned(),
        };
        let text =
            render(Format::Dotenv, "workspaces/acme/deployments/dev", &response).expect("render");
        let lines: Vec<&str> = text.lines().filter(|line| !line.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                r#"AIRFLOW_CONN_ANALYTICS='{"conn_type":"postgres"}'"#,
                r#"AIRFLOW_CONN_WAREHOUSE='{"conn_type":"snowflake"}'"#,
            ]
        );
        assert!(text.contains("revision 7"));
    }

    #[test]
    fn airflow_settings_follow_the_astro_layout() {
        let response = pb::ListResolvedConnectionsResponse {
            connections: vec![resolved("warehouse", "{}")],
            revision: 3,
            deployment: "workspaces/acme/deployments/d".to_owned(),
        };
        let text = render(Format::AirflowSettings, "d", &response).expect("render");
        let parsed: Value = serde_yaml::from_str(&text).expect("yaml");
        let connection = &parsed["airflow"]["connections"][0];
        assert_eq!(connection["conn_id"], "warehouse");
        assert_eq!(connection["conn_type"], "snowflake");
        assert_eq!(connection["conn_login"], "svc");
        assert_eq!(connection["conn_password"], "p'w\\d");
        assert_eq!(connection["conn_port"], 443);
        assert_eq!(connection["conn_extra"]["warehouse"], "WH");
    }
}
