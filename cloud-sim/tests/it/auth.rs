//! Bearer tokens and project isolation: one project never sees or touches another's resources,
//! and gets 404 (not 403) so IDs do not leak.

use cloud_api::{
    CreateLoadBalancerRequest, CreateRouteRequest, ErrorCode, Listener, Protocol, Tags,
};
use cloud_client::{Client, DEFAULT_ROUTE_TABLE, RetryPolicy};
use cloud_sim::Config;

use crate::common::{decode, instance_req, spawn_with};

fn config() -> Config {
    let mut c = Config::for_tests();
    c.tokens = Some(
        cloud_sim::config::parse_tokens("token-a team-a\ntoken-b team-b\nroot ops admin\n")
            .unwrap(),
    );
    c
}

#[tokio::test]
async fn projects_are_isolated() {
    let t = spawn_with(config()).await;
    let base = t.server.base_url();
    let a = Client::builder(&base)
        .token("token-a")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let b = Client::builder(&base)
        .token("token-b")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();

    let i = a
        .create_instance(&instance_req("shared-name", "zone-a"))
        .await
        .unwrap();
    // Names are per project.
    let bi = b
        .create_instance(&instance_req("shared-name", "zone-a"))
        .await
        .unwrap();
    let lb = a
        .create_load_balancer(&CreateLoadBalancerRequest {
            name: "web".into(),
            scheme: Default::default(),
            ip_mode: Default::default(),
            listeners: vec![Listener {
                protocol: Protocol::Tcp,
                port: 80,
                backend_port: 30000,
            }],
            backends: vec![i.id.clone()],
            backend_groups: vec![],
            health_check: Default::default(),
            zone_policy: Default::default(),
            zones: None,
            requested_ips: vec![],
            tags: Tags::new(),
        })
        .await
        .unwrap();
    let route = CreateRouteRequest {
        name: "r".into(),
        destination_cidr: "10.244.1.0/24".into(),
        target_instance_id: i.id.clone(),
        tags: Tags::new(),
    };
    let r = a.create_route(DEFAULT_ROUTE_TABLE, &route).await.unwrap();

    // B cannot read, list, change or delete any of it.
    assert!(b.get_instance(i.id.as_str()).await.unwrap().is_none());
    assert!(b.get_load_balancer(lb.id.as_str()).await.unwrap().is_none());
    assert!(
        b.get_route(DEFAULT_ROUTE_TABLE, r.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
    let listed = b.list_all_instances(&Default::default()).await.unwrap();
    assert_eq!(listed.iter().map(|x| &x.id).collect::<Vec<_>>(), [&bi.id]);
    assert!(
        b.list_all_load_balancers(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        b.list_all_routes(DEFAULT_ROUTE_TABLE)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        b.stop_instance(i.id.as_str()).await.unwrap_err().code(),
        Some(ErrorCode::NotFound)
    );
    assert_eq!(
        b.update_instance_tags(i.id.as_str(), Tags::new(), None)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::NotFound)
    );
    assert!(!b.delete_instance(i.id.as_str()).await.unwrap());
    assert!(!b.delete_load_balancer(lb.id.as_str()).await.unwrap());
    assert!(
        !b.delete_route(DEFAULT_ROUTE_TABLE, r.id.as_str())
            .await
            .unwrap()
    );
    // B cannot use A's instances as backends or route targets either.
    let mut steal = route.clone();
    steal.name = "steal".into();
    assert_eq!(
        b.create_route(DEFAULT_ROUTE_TABLE, &steal)
            .await
            .unwrap_err()
            .field(),
        Some("target_instance_id")
    );
    // B's events do not include A's changes.
    let events = b.events(0, 1000, std::time::Duration::ZERO).await.unwrap();
    assert!(
        events
            .events
            .iter()
            .all(|e| e.resource_id == bi.id.as_str()),
        "{events:?}"
    );
    // A still has everything.
    assert!(a.get_instance(i.id.as_str()).await.unwrap().is_some());
    assert_eq!(
        a.get_load_balancer(lb.id.as_str())
            .await
            .unwrap()
            .unwrap()
            .backends
            .len(),
        1
    );
}

#[tokio::test]
async fn tokens_are_required_and_admin_is_gated() {
    let t = spawn_with(config()).await;
    let resp = t.http.get(t.url("/v1/instances")).send().await.unwrap();
    assert_eq!(resp.headers()["www-authenticate"], "Bearer");
    let (status, _, body) = decode(resp).await;
    assert_eq!(status, 401);
    assert_eq!(body["error"]["code"], "UNAUTHENTICATED");
    let (status, _, _) = decode(
        t.http
            .get(t.url("/v1/instances"))
            .bearer_auth("wrong")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(status, 401);
    // Health and metrics stay open for probes and scrapers.
    assert_eq!(
        t.http
            .get(t.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );

    let base = t.server.base_url();
    let user = Client::builder(&base)
        .token("token-a")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let admin = Client::builder(&base)
        .token("root")
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    assert_eq!(
        user.list_faults().await.unwrap_err().code(),
        Some(ErrorCode::PermissionDenied)
    );
    assert_eq!(
        user.set_zone_state("zone-a", cloud_api::ZoneState::Outage)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::PermissionDenied)
    );
    assert!(admin.list_faults().await.unwrap().is_empty());
}

#[tokio::test]
async fn whoami_and_usage_answer_for_the_tokens_project_only() {
    let t = spawn_with(config()).await;
    let base = t.server.base_url();
    let client = |token: &str| {
        Client::builder(&base)
            .token(token)
            .retry(RetryPolicy::none())
            .build()
            .unwrap()
    };
    let (a, b, root) = (client("token-a"), client("token-b"), client("root"));
    let me = a.whoami().await.unwrap();
    assert_eq!((me.project.as_str(), me.admin), ("team-a", false));
    let me = root.whoami().await.unwrap();
    assert_eq!((me.project.as_str(), me.admin), ("ops", true));
    let anonymous = reqwest::get(format!("{base}/v1/whoami")).await.unwrap();
    assert_eq!(anonymous.status(), 401);

    let i = a
        .create_instance(&instance_req("one", "zone-b"))
        .await
        .unwrap();
    a.create_instance(&instance_req("two", "zone-b"))
        .await
        .unwrap();
    b.create_instance(&instance_req("other", "zone-a"))
        .await
        .unwrap();
    a.create_load_balancer(&crate::net::tcp_lb("web", 80, 30000, &[&i]))
        .await
        .unwrap();

    let usage = a.usage().await.unwrap();
    let zones: Vec<_> = usage.zones.iter().map(|z| z.zone.as_str()).collect();
    assert_eq!(zones, ["zone-a", "zone-b", "zone-c"]);
    let (za, zb) = (&usage.zones[0], &usage.zones[1]);
    assert!(
        za.instances.is_empty(),
        "team-b's instance is not counted: {za:?}"
    );
    assert_eq!(zb.instances.values().sum::<u64>(), 2, "{zb:?}");
    assert_eq!(zb.backends, 1);
    let frontends: u64 = usage.zones.iter().map(|z| z.frontends).sum();
    assert!(
        frontends >= 1,
        "the load balancer has a frontend: {usage:?}"
    );
    let theirs = b.usage().await.unwrap();
    assert_eq!(theirs.zones[0].instances.values().sum::<u64>(), 1);
    assert_eq!(
        theirs
            .zones
            .iter()
            .map(|z| z.backends + z.frontends)
            .sum::<u64>(),
        0
    );
}
