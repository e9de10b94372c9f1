//! One Node watch for every controller, as upstream's shared informer factory: a single
//! reflector keeps the store all controllers read, and each controller that reacts to Node
//! changes gets its own copy of the event stream. Events reach a subscriber only after the store
//! has applied them, so whatever an event triggers reads at least that state.
//!
//! Subscribe before [`NodeInformer::run`] starts, so that no subscriber misses the initial
//! list. A subscriber's queue is unbounded: a slow controller delays only itself, never the
//! store or the other controllers (events are shared, not copied).
//!
//! Wait for the first list with [`SharedNodes::ready`], not `Store::wait_until_ready`: the
//! latter wakes only the last task that polled it (kube-runtime 5 keeps one waker), so with
//! several waiters on one store all but one would wait forever. A kube-runtime `Controller`
//! built on the store waits on it internally: at most one may be built on it.

use std::future::Future;
use std::sync::Arc;

use futures_util::StreamExt as _;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt as _, watcher};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::UnboundedReceiverStream;

use crate::names;

/// One watch event, shared by every subscriber. Its Node is the store's own copy where the
/// store holds that version: a Node queued for a slow subscriber costs no second copy.
pub type NodeEvent = Arc<watcher::Event<Arc<Node>>>;

/// The stream of Node events one controller receives.
pub type NodeEvents = UnboundedReceiverStream<NodeEvent>;

/// The shared Node store and a readiness signal any number of tasks may wait on.
#[derive(Clone)]
pub struct SharedNodes {
    store: Store<Node>,
    ready: watch::Receiver<bool>,
}

impl SharedNodes {
    /// The store itself (for a kube-runtime `Controller`: see the module docs).
    pub fn store(&self) -> Store<Node> {
        self.store.clone()
    }

    /// Every Node as last seen. A pass that outlasts its snapshot pins every Node version in it
    /// while the store moves on: take what the pass needs and drop the snapshot, then read
    /// [`SharedNodes::get`] for the Nodes it acts on.
    pub fn state(&self) -> Vec<Arc<Node>> {
        self.store.state()
    }

    /// One Node as last seen, `None` once it is gone.
    pub fn get(&self, name: &str) -> Option<Arc<Node>> {
        self.store.get(&reflector::ObjectRef::new(name))
    }

    /// Resolves once the first list is in the store (at once if it already is; never if the
    /// informer stopped before).
    pub async fn ready(&self) {
        let mut rx = self.ready.clone();
        if rx.wait_for(|ready| *ready).await.is_err() {
            std::future::pending::<()>().await;
        }
    }
}

/// Drops what no controller reads of a Node before it is stored or queued: the kubelet's
/// reports (images, system info, capacity, volumes), managed fields, the kubelet's OS, arch and
/// hostname labels, annotations other than the kubelet's `--node-ip`, conditions other than
/// `Ready` and `NetworkUnavailable`, and the conditions' prose and times (their type, status
/// and reason stay). At 10,000 Nodes the store is most of the ccm's memory (a stored Node is
/// about 4 KiB slimmed, 7 KiB as kubelet-sim reports it, more from a real kubelet). Safe because
/// every write of a Node goes out as a patch, or as an update of a Node just read from the API
/// server, never as a write of a stored copy.
pub fn slim(node: &mut Node) {
    node.metadata.managed_fields = None;
    if let Some(l) = node.metadata.labels.as_mut() {
        l.retain(|k, _| !names::KUBELET_LABELS_UNREAD.contains(&k.as_str()));
    }
    if let Some(a) = node.metadata.annotations.as_mut() {
        a.retain(|k, _| k == names::ANNOTATION_PROVIDED_NODE_IP);
    }
    if let Some(s) = node.status.as_mut() {
        s.allocatable = None;
        s.capacity = None;
        s.config = None;
        s.daemon_endpoints = None;
        s.features = None;
        s.images = None;
        s.node_info = None;
        s.runtime_handlers = None;
        s.volumes_attached = None;
        s.volumes_in_use = None;
        if let Some(cs) = s.conditions.as_mut() {
            cs.retain(|c| c.type_ == "Ready" || c.type_ == names::CONDITION_NETWORK_UNAVAILABLE);
        }
        for c in s.conditions.iter_mut().flatten() {
            c.message = None;
            c.last_heartbeat_time = None;
            c.last_transition_time = None;
        }
    }
}

