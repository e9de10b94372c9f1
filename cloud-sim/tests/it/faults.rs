//! Fault injection through the admin API, and how the client copes with it.

use std::time::{Duration, Instant};

use cloud_api::{CreateFaultRequest, ErrorCode, FaultEffect};
use cloud_client::{Client, RetryPolicy};
use cloud_sim::Config;

use crate::common::{decode, instance_req, spawn, spawn_with};

fn rule(effect: FaultEffect) -> CreateFaultRequest {
    CreateFaultRequest {
        method: None,
        path_prefix: None,
        zone: None,
        effect,
        probability: 1.0,
        count: None,
        ttl_seconds: None,
    }
}

#[tokio::test]
async fn injected_errors_carry_status_code_and_retry_after() {
    let c = spawn().await;
    let mut r = rule(FaultEffect::Error {
        status: 503,
        retry_after_seconds: Some(1),
    });
    r.method = Some("GET".into());
    r.path_prefix = Some("/v1/zones".into());
    r.count = Some(1);
    let added = c.client.add_fault(&r).await.unwrap();
    assert_eq!(added.remaining, Some(1));
    let resp = c.http.get(c.url("/v1/zones")).send().await.unwrap();
    assert_eq!(resp.headers()["retry-after"], "1");
    let (status, _, body) = decode(resp).await;
    assert_eq!(status, 503);
    assert_eq!(body["error"]["code"], "UNAVAILABLE");
    // Count exhausted: the rule is gone and requests succeed.
    assert_eq!(
        c.http
            .get(c.url("/v1/zones"))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16(),
        200
    );
    assert!(c.client.list_faults().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_client_retries_and_honours_retry_after() {
    let c = spawn().await;
    let mut r = rule(FaultEffect::Error {
        status: 503,
        retry_after_seconds: Some(1),
    });
    r.path_prefix = Some("/v1/instance-types".into());
    r.count = Some(2);
    c.client.add_fault(&r).await.unwrap();
    let retrying = Client::builder(c.server.base_url()).build().unwrap();
    let started = Instant::now();
    let types = retrying.instance_types().await.unwrap();
    assert!(!types.is_empty());
    // Two refusals, each asking for 1 s.
    assert!(
        started.elapsed() >= Duration::from_secs(2),
        "waited only {:?}",
        started.elapsed()
    );

    // Retries are bounded: a permanent 500 fails after max_retries + 1 attempts.
    let mut r = rule(FaultEffect::Error {
        status: 500,
        retry_after_seconds: None,
    });
    r.path_prefix = Some("/v1/zones".into());
    let fault = c.client.add_fault(&r).await.unwrap();
    let quick = Client::builder(c.server.base_url())
        .retry(RetryPolicy {
            max_retries: 2,
            base_backoff: Duration::from_millis(1),
            ..RetryPolicy::default()
        })
        .build()
        .unwrap();
    let e = quick.zones().await.unwrap_err();
    assert_eq!(e.status().unwrap().as_u16(), 500);
    let hits = c
        .client
        .list_faults()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.id == fault.id)
        .unwrap()
        .hits;
    assert_eq!(hits, 3);
    // Client errors are never retried.
    c.client.clear_faults().await.unwrap();
    let mut r = rule(FaultEffect::Error {
        status: 409,
        retry_after_seconds: None,
    });
    r.path_prefix = Some("/v1/zones".into());
    let fault = c.client.add_fault(&r).await.unwrap();
    assert_eq!(
        quick.zones().await.unwrap_err().code(),
        Some(ErrorCode::Conflict)
    );
    let hits = c
        .client
        .list_faults()
        .await
        .unwrap()
        .into_iter()
        .find(|f| f.id == fault.id)
        .unwrap()
        .hits;
    assert_eq!(hits, 1);
}

#[tokio::test]
async fn throttling_gives_429_with_retry_after() {
    let c = spawn().await;
    let mut r = rule(FaultEffect::Throttle {
        rate_per_second: 0.5,
        burst: 2,
    });
    r.path_prefix = Some("/v1/zones".into());
    c.client.add_fault(&r).await.unwrap();
    for _ in 0..2 {
        assert_eq!(
            c.http
                .get(c.url("/v1/zones"))
                .send()
                .await
                .unwrap()
                .status()
                .as_u16(),
            200
        );
    }
    let resp = c.http.get(c.url("/v1/zones")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let after: u64 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&after), "retry-after {after}");
    let (_, _, body) = decode(resp).await;
    assert_eq!(body["error"]["code"], "THROTTLED");
}

#[tokio::test]
async fn global_throttle_flag_limits_each_project() {
    let mut config = Config::for_tests();
    config.throttle = Some((0.1, 3));
    let c = spawn_with(config).await;
    let statuses: Vec<u16> = {
        let mut v = Vec::new();
        for _ in 0..5 {
            v.push(
                c.http
                    .get(c.url("/v1/zones"))
                    .send()
                    .await
                    .unwrap()
                    .status()
                    .as_u16(),
            );
        }
        v
    };
    assert_eq!(statuses, [200, 200, 200, 429, 429]);
}

#[tokio::test]
async fn latency_and_timeouts() {
    let c = spawn().await;
    let mut r = rule(FaultEffect::Latency { millis: 1500 });
    r.path_prefix = Some("/v1/regions".into());
    c.client.add_fault(&r).await.unwrap();
    let impatient = Client::builder(c.server.base_url())
        .timeout(Duration::from_millis(200))
        .retry(RetryPolicy::none())
        .build()
        .unwrap();
    let e = impatient.region().await.unwrap_err();
    assert!(matches!(e, cloud_client::Error::Timeout { .. }), "{e:?}");
    let started = Instant::now();
    c.client.region().await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(1500));
}

