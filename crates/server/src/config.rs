//! Server configuration, layered: built-in defaults, then a TOML file
//! (`--config`), then `SWITCHBOARD_*` environment variables, then flags.
//! Unknown keys in the file are errors, so a typo never silently falls back
//! to a default.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use clap::Args;
use serde::Deserialize;

/// Flags shared by `dev`, `control` and `resolver`. Each also reads the
/// environment variable it names; unset ones fall back to the config file,
/// then to the default shown.
#[derive(Debug, Default, Args)]
pub struct ServeOpt {
    /// TOML configuration file (see README for an example).
    #[arg(long, env = "SWITCHBOARD_CONFIG")]
    config: Option<PathBuf>,
    /// Data directory: SQLite file, development keys (created if absent) [default: ./.switchboard].
    #[arg(long, env = "SWITCHBOARD_DATA_DIR")]
    data_dir: Option<PathBuf>,
    /// Address to serve gRPC on [default: 127.0.0.1:50051].
    #[arg(long, env = "SWITCHBOARD_LISTEN")]
    listen: Option<SocketAddr>,
    /// Database URL, sqlite://PATH or postgres://USER:PASSWORD@HOST/DB [default: a SQLite file in the data dir].
    #[arg(long, env = "SWITCHBOARD_DATABASE_URL")]
    database_url: Option<String>,
    /// Vault or OpenBao address; unset keeps secrets encrypted in the database.
    #[arg(long, env = "SWITCHBOARD_VAULT_ADDR")]
    vault_addr: Option<String>,
    /// File holding the Vault token (otherwise VAULT_TOKEN); must be mode 0600.
    #[arg(long, env = "SWITCHBOARD_VAULT_TOKEN_FILE")]
    vault_token_file: Option<PathBuf>,
    /// KV v2 mount in Vault [default: secret].
    #[arg(long, env = "SWITCHBOARD_VAULT_MOUNT")]
    vault_mount: Option<String>,
    /// Path prefix for Switchboard's entries under the mount [default: switchboard].
    #[arg(long, env = "SWITCHBOARD_VAULT_PREFIX")]
    vault_prefix: Option<String>,
    /// PEM CA certificate to trust for Vault's TLS.
    #[arg(long, env = "SWITCHBOARD_VAULT_CA_CERT")]
    vault_ca_cert: Option<PathBuf>,
    /// Longest one Vault request may take before the call answers UNAVAILABLE
    /// with nothing changed, e.g. 5s [default: 5s].
    #[arg(long, env = "SWITCHBOARD_VAULT_TIMEOUT", value_parser = switchboard_domain::duration::parse)]
    vault_timeout: Option<Duration>,
    /// Log in to Vault with this AppRole role id instead of a token.
    #[arg(
        long,
        env = "SWITCHBOARD_VAULT_APPROLE_ROLE_ID",
        requires = "vault_approle_secret_id_file"
    )]
    vault_approle_role_id: Option<String>,
    /// File holding the AppRole secret id (mode 0600).
    #[arg(long, env = "SWITCHBOARD_VAULT_APPROLE_SECRET_ID_FILE")]
    vault_approle_secret_id_file: Option<PathBuf>,
    /// Mount of the AppRole auth method [default: approle].
    #[arg(long, env = "SWITCHBOARD_VAULT_APPROLE_MOUNT")]
    vault_approle_mount: Option<String>,
    /// JWKS file with the RS256/ES256 keys that sign user tokens (replaces the
    /// development HS256 key).
    #[arg(long, env = "SWITCHBOARD_JWKS_FILE", conflicts_with = "jwks_url")]
    jwks_file: Option<PathBuf>,
    /// JWKS URL with the keys that sign user tokens; cached and refreshed.
    #[arg(long, env = "SWITCHBOARD_JWKS_URL")]
    jwks_url: Option<String>,
    /// How often the JWKS is re-read, e.g. 5m; a token naming an unknown key
    /// triggers at most one extra read per 30 s (or per this interval, if
    /// shorter), and failed reads back off [default: 5m].
    #[arg(long, env = "SWITCHBOARD_JWKS_REFRESH", value_parser = switchboard_domain::duration::parse)]
    jwks_refresh: Option<Duration>,
    /// Required `iss` of user tokens.
    #[arg(long, env = "SWITCHBOARD_JWT_ISSUER")]
    jwt_issuer: Option<String>,
    /// Address for Prometheus metrics at /metrics.
    #[arg(long, env = "SWITCHBOARD_METRICS_LISTEN")]
    metrics_listen: Option<SocketAddr>,
    /// Resolver: how long cached values are served while the database or
    /// secret store is unreachable, e.g. 15m [default: 15m].
    #[arg(long, env = "SWITCHBOARD_MAX_STALE", value_parser = switchboard_domain::duration::parse)]
    max_stale: Option<Duration>,
    /// Resolver: answer every call from the database and secret store, with
    /// no cache (for measuring the cold path; nothing is held for an outage).
    #[arg(long, env = "SWITCHBOARD_NO_CACHE")]
    no_cache: bool,
    /// Control: calls per second each caller (a user by subject, a deployment
    /// by name, or an address for calls that fail authentication) may make,
    /// in bursts of 5 seconds' worth [default: 50].
    #[arg(long, env = "SWITCHBOARD_RATE_LIMIT")]
    rate_limit: Option<u32>,
    /// Resolver: calls per second each caller (a deployment, a user, or an
    /// address for calls that fail authentication) may make, in bursts of
    /// 5 seconds' worth [default: 1000].
    #[arg(long, env = "SWITCHBOARD_RESOLVER_RATE_LIMIT")]
    resolver_rate_limit: Option<u32>,
    /// Control: keep a Kubernetes Secret per deployment whose secret_delivery
    /// asks for one (needs --kube-resolver-address).
    #[arg(long, env = "SWITCHBOARD_KUBE_SYNC")]
    kube_sync: bool,
    /// Control: the resolver address (host:port) TOKEN-mode Secrets carry.
    #[arg(long, env = "SWITCHBOARD_KUBE_RESOLVER_ADDRESS")]
    kube_resolver_address: Option<String>,
    /// Control: kubeconfig file for the Secret sync [default: in-cluster configuration].
    #[arg(long, env = "SWITCHBOARD_KUBECONFIG")]
    kubeconfig: Option<PathBuf>,
    /// Control: how long a replaced Secret token stays valid, e.g. 10m [default: 10m].
    #[arg(long, env = "SWITCHBOARD_KUBE_TOKEN_GRACE", value_parser = switchboard_domain::duration::parse)]
    kube_token_grace: Option<Duration>,
    /// Control: how often every Secret is checked and repaired, e.g. 5m [default: 5m].
    #[arg(long, env = "SWITCHBOARD_KUBE_RESYNC", value_parser = switchboard_domain::duration::parse)]
    kube_resync: Option<Duration>,
    #[command(flatten)]
    tls: crate::tls::TlsOpt,
    #[command(flatten)]
    retention: crate::retention::RetentionOpt,
    /// Control: a namespace a workspace's deployments may ask for a Secret in,
    /// as WORKSPACE=NAMESPACE; repeat it (comma-separated in the environment).
    /// Replaces [kubernetes.namespaces] of the file [default: none, so every
    /// TOKEN or ENV delivery into a namespace is refused].
    #[arg(
        long = "kube-namespace",
        env = "SWITCHBOARD_KUBE_NAMESPACES",
        value_name = "WORKSPACE=NAMESPACE",
        value_delimiter = ','
    )]
    kube_namespaces: Vec<String>,
}