/// `event` with its Node as the store holds it (the same `Arc`) when the store holds that very
/// version, which it does after applying an `Apply`; an `InitApply` goes into a buffer the
/// store shows only at `InitDone`, and a deleted Node is gone from it: those are wrapped.
fn share(store: &Store<Node>, event: watcher::Event<Node>) -> watcher::Event<Arc<Node>> {
    let stored = |n: Node| {
        store
            .get(&reflector::ObjectRef::from_obj(&n))
            .filter(|s| s.metadata.resource_version == n.metadata.resource_version)
            .unwrap_or_else(|| Arc::new(n))
    };
    match event {
        watcher::Event::Apply(n) => watcher::Event::Apply(stored(n)),
        watcher::Event::InitApply(n) => watcher::Event::InitApply(stored(n)),
        watcher::Event::Delete(n) => watcher::Event::Delete(Arc::new(n)),
        watcher::Event::Init => watcher::Event::Init,
        watcher::Event::InitDone => watcher::Event::InitDone,
    }
}

pub struct NodeInformer {
    api: Api<Node>,
    store: Store<Node>,
    writer: reflector::store::Writer<Node>,
    subscribers: Vec<mpsc::UnboundedSender<NodeEvent>>,
    ready: watch::Sender<bool>,
}

impl NodeInformer {
    /// An informer over all Nodes with `client` (upstream: the ccm's own credentials).
    pub fn new(client: kube::Client) -> Self {
        let (store, writer) = reflector::store();
        Self {
            api: Api::all(client),
            store,
            writer,
            subscribers: Vec::new(),
            ready: watch::channel(false).0,
        }
    }

    /// The store every controller reads, and its readiness.
    pub fn nodes(&self) -> SharedNodes {
        SharedNodes {
            store: self.store.clone(),
            ready: self.ready.subscribe(),
        }
    }

    /// A new subscriber's event stream (from the first list on).
    pub fn subscribe(&mut self) -> NodeEvents {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers.push(tx);
        UnboundedReceiverStream::new(rx)
    }

