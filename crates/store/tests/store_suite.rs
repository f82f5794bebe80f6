//! One storage suite, run on every backend: SQLite always, PostgreSQL when
//! `SWITCHBOARD_TEST_DATABASE_URL` names a server (each test uses its own
//! schema-free database state by working in its own workspace).

use std::collections::BTreeMap;

use serde_json::json;
use switchboard_store::entity::secret;
use switchboard_store::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel,
};
use switchboard_store::{SecretStore, Store, feed};

/// A store on a backend, and what keeps it alive.
struct Backend {
    store: Store,
    _dir: Option<tempfile::TempDir>,
}

async fn sqlite() -> Option<Backend> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
        .await
        .unwrap();
    Some(Backend {
        store,
        _dir: Some(dir),
    })
}

async fn postgres() -> Option<Backend> {
    let Ok(url) = std::env::var("SWITCHBOARD_TEST_DATABASE_URL") else {
        eprintln!(
            "skipping PostgreSQL: SWITCHBOARD_TEST_DATABASE_URL is unset (scripts/postgres.sh start prints one)"
        );
        return None;
    };
    let store = Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
        .await
        .unwrap();
    Some(Backend { store, _dir: None })
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

macro_rules! store_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn secrets_round_trip_by_exact_version() {
                let Some(backend) = super::$backend().await else { return };
                let secrets = backend.store.secrets();
                let workspace = unique("ws");
                let owner = unique("connections/1");
                let first = BTreeMap::from([("password".to_owned(), json!("one"))]);
                let second = BTreeMap::from([
                    ("password".to_owned(), json!("two")),
                    ("extra.private_key_content".to_owned(), json!({"k": [1, 2]})),
                ]);
                let write = backend.store.begin_write().await.unwrap();
                let v1 = secrets.put(&write.txn, &workspace, &owner, &first, 1).await.unwrap();
                let v2 = secrets.put(&write.txn, &workspace, &owner, &second, 2).await.unwrap();
                write.commit().await.unwrap();
                assert_eq!(v1, Some(1));
                assert_eq!(v2, Some(2));
                let db = backend.store.db();
                assert_eq!(secrets.get(db, &workspace, &owner, v1).await.unwrap(), first);
                assert_eq!(secrets.get(db, &workspace, &owner, v2).await.unwrap(), second);
                assert!(secrets.get(db, &workspace, &owner, None).await.unwrap().is_empty());
                // Another workspace cannot read them, even knowing owner and version.
                assert!(secrets.get(db, "other", &owner, v1).await.is_err());
            }

            #[tokio::test]
            async fn ciphertexts_cannot_be_swapped_between_fields() {
                let Some(backend) = super::$backend().await else { return };
                let secrets = backend.store.secrets();
                let workspace = unique("ws");
                let owner = unique("links/7");
                let values = BTreeMap::from([
                    ("password".to_owned(), json!("pw")),
                    ("extra.token".to_owned(), json!("tk")),
                ]);
                let write = backend.store.begin_write().await.unwrap();
                let version = secrets.put(&write.txn, &workspace, &owner, &values, 1).await.unwrap();
                write.commit().await.unwrap();
                let rows: Vec<secret::Model> = secret::Entity::find().all(backend.store.db()).await.unwrap();
                let mine: Vec<_> = rows.into_iter().filter(|row| row.owner == owner).collect();
                assert_eq!(mine.len(), 2);
                // Move the password's ciphertext onto the token's row.
                let mut active = mine[1].clone().into_active_model();
                active.ciphertext = Set(mine[0].ciphertext.clone());
                active.nonce = Set(mine[0].nonce.clone());
                active.update(backend.store.db()).await.unwrap();
                let err = secrets.get(backend.store.db(), &workspace, &owner, version).await.unwrap_err();
                assert!(err.to_string().contains("cannot decrypt"), "{err}");
                assert!(!err.to_string().contains("pw"));
            }

            #[tokio::test]
            async fn rolled_back_writes_leave_no_secrets_and_no_revision() {
                let Some(backend) = super::$backend().await else { return };
                let secrets = backend.store.secrets();
                let workspace = unique("ws");
                let owner = unique("connections/2");
                let before = feed::head(backend.store.db()).await.unwrap();
                let write = backend.store.begin_write().await.unwrap();
                let values = BTreeMap::from([("password".to_owned(), json!("x"))]);
                secrets.put(&write.txn, &workspace, &owner, &values, 1).await.unwrap();
                drop(write);
                assert!(secrets.get(backend.store.db(), &workspace, &owner, Some(1)).await.is_err());
                // The counter may have moved on only through other tests' commits.
                let write = backend.store.begin_write().await.unwrap();
                assert!(write.revision > before);
                write.commit().await.unwrap();
            }

            #[tokio::test]
            async fn shared_keys_are_created_once_and_agreed_on() {
                let Some(backend) = super::$backend().await else { return };
                let name = unique("key");
                let first = backend.store.shared_key(&name, 32).await.unwrap();
                let again = backend.store.shared_key(&name, 32).await.unwrap();
                let other = backend.store.shared_key(&unique("other"), 32).await.unwrap();
                assert_eq!(first.len(), 32);
                assert_eq!(first, again);
                assert_ne!(first, other);
            }

            #[tokio::test]
            async fn each_write_gets_a_higher_revision_and_records_changes() {
                let Some(backend) = super::$backend().await else { return };
                let workspace = unique("ws");
                let mut revisions = Vec::new();
                for index in 0..3 {
                    let write = backend.store.begin_write().await.unwrap();
                    write
                        .record_change(&workspace, "connection", &format!("workspaces/{workspace}/connections/c{index}"), 1)
                        .await
                        .unwrap();
                    revisions.push(write.revision);
                    write.commit().await.unwrap();
                }
                assert!(revisions.windows(2).all(|pair| pair[0] < pair[1]), "{revisions:?}");
                let changes = feed::changes_after(backend.store.db(), revisions[0] - 1, 10_000).await.unwrap();
                let mine: Vec<_> = changes.iter().filter(|change| change.workspace == workspace).collect();
                assert_eq!(mine.len(), 3);
                assert!(feed::head(backend.store.db()).await.unwrap() >= revisions[2]);
            }
        }
    };
}

store_suite!(sqlite);
store_suite!(postgres);
