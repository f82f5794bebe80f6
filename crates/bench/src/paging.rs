//! `switchboard bench --seed … --paging PAGE_SIZE`: walks `ListConnections`
//! of the seeded workspace page by page and compares what the first pages
//! cost with what the last ones do. With keyset paging the two match; a list
//! that loads the workspace and skips to the cursor grows with the page's
//! position.

use std::time::{Duration, Instant};

use anyhow::bail;
use switchboard_proto::v1 as pb;
use switchboard_proto::v1::connection_service_client::ConnectionServiceClient;
use tonic::transport::Channel;

use super::seed::with_auth;
use super::{bearer, millis, quantile};

/// Full walks of the list; each page's latency is the median over them.
const WALKS: usize = 3;
/// Pages at each end compared.
const ENDS: usize = 10;

/// Walks every page of the workspace's connections [`WALKS`] times and prints
/// the latency of the first and last [`ENDS`] pages.
pub(super) async fn run(
    control: &Channel,
    user_token: &str,
    workspace: &str,
    page_size: i32,
) -> anyhow::Result<()> {
    let authorization = bearer(user_token)?;
    let mut client = ConnectionServiceClient::new(control.clone());
    // per_page[i]: the latencies of page i over the walks.
    let mut per_page: Vec<Vec<Duration>> = Vec::new();
    let mut total = 0;
    for _ in 0..WALKS {
        let mut page_token = String::new();
        let mut page = 0;
        total = 0;
        loop {
            let started = Instant::now();
            let listed = client
                .list_connections(with_auth(
                    &authorization,
                    pb::ListConnectionsRequest {
                        parent: format!("workspaces/{workspace}"),
                        page_size,
                        page_token,
                        ..Default::default()
                    },
                ))
                .await;
            let elapsed = started.elapsed();
            let listed = match listed {
                Ok(listed) => listed.into_inner(),
                Err(status) => bail!(
                    "ListConnections page {page}: {:?}: {}",
                    status.code(),
                    status.message()
                ),
            };
            if per_page.len() <= page {
                per_page.push(Vec::new());
            }
            per_page[page].push(elapsed);
            total += listed.connections.len();
            page += 1;
            if listed.next_page_token.is_empty() {
                break;
            }
            page_token = listed.next_page_token;
        }
    }
    let medians: Vec<Duration> = per_page
        .iter_mut()
        .map(|latencies| {
            latencies.sort();
            quantile(latencies, 0.5)
        })
        .collect();
    let pages = medians.len();
    let ends = ENDS.min(pages);
    let mut first = medians[..ends].to_vec();
    let mut last = medians[pages - ends..].to_vec();
    first.sort();
    last.sort();
    let (first, last) = (quantile(&first, 0.5), quantile(&last, 0.5));
    println!(
        "ListConnections of workspaces/{workspace}: {total} connections, {pages} pages of {page_size}, {WALKS} walks"
    );
    println!("{:<28} {:>8}", "pages", "p50 ms");
    println!("{:<28} {:>8.3}", format!("first {ends}"), millis(first));
    println!("{:<28} {:>8.3}", format!("last {ends}"), millis(last));
    println!(
        "last/first: {:.2}x",
        last.as_secs_f64() / first.as_secs_f64().max(f64::EPSILON)
    );
    Ok(())
}
