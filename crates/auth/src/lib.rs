//! Authentication: user JWTs (HS256 with the development key, or RS256/ES256
//! from a [`jwks::Jwks`]) and opaque deployment tokens, stored only as
//! SHA-256 hashes (`switchboard_store::tokens`) and compared in constant
//! time; and the per-caller [`Admission`] the rate limit charges.

mod error;
pub mod jwks;

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use switchboard_domain::permission::{Principal, Role};
use switchboard_store::{DbHandle, StoreError, tokens};

pub use error::{AuthError, AuthResult};
pub use switchboard_domain::refusal::{ERROR_DOMAIN, Refusal, RefusalReason};
pub use switchboard_store::tokens::{
    DEPLOYMENT_TOKEN_PREFIX, NewDeploymentToken, hash_token, new_deployment_token, parse_token_id,
};

use crate::jwks::Jwks;

/// The audience every user JWT must carry.
pub const AUDIENCE: &str = "switchboard";
/// Length of the development HS256 key file.
pub const DEV_KEY_LEN: usize = 32;

/// Seconds a user JWT is still accepted past its `exp` (and before its
/// `nbf`), for clocks that disagree a little.
pub const CLOCK_SKEW_LEEWAY_SECONDS: u64 = 30;
/// Claims of a user JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UserClaims {
    pub sub: String,
    pub exp: u64,
    pub aud: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iss: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Workspace id → role name.
    #[serde(default)]
    pub roles: BTreeMap<String, String>,
}

/// Signs development user JWTs (`switchboard token user`).
pub struct JwtSigner {
    key: EncodingKey,
}

impl fmt::Debug for JwtSigner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JwtSigner").finish_non_exhaustive()
    }
}

impl JwtSigner {
    /// A signer with the development HS256 key.
    pub fn hs256(key: &[u8]) -> Self {
        Self {
            key: EncodingKey::from_secret(key),
        }
    }

    /// Signs `claims`.
    pub fn sign(&self, claims: &UserClaims) -> AuthResult<String> {
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), claims, &self.key).map_err(|err| {
            AuthError::Store(StoreError::Secrets(format!("cannot sign token: {err}")))
        })
    }
}

/// Where user-token signing keys come from.
#[derive(Clone)]
enum UserKeys {
    /// The development HS256 key.
    Hs256(DecodingKey),
    /// RS256/ES256 keys from a JWKS.
    Jwks(Jwks),
}

/// Verifies user JWTs and deployment tokens.
#[derive(Clone)]
pub struct Authenticator {
    keys: UserKeys,
    issuer: Option<String>,
}

impl fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

impl Authenticator {
    /// Verifies HS256 JWTs signed with the development key. Only HS256 is
    /// accepted: `alg: none` and every other algorithm are refused.
    pub fn hs256(key: &[u8]) -> Self {
        Self {
            keys: UserKeys::Hs256(DecodingKey::from_secret(key)),
            issuer: None,
        }
    }

    /// Verifies RS256/ES256 JWTs against `jwks`; the development key is not
    /// accepted. With `issuer`, tokens must carry that `iss`.
    pub fn jwks(jwks: Jwks, issuer: Option<String>) -> Self {
        Self {
            keys: UserKeys::Jwks(jwks),
            issuer,
        }
    }

