use std::time::Duration;

use cloud_api::{CreateInstanceRequest, ErrorCode, InstanceState, Tags};
use cloud_client::{InstanceFilter, PageRequest};
use cloud_sim::Config;

use crate::common::{assert_error, instance_req, spawn, spawn_default, spawn_with, wait_for};

#[tokio::test]
async fn create_allocates_per_zone_addresses_and_provider_ids() {
    let c = spawn_default().await;
    let a1 = c.instance("node-a1", "zone-a").await;
    let a2 = c.instance("node-a2", "zone-a").await;
    let b1 = c.instance("node-b1", "zone-b").await;
    assert_eq!(a1.private_ip.to_string(), "127.1.1.2");
    assert_eq!(a2.private_ip.to_string(), "127.1.1.3");
    assert_eq!(b1.private_ip.to_string(), "127.1.2.2");
    assert_eq!(
        a1.state,
        InstanceState::Running,
        "zero boot delay settles at once"
    );
    assert_eq!(a1.provider_id, format!("simcloud://zone-a/{}", a1.id));
    assert_eq!(a1.region, "sim-1");
    assert_eq!(a1.etag, "1");

    // A terminated instance gives its address and name back; the lowest free address is reused.
    c.client.terminate_instance(a1.id.as_str()).await.unwrap();
    let again = c.instance("node-a1", "zone-a").await;
    assert_eq!(again.private_ip.to_string(), "127.1.1.2");
    assert_ne!(again.id, a1.id);
    // The terminated one is still visible, as on EC2.
    let old = c
        .client
        .get_instance(a1.id.as_str())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(old.state, InstanceState::Terminated);
    assert!(old.terminated_at.is_some());
    // A gap in the middle is filled before the end grows: .2 .3 .4 live, .3 freed, next is .3.
    let a3 = c.instance("node-a3", "zone-a").await;
    assert_eq!(a3.private_ip.to_string(), "127.1.1.4");
    c.client.terminate_instance(a2.id.as_str()).await.unwrap();
    let gap = c.instance("node-a4", "zone-a").await;
    assert_eq!(gap.private_ip.to_string(), "127.1.1.3");
    let next = c.instance("node-a5", "zone-a").await;
    assert_eq!(next.private_ip.to_string(), "127.1.1.5");
}

#[tokio::test]
async fn create_rejects_bad_input_naming_the_field() {
    let c = spawn().await;
    let cases = [
        (
            serde_json::json!({"name": "Bad_Name", "zone": "zone-a", "instance_type": "sim.small"}),
            "name",
        ),
        (
            serde_json::json!({"name": "ok", "zone": "zone-q", "instance_type": "sim.small"}),
            "zone",
        ),
        (
            serde_json::json!({"name": "ok", "zone": "zone-a", "instance_type": "sim.huge"}),
            "instance_type",
        ),
        (
            serde_json::json!({"name": "ok", "zone": "zone-a", "instance_type": 7}),
            "instance_type",
        ),
        (
            serde_json::json!({"name": "ok", "zone": "zone-a", "instance_type": "sim.small", "private_ip": "300.1.1.1"}),
            "private_ip",
        ),
        (
            serde_json::json!({"name": "ok", "zone": "zone-a", "instance_type": "sim.small", "tags": {"k": 1}}),
            "tags.k",
        ),
        (
            serde_json::json!({"name": "ok", "zone": "zone-a", "instance_type": "sim.small", "colour": "red"}),
            "colour",
        ),
    ];
    for (body, field) in cases {
        let (status, headers, resp) = c.post_json("/v1/instances", &body).await;
        assert_error(status, &headers, &resp, 422, "VALIDATION_FAILED");
        assert_eq!(resp["error"]["field"], field, "{body} -> {resp}");
    }
    let resp = c
        .http
        .post(c.url("/v1/instances"))
        .header("content-type", "application/json")
        .body("{oops")
        .send()
        .await
        .unwrap();
    let (status, headers, body) = crate::common::decode(resp).await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
}

