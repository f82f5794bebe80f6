//! Read your writes. The follower applies the change feed some time after a
//! write commits (up to a poll interval), so a cached answer may miss a write
//! the caller already saw acknowledged. Before a request is answered from
//! cache, the caches are therefore caught up with the feed as read by a read
//! that *began after the request arrived*: every write committed before the
//! request is then applied.
//!
//! Concurrent requests share those reads. One read runs at a time; a request
//! that arrives while one runs cannot use it (the read may predate a write the
//! caller saw), so it waits for the next one, which serves every request that
//! queued meanwhile. Under load a request costs at most two reads of latency
//! and the database sees about one read per read's duration, whatever the rate.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::sync::Mutex;

/// The number and outcome of the last read that finished.
#[derive(Debug, Default)]
struct Finished {
    read: u64,
    caught_up: bool,
}

/// Coalesces the catch-up reads of concurrent requests.
#[derive(Debug, Default)]
pub(crate) struct CatchUp {
    /// Reads begun so far; a read numbered above a request's snapshot of
    /// this began after the request arrived.
    begun: AtomicU64,
    /// Held while a read runs, so reads never overlap and requests queue
    /// behind the running one.
    finished: Mutex<Finished>,
}

impl CatchUp {
    /// Runs `read` (true when it caught the caches up) unless a read that
    /// began after this call already finished, and returns that read's outcome.
    /// A read dropped midway (its caller went away) counts as never finished.
    pub(crate) async fn run<Read, Reading>(&self, read: Read) -> bool
    where
        Read: FnOnce() -> Reading,
        Reading: Future<Output = bool>,
    {
        let needed = self.begun.load(Ordering::SeqCst) + 1;
        let mut finished = self.finished.lock().await;
        if finished.read >= needed {
            return finished.caught_up;
        }
        let number = self.begun.fetch_add(1, Ordering::SeqCst) + 1;
        debug_assert!(number >= needed, "a read begun under the lock is new");
        let caught_up = read().await;
        *finished = Finished {
            read: number,
            caught_up,
        };
        caught_up
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use tokio::sync::Notify;

    use super::*;

    #[tokio::test]
    async fn each_call_after_a_finished_read_reads_again() {
        let catch_up = CatchUp::default();
        let reads = AtomicUsize::new(0);
        for _ in 0..3 {
            let caught_up = catch_up
                .run(|| async {
                    reads.fetch_add(1, Ordering::SeqCst);
                    true
                })
                .await;
            assert!(caught_up);
        }
        assert_eq!(reads.load(Ordering::SeqCst), 3);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn callers_arriving_during_a_read_share_the_next_one() {
        let catch_up = Arc::new(CatchUp::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let first = {
            let (catch_up, reads, release) = (catch_up.clone(), reads.clone(), release.clone());
            tokio::spawn(async move {
                catch_up
                    .run(|| async move {
                        reads.fetch_add(1, Ordering::SeqCst);
                        release.notified().await;
                        true
                    })
                    .await
            })
        };
        while reads.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        // Arrived while the first read runs: it may predate their writes.
        let waiters: Vec<_> = (0..10)
            .map(|_| {
                let (catch_up, reads) = (catch_up.clone(), reads.clone());
                tokio::spawn(async move {
                    catch_up
                        .run(|| async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            true
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();
        assert!(first.await.expect("the first caller"));
        for waiter in waiters {
            assert!(waiter.await.expect("a waiter"));
        }
        assert_eq!(
            reads.load(Ordering::SeqCst),
            2,
            "the first read, then one shared by every caller that arrived during it"
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_failed_read_is_shared_and_the_next_caller_reads_again() {
        let catch_up = Arc::new(CatchUp::default());
        let reads = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let first = {
            let (catch_up, release) = (catch_up.clone(), release.clone());
            tokio::spawn(async move {
                catch_up
                    .run(|| async move {
                        release.notified().await;
                        true
                    })
                    .await
            })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        let failing: Vec<_> = (0..5)
            .map(|_| {
                let (catch_up, reads) = (catch_up.clone(), reads.clone());
                tokio::spawn(async move {
                    catch_up
                        .run(|| async move {
                            reads.fetch_add(1, Ordering::SeqCst);
                            false
                        })
                        .await
                })
            })
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        release.notify_one();
        assert!(first.await.expect("the first caller"));
        for waiter in failing {
            assert!(!waiter.await.expect("a waiter"), "the shared read failed");
        }
        assert_eq!(reads.load(Ordering::SeqCst), 1);
        let caught_up = catch_up.run(|| async { true }).await;
        assert!(caught_up, "a failure is not remembered past its read");
    }

    #[tokio::test]
    async fn a_read_dropped_midway_is_read_again() {
        let catch_up = CatchUp::default();
        let abandoned = tokio::time::timeout(
            Duration::from_millis(10),
            catch_up.run(std::future::pending::<bool>),
        )
        .await;
        assert!(abandoned.is_err());
        let reads = AtomicUsize::new(0);
        let caught_up = catch_up
            .run(|| async {
                reads.fetch_add(1, Ordering::SeqCst);
                true
            })
            .await;
        assert!(caught_up);
        assert_eq!(reads.load(Ordering::SeqCst), 1);
    }
}
