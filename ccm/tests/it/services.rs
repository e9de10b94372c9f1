//! The service controller: with the fake provider, and against cloud-sim.

use std::time::{Duration, Instant};

use ccm::cloud::fake::{FakeCloud, FakeLb};
use ccm::controllers::ControllerName;
use ccm::{Options, names};
use cloud_api::{CreateInstanceRequest, Tags};
use k8s_openapi::api::core::v1::{Event, Node, Service};
use kube::Api;
use kube::api::{DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kubelet_sim::{KubeletConfig, Kubelets};
use serde_json::json;

use crate::common::{T, client_for, lb_backends, start_with, wait_for};

fn svc_opts() -> Options {
    let mut o = Options::for_tests("test");
    o.controllers = [ControllerName::Service].into();
    o
}

fn lb_service(name: &str) -> Service {
    serde_json::from_value(json!({"metadata": {"name": name}, "spec": {"type": "LoadBalancer", "ports": [{"name": "http", "port": 80}]}})).unwrap()
}

fn ingress_ips(s: &Service) -> Vec<(String, String)> {
    s.status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|l| l.ingress.clone())
        .unwrap_or_default()
        .into_iter()
        .map(|i| (i.ip.unwrap_or_default(), i.ip_mode.unwrap_or_default()))
        .collect()
}

async fn reasons(client: &kube::Client, object: &str) -> Vec<String> {
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let mut list = events.list(&ListParams::default()).await.unwrap().items;
    list.sort_by_key(|e| {
        e.metadata
            .resource_version
            .as_deref()
            .and_then(|r| r.parse::<u64>().ok())
    });
    list.into_iter()
        .filter(|e| e.involved_object.name.as_deref() == Some(object))
        .filter_map(|e| e.reason)
        .collect()
}

fn has_finalizer(s: &Service) -> bool {
    ccm::service_plan::has_finalizer(s)
}

#[tokio::test]
async fn ensure_writes_finalizer_first_then_status_and_events() {
    let cloud = FakeCloud::new();
    // The first ensure fails: the finalizer must already be there.
    cloud.fail_next(1, "cloud unavailable");
    let h = start_with(cloud, svc_opts()).await;
    h.register("n1", json!({})).await;
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    svcs.create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    wait_for("first ensure failed", T, || async {
        (h.cloud.count_calls("ensure-lb") >= 1).then_some(())
    })
    .await;
    assert!(
        has_finalizer(&svcs.get("web").await.unwrap()),
        "finalizer before the first cloud call"
    );
    // The retry (after 5 s back-off) succeeds and writes the status with ipMode.
    let s = wait_for("status written", Duration::from_secs(30), || async {
        svcs.get("web")
            .await
            .ok()
            .filter(|s| !ingress_ips(s).is_empty())
    })
    .await;
    assert_eq!(
        ingress_ips(&s),
        [("127.64.1.2".to_owned(), "VIP".to_owned())]
    );
    assert_eq!(h.cloud.lbs()["default/web"].hosts, ["n1"]);
    let r = reasons(&h.client, "web").await;
    for want in [
        names::REASON_ENSURING_LB,
        names::REASON_SYNC_LB_FAILED,
        names::REASON_ENSURED_LB,
    ] {
        assert!(r.iter().any(|x| x == want), "missing {want} in {r:?}");
    }
    // No change, no cloud call: status writes and label changes do not re-ensure.
    let calls = h.cloud.count_calls("ensure-lb");
    let adds = h.metrics.queue(ccm::service_controller::QUEUE).adds();
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
    )
    .await
    .unwrap();
    // The controller has seen the label change and finished with it: no cloud call.
    h.handled_since(ccm::service_controller::QUEUE, adds).await;
    assert_eq!(h.cloud.count_calls("ensure-lb"), calls);
    // An annotation change does.
    svcs.patch(
        "web",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"annotations": {"a": "b"}}})),
    )
    .await
    .unwrap();
    wait_for("re-ensure", T, || async {
        (h.cloud.count_calls("ensure-lb") > calls).then_some(())
    })
    .await;
    h.stop().await;
}