/// A batch create makes every instance, in order, with the same addresses, tags, events and
/// idempotency as one-by-one creates; a batch with one create that cannot be made makes none.
#[tokio::test]
async fn batch_create_makes_all_or_none() {
    let c = spawn_default().await;
    let before = c
        .client
        .events(0, 1, Duration::ZERO)
        .await
        .unwrap()
        .last_seq;
    let mut reqs: Vec<CreateInstanceRequest> = (0..5)
        .map(|i| {
            instance_req(
                &format!("b-{i}"),
                if i % 2 == 0 { "zone-a" } else { "zone-b" },
            )
        })
        .collect();
    reqs[1].tags.insert("team".into(), "net".into());
    reqs[4].private_ip = Some("127.1.1.9".parse().unwrap());
    let made = c.client.batch_create_instances(&reqs).await.unwrap();
    let names: Vec<&str> = made.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["b-0", "b-1", "b-2", "b-3", "b-4"]);
    let ips: Vec<String> = made.iter().map(|x| x.private_ip.to_string()).collect();
    assert_eq!(
        ips,
        [
            "127.1.1.2",
            "127.1.2.2",
            "127.1.1.3",
            "127.1.2.3",
            "127.1.1.9"
        ]
    );
    for (x, req) in made.iter().zip(&reqs) {
        let read = c.client.get_instance(x.id.as_str()).await.unwrap().unwrap();
        assert_eq!(&read, x, "what the batch answered is what is stored");
        assert_eq!(read.tags, req.tags);
    }
    let tagged = c
        .client
        .list_all_instances(&InstanceFilter {
            tag: Some(("team".into(), "net".into())),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(tagged.len(), 1, "tags are indexed for filters too");
    assert_eq!(tagged[0].name, "b-1");
    let events = c.client.events(before, 100, Duration::ZERO).await.unwrap();
    let created: Vec<&str> = events
        .events
        .iter()
        .filter(|e| e.kind == cloud_api::EventKind::Created)
        .map(|e| e.resource_id.as_str())
        .collect();
    let ids: Vec<&str> = made.iter().map(|x| x.id.as_str()).collect();
    assert_eq!(created, ids, "one Created event per instance, in order");

    // One create that cannot be made fails the batch, naming it; the others are not made.
    let taken = vec![instance_req("c-0", "zone-a"), instance_req("b-3", "zone-a")];
    let err = c.client.batch_create_instances(&taken).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AlreadyExists), "{err}");
    assert!(err.to_string().contains(made[3].id.as_str()), "{err}");
    let mut ip_taken = vec![instance_req("c-0", "zone-a"), instance_req("c-1", "zone-a")];
    ip_taken[1].private_ip = Some("127.1.1.9".parse().unwrap());
    let err = c
        .client
        .batch_create_instances(&ip_taken)
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AlreadyExists), "{err}");
    let all = c
        .client
        .list_all_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 5, "a failed batch made nothing: {all:?}");
    // The addresses a failed batch would have taken are still free.
    let next = c.instance("c-0", "zone-a").await;
    assert_eq!(next.private_ip.to_string(), "127.1.1.4");

    // The same key and body replay the batch's answer; nothing is made twice.
    let body = serde_json::json!({"instances": [instance_req("d-0", "zone-b"), instance_req("d-1", "zone-b")]});
    let post = || {
        c.http
            .post(c.url("/v1/instances:batchCreate"))
            .header("idempotency-key", "batch-1")
            .json(&body)
            .send()
    };
    let (s1, _, first) = crate::common::decode(post().await.unwrap()).await;
    let (s2, _, second) = crate::common::decode(post().await.unwrap()).await;
    assert_eq!((s1, s2), (201, 201), "{first} / {second}");
    assert_eq!(first, second);
    let all = c
        .client
        .list_all_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 8);
}

