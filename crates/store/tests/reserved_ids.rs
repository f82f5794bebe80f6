//! Row ids reserved before a write transaction (so a row's Vault entry can be
//! written before the write lock): SQLite always, PostgreSQL when
//! `SWITCHBOARD_TEST_DATABASE_URL` names a server.

use switchboard_store::entity::connection;
use switchboard_store::sea_orm::{ActiveModelTrait, ActiveValue::Set};
use switchboard_store::{SecretStore, Store};

async fn insert_connection(store: &Store, id: i64, workspace: &str) {
    let write = store.begin_write().await.unwrap();
    assert!(
        write.claim_id("connection", id).await.unwrap(),
        "a reserved id is free until used"
    );
    connection::ActiveModel {
        id: Set(id),
        workspace: Set(workspace.to_owned()),
        conn_id: Set(format!("c{id}")),
        conn_id_folded: Set(format!("C{id}")),
        type_key: Set("generic".to_owned()),
        conn_type: Set("http".to_owned()),
        extra: Set("{}".to_owned()),
        link_to_all: Set(false),
        excluded_deployments: Set("[]".to_owned()),
        secret_fields: Set("[]".to_owned()),
        version: Set(1),
        create_time: Set(0),
        update_time: Set(0),
        ..Default::default()
    }
    .insert(&write.txn)
    .await
    .unwrap();
    write.commit().await.unwrap();
}

async fn reserved_ids_are_fresh(store: Store, workspace: &str) {
    let first = store.reserve_id("connection").await.unwrap();
    insert_connection(&store, first, workspace).await;
    let second = store.reserve_id("connection").await.unwrap();
    assert!(second > first, "{second} follows {first}");
    let link = store.reserve_id("link").await.unwrap();
    assert!(link > 0);
}

#[tokio::test]
async fn sqlite_reserves_the_next_free_id_and_notices_when_it_is_taken() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
        .await
        .unwrap();
    reserved_ids_are_fresh(store.clone(), "ws").await;
    // Two writers reserve the same id; whoever comes second under the lock
    // learns it is gone and starts over.
    let mine = store.reserve_id("connection").await.unwrap();
    let theirs = store.reserve_id("connection").await.unwrap();
    assert_eq!(mine, theirs);
    insert_connection(&store, theirs, "ws").await;
    let write = store.begin_write().await.unwrap();
    assert!(!write.claim_id("connection", mine).await.unwrap());
}

#[tokio::test]
async fn postgres_reserves_sequence_values() {
    let Some(url) = switchboard_tests::database_url() else {
        return;
    };
    let store = Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
        .await
        .unwrap();
    let workspace = format!(
        "reserve-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_nanos()
    );
    reserved_ids_are_fresh(store.clone(), &workspace).await;
    let one = store.reserve_id("connection").await.unwrap();
    let two = store.reserve_id("connection").await.unwrap();
    assert_ne!(one, two, "a sequence never hands out a value twice");
}
