//! The late-commit race on PostgreSQL: two concurrent write transactions, and
//! a follower that reads `changes_after(cursor)` after every commit and moves
//! its cursor to the highest revision it saw.
//!
//! With a sequence, revisions are handed out when a transaction asks for one
//! and the transactions may commit in either order: A takes 41, B takes 42, B
//! commits, the follower reads `> 40`, sees 42 and moves its cursor to 42; A
//! then commits 41, which no later `> 42` read returns — the change is lost for
//! good. [`a_sequence_lets_a_late_commit_slip_behind_the_cursor`] shows exactly
//! that on the same server, so the counter-row test below is known to be a
//! real check.
//!
//! With the counter row (`UPDATE feed_head … RETURNING` as each write
//! transaction's first statement), the second transaction's increment waits
//! on the row lock until the first commits: the transaction with the lower
//! revision can never commit last, so `rev > cursor` misses nothing.
//!
//! Skipped unless `SWITCHBOARD_TEST_DATABASE_URL` names a PostgreSQL server
//! (`scripts/postgres.sh start` prints one).

use std::time::Duration;

use switchboard_store::entity::change;
use switchboard_store::sea_orm::{ConnectionTrait, DbBackend, Statement, TransactionTrait};
use switchboard_store::{SecretStore, Store, StoreError, feed};

/// How long the second writer is given to (wrongly) get past the first one's
/// open transaction. It is never expected to finish in that time; a slow
/// machine makes the check weaker, never flaky.
const BLOCKED_FOR: Duration = Duration::from_millis(750);

async fn postgres() -> Option<Store> {
    let url = switchboard_tests::database_url()?;
    Some(
        Store::connect(&url, SecretStore::embedded(&[9; 32]).unwrap())
            .await
            .unwrap(),
    )
}

fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{prefix}-{nanos}")
}

/// A follower as the resolver runs it: everything above the cursor, then the
/// cursor moves to the highest revision read. Returns this workspace's
/// resources seen in this read.
async fn follow(store: &Store, cursor: &mut i64, workspace: &str) -> Vec<(i64, String)> {
    let changes: Vec<change::Model> = feed::changes_after(store.db(), *cursor, 10_000)
        .await
        .unwrap();
    if let Some(last) = changes.last() {
        *cursor = (*cursor).max(last.revision);
    }
    changes
        .into_iter()
        .filter(|change| change.workspace == workspace)
        .map(|change| (change.revision, change.resource))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lower_revision_never_commits_after_a_higher_one() {
    let Some(store) = postgres().await else {
        return;
    };
    let workspace = unique("race");
    let mut cursor = feed::head(store.db()).await.unwrap();

    // A opens first and takes the lower revision; it stays open.
    let first = store.begin_write().await.unwrap();
    first
        .record_change(&workspace, "connection", "first", 0)
        .await
        .unwrap();
    let first_revision = first.revision;

    // B starts concurrently and tries to commit while A is still open.
    let second = {
        let store = store.clone();
        let workspace = workspace.clone();
        tokio::spawn(async move {
            let write = store.begin_write().await?;
            write
                .record_change(&workspace, "connection", "second", 0)
                .await?;
            let revision = write.revision;
            write.commit().await?;
            Ok::<i64, StoreError>(revision)
        })
    };
    let mut second = std::pin::pin!(second);
    tokio::select! {
        finished = &mut second => panic!(
            "the second writer committed while the first (revision {first_revision}) was \
             still open: {finished:?}; the first could then commit last and be skipped"
        ),
        () = tokio::time::sleep(BLOCKED_FOR) => {}
    }
    // Nothing of either is visible yet, and the follower's cursor stays put.
    assert_eq!(follow(&store, &mut cursor, &workspace).await, vec![]);
    assert!(cursor < first_revision);

    first.commit().await.unwrap();
    // The second writer is released by that commit and may already have
    // committed when the follower next reads; either way it reads both, in
    // revision order, across its polls.
    let mut seen = follow(&store, &mut cursor, &workspace).await;
    let second_revision = second.await.unwrap().unwrap();
    assert!(
        second_revision > first_revision,
        "the blocked writer gets a revision above the first one's: {second_revision} > {first_revision}"
    );
    seen.extend(follow(&store, &mut cursor, &workspace).await);
    assert_eq!(
        seen,
        vec![
            (first_revision, "first".to_owned()),
            (second_revision, "second".to_owned())
        ],
        "the follower sees both commits in order: nothing was skipped"
    );
}

/// The contrast: the same two transactions numbered by a sequence commit out
/// of order, and a `rev > cursor` follower loses the late one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequence_lets_a_late_commit_slip_behind_the_cursor() {
    let Some(store) = postgres().await else {
        return;
    };
    let db = store.db();
    let name = unique("naive_feed").replace('-', "_");
    let run = |sql: String| Statement::from_string(DbBackend::Postgres, sql);
    db.execute(run(format!(
        "CREATE TABLE {name} (revision BIGSERIAL PRIMARY KEY, resource TEXT NOT NULL)"
    )))
    .await
    .unwrap();
    let read_after = |cursor: i64| {
        let sql = format!(
            "SELECT revision, resource FROM {name} WHERE revision > {cursor} ORDER BY revision"
        );
        async move {
            db.query_all(run(sql))
                .await
                .unwrap()
                .iter()
                .map(|row| {
                    (
                        row.try_get::<i64>("", "revision").unwrap(),
                        row.try_get::<String>("", "resource").unwrap(),
                    )
                })
                .collect::<Vec<_>>()
        }
    };

    let early = db.begin().await.unwrap();
    early
        .execute(run(format!(
            "INSERT INTO {name} (resource) VALUES ('early')"
        )))
        .await
        .unwrap();
    let late = db.begin().await.unwrap();
    late.execute(run(format!(
        "INSERT INTO {name} (resource) VALUES ('late')"
    )))
    .await
    .unwrap();
    // No lock orders them: the higher number commits first.
    late.commit().await.unwrap();
    let mut cursor = 0;
    let seen = read_after(cursor).await;
    assert_eq!(seen, vec![(2, "late".to_owned())]);
    cursor = seen.last().unwrap().0;
    early.commit().await.unwrap();
    assert_eq!(
        read_after(cursor).await,
        vec![],
        "revision 1 committed behind the cursor: a naive follower never sees it"
    );
    assert_eq!(read_after(0).await.len(), 2, "yet both rows are committed");
    db.execute(run(format!("DROP TABLE {name}"))).await.unwrap();
}
