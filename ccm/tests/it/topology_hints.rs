//! Control-plane tier: the real kube-controller-manager's EndpointSlice controller hints a
//! `topology-mode: Auto` Service exactly as `crates/topology` (upstream's algorithm, ported)
//! predicts from the same Nodes and endpoints: the same hints per zone when it enables them,
//! and the same reason when it removes them.

use std::collections::BTreeMap;
use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Tags};
use k8s_openapi::api::core::v1::{Event, Node, Pod, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::Api;
use kube::api::{DeleteParams, ListParams, PostParams};
use kubelet_sim::{KubeletConfig, Kubelets};
use serde_json::json;
use topology::auto::{SliceInfo, TopologyCache};

use crate::common::{initialized, wait_for};

const T: Duration = Duration::from_secs(60);

/// Ready endpoints of `web`'s slices, and the zone each is hinted for.
async fn ready_endpoints(
    slices: &Api<EndpointSlice>,
) -> Option<(Vec<EndpointSlice>, Vec<(String, Option<String>)>)> {
    let lp = ListParams::default().labels("kubernetes.io/service-name=web");
    let items = slices.list(&lp).await.ok()?.items;
    let eps = items
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| topology::endpoint_ready(e))
        .map(|e| {
            let hint = e
                .hints
                .as_ref()
                .and_then(|h| h.for_zones.as_ref())
                .and_then(|z| z.first())
                .map(|z| z.name.clone());
            (e.zone.clone().unwrap_or_default(), hint)
        })
        .collect();
    Some((items, eps))
}

/// What crates/topology makes of the same Nodes and endpoints: hints per zone, or the reason.
fn predicted(nodes: &[Node], slices: &[EndpointSlice]) -> Result<BTreeMap<String, usize>, String> {
    let mut cache = TopologyCache::new();
    cache.set_nodes(nodes);
    let mut fresh: Vec<EndpointSlice> = slices.to_vec();
    for s in &mut fresh {
        for e in &mut s.endpoints {
            e.hints = None;
        }
    }
    let mut si = SliceInfo {
        service_key: "default/web".into(),
        address_type: "IPv4".into(),
        to_create: fresh,
        ..SliceInfo::default()
    };
    let events = cache.add_hints(&mut si);
    if let Some(e) = events.iter().find(|e| e.warning) {
        return Err(e.message.clone());
    }
    Ok(cache.hints_of("default/web").unwrap()["IPv4"].clone())
}

