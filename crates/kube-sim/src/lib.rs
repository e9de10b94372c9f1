//! kube-sim: a small in-memory Kubernetes API server, faithful where kube-rs, kube-runtime and
//! kubectl depend on it. With `--cloud-url`, `kube-sim serve` also runs `kubelet-sim`'s simulated
//! kubelets against itself.
//!
//! Layout: [`store`] keeps objects, the global resourceVersion and the change history;
//! [`resources`] lists the served kinds and their rules; [`kinds`] holds per-kind behaviour
//! (Service allocation, Node immutables, Event conversion); [`patch`] the three patch flavours;
//! [`selectors`] label and field selectors; [`api`] the generic request logic; [`watch`] watch
//! streams; [`http`] routing and parsing; [`discovery`] the discovery documents; [`faults`] test
//! fault injection. [`Server`] runs it all; `kube-sim serve --cloud-url` also runs the
//! `kubelet-sim` simulated kubelets against it, over HTTP like any other client.
//!
//! [`openapi`] serves kube-apiserver's OpenAPI v3 documents of the pinned release and drops (or
//! with `fieldValidation=Strict` refuses) fields they do not declare; [`swagger`] serves the
//! OpenAPI v2 document derived from them (kubectl validates a `kind: List` file with it);
//! [`rbac`] answers SelfSubjectAccessReview and SelfSubjectRulesReview from the stored roles.
//!
//! [`protobuf`] decodes Kubernetes protobuf request bodies (answers are JSON).
//!
//! [`ssa`] is server-side apply (field owners from an object's first apply on).
//!
//! Not served, on purpose: TLS and authentication (plain HTTP on loopback). Not served yet:
//! garbage collection. docs/kube-sim.md has the details. [`tables`] answers `kubectl get`'s
//! Table requests (lists, single objects and watches) with kube-apiserver's columns.
//!
//! What it does serve is checked against the real kube-apiserver: `tests/it/differential.rs`
//! runs the same requests against both and compares status codes, reasons and the fields our
//! clients read. Namespace deletion behaves as with kube-controller-manager's namespace
//! controller (Terminating, contents deleted, the namespace gone once empty), only at once.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub mod api;
pub mod config;
pub mod discovery;
pub mod faults;
pub mod http;
pub mod kinds;
pub mod openapi;
pub mod patch;
pub mod protobuf;
pub mod rbac;
pub mod resources;
pub mod selectors;
pub mod ssa;
pub mod status;
pub mod store;
pub mod swagger;
pub mod tables;
pub mod watch;

/// How to run the API server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    /// Changes kept for watches to replay; older resourceVersions get 410 Expired.
    pub history: usize,
    /// How often watches that asked for bookmarks get one.
    pub bookmark_every: Duration,
    /// Where to write a kubeconfig pointing at this server, if anywhere.
    pub kubeconfig: Option<PathBuf>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            history: 10_000,
            bookmark_every: Duration::from_secs(60),
            kubeconfig: None,
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot write kubeconfig {path}")]
    Kubeconfig {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// A running kube-sim API server.
pub struct Server {
    addr: SocketAddr,
    state: http::AppState,
    shutdown: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    pub async fn start(config: ServerConfig) -> Result<Self, ServeError> {
        let listener =
            TcpListener::bind(config.listen)
                .await
                .map_err(|source| ServeError::Bind {
                    addr: config.listen,
                    source,
                })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: config.listen,
            source,
        })?;
        let store = Arc::new(store::Store::new(config.history));
        let api = api::Api::new(store);
        api.publish_address(addr);
        let state = http::AppState {
            api: Arc::new(api),
            faults: Arc::new(faults::Faults::new()),
            bookmark_every: config.bookmark_every,
            address: addr.to_string(),
            requests: Arc::default(),
        };
        if let Some(path) = &config.kubeconfig {
            write_kubeconfig(path, &format!("http://{addr}")).map_err(|source| {
                ServeError::Kubeconfig {
                    path: path.clone(),
                    source,
                }
            })?;
        }
        let shutdown = CancellationToken::new();
        let router = http::router(state.clone());
        let token = shutdown.clone();
        let task = tokio::spawn(async move {
            let serve =
                axum::serve(listener, router).with_graceful_shutdown(token.cancelled_owned());
            if let Err(e) = serve.await {
                tracing::error!(error = %e, "kube-sim server failed");
            }
        });
        tracing::info!(%addr, "kube-sim serving");
        Ok(Self {
            addr,
            state,
            shutdown,
            task,
        })
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn api(&self) -> &Arc<api::Api> {
        &self.state.api
    }

    pub fn faults(&self) -> &Arc<faults::Faults> {
        &self.state.faults
    }

    /// Stops accepting requests. Open watches are ended.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        self.state.faults.control_watches(watch::WatchControl::Cut);
        let _ = self.task.await;
    }

    /// The serving task and a handle that stops it (ending open watches), for a caller that
    /// supervises its tasks together ([`sim_common::Supervised::adopt`]).
    pub fn into_task(self) -> (impl FnOnce() + Send, JoinHandle<()>) {
        let (token, faults) = (self.shutdown, self.state.faults);
        let stop = move || {
            token.cancel();
            faults.control_watches(watch::WatchControl::Cut);
        };
        (stop, self.task)
    }
}

