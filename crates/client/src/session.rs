//! Connection options shared by the client commands, how they combine with
//! the stored context and the environment, and the connected [`Session`]
//! that builds authorized requests and resource names.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context as _;
use clap::Args;
use tonic::Request;
use tonic::metadata::{Ascii, MetadataValue};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint};

use crate::context::{ConfigFile, StoredContext};
use crate::error::{ApiError, UnreachableError, usage};
use crate::{input, transport};

/// Environment variable holding a token; there is deliberately no flag for
/// it, so tokens never appear in argv.
const TOKEN_ENV: &str = "SWITCHBOARD_TOKEN";
/// How long to wait for a TCP (and TLS) connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Where to connect and as whom; global to every client subcommand.
#[derive(Debug, Clone, Args)]
#[command(next_help_heading = "Server options")]
pub(crate) struct ConnectOpt {
    /// The server: HOST:PORT, http://HOST:PORT or https://HOST:PORT. Overrides
    /// the context's endpoint (its stored token is then not sent).
    #[arg(long, global = true, env = "SWITCHBOARD_ENDPOINT")]
    endpoint: Option<String>,
    /// The context to use (default: the current one; see `switchboard contexts list`).
    #[arg(long = "context", global = true, env = "SWITCHBOARD_CONTEXT")]
    context_name: Option<String>,
    /// Reads the user token from this file. SWITCHBOARD_TOKEN may hold the
    /// token itself; otherwise the context's stored token is used.
    #[arg(long, global = true, env = "SWITCHBOARD_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// The workspace whose resources the command names (default: the context's).
    #[arg(short = 'w', long, global = true, env = "SWITCHBOARD_WORKSPACE")]
    workspace: Option<String>,
    /// PEM file of the CA that signed the server's certificate; implies TLS.
    #[arg(long, global = true, env = "SWITCHBOARD_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// Name to verify in the server's certificate, when it differs from the host.
    #[arg(long, global = true, env = "SWITCHBOARD_TLS_SERVER_NAME")]
    tls_server_name: Option<String>,
    /// Deadline of each call, e.g. 10s or 1m.
    #[arg(long, global = true, env = "SWITCHBOARD_TIMEOUT", default_value = "30s",
          value_parser = switchboard_domain::duration::parse)]
    timeout: Duration,
}

/// Where and how to connect, with every source combined.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    endpoint: String,
    resolver_endpoint: Option<String>,
    token: String,
    workspace: Option<String>,
    ca_cert: Option<PathBuf>,
    tls_server_name: Option<String>,
    timeout: Duration,
}

/// `HOST:PORT` → `http://HOST:PORT` (or `https://` with a CA certificate);
/// URLs keep their scheme.
pub(crate) fn normalize_endpoint(address: &str, tls: bool) -> anyhow::Result<String> {
    let address = address.trim().trim_end_matches('/');
    if address.is_empty() {
        usage!("the endpoint is empty; pass HOST:PORT");
    }
    let url = if address.starts_with("http://") || address.starts_with("https://") {
        address.to_owned()
    } else if address.contains("://") {
        usage!("endpoint '{address}': the scheme must be http or https");
    } else if tls {
        format!("https://{address}")
    } else {
        format!("http://{address}")
    };
    if Endpoint::from_shared(url.clone()).is_err() {
        usage!("endpoint '{address}' is not HOST:PORT or a URL");
    }
    Ok(url)
}

