use std::time::Duration;

use cloud_api::{
    Balancing, CreateLoadBalancerRequest, ErrorCode, HealthCheck, HealthCheckProtocol, InstanceId,
    IpMode, Listener, LoadBalancerState, Protocol, Scheme, Tags, UpdateLoadBalancerRequest,
    ZoneAffinity, ZonePolicy,
};
use cloud_client::{LoadBalancerFilter, PageRequest};
use cloud_sim::Config;

use crate::common::{TestCloud, spawn, spawn_default, spawn_with, wait_for};

fn lb_req(name: &str, backends: Vec<InstanceId>) -> CreateLoadBalancerRequest {
    CreateLoadBalancerRequest {
        name: name.into(),
        scheme: Scheme::External,
        ip_mode: IpMode::Vip,
        listeners: vec![Listener {
            protocol: Protocol::Tcp,
            port: 80,
            backend_port: 30080,
        }],
        backends,
        backend_groups: vec![],
        health_check: HealthCheck::default(),
        zone_policy: ZonePolicy::default(),
        zones: None,
        requested_ips: vec![],
        tags: Tags::new(),
    }
}

async fn three_nodes(c: &TestCloud) -> Vec<InstanceId> {
    let mut ids = Vec::new();
    for (n, z) in [("n-a", "zone-a"), ("n-b", "zone-b"), ("n-c", "zone-c")] {
        ids.push(c.instance(n, z).await.id);
    }
    ids
}

