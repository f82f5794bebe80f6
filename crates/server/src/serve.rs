//! Running the services: backends from flags or environment, gRPC with
//! health and reflection (v1 and v1alpha), and a clean shutdown on SIGTERM or
//! Ctrl-C (health flips to NOT_SERVING, in-flight calls drain, exit 0).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use switchboard_auth::jwks::{Jwks, JwksSource};
use switchboard_auth::{Authenticator, DEV_KEY_LEN};
use switchboard_control::{Control, PageTokenKey};
use switchboard_proto::SERVICE_NAMES;
use switchboard_resolver::{Resolver, ResolverOptions};
use switchboard_store::secrets::EMBEDDED_KEY_LEN;
use switchboard_store::vault::{AppRole, VaultConfig, VaultSecrets};
use switchboard_store::{Clock, SecretStore, Store, SystemClock, keyfile, plaintext_secrets};
use tonic::transport::Server;
use tonic_health::ServingStatus;
use tracing::info;

use crate::config::{KubernetesSettings, ServeOpt, Settings};

/// Longest any call may run when the client sets no shorter deadline.
const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Longest a shutdown waits for in-flight calls. No unary call outlasts
/// [`REQUEST_TIMEOUT`]; streams that never end on their own (a client's
/// `Health/Watch`) are cut off here instead of holding the process forever.
const DRAIN_DEADLINE: std::time::Duration = REQUEST_TIMEOUT;

/// File in the data dir holding the development HS256 key.
pub const DEV_JWT_KEY_FILE: &str = "jwt-hs256.key";
/// File in the data dir holding the embedded secret store's key.
pub(crate) const SECRETS_KEY_FILE: &str = "secrets.key";

/// Which services a process serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Every service on one address (`switchboard dev`).
    Dev,
    /// Connections, deployments, policy and audit (`switchboard control`).
    Control,
    /// The resolver Airflow calls (`switchboard resolver`).
    Resolver,
}

/// Serves `role` with the settings `opt` gives until SIGTERM or Ctrl-C.
pub fn run(role: Role, opt: ServeOpt) -> anyhow::Result<()> {
    init_tracing();
    let opt = opt.settings()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(serve(role, opt))
}

