use cloud_api::{CreateRouteRequest, ErrorCode, InstanceId, RouteState, Tags};
use cloud_client::{DEFAULT_ROUTE_TABLE as T, PageRequest};
use cloud_sim::Config;

use crate::common::{spawn, spawn_with};

fn route(name: &str, cidr: &str, target: &InstanceId) -> CreateRouteRequest {
    CreateRouteRequest {
        name: name.into(),
        destination_cidr: cidr.into(),
        target_instance_id: target.clone(),
        tags: Tags::new(),
    }
}

#[tokio::test]
async fn create_list_delete_and_overlap() {
    let c = spawn().await;
    let n1 = c.instance("n1", "zone-a").await.id;
    let n2 = c.instance("n2", "zone-b").await.id;
    let r1 = c
        .client
        .create_route(T, &route("n1-pods", "10.244.1.0/24", &n1))
        .await
        .unwrap();
    assert!(r1.id.as_str().starts_with("rt-"));
    assert_eq!(r1.state, RouteState::Active);
    assert_eq!(r1.destination_cidr.to_string(), "10.244.1.0/24");
    c.client
        .create_route(T, &route("n2-pods", "10.244.2.0/24", &n2))
        .await
        .unwrap();

    let e = c
        .client
        .create_route(T, &route("wide", "10.244.0.0/16", &n2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    // It names one of the routes it overlaps.
    let m = e.to_string();
    assert!(
        m.contains("overlaps route n1-pods") || m.contains("overlaps route n2-pods"),
        "{m}"
    );
    let e = c
        .client
        .create_route(T, &route("n1-pods", "10.244.9.0/24", &n2))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyExists));
    // IPv6 destinations do not overlap IPv4 ones.
    c.client
        .create_route(T, &route("n1-pods-v6", "fd00:10:244:1::/64", &n1))
        .await
        .unwrap();

    let all = c.client.list_all_routes(T).await.unwrap();
    assert_eq!(all.len(), 3);
    let first = c
        .client
        .list_routes(
            T,
            &PageRequest {
                page_size: Some(2),
                page_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(first.items.len(), 2);
    assert!(first.next_page_token.is_some());
    assert_eq!(
        c.client
            .get_route(T, r1.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .name,
        "n1-pods"
    );
    assert_eq!(c.client.route_table(T).await.unwrap().route_count, 3);

    assert!(c.client.delete_route(T, r1.id.as_str()).await.unwrap());
    assert!(!c.client.delete_route(T, r1.id.as_str()).await.unwrap());
    c.client
        .create_route(T, &route("n1-pods-again", "10.244.1.0/24", &n1))
        .await
        .unwrap();
}

#[tokio::test]
async fn quota_is_enforced_and_recovers() {
    let mut config = Config::for_tests();
    config.route_quota = 3;
    let c = spawn_with(config).await;
    let n = c.instance("n", "zone-a").await.id;
    let mut ids = Vec::new();
    for i in 0..3 {
        ids.push(
            c.client
                .create_route(T, &route(&format!("r{i}"), &format!("10.244.{i}.0/24"), &n))
                .await
                .unwrap()
                .id,
        );
    }
    let e = c
        .client
        .create_route(T, &route("r3", "10.244.3.0/24", &n))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded));
    assert_eq!(e.status().unwrap().as_u16(), 409);
    let table = c.client.route_table(T).await.unwrap();
    assert_eq!((table.route_count, table.route_quota), (3, 3));
    let (status, _, tables) = c.get_json("/v1/route-tables").await;
    assert_eq!(status, 200);
    assert_eq!(tables["items"][0]["id"], "default");
    assert_eq!(tables["items"][0]["route_count"], 3);
    c.client.delete_route(T, ids[0].as_str()).await.unwrap();
    // A refused create takes no place (the count is kept in the create's transaction).
    let e = c
        .client
        .create_route(T, &route("overlapping", "10.244.1.0/25", &n))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    assert_eq!(c.client.route_table(T).await.unwrap().route_count, 2);
    c.client
        .create_route(T, &route("r3", "10.244.3.0/24", &n))
        .await
        .unwrap();
    assert_eq!(c.client.route_table(T).await.unwrap().route_count, 3);
}

#[tokio::test]
async fn bad_routes_and_blackholes() {
    let c = spawn().await;
    let n = c.instance("n", "zone-a").await;
    let e = c
        .client
        .create_route(T, &route("r", "10.244.1.5/24", &n.id))
        .await
        .unwrap_err();
    assert_eq!(e.field(), Some("destination_cidr"));
    assert!(e.to_string().contains("did you mean 10.244.1.0/24"), "{e}");
    let ghost: InstanceId = "i-00000000000000aa".parse().unwrap();
    assert_eq!(
        c.client
            .create_route(T, &route("r", "10.244.1.0/24", &ghost))
            .await
            .unwrap_err()
            .field(),
        Some("target_instance_id")
    );
    let e = c.client.route_table("other").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::NotFound));

    let r = c
        .client
        .create_route(T, &route("r", "10.244.1.0/24", &n.id))
        .await
        .unwrap();
    c.client.terminate_instance(n.id.as_str()).await.unwrap();
    assert_eq!(
        c.client
            .get_route(T, r.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .state,
        RouteState::Blackhole
    );
    c.client.delete_instance(n.id.as_str()).await.unwrap();
    assert_eq!(
        c.client
            .get_route(T, r.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .state,
        RouteState::Blackhole
    );
    // Routes to terminated instances cannot be created.
    let dead = c.instance("dead", "zone-b").await;
    c.client.terminate_instance(dead.id.as_str()).await.unwrap();
    assert_eq!(
        c.client
            .create_route(T, &route("r2", "10.244.2.0/24", &dead.id))
            .await
            .unwrap_err()
            .field(),
        Some("target_instance_id")
    );
}

/// Stores the routes `stored`, then creates each of `cases` in turn (each kept when it is
/// created), expecting a conflict exactly where the case says it overlaps.
async fn check_overlaps(stored: &[(&str, &str)], cases: &[(&str, &str, bool)]) {
    let c = spawn().await;
    let n1 = c.instance("n1", "zone-a").await.id;
    for (name, cidr) in stored {
        c.client
            .create_route(T, &route(name, cidr, &n1))
            .await
            .unwrap();
    }
    for &(name, cidr, overlaps) in cases {
        let r = c.client.create_route(T, &route(name, cidr, &n1)).await;
        match r {
            Err(e) if overlaps => assert_eq!(e.code(), Some(ErrorCode::Conflict), "{name}: {e}"),
            Ok(_) if !overlaps => {}
            other => panic!("{name} ({cidr}): expected overlap={overlaps}, got {other:?}"),
        }
    }
}

/// The overlap check finds IPv4 neighbours through an index on the destinations' ranges: its
/// edges, and IPv6 destinations (no stored range) checked by parsing.
#[tokio::test]
async fn overlap_edges() {
    check_overlaps(
        &[("wide", "10.244.0.0/23"), ("v6", "fd00:10:244:1::/64")],
        &[
            ("inner", "10.244.1.128/25", true),
            ("first-address", "10.244.0.0/32", true),
            ("last-address", "10.244.1.255/32", true),
            ("just-before", "10.243.255.255/32", false),
            ("just-after", "10.244.2.0/24", false),
            ("outer", "10.0.0.0/8", true),
            ("v6-inner", "fd00:10:244:1:1::/80", true),
            ("v6-beside", "fd00:10:244:2::/64", false),
        ],
    )
    .await;
}

/// Among many stored routes the check looks only at the one starting last before a new
/// destination ends (stored ranges never overlap): a wide route far below, gaps between
/// neighbours, and a destination covering several.
#[tokio::test]
async fn overlap_among_many_routes() {
    check_overlaps(
        &[
            ("wide", "10.2.0.0/16"),
            ("a", "10.3.0.0/24"),
            ("b", "10.3.2.0/24"),
            ("c", "10.3.4.0/24"),
        ],
        &[
            ("inside-wide", "10.2.200.0/24", true),
            ("gap-a-b", "10.3.1.0/24", false),
            ("gap-b-c", "10.3.3.0/25", false),
            ("inside-b", "10.3.2.128/25", true),
            ("covers-all-three", "10.3.0.0/16", true),
            ("between-wide-and-a", "10.2.255.255/32", true),
            ("after-c", "10.3.5.0/24", false),
            ("before-all", "10.1.0.0/16", false),
        ],
    )
    .await;
}
