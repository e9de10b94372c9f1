use std::time::{Duration, Instant};

use cloud_api::{EventKind, ResourceKind};

use crate::common::spawn;

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
        let t = Instant::now();
        let page = client
            .events(start, 100, Duration::from_secs(30))
            .await
            .unwrap();
        (page, t.elapsed())
    });
    // Give the poll time to start waiting, then make a change.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let i = c.instance("wake", "zone-b").await;
    let (page, waited) = waiter.await.unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].resource_id, i.id.as_str());
    assert!(waited < Duration::from_secs(10), "poll took {waited:?}");

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
