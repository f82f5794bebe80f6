//! Production user-token keys: a JWKS document from a file or URL, cached
//! and refreshed periodically and when a token names an unknown key id.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey};
use tokio::sync::watch;

use switchboard_store::StoreError;

use crate::error::{AuthError, AuthResult};

/// How often the key set is re-read by default, even when every kid is known.
pub const DEFAULT_REFRESH_EVERY: Duration = Duration::from_secs(300);
/// Least time between two reads of the key set (a token naming an unknown
/// kid triggers at most one read per gap), unless the refresh interval is
/// shorter.
const MIN_REFRESH_GAP: Duration = Duration::from_secs(30);
/// Longest wait between failed reads (the back-off doubles up to it).
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Longest a single read may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a token with an unknown kid waits for a read in progress; the read
/// goes on without it.
const UNKNOWN_KID_WAIT: Duration = Duration::from_secs(3);

/// Where the JWKS document comes from.
#[derive(Debug, Clone)]
pub enum JwksSource {
    File(PathBuf),
    Url(String),
}

#[derive(Debug)]
struct State {
    keys: Arc<JwkSet>,
    /// When the keys were last read successfully.
    fetched: Instant,
    /// Earliest start of the next read (the gap, or the back-off after failures).
    next_attempt: Instant,
    /// Reads failed in a row.
    failures: u32,
    /// Whether a read is under way (one at a time).
    refreshing: bool,
}

#[derive(Debug)]
struct Inner {
    source: JwksSource,
    http: reqwest::Client,
    refresh_every: Duration,
    min_gap: Duration,
    state: Mutex<State>,
    /// Bumped when a read finishes, for tokens waiting on it.
    finished: watch::Sender<u64>,
}

/// A cached JWKS. Verification never waits for a read of the key set unless
/// the token names a kid the cache lacks: reads happen in the background,
/// one at a time, at most once per gap, backing off after failures, and the
/// cached keys keep serving meanwhile.
#[derive(Debug, Clone)]
pub struct Jwks {
    inner: Arc<Inner>,
}

impl Jwks {
    /// Loads the key set once; fails early when it cannot be read.
    pub async fn load(source: JwksSource) -> AuthResult<Self> {
        Self::load_refreshing_every(source, DEFAULT_REFRESH_EVERY).await
    }

    /// As [`load`](Self::load), re-reading the set every `refresh_every`.
    pub async fn load_refreshing_every(
        source: JwksSource,
        refresh_every: Duration,
    ) -> AuthResult<Self> {
        switchboard_store::vault::install_crypto_provider();
        let http = reqwest::Client::builder()
            .timeout(FETCH_TIMEOUT)
            .build()
            .map_err(|err| {
                AuthError::Refused(format!("cannot build the JWKS client: {err}").into())
            })?;
        let keys = fetch(&source, &http).await?;
        let now = Instant::now();
        let refresh_every = refresh_every.max(Duration::from_secs(1));
        let min_gap = MIN_REFRESH_GAP.min(refresh_every);
        Ok(Self {
            inner: Arc::new(Inner {
                source,
                http,
                refresh_every,
                min_gap,
                state: Mutex::new(State {
                    keys: Arc::new(keys),
                    fetched: now,
                    next_attempt: now + min_gap,
                    failures: 0,
                    refreshing: false,
                }),
                finished: watch::channel(0).0,
            }),
        })
    }