/// The tag index, which creates write with their commit, finds what every kind of create
/// tagged: with an idempotency key (the record, the index rows and the COMMIT go together),
/// without one, and in a batch.
#[tokio::test]
async fn tag_filters_find_what_every_kind_of_create_tagged() {
    let c = spawn().await;
    let tagged = |name: &str| {
        let mut req = instance_req(name, "zone-a");
        req.tags.insert("tier".into(), "web".into());
        req.tags.insert("owner".into(), name.into());
        req
    };
    c.client.create_instance(&tagged("keyed")).await.unwrap();
    let (status, _, body) = c
        .post_json(
            "/v1/instances",
            &serde_json::to_value(tagged("unkeyed")).unwrap(),
        )
        .await;
    assert_eq!(status, 201, "{body}");
    c.client
        .batch_create_instances(&[
            tagged("batch-0"),
            tagged("batch-1"),
            instance_req("plain", "zone-a"),
        ])
        .await
        .unwrap();
    let find = |k: &str, v: &str| {
        let filter = InstanceFilter {
            tag: Some((k.into(), v.into())),
            ..Default::default()
        };
        let client = c.client.clone();
        async move {
            let mut names: Vec<String> = client
                .list_all_instances(&filter)
                .await
                .unwrap()
                .into_iter()
                .map(|x| x.name)
                .collect();
            names.sort();
            names
        }
    };
    assert_eq!(
        find("tier", "web").await,
        ["batch-0", "batch-1", "keyed", "unkeyed"]
    );
    assert_eq!(find("owner", "unkeyed").await, ["unkeyed"]);
    assert_eq!(find("owner", "batch-1").await, ["batch-1"]);
}

/// A bad batch is refused before anything is written, the error naming the member and field.
#[tokio::test]
async fn batch_create_names_the_bad_member() {
    let c = spawn().await;
    let ok = serde_json::json!({"name": "ok", "zone": "zone-a", "instance_type": "sim.small"});
    let many: Vec<serde_json::Value> = (0..=cloud_api::MAX_BATCH_CREATE)
        .map(|i| serde_json::json!({"name": format!("n-{i}"), "zone": "zone-a", "instance_type": "sim.small"}))
        .collect();
    let cases = [
        (serde_json::json!({"instances": []}), "instances"),
        (serde_json::json!({"instances": many}), "instances"),
        (
            serde_json::json!({"instances": [ok, {"name": "Bad_Name", "zone": "zone-a", "instance_type": "sim.small"}]}),
            "instances[1].name",
        ),
        (
            serde_json::json!({"instances": [ok, {"name": "x", "zone": "zone-q", "instance_type": "sim.small"}]}),
            "instances[1].zone",
        ),
        (
            serde_json::json!({"instances": [{"name": "x", "zone": "zone-a", "instance_type": "sim.huge"}, ok]}),
            "instances[0].instance_type",
        ),
        (
            serde_json::json!({"instances": [ok, ok]}),
            "instances[1].name",
        ),
        (
            serde_json::json!({"instances": [
                {"name": "x", "zone": "zone-a", "instance_type": "sim.small", "private_ip": "10.0.0.1"},
                ok,
            ]}),
            "instances[0].private_ip",
        ),
        (serde_json::json!({"instances": [ok], "count": 3}), "count"),
    ];
    for (body, field) in cases {
        let (status, headers, resp) = c.post_json("/v1/instances:batchCreate", &body).await;
        assert_error(status, &headers, &resp, 422, "VALIDATION_FAILED");
        assert_eq!(resp["error"]["field"], field, "{resp}");
    }
    let all = c
        .client
        .list_all_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert!(all.is_empty(), "nothing was made: {all:?}");
}

#[tokio::test]
async fn names_are_unique_among_live_instances() {
    let c = spawn().await;
    let first = c.instance("web", "zone-a").await;
    let err = c
        .client
        .create_instance(&instance_req("web", "zone-b"))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::AlreadyExists));
    assert!(err.to_string().contains(first.id.as_str()), "{err}");
    c.client
        .terminate_instance(first.id.as_str())
        .await
        .unwrap();
    c.instance("web", "zone-b").await;
}

/// A zone's addresses are found from a floor the creates raise as the subnet fills (so a create
/// does not count the zone's instances); a release below it still comes first.
#[tokio::test]
async fn the_lowest_free_address_is_found_past_many_held_ones() {
    let c = spawn_default().await;
    let mut made = Vec::new();
    for n in 0..80 {
        made.push(c.instance(&format!("fill-{n}"), "zone-a").await);
    }
    let ips: Vec<String> = made.iter().map(|i| i.private_ip.to_string()).collect();
    let expected: Vec<String> = (2..82).map(|h| format!("127.1.1.{h}")).collect();
    assert_eq!(
        ips, expected,
        "packed from the subnet's first usable address"
    );
    // Release two below where the floor has risen to: the lower comes back first.
    c.client
        .terminate_instance(made[40].id.as_str())
        .await
        .unwrap();
    c.client
        .terminate_instance(made[5].id.as_str())
        .await
        .unwrap();
    let first = c.instance("back-1", "zone-a").await;
    assert_eq!(first.private_ip.to_string(), "127.1.1.7");
    let second = c.instance("back-2", "zone-a").await;
    assert_eq!(second.private_ip.to_string(), "127.1.1.42");
    let end = c.instance("back-3", "zone-a").await;
    assert_eq!(end.private_ip.to_string(), "127.1.1.82");
    // A deleted instance releases its address as well.
    c.client
        .delete_instance(made[60].id.as_str())
        .await
        .unwrap();
    let reused = c.instance("back-4", "zone-a").await;
    assert_eq!(reused.private_ip.to_string(), "127.1.1.62");
}

