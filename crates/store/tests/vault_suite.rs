//! The Vault KV v2 secret store against a real OpenBao/Vault at
//! `SWITCHBOARD_TEST_VAULT_ADDR` (token "root" unless `VAULT_TOKEN` is set).

use std::collections::BTreeMap;

use serde_json::json;
use switchboard_store::vault::{VaultConfig, VaultSecrets};
use switchboard_store::{SecretStore, Store};

/// A store whose Vault entries live under their own prefix, so tests don't
/// sweep each other's entries.
async fn vault_store() -> Option<(Store, tempfile::TempDir)> {
    let address = switchboard_tests::vault_addr()?;
    let config = VaultConfig {
        address,
        token: std::env::var("VAULT_TOKEN").unwrap_or_else(|_| "root".to_owned()),
        approle: None,
        mount: "secret".to_owned(),
        prefix: unique("switchboard-test"),
        ca_certs: Vec::new(),
        timeout: switchboard_store::vault::DEFAULT_TIMEOUT,
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
        approle: None,
        mount: "secret".to_owned(),
        prefix: "switchboard-test".to_owned(),
        ca_certs: Vec::new(),
        timeout: switchboard_store::vault::DEFAULT_TIMEOUT,
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

#[tokio::test]
async fn sweep_destroys_versions_no_committed_row_points_to() {
    use switchboard_store::entity::{connection, connection_version};
    use switchboard_store::sea_orm::{ActiveModelTrait, ActiveValue::Set};

    let Some((store, _dir)) = vault_store().await else {
        return;
    };
    let SecretStore::Vault(vault) = store.secrets().clone() else {
        unreachable!()
    };
    let workspace = unique("sweep");
    let db = store.db();
    let row = connection::ActiveModel {
        workspace: Set(workspace.clone()),
        conn_id: Set("pg".into()),
        conn_id_folded: Set("PG".into()),
        type_key: Set("postgres".into()),
        conn_type: Set("postgres".into()),
        extra: Set("{}".into()),
        link_to_all: Set(false),
        excluded_deployments: Set("[]".into()),
        secret_fields: Set("[]".into()),
        version: Set(2),
        create_time: Set(0),
        update_time: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    let owner = format!("connections/{}", row.id);
    let mut versions = Vec::new();
    for value in ["history", "current", "aborted"] {
        let values = BTreeMap::from([("password".to_owned(), json!(value))]);
        versions.push(
            store
                .secrets()
                .put(db, &workspace, &owner, &values, 0)
                .await
                .unwrap(),
        );
    }
    // v2 is current, v1 is kept by the version history, v3 was never committed.
    let mut active: connection::ActiveModel = row.clone().into();
    active.secret_version = Set(versions[1]);
    active.update(db).await.unwrap();
    connection_version::ActiveModel {
        connection_pk: Set(row.id),
        version: Set(1),
        snapshot: Set("{}".into()),
        secret_version: Set(versions[0]),
        actor: Set("t".into()),
        action: Set("create".into()),
        changed_fields: Set("[]".into()),
        create_time: Set(0),
        ..Default::default()
    }
    .insert(db)
    .await
    .unwrap();
    // A link whose row is gone.
    let gone = BTreeMap::from([("password".to_owned(), json!("gone"))]);
    store
        .secrets()
        .put(db, &workspace, "links/999999", &gone, 0)
        .await
        .unwrap();

    // Inside the grace period nothing is touched.
    let early = vault
        .sweep(db, chrono::Utc::now() - chrono::Duration::hours(1))
        .await
        .unwrap();
    assert_eq!((early.destroyed_versions, early.deleted_entries), (0, 0));

    let report = vault
        .sweep(db, chrono::Utc::now() + chrono::Duration::hours(1))
        .await
        .unwrap();
    assert!(
        report.destroyed_versions >= 1 && report.deleted_entries >= 1,
        "{report:?}"
    );
    let secrets = store.secrets();
    assert_eq!(
        secrets
            .get(db, &workspace, &owner, versions[0])
            .await
            .unwrap()["password"],
        json!("history")
    );
    assert_eq!(
        secrets
            .get(db, &workspace, &owner, versions[1])
            .await
            .unwrap()["password"],
        json!("current")
    );
    assert!(
        secrets
            .get(db, &workspace, &owner, versions[2])
            .await
            .is_err(),
        "aborted version survives"
    );
    assert!(
        secrets
            .get(db, &workspace, "links/999999", Some(1))
            .await
            .is_err(),
        "orphan entry survives"
    );
}

#[tokio::test]
async fn approle_logs_in_and_reads_what_it_writes() {
    use switchboard_store::vault::AppRole;
    use vaultrs::client::{VaultClient, VaultClientSettingsBuilder};

    let Some(address) = switchboard_tests::vault_addr() else {
        return;
    };
    let root = std::env::var("VAULT_TOKEN").unwrap_or_else(|_| "root".to_owned());
    switchboard_store::vault::install_crypto_provider();
    let admin = VaultClient::new(
        VaultClientSettingsBuilder::default()
            .address(&address)
            .token(&root)
            .build()
            .unwrap(),
    )
    .unwrap();
    let mount = unique("approle");
    vaultrs::sys::auth::enable(&admin, &mount, "approle", None)
        .await
        .unwrap();
    let prefix = unique("switchboard-approle");
    let policy = format!(
        "path \"secret/data/{prefix}/*\" {{ capabilities = [\"create\", \"update\", \"read\"] }}\n\
         path \"secret/metadata/{prefix}/*\" {{ capabilities = [\"create\", \"update\", \"read\", \"list\", \"delete\"] }}"
    );
    vaultrs::sys::policy::set(&admin, &prefix, &policy)
        .await
        .unwrap();
    vaultrs::auth::approle::role::set(
        &admin,
        &mount,
        "control",
        Some(
            vaultrs::api::auth::approle::requests::SetAppRoleRequest::builder()
                .token_policies(vec![prefix.clone()]),
        ),
    )
    .await
    .unwrap();
    let role_id = vaultrs::auth::approle::role::read_id(&admin, &mount, "control")
        .await
        .unwrap()
        .role_id;
    let secret_id = vaultrs::auth::approle::role::secret::generate(&admin, &mount, "control", None)
        .await
        .unwrap()
        .secret_id;

    let config = VaultConfig {
        address,
        token: String::new(),
        approle: Some(AppRole {
            mount: mount.clone(),
            role_id,
            secret_id,
        }),
        mount: "secret".to_owned(),
        prefix: prefix.clone(),
        ca_certs: Vec::new(),
        timeout: switchboard_store::vault::DEFAULT_TIMEOUT,
    };
    let secrets = SecretStore::Vault(VaultSecrets::connect(&config).await.unwrap());
    let dir = tempfile::tempdir().unwrap();
    let store = Store::connect(
        &format!("sqlite://{}", dir.path().join("t.db").display()),
        secrets,
    )
    .await
    .unwrap();
    let values = BTreeMap::from([("password".to_owned(), json!("via-approle"))]);
    let version = store
        .secrets()
        .put(store.db(), "ws", "connections/1", &values, 0)
        .await
        .unwrap();
    assert_eq!(
        store
            .secrets()
            .get(store.db(), "ws", "connections/1", version)
            .await
            .unwrap(),
        values
    );

    let wrong = VaultConfig {
        approle: Some(AppRole {
            mount,
            role_id: "nope".into(),
            secret_id: "nope".into(),
        }),
        ..config
    };
    assert!(VaultSecrets::connect(&wrong).await.is_err());
}