/// The TOML file's shape.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    listen: Option<SocketAddr>,
    database_url: Option<String>,
    metrics_listen: Option<SocketAddr>,
    max_stale: Option<String>,
    /// `false` turns the resolver's cache off.
    cache: Option<bool>,
    rate_limit: Option<u32>,
    resolver_rate_limit: Option<u32>,
    #[serde(default)]
    vault: VaultFile,
    #[serde(default)]
    auth: AuthFile,
    #[serde(default)]
    kubernetes: KubernetesFile,
    #[serde(default)]
    tls: crate::tls::TlsFile,
    #[serde(default)]
    retention: crate::retention::RetentionFile,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct KubernetesFile {
    enabled: Option<bool>,
    resolver_address: Option<String>,
    kubeconfig: Option<PathBuf>,
    token_grace: Option<String>,
    resync_interval: Option<String>,
    /// Workspace id → namespaces its deployments may deliver Secrets to.
    namespaces: Option<BTreeMap<String, Vec<String>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct VaultFile {
    addr: Option<String>,
    token_file: Option<PathBuf>,
    mount: Option<String>,
    prefix: Option<String>,
    ca_cert: Option<PathBuf>,
    timeout: Option<String>,
    approle_role_id: Option<String>,
    approle_secret_id_file: Option<PathBuf>,
    approle_mount: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct AuthFile {
    jwks_file: Option<PathBuf>,
    jwks_url: Option<String>,
    jwks_refresh: Option<String>,
    issuer: Option<String>,
}

/// Validated settings.
#[derive(Debug, Clone)]
pub(crate) struct Settings {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub database_url: String,
    pub metrics_listen: Option<SocketAddr>,
    pub vault: Option<VaultSettings>,
    pub jwks_file: Option<PathBuf>,
    pub jwks_url: Option<String>,
    pub jwt_issuer: Option<String>,
    /// How often a JWKS is re-read.
    pub jwks_refresh: Duration,
    pub max_stale: Duration,
    /// Whether the resolver caches answers and token lookups.
    pub cache: bool,
    pub rate_limit: u32,
    /// The resolver's per-caller limit, calls per second.
    pub resolver_rate_limit: u32,
    /// The Kubernetes Secret sync, when enabled.
    pub kubernetes: Option<KubernetesSettings>,
    /// Server TLS; `None` serves plaintext.
    pub tls: Option<crate::tls::TlsSettings>,
    /// Control: how long the feed, request log and audit table keep rows.
    pub retention: crate::retention::RetentionSettings,
    /// Workspace → the namespaces its deployments may ask for a Secret in;
    /// control refuses any other (with sync or without).
    pub kube_namespaces: BTreeMap<String, BTreeSet<String>>,
}

/// The Kubernetes Secret sync's settings.
#[derive(Debug, Clone)]
pub(crate) struct KubernetesSettings {
    pub resolver_address: String,
    /// `None`: in-cluster configuration.
    pub kubeconfig: Option<PathBuf>,
    pub token_grace: Duration,
    pub resync_interval: Duration,
}

/// Where Vault is and how to authenticate.
#[derive(Debug, Clone)]
pub(crate) struct VaultSettings {
    pub addr: String,
    pub token_file: Option<PathBuf>,
    pub mount: String,
    pub prefix: String,
    pub ca_cert: Option<PathBuf>,
    /// Longest one Vault request may take.
    pub timeout: Duration,
    /// (mount, role id, secret id file) when logging in with AppRole.
    pub approle: Option<(String, String, PathBuf)>,
}

/// The allowed-namespaces map: the flags' WORKSPACE=NAMESPACE pairs if any,
/// else the file's table, each id checked.
fn kube_namespaces(
    flags: Vec<String>,
    file: Option<BTreeMap<String, Vec<String>>>,
) -> anyhow::Result<BTreeMap<String, BTreeSet<String>>> {
    let pairs: Vec<(String, String)> = if flags.is_empty() {
        file.unwrap_or_default()
            .into_iter()
            .flat_map(|(workspace, namespaces)| {
                namespaces
                    .into_iter()
                    .map(move |namespace| (workspace.clone(), namespace))
            })
            .collect()
    } else {
        flags
            .iter()
            .map(|pair| {
                pair.split_once('=')
                    .map(|(workspace, namespace)| {
                        (workspace.trim().to_owned(), namespace.trim().to_owned())
                    })
                    .with_context(|| {
                        format!("--kube-namespace {pair:?} must be WORKSPACE=NAMESPACE")
                    })
            })
            .collect::<anyhow::Result<_>>()?
    };
    let mut map: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (workspace, namespace) in pairs {
        switchboard_domain::names::validate_workspace_id(&workspace).map_err(|why| {
            anyhow::anyhow!("kubernetes namespaces: workspace {workspace:?} {why}")
        })?;
        // Namespaces are DNS labels, as deployment ids are.
        switchboard_domain::names::validate_deployment_id(&namespace).map_err(|why| {
            anyhow::anyhow!(
                "kubernetes namespaces: namespace {namespace:?} of workspace {workspace} {why}"
            )
        })?;
        map.entry(workspace).or_default().insert(namespace);
    }
    Ok(map)
}

fn read_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("cannot read config file {}", path.display()))?;
    let config: FileConfig =
        toml::from_str(&text).with_context(|| format!("invalid config file {}", path.display()))?;
    // A file that carries a database password must be private, like key files.
    let holds_password = config
        .database_url
        .as_deref()
        .and_then(|url| url.split_once("://"))
        .and_then(|(_, rest)| rest.split_once('@'))
        .is_some_and(|(credentials, _)| credentials.contains(':'));
    if holds_password {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(path)?.permissions().mode();
        if mode & 0o077 != 0 {
            bail!(
                "config file {} holds a database password but is readable by group or others (mode {:o}); run chmod 600 on it or pass the URL through SWITCHBOARD_DATABASE_URL",
                path.display(),
                mode & 0o777
            );
        }
    }
    Ok(config)
}

