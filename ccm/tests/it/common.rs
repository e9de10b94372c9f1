use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use ccm::Options;
use ccm::cloud::fake::{FakeCloud, FakeInstance};
use ccm::cloud::{InstanceMetadata, NodeAddress};
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::api::PostParams;
use serde_json::json;

pub struct Harness {
    pub kube: kube_sim::Server,
    pub client: kube::Client,
    pub cloud: Arc<FakeCloud>,
    pub nodes: Api<Node>,
    pub metrics: Arc<ccm::metrics::Metrics>,
    stop: ccm::CancellationToken,
    tasks: ccm::Controllers,
}

pub fn client_for(url: &str) -> kube::Client {
    kube::Client::try_from(kube::Config::new(url.parse().unwrap())).unwrap()
}

/// kube-sim, the fake cloud and the node controllers, running.
pub async fn start(cloud: FakeCloud) -> Harness {
    start_with(cloud, Options::for_tests("test")).await
}

/// kube-sim, the fake cloud and the controllers in `opts`, running.
pub async fn start_with(cloud: FakeCloud, opts: Options) -> Harness {
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let client = client_for(&kube.url());
    let cloud = Arc::new(cloud);
    let stop = ccm::CancellationToken::new();
    let metrics = Arc::new(ccm::metrics::Metrics::new());
    let tasks =
        ccm::start_controllers(client.clone(), cloud.clone(), metrics.clone(), &opts, &stop);
    let nodes = Api::all(client.clone());
    Harness {
        kube,
        client,
        cloud,
        nodes,
        metrics,
        stop,
        tasks,
    }
}

impl Harness {
    /// Waits until the controller behind queue `queue` has been told of something new since
    /// `adds` (its queue's add count before the change) and has finished all its work.
    pub async fn handled_since(&self, queue: &str, adds: u64) {
        let q = self.metrics.queue(queue);
        wait_for("the controller handles the change", T, || {
            let q = q.clone();
            async move { (q.adds() > adds && q.idle()).then_some(()) }
        })
        .await;
    }

    pub async fn stop(mut self) {
        self.stop.cancel();
        while self.tasks.join_next().await.is_some() {}
        self.kube.shutdown().await;
    }

    /// Creates a Node as a kubelet with `--cloud-provider=external` registers it.
    pub async fn register(&self, name: &str, extra: serde_json::Value) -> Node {
        let mut v = json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": ccm::names::TAINT_UNINITIALIZED, "value": "true", "effect": "NoSchedule"}]},
            "status": {"addresses": [{"type": "Hostname", "address": name}], "conditions": [{"type": "Ready", "status": "True"}]}});
        json_patch::merge(&mut v, &extra);
        self.nodes
            .create(&PostParams::default(), &serde_json::from_value(v).unwrap())
            .await
            .unwrap()
    }

    pub async fn node(&self, name: &str) -> Option<Node> {
        self.nodes.get_opt(name).await.unwrap()
    }
}

pub fn instance(name: &str, zone: &str, ip: &str) -> FakeInstance {
    FakeInstance {
        metadata: InstanceMetadata {
            provider_id: format!("simcloud://{zone}/i-00000000000000{:02x}", name.len()),
            instance_type: "sim.small".into(),
            node_addresses: vec![
                NodeAddress::new("InternalIP", ip),
                NodeAddress::new("Hostname", name),
            ],
            zone: zone.into(),
            region: "sim-1".into(),
            additional_labels: BTreeMap::from([(
                "simcloud.dev/instance-id".to_owned(),
                "i-1".to_owned(),
            )]),
        },
        shutdown: false,
    }
}

pub fn initialized(n: &Node) -> bool {
    !ccm::node_plan::has_uninitialized_taint(n)
}

pub use sim_common::wait_for;

pub const T: Duration = Duration::from_secs(20);

/// Every instance `lb` sends to: those it lists, then its backend groups' members. `None` when a
/// read fails or a group is missing.
pub async fn lb_backends(
    cloud: &cloud_client::Client,
    lb: &cloud_api::LoadBalancer,
) -> Option<Vec<cloud_api::Backend>> {
    let mut out = lb.backends.clone();
    for g in &lb.backend_groups {
        out.extend(cloud.get_backend_group(g.as_str()).await.ok()??.members);
    }
    Some(out)
}