#[tokio::test]
async fn deletion_and_type_change_clean_up() {
    let h = start_with(FakeCloud::new(), svc_opts()).await;
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    svcs.create(&PostParams::default(), &lb_service("gone"))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &lb_service("flip"))
        .await
        .unwrap();
    wait_for("both ensured", T, || async {
        (h.cloud.lbs().len() == 2).then_some(())
    })
    .await;
    wait_for("finalizers", T, || async {
        let a = svcs.get("gone").await.ok()?;
        let b = svcs.get("flip").await.ok()?;
        (has_finalizer(&a) && has_finalizer(&b) && !ingress_ips(&b).is_empty()).then_some(())
    })
    .await;
    svcs.delete("gone", &DeleteParams::default()).await.unwrap();
    wait_for("service deleted after cleanup", T, || async {
        svcs.get_opt("gone").await.ok()?.is_none().then_some(())
    })
    .await;
    assert!(!h.cloud.lbs().contains_key("default/gone"));
    let r = reasons(&h.client, "gone").await;
    assert!(
        r.contains(&names::REASON_DELETING_LB.to_owned())
            && r.contains(&names::REASON_DELETED_LB.to_owned()),
        "{r:?}"
    );
    svcs.patch(
        "flip",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
    )
    .await
    .unwrap();
    let s = wait_for("flip cleaned up", T, || async {
        svcs.get("flip").await.ok().filter(|s| !has_finalizer(s))
    })
    .await;
    assert!(ingress_ips(&s).is_empty(), "status cleared");
    assert!(!h.cloud.lbs().contains_key("default/flip"));
    h.stop().await;
}

#[tokio::test]
async fn other_load_balancer_classes_are_ignored() {
    let h = start_with(FakeCloud::new(), svc_opts()).await;
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    let mut s = lb_service("classy");
    s.spec.as_mut().unwrap().load_balancer_class = Some("example.com/other".into());
    svcs.create(&PostParams::default(), &s).await.unwrap();
    svcs.create(&PostParams::default(), &lb_service("plain"))
        .await
        .unwrap();
    wait_for("plain ensured", T, || async {
        h.cloud.lbs().contains_key("default/plain").then_some(())
    })
    .await;
    assert!(
        !h.cloud
            .calls()
            .iter()
            .any(|c| c.ends_with("default/classy"))
    );
    assert!(!has_finalizer(&svcs.get("classy").await.unwrap()));
    h.stop().await;
}

#[tokio::test]
async fn node_changes_update_backends_without_re_ensuring() {
    let h = start_with(FakeCloud::new(), svc_opts()).await;
    for n in ["n1", "n2"] {
        h.register(n, json!({"spec": {"taints": [], "providerID": format!("simcloud://zone-a/i-00000000000000{:02x}", n.len())}})).await;
    }
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    svcs.create(&PostParams::default(), &lb_service("a"))
        .await
        .unwrap();
    svcs.create(&PostParams::default(), &lb_service("b"))
        .await
        .unwrap();
    wait_for("both with 2 hosts", T, || async {
        let lbs = h.cloud.lbs();
        (lbs.len() == 2 && lbs.values().all(|l| l.hosts.len() == 2)).then_some(())
    })
    .await;
    let ensures = h.cloud.count_calls("ensure-lb");
    // A status-only change (readiness) is not a backend change.
    h.nodes
        .patch_status(
            "n1",
            &PatchParams::default(),
            &Patch::Merge(
                json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}),
            ),
        )
        .await
        .unwrap();
    // Excluding n2 is: both load balancers drop it, through updates, not ensures.
    h.nodes
        .patch(
            "n2",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {names::LABEL_EXCLUDE_FROM_LB: "true"}}})),
        )
        .await
        .unwrap();
    wait_for("n2 excluded", T, || async {
        h.cloud
            .lbs()
            .values()
            .all(|l| l.hosts == ["n1"])
            .then_some(())
    })
    .await;
    assert_eq!(h.cloud.count_calls("update-lb"), 2);
    assert_eq!(
        h.cloud.count_calls("ensure-lb"),
        ensures,
        "node changes update, they do not re-ensure"
    );
    // A new node joins every load balancer.
    h.register("n3", json!({"spec": {"taints": []}})).await;
    wait_for("n3 added", T, || async {
        h.cloud
            .lbs()
            .values()
            .all(|l| l.hosts == ["n1", "n3"])
            .then_some(())
    })
    .await;
    assert_eq!(h.cloud.count_calls("update-lb"), 4);
    h.stop().await;
}

