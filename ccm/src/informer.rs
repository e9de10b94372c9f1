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

/// One watch event, shared by every subscriber.
pub type NodeEvent = Arc<watcher::Event<Node>>;

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

    /// Every Node as last seen.
    pub fn state(&self) -> Vec<Arc<Node>> {
        self.store.state()
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
            ..
        } = self;
        let events = watcher(api, watcher::Config::default())
            .default_backoff()
            .for_each(move |event| {
                match event {
                    Ok(e) => {
                        writer.apply_watcher_event(&e);
                        if matches!(e, watcher::Event::InitDone) {
                            ready.send_replace(true);
                        }
                        let e = Arc::new(e);
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
