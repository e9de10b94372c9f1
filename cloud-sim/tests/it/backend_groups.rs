//! Backend groups: one zone's instances, referenced by load balancers as a whole.

use std::time::Duration;

use cloud_api::{
    CreateBackendGroupRequest, CreateLoadBalancerRequest, ErrorCode, InstanceId, ResourceKind,
    Tags, UpdateBackendGroupRequest, UpdateLoadBalancerRequest,
};
use cloud_client::{LoadBalancerFilter, PageRequest};

use crate::common::{spawn, spawn_default, wait_for};
use crate::net::{ask, backend, port, tcp_lb};

const T: Duration = Duration::from_secs(20);

fn group_req(name: &str, zone: &str, members: Vec<InstanceId>) -> CreateBackendGroupRequest {
    let mut tags = Tags::new();
    tags.insert("team".into(), "web".into());
    CreateBackendGroupRequest {
        name: name.into(),
        zone: zone.into(),
        members,
        tags,
    }
}

fn code(e: &cloud_client::Error) -> (Option<ErrorCode>, Option<&str>) {
    (e.code(), e.field())
}

#[tokio::test]
async fn groups_are_created_read_listed_updated_by_difference_and_validated() {
    let c = spawn_default().await;
    let a1 = c.instance("a1", "zone-a").await;
    let a2 = c.instance("a2", "zone-a").await;
    let a3 = c.instance("a3", "zone-a").await;
    let b1 = c.instance("b1", "zone-b").await;

    let g = c
        .client
        .create_backend_group(&group_req(
            "pool-a",
            "zone-a",
            vec![a2.id.clone(), a1.id.clone()],
        ))
        .await
        .unwrap();
    assert!(g.id.as_str().starts_with("bg-"));
    assert_eq!((g.zone.as_str(), g.etag.as_str()), ("zone-a", "1"));
    // Members come back in instance-ID order, with the instance's zone and address.
    let mut want = vec![
        (a1.id.clone(), a1.private_ip),
        (a2.id.clone(), a2.private_ip),
    ];
    want.sort();
    let have: Vec<_> = g
        .members
        .iter()
        .map(|m| (m.instance_id.clone(), m.private_ip))
        .collect();
    assert_eq!(have, want);
    assert!(g.members.iter().all(|m| m.zone == "zone-a"));
    let read = c
        .client
        .get_backend_group(g.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(read, g);

    // Listed by name and by tag.
    let by_name = LoadBalancerFilter {
        name: Some("pool-a".into()),
        tag: None,
    };
    let page = c
        .client
        .list_backend_groups(&by_name, &PageRequest::default())
        .await
        .unwrap();
    assert_eq!(page.items, vec![g.clone()]);
    let by_tag = LoadBalancerFilter {
        name: None,
        tag: Some(("team".into(), "other".into())),
    };
    assert!(
        c.client
            .list_all_backend_groups(&by_tag)
            .await
            .unwrap()
            .is_empty()
    );

    // An update replaces the members: a3 in, a2 out; the etag moves.
    let u = UpdateBackendGroupRequest {
        members: Some(vec![a1.id.clone(), a3.id.clone()]),
        tags: None,
    };
    let g2 = c
        .client
        .update_backend_group(g.id.as_str(), &u, Some(&g.etag))
        .await
        .unwrap();
    let ids: Vec<_> = g2.members.iter().map(|m| m.instance_id.clone()).collect();
    let mut want = vec![a1.id.clone(), a3.id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(g2.etag, "2");
    // The same members again change nothing, not even the etag; a stale etag is refused.
    let same = c
        .client
        .update_backend_group(g.id.as_str(), &u, None)
        .await
        .unwrap();
    assert_eq!(same.etag, "2");
    let e = c
        .client
        .update_backend_group(g.id.as_str(), &u, Some("1"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PreconditionFailed));

    // Members must be instances of the project in the group's zone, each once.
    let other_zone = UpdateBackendGroupRequest {
        members: Some(vec![a1.id.clone(), b1.id.clone()]),
        tags: None,
    };
    let e = c
        .client
        .update_backend_group(g.id.as_str(), &other_zone, None)
        .await
        .unwrap_err();
    assert_eq!(
        code(&e),
        (Some(ErrorCode::ValidationFailed), Some("members[1]"))
    );
    assert!(e.to_string().contains("zone-b"), "{e}");
    let cases = [
        (
            group_req("twice", "zone-a", vec![a1.id.clone(), a1.id.clone()]),
            "members[1]",
        ),
        (
            group_req("ghost", "zone-a", vec![InstanceId::from_bits(7)]),
            "members[0]",
        ),
        (group_req("nowhere", "zone-z", vec![]), "zone"),
        (group_req("Bad_Name", "zone-a", vec![]), "name"),
    ];
    for (req, field) in cases {
        let e = c.client.create_backend_group(&req).await.unwrap_err();
        assert_eq!(
            code(&e),
            (Some(ErrorCode::ValidationFailed), Some(field)),
            "{}",
            req.name
        );
    }
    let e = c
        .client
        .create_backend_group(&group_req("pool-a", "zone-a", vec![]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::AlreadyExists));
    assert!(e.to_string().contains(g.id.as_str()), "{e}");

    // The event log records the group's changes.
    let events = c.client.events(0, 500, Duration::ZERO).await.unwrap();
    let kinds: Vec<_> = events
        .events
        .iter()
        .filter(|e| e.resource_kind == ResourceKind::BackendGroup)
        .map(|e| (e.kind, e.zone.clone()))
        .collect();
    assert_eq!(
        kinds,
        [
            (cloud_api::EventKind::Created, Some("zone-a".into())),
            (cloud_api::EventKind::Updated, Some("zone-a".into()))
        ]
    );
}

#[tokio::test]
async fn a_group_in_use_cannot_be_deleted_and_an_unknown_one_cannot_be_used() {
    let c = spawn_default().await;
    let a1 = c.instance("a1", "zone-a").await;
    let b1 = c.instance("b1", "zone-b").await;
    let ga = c
        .client
        .create_backend_group(&group_req("pool-a", "zone-a", vec![a1.id.clone()]))
        .await
        .unwrap();
    let gb = c
        .client
        .create_backend_group(&group_req("pool-b", "zone-b", vec![b1.id.clone()]))
        .await
        .unwrap();
    let req = CreateLoadBalancerRequest {
        backend_groups: vec![ga.id.clone(), gb.id.clone()],
        ..tcp_lb("web", 80, 30080, &[])
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    assert_eq!(lb.backend_groups, vec![ga.id.clone(), gb.id.clone()]);
    assert!(lb.backends.is_empty());
    // The overview counts each group member once per load balancer using it.
    let usage = c.client.usage().await.unwrap();
    let backends: Vec<_> = usage
        .zones
        .iter()
        .map(|z| (z.zone.as_str(), z.backends))
        .collect();
    assert_eq!(backends, [("zone-a", 1), ("zone-b", 1), ("zone-c", 0)]);

    let e = c
        .client
        .delete_backend_group(ga.id.as_str())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::Conflict));
    assert!(e.to_string().contains("web"), "{e}");

    let missing = cloud_api::BackendGroupId::from_bits(9);
    let bad = CreateLoadBalancerRequest {
        backend_groups: vec![missing.clone()],
        ..tcp_lb("other", 81, 30081, &[])
    };
    let e = c.client.create_load_balancer(&bad).await.unwrap_err();
    assert_eq!(
        code(&e),
        (Some(ErrorCode::ValidationFailed), Some("backend_groups[0]"))
    );
    let twice = UpdateLoadBalancerRequest {
        backend_groups: Some(vec![ga.id.clone(), ga.id.clone()]),
        ..Default::default()
    };
    let e = c
        .client
        .update_load_balancer(lb.id.as_str(), &twice, None)
        .await
        .unwrap_err();
    assert_eq!(
        code(&e),
        (Some(ErrorCode::ValidationFailed), Some("backend_groups[1]"))
    );

    // Dropping a group from the load balancer frees it.
    let only_b = UpdateLoadBalancerRequest {
        backend_groups: Some(vec![gb.id.clone()]),
        ..Default::default()
    };
    let lb2 = c
        .client
        .update_load_balancer(lb.id.as_str(), &only_b, None)
        .await
        .unwrap();
    assert_eq!(lb2.backend_groups, vec![gb.id.clone()]);
    assert_ne!(lb2.etag, lb.etag);
    assert!(c.client.delete_backend_group(ga.id.as_str()).await.unwrap());
    assert!(
        c.client
            .get_backend_group(ga.id.as_str())
            .await
            .unwrap()
            .is_none()
    );
    // Deleting the load balancer frees the other.
    c.client.delete_load_balancer(lb.id.as_str()).await.unwrap();
    assert!(c.client.delete_backend_group(gb.id.as_str()).await.unwrap());
}

/// The data plane sends to a group's members, and follows membership changes without the load
/// balancer changing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn traffic_goes_to_the_members_and_follows_the_group() {
    let c = spawn().await;
    let backend_port = port();
    let lb_port = port();
    let a1 = c.instance("a1", "zone-a").await;
    let a2 = c.instance("a2", "zone-a").await;
    let _servers = [
        backend(a1.private_ip, backend_port, "a1").await,
        backend(a2.private_ip, backend_port, "a2").await,
    ];
    let g = c
        .client
        .create_backend_group(&group_req("pool-a", "zone-a", vec![a1.id.clone()]))
        .await
        .unwrap();
    let req = CreateLoadBalancerRequest {
        backend_groups: vec![g.id.clone()],
        zones: Some(vec!["zone-a".into()]),
        ..tcp_lb("web", lb_port, backend_port, &[])
    };
    let lb = c.client.create_load_balancer(&req).await.unwrap();
    let front = lb.frontends[0].ip;
    let id = lb.id.to_string();
    let healthy = |want: usize| {
        let client = c.client.clone();
        let id = id.clone();
        async move {
            let r = client.load_balancer_traffic(&id).await.ok()??;
            (r.backends.len() == want && r.backends.iter().all(|b| b.healthy)).then_some(r)
        }
    };
    wait_for("a1 healthy", T, || healthy(1)).await;
    assert_eq!(ask(front, lb_port).await.as_deref(), Some("a1"));

    // a2 joins the group: the load balancer sends to both, and is itself unchanged.
    c.client
        .update_backend_group(
            g.id.as_str(),
            &UpdateBackendGroupRequest {
                members: Some(vec![a1.id.clone(), a2.id.clone()]),
                tags: None,
            },
            None,
        )
        .await
        .unwrap();
    wait_for("a1 and a2 healthy", T, || healthy(2)).await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..6 {
        seen.insert(ask(front, lb_port).await.unwrap());
    }
    assert_eq!(seen, ["a1".to_owned(), "a2".to_owned()].into());
    let same = c.client.get_load_balancer(&id).await.unwrap().unwrap();
    assert_eq!(same.etag, lb.etag);

    // a1 leaves: only a2 answers.
    c.client
        .update_backend_group(
            g.id.as_str(),
            &UpdateBackendGroupRequest {
                members: Some(vec![a2.id.clone()]),
                tags: None,
            },
            None,
        )
        .await
        .unwrap();
    let r = wait_for("only a2", T, || healthy(1)).await;
    assert_eq!(r.backends[0].instance_id, a2.id.to_string());
    for _ in 0..3 {
        assert_eq!(ask(front, lb_port).await.as_deref(), Some("a2"));
    }
}
