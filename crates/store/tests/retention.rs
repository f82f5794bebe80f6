//! Retention on every backend: SQLite always, PostgreSQL when
//! `SWITCHBOARD_TEST_DATABASE_URL` names a server. Rows are written with
//! `create_time`s in 1970 and pruned with a clock just past them, so only
//! this test's request log and audit rows are old enough to go.

use std::time::Duration;

use switchboard_store::entity::{audit_event, request_log};
use switchboard_store::retention::{self, Retention};
use switchboard_store::sea_orm::{
    ActiveValue::Set, ColumnTrait, EntityTrait, PaginatorTrait, QueryFilter,
};
use switchboard_store::{SecretStore, Store, feed};

async fn sqlite() -> Option<(Store, Option<tempfile::TempDir>)> {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("test.db").display());
    let store = Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
        .await
        .unwrap();
    Some((store, Some(dir)))
}

async fn postgres() -> Option<(Store, Option<tempfile::TempDir>)> {
    let url = switchboard_tests::database_url()?;
    let store = Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
        .await
        .unwrap();
    Some((store, None))
}

/// Micros in 1970 for rows meant to be old; the clock for pruning sits
/// `KEEP` past `OLD`, so rows at `OLD` are expired and real ones are not.
const OLD: i64 = 1_000;
const KEEP: Duration = Duration::from_secs(60);

async fn write(store: &Store, workspace: &str, create_time: i64) -> i64 {
    let txn = store.begin_write().await.unwrap();
    txn.record_change(workspace, "connection", "c", create_time)
        .await
        .unwrap();
    request_log::Entity::insert(request_log::ActiveModel {
        workspace: Set(workspace.to_owned()),
        method: Set("CreateConnection".to_owned()),
        request_id: Set(format!("request-{create_time}")),
        resource: Set("c".to_owned()),
        create_time: Set(create_time),
        ..Default::default()
    })
    .exec(&txn.txn)
    .await
    .unwrap();
    audit_event::Entity::insert(audit_event::ActiveModel {
        workspace: Set(workspace.to_owned()),
        actor: Set("olivia".to_owned()),
        action: Set("CreateConnection".to_owned()),
        resource: Set("c".to_owned()),
        request_id: Set(String::new()),
        changed_fields: Set("[]".to_owned()),
        create_time: Set(create_time),
        ..Default::default()
    })
    .exec(&txn.txn)
    .await
    .unwrap();
    let revision = txn.revision;
    txn.commit().await.unwrap();
    revision
}

async fn counts(store: &Store, workspace: &str) -> (u64, u64) {
    let requests = request_log::Entity::find()
        .filter(request_log::Column::Workspace.eq(workspace))
        .count(store.db())
        .await
        .unwrap();
    let audits = audit_event::Entity::find()
        .filter(audit_event::Column::Workspace.eq(workspace))
        .count(store.db())
        .await
        .unwrap();
    (requests, audits)
}

macro_rules! retention_suite {
    ($backend:ident) => {
        mod $backend {
            use super::*;

            #[tokio::test]
            async fn old_rows_go_and_the_feed_horizon_covers_the_pruned_prefix() {
                let Some((store, _dir)) = super::$backend().await else {
                    return;
                };
                let workspace = format!(
                    "retention-{}",
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_nanos()
                );
                let old = write(&store, &workspace, OLD).await;
                let now = i64::try_from(
                    std::time::SystemTime::now()
                        .duration_since(std::time::UNIX_EPOCH)
                        .unwrap()
                        .as_micros(),
                )
                .unwrap();
                let fresh = write(&store, &workspace, now).await;
                assert!(feed::pruned_through(store.db()).await.unwrap() < old);
                assert_eq!(counts(&store, &workspace).await, (2, 2));

                let clock = OLD + i64::try_from(KEEP.as_micros()).unwrap() + 1;
                let keep = Retention {
                    feed: KEEP,
                    request_log: KEEP,
                    audit: KEEP,
                };
                let report = retention::prune(store.db(), clock, &keep).await.unwrap();
                assert!(report.changes >= 1, "{report:?}");
                assert!(
                    report.feed_horizon >= old && report.feed_horizon < fresh,
                    "{report:?}"
                );
                assert_eq!(
                    feed::pruned_through(store.db()).await.unwrap(),
                    report.feed_horizon
                );
                let left: Vec<i64> = feed::changes_after(store.db(), old - 1, 10_000)
                    .await
                    .unwrap()
                    .into_iter()
                    .filter(|change| change.workspace == workspace)
                    .map(|change| change.revision)
                    .collect();
                assert_eq!(left, [fresh], "the old change went, the fresh one stays");
                assert_eq!(counts(&store, &workspace).await, (1, 1));

                // Again: nothing more to do, and an earlier clock never lowers the horizon.
                let again = retention::prune(store.db(), clock, &keep).await.unwrap();
                assert_eq!((again.request_log, again.audit_events), (0, 0));
                assert_eq!(again.feed_horizon, report.feed_horizon);
                let earlier = retention::prune(store.db(), OLD, &keep).await.unwrap();
                assert_eq!(earlier.feed_horizon, report.feed_horizon);
                assert_eq!(counts(&store, &workspace).await, (1, 1));
            }
        }
    };
}

retention_suite!(sqlite);
retention_suite!(postgres);