/// Writes a kubeconfig whose current context points at `server` with no credentials.
pub fn write_kubeconfig(path: &Path, server: &str) -> std::io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, kubeconfig(server))
}

/// A kubeconfig for `server` (plain HTTP, no user credentials).
pub fn kubeconfig(server: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kube-sim\n  cluster:\n    server: {server}\ncontexts:\n- name: kube-sim\n  context:\n    cluster: kube-sim\n    user: kube-sim\ncurrent-context: kube-sim\nusers:\n- name: kube-sim\n  user: {{}}\npreferences: {{}}\n"
    )
}

pub use sim_common::shutdown_signal;

/// `kube-sim serve`: the API server, plus kubelets when `--cloud-url` is given, until a signal.
pub async fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    let server = Server::start(ServerConfig {
        listen: args.listen,
        history: args.history.max(1),
        bookmark_every: args.bookmark_interval.max(Duration::from_millis(100)),
        kubeconfig: Some(args.kubeconfig.clone()),
    })
    .await?;
    tracing::info!(kubeconfig = %args.kubeconfig.display(), "use: kubectl --kubeconfig {} get nodes", args.kubeconfig.display());
    let client = kube::Client::try_from(kube::Config::new(server.url().parse()?))?;
    let controllers = args
        .controllers
        .then(|| kcm_sim::Controllers::start(client.clone(), kcm_sim::Config::default()));
    let kubelets = match &args.cloud_url {
        Some(url) => {
            let config = args.kubelet_config(url);
            Some(kubelet_sim::Kubelets::start(config, client.clone())?)
        }
        None => None,
    };
    // Every part is supervised: if one ends (a panic, the listener failing), the rest stop and
    // the process exits non-zero naming it.
    let mut tasks = sim_common::Supervised::new();
    let (stop_server, server) = server.into_task();
    tasks.adopt("API server", server);
    let mut stops = Vec::new();
    if let Some(c) = controllers {
        let (stop, task) = c.into_task();
        tasks.adopt("controllers", task);
        stops.push(stop);
    }
    if let Some(k) = kubelets {
        let (stop, task) = k.into_task();
        tasks.adopt("kubelets", task);
        stops.push(stop);
    }
    let died = tokio::select! {
        () = shutdown_signal() => None,
        Some((task, exit)) = tasks.join_next() => Some((task, exit.err().unwrap_or_else(|| "it returned".into()))),
    };
    tracing::info!("shutting down");
    stops.iter().for_each(CancellationToken::cancel);
    stop_server();
    tasks.join_all().await;
    match died {
        None => Ok(()),
        Some((task, why)) => anyhow::bail!("the {task} task stopped while serving: {why}"),
    }
}