#[tokio::test]
async fn retry_after_from_the_cloud_is_a_fixed_delay() {
    let cloud = FakeCloud::new();
    cloud.lb_retry_after(1, Duration::from_millis(600));
    let h = start_with(cloud, svc_opts()).await;
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    let started = Instant::now();
    svcs.create(&PostParams::default(), &lb_service("busy"))
        .await
        .unwrap();
    wait_for("ensured after the delay", T, || async {
        h.cloud.lbs().contains_key("default/busy").then_some(())
    })
    .await;
    let took = started.elapsed();
    assert!(took >= Duration::from_millis(600), "waited {took:?}");
    assert!(
        took < Duration::from_secs(4),
        "a Retry-After is not the 5 s back-off: {took:?}"
    );
    h.stop().await;
}

#[tokio::test]
async fn orphans_are_collected_and_restarts_make_no_duplicates() {
    let cloud = FakeCloud::new();
    cloud.insert_lb(
        "default/long-gone",
        FakeLb {
            service_uid: "uid-of-a-deleted-service".into(),
            hosts: vec![],
            ip: "127.64.1.99".into(),
        },
    );
    let h = start_with(cloud, svc_opts()).await;
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    svcs.create(&PostParams::default(), &lb_service("keep"))
        .await
        .unwrap();
    wait_for("orphan collected, keep ensured", T, || async {
        let lbs = h.cloud.lbs();
        (!lbs.contains_key("default/long-gone") && lbs.contains_key("default/keep")).then_some(())
    })
    .await;
    h.stop().await;
}

/// cloud-sim and kube-sim in process, and the simcloud provider over cloud-sim.
struct WithCloudSim {
    cloud: cloud_sim::Server,
    cc: cloud_client::Client,
    kube: kube_sim::Server,
    client: kube::Client,
    provider: std::sync::Arc<dyn ccm::cloud::CloudProvider>,
}

impl WithCloudSim {
    async fn start() -> Self {
        let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
            .await
            .unwrap();
        let cc = cloud_client::Client::new(cloud.base_url()).unwrap();
        let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
            .await
            .unwrap();
        let client = client_for(&kube.url());
        let provider: std::sync::Arc<dyn ccm::cloud::CloudProvider> =
            std::sync::Arc::new(ccm::cloud::simcloud::SimCloud::new(cc.clone(), None));
        Self {
            cloud,
            cc,
            kube,
            client,
            provider,
        }
    }

    /// Starts the controllers of `opts`; cancel the token to stop them. The metrics show what
    /// their queues did.
    fn run(
        &self,
        opts: &Options,
    ) -> (
        ccm::CancellationToken,
        ccm::Controllers,
        std::sync::Arc<ccm::metrics::Metrics>,
    ) {
        let stop = ccm::CancellationToken::new();
        let metrics = std::sync::Arc::new(ccm::metrics::Metrics::new());
        let tasks = ccm::start_controllers(
            self.client.clone(),
            self.provider.clone(),
            metrics.clone(),
            opts,
            &stop,
        );
        (stop, tasks, metrics)
    }

    async fn stop(self) {
        self.kube.shutdown().await;
        self.cloud.shutdown().await.unwrap();
    }
}

