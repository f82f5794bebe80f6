//! One storage suite, run on every backend: SQLite always, PostgreSQL when
//! `SWITCHBOARD_TEST_DATABASE_URL` names a server (each test uses its own
//! schema-free database state by working in its own workspace).

use std::collections::BTreeMap;

use serde_json::json;
use switchboard_store::entity::{connection, secret};
use switchboard_store::sea_orm::{
    ActiveModelTrait, ActiveValue::Set, EntityTrait, IntoActiveModel,
};
use switchboard_store::{SecretStore, Store, feed, plaintext_secrets, records};

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
    let url = switchboard_tests::database_url()?;
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

            #[tokio::test]
            async fn a_head_reader_sees_each_commit_on_its_kept_connection() {
                let Some(backend) = super::$backend().await else { return };
                let reader = feed::HeadReader::new(backend.store.db().clone());
                let mut last = reader.head().await.unwrap();
                for _ in 0..3 {
                    // Committed through the pool: the reader's own connection
                    // must not be pinned to an older snapshot.
                    let write = backend.store.begin_write().await.unwrap();
                    let revision = write.revision;
                    write.commit().await.unwrap();
                    let head = reader.head().await.unwrap();
                    assert!(head >= revision && head > last, "head {head}, committed {revision}");
                    assert!(head <= feed::head(backend.store.db()).await.unwrap());
                    last = head;
                }
            }
        }
    };
}

store_suite!(sqlite);
store_suite!(postgres);

/// SQLite only: the move scans every row of the database, and the shared
/// PostgreSQL database holds other suites' rows, whose secrets are in OpenBao.
#[tokio::test]
async fn plaintext_nested_secrets_move_into_the_secret_store_once() {
    let Some(backend) = sqlite().await else {
        return;
    };
    let store = &backend.store;
    let workspace = unique("ws");
    let now = 1_000;
    // A row as older releases wrote it: the password in the secret
    // store, a nested secret in the clear.
    let write = store.begin_write().await.unwrap();
    let row = connection::ActiveModel {
        workspace: Set(workspace.clone()),
        conn_id: Set("aws".to_owned()),
        conn_id_folded: Set("AWS".to_owned()),
        type_key: Set("generic".to_owned()),
        conn_type: Set("aws".to_owned()),
        extra: Set(json!({
            "region_name": "eu-west-1",
            "session_kwargs": {"aws_secret_access_key": "plain", "profile_name": "p"}
        })
        .to_string()),
        link_to_all: Set(false),
        excluded_deployments: Set("[]".to_owned()),
        secret_fields: Set(json!(["password"]).to_string()),
        version: Set(1),
        create_time: Set(now),
        update_time: Set(now),
        ..Default::default()
    }
    .insert(&write.txn)
    .await
    .unwrap();
    let owner = records::connection_owner(row.id);
    let password = BTreeMap::from([("password".to_owned(), json!("pw"))]);
    let version = store
        .secrets()
        .put(&write.txn, &workspace, &owner, &password, now)
        .await
        .unwrap();
    let mut active = row.into_active_model();
    active.secret_version = Set(version);
    let row = active.update(&write.txn).await.unwrap();
    write.commit().await.unwrap();
    let before = records::full_spec(store.secrets(), store.db(), &row)
        .await
        .unwrap();

    let report = plaintext_secrets::move_plaintext_secrets(store, now)
        .await
        .unwrap();
    assert!(report.connections >= 1, "{report:?}");
    let moved = connection::Entity::find_by_id(row.id)
        .one(store.db())
        .await
        .unwrap()
        .unwrap();
    assert!(!moved.extra.contains("plain"), "{}", moved.extra);
    assert_eq!(
        moved.secret_fields,
        json!(["extra.session_kwargs.aws_secret_access_key", "password"]).to_string()
    );
    let after = records::full_spec(store.secrets(), store.db(), &moved)
        .await
        .unwrap();
    assert_eq!(after, before, "nothing lost");

    plaintext_secrets::move_plaintext_secrets(store, now)
        .await
        .unwrap();
    let again = connection::Entity::find_by_id(row.id)
        .one(store.db())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(again, moved, "a second run changes nothing");
}