impl Target {
    /// Combines flags, environment and the stored context. The stored token
    /// is only sent to the context's own endpoint.
    pub(crate) fn resolve(opt: &ConnectOpt) -> anyhow::Result<Self> {
        let config = ConfigFile::load()?;
        let selected = config.selected(opt.context_name.as_deref())?;
        let context = selected.map(|(_, context)| context);
        let explicit_endpoint = opt
            .endpoint
            .as_deref()
            .map(|address| normalize_endpoint(address, opt.ca_cert.is_some()))
            .transpose()?;
        let same_server = match (&explicit_endpoint, context) {
            (Some(endpoint), Some(context)) => *endpoint == context.endpoint,
            (None, Some(_)) => true,
            (_, None) => false,
        };
        let endpoint = match (explicit_endpoint, context) {
            (Some(endpoint), _) => endpoint,
            (None, Some(context)) => context.endpoint.clone(),
            (None, None) => usage!(
                "no endpoint: run `switchboard login --endpoint HOST:PORT`, pass --endpoint or set SWITCHBOARD_ENDPOINT"
            ),
        };
        let context = context.filter(|_| same_server);
        let token = if let Some(path) = &opt.token_file {
            input::read_secret_file(path)?
        } else if let Some(token) = std::env::var(TOKEN_ENV)
            .ok()
            .map(|token| token.trim().to_owned())
            .filter(|token| !token.is_empty())
        {
            token
        } else if let Some(token) = context.and_then(|context| context.token.clone()) {
            token
        } else {
            usage!(
                "no token for {endpoint}: run `switchboard login --endpoint …`, pass --token-file or set SWITCHBOARD_TOKEN"
            );
        };
        Ok(Self {
            endpoint,
            resolver_endpoint: context.and_then(|context| context.resolver_endpoint.clone()),
            token,
            workspace: opt
                .workspace
                .clone()
                .or_else(|| context.and_then(|context| context.workspace.clone())),
            ca_cert: opt
                .ca_cert
                .clone()
                .or_else(|| context.and_then(|context| context.ca_cert.clone())),
            tls_server_name: opt
                .tls_server_name
                .clone()
                .or_else(|| context.and_then(|context| context.tls_server_name.clone())),
            timeout: opt.timeout,
        })
    }

    /// The target a stored context describes (for `login`'s check).
    pub(crate) fn from_context(context: &StoredContext) -> anyhow::Result<Self> {
        Ok(Self {
            endpoint: context.endpoint.clone(),
            resolver_endpoint: context.resolver_endpoint.clone(),
            token: context.token.clone().context("the context has no token")?,
            workspace: context.workspace.clone(),
            ca_cert: context.ca_cert.clone(),
            tls_server_name: context.tls_server_name.clone(),
            timeout: Duration::from_secs(30),
        })
    }

    /// Points the session at the resolver instead of control, when it has
    /// an address of its own (`--resolver-endpoint` wins over the context).
    pub(crate) fn for_resolver(mut self, resolver_endpoint: Option<&str>) -> anyhow::Result<Self> {
        let explicit = resolver_endpoint
            .map(|address| normalize_endpoint(address, self.ca_cert.is_some()))
            .transpose()?;
        if let Some(endpoint) = explicit.or_else(|| self.resolver_endpoint.clone()) {
            self.endpoint = endpoint;
        }
        Ok(self)
    }

    /// Connects to the endpoint.
    pub(crate) async fn connect(&self) -> anyhow::Result<Session> {
        let mut endpoint = Endpoint::from_shared(self.endpoint.clone())
            .with_context(|| format!("invalid endpoint {}", self.endpoint))?
            .connect_timeout(CONNECT_TIMEOUT)
            .timeout(self.timeout);
        if self.endpoint.starts_with("https://") {
            let mut tls = ClientTlsConfig::new().with_native_roots();
            if let Some(path) = &self.ca_cert {
                let pem = std::fs::read(path).with_context(|| {
                    format!("cannot read the CA certificate {}", path.display())
                })?;
                tls = tls.ca_certificate(Certificate::from_pem(pem));
            }
            if let Some(name) = &self.tls_server_name {
                tls = tls.domain_name(name.clone());
            }
            endpoint = endpoint.tls_config(tls).context("cannot configure TLS")?;
        } else if self.ca_cert.is_some() {
            usage!(
                "--ca-cert was given but the endpoint {} is plaintext http://; use https://",
                self.endpoint
            );
        }
        let channel = match endpoint.connect().await {
            Ok(channel) => channel,
            Err(err) => {
                let diagnosis = transport::diagnose(&self.endpoint, &err).await;
                return Err(anyhow::Error::new(UnreachableError::new(
                    format!("cannot reach {}: {}", self.endpoint, diagnosis.cause),
                    diagnosis.hint,
                )));
            }
        };
        let authorization: MetadataValue<Ascii> =
            format!("Bearer {}", self.token).parse().map_err(|_| {
                anyhow::Error::new(crate::error::UsageError(
                    "the token holds characters that cannot be sent in a header".to_owned(),
                ))
            })?;
        Ok(Session {
            channel,
            endpoint: self.endpoint.clone(),
            authorization,
            workspace: self.workspace.clone(),
        })
    }
}

