//! Contexts: named endpoints with a stored token and default workspace, kept
//! in `$XDG_CONFIG_HOME/switchboard/config.toml` (or `SWITCHBOARD_CONFIG`)
//! with mode 0600, and the `login`, `logout` and `contexts` commands.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use base64::Engine as _;
use clap::{Args, Subcommand};
use serde::{Deserialize, Serialize};
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;

use crate::error::{CallResult, usage};
use crate::input;
use crate::output::Table;
use crate::session::{self, Target};

/// Name of the context `login` writes when `--context` is not given.
const DEFAULT_CONTEXT: &str = "default";
/// Environment variable naming the config file, for tests and unusual setups.
const CONFIG_ENV: &str = "SWITCHBOARD_CONFIG";

/// The config file: contexts and which one is current.
#[derive(Debug, Default, Serialize, Deserialize)]
pub(crate) struct ConfigFile {
    /// The context used when `--context` is not given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current_context: Option<String>,
    #[serde(default)]
    pub(crate) contexts: BTreeMap<String, StoredContext>,
}

/// One context: where the server is and how to talk to it.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
pub(crate) struct StoredContext {
    /// Normalized endpoint URL, e.g. `http://127.0.0.1:50051`.
    pub(crate) endpoint: String,
    /// The resolver's endpoint when it is served apart from control.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) resolver_endpoint: Option<String>,
    /// The user token (a JWT). Absent after `logout`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) token: Option<String>,
    /// Default workspace for resource names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) workspace: Option<String>,
    /// PEM file of the CA that signed the server's certificate.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) ca_cert: Option<PathBuf>,
    /// Name to verify in the server's certificate, when it differs from the host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) tls_server_name: Option<String>,
}

impl ConfigFile {
    /// Where the config file lives.
    pub(crate) fn path() -> anyhow::Result<PathBuf> {
        if let Some(path) = std::env::var_os(CONFIG_ENV).filter(|path| !path.is_empty()) {
            return Ok(PathBuf::from(path));
        }
        let dir = dirs::config_dir().context(
            "cannot find the user's config dir: set XDG_CONFIG_HOME, HOME or SWITCHBOARD_CONFIG",
        )?;
        Ok(dir.join("switchboard").join("config.toml"))
    }

    /// Reads the config file; an absent file is an empty config.
    pub(crate) fn load() -> anyhow::Result<Self> {
        let path = Self::path()?;
        let text = match fs::read_to_string(&path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(err) => {
                return Err(anyhow::Error::new(err)
                    .context(format!("cannot read the config file {}", path.display())));
            }
        };
        if let Ok(metadata) = fs::metadata(&path)
            && metadata.permissions().mode() & 0o077 != 0
        {
            eprintln!(
                "warning: {} holds tokens but others may read it; run chmod 600 on it",
                path.display()
            );
        }
        toml::from_str(&text)
            .with_context(|| format!("cannot parse the config file {}", path.display()))
    }

    /// Writes the config file atomically with mode 0600 (its dir 0700).
    pub(crate) fn save(&self) -> anyhow::Result<PathBuf> {
        let path = Self::path()?;
        let text = toml::to_string_pretty(self).context("cannot serialize the config")?;
        write_private_file(&path, text.as_bytes())?;
        Ok(path)
    }

    /// The context `--context` names, else the current one.
    pub(crate) fn selected(
        &self,
        name: Option<&str>,
    ) -> anyhow::Result<Option<(&str, &StoredContext)>> {
        match name {
            Some(name) => match self.contexts.get_key_value(name) {
                Some((key, context)) => Ok(Some((key.as_str(), context))),
                None => usage!(
                    "no context named '{name}' (see `switchboard contexts list`; `switchboard login --context {name}` creates it)"
                ),
            },
            None => Ok(self
                .current_context
                .as_deref()
                .and_then(|name| self.contexts.get_key_value(name))
                .map(|(key, context)| (key.as_str(), context))),
        }
    }
}

