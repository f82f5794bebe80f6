//! Seeding a workspace through control: deployments, connections, links and a token.

use super::*;

/// How much to seed.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SeedSizes {
    pub(crate) deployments: usize,
    pub(crate) connections: usize,
    pub(crate) links: usize,
}

/// What seeding left for the bench.
#[derive(Debug)]
pub(crate) struct Seeded {
    pub(crate) workspace: String,
    pub(crate) conn_id: String,
    pub(crate) token: String,
}

pub(crate) fn seed_deployment(index: usize) -> String {
    format!("bench-d{index:05}")
}

pub(crate) fn seed_conn_id(index: usize) -> String {
    format!("bench_c{index:05}")
}

/// Runs `job(index)` for every index below `count` on `concurrency` workers;
/// the first error stops the run.
pub(crate) async fn parallel<F, Fut>(count: usize, concurrency: usize, job: F) -> anyhow::Result<()>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = anyhow::Result<()>> + Send,
{
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers: tokio::task::JoinSet<anyhow::Result<()>> = tokio::task::JoinSet::new();
    let job = Arc::new(job);
    for _ in 0..concurrency.max(1) {
        let next = next.clone();
        let job = job.clone();
        workers.spawn(async move {
            loop {
                let index = next.fetch_add(1, Ordering::Relaxed);
                if index >= count {
                    return Ok(());
                }
                job(index).await?;
            }
        });
    }
    while let Some(joined) = workers.join_next().await {
        joined.context("a seeding worker panicked")??;
    }
    Ok(())
}

/// `message` with the bearer token and the seeding deadline.
pub(crate) fn with_auth<T>(authorization: &MetadataValue<Ascii>, message: T) -> Request<T> {
    let mut request = Request::new(message);
    request
        .metadata_mut()
        .insert("authorization", authorization.clone());
    request.set_timeout(Duration::from_secs(30));
    request
}

/// Accepts ALREADY_EXISTS so that a seed can be re-run.
pub(crate) fn created<T>(
    result: Result<tonic::Response<T>, tonic::Status>,
    what: &str,
) -> anyhow::Result<()> {
    match result {
        Ok(_) => Ok(()),
        Err(status) if status.code() == Code::AlreadyExists => Ok(()),
        Err(status) if status.code() == Code::ResourceExhausted => bail!(
            "{what}: rate limited by control ({}); start control with a higher --rate-limit to seed",
            status.message()
        ),
        Err(status) => bail!("{what}: {:?}: {}", status.code(), status.message()),
    }
}

/// Creates deployments, connections and links through control, and a token
/// for the first deployment.
pub(crate) async fn seed(
    control: &Channel,
    user_token: &str,
    workspace: &str,
    sizes: SeedSizes,
) -> anyhow::Result<Seeded> {
    const SEED_CONCURRENCY: usize = 32;
    let authorization = bearer(user_token)?;
    let parent = format!("workspaces/{workspace}");
    let started = Instant::now();
    let (client, request, parent_for) = (
        DeploymentServiceClient::new(control.clone()),
        authorization.clone(),
        parent.clone(),
    );
    parallel(sizes.deployments, SEED_CONCURRENCY, move |index| {
        let (mut client, authorization, parent) =
            (client.clone(), request.clone(), parent_for.clone());
        async move {
            let deployment_id = seed_deployment(index);
            let result = client
                .create_deployment(with_auth(
                    &authorization,
                    pb::CreateDeploymentRequest {
                        parent,
                        deployment_id: deployment_id.clone(),
                        deployment: Some(pb::Deployment {
                            display_name: format!("Bench deployment {index}"),
                            kind: pb::DeploymentKind::Standard as i32,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                ))
                .await;
            created(result, &format!("CreateDeployment {deployment_id}"))
        }
    })
    .await?;

    let (client, request, parent_for) = (
        ConnectionServiceClient::new(control.clone()),
        authorization.clone(),
        parent.clone(),
    );
    parallel(sizes.connections, SEED_CONCURRENCY, move |index| {
        let (mut client, authorization, parent) =
            (client.clone(), request.clone(), parent_for.clone());
        async move {
            let conn_id = seed_conn_id(index);
            let result = client
                .create_connection(with_auth(
                    &authorization,
                    pb::CreateConnectionRequest {
                        parent,
                        connection_id: conn_id.clone(),
                        connection: Some(pb::Connection {
                            r#type: "postgres".to_owned(),
                            description: "seeded by switchboard bench".to_owned(),
                            host: format!("db{index}.bench.example"),
                            schema: "analytics".to_owned(),
                            login: "airflow".to_owned(),
                            password: format!("bench-password-{index}"),
                            port: 5432,
                            ..Default::default()
                        }),
                        request_id: String::new(),
                        links: Vec::new(),
                    },
                ))
                .await;
            created(result, &format!("CreateConnection {conn_id}"))
        }
    })
    .await?;

    // Link k joins connection k % C to distinct deployments per connection,
    // spread over all of them; link 0 joins the first connection and deployment.
    let per_connection = sizes.links.div_ceil(sizes.connections).max(1);
    let stride = (sizes.deployments / per_connection).max(1);
    let links = sizes
        .links
        .min(sizes.connections * sizes.deployments.min(per_connection * stride));
    let (client, request, parent_for) = (
        ConnectionServiceClient::new(control.clone()),
        authorization.clone(),
        parent.clone(),
    );
    let (deployments, connections) = (sizes.deployments, sizes.connections);
    parallel(links, SEED_CONCURRENCY, move |index| {
        let (mut client, authorization, parent) =
            (client.clone(), request.clone(), parent_for.clone());
        async move {
            let connection = index % connections;
            let deployment = (connection + (index / connections) * stride) % deployments;
            let result = client
                .create_link(with_auth(
                    &authorization,
                    pb::CreateLinkRequest {
                        parent: format!("{parent}/connections/{}", seed_conn_id(connection)),
                        link: Some(pb::Link {
                            deployment: format!(
                                "{parent}/deployments/{}",
                                seed_deployment(deployment)
                            ),
                            overrides: Some(pb::LinkOverrides {
                                schema: Some(format!("schema_{deployment}")),
                                ..Default::default()
                            }),
                            ..Default::default()
                        }),
                        request_id: String::new(),
                    },
                ))
                .await;
            created(result, &format!("CreateLink {index}"))
        }
    })
    .await?;

    let issued = DeploymentServiceClient::new(control.clone())
        .create_deployment_token(with_auth(
            &authorization,
            pb::CreateDeploymentTokenRequest {
                parent: format!("{parent}/deployments/{}", seed_deployment(0)),
                description: "switchboard bench".to_owned(),
                request_id: String::new(),
            },
        ))
        .await
        .map_err(|status| {
            anyhow::anyhow!(
                "CreateDeploymentToken: {:?}: {}",
                status.code(),
                status.message()
            )
        })?
        .into_inner();
    println!(
        "seeded workspace {workspace}: {} deployments, {} connections, {links} links in {:.1}s",
        sizes.deployments,
        sizes.connections,
        started.elapsed().as_secs_f64()
    );
    Ok(Seeded {
        workspace: workspace.to_owned(),
        conn_id: seed_conn_id(0),
        token: issued.token,
    })
}