impl ServeOpt {
    /// Layers flags and environment over the file over defaults, and validates.
    pub(crate) fn settings(self) -> anyhow::Result<Settings> {
        let file = match &self.config {
            Some(path) => read_file(path)?,
            None => FileConfig::default(),
        };
        let data_dir = self
            .data_dir
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("./.switchboard"));
        let listen = self
            .listen
            .or(file.listen)
            .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], 50051)));
        let database_url = self
            .database_url
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("switchboard.db").display()));
        if !(database_url.starts_with("sqlite:")
            || database_url.starts_with("postgres://")
            || database_url.starts_with("postgresql://"))
        {
            bail!("database_url must start with sqlite:// or postgres://");
        }
        let vault_timeout = match (self.vault_timeout, file.vault.timeout) {
            (Some(flag), _) => flag,
            (None, Some(text)) => switchboard_domain::duration::parse(&text).map_err(|why| {
                anyhow::anyhow!("invalid vault.timeout in the config file: {why}")
            })?,
            (None, None) => switchboard_store::vault::DEFAULT_TIMEOUT,
        };
        let vault_addr = self.vault_addr.or(file.vault.addr);
        let vault = vault_addr.map(|addr| VaultSettings {
            addr,
            token_file: self.vault_token_file.or(file.vault.token_file),
            mount: self
                .vault_mount
                .or(file.vault.mount)
                .unwrap_or_else(|| "secret".to_owned()),
            prefix: self
                .vault_prefix
                .or(file.vault.prefix)
                .unwrap_or_else(|| "switchboard".to_owned()),
            ca_cert: self.vault_ca_cert.or(file.vault.ca_cert),
            timeout: vault_timeout,
            approle: None,
        });
        let approle_role_id = self.vault_approle_role_id.or(file.vault.approle_role_id);
        let approle_secret_id_file = self
            .vault_approle_secret_id_file
            .or(file.vault.approle_secret_id_file);
        let approle_mount = self
            .vault_approle_mount
            .or(file.vault.approle_mount)
            .unwrap_or_else(|| "approle".to_owned());
        let vault = match (vault, approle_role_id, approle_secret_id_file) {
            (Some(vault), Some(role_id), Some(secret_file)) => Some(VaultSettings {
                approle: Some((approle_mount, role_id, secret_file)),
                ..vault
            }),
            (_, Some(_), None) | (_, None, Some(_)) => {
                bail!("AppRole needs both a role id and a secret id file")
            }
            (None, Some(_), Some(_)) => bail!("AppRole settings need a Vault address"),
            (vault, None, None) => vault,
        };
        let jwks_file = self.jwks_file.or(file.auth.jwks_file);
        let jwks_url = self.jwks_url.or(file.auth.jwks_url);
        let jwt_issuer = self.jwt_issuer.or(file.auth.issuer);
        if jwks_file.is_some() && jwks_url.is_some() {
            bail!("set one of jwks_file and jwks_url, not both");
        }
        if jwt_issuer.is_some() && jwks_file.is_none() && jwks_url.is_none() {
            bail!("a JWT issuer needs jwks_file or jwks_url");
        }
        let jwks_refresh = match (self.jwks_refresh, file.auth.jwks_refresh) {
            (Some(flag), _) => flag,
            (None, Some(text)) => switchboard_domain::duration::parse(&text).map_err(|why| {
                anyhow::anyhow!("invalid auth.jwks_refresh in the config file: {why}")
            })?,
            (None, None) => switchboard_auth::jwks::DEFAULT_REFRESH_EVERY,
        };
        if jwks_refresh < Duration::from_secs(1) {
            bail!("jwks_refresh must be at least 1s");
        }
        let max_stale = match (self.max_stale, file.max_stale) {
            (Some(flag), _) => flag,
            (None, Some(text)) => switchboard_domain::duration::parse(&text)
                .map_err(|why| anyhow::anyhow!("invalid max_stale in the config file: {why}"))?,
            (None, None) => Duration::from_secs(15 * 60),
        };
        let kube_namespaces =
            kube_namespaces(self.kube_namespaces, file.kubernetes.namespaces.clone())?;
        let kubernetes = if self.kube_sync || file.kubernetes.enabled.unwrap_or(false) {
            let duration = |flag: Option<Duration>, text: Option<String>, key: &str, default| match (
                flag, text,
            ) {
                (Some(flag), _) => Ok(flag),
                (None, Some(text)) => switchboard_domain::duration::parse(&text).map_err(|why| {
                    anyhow::anyhow!("invalid kubernetes.{key} in the config file: {why}")
                }),
                (None, None) => Ok(default),
            };
            let resolver_address = self
                .kube_resolver_address
                .or(file.kubernetes.resolver_address)
                .filter(|address| !address.trim().is_empty())
                .context("the Kubernetes Secret sync needs a resolver address (--kube-resolver-address or [kubernetes] resolver_address)")?;
            let resync_interval = duration(
                self.kube_resync,
                file.kubernetes.resync_interval,
                "resync_interval",
                Duration::from_secs(5 * 60),
            )?;
            if resync_interval.is_zero() {
                bail!("kubernetes resync_interval must be positive");
            }
            Some(KubernetesSettings {
                resolver_address,
                kubeconfig: self.kubeconfig.or(file.kubernetes.kubeconfig),
                token_grace: duration(
                    self.kube_token_grace,
                    file.kubernetes.token_grace,
                    "token_grace",
                    Duration::from_secs(10 * 60),
                )?,
                resync_interval,
            })
        } else {
            None
        };
        let rate_limit = self.rate_limit.or(file.rate_limit).unwrap_or(50);
        if rate_limit == 0 {
            bail!("rate_limit must be at least 1 call per second");
        }
        let resolver_rate_limit = self
            .resolver_rate_limit
            .or(file.resolver_rate_limit)
            .unwrap_or(1000);
        if resolver_rate_limit == 0 {
            bail!("resolver_rate_limit must be at least 1 call per second");
        }
        Ok(Settings {
            tls: self.tls.settings(file.tls)?,
            retention: self.retention.settings(file.retention)?,
            kubernetes,
            kube_namespaces,
            rate_limit,
            resolver_rate_limit,
            max_stale,
            cache: !self.no_cache && file.cache.unwrap_or(true),
            data_dir,
            listen,
            database_url,
            metrics_listen: self.metrics_listen.or(file.metrics_listen),
            vault,
            jwks_file,
            jwks_url,
            jwt_issuer,
            jwks_refresh,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(text: &str) -> tempfile::NamedTempFile {
        let file = tempfile::NamedTempFile::new().unwrap();
        std::fs::write(file.path(), text).unwrap();
        file
    }

    #[test]
    fn flags_win_over_the_file_which_wins_over_defaults() {
        let file = write(
            "listen = \"127.0.0.1:6000\"\ndatabase_url = \"postgres://u@h/db\"\n[vault]\naddr = \"http://127.0.0.1:8200\"\nmount = \"kv\"\n",
        );
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            listen: Some("127.0.0.1:7000".parse().unwrap()),
            ..ServeOpt::default()
        };
        let settings = opt.settings().unwrap();
        assert_eq!(settings.listen.port(), 7000);
        assert_eq!(settings.database_url, "postgres://u@h/db");
        let vault = settings.vault.unwrap();
        assert_eq!(
            (vault.mount.as_str(), vault.prefix.as_str()),
            ("kv", "switchboard")
        );
        assert_eq!(vault.timeout, Duration::from_secs(5), "the default");
        assert_eq!(settings.data_dir, PathBuf::from("./.switchboard"));
    }

    #[test]
    fn vault_timeout_comes_from_the_flag_or_the_file() {
        let file = write("[vault]\naddr = \"http://127.0.0.1:8200\"\ntimeout = \"2s\"\n");
        let from_file = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        assert_eq!(
            from_file.settings().unwrap().vault.unwrap().timeout,
            Duration::from_secs(2)
        );
        let from_flag = ServeOpt {
            config: Some(file.path().to_owned()),
            vault_timeout: Some(Duration::from_secs(9)),
            ..ServeOpt::default()
        };
        assert_eq!(
            from_flag.settings().unwrap().vault.unwrap().timeout,
            Duration::from_secs(9)
        );
        let bad = write("[vault]\naddr = \"http://127.0.0.1:8200\"\ntimeout = \"soon\"\n");
        let opt = ServeOpt {
            config: Some(bad.path().to_owned()),
            ..ServeOpt::default()
        };
        let err = format!("{:#}", opt.settings().unwrap_err());
        assert!(err.contains("vault.timeout"), "{err}");
    }

    #[test]
    fn a_readable_file_with_a_database_password_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let file = write("database_url = \"postgres://u:sb-marker@h/db\"\n");
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o644)).unwrap();
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        let err = format!("{:#}", opt.settings().unwrap_err());
        assert!(
            err.contains("readable by group or others") && !err.contains("sb-marker"),
            "{err}"
        );
        std::fs::set_permissions(file.path(), std::fs::Permissions::from_mode(0o600)).unwrap();
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        assert!(opt.settings().is_ok());
    }

    #[test]
    fn kubernetes_sync_is_off_unless_enabled_and_needs_a_resolver_address() {
        assert!(ServeOpt::default().settings().unwrap().kubernetes.is_none());
        let file = write(
            "[kubernetes]\nenabled = true\nresolver_address = \"switchboard-resolver.switchboard.svc:50051\"\ntoken_grace = \"2m\"\n",
        );
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        let kubernetes = opt.settings().unwrap().kubernetes.unwrap();
        assert_eq!(
            kubernetes.resolver_address,
            "switchboard-resolver.switchboard.svc:50051"
        );
        assert_eq!(kubernetes.token_grace, Duration::from_secs(120));
        assert_eq!(kubernetes.resync_interval, Duration::from_secs(300));
        assert!(kubernetes.kubeconfig.is_none());
        let opt = ServeOpt {
            kube_sync: true,
            ..ServeOpt::default()
        };
        let err = format!("{:#}", opt.settings().unwrap_err());
        assert!(err.contains("resolver address"), "{err}");
    }

    #[test]
    fn rate_limits_and_the_jwks_refresh_have_defaults_and_file_keys() {
        let defaults = ServeOpt::default().settings().unwrap();
        assert_eq!(
            (defaults.rate_limit, defaults.resolver_rate_limit),
            (50, 1000)
        );
        assert_eq!(defaults.jwks_refresh, Duration::from_secs(300));
        let file = write(
            "rate_limit = 7\nresolver_rate_limit = 9\n[auth]\njwks_file = \"/k.json\"\njwks_refresh = \"2m\"\n",
        );
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        let settings = opt.settings().unwrap();
        assert_eq!((settings.rate_limit, settings.resolver_rate_limit), (7, 9));
        assert_eq!(settings.jwks_refresh, Duration::from_secs(120));
        let opt = ServeOpt {
            resolver_rate_limit: Some(0),
            ..ServeOpt::default()
        };
        assert!(opt.settings().is_err());
    }

    #[test]
    fn allowed_namespaces_come_from_flags_or_the_file_and_default_to_none() {
        assert!(
            ServeOpt::default()
                .settings()
                .unwrap()
                .kube_namespaces
                .is_empty()
        );
        let file = write(
            "[kubernetes.namespaces]\nacme = [\"airflow-a\", \"airflow-b\"]\nGlobex_1 = [\"airflow-g\"]\n",
        );
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        let map = opt.settings().unwrap().kube_namespaces;
        assert_eq!(
            map,
            BTreeMap::from([
                (
                    "Globex_1".to_owned(),
                    BTreeSet::from(["airflow-g".to_owned()])
                ),
                (
                    "acme".to_owned(),
                    BTreeSet::from(["airflow-a".to_owned(), "airflow-b".to_owned()])
                ),
            ])
        );
        // Flags replace the file's table.
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            kube_namespaces: vec!["acme=airflow-c".into(), "acme=airflow-d".into()],
            ..ServeOpt::default()
        };
        let map = opt.settings().unwrap().kube_namespaces;
        assert_eq!(map.len(), 1);
        assert_eq!(map["acme"].len(), 2);
        for bad in ["acme", "acme=Airflow", "acme=", "bad workspace=airflow"] {
            let opt = ServeOpt {
                kube_namespaces: vec![bad.into()],
                ..ServeOpt::default()
            };
            let err = format!("{:#}", opt.settings().unwrap_err());
            assert!(err.contains("namespace"), "{bad}: {err}");
        }
        let file = write("[kubernetes.namespaces]\nacme = [\"not_a_label\"]\n");
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        assert!(opt.settings().is_err());
    }

    #[test]
    fn tls_and_retention_come_from_their_tables() {
        let file = write(
            "[tls]\ncert_file = \"/etc/sb/server.crt\"\nkey_file = \"/etc/sb/server.key\"\n[retention]\nfeed = \"2d\"\nrequest_log = \"1d\"\naudit = \"90d\"\nprune_interval = \"10m\"\n",
        );
        let opt = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        };
        let settings = opt.settings().unwrap();
        let tls = settings.tls.unwrap();
        assert_eq!(tls.key_file, PathBuf::from("/etc/sb/server.key"));
        assert_eq!(
            settings.retention.retention.feed,
            Duration::from_secs(2 * 86_400)
        );
        assert_eq!(settings.retention.prune_interval, Duration::from_secs(600));
        for text in ["[tls]\ncert = \"x\"", "[retention]\nfeeds = \"1d\""] {
            let file = write(text);
            let opt = ServeOpt {
                config: Some(file.path().to_owned()),
                ..ServeOpt::default()
            };
            assert!(opt.settings().is_err(), "{text}");
        }
    }

    /// README's "Embedded defaults" file states the defaults: read as a
    /// config file, it configures exactly what no file does.
    #[test]
    fn readmes_embedded_defaults_are_the_defaults() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split_once("Embedded defaults")
            .and_then(|(_, rest)| rest.split_once("```toml\n"))
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(block, _)| block)
            .expect("README's Configuration has an \"Embedded defaults\" toml block");
        for key in [
            "data_dir",
            "listen",
            "database_url",
            "max_stale",
            "rate_limit",
        ] {
            assert!(block.contains(key), "the block states {key}:\n{block}");
        }
        let file = write(block);
        let from_readme = ServeOpt {
            config: Some(file.path().to_owned()),
            ..ServeOpt::default()
        }
        .settings()
        .unwrap();
        let defaults = ServeOpt::default().settings().unwrap();
        assert_eq!(format!("{from_readme:?}"), format!("{defaults:?}"));
    }

    /// README's production example uses only keys the file may hold.
    #[test]
    fn readmes_production_example_has_only_known_keys() {
        let readme = include_str!("../../../README.md");
        let block = readme
            .split_once("# /etc/switchboard/config.toml\n")
            .and_then(|(_, rest)| rest.split_once("```"))
            .map(|(block, _)| block)
            .expect("README's Configuration has a production example");
        let parsed: Result<FileConfig, _> = toml::from_str(block);
        assert!(parsed.is_ok(), "{parsed:?}");
    }

    #[test]
    fn unknown_keys_and_bad_values_are_errors() {
        for text in [
            "lisen = \"127.0.0.1:1\"",
            "[vault]\nadress = \"x\"",
            "[kubernetes]\nenable = true",
            "listen = \"nope\"",
        ] {
            let file = write(text);
            let opt = ServeOpt {
                config: Some(file.path().to_owned()),
                ..ServeOpt::default()
            };
            let err = format!("{:#}", opt.settings().unwrap_err());
            assert!(err.contains("invalid config file"), "{text}: {err}");
        }
        let opt = ServeOpt {
            database_url: Some("mysql://x".into()),
            ..ServeOpt::default()
        };
        assert!(opt.settings().is_err());
    }
}