#[tokio::test]
async fn caller_chosen_addresses() {
    let c = spawn_default().await;
    let mut req = instance_req("kind-worker", "zone-a");
    req.private_ip = Some("127.200.0.5".parse().unwrap());
    let i = c.client.create_instance(&req).await.unwrap();
    assert_eq!(i.private_ip.to_string(), "127.200.0.5");

    let mut dup = instance_req("kind-worker2", "zone-b");
    dup.private_ip = Some("127.200.0.5".parse().unwrap());
    assert_eq!(
        c.client.create_instance(&dup).await.unwrap_err().code(),
        Some(ErrorCode::AlreadyExists)
    );

    let cases = [
        ("10.0.0.1", "outside the region network"),
        ("127.64.1.9", "load-balancer pool"),
        ("127.1.2.9", "subnet of zone-b"),
        ("127.1.1.1", "reserved"),
    ];
    for (ip, why) in cases {
        let mut r = instance_req("x", "zone-a");
        r.private_ip = Some(ip.parse().unwrap());
        let e = c.client.create_instance(&r).await.unwrap_err();
        assert_eq!(e.field(), Some("private_ip"), "{ip}");
        assert!(e.to_string().contains(why), "{ip}: {e}");
    }
    // An address chosen inside the zone's subnet is skipped by the allocator afterwards.
    let mut inside = instance_req("pinned", "zone-c");
    inside.private_ip = Some("127.1.3.2".parse().unwrap());
    c.client.create_instance(&inside).await.unwrap();
    assert_eq!(
        c.instance("next", "zone-c").await.private_ip.to_string(),
        "127.1.3.3"
    );
}

#[tokio::test]
async fn subnet_exhaustion_is_a_quota_error() {
    let zones = vec!["zone-a".to_string()];
    let config = Config::build(
        "sim-1",
        "127.0.0.0/8".parse().unwrap(),
        &zones,
        &[("zone-a".into(), "127.1.1.0/29".parse().unwrap())],
        &[],
    )
    .unwrap();
    let c = spawn_with(config).await;
    for n in 0..5 {
        c.instance(&format!("n{n}"), "zone-a").await;
    }
    let e = c
        .client
        .create_instance(&instance_req("n5", "zone-a"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::QuotaExceeded));
}

#[tokio::test]
async fn lifecycle_actions_follow_the_state_machine() {
    let c = spawn().await;
    let i = c.instance("n1", "zone-a").await;
    let id = i.id.as_str();
    assert_eq!(
        c.client.stop_instance(id).await.unwrap().state,
        InstanceState::Stopped
    );
    // Stop on stopped is a no-op that changes nothing (same etag).
    let again = c.client.stop_instance(id).await.unwrap();
    assert_eq!(again.state, InstanceState::Stopped);
    let stopped_etag = again.etag.clone();
    assert_eq!(c.client.stop_instance(id).await.unwrap().etag, stopped_etag);
    assert_eq!(
        c.client.start_instance(id).await.unwrap().state,
        InstanceState::Running
    );
    assert_eq!(
        c.client.terminate_instance(id).await.unwrap().state,
        InstanceState::Terminated
    );
    let e = c.client.start_instance(id).await.unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::IncorrectState));
    assert!(
        e.to_string()
            .contains("cannot start an instance that is terminated"),
        "{e}"
    );
    assert!(c.client.delete_instance(id).await.unwrap());
    assert!(c.client.get_instance(id).await.unwrap().is_none());
    assert!(!c.client.delete_instance(id).await.unwrap());
}