    /// The decoding key for `kid` (or the only key when the token names none).
    /// An old set is refreshed in the background; an unknown kid starts a
    /// refresh when one is due and waits briefly for it.
    pub async fn key(&self, kid: Option<&str>, algorithm: Algorithm) -> AuthResult<DecodingKey> {
        let unknown = || AuthError::Refused("the token's signing key is unknown".into());
        let mut finished = {
            let mut state = self.inner.lock();
            let now = Instant::now();
            if let Some(key) = select(&state.keys, kid, algorithm) {
                if now.duration_since(state.fetched) >= self.inner.refresh_every {
                    self.start_refresh(&mut state, now);
                }
                return Ok(key);
            }
            self.start_refresh(&mut state, now);
            if !state.refreshing {
                // Read recently (or backing off): the kid is unknown for now.
                return Err(unknown());
            }
            // Subscribed under the lock, so the end of this read is not missed.
            self.inner.finished.subscribe()
        };
        let _ = tokio::time::timeout(UNKNOWN_KID_WAIT, finished.changed()).await;
        let keys = self.inner.lock().keys.clone();
        select(&keys, kid, algorithm).ok_or_else(unknown)
    }

    /// Starts a background read unless one is running or not yet due.
    fn start_refresh(&self, state: &mut State, now: Instant) {
        if state.refreshing || now < state.next_attempt {
            return;
        }
        state.refreshing = true;
        state.next_attempt = now + self.inner.min_gap;
        let inner = self.inner.clone();
        // Its own task: a caller that gives up (deadline, disconnect) must not
        // cancel the read and leave `refreshing` set.
        tokio::spawn(async move {
            let result = fetch(&inner.source, &inner.http).await;
            {
                let mut state = inner.lock();
                let now = Instant::now();
                match result {
                    Ok(keys) => {
                        state.keys = Arc::new(keys);
                        state.fetched = now;
                        state.failures = 0;
                        state.next_attempt = now + inner.min_gap;
                    }
                    Err(err) => {
                        state.failures = state.failures.saturating_add(1);
                        let backoff = backoff(inner.min_gap, state.failures);
                        state.next_attempt = now + backoff;
                        tracing::warn!(
                            error = %err,
                            failures = state.failures,
                            retry_in_seconds = backoff.as_secs(),
                            "cannot refresh the JWKS; using the cached keys"
                        );
                    }
                }
                state.refreshing = false;
            }
            inner
                .finished
                .send_modify(|count| *count = count.wrapping_add(1));
        });
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, State> {
        // The state stays consistent at every unlock; a panic elsewhere while
        // holding it leaves nothing half-written.
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The wait after `failures` failed reads in a row: the gap, doubled per
/// further failure, at most [`MAX_BACKOFF`] (or the gap, if longer).
fn backoff(gap: Duration, failures: u32) -> Duration {
    let doublings = failures.saturating_sub(1).min(16);
    gap.saturating_mul(1 << doublings).min(MAX_BACKOFF.max(gap))
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

async fn fetch(source: &JwksSource, http: &reqwest::Client) -> AuthResult<JwkSet> {
    let bytes = match source {
        JwksSource::File(path) => tokio::fs::read(path).await.map_err(|err| {
            AuthError::Store(StoreError::KeyFile {
                path: path.display().to_string(),
                reason: err.to_string(),
            })
        })?,
        JwksSource::Url(url) => {
            let response = http
                .get(url)
                .send()
                .await
                .and_then(reqwest::Response::error_for_status)
                .map_err(|err| {
                    AuthError::Refused(format!("cannot fetch the JWKS: {err}").into())
                })?;
            response
                .bytes()
                .await
                .map_err(|err| AuthError::Refused(format!("cannot read the JWKS: {err}").into()))?
                .to_vec()
        }
    };
    serde_json::from_slice(&bytes).map_err(|err| {
        AuthError::Store(StoreError::Corrupt {
            table: "jwks",
            reason: err.to_string(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_the_gap_up_to_a_ceiling() {
        let gap = Duration::from_secs(30);
        assert_eq!(backoff(gap, 1), gap);
        assert_eq!(backoff(gap, 2), Duration::from_secs(60));
        assert_eq!(backoff(gap, 3), Duration::from_secs(120));
        assert_eq!(backoff(gap, 10), MAX_BACKOFF);
        assert_eq!(backoff(gap, u32::MAX), MAX_BACKOFF);
    }
}