    /// Watches until `shutdown`, applying each event to the store, then handing it to the
    /// subscribers. Watch errors are retried with kube-runtime's default back-off.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        let Self {
            api,
            mut writer,
            mut subscribers,
            ready,
            store,
        } = self;
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .modify(slim)
            .for_each(move |event| {
                match event {
                    Ok(e) => {
                        writer.apply_watcher_event(&e);
                        if matches!(e, watcher::Event::InitDone) {
                            ready.send_replace(true);
                        }
                        let e = Arc::new(share(&store, e));
                        // A subscriber that stopped listening is dropped.
                        subscribers.retain(|s| s.send(e.clone()).is_ok());
                    }
                    Err(e) => tracing::warn!(error = %e, "node watch failed; retrying"),
                }
                futures_util::future::ready(())
            });
        tokio::select! {
            _ = events => {}
            _ = shutdown => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::ResourceExt as _;
    use serde_json::json;

    use super::*;

    /// A Node as a real kubelet reports it, once initialised by the ccm.
    fn kubelet_node() -> Node {
        serde_json::from_value(json!({
            "metadata": {
                "name": "node-1",
                "uid": "u-1",
                "labels": {"topology.kubernetes.io/zone": "zone-a", "node.kubernetes.io/exclude-from-external-load-balancers": "true",
                    "kubernetes.io/hostname": "node-1", "kubernetes.io/os": "linux", "beta.kubernetes.io/arch": "amd64",
                    "simcloud.dev/instance-id": "i-0123456789abcdef"},
                "annotations": {"alpha.kubernetes.io/provided-node-ip": "10.0.0.5", "node.alpha.kubernetes.io/ttl": "0",
                    "volumes.kubernetes.io/controller-managed-attach-detach": "true"},
                "managedFields": [{"manager": "kubelet", "operation": "Update", "apiVersion": "v1", "fieldsType": "FieldsV1", "fieldsV1": {"f:status": {}}}],
            },
            "spec": {
                "providerID": "simcloud://zone-a/i-0123456789abcdef",
                "podCIDR": "10.244.1.0/24",
                "podCIDRs": ["10.244.1.0/24"],
                "unschedulable": true,
                "taints": [{"key": "node.kubernetes.io/out-of-service", "effect": "NoExecute"}],
            },
            "status": {
                "addresses": [{"type": "InternalIP", "address": "10.0.0.5"}, {"type": "Hostname", "address": "node-1"}],
                "capacity": {"cpu": "4", "memory": "16Gi", "pods": "110"},
                "allocatable": {"cpu": "4", "memory": "15Gi", "pods": "110"},
                "conditions": [
                    {"type": "Ready", "status": "True", "reason": "KubeletReady", "message": "kubelet is posting ready status",
                     "lastHeartbeatTime": "2026-12-01T10:00:00Z", "lastTransitionTime": "2026-12-01T09:00:00Z"},
                    {"type": "NetworkUnavailable", "status": "False", "reason": "RouteCreated", "message": "RouteController created a route",
                     "lastHeartbeatTime": "2026-12-01T10:00:00Z", "lastTransitionTime": "2026-12-01T09:00:00Z"},
                    {"type": "MemoryPressure", "status": "False", "reason": "KubeletHasSufficientMemory", "message": "kubelet has sufficient memory available",
                     "lastHeartbeatTime": "2026-12-01T10:00:00Z", "lastTransitionTime": "2026-12-01T09:00:00Z"},
                ],
                "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
                "images": [{"names": ["registry.k8s.io/pause:3.10"], "sizeBytes": 320368}],
                "nodeInfo": {"machineID": "m", "systemUUID": "s", "bootID": "b", "kernelVersion": "6.1", "osImage": "Debian",
                    "containerRuntimeVersion": "containerd://2.0", "kubeletVersion": "v1.33.0", "kubeProxyVersion": "",
                    "operatingSystem": "linux", "architecture": "amd64"},
                "volumesInUse": ["kubernetes.io/csi/x"],
            },
        }))
        .unwrap()
    }

    #[test]
    fn slim_keeps_what_the_controllers_read_and_drops_the_rest() {
        let full = kubelet_node();
        let mut slimmed = full.clone();
        slim(&mut slimmed);
        let size = |n: &Node| serde_json::to_vec(n).unwrap().len();
        let (small, large) = (size(&slimmed), size(&full));
        // What the node, node-lifecycle, route and service controllers read: unchanged.
        assert_eq!(slimmed.metadata.name, full.metadata.name);
        assert_eq!(slimmed.metadata.uid, full.metadata.uid);
        let labels = |n: &Node| n.labels().keys().cloned().collect::<Vec<_>>();
        assert_eq!(
            labels(&slimmed),
            [
                names::LABEL_EXCLUDE_FROM_LB,
                names::LABEL_INSTANCE_ID,
                names::LABEL_ZONE
            ]
        );
        assert_eq!(
            slimmed.metadata.annotations,
            Some(
                [(
                    names::ANNOTATION_PROVIDED_NODE_IP.to_owned(),
                    "10.0.0.5".to_owned()
                )]
                .into()
            )
        );
        assert_eq!(slimmed.spec, full.spec);
        let (s, f) = (slimmed.status.unwrap(), full.status.unwrap());
        assert_eq!(s.addresses, f.addresses);
        let kept: Vec<_> = s
            .conditions
            .unwrap()
            .into_iter()
            .map(|c| (c.type_, c.status, c.reason))
            .collect();
        let was: Vec<_> = f
            .conditions
            .unwrap()
            .into_iter()
            .filter(|c| c.type_ != "MemoryPressure")
            .map(|c| (c.type_, c.status, c.reason))
            .collect();
        assert_eq!(kept, was);
        // The rest: gone.
        assert_eq!(slimmed.metadata.managed_fields, None);
        assert_eq!(
            (s.images, s.node_info, s.capacity, s.allocatable),
            (None, None, None, None)
        );
        assert_eq!((s.daemon_endpoints, s.volumes_in_use), (None, None));
        assert!(small * 2 < large, "{small} bytes vs {large}");
    }

    #[test]
    fn events_share_the_stored_node_when_the_store_holds_that_version() {
        let (store, mut writer) = reflector::store();
        let at = |rv: &str| {
            let mut n = kubelet_node();
            n.metadata.resource_version = Some(rv.to_owned());
            n
        };
        let node_of = |e: &watcher::Event<Arc<Node>>| match e {
            watcher::Event::Apply(n) | watcher::Event::InitApply(n) | watcher::Event::Delete(n) => {
                n.clone()
            }
            watcher::Event::Init | watcher::Event::InitDone => panic!("no node in {e:?}"),
        };
        let apply = watcher::Event::Apply(at("5"));
        writer.apply_watcher_event(&apply);
        let shared = node_of(&share(&store, apply));
        let stored = store.state().pop().unwrap();
        assert!(
            Arc::ptr_eq(&shared, &stored),
            "an applied Node is the store's"
        );
        // A relist buffers what it lists until it is done: the store still shows version 5.
        writer.apply_watcher_event(&watcher::Event::Init);
        let listed = watcher::Event::InitApply(at("7"));
        writer.apply_watcher_event(&listed);
        let own = node_of(&share(&store, listed));
        assert_eq!(own.metadata.resource_version.as_deref(), Some("7"));
        assert!(!Arc::ptr_eq(&own, &store.state().pop().unwrap()));
        let deleted = node_of(&share(&store, watcher::Event::Delete(at("9"))));
        assert_eq!(deleted.metadata.resource_version.as_deref(), Some("9"));
    }
}