fn counts(eps: &[(String, Option<String>)]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for (_, hint) in eps {
        if let Some(h) = hint {
            *out.entry(h.clone()).or_default() += 1;
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_hints_match_kube_controller_manager_on_the_real_control_plane() {
    let Some(bins) = control_plane::binaries_for_test() else {
        return;
    };
    let cp = control_plane::ControlPlane::start_with(bins, control_plane::Options::for_tests())
        .await
        .unwrap();
    let admin = cp.client().await.unwrap();
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
        .await
        .unwrap();
    let cc = cloud_client::Client::new(cloud.base_url()).unwrap();
    // CPU 2:2:1 over the zones (equal instances), so the ratios are 0.4 / 0.4 / 0.2.
    let mut names = Vec::new();
    for (i, zone) in ["zone-a", "zone-a", "zone-b", "zone-b", "zone-c"]
        .iter()
        .enumerate()
    {
        let inst = cc
            .create_instance(&CreateInstanceRequest {
                name: format!("node-{i}"),
                zone: (*zone).into(),
                instance_type: "sim.small".into(),
                tags: Tags::new(),
                private_ip: None,
            })
            .await
            .unwrap();
        names.push(inst.name);
    }
    let kubelets = Kubelets::start(
        KubeletConfig {
            status_interval: Duration::from_millis(500),
            pod_start_delay: Duration::from_millis(100),
            pod_stop_delay: Duration::from_millis(100),
            ..KubeletConfig::with_controller_manager(&cloud.base_url())
        },
        admin.clone(),
    )
    .unwrap();
    // The ccm's node controller gives the Nodes their zones.
    let provider: std::sync::Arc<dyn ccm::cloud::CloudProvider> =
        std::sync::Arc::new(ccm::cloud::simcloud::SimCloud::new(cc.clone(), None));
    let mut opts = ccm::Options::for_tests("topology");
    opts.controllers = [ccm::controllers::ControllerName::CloudNode].into();
    let stop = ccm::CancellationToken::new();
    let rx = stop.clone();
    let mut tasks = ccm::start_controllers(
        admin.clone(),
        provider,
        std::sync::Arc::new(ccm::metrics::Metrics::new()),
        &opts,
        &rx,
    );
    let nodes: Api<Node> = Api::all(admin.clone());
    let ready_nodes = wait_for(
        "five initialised, Ready Nodes with pod CIDRs",
        T,
        || async {
            let list = nodes.list(&ListParams::default()).await.ok()?.items;
            let ok = list.iter().filter(|n| {
                initialized(n)
                    && n.spec.as_ref().and_then(|s| s.pod_cidr.as_ref()).is_some()
                    && n.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|c| c.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
            });
            (ok.count() == 5).then_some(list)
        },
    )
    .await;

    // Ten pods, 4 / 3 / 3 over the zones, bound to their nodes.
    let pods: Api<Pod> = Api::namespaced(admin.clone(), "default");
    let placement = [0, 0, 1, 1, 2, 2, 3, 4, 4, 4];
    for (i, node) in placement.iter().enumerate() {
        let pod: Pod = serde_json::from_value(json!({
            "metadata": {"name": format!("web-{i}"), "labels": {"app": "web"}},
            "spec": {"nodeName": names[*node], "terminationGracePeriodSeconds": 0,
                "containers": [{"name": "app", "image": "registry.k8s.io/pause:3.10"}]},
        }))
        .unwrap();
        pods.create(&PostParams::default(), &pod).await.unwrap();
    }
    let svc: Service = serde_json::from_value(json!({
        "metadata": {"name": "web", "annotations": {topology::ANNOTATION_TOPOLOGY_MODE: "Auto"}},
        "spec": {"selector": {"app": "web"}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    Api::<Service>::namespaced(admin.clone(), "default")
        .create(&PostParams::default(), &svc)
        .await
        .unwrap();

    // kube-controller-manager hints every ready endpoint: as crates/topology does.
    let slices: Api<EndpointSlice> = Api::namespaced(admin.clone(), "default");
    let (items, eps) = wait_for("ten ready endpoints, all hinted", T, || async {
        let (items, eps) = ready_endpoints(&slices).await?;
        (eps.len() == 10 && eps.iter().all(|(_, h)| h.is_some())).then_some((items, eps))
    })
    .await;
    let real = counts(&eps);
    let ours = predicted(&ready_nodes, &items).expect("crates/topology enables the hints too");
    assert_eq!(
        real, ours,
        "kube-controller-manager {real:?}, crates/topology {ours:?}"
    );
    assert_eq!(
        ours,
        BTreeMap::from([
            ("zone-a".into(), 4),
            ("zone-b".into(), 4),
            ("zone-c".into(), 2)
        ]),
        "one zone-c endpoint serves zone-b"
    );
    // What `simctl topology explain` shows for this Service on this cluster: the hints the slices
    // carry (kube-controller-manager's) are the ones upstream's algorithm gives, zone by zone.
    let services: Api<Service> = Api::namespaced(admin.clone(), "default");
    let explained = topology::explain::explain(
        &services.get("web").await.unwrap(),
        &nodes.list(&ListParams::default()).await.unwrap().items,
        &items,
    );
    assert_eq!(
        (explained.mode.as_str(), explained.auto_disabled.as_deref()),
        ("Auto", None)
    );
    for z in &explained.zones {
        assert_eq!(Some(z.hinted_now), z.hinted_auto, "{explained:?}");
    }
    let events: Api<Event> = Api::namespaced(admin.clone(), "default");
    wait_for("TopologyAwareHintsEnabled", T, || async {
        let lp = ListParams::default()
            .fields("involvedObject.name=web,reason=TopologyAwareHintsEnabled");
        events.list(&lp).await.ok()?.items.into_iter().next()
    })
    .await;

    // Three fewer (2 / 2 / 3): the minimums no longer fit; both remove the hints, same reason.
    for i in [0, 1, 4] {
        pods.delete(&format!("web-{i}"), &DeleteParams::default())
            .await
            .unwrap();
    }
    let (items, _) = wait_for("seven ready endpoints, none hinted", T, || async {
        let (items, eps) = ready_endpoints(&slices).await?;
        (eps.len() == 7 && eps.iter().all(|(_, h)| h.is_none())).then_some((items, eps))
    })
    .await;
    let reason = predicted(&ready_nodes, &items).expect_err("crates/topology removes them too");
    let explained = topology::explain::explain(
        &services.get("web").await.unwrap(),
        &nodes.list(&ListParams::default()).await.unwrap().items,
        &items,
    );
    assert_eq!(explained.auto_disabled.as_deref(), Some(reason.as_str()));
    assert!(
        explained.zones.iter().all(|z| z.hinted_now == 0),
        "{explained:?}"
    );
    // (Its earlier Disabled events are from before the pods were ready: "0 endpoints".)
    wait_for(
        &format!("TopologyAwareHintsDisabled: {reason}"),
        T,
        || async {
            let lp = ListParams::default()
                .fields("involvedObject.name=web,reason=TopologyAwareHintsDisabled");
            events
                .list(&lp)
                .await
                .ok()?
                .items
                .into_iter()
                .find(|e| e.message.as_deref() == Some(reason.as_str()))
        },
    )
    .await;
    assert!(
        reason.starts_with(topology::auto::MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD),
        "{reason}"
    );

    stop.cancel();
    while tasks.join_next().await.is_some() {}
    kubelets.stop().await;
    cloud.shutdown().await.unwrap();
}