#[tokio::test]
async fn create_gives_one_frontend_per_zone_and_zoned_backends() {
    let c = spawn_default().await;
    let ids = three_nodes(&c).await;
    let mut req = lb_req("web", ids.clone());
    req.zone_policy = ZonePolicy {
        cross_zone: false,
        zone_affinity: ZoneAffinity::PreferSameZone,
        fail_open: false,
        balancing: Balancing::LeastConnections,
        ..ZonePolicy::default()
    };
    req.health_check = HealthCheck {
        protocol: HealthCheckProtocol::Http,
        port: Some(32000),
        path: Some("/healthz".into()),
        ..HealthCheck::default()
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    assert!(lb.id.as_str().starts_with("lb-"));
    assert_eq!(lb.state, LoadBalancerState::Active);
    let fronts: Vec<_> = lb
        .frontends
        .iter()
        .map(|f| (f.zone.as_str(), f.ip.to_string()))
        .collect();
    assert_eq!(
        fronts,
        [
            ("zone-a", "127.64.1.2".into()),
            ("zone-b", "127.64.2.2".into()),
            ("zone-c", "127.64.3.2".into())
        ]
    );
    let backs: Vec<_> = lb
        .backends
        .iter()
        .map(|b| {
            (
                b.instance_id.clone(),
                b.zone.as_str(),
                b.private_ip.to_string(),
            )
        })
        .collect();
    assert_eq!(backs[0], (ids[0].clone(), "zone-a", "127.1.1.2".into()));
    assert_eq!(backs[2], (ids[2].clone(), "zone-c", "127.1.3.2".into()));
    assert_eq!(lb.zone_policy.zone_affinity, ZoneAffinity::PreferSameZone);
    assert_eq!(lb.zone_policy.balancing, Balancing::LeastConnections);
    assert_eq!(lb.health_check.path.as_deref(), Some("/healthz"));
    assert_eq!(
        c.client
            .get_load_balancer(lb.id.as_str())
            .await
            .unwrap()
            .unwrap(),
        lb
    );

    // A second LB gets the next addresses; a subset of zones gets only those frontends.
    let mut second = lb_req("api", vec![]);
    second.zones = Some(vec!["zone-b".into()]);
    let lb2 = c.client.create_load_balancer(&second).await.unwrap();
    assert_eq!(lb2.frontends.len(), 1);
    assert_eq!(lb2.frontends[0].ip.to_string(), "127.64.2.3");

    // Deleting frees the addresses.
    assert!(c.client.delete_load_balancer(lb.id.as_str()).await.unwrap());
    assert!(!c.client.delete_load_balancer(lb.id.as_str()).await.unwrap());
    let lb3 = c
        .client
        .create_load_balancer(&lb_req("web2", vec![]))
        .await
        .unwrap();
    assert_eq!(lb3.frontends[0].ip.to_string(), "127.64.1.2");
}

#[tokio::test]
async fn provisioning_turns_active_after_the_delay() {
    let mut config = Config::for_tests();
    config.lb_provision_delay = Duration::from_millis(200);
    let c = spawn_with(config).await;
    let lb = c
        .client
        .create_load_balancer(&lb_req("slow", vec![]))
        .await
        .unwrap();
    assert_eq!(lb.state, LoadBalancerState::Provisioning);
    let client = &c.client;
    let id = lb.id.as_str();
    wait_for("active", Duration::from_secs(10), || async move {
        (client.get_load_balancer(id).await.unwrap().unwrap().state == LoadBalancerState::Active)
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn bad_load_balancers_are_rejected_with_the_field() {
    let c = spawn().await;
    let ids = three_nodes(&c).await;
    let unknown: InstanceId = "i-00000000000000ff".parse().unwrap();
    let cases: Vec<(CreateLoadBalancerRequest, &str)> = vec![
        (
            CreateLoadBalancerRequest {
                listeners: vec![],
                ..lb_req("x", vec![])
            },
            "listeners",
        ),
        (
            CreateLoadBalancerRequest {
                listeners: vec![Listener {
                    protocol: Protocol::Tcp,
                    port: 0,
                    backend_port: 1,
                }],
                ..lb_req("x", vec![])
            },
            "listeners[0].port",
        ),
        (lb_req("x", vec![ids[0].clone(), unknown]), "backends[1]"),
        (
            lb_req("x", vec![ids[0].clone(), ids[0].clone()]),
            "backends[1]",
        ),
        (lb_req("Not_A_Name", vec![]), "name"),
        (
            CreateLoadBalancerRequest {
                zones: Some(vec!["zone-z".into()]),
                ..lb_req("x", vec![])
            },
            "zones[0]",
        ),
        (
            CreateLoadBalancerRequest {
                requested_ips: vec!["127.9.9.9".parse().unwrap()],
                ..lb_req("x", vec![])
            },
            "requested_ips[0]",
        ),
        (
            CreateLoadBalancerRequest {
                health_check: HealthCheck {
                    protocol: HealthCheckProtocol::Http,
                    ..HealthCheck::default()
                },
                ..lb_req("x", vec![])
            },
            "health_check.path",
        ),
    ];
    for (req, field) in cases {
        let e = c.client.create_load_balancer(&req).await.unwrap_err();
        assert_eq!(e.code(), Some(ErrorCode::ValidationFailed), "{field}: {e}");
        assert_eq!(e.field(), Some(field), "{e}");
    }
    c.client
        .create_load_balancer(&lb_req("dup", vec![]))
        .await
        .unwrap();
    assert_eq!(
        c.client
            .create_load_balancer(&lb_req("dup", vec![]))
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::AlreadyExists)
    );
}

#[tokio::test]
async fn requested_ips_are_honoured_once() {
    let c = spawn_default().await;
    let mut req = lb_req("pinned", vec![]);
    req.requested_ips = vec!["127.64.2.77".parse().unwrap()];
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    let b = lb.frontends.iter().find(|f| f.zone == "zone-b").unwrap();
    assert_eq!(b.ip.to_string(), "127.64.2.77");
    let mut again = lb_req("pinned2", vec![]);
    again.requested_ips = vec!["127.64.2.77".parse().unwrap()];
    assert_eq!(
        c.client
            .create_load_balancer(&again)
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::AlreadyExists)
    );
}

#[tokio::test]
async fn update_replaces_fields_and_checks_etags() {
    let c = spawn().await;
    let ids = three_nodes(&c).await;
    let lb = c
        .client
        .create_load_balancer(&lb_req("web", vec![ids[0].clone()]))
        .await
        .unwrap();
    let upd = UpdateLoadBalancerRequest {
        backends: Some(ids.clone()),
        listeners: Some(vec![
            Listener {
                protocol: Protocol::Tcp,
                port: 80,
                backend_port: 30081,
            },
            Listener {
                protocol: Protocol::Udp,
                port: 53,
                backend_port: 30053,
            },
        ]),
        zone_policy: Some(ZonePolicy {
            cross_zone: true,
            ..ZonePolicy::default()
        }),
        ..Default::default()
    };
    let out = c
        .client
        .update_load_balancer(lb.id.as_str(), &upd, Some(&lb.etag))
        .await
        .unwrap();
    assert_eq!(out.backends.len(), 3);
    assert_eq!(out.listeners.len(), 2);
    assert!(out.zone_policy.cross_zone);
    assert_eq!(out.frontends, lb.frontends, "frontends survive updates");
    assert_ne!(out.etag, lb.etag);
    // Same request again: nothing changes, not even the etag.
    let same = c
        .client
        .update_load_balancer(lb.id.as_str(), &upd, None)
        .await
        .unwrap();
    assert_eq!(same.etag, out.etag);
    // Stale etag.
    let e = c
        .client
        .update_load_balancer(
            lb.id.as_str(),
            &UpdateLoadBalancerRequest {
                backends: Some(vec![]),
                ..Default::default()
            },
            Some(&lb.etag),
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PreconditionFailed));
    // Terminated backends are accepted (they only fail health checks), unknown ones are not.
    c.client.terminate_instance(ids[1].as_str()).await.unwrap();
    c.client
        .update_load_balancer(
            lb.id.as_str(),
            &UpdateLoadBalancerRequest {
                backends: Some(vec![ids[1].clone()]),
                ..Default::default()
            },
            None,
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn list_by_name_and_tag_with_pages() {
    let c = spawn().await;
    for n in 0..7 {
        let mut req = lb_req(&format!("lb{n}"), vec![]);
        req.zones = Some(vec!["zone-a".into()]);
        req.tags
            .insert("kubernetes.io/cluster/demo".into(), "owned".into());
        if n == 3 {
            req.tags
                .insert("kubernetes.io/service-name".into(), "default/web".into());
        }
        c.client.create_load_balancer(&req).await.unwrap();
    }
    let all = c
        .client
        .list_all_load_balancers(&LoadBalancerFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 7);
    let p = c
        .client
        .list_load_balancers(
            &LoadBalancerFilter::default(),
            &PageRequest {
                page_size: Some(3),
                page_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(p.items.len(), 3);
    assert!(p.next_page_token.is_some());
    let tagged = c
        .client
        .list_all_load_balancers(&LoadBalancerFilter {
            tag: Some(("kubernetes.io/service-name".into(), "default/web".into())),
            name: None,
        })
        .await
        .unwrap();
    assert_eq!(
        tagged.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(),
        ["lb3"]
    );
    assert_eq!(
        c.client
            .find_load_balancer("lb5")
            .await
            .unwrap()
            .unwrap()
            .name,
        "lb5"
    );
    assert!(c.client.find_load_balancer("nope").await.unwrap().is_none());
}

/// A list reads every load balancer's frontends and backends in one go; each gets its own, in
/// order, exactly as a read of it alone does.
#[tokio::test]
async fn lists_carry_each_load_balancers_own_frontends_and_backends() {
    let c = spawn().await;
    let nodes = three_nodes(&c).await;
    type Shape = (&'static str, Vec<InstanceId>, Option<Vec<String>>);
    let shapes: [Shape; 4] = [
        ("all", nodes.clone(), None),
        (
            "a-only",
            vec![nodes[0].clone()],
            Some(vec!["zone-a".into()]),
        ),
        (
            "reversed",
            nodes.iter().rev().cloned().collect(),
            Some(vec!["zone-b".into(), "zone-c".into()]),
        ),
        ("none", vec![], Some(vec!["zone-c".into()])),
    ];
    for (name, backends, zones) in shapes {
        let mut req = lb_req(name, backends);
        req.zones = zones;
        c.client.create_load_balancer(&req).await.unwrap();
    }
    let listed = c
        .client
        .list_all_load_balancers(&LoadBalancerFilter::default())
        .await
        .unwrap();
    assert_eq!(listed.len(), 4);
    for lb in listed {
        let alone = c
            .client
            .get_load_balancer(lb.id.as_str())
            .await
            .unwrap()
            .unwrap();
        assert_eq!(lb.frontends, alone.frontends, "{}", lb.name);
        assert_eq!(lb.backends, alone.backends, "{}", lb.name);
    }
    let reversed = c
        .client
        .list_all_load_balancers(&LoadBalancerFilter {
            name: Some("reversed".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let order: Vec<_> = reversed[0]
        .backends
        .iter()
        .map(|b| b.instance_id.clone())
        .collect();
    assert_eq!(order, nodes.iter().rev().cloned().collect::<Vec<_>>());
    assert_eq!(reversed[0].frontends.len(), 2);
}

/// Frontend addresses follow `domain::net::first_free` (the lowest free one) however the pool
/// got its gaps: packed, after a delete in the middle, and at the pool's end.
#[tokio::test]
async fn frontend_addresses_fill_the_lowest_gap_first() {
    let mut cfg = Config::for_tests_isolated();
    cfg.zones.truncate(1);
    cfg.zones[0].lb_pool = "127.64.1.0/29".parse().unwrap();
    let pool = cfg.zones[0].lb_pool;
    let c = spawn_with(cfg).await;
    let create = |name: &str| {
        let req = lb_req(name, vec![]);
        let client = c.client.clone();
        async move { client.create_load_balancer(&req).await }
    };
    let mut lbs = Vec::new();
    for name in ["a", "b", "c"] {
        lbs.push(create(name).await.unwrap());
    }
    let ip = |lb: &cloud_api::LoadBalancer| u32::from(lb.frontends[0].ip);
    let used = |lbs: &[cloud_api::LoadBalancer]| {
        let mut v: Vec<u32> = lbs.iter().map(ip).collect();
        v.sort();
        v
    };
    c.client
        .delete_load_balancer(lbs[1].id.as_str())
        .await
        .unwrap();
    lbs.remove(1);
    for name in ["d", "e", "f"] {
        let want = cloud_sim::domain::net::first_free(pool, &used(&lbs)).unwrap();
        let lb = create(name).await.unwrap();
        assert_eq!(lb.frontends[0].ip, want, "{name}");
        lbs.push(lb);
    }
    // A /29 has five usable addresses (.2 to .6): the pool is full now.
    assert_eq!(lbs.len(), 5);
    assert_eq!(cloud_sim::domain::net::first_free(pool, &used(&lbs)), None);
    let e = create("g").await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded));
    assert!(e.to_string().contains("no free address"), "{e}");
}