/// With cloud-sim: backends in three zones, ingress per zone, restart without duplicates,
/// ClusterIP removes the load balancer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn against_cloud_sim() {
    let w = WithCloudSim::start().await;
    let (cc, client) = (w.cc.clone(), w.client.clone());
    let kubelets = Kubelets::start(
        KubeletConfig::for_tests(&w.cloud.base_url()),
        client_for(&w.kube.url()),
    )
    .unwrap();
    let mut opts = Options::for_tests("test");
    opts.controllers = ControllerName::ALL.into_iter().collect();
    let start = |opts: &Options| w.run(opts);
    let (stop_tx, mut tasks, _) = start(&opts);
    for (n, zone) in [("w1", "zone-a"), ("w2", "zone-b"), ("w3", "zone-c")] {
        let req = CreateInstanceRequest {
            name: n.into(),
            zone: zone.into(),
            instance_type: "sim.small".into(),
            tags: Tags::new(),
            private_ip: None,
        };
        cc.create_instance(&req).await.unwrap();
    }
    let nodes: Api<Node> = Api::all(client.clone());
    wait_for("3 nodes initialised", T, || async {
        let l = nodes.list(&ListParams::default()).await.ok()?;
        (l.items.len() == 3
            && l.items
                .iter()
                .all(|n| !ccm::node_plan::has_uninitialized_taint(n)))
        .then_some(())
    })
    .await;
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    let mut svc = lb_service("shop");
    svc.spec.as_mut().unwrap().traffic_distribution = Some("PreferSameZone".into());
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let s = wait_for("ingress IPs", T, || async {
        svcs.get("shop")
            .await
            .ok()
            .filter(|s| ingress_ips(s).len() == 3)
    })
    .await;
    // The first ensure may have seen a node before its provider ID was set (the controller's node
    // cache can lag the test's reads); the node event that follows updates the backends.
    let lbs = wait_for("backends in three zones", T, || async {
        let lbs = cc.list_all_load_balancers(&Default::default()).await.ok()?;
        let backends = lb_backends(&cc, lbs.first()?).await?;
        let mut zones: Vec<&str> = backends.iter().map(|b| b.zone.as_str()).collect();
        zones.sort();
        (zones == ["zone-a", "zone-b", "zone-c"]).then_some(lbs.clone())
    })
    .await;
    assert_eq!(lbs.len(), 1);
    let lb = &lbs[0];
    assert_eq!(
        lb.zone_policy.zone_affinity,
        cloud_api::ZoneAffinity::PreferSameZone
    );
    let np = s.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
        .node_port
        .unwrap();
    assert_eq!(lb.listeners[0].backend_port, u16::try_from(np).unwrap());
    let mut ips: Vec<_> = ingress_ips(&s).into_iter().map(|(ip, _)| ip).collect();
    ips.sort();
    let mut fronts: Vec<_> = lb.frontends.iter().map(|f| f.ip.to_string()).collect();
    fronts.sort();
    assert_eq!(ips, fronts);
    assert_eq!(lb.tags["kubernetes.io/service-name"], "default/shop");
    // Restart the controllers: the load balancer is found again, not duplicated.
    stop_tx.cancel();
    while tasks.join_next().await.is_some() {}
    let (stop_tx, mut tasks, metrics) = start(&opts);
    // Once the new controller has worked through the Service it found at start, it has either
    // found the load balancer or made a second one.
    let queue = metrics.queue(ccm::service_controller::QUEUE);
    wait_for(
        "the restarted controller is done with the Service",
        T,
        || {
            let queue = queue.clone();
            async move { (queue.adds() > 0 && queue.idle()).then_some(()) }
        },
    )
    .await;
    assert_eq!(
        cc.list_all_load_balancers(&Default::default())
            .await
            .unwrap()
            .len(),
        1
    );
    // ClusterIP: the load balancer goes, and so do the finalizer and the status.
    svcs.patch(
        "shop",
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"type": "ClusterIP"}})),
    )
    .await
    .unwrap();
    wait_for("LB deleted", T, || async {
        cc.list_all_load_balancers(&Default::default())
            .await
            .ok()?
            .is_empty()
            .then_some(())
    })
    .await;
    wait_for("finalizer removed", T, || async {
        svcs.get("shop")
            .await
            .ok()
            .filter(|s| !has_finalizer(s) && ingress_ips(s).is_empty())
    })
    .await;
    stop_tx.cancel();
    while tasks.join_next().await.is_some() {}
    kubelets.stop().await;
    w.stop().await;
}

/// A status write that fails (an API server error) is retried: the Service is not taken as
/// synced until its status is written.
#[tokio::test]
async fn a_failed_status_write_is_retried() {
    let h = start_with(FakeCloud::new(), svc_opts()).await;
    h.register("n1", json!({})).await;
    // The finalizer is already there, so the first write to /status is the load-balancer status.
    h.kube
        .faults()
        .add(kube_sim::faults::FailRule {
            method: Some("PATCH".into()),
            path_contains: Some("/services/web/status".into()),
            status: 500,
            retry_after_seconds: None,
            count: Some(1),
        })
        .unwrap();
    let mut svc = lb_service("web");
    svc.metadata.finalizers = Some(vec![names::LB_FINALIZER.to_owned()]);
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    svcs.create(&PostParams::default(), &svc).await.unwrap();
    let s = wait_for(
        "status written after the failed write",
        Duration::from_secs(30),
        || async {
            svcs.get("web")
                .await
                .ok()
                .filter(|s| !ingress_ips(s).is_empty())
        },
    )
    .await;
    assert_eq!(ingress_ips(&s).len(), 1);
    assert!(
        h.cloud.count_calls("ensure-lb") >= 2,
        "ensured again to retry"
    );
    // Reported as upstream reports a failed step of a sync.
    let events: Api<Event> = Api::namespaced(h.client.clone(), "default");
    let failed: Vec<String> = events
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| e.reason.as_deref() == Some(names::REASON_SYNC_LB_FAILED))
        .filter_map(|e| e.message)
        .collect();
    assert!(
        failed.iter().any(|m| m
            .starts_with("Error syncing load balancer: failed to update load balancer status:")),
        "{failed:?}"
    );
    h.stop().await;
}