    /// How a person gets a user token this server accepts, for refusals.
    pub fn user_token_advice(&self) -> &'static str {
        match self.keys {
            UserKeys::Hs256(_) => {
                "mint one with `switchboard token user --data-dir DIR --subject NAME \
                 --role WORKSPACE=ROLE`, DIR being this server's data dir"
            }
            UserKeys::Jwks(_) => "sign in to the identity provider this server trusts for one",
        }
    }

    fn validation(&self, algorithm: Algorithm) -> Validation {
        let mut validation = Validation::new(algorithm);
        // `aud` may be a string or an array (RFC 7519 4.1.3); either must
        // name us.
        validation.set_audience(&[AUDIENCE]);
        validation.validate_nbf = true;
        validation.leeway = CLOCK_SKEW_LEEWAY_SECONDS;
        match &self.issuer {
            // A configured issuer is required, not only checked when present.
            Some(issuer) => {
                validation.set_required_spec_claims(&["exp", "sub", "aud", "iss"]);
                validation.set_issuer(&[issuer]);
            }
            None => validation.set_required_spec_claims(&["exp", "sub", "aud"]),
        }
        validation
    }

    /// Resolves the `authorization` header value to a principal.
    pub async fn authenticate<C: DbHandle>(
        &self,
        db: &C,
        authorization: Option<&str>,
    ) -> AuthResult<Principal> {
        let missing =
            |message: &str| AuthError::Refused(Refusal::new(RefusalReason::Missing, message));
        let header = authorization.ok_or_else(|| missing("missing authorization metadata"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| missing("authorization must be 'Bearer <token>'"))?;
        if token.starts_with(DEPLOYMENT_TOKEN_PREFIX) {
            self.deployment(db, token).await
        } else {
            self.user(token).await
        }
    }

    async fn user(&self, token: &str) -> AuthResult<Principal> {
        refuse_critical_headers(token)?;
        let header = jsonwebtoken::decode_header(token).map_err(|err| invalid_user_token(&err))?;
        let data = match &self.keys {
            UserKeys::Hs256(key) => {
                if header.alg != Algorithm::HS256 {
                    return Err(AuthError::Refused(
                        "user tokens must be signed with HS256 here".into(),
                    ));
                }
                jsonwebtoken::decode::<VerifiedClaims>(
                    token,
                    key,
                    &self.validation(Algorithm::HS256),
                )
                .map_err(|err| invalid_user_token(&err))?
            }
            UserKeys::Jwks(jwks) => {
                if !matches!(header.alg, Algorithm::RS256 | Algorithm::ES256) {
                    return Err(AuthError::Refused(
                        "user tokens must be signed with RS256 or ES256".into(),
                    ));
                }
                let key = jwks.key(header.kid.as_deref(), header.alg).await?;
                jsonwebtoken::decode::<VerifiedClaims>(token, &key, &self.validation(header.alg))
                    .map_err(|err| invalid_user_token(&err))?
            }
        };
        let claims = data.claims;
        if claims.sub.is_empty() {
            return Err(AuthError::Refused("token subject is empty".into()));
        }
        // The subject lands in audit events and logs; control characters
        // there could forge lines or hide text.
        if claims.sub.chars().any(char::is_control) {
            return Err(AuthError::Refused(
                "token subject contains control characters".into(),
            ));
        }
        let mut roles = BTreeMap::new();
        for (workspace, role_name) in claims.roles {
            // Unknown role names grant nothing rather than failing the whole token.
            if let Some(role) = Role::parse(&role_name) {
                roles.insert(workspace, role);
            }
        }
        Ok(Principal::User {
            subject: claims.sub,
            roles,
        })
    }

    async fn deployment<C: DbHandle>(&self, db: &C, token: &str) -> AuthResult<Principal> {
        let invalid = || AuthError::Refused(deployment_token_refusal());
        let token_id = parse_token_id(token).ok_or_else(invalid)?;
        let row = tokens::by_token_id(db, token_id)
            .await?
            .ok_or_else(invalid)?;
        let presented = hash_token(token);
        let matches: bool = presented.as_bytes().ct_eq(row.token_hash.as_bytes()).into();
        if !matches || row.revoke_time.is_some() {
            return Err(invalid());
        }
        Ok(Principal::Deployment {
            workspace: row.workspace,
            deployment: row.deployment_id,
            token_id: row.token_id,
        })
    }
}

/// Who a call is charged to by a per-caller limit: the authenticated
/// principal, or the peer address when authentication failed (so that
/// garbage tokens from one address share one allowance).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Caller<'a> {
    /// A user, by the subject of its token.
    User { subject: &'a str },
    /// A deployment, by name, whichever of its tokens was presented.
    Deployment {
        workspace: &'a str,
        deployment: &'a str,
    },
    /// An unauthenticated call, by peer address (unknown off TCP).
    Peer(Option<IpAddr>),
}