/// Writes `bytes` to `path` as a private file (mode 0600, a created parent
/// dir 0700) through a fresh temporary file in the same dir, opened with
/// `O_EXCL | O_NOFOLLOW` and renamed into place: readers never see a partial
/// file, and a symlink planted at the path is replaced, not written through.
pub(crate) fn write_private_file(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    switchboard_store::private_file::write(path, bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Options of `switchboard login`.
#[derive(Debug, Args)]
pub struct LoginOpt {
    /// The server: HOST:PORT (plaintext, or TLS with --ca-cert),
    /// http://HOST:PORT or https://HOST:PORT.
    #[arg(long, env = "SWITCHBOARD_ENDPOINT")]
    endpoint: String,
    /// The resolver's address, when it is served apart from control
    /// (`local env` calls it). Defaults to --endpoint.
    #[arg(long, env = "SWITCHBOARD_RESOLVER_ENDPOINT")]
    resolver_endpoint: Option<String>,
    /// Name of the context to create or replace; it becomes the current one.
    #[arg(long = "context", env = "SWITCHBOARD_CONTEXT", default_value = DEFAULT_CONTEXT)]
    context_name: String,
    /// Reads the token from this file instead of prompting.
    #[arg(long, env = "SWITCHBOARD_TOKEN_FILE", conflicts_with = "token_stdin")]
    token_file: Option<PathBuf>,
    /// Reads the token from standard input (implied when stdin is not a terminal).
    #[arg(long)]
    token_stdin: bool,
    /// Default workspace for this context (else the token's only workspace, if it has one).
    #[arg(short = 'w', long, env = "SWITCHBOARD_WORKSPACE")]
    workspace: Option<String>,
    /// PEM file of the CA that signed the server's certificate; implies TLS.
    #[arg(long, env = "SWITCHBOARD_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Name to verify in the server's certificate, when it differs from the host.
    #[arg(long, env = "SWITCHBOARD_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Stores the context without checking the token against the server.
    #[arg(long)]
    no_verify: bool,
}

/// Options of `switchboard logout`.
#[derive(Debug, Args)]
pub struct LogoutOpt {
    /// The context to log out of (default: the current one).
    #[arg(long = "context", env = "SWITCHBOARD_CONTEXT")]
    context_name: Option<String>,
}

/// `switchboard contexts …`.
#[derive(Debug, Subcommand)]
pub enum ContextsCommand {
    /// Lists the stored contexts (never their tokens).
    #[command(after_help = "Example:\n  switchboard contexts list")]
    List,
    /// Makes a context the current one.
    #[command(after_help = "Example:\n  switchboard contexts use prod")]
    Use {
        /// The context's name.
        name: String,
    },
    /// Deletes a context and its token.
    #[command(after_help = "Example:\n  switchboard contexts delete staging")]
    Delete {
        /// The context's name.
        name: String,
    },
}

/// Claims of a user JWT shown after login; read without verifying the
/// signature (the server verifies it).
#[derive(Debug, Deserialize)]
struct ShownClaims {
    #[serde(default)]
    sub: String,
    #[serde(default)]
    exp: Option<i64>,
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

/// When a stored token expires, read from its claims (unverified).
fn expiry(token: &str) -> Option<chrono::DateTime<chrono::Utc>> {
    peek_claims(token)?
        .exp
        .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
}

fn peek_claims(token: &str) -> Option<ShownClaims> {
    let payload = token.split('.').nth(1)?;
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(payload.trim_end_matches('='))
        .ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// `switchboard login`.
pub(crate) async fn login(opt: LoginOpt) -> anyhow::Result<()> {
    let endpoint = session::normalize_endpoint(&opt.endpoint, opt.ca_cert.is_some())?;
    let resolver_endpoint = opt
        .resolver_endpoint
        .as_deref()
        .map(|address| session::normalize_endpoint(address, opt.ca_cert.is_some()))
        .transpose()?;
    let token = if let Some(path) = &opt.token_file {
        input::read_secret_file(path)?
    } else if opt.token_stdin || !input::stdin_is_terminal() {
        input::read_stdin_secret("the token")?
    } else {
        input::prompt_secret("Token")?
    };
    if token.is_empty() {
        usage!("the token is empty");
    }
    if token.chars().any(char::is_whitespace) {
        usage!("the token contains whitespace; pass exactly one token");
    }
    let claims = peek_claims(&token);
    let workspace = opt.workspace.clone().or_else(|| {
        claims
            .as_ref()
            .filter(|claims| claims.roles.len() == 1)
            .and_then(|claims| claims.roles.keys().next().cloned())
    });
    let context = StoredContext {
        endpoint,
        resolver_endpoint,
        token: Some(token),
        workspace,
        ca_cert: opt.ca_cert.clone(),
        tls_server_name: opt.tls_server_name.clone(),
    };
    if !opt.no_verify {
        verify(&context).await?;
    }
    let mut config = ConfigFile::load()?;
    config
        .contexts
        .insert(opt.context_name.clone(), context.clone());
    config.current_context = Some(opt.context_name.clone());
    let path = config.save()?;

    let who = claims
        .as_ref()
        .map(|claims| {
            let roles = claims
                .roles
                .iter()
                .map(|(workspace, role)| format!("{workspace}={role}"))
                .collect::<Vec<_>>()
                .join(", ");
            let expiry = claims
                .exp
                .and_then(|exp| chrono::DateTime::from_timestamp(exp, 0))
                .map(|time| format!(", expires {}", time.to_rfc3339()))
                .unwrap_or_default();
            format!(" as {} ({roles}{expiry})", claims.sub)
        })
        .unwrap_or_default();
    println!(
        "Logged in to {}{who}.\nContext '{}' (workspace: {}) saved in {}.",
        context.endpoint,
        opt.context_name,
        context
            .workspace
            .as_deref()
            .unwrap_or("none; pass --workspace"),
        path.display()
    );
    Ok(())
}

/// Calls ListConnectionTypes, which any user with a role may, to check the
/// endpoint and token before storing them.
async fn verify(context: &StoredContext) -> anyhow::Result<()> {
    let target = Target::from_context(context)?;
    let session = target.connect().await?;
    let result = ConnectionServiceClient::new(session.channel())
        .list_connection_types(session.request(pb::ListConnectionTypesRequest {
            page_size: 1,
            page_token: String::new(),
        }))
        .await
        .or_refused(|| format!("cannot log in to {}", context.endpoint));
    session.diagnose(result).await?;
    Ok(())
}

/// `switchboard logout`.
pub(crate) fn logout(opt: &LogoutOpt) -> anyhow::Result<()> {
    let mut config = ConfigFile::load()?;
    let name = match config.selected(opt.context_name.as_deref())? {
        Some((name, _)) => name.to_owned(),
        None => usage!("no current context; name one with --context"),
    };
    if let Some(context) = config.contexts.get_mut(&name) {
        context.token = None;
    }
    config.save()?;
    println!("Logged out of context '{name}'.");
    Ok(())
}

/// `switchboard contexts …`.
pub(crate) fn run_contexts(command: ContextsCommand) -> anyhow::Result<()> {
    let mut config = ConfigFile::load()?;
    match command {
        ContextsCommand::List => {
            let now = chrono::Utc::now().timestamp();
            let mut table = Table::new(["CURRENT", "NAME", "ENDPOINT", "WORKSPACE", "TOKEN"]);
            let mut expired = Vec::new();
            for (name, context) in &config.contexts {
                let current = config.current_context.as_deref() == Some(name.as_str());
                let token = match &context.token {
                    None => "none".to_owned(),
                    Some(token) => match expiry(token).filter(|exp| exp.timestamp() <= now) {
                        Some(exp) => {
                            expired.push(name.as_str());
                            format!("expired {}", exp.to_rfc3339())
                        }
                        None => "stored".to_owned(),
                    },
                };
                table.row([
                    if current { "*" } else { "" }.to_owned(),
                    name.clone(),
                    context.endpoint.clone(),
                    context.workspace.clone().unwrap_or_default(),
                    token,
                ]);
            }
            table.print()?;
            for name in expired {
                eprintln!(
                    "warning: the token of context '{name}' has expired; \
                     run `switchboard login --context {name}` with a new one"
                );
            }
        }
        ContextsCommand::Use { name } => {
            if !config.contexts.contains_key(&name) {
                usage!("no context named '{name}' (see `switchboard contexts list`)");
            }
            config.current_context = Some(name.clone());
            config.save()?;
            println!("Current context: '{name}'.");
        }
        ContextsCommand::Delete { name } => {
            if config.contexts.remove(&name).is_none() {
                usage!("no context named '{name}' (see `switchboard contexts list`)");
            }
            if config.current_context.as_deref() == Some(name.as_str()) {
                config.current_context = None;
            }
            config.save()?;
            println!("Deleted context '{name}'.");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_get_mode_0600_and_replace_atomically() {
        let dir = tempfile::tempdir().expect("temporary dir");
        let path = dir.path().join("nested").join("config.toml");
        write_private_file(&path, b"one").expect("first write");
        write_private_file(&path, b"two").expect("second write");
        assert_eq!(fs::read_to_string(&path).expect("read back"), "two");
        let mode = fs::metadata(&path).expect("metadata").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let dir_mode = fs::metadata(path.parent().expect("parent"))
            .expect("metadata")
            .permissions()
            .mode();
        assert_eq!(dir_mode & 0o777, 0o700);
    }

    #[test]
    fn claims_are_read_from_the_payload() {
        let payload = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(br#"{"sub":"me","exp":1,"roles":{"acme":"OWNER"}}"#);
        let claims = peek_claims(&format!("e30.{payload}.sig")).expect("claims");
        assert_eq!(claims.sub, "me");
        assert_eq!(claims.roles.get("acme").map(String::as_str), Some("OWNER"));
        assert!(peek_claims("not-a-jwt").is_none());
    }

    #[test]
    fn config_round_trips_through_toml() {
        let mut config = ConfigFile::default();
        config.contexts.insert(
            "dev".into(),
            StoredContext {
                endpoint: "http://127.0.0.1:50051".into(),
                token: Some("t".into()),
                workspace: Some("acme".into()),
                ..StoredContext::default()
            },
        );
        config.current_context = Some("dev".into());
        let text = toml::to_string_pretty(&config).expect("serialize");
        let back: ConfigFile = toml::from_str(&text).expect("parse");
        let (name, context) = back.selected(None).expect("select").expect("current");
        assert_eq!(name, "dev");
        assert_eq!(context.workspace.as_deref(), Some("acme"));
        assert!(back.selected(Some("nope")).is_err());
    }
}