#[tokio::test]
async fn delays_make_transitional_states_visible() {
    let mut config = Config::for_tests();
    config.instance_boot_delay = Duration::from_millis(300);
    config.instance_stop_delay = Duration::from_millis(300);
    let c = spawn_with(config).await;
    let i = c.instance("slow", "zone-a").await;
    assert_eq!(i.state, InstanceState::Pending);
    // A pending instance cannot be stopped (EC2's IncorrectInstanceState).
    assert_eq!(
        c.client
            .stop_instance(i.id.as_str())
            .await
            .unwrap_err()
            .code(),
        Some(ErrorCode::IncorrectState)
    );
    // Start on pending is a no-op.
    assert_eq!(
        c.client.start_instance(i.id.as_str()).await.unwrap().state,
        InstanceState::Pending
    );
    let client = &c.client;
    let id = i.id.as_str();
    wait_for("running", Duration::from_secs(10), || async move {
        let s = client.get_instance(id).await.unwrap().unwrap().state;
        (s == InstanceState::Running).then_some(())
    })
    .await;
    assert_eq!(
        c.client.stop_instance(id).await.unwrap().state,
        InstanceState::Stopping
    );
    wait_for("stopped", Duration::from_secs(10), || async move {
        let s = client.get_instance(id).await.unwrap().unwrap().state;
        (s == InstanceState::Stopped).then_some(())
    })
    .await;
}