/// A connected channel with the caller's credentials and default workspace.
#[derive(Debug, Clone)]
pub(crate) struct Session {
    channel: Channel,
    /// The normalized endpoint URL the channel connects to.
    endpoint: String,
    authorization: MetadataValue<Ascii>,
    workspace: Option<String>,
}

impl Session {
    /// Resolves the options and connects.
    pub(crate) async fn open(opt: &ConnectOpt) -> anyhow::Result<Self> {
        Target::resolve(opt)?.connect().await
    }

    pub(crate) fn channel(&self) -> Channel {
        self.channel.clone()
    }

    /// Passes `result` through, except a call that failed below gRPC (the
    /// connection broke, no answer in time), which becomes an
    /// [`UnreachableError`] saying what happened and what to change, e.g.
    /// `https://` for a server that speaks TLS.
    pub(crate) async fn diagnose<T>(&self, result: anyhow::Result<T>) -> anyhow::Result<T> {
        let err = match result {
            Ok(value) => return Ok(value),
            Err(err) => err,
        };
        let Some(api) = err.downcast_ref::<ApiError>() else {
            return Err(err);
        };
        let Some(failure) = api.transport_failure() else {
            return Err(err);
        };
        let diagnosis = transport::diagnose(&self.endpoint, failure).await;
        Err(anyhow::Error::new(UnreachableError::new(
            format!(
                "{}: the connection to {} failed: {}",
                api.action(),
                self.endpoint,
                diagnosis.cause
            ),
            diagnosis.hint,
        )))
    }

    /// Wraps `message` with `authorization: Bearer <token>`.
    pub(crate) fn request<T>(&self, message: T) -> Request<T> {
        let mut request = Request::new(message);
        request
            .metadata_mut()
            .insert("authorization", self.authorization.clone());
        request
    }

    /// The workspace id, from `--workspace`, SWITCHBOARD_WORKSPACE or the context.
    pub(crate) fn workspace(&self) -> anyhow::Result<&str> {
        match self.workspace.as_deref() {
            Some(workspace) if !workspace.is_empty() => Ok(workspace),
            _ => usage!(
                "no workspace: pass --workspace, set SWITCHBOARD_WORKSPACE or log in with --workspace"
            ),
        }
    }

    /// `workspaces/{w}`.
    pub(crate) fn workspace_name(&self) -> anyhow::Result<String> {
        Ok(format!("workspaces/{}", self.workspace()?))
    }

    /// `workspaces/{w}/connections/{id}`; a full resource name is kept.
    pub(crate) fn connection_name(&self, id: &str) -> anyhow::Result<String> {
        self.child_name("connections", id)
    }

    /// `workspaces/{w}/deployments/{id}`; a full resource name is kept.
    pub(crate) fn deployment_name(&self, id: &str) -> anyhow::Result<String> {
        self.child_name("deployments", id)
    }

    fn child_name(&self, collection: &str, id: &str) -> anyhow::Result<String> {
        if id.starts_with("workspaces/") {
            return Ok(id.to_owned());
        }
        if id.is_empty() {
            usage!(
                "an empty id was given where a {} id is needed",
                singular(collection)
            );
        }
        if id.contains('/') {
            usage!(
                "'{id}' is neither a {} id nor a full resource name (workspaces/…/{collection}/…)",
                singular(collection)
            );
        }
        Ok(format!("{}/{collection}/{id}", self.workspace_name()?))
    }
}

fn singular(collection: &str) -> &str {
    collection.strip_suffix('s').unwrap_or(collection)
}

/// The last segment of a resource name: the id.
pub(crate) fn last_segment(name: &str) -> &str {
    name.rsplit('/').next().unwrap_or(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_get_a_scheme() {
        assert_eq!(
            normalize_endpoint("127.0.0.1:50051", false).expect("plain"),
            "http://127.0.0.1:50051"
        );
        assert_eq!(
            normalize_endpoint("sb.example.com:443", true).expect("tls"),
            "https://sb.example.com:443"
        );
        assert_eq!(
            normalize_endpoint("https://sb.example.com/", false).expect("url"),
            "https://sb.example.com"
        );
        assert!(normalize_endpoint("ftp://x:1", false).is_err());
        assert!(normalize_endpoint("", false).is_err());
    }
}
