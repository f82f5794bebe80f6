//! The Vault KV v2 secret store against a real OpenBao/Vault at
//! `SWITCHBOARD_TEST_VAULT_ADDR` (token "root" unless `VAULT_TOKEN` is set).

use std::collections::BTreeMap;

use serde_json::json;
use switchboard_store::vault::{VaultConfig, VaultSecrets};
use switchboard_store::{SecretStore, Store};

async fn vault_store() -> Option<(Store, tempfile::TempDir)> {
    let Ok(address) = std::env::var("SWITCHBOARD_TEST_VAULT_ADDR") else {
        eprintln!(
            "skipping Vault: SWITCHBOARD_TEST_VAULT_ADDR is unset (scripts/openbao.sh start prints one)"
        );
        return None;
    };
    let config = VaultConfig {
        address,
        token: std::env::var("VAULT_TOKEN").unwrap_or_else(|_| "root".to_owned()),
        mount: "secret".to_owned(),
        prefix: "switchboard-test".to_owned(),
        ca_certs: Vec::new(),
    };
    let secrets = SecretStore::Vault(VaultSecrets::new(&config).unwrap());
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    Some((Store::connect(&url, secrets).await.unwrap(), dir))
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

#[tokio::test]
async fn reads_return_exactly_the_version_a_row_points_to() {
    let Some((store, _dir)) = vault_store().await else {
        return;
    };
    let secrets = store.secrets();
    let workspace = unique("ws");
    let first = BTreeMap::from([("password".to_owned(), json!("first"))]);
    let second = BTreeMap::from([
        ("password".to_owned(), json!("second")),
        ("extra.token".to_owned(), json!("t")),
    ]);
    let db = store.db();
    let v1 = secrets
        .put(db, &workspace, "connections/1", &first, 0)
        .await
        .unwrap();
    let v2 = secrets
        .put(db, &workspace, "connections/1", &second, 0)
        .await
        .unwrap();
    assert_eq!((v1, v2), (Some(1), Some(2)));
    assert_eq!(
        secrets
            .get(db, &workspace, "connections/1", v1)
            .await
            .unwrap(),
        first
    );
    assert_eq!(
        secrets
            .get(db, &workspace, "connections/1", v2)
            .await
            .unwrap(),
        second
    );
}

#[tokio::test]
async fn unreachable_vault_is_unavailable() {
    let config = VaultConfig {
        address: "http://127.0.0.1:9".to_owned(),
        token: "root".to_owned(),
        mount: "secret".to_owned(),
        prefix: "switchboard-test".to_owned(),
        ca_certs: Vec::new(),
    };
    let secrets = VaultSecrets::new(&config).unwrap();
    let store_secrets = SecretStore::Vault(secrets);
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, store_secrets).await.unwrap();
    let values = BTreeMap::from([("password".to_owned(), json!("never-written"))]);
    let err = store
        .secrets()
        .put(store.db(), "ws", "connections/1", &values, 0)
        .await
        .unwrap_err();
    assert!(err.is_unavailable(), "{err}");
    assert!(!err.to_string().contains("never-written"));
}
