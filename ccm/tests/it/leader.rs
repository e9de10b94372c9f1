//! Lease-based leader election against kube-sim: one holder at a time, takeover after expiry.

use std::time::Duration;

use ccm::leader::{LeaderConfig, LeaderElector};
use ccm::names;
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;

use crate::common::client_for;

fn cfg(identity: &str) -> LeaderConfig {
    LeaderConfig {
        namespace: names::LEASE_NAMESPACE.into(),
        name: names::LEASE_NAME.into(),
        identity: identity.into(),
        lease_duration: Duration::from_secs(2),
        renew_deadline: Duration::from_millis(1500),
        retry_period: Duration::from_millis(200),
    }
}

/// The Lease's holder identity and transition count.
async fn holder(leases: &Api<Lease>) -> (Option<String>, Option<i32>) {
    let spec = leases.get(names::LEASE_NAME).await.unwrap().spec.unwrap();
    (spec.holder_identity, spec.lease_transitions)
}

/// On tokio's paused clock: the elector measures expiry on its own (tokio) clock, so waits are
/// exact and instant, and "at once" below is a statement about virtual time, not a race.
#[tokio::test(start_paused = true)]
async fn one_holder_at_a_time_and_takeover_after_expiry() {
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let client = client_for(&kube.url());
    let mut a = LeaderElector::new(client.clone(), cfg("a"));
    let mut b = LeaderElector::new(client.clone(), cfg("b"));
    assert!(
        a.try_acquire_or_renew().await.unwrap(),
        "a creates the lease"
    );
    assert!(
        !b.try_acquire_or_renew().await.unwrap(),
        "b sees a valid lease"
    );
    assert!(a.try_acquire_or_renew().await.unwrap(), "a renews");
    let leases: Api<Lease> = Api::namespaced(client, names::LEASE_NAMESPACE);
    assert_eq!(holder(&leases).await, (Some("a".into()), Some(0)));
    // a stops renewing; b must wait a full lease duration (on its own clock) before taking over.
    let started = tokio::time::Instant::now();
    b.acquire().await;
    assert!(
        started.elapsed() >= cfg("b").lease_duration,
        "took over after {:?}",
        started.elapsed()
    );
    assert_eq!(holder(&leases).await, (Some("b".into()), Some(1)));
    // a comes back: it is not the leader, and holding ends at once.
    assert!(!a.try_acquire_or_renew().await.unwrap());
    tokio::time::timeout(Duration::from_secs(5), a.hold(|| {}))
        .await
        .expect("a notices it lost the lease");
    // b releases on shutdown; a then acquires without waiting for expiry.
    b.release().await;
    let started = tokio::time::Instant::now();
    a.acquire().await;
    assert!(
        started.elapsed() <= cfg("a").retry_period,
        "release lets a take over at its next try ({:?})",
        started.elapsed()
    );
    kube.shutdown().await;
}

#[tokio::test]
async fn racing_candidates_never_both_win() {
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let client = client_for(&kube.url());
    let mut handles = Vec::new();
    for i in 0..5 {
        let client = client.clone();
        handles.push(tokio::spawn(async move {
            LeaderElector::new(client, cfg(&format!("c{i}")))
                .try_acquire_or_renew()
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for h in handles {
        winners += usize::from(h.await.unwrap());
    }
    assert_eq!(winners, 1);
    kube.shutdown().await;
}