/// Decides whether a caller may proceed (the server's rate limit).
pub trait CallerGate: Send + Sync {
    /// Whether `caller` may make one more call now.
    fn admit(&self, caller: Caller<'_>) -> bool;
}

/// A per-call admission check, placed in a request's extensions by the
/// server's rate-limit layer and consulted by the services right after
/// authentication, so the limit is keyed on who the caller is rather than on
/// how the token was spelled, and the token is verified once.
#[derive(Clone)]
pub struct Admission {
    gate: Arc<dyn CallerGate>,
    peer: Option<IpAddr>,
}

impl fmt::Debug for Admission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Admission")
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Admission {
    /// An admission through `gate` for a call from `peer`.
    pub fn new(gate: Arc<dyn CallerGate>, peer: Option<IpAddr>) -> Self {
        Self { gate, peer }
    }

    /// Charges the call to `principal`, or to the peer when authentication
    /// failed (`None`). Without an admission (no limit) every call proceeds.
    pub fn check(admission: Option<&Admission>, principal: Option<&Principal>) -> AuthResult<()> {
        let Some(admission) = admission else {
            return Ok(());
        };
        let caller = match principal {
            Some(Principal::User { subject, .. }) => Caller::User { subject },
            Some(Principal::Deployment {
                workspace,
                deployment,
                ..
            }) => Caller::Deployment {
                workspace,
                deployment,
            },
            None => Caller::Peer(admission.peer),
        };
        if admission.gate.admit(caller) {
            Ok(())
        } else {
            Err(AuthError::RateLimited)
        }
    }
}

/// The claims read from a verified user JWT. `exp`, `nbf`, `aud` and `iss`
/// are checked by the validation from the same payload; `aud` is left out
/// here because it may be a string or an array.
#[derive(Debug, Deserialize)]
struct VerifiedClaims {
    /// Defaulted so that a missing `sub` is reported as such by the validation.
    #[serde(default)]
    sub: String,
    /// Workspace id → role name.
    #[serde(default)]
    roles: BTreeMap<String, String>,
}

/// Refuses tokens whose header lists critical extensions: RFC 7515 4.1.11
/// requires refusing a `crit` the recipient does not implement, and this one
/// implements none.
fn refuse_critical_headers(token: &str) -> AuthResult<()> {
    let malformed = || AuthError::Refused("user token is malformed".into());
    let encoded = token.split('.').next().ok_or_else(malformed)?;
    let decoded = URL_SAFE_NO_PAD.decode(encoded).map_err(|_| malformed())?;
    let header: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&decoded).map_err(|_| malformed())?;
    if header.contains_key("crit") {
        return Err(AuthError::Refused(
            "token header lists critical extensions ('crit'), which are not supported".into(),
        ));
    }
    Ok(())
}

/// A fixed, plain description of why a user JWT was refused. The library's
/// own text (variant names, JSON parser excerpts of the payload) never
/// reaches the caller.
fn invalid_user_token(err: &jsonwebtoken::errors::Error) -> AuthError {
    use jsonwebtoken::errors::ErrorKind;
    let reason = match err.kind() {
        ErrorKind::ExpiredSignature => {
            return AuthError::Refused(Refusal::new(
                RefusalReason::Expired,
                format!(
                    "token has expired (its exp is more than the {CLOCK_SKEW_LEEWAY_SECONDS} s \
                     allowed for clock skew in the past)"
                ),
            ));
        }
        ErrorKind::InvalidSignature => {
            return AuthError::Refused(Refusal::new(
                RefusalReason::BadSignature,
                "token signature does not verify with this server's keys",
            ));
        }
        ErrorKind::ImmatureSignature => "token is not valid yet (its nbf is in the future)",
        ErrorKind::InvalidAudience => "token audience must include 'switchboard'",
        ErrorKind::InvalidIssuer => "token issuer is not the configured issuer",
        ErrorKind::MissingRequiredClaim(claim) => match claim.as_str() {
            "exp" => "token has no expiry (exp)",
            "sub" => "token has no subject (sub)",
            "aud" => "token has no audience (aud)",
            "iss" => "token has no issuer (iss), which is required here",
            _ => "token lacks a required claim",
        },
        ErrorKind::InvalidAlgorithm | ErrorKind::MissingAlgorithm => {
            "token algorithm is not accepted"
        }
        ErrorKind::Json(_) => {
            "token claims are malformed (sub and exp are required, roles maps workspaces to role names)"
        }
        _ => "user token is malformed",
    };
    AuthError::Refused(reason.into())
}

