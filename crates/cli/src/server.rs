//! Running the services: backends from flags or environment, gRPC with
//! health and reflection (v1 and v1alpha), and a clean shutdown on SIGTERM or
//! Ctrl-C (health flips to NOT_SERVING, in-flight calls drain, exit 0).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use switchboard_control::{Control, PageTokenKey};
use switchboard_proto::SERVICE_NAMES;
use switchboard_resolver::Resolver;
use switchboard_store::auth::{Authenticator, DEV_KEY_LEN};
use switchboard_store::jwks::{Jwks, JwksSource};
use switchboard_store::secrets::EMBEDDED_KEY_LEN;
use switchboard_store::vault::{VaultConfig, VaultSecrets};
use switchboard_store::{Clock, SecretStore, Store, SystemClock, keyfile};
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::info;

/// File in the data dir holding the development HS256 key.
pub(crate) const DEV_JWT_KEY_FILE: &str = "jwt-hs256.key";
const SECRETS_KEY_FILE: &str = "secrets.key";
const PAGE_TOKEN_KEY_FILE: &str = "page-token.key";

/// Which services a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    Dev,
    Control,
    Resolver,
}

/// Flags shared by `dev`, `control` and `resolver`.
#[derive(Debug, Args)]
pub(crate) struct ServeOpt {
    /// Data directory: SQLite file, development keys (created if absent).
    #[arg(long, env = "SWITCHBOARD_DATA_DIR", default_value = "./.switchboard")]
    data_dir: PathBuf,
    /// Address to serve gRPC on.
    #[arg(long, env = "SWITCHBOARD_LISTEN", default_value = "127.0.0.1:50051")]
    listen: SocketAddr,
    /// Database URL, sqlite://PATH or postgres://…; defaults to a SQLite file in the data dir.
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Vault or OpenBao address; unset keeps secrets encrypted in the database.
    #[arg(long, env = "SWITCHBOARD_VAULT_ADDR")]
    vault_addr: Option<String>,
    /// File holding the Vault token (otherwise VAULT_TOKEN).
    #[arg(long, env = "SWITCHBOARD_VAULT_TOKEN_FILE")]
    vault_token_file: Option<PathBuf>,
    /// KV v2 mount in Vault.
    #[arg(long, env = "SWITCHBOARD_VAULT_MOUNT", default_value = "secret")]
    vault_mount: String,
    /// Path prefix for Switchboard's entries under the mount.
    #[arg(long, env = "SWITCHBOARD_VAULT_PREFIX", default_value = "switchboard")]
    vault_prefix: String,
    /// PEM CA certificate to trust for Vault's TLS.
    #[arg(long, env = "SWITCHBOARD_VAULT_CA_CERT")]
    vault_ca_cert: Option<PathBuf>,
    /// JWKS file with the RS256/ES256 keys that sign user tokens (production;
    /// replaces the development HS256 key).
    #[arg(long, env = "SWITCHBOARD_JWKS_FILE", conflicts_with = "jwks_url")]
    jwks_file: Option<PathBuf>,
    /// JWKS URL with the keys that sign user tokens; cached and refreshed.
    #[arg(long, env = "SWITCHBOARD_JWKS_URL")]
    jwks_url: Option<String>,
    /// Required `iss` of user tokens.
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Address for Prometheus metrics at /metrics.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
}

impl ServeOpt {
    fn database_url(&self) -> String {
        self.database_url.clone().unwrap_or_else(|| {
            format!(
                "sqlite://{}",
                self.data_dir.join("switchboard.db").display()
            )
        })
    }
}

pub(crate) fn run(role: Role, opt: ServeOpt) -> anyhow::Result<()> {
    init_tracing();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(role, opt))
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

fn create_data_dir(path: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if !path.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(path)
            .with_context(|| format!("cannot create data dir {}", path.display()))?;
    }
    Ok(())
}