/// Applies pending database migrations and returns.
pub fn migrate(opt: ServeOpt) -> anyhow::Result<()> {
    init_tracing();
    let settings = opt.settings()?;
    if settings.database_url.starts_with("sqlite:") {
        create_data_dir(&settings.data_dir)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime
        .block_on(Store::migrate(&settings.database_url))
        .context("migration failed")?;
    info!("database schema is up to date");
    Ok(())
}

fn init_tracing() {
    let filter =
        tracing_subscriber::EnvFilter::try_from_env("SWITCHBOARD_LOG").unwrap_or_else(|_| {
            // rustify (under vaultrs) logs each failed Vault request at ERROR
            // several times; the error reaches our own one log line anyway.
            tracing_subscriber::EnvFilter::new(
                "info,sqlx=warn,sea_orm=warn,sea_orm_migration=warn,rustify=off",
            )
        });
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
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

async fn serve(role: Role, opt: Settings) -> anyhow::Result<()> {
    if let Some(address) = opt.metrics_listen {
        crate::metrics_layer::install(address)?;
    }
    create_data_dir(&opt.data_dir)?;
    let first_start = !opt.data_dir.join(DEV_JWT_KEY_FILE).exists();
    let jwt_key = keyfile::load_or_create(&opt.data_dir.join(DEV_JWT_KEY_FILE), DEV_KEY_LEN)?;
    let secrets = secret_store(&opt).await?;
    let store = Store::connect(&opt.database_url, secrets)
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

    let served = served_services(role);
    let mut server = Server::builder();
    if let Some(tls) = &opt.tls {
        server = server
            .tls_config(crate::tls::server_config(tls)?)
            .context("cannot use the TLS certificate and key")?;
        info!(certificate = %tls.cert_file.display(), "serving gRPC over TLS");
    }
    let mut router = server
        // Deadlines: the client's grpc-timeout wins; none runs longer than this.
        .timeout(REQUEST_TIMEOUT)
        .layer(crate::metrics_layer::MetricsLayer::new(&served)?)
        .layer(crate::unimplemented_layer::UnimplementedLayer::new(
            role, &served,
        ))
        .layer(crate::rate_limit::RateLimitLayer::new(
            opt.rate_limit,
            opt.resolver_rate_limit,
        ))
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha);
    if matches!(role, Role::Dev | Role::Control) {
        // Before serving, so no read through control sees what older
        // releases left in plaintext.
        let moved = plaintext_secrets::move_plaintext_secrets(&store, clock.now_micros())
            .await
            .context("cannot move plaintext secrets into the secret store")?;
        if !moved.is_empty() || moved.failed > 0 {
            info!(
                connections = moved.connections,
                links = moved.links,
                versions = moved.versions,
                failed = moved.failed,
                "moved plaintext nested secrets into the secret store"
            );
        }
        if let SecretStore::Vault(vault) = store.secrets() {
            tokio::spawn(sweep_vault(vault.clone(), store.clone()));
        }
        tokio::spawn(crate::retention::prune_periodically(
            store.clone(),
            clock.clone(),
            opt.retention,
        ));
        let page_key = store.shared_key("page-token", 32).await?;
        let control = Control::new(
            store.clone(),
            auth.clone(),
            clock.clone(),
            PageTokenKey::new(page_key),
        )
        .with_kube_namespaces(switchboard_domain::namespaces::AllowedNamespaces::new(
            opt.kube_namespaces.clone(),
        ));
        let (connections, deployments, workspaces, audit) = control.services();
        router = router
            .add_service(connections)
            .add_service(deployments)
            .add_service(workspaces)
            .add_service(audit);
        if let Some(kubernetes) = &opt.kubernetes {
            start_kube_sync(kubernetes, &opt.kube_namespaces, &store, &clock).await?;
        }
    }
    if matches!(role, Role::Dev | Role::Resolver) {
        let options = ResolverOptions {
            max_stale: opt.max_stale,
            cache: opt.cache,
            ..ResolverOptions::default()
        };
        let resolver = Resolver::start(
            store.clone(),
            auth.clone(),
            clock.clone(),
            options,
            Some(health.clone()),
        )
        .await
        .context("cannot start the resolver")?;
        router = router.add_service(resolver.service());
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
    crate::start_summary::StartSummary {
        data_dir: &opt.data_dir,
        first_start,
        database_url: &opt.database_url,
        embedded_secrets: !store.secrets().is_remote(),
        development_tokens: opt.jwks_file.is_none() && opt.jwks_url.is_none(),
        metrics: opt.metrics_listen,
    }
    .log();
    // TCP_NODELAY on every accepted connection: without it a response written
    // in several pieces (headers, body, trailers) waits for the client's
    // delayed ACK, about 40 ms per unary call.
    let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
    let (draining, drain_started) = tokio::sync::oneshot::channel::<()>();
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
            let _ = draining.send(());
        }
    };
    let serving = router.serve_with_incoming_shutdown(incoming, shutdown);
    tokio::pin!(serving);
    tokio::select! {
        result = &mut serving => result?,
        () = async {
            if drain_started.await.is_err() {
                // The server stopped without a signal; its branch reports why.
                std::future::pending::<()>().await;
            }
            tokio::time::sleep(DRAIN_DEADLINE).await;
        } => {
            tracing::warn!(
                deadline_seconds = DRAIN_DEADLINE.as_secs(),
                "calls still open after the drain deadline (streams such as Health/Watch); stopping"
            );
        }
    }
    store.close().await?;
    info!("stopped");
    Ok(())
}

/// The full names of the contract's services `role` serves (health and
/// reflection aside).
fn served_services(role: Role) -> Vec<&'static str> {
    SERVICE_NAMES
        .iter()
        .copied()
        .filter(|name| {
            let resolver = name.ends_with(".ResolverService");
            match role {
                Role::Dev => true,
                Role::Control => !resolver,
                Role::Resolver => resolver,
            }
        })
        .collect()
}