#[tokio::test]
async fn terminated_instances_are_purged_after_retention() {
    let mut config = Config::for_tests();
    config.terminated_retention = Duration::from_millis(100);
    let c = spawn_with(config).await;
    let i = c.instance("short-lived", "zone-a").await;
    c.client.terminate_instance(i.id.as_str()).await.unwrap();
    let client = &c.client;
    let id = i.id.as_str();
    wait_for("purge", Duration::from_secs(10), || async move {
        client
            .get_instance(id)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
}

#[tokio::test]
async fn list_filters_and_pages() {
    let c = spawn().await;
    for n in 0..12 {
        let zone = ["zone-a", "zone-b", "zone-c"][n % 3];
        let mut tags = Tags::new();
        tags.insert(
            "parity".into(),
            if n % 2 == 0 { "even" } else { "odd" }.into(),
        );
        let req = CreateInstanceRequest {
            tags,
            ..instance_req(&format!("n{n:02}"), zone)
        };
        c.client.create_instance(&req).await.unwrap();
    }
    let stopped = c
        .client
        .list_instances(
            &InstanceFilter {
                name: Some("n03".into()),
                ..Default::default()
            },
            &PageRequest::default(),
        )
        .await
        .unwrap();
    c.client
        .stop_instance(stopped.items[0].id.as_str())
        .await
        .unwrap();

    let all = c
        .client
        .list_all_instances(&InstanceFilter::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 12);
    let names: Vec<_> = all.iter().map(|i| i.name.as_str()).collect();
    assert_eq!(names[0], "n00");
    assert_eq!(names[11], "n11");

    let zone_b = c
        .client
        .list_all_instances(&InstanceFilter {
            zone: Some("zone-b".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(zone_b.len(), 4);
    assert!(zone_b.iter().all(|i| i.zone == "zone-b"));
    let st = c
        .client
        .list_all_instances(&InstanceFilter {
            state: Some(InstanceState::Stopped),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(
        st.iter().map(|i| i.name.as_str()).collect::<Vec<_>>(),
        ["n03"]
    );
    let odd = c
        .client
        .list_all_instances(&InstanceFilter {
            tag: Some(("parity".into(), "odd".into())),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(odd.len(), 6);

    // Walk page by page with a small page size: every item exactly once, in order.
    let mut seen = Vec::new();
    let mut page = PageRequest {
        page_size: Some(5),
        page_token: None,
    };
    let mut pages = 0;
    loop {
        let p = c
            .client
            .list_instances(&InstanceFilter::default(), &page)
            .await
            .unwrap();
        pages += 1;
        assert!(p.items.len() <= 5);
        seen.extend(p.items.into_iter().map(|i| i.name));
        match p.next_page_token {
            Some(t) => page.page_token = Some(t),
            None => break,
        }
    }
    assert_eq!(pages, 3);
    assert_eq!(seen, names);
}

#[tokio::test]
async fn tag_updates_honour_if_match() {
    let c = spawn().await;
    let i = c.instance("tagged", "zone-a").await;
    let mut tags = Tags::new();
    tags.insert("team".into(), "net".into());
    let updated = c
        .client
        .update_instance_tags(i.id.as_str(), tags.clone(), Some(&i.etag))
        .await
        .unwrap();
    assert_eq!(updated.tags, tags);
    assert_ne!(updated.etag, i.etag);
    // The old etag is stale now.
    let e = c
        .client
        .update_instance_tags(i.id.as_str(), Tags::new(), Some(&i.etag))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Some(ErrorCode::PreconditionFailed));
    assert_eq!(e.status().unwrap().as_u16(), 412);
    // Deleting with a stale etag fails too; with the current one it works.
    let resp = c
        .http
        .delete(c.url(&format!("/v1/instances/{}", i.id)))
        .header("if-match", "\"1\"")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 412);
    let resp = c
        .http
        .delete(c.url(&format!("/v1/instances/{}", i.id)))
        .header("if-match", format!("\"{}\"", updated.etag))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 204);
}

#[tokio::test]
async fn malformed_ids_are_bad_requests_and_unknown_ids_not_found() {
    let c = spawn().await;
    let (status, headers, body) = c.get_json("/v1/instances/not-an-id").await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    let (status, headers, body) = c.get_json("/v1/instances/i-0000000000000000").await;
    assert_error(status, &headers, &body, 404, "NOT_FOUND");
    assert!(
        c.client
            .get_instance("i-0000000000000000")
            .await
            .unwrap()
            .is_none()
    );
}

/// `ids` lists just those instances (terminated ones too; an unknown ID is left out), pages
/// through them with the same guarantees, and refuses an empty ID or more than the limit.
#[tokio::test]
async fn the_ids_filter_lists_just_those_instances() {
    let c = spawn().await;
    let mut made = Vec::new();
    for n in 0..5 {
        made.push(c.instance(&format!("id{n}"), "zone-a").await);
    }
    c.client
        .terminate_instance(made[3].id.as_str())
        .await
        .unwrap();
    let wanted = [&made[1], &made[3], &made[4]];
    let mut ids: Vec<String> = wanted.iter().map(|i| i.id.to_string()).collect();
    ids.push("i-0000000000000000".into());
    let filter = InstanceFilter {
        ids: ids.clone(),
        ..Default::default()
    };
    let names = |items: &[cloud_api::Instance]| -> Vec<String> {
        items.iter().map(|i| i.name.clone()).collect()
    };
    let all = c.client.list_all_instances(&filter).await.unwrap();
    assert_eq!(names(&all), ["id1", "id3", "id4"]);
    assert_eq!(all[1].state, InstanceState::Terminated);
    // Two pages of two and one, each item once.
    let first = c
        .client
        .list_instances(
            &filter,
            &PageRequest {
                page_size: Some(2),
                page_token: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&first.items), ["id1", "id3"]);
    let second = c
        .client
        .list_instances(
            &filter,
            &PageRequest {
                page_size: Some(2),
                page_token: first.next_page_token.clone(),
            },
        )
        .await
        .unwrap();
    assert_eq!(names(&second.items), ["id4"]);
    assert_eq!(second.next_page_token, None);
    // The token belongs to this filter.
    let e = c
        .client
        .list_instances(
            &InstanceFilter::default(),
            &PageRequest {
                page_size: Some(2),
                page_token: first.next_page_token,
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 400);

    let (status, headers, body) = c
        .get_json(&format!("/v1/instances?ids={},,{}", ids[0], ids[1]))
        .await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    let too_many: Vec<String> = (0..=cloud_api::MAX_LIST_IDS)
        .map(|n| format!("i-{n:016x}"))
        .collect();
    let (status, headers, body) = c
        .get_json(&format!("/v1/instances?ids={}", too_many.join(",")))
        .await;
    assert_error(status, &headers, &body, 400, "INVALID_ARGUMENT");
    let at_most: Vec<String> = too_many[1..].to_vec();
    let (status, _, body) = c
        .get_json(&format!("/v1/instances?ids={}", at_most.join(",")))
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["items"], serde_json::json!([]));
}