/// The refusal of a deployment token that is malformed, unknown or revoked.
pub fn deployment_token_refusal() -> Refusal {
    Refusal::new(
        RefusalReason::DeploymentTokenInvalid,
        "invalid or revoked deployment token",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn refuses_alg_none_and_wrong_key() {
        let auth = Authenticator::hs256(b"0123456789abcdef0123456789abcdef");
        let claims = UserClaims {
            sub: "alice".into(),
            exp: 4_000_000_000,
            aud: AUDIENCE.into(),
            iss: None,
            iat: None,
            roles: BTreeMap::from([("acme".into(), "OWNER".into())]),
        };
        let good = JwtSigner::hs256(b"0123456789abcdef0123456789abcdef")
            .sign(&claims)
            .unwrap();
        assert!(auth.user(&good).await.is_ok());
        let other = JwtSigner::hs256(b"another key another key another!")
            .sign(&claims)
            .unwrap();
        assert!(auth.user(&other).await.is_err());
        let payload = URL_SAFE_NO_PAD.encode(serde_json::to_vec(&claims).unwrap());
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        assert!(auth.user(&format!("{header}.{payload}.")).await.is_err());
        let expired = UserClaims { exp: 1, ..claims };
        let expired = JwtSigner::hs256(b"0123456789abcdef0123456789abcdef")
            .sign(&expired)
            .unwrap();
        assert!(auth.user(&expired).await.is_err());
    }

    const KEY: &[u8; 32] = b"0123456789abcdef0123456789abcdef";

    /// An HS256 JWT over exactly `header` and `claims`, as an issuer might
    /// write them (arrays, extra header fields).
    fn raw_token(header: serde_json::Value, claims: serde_json::Value) -> String {
        use hmac::{Hmac, Mac};
        use sha2::Sha256;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut mac = Hmac::<Sha256>::new_from_slice(KEY).unwrap();
        mac.update(signing_input.as_bytes());
        let signature = URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes());
        format!("{signing_input}.{signature}")
    }

    fn now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    fn hs256_header() -> serde_json::Value {
        serde_json::json!({"alg": "HS256", "typ": "JWT"})
    }

    fn base_claims() -> serde_json::Value {
        serde_json::json!({
            "sub": "alice",
            "exp": now() + 3600,
            "aud": "switchboard",
            "roles": {"acme": "OWNER"},
        })
    }

    fn expired_claims() -> serde_json::Value {
        let mut claims = base_claims();
        claims["exp"] = serde_json::json!(now() - 31);
        claims
    }

    async fn refusal(auth: &Authenticator, token: &str) -> String {
        match auth.user(token).await {
            Ok(principal) => panic!("accepted: {principal:?}"),
            Err(AuthError::Refused(refusal)) => {
                assert!(!refusal.message.contains(token), "{refusal}");
                refusal.message
            }
            Err(other) => panic!("{other}"),
        }
    }

    #[tokio::test]
    async fn audience_may_be_a_string_or_an_array_naming_switchboard() {
        let auth = Authenticator::hs256(KEY);
        let mut claims = base_claims();
        assert!(
            auth.user(&raw_token(hs256_header(), claims.clone()))
                .await
                .is_ok()
        );
        claims["aud"] = serde_json::json!(["other", "switchboard"]);
        assert!(
            auth.user(&raw_token(hs256_header(), claims.clone()))
                .await
                .is_ok()
        );
        claims["aud"] = serde_json::json!(["other"]);
        let message = refusal(&auth, &raw_token(hs256_header(), claims)).await;
        assert_eq!(message, "token audience must include 'switchboard'");
    }

    #[tokio::test]
    async fn not_before_is_honoured_with_the_leeway() {
        let auth = Authenticator::hs256(KEY);
        let mut claims = base_claims();
        claims["nbf"] = serde_json::json!(now() + 600);
        let message = refusal(&auth, &raw_token(hs256_header(), claims.clone())).await;
        assert!(message.starts_with("token is not valid yet"), "{message}");
        claims["nbf"] = serde_json::json!(now() + 5);
        assert!(auth.user(&raw_token(hs256_header(), claims)).await.is_ok());
    }

    #[tokio::test]
    async fn a_configured_issuer_is_required_not_only_checked() {
        let auth = Authenticator {
            keys: UserKeys::Hs256(DecodingKey::from_secret(KEY)),
            issuer: Some("https://idp.example".into()),
        };
        let mut claims = base_claims();
        let message = refusal(&auth, &raw_token(hs256_header(), claims.clone())).await;
        assert_eq!(message, "token has no issuer (iss), which is required here");
        claims["iss"] = serde_json::json!("https://evil.example");
        let message = refusal(&auth, &raw_token(hs256_header(), claims.clone())).await;
        assert_eq!(message, "token issuer is not the configured issuer");
        claims["iss"] = serde_json::json!("https://idp.example");
        assert!(auth.user(&raw_token(hs256_header(), claims)).await.is_ok());
        // Without a configured issuer, `iss` stays optional.
        assert!(
            Authenticator::hs256(KEY)
                .user(&raw_token(hs256_header(), base_claims()))
                .await
                .is_ok()
        );
    }

    #[tokio::test]
    async fn critical_header_extensions_are_refused() {
        let auth = Authenticator::hs256(KEY);
        let header = serde_json::json!({"alg": "HS256", "typ": "JWT", "crit": ["exp"], "exp": 1});
        let message = refusal(&auth, &raw_token(header, base_claims())).await;
        assert!(message.contains("'crit'"), "{message}");
    }

    #[tokio::test]
    async fn subjects_with_control_characters_are_refused() {
        let auth = Authenticator::hs256(KEY);
        for subject in ["alice\nadmin", "bob\u{1b}[2J", "carol\u{0}", "dave\u{85}"] {
            let mut claims = base_claims();
            claims["sub"] = serde_json::json!(subject);
            let message = refusal(&auth, &raw_token(hs256_header(), claims)).await;
            assert_eq!(message, "token subject contains control characters");
        }
        let mut claims = base_claims();
        claims["sub"] = serde_json::json!("Zoë O'Brien <zoe@example.com>");
        assert!(auth.user(&raw_token(hs256_header(), claims)).await.is_ok());
    }

    #[tokio::test]
    async fn refusals_are_plain_words_never_library_names() {
        let auth = Authenticator::hs256(KEY);
        let claims = base_claims();
        let token = raw_token(hs256_header(), claims.clone());
        let (unsigned, _) = token.rsplit_once('.').unwrap();
        let forged = format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode([0u8; 32]));
        let mut expired = claims.clone();
        expired["exp"] = serde_json::json!(1);
        let mut no_subject = claims.clone();
        no_subject.as_object_mut().unwrap().remove("sub");
        let mut bad_roles = claims;
        bad_roles["roles"] = serde_json::json!({"acme": ["OWNER", "sb-marker-claims"]});
        let cases = [
            (
                forged,
                "token signature does not verify with this server's keys",
            ),
            (
                raw_token(hs256_header(), expired),
                "token has expired (its exp is more than the 30 s allowed for clock skew in the past)",
            ),
            (
                raw_token(hs256_header(), no_subject),
                "token has no subject (sub)",
            ),
            ("not-a-jwt".to_owned(), "user token is malformed"),
        ];
        for (token, expected) in cases {
            assert_eq!(refusal(&auth, &token).await, expected);
        }
        for (claims, reason) in [
            (expired_claims(), RefusalReason::Expired),
            (base_claims(), RefusalReason::BadSignature),
        ] {
            let token = raw_token(hs256_header(), claims);
            let (unsigned, signature) = token.rsplit_once('.').unwrap();
            let token = if reason == RefusalReason::BadSignature {
                format!("{unsigned}.{}", URL_SAFE_NO_PAD.encode([1u8; 32]))
            } else {
                format!("{unsigned}.{signature}")
            };
            match auth.user(&token).await {
                Err(AuthError::Refused(refusal)) => assert_eq!(refusal.reason, reason),
                other => panic!("{other:?}"),
            }
        }
        let message = refusal(&auth, &raw_token(hs256_header(), bad_roles)).await;
        assert!(
            message.starts_with("token claims are malformed") && !message.contains("sb-marker"),
            "{message}"
        );
    }
}
