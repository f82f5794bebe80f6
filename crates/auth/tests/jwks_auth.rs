//! Production user tokens: ES256 JWTs verified against a JWKS file.

use std::collections::BTreeMap;
use std::path::PathBuf;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use switchboard_auth::jwks::{Jwks, JwksSource};
use switchboard_auth::{AUDIENCE, Authenticator, UserClaims};
use switchboard_domain::permission::{Principal, Role};
use switchboard_store::{SecretStore, Store};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures")
        .join(name)
}

fn sign(kid: &str, claims: &UserClaims) -> String {
    let pem = std::fs::read(fixture(&format!("{kid}.pem"))).unwrap();
    let mut header = Header::new(Algorithm::ES256);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_ec_pem(&pem).unwrap()).unwrap()
}

fn claims(issuer: &str, exp: u64) -> UserClaims {
    UserClaims {
        sub: "carol".into(),
        exp,
        aud: AUDIENCE.into(),
        iss: Some(issuer.into()),
        iat: None,
        roles: BTreeMap::from([("acme".into(), "WORKSPACE_OWNER".into())]),
    }
}

#[tokio::test]
async fn verifies_es256_tokens_against_the_jwks_and_refuses_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("t.db").display());
    let store = Store::connect(&url, SecretStore::embedded(&[1; 32]).unwrap())
        .await
        .unwrap();
    let jwks = Jwks::load(JwksSource::File(fixture("jwks.json")))
        .await
        .unwrap();
    let auth = Authenticator::jwks(jwks, Some("https://idp.example".into()));
    let future = 4_000_000_000;

    let good = sign("test-es256-a", &claims("https://idp.example", future));
    let principal = auth
        .authenticate(store.db(), Some(&format!("Bearer {good}")))
        .await
        .unwrap();
    match principal {
        Principal::User { subject, roles } => {
            assert_eq!(subject, "carol");
            assert_eq!(roles.get("acme"), Some(&Role::Owner));
        }
        other => panic!("{other:?}"),
    }

    let refused = [
        (
            "unknown key",
            sign("test-es256-b", &claims("https://idp.example", future)),
        ),
        (
            "wrong issuer",
            sign("test-es256-a", &claims("https://evil.example", future)),
        ),
        (
            "expired",
            sign("test-es256-a", &claims("https://idp.example", 1)),
        ),
    ];
    for (why, token) in refused {
        let err = auth
            .authenticate(store.db(), Some(&format!("Bearer {token}")))
            .await
            .unwrap_err();
        assert!(
            err.to_string().starts_with("unauthenticated"),
            "{why}: {err}"
        );
    }
    // The development HS256 key is not accepted once a JWKS is configured.
    let hs = switchboard_auth::JwtSigner::hs256(&[7; 32])
        .sign(&claims("https://idp.example", future))
        .unwrap();
    assert!(
        auth.authenticate(store.db(), Some(&format!("Bearer {hs}")))
            .await
            .is_err()
    );
}
