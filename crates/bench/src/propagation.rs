//! How long a change made through control takes to reach the resolver, and cache misses.

use super::*;
use crate::seed::Seeded;

/// Times changes made through control until the resolver serves them, under
/// `load` concurrent resolve callers; then, with no load, the latency of the
/// first call after each invalidation (a cache miss that reloads the view).
pub(crate) async fn propagation(
    target: &Arc<Target>,
    control: &Channel,
    user_token: &str,
    seeded: &Seeded,
    samples: usize,
    load: usize,
) -> anyhow::Result<()> {
    if samples == 0 {
        return Ok(());
    }
    let authorization = bearer(user_token)?;
    let mut connections = ConnectionServiceClient::new(control.clone());
    let mut resolver = ResolverServiceClient::new(target.channel(0));
    let name = format!(
        "workspaces/{}/connections/{}",
        seeded.workspace, seeded.conn_id
    );
    let run = std::process::id();
    let mut change = {
        let mut counter = 0usize;
        move |round: &str| {
            counter += 1;
            format!("db0-{round}-{run}-{counter}.bench.example")
        }
    };

    // Each change sets the host; the resolver serves it once its feed caught up.
    async fn change_and_wait(
        target: &Target,
        connections: &mut ConnectionServiceClient<Channel>,
        resolver: &mut ResolverServiceClient<Channel>,
        authorization: &MetadataValue<Ascii>,
        name: &str,
        host: String,
    ) -> anyhow::Result<(Duration, Duration, Duration)> {
        let mut request = Request::new(pb::UpdateConnectionRequest {
            connection: Some(pb::Connection {
                name: name.to_owned(),
                host: host.clone(),
                ..Default::default()
            }),
            update_mask: Some(prost_types::FieldMask {
                paths: vec!["host".to_owned()],
            }),
            request_id: String::new(),
        });
        request
            .metadata_mut()
            .insert("authorization", authorization.clone());
        let write_started = Instant::now();
        connections
            .update_connection(request)
            .await
            .map_err(|status| {
                anyhow::anyhow!(
                    "UpdateConnection: {:?}: {}",
                    status.code(),
                    status.message()
                )
            })?;
        let written = Instant::now();
        loop {
            let call_started = Instant::now();
            let resolved = resolver
                .resolve_connection(target.request(pb::ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: target.conn_id.clone(),
                }))
                .await
                .map_err(|status| {
                    anyhow::anyhow!(
                        "ResolveConnection: {:?}: {}",
                        status.code(),
                        status.message()
                    )
                })?
                .into_inner();
            if resolved.host == host {
                return Ok((
                    written - write_started,
                    written.elapsed(),
                    call_started.elapsed(),
                ));
            }
            if written.elapsed() > PROPAGATION_GIVE_UP {
                bail!("a change did not reach the resolver within {PROPAGATION_GIVE_UP:?}");
            }
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    // Under load.
    let stop = Arc::new(AtomicBool::new(false));
    let mut loaders = tokio::task::JoinSet::new();
    for worker in 0..load {
        let (target, stop) = (target.clone(), stop.clone());
        loaders.spawn(async move {
            let channel = target.channel(worker + 1);
            let mut health = HealthClient::new(channel.clone());
            let mut resolver = Grpc::new(channel);
            let mut calls = 0usize;
            while !stop.load(Ordering::Relaxed) {
                let _ = call_once(&target, Call::Resolve, &mut health, &mut resolver).await;
                calls += 1;
            }
            calls
        });
    }
    let load_started = Instant::now();
    let mut lags = Vec::new();
    let mut writes = Vec::new();
    let mut outcome = Ok(());
    for _ in 0..samples {
        match change_and_wait(
            target,
            &mut connections,
            &mut resolver,
            &authorization,
            &name,
            change("load"),
        )
        .await
        {
            Ok((write, lag, _)) => {
                writes.push(write);
                lags.push(lag);
            }
            Err(err) => {
                outcome = Err(err);
                break;
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut load_calls = 0usize;
    while let Some(joined) = loaders.join_next().await {
        load_calls += joined.unwrap_or_default();
    }
    let load_rps = load_calls as f64 / load_started.elapsed().as_secs_f64().max(f64::EPSILON);
    outcome?;

    // Without load: the call that first sees a change is the one that reloaded the view.
    let mut misses = Vec::new();
    for _ in 0..samples {
        let (_, _, miss) = change_and_wait(
            target,
            &mut connections,
            &mut resolver,
            &authorization,
            &name,
            change("miss"),
        )
        .await?;
        misses.push(miss);
    }
    lags.sort_unstable();
    writes.sort_unstable();
    misses.sort_unstable();
    println!();
    println!(
        "{:<40} {:>7} {:>8} {:>8} {:>8} {:>8}",
        "after UpdateConnection returned", "samples", "p50 ms", "p90 ms", "p99 ms", "max ms"
    );
    for (label, sorted) in [
        (
            format!("propagation to resolver (load {load_rps:.0} rps)"),
            &lags,
        ),
        ("UpdateConnection latency (control)".to_owned(), &writes),
        ("ResolveConnection cache miss (c=1)".to_owned(), &misses),
    ] {
        println!(
            "{:<40} {:>7} {:>8.3} {:>8.3} {:>8.3} {:>8.3}",
            label,
            sorted.len(),
            millis(quantile(sorted, 0.50)),
            millis(quantile(sorted, 0.90)),
            millis(quantile(sorted, 0.99)),
            millis(sorted.last().copied().unwrap_or_default())
        );
    }
    Ok(())
}
