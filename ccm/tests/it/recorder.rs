//! The event recorder against an API server: repeats become a series, distinct events stay apart.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::Event as K8sEvent;
use kube::Api;
use kube::api::ListParams;
use kube::runtime::events::{Event, EventType};

use crate::common::client_for;

fn event(reason: &str) -> Event {
    Event {
        type_: EventType::Warning,
        reason: reason.into(),
        note: Some(format!("{reason} happened")),
        action: reason.into(),
        secondary: None,
    }
}

#[tokio::test]
async fn repeats_become_a_series_and_distinct_events_stay_apart() {
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    check(client_for(&kube.url())).await;
    kube.shutdown().await;
}

/// The same against kube-apiserver (its `events.k8s.io/v1` validation and merge patches).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeats_become_a_series_on_the_real_control_plane() {
    let Some(bins) = control_plane::binaries_for_test() else {
        return;
    };
    let cp = control_plane::ControlPlane::start_with(bins, control_plane::Options::for_tests())
        .await
        .unwrap();
    check(cp.client().await.unwrap()).await;
}

async fn check(client: kube::Client) {
    let recorder = ccm::recorder(&client, "test-controller", "test-1");
    let node = |name: &str| ObjectReference {
        api_version: Some("v1".into()),
        kind: Some("Node".into()),
        name: Some(name.into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    };
    for _ in 0..3 {
        recorder
            .publish(&event("Flaky"), &node("n1"))
            .await
            .unwrap();
    }
    recorder
        .publish(&event("Other"), &node("n1"))
        .await
        .unwrap();
    recorder
        .publish(&event("Flaky"), &node("n2"))
        .await
        .unwrap();

    let events: Api<K8sEvent> = Api::namespaced(client, "default");
    let mut seen: Vec<(String, String, i32, String)> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        // Only ours: the API server publishes events of its own (ClusterIPNotAllocated, ...).
        .filter(|e| e.reporting_controller.as_deref() == Some("test-controller"))
        .map(|e| {
            (
                e.regarding.and_then(|r| r.name).unwrap_or_default(),
                e.reason.unwrap_or_default(),
                e.series.map_or(1, |s| s.count),
                e.reporting_controller.unwrap_or_default(),
            )
        })
        .collect();
    seen.sort();
    let c = "test-controller".to_owned();
    assert_eq!(
        seen,
        [
            ("n1".into(), "Flaky".into(), 3, c.clone()),
            ("n1".into(), "Other".into(), 1, c.clone()),
            ("n2".into(), "Flaky".into(), 1, c),
        ]
    );
}
