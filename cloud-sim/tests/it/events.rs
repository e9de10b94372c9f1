use std::time::{Duration, Instant};

use cloud_api::{EventKind, ResourceKind};

use crate::common::{spawn, wait_for};

#[tokio::test]
async fn every_change_is_logged_in_order() {
    let c = spawn().await;
    let i = c.instance("e1", "zone-a").await;
    c.client.stop_instance(i.id.as_str()).await.unwrap();
    c.client
        .set_zone_state("zone-a", cloud_api::ZoneState::Impaired)
        .await
        .unwrap();
    c.client.delete_instance(i.id.as_str()).await.unwrap();
    let page = c.client.events(0, 100, Duration::ZERO).await.unwrap();
    let seen: Vec<_> = page
        .events
        .iter()
        .map(|e| (e.resource_kind, e.kind, e.state.clone()))
        .collect();
    assert_eq!(
        seen,
        [
            (
                ResourceKind::Instance,
                EventKind::Created,
                Some("running".into())
            ),
            (
                ResourceKind::Instance,
                EventKind::StateChanged,
                Some("stopped".into())
            ),
            (
                ResourceKind::Zone,
                EventKind::StateChanged,
                Some("impaired".into())
            ),
            (
                ResourceKind::Instance,
                EventKind::StateChanged,
                Some("terminated".into())
            ),
            (
                ResourceKind::Instance,
                EventKind::Deleted,
                Some("terminated".into())
            ),
        ]
    );
    assert!(page.events.windows(2).all(|w| w[0].seq < w[1].seq));
    assert_eq!(page.last_seq, page.events.last().unwrap().seq);
    assert_eq!(page.events[0].zone.as_deref(), Some("zone-a"));
    // Continuing from the last sequence number returns nothing new.
    let rest = c
        .client
        .events(page.last_seq, 100, Duration::ZERO)
        .await
        .unwrap();
    assert!(rest.events.is_empty());
    assert_eq!(rest.last_seq, page.last_seq);
    // limit caps the page.
    assert_eq!(
        c.client
            .events(0, 2, Duration::ZERO)
            .await
            .unwrap()
            .events
            .len(),
        2
    );
}

#[tokio::test]
async fn long_poll_returns_as_soon_as_an_event_arrives() {
    let c = spawn().await;
    let start = c
        .client
        .events(0, 100, Duration::ZERO)
        .await
        .unwrap()
        .last_seq;
    let client = c.client.clone();
    let waiter = tokio::spawn(async move {
        client
            .events(start, 100, Duration::from_secs(30))
            .await
            .unwrap()
    });
    // Once the poll is parked waiting (the server counts it), make a change.
    let cloud = c.server.state().cloud.clone();
    wait_for("the poll waits", Duration::from_secs(10), || {
        let cloud = cloud.clone();
        async move { (cloud.event_polls_waiting() == 1).then_some(()) }
    })
    .await;
    let i = c.instance("wake", "zone-b").await;
    let page = waiter.await.unwrap();
    assert_eq!(page.events.len(), 1);
    // Woken by the event: a poll that ran to its deadline would have returned no events.
    assert_eq!(page.events[0].resource_id, i.id.as_str());
    assert_eq!(c.server.state().cloud.event_polls_waiting(), 0);

    // With nothing happening, the poll returns empty at its deadline.
    let t = Instant::now();
    let page = c
        .client
        .events(page.last_seq, 100, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(page.events.is_empty());
    assert!(t.elapsed() >= Duration::from_secs(1));
}

/// A long poll may outlast the client's timeout by its wait: kubelet-sim follows the log with
/// 25 s polls on a 10 s client, and timed out (with a warning each time) whenever the cloud was
/// quiet for 10 s.
#[tokio::test]
async fn a_long_poll_longer_than_the_clients_timeout_is_not_a_timeout() {
    let c = spawn().await;
    let client = cloud_client::Client::builder(c.server.base_url())
        .timeout(Duration::from_millis(300))
        .build()
        .unwrap();
    let head = client.event_head().await.unwrap();
    let t = Instant::now();
    let page = client
        .events(head, 100, Duration::from_secs(1))
        .await
        .expect("the poll is answered when its wait ends, within the client's timeout after it");
    assert!(page.events.is_empty());
    assert!(t.elapsed() >= Duration::from_secs(1));
}

#[tokio::test]
async fn only_passes_that_change_something_wake_event_waiters() {
    let mut config = cloud_sim::Config::for_tests();
    config.instance_boot_delay = Duration::from_millis(50);
    let c = crate::common::spawn_with(config).await;
    let cloud = &c.server.state().cloud;

    // Nothing due: the pass commits nothing and wakes no one (it used to, so the worker woke
    // itself and spun, taking the data plane's reconcile loop with it).
    let idle = cloud.changes().notified();
    tokio::pin!(idle);
    idle.as_mut().enable();
    assert_eq!(cloud.settle_due().await.unwrap(), 0);
    assert!(
        tokio::time::timeout(Duration::ZERO, &mut idle)
            .await
            .is_err(),
        "an empty worker pass woke the event waiters"
    );

    // A pending instance falling due is settled by the worker, and that does wake them.
    c.instance("web-1", "zone-a").await;
    let settled = cloud.changes().notified();
    tokio::pin!(settled);
    settled.as_mut().enable();
    tokio::time::timeout(Duration::from_secs(10), settled)
        .await
        .expect("the worker's settling pass wakes event waiters");
}