/// Starts the Kubernetes Secret sync in its own task: a Kubernetes outage
/// delays Secrets, never control's API. Building the client contacts nothing.
async fn start_kube_sync(
    settings: &KubernetesSettings,
    namespaces: &BTreeMap<String, BTreeSet<String>>,
    store: &Store,
    clock: &Arc<dyn Clock>,
) -> anyhow::Result<()> {
    use switchboard_kube_sync::{self as kube_sync, KubeSync, KubeSyncOptions};

    let client = kube_sync::connect(settings.kubeconfig.as_deref())
        .await
        .context("cannot configure the Kubernetes client")?;
    kube_sync::describe_metrics();
    let options = KubeSyncOptions {
        resolver_address: settings.resolver_address.clone(),
        token_grace: settings.token_grace,
        resync_every: settings.resync_interval,
        allowed_namespaces: kube_sync::AllowedNamespaces::new(namespaces.clone()),
        ..KubeSyncOptions::default()
    };
    if namespaces.values().all(BTreeSet::is_empty) {
        tracing::warn!(
            "no namespaces are allowed for Secret delivery ([kubernetes.namespaces] or --kube-namespace); every deployment's Secret is refused"
        );
    }
    tokio::spawn(KubeSync::new(store.clone(), client, clock.clone(), options).run());
    info!(
        resolver_address = %settings.resolver_address,
        kubeconfig = ?settings.kubeconfig,
        allowed_namespaces = ?namespaces,
        "kubernetes secret sync enabled"
    );
    Ok(())
}

/// JWKS-verified tokens when a JWKS is configured, else the development key.
async fn authenticator(opt: &Settings, dev_key: &[u8]) -> anyhow::Result<Authenticator> {
    let source = match (&opt.jwks_file, &opt.jwks_url) {
        (Some(path), _) => JwksSource::File(path.clone()),
        (None, Some(url)) => JwksSource::Url(url.clone()),
        (None, None) => return Ok(Authenticator::hs256(dev_key)),
    };
    let jwks = Jwks::load_refreshing_every(source, opt.jwks_refresh)
        .await
        .context("cannot load the JWKS")?;
    info!("user tokens verified against the JWKS (RS256/ES256)");
    Ok(Authenticator::jwks(jwks, opt.jwt_issuer.clone()))
}

/// Vault when configured, else the embedded store.
async fn secret_store(opt: &Settings) -> anyhow::Result<SecretStore> {
    let Some(vault) = &opt.vault else {
        let key = keyfile::load_or_create(&opt.data_dir.join(SECRETS_KEY_FILE), EMBEDDED_KEY_LEN)?;
        return Ok(SecretStore::embedded(&key)?);
    };
    let approle = match &vault.approle {
        Some((mount, role_id, secret_file)) => Some(AppRole {
            mount: mount.clone(),
            role_id: role_id.clone(),
            secret_id: keyfile::read_private_text(secret_file)?.trim().to_owned(),
        }),
        None => None,
    };
    let token = match &vault.token_file {
        _ if approle.is_some() => String::new(),
        Some(path) => keyfile::read_private_text(path)?,
        None => std::env::var("VAULT_TOKEN")
            .ok()
            .filter(|token| !token.trim().is_empty())
            .context("Vault needs a token: set --vault-token-file or VAULT_TOKEN")?,
    };
    let config = VaultConfig {
        address: vault.addr.clone(),
        token: token.trim().to_owned(),
        approle,
        mount: vault.mount.clone(),
        prefix: vault.prefix.clone(),
        ca_certs: vault.ca_cert.iter().cloned().collect(),
        timeout: vault.timeout,
    };
    info!(address = %vault.addr, mount = %vault.mount, timeout_seconds = vault.timeout.as_secs(), "secrets in Vault KV v2");
    Ok(SecretStore::Vault(VaultSecrets::connect(&config).await?))
}

/// How often control sweeps Vault, and how old an unreferenced version must
/// be before it goes (a write may still be between Vault and its commit).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(600);

async fn sweep_vault(vault: switchboard_store::vault::VaultSecrets, store: Store) {
    loop {
        tokio::time::sleep(SWEEP_EVERY).await;
        let grace = chrono::Duration::from_std(SWEEP_EVERY).unwrap_or_default();
        match vault.sweep(store.db(), chrono::Utc::now() - grace).await {
            Ok(report) => info!(
                entries = report.entries,
                destroyed_versions = report.destroyed_versions,
                deleted_entries = report.deleted_entries,
                "vault sweep finished"
            ),
            Err(err) => tracing::warn!(error = %err, "vault sweep failed; retrying next round"),
        }
    }
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