async fn serve(role: Role, opt: ServeOpt) -> anyhow::Result<()> {
    if let Some(address) = opt.metrics_listen {
        crate::metrics_layer::install(address)?;
        info!(address = %address, "serving Prometheus metrics at /metrics");
    }
    create_data_dir(&opt.data_dir)?;
    let jwt_key = keyfile::load_or_create(&opt.data_dir.join(DEV_JWT_KEY_FILE), DEV_KEY_LEN)?;
    let secrets = secret_store(&opt)?;
    let store = Store::connect(&opt.database_url(), secrets)
        .await
        .context("cannot open the database")?;
    let auth = authenticator(&opt, &jwt_key).await?;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);

    let (health, health_service) = tonic_health::server::health_reporter();
    let reflection_v1 = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchboard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1()?;
    let reflection_v1alpha = tonic_reflection::server::Builder::configure()
        .register_encoded_file_descriptor_set(switchboard_proto::FILE_DESCRIPTOR_SET)
        .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
        .build_v1alpha()?;

    let mut router = Server::builder()
        .layer(crate::metrics_layer::MetricsLayer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    let mut served: Vec<&str> = Vec::new();
    if matches!(role, Role::Dev | Role::Control) {
        let page_key = keyfile::load_or_create(&opt.data_dir.join(PAGE_TOKEN_KEY_FILE), 32)?;
        let control = Control::new(
            store.clone(),
            auth.clone(),
            clock.clone(),
            PageTokenKey::new(page_key),
        );
        let (connections, deployments, workspaces, audit) = control.services();
        router = router
            .add_service(connections)
            .add_service(deployments)
            .add_service(workspaces)
            .add_service(audit);
        served.extend(
            SERVICE_NAMES
                .iter()
                .filter(|name| !name.ends_with("ResolverService")),
        );
    }
    if matches!(role, Role::Dev | Role::Resolver) {
        let resolver = Resolver::new(store.clone(), auth.clone(), clock.clone());
        router = router.add_service(resolver.service());
        served.push("switchboard.v1.ResolverService");
    }
    for name in &served {
        health
            .set_service_status(*name, ServingStatus::Serving)
            .await;
    }

    let listener = tokio::net::TcpListener::bind(opt.listen)
        .await
        .with_context(|| format!("cannot listen on {}", opt.listen))?;
    let local = listener.local_addr()?;
    info!(address = %local, role = ?role, services = ?served, "serving gRPC");
    let incoming = tokio_stream::wrappers::TcpListenerStream::new(listener);
    let shutdown = {
        let health = health.clone();
        let served: Vec<String> = served.iter().map(|name| (*name).to_owned()).collect();
        async move {
            wait_for_signal().await;
            info!("shutting down: draining in-flight calls");
            health
                .set_service_status("", ServingStatus::NotServing)
                .await;
            for name in &served {
                health
                    .set_service_status(name, ServingStatus::NotServing)
                    .await;
            }
        }
    };
    router
        .serve_with_incoming_shutdown(incoming, shutdown)
        .await?;
    store.close().await?;
    info!("stopped");
    Ok(())
}

/// JWKS-verified tokens when a JWKS is configured, else the development key.
async fn authenticator(opt: &ServeOpt, dev_key: &[u8]) -> anyhow::Result<Authenticator> {
    let source = match (&opt.jwks_file, &opt.jwks_url) {
        (Some(path), _) => JwksSource::File(path.clone()),
        (None, Some(url)) => JwksSource::Url(url.clone()),
        (None, None) => {
            if opt.jwt_issuer.is_some() {
                anyhow::bail!("--jwt-issuer needs --jwks-file or --jwks-url");
            }
            return Ok(Authenticator::hs256(dev_key));
        }
    };
    let jwks = Jwks::load(source).await.context("cannot load the JWKS")?;
    info!("user tokens verified against the JWKS (RS256/ES256)");
    Ok(Authenticator::jwks(jwks, opt.jwt_issuer.clone()))
}

/// Vault when `--vault-addr` is set, else the embedded store.
fn secret_store(opt: &ServeOpt) -> anyhow::Result<SecretStore> {
    let Some(address) = &opt.vault_addr else {
        let key = keyfile::load_or_create(&opt.data_dir.join(SECRETS_KEY_FILE), EMBEDDED_KEY_LEN)?;
        return Ok(SecretStore::embedded(&key)?);
    };
    let token = match &opt.vault_token_file {
        Some(path) => keyfile::read_private_text(path)?,
        None => std::env::var("VAULT_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty())
            .context("--vault-addr needs a token: set --vault-token-file or VAULT_TOKEN")?,
    };
    let config = VaultConfig {
        address: address.clone(),
        token: token.trim().to_owned(),
        mount: opt.vault_mount.clone(),
        prefix: opt.vault_prefix.clone(),
        ca_certs: opt.vault_ca_cert.iter().cloned().collect(),
    };
    info!(address = %address, mount = %opt.vault_mount, "secrets in Vault KV v2");
    Ok(SecretStore::Vault(VaultSecrets::new(&config)?))
}

async fn wait_for_signal() {
    let mut terminate = match tokio::signal::unix::signal(
        tokio::signal::unix::SignalKind::terminate(),
    ) {
        Ok(signal) => signal,
        Err(err) => {
            tracing::error!(error = %err, "cannot listen for SIGTERM; only Ctrl-C stops the server");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = terminate.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
