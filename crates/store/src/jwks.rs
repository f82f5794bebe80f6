//! Production user-token keys: a JWKS document from a file or URL, cached
//! and refreshed periodically and when a token names an unknown key id.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::RwLock;

use crate::error::{StoreError, StoreResult};

/// How often the key set is re-read even when every kid is known.
const REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Least time between refreshes triggered by unknown key ids.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(30);

/// Where the JWKS document comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

#[derive(Debug)]
struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

/// A cached JWKS.
#[derive(Debug, Clone)]
pub struct Jwks {
    source: JwksSource,
    http: reqwest::Client,
    cached: Arc<RwLock<Cached>>,
}

impl Jwks {
    /// Loads the key set once; fails early when it cannot be read.
    pub async fn load(source: JwksSource) -> StoreResult<Self> {
        crate::vault::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| {
                StoreError::Unauthenticated(format!("cannot build the JWKS client: {err}"))
            })?;
        let keys = fetch(&source, &http).await?;
        Ok(Self {
            source,
            http,
            cached: Arc::new(RwLock::new(Cached {
                keys,
                fetched: Instant::now(),
            })),
        })
    }

    /// The decoding key for `kid` (or the only key when the token names none),
    /// refreshing the set when it is old or the kid is unknown.
    pub async fn key(&self, kid: Option<&str>, algorithm: Algorithm) -> StoreResult<DecodingKey> {
        let (found, age) = {
            let cached = self.cached.read().await;
            (
                select(&cached.keys, kid, algorithm),
                cached.fetched.elapsed(),
            )
        };
        if let Some(key) = found.filter(|_| age < REFRESH_EVERY) {
            return Ok(key);
        }
        if age >= MIN_REFRESH_GAP {
            match fetch(&self.source, &self.http).await {
                Ok(keys) => {
                    let mut cached = self.cached.write().await;
                    *cached = Cached {
                        keys,
                        fetched: Instant::now(),
                    };
                }
                // Keep serving the keys we hold when the source is briefly down.
                Err(err) => {
                    tracing::warn!(error = %err, "cannot refresh the JWKS; using the cached keys")
                }
            }
        }
        let cached = self.cached.read().await;
        select(&cached.keys, kid, algorithm)
            .ok_or_else(|| StoreError::Unauthenticated("the token's signing key is unknown".into()))
    }
}

fn select(keys: &JwkSet, kid: Option<&str>, algorithm: Algorithm) -> Option<DecodingKey> {
    let jwk = match kid {
        Some(kid) => keys.find(kid)?,
        None if keys.keys.len() == 1 => &keys.keys[0],
        None => return None,
    };
    // A key declaring another algorithm must not verify this token.
    if let Some(declared) = jwk.common.key_algorithm
        && format!("{declared:?}") != format!("{algorithm:?}")
    {
        return None;
    }
    DecodingKey::from_jwk(jwk).ok()
}

async fn fetch(source: &JwksSource, http: &reqwest::Client) -> StoreResult<JwkSet> {
    let bytes = match source {
        JwksSource::File(path) => {
            tokio::fs::read(path)
                .await
                .map_err(|err| StoreError::KeyFile {
                    path: path.display().to_string(),
                    reason: err.to_string(),
                })?
        }
        JwksSource::Url(url) => {
            let response = http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|err| {
                    StoreError::Unauthenticated(format!("cannot fetch the JWKS: {err}"))
                })?;
            response
                .bytes()
                .await
                .map_err(|err| StoreError::Unauthenticated(format!("cannot read the JWKS: {err}")))?
                .to_vec()
        }
    };
    serde_json::from_slice(&bytes).map_err(|err| StoreError::Corrupt {
        table: "jwks",
        reason: err.to_string(),
    })
}
