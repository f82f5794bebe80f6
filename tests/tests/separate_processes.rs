//! `switchboard control` and `switchboard resolver` as separate processes on
//! one SQLite file: what control writes, the resolver serves.

use std::time::{Duration, Instant};

use switchboard_proto::v1::{
    GetLinkRequest, Link, LinkOverrides, ListConnectionTypesRequest, ResolveConnectionRequest,
    UpdateLinkRequest,
};
use switchboard_tests::{Role, TestServer};
use tonic::Code;
use tonic_health::pb::health_check_response::ServingStatus;

use crate::seed_story::{CONN_ID, WORKSPACE, assert_effective, seed};
use crate::support::{connection_name, expect_code, ok, string_struct};

/// Upper bound for a change made through control to reach the resolver; a
/// guard against hangs, not the 1 s the design promises.
const PROPAGATION_DEADLINE: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn control_writes_and_a_separate_resolver_serves() {
    let control = TestServer::configure()
        .with_role(Role::Control)
        .spawn()
        .await;
    let resolver = TestServer::configure()
        .with_role(Role::Resolver)
        .with_data_dir_of(&control)
        .spawn()
        .await;

    assert_eq!(
        control
            .health_status("switchboard.v1.ConnectionService")
            .await,
        Some(ServingStatus::Serving)
    );
    assert_eq!(
        resolver
            .health_status("switchboard.v1.ResolverService")
            .await,
        Some(ServingStatus::Serving)
    );

    let seeded = seed(&control, Some(&resolver)).await;
    let at_control = control.client().await;
    let at_resolver = resolver.client().await;

    // Each process serves only its own services.
    expect_code(
        at_resolver
            .with_token(&seeded.operator_token)
            .list_connection_types(ListConnectionTypesRequest::default())
            .await,
        Code::Unimplemented,
        "ConnectionService on the resolver process",
    );
    expect_code(
        at_control
            .with_token(&seeded.prod_token)
            .resolve_connection(ResolveConnectionRequest {
                deployment: String::new(),
                conn_id: CONN_ID.to_owned(),
            })
            .await,
        Code::Unimplemented,
        "ResolverService on the control process",
    );

    for (token, schema, warehouse) in [
        (&seeded.prod_token, "PROD", "PROD_WH"),
        (&seeded.staging_token, "STAGING", "STAGING_WH"),
    ] {
        let resolved = ok(
            at_resolver
                .with_token(token)
                .resolve_connection(ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: CONN_ID.to_owned(),
                })
                .await,
            "ResolveConnection at the resolver process",
        );
        assert_effective(&resolved, &seeded.password, schema, warehouse);
    }

    // A change through control reaches the separate resolver.
    let link_name = format!("{}/links/prod", connection_name(WORKSPACE, CONN_ID));
    let link = ok(
        at_control
            .with_token(&seeded.operator_token)
            .get_link(GetLinkRequest {
                name: link_name.clone(),
            })
            .await,
        "GetLink",
    );
    ok(
        at_control
            .with_token(&seeded.operator_token)
            .update_link(UpdateLinkRequest {
                link: Some(Link {
                    name: link_name,
                    etag: link.etag,
                    overrides: Some(LinkOverrides {
                        extra: Some(string_struct(&[("warehouse", "PROD_XL_WH")])),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask {
                    paths: vec!["overrides.extra.warehouse".to_owned()],
                }),
                request_id: String::new(),
            })
            .await,
        "UpdateLink",
    );
    let asked = Instant::now();
    loop {
        let resolved = ok(
            at_resolver
                .with_token(&seeded.prod_token)
                .resolve_connection(ResolveConnectionRequest {
                    deployment: String::new(),
                    conn_id: CONN_ID.to_owned(),
                })
                .await,
            "ResolveConnection after UpdateLink",
        );
        if crate::support::extra_string(&resolved.extra, "warehouse") == Some("PROD_XL_WH") {
            assert_effective(&resolved, &seeded.password, "PROD", "PROD_XL_WH");
            break;
        }
        assert!(
            asked.elapsed() < PROPAGATION_DEADLINE,
            "the resolver process never served the updated link override"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    control.assert_logs_clean();
    resolver.assert_logs_clean();
}