/// A Node deleted outright (no finalizer: how the node-lifecycle controller deletes) leaves the
/// backends of every load balancer at once.
#[tokio::test]
async fn a_hard_deleted_node_leaves_the_load_balancers() {
    let h = start_with(FakeCloud::new(), svc_opts()).await;
    h.register("n1", json!({})).await;
    h.register("n2", json!({})).await;
    let svcs: Api<Service> = Api::namespaced(h.client.clone(), "default");
    svcs.create(&PostParams::default(), &lb_service("web"))
        .await
        .unwrap();
    wait_for("both nodes are backends", T, || async {
        let lbs = h.cloud.lbs();
        (lbs.get("default/web")?.hosts == ["n1", "n2"]).then_some(())
    })
    .await;
    h.nodes.delete("n2", &Default::default()).await.unwrap();
    wait_for("n2 left the load balancer", T, || async {
        let lbs = h.cloud.lbs();
        (lbs.get("default/web")?.hosts == ["n1"]).then_some(())
    })
    .await;
    h.stop().await;
}

/// `spec.loadBalancerIP` (deprecated, still common): an address in a zone's frontend pool is
/// used; one outside every pool gets ordinary addresses and a Warning event naming the pools.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_ip_is_honoured_in_a_pool_and_warned_about_outside() {
    let w = WithCloudSim::start().await;
    let client = w.client.clone();
    let (stop_tx, mut tasks, _) = w.run(&svc_opts());
    let svcs: Api<Service> = Api::namespaced(client.clone(), "default");
    // An address in zone-b's pool of this cloud's block.
    let pool = w.cloud.state().cloud.config().zones[1]
        .lb_pool
        .network()
        .octets();
    let wanted = format!("{}.{}.{}.77", pool[0], pool[1], pool[2]);
    for (name, ip) in [("inside", wanted.as_str()), ("outside", "8.8.8.8")] {
        let mut s = lb_service(name);
        s.spec.as_mut().unwrap().load_balancer_ip = Some(ip.into());
        svcs.create(&PostParams::default(), &s).await.unwrap();
    }
    let ips = |name: &'static str| {
        let svcs = svcs.clone();
        async move {
            let s = svcs.get(name).await.ok()?;
            let ips: Vec<String> = ingress_ips(&s).into_iter().map(|(ip, _)| ip).collect();
            (ips.len() == 3).then_some(ips)
        }
    };
    let inside = wait_for("inside: three frontends", T, || ips("inside")).await;
    assert!(inside.contains(&wanted), "{inside:?}");
    let outside = wait_for("outside: three frontends", T, || ips("outside")).await;
    assert!(!outside.contains(&"8.8.8.8".to_owned()), "{outside:?}");
    let events: Api<Event> = Api::namespaced(client.clone(), "default");
    let warning = wait_for("a warning naming the pools", T, || async {
        events
            .list(&ListParams::default())
            .await
            .ok()?
            .items
            .into_iter()
            .find(|e| {
                e.involved_object.name.as_deref() == Some("outside")
                    && e.reason.as_deref() == Some(names::REASON_LB_IP_NOT_IN_POOL)
            })
    })
    .await;
    assert_eq!(warning.type_.as_deref(), Some("Warning"));
    assert!(
        warning
            .message
            .unwrap_or_default()
            .contains(&format!("zone-b {}.{}.{}.0/24", pool[0], pool[1], pool[2])),
        "the pools are named"
    );
    stop_tx.cancel();
    while tasks.join_next().await.is_some() {}
    w.stop().await;
}