#[tokio::test]
async fn zonal_faults_hit_only_that_zone() {
    let c = spawn().await;
    let a = c.instance("a", "zone-a").await;
    let b = c.instance("b", "zone-b").await;
    let mut r = rule(FaultEffect::Error {
        status: 500,
        retry_after_seconds: None,
    });
    r.zone = Some("zone-b".into());
    c.client.add_fault(&r).await.unwrap();
    assert!(c.client.get_instance(a.id.as_str()).await.is_ok());
    assert_eq!(
        c.client
            .get_instance(b.id.as_str())
            .await
            .unwrap_err()
            .status()
            .unwrap()
            .as_u16(),
        500
    );
    assert_eq!(
        c.client
            .create_instance(&instance_req("b2", "zone-b"))
            .await
            .unwrap_err()
            .status()
            .unwrap()
            .as_u16(),
        500
    );
    c.client
        .create_instance(&instance_req("a2", "zone-a"))
        .await
        .unwrap();
    // The admin API is never faulted, so a test can always clean up.
    c.client.clear_faults().await.unwrap();
    assert!(c.client.get_instance(b.id.as_str()).await.is_ok());
}

/// A batch create is one request: a zone's rule affects it once, however many of its
/// instances are in that zone, and a failure fails the whole batch.
#[tokio::test]
async fn a_batch_create_meets_each_zones_faults_once() {
    let c = spawn().await;
    let mut slow = rule(FaultEffect::Latency { millis: 1 });
    slow.zone = Some("zone-a".into());
    slow.count = Some(3);
    c.client.add_fault(&slow).await.unwrap();
    let batch: Vec<_> = (0..5)
        .map(|i| instance_req(&format!("a{i}"), "zone-a"))
        .chain([instance_req("b0", "zone-b")])
        .collect();
    c.client.batch_create_instances(&batch).await.unwrap();
    let rules = c.client.list_faults().await.unwrap();
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert_eq!(rules[0].remaining, Some(2), "the batch was affected once");

    let mut failing = rule(FaultEffect::Error {
        status: 503,
        retry_after_seconds: None,
    });
    failing.zone = Some("zone-b".into());
    c.client.add_fault(&failing).await.unwrap();
    let batch = [instance_req("a9", "zone-a"), instance_req("b9", "zone-b")];
    let err = c.client.batch_create_instances(&batch).await.unwrap_err();
    assert_eq!(err.status().unwrap().as_u16(), 503, "{err}");
    c.client.clear_faults().await.unwrap();
    let names: Vec<String> = c
        .client
        .list_all_instances(&Default::default())
        .await
        .unwrap()
        .into_iter()
        .map(|x| x.name)
        .collect();
    assert!(
        !names.contains(&"a9".to_owned()),
        "the failed batch made nothing: {names:?}"
    );
}

#[tokio::test]
async fn bad_fault_rules_are_rejected() {
    let c = spawn().await;
    let mut r = rule(FaultEffect::Error {
        status: 200,
        retry_after_seconds: None,
    });
    r.zone = None;
    let e = c.client.add_fault(&r).await.unwrap_err();
    assert_eq!(e.field(), Some("effect.status"));
    let (status, _, body) = c
        .post_json(
            "/v1/admin/faults",
            &serde_json::json!({"effect": {"type": "explode"}}),
        )
        .await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["field"], "effect.type");
    assert!(!c.client.delete_fault("fault-999").await.unwrap());
    let kept = c
        .client
        .add_fault(&rule(FaultEffect::Latency { millis: 1 }))
        .await
        .unwrap();
    assert!(c.client.delete_fault(&kept.id).await.unwrap());
    assert!(c.client.list_faults().await.unwrap().is_empty());
}

/// A latency rule on one zone delays that zone's writes only: the delay happens before the write
/// transaction begins, so it never holds the write connection every zone shares.
#[tokio::test]
async fn a_slow_zone_does_not_hold_up_writes_in_another_zone() {
    let c = spawn().await;
    let a = c.instance("a", "zone-a").await;
    let b = c.instance("b", "zone-b").await;
    let mut r = rule(FaultEffect::Latency { millis: 20_000 });
    r.zone = Some("zone-a".into());
    r.method = Some("PATCH".into());
    c.client.add_fault(&r).await.unwrap();
    let tags: cloud_api::Tags = [("slow".to_owned(), "yes".to_owned())].into();
    let client = c.client.clone();
    let (a_id, slow_tags) = (a.id.to_string(), tags.clone());
    let slow =
        tokio::spawn(async move { client.update_instance_tags(&a_id, slow_tags, None).await });
    // Wait until zone-a's write is inside its delay (the rule has been hit).
    let deadline = Instant::now() + Duration::from_secs(10);
    while c.client.list_faults().await.unwrap()[0].hits == 0 {
        assert!(
            Instant::now() < deadline,
            "the zone-a write never reached its fault"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // zone-b's write completes while zone-a's is still asleep.
    let updated = c
        .client
        .update_instance_tags(b.id.as_str(), tags.clone(), None)
        .await
        .unwrap();
    assert_eq!(updated.tags, tags);
    assert!(
        !slow.is_finished(),
        "zone-a's write finished first: the delay was not applied"
    );
    slow.abort();
}
