//! cloud-sim: a simulated cloud over REST.
//!
//! Layout: [`config`] parses flags into a validated [`config::Config`]; [`domain`] holds the pure
//! rules (instance lifecycle, address allocation, validation, page tokens); [`store`] is all the
//! SQL; [`ops`] composes the two into the API's operations; [`http`] is the router, middleware and
//! thin handlers; [`faults`] is fault injection; [`worker`] settles delayed state changes.
//! [`Server`] ties them together and is what `main` and the tests start.

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub mod config;
pub mod dataplane;
pub mod domain;
pub mod error;
pub mod faults;
pub mod http;
pub mod metrics;
pub mod ops;
pub mod store;
pub mod worker;

pub use config::Config;
pub use http::{AppState, app};
pub use ops::Cloud;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot listen on {addr}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("server failed")]
    Serve(#[source] std::io::Error),
}

/// A running cloud-sim: the API server and its background worker.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<Result<(), ServeError>>>,
}

impl Server {
    /// Opens the database, binds `listen` (port 0 picks one) and starts serving.
    pub async fn start(
        config: Config,
        database_url: &str,
        listen: SocketAddr,
    ) -> Result<Self, ServeError> {
        let db = store::Db::connect(database_url).await?;
        let listener = TcpListener::bind(listen)
            .await
            .map_err(|source| ServeError::Bind {
                addr: listen,
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| ServeError::Bind {
            addr: listen,
            source,
        })?;
        let config = Arc::new(config);
        let faults = Arc::new(faults::Faults::new(config.throttle));
        let cloud = Cloud::new(db, config, faults);
        let metrics = Arc::new(metrics::Metrics::new());
        let dataplane = dataplane::DataPlane::new(
            cloud.clone(),
            cloud.config.inter_zone_latency.clone(),
            metrics.clone(),
        );
        let state = AppState {
            cloud: cloud.clone(),
            metrics,
            dataplane: dataplane.clone(),
        };
        let (shutdown, rx) = watch::channel(false);

        let worker_rx = rx.clone();
        let worker = tokio::spawn(async move {
            worker::run(cloud, worker_rx).await;
            Ok(())
        });
        let dp_rx = rx.clone();
        let dp = tokio::spawn(async move {
            dataplane.run(dp_rx).await;
            Ok::<(), ServeError>(())
        });
        let router = app(state.clone());
        let mut serve_rx = rx;
        let server = tokio::spawn(async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(async move {
                    let _ = serve_rx.wait_for(|s| *s).await;
                })
                .await
                .map_err(ServeError::Serve)
        });
        tracing::info!(%addr, region = %state.cloud.config.region, zones = state.cloud.config.zones.len(), "cloud-sim serving");
        Ok(Self {
            addr,
            state,
            shutdown,
            tasks: vec![worker, dp, server],
        })
    }

    /// An in-memory server on `127.0.0.1:0` with `config`: what tests use.
    pub async fn start_in_memory(config: Config) -> Result<Self, ServeError> {
        Self::start(
            config,
            "sqlite::memory:",
            SocketAddr::from(([127, 0, 0, 1], 0)),
        )
        .await
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops accepting, lets in-flight requests finish, stops the worker and closes the database.
    pub async fn shutdown(self) -> Result<(), ServeError> {
        let _ = self.shutdown.send(true);
        let mut result = Ok(());
        for t in self.tasks {
            match t.await {
                Ok(Err(e)) => result = Err(e),
                Ok(Ok(())) => {}
                Err(join) => tracing::error!(error = %join, "server task panicked"),
            }
        }
        self.state.cloud.db.close().await;
        result
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully.
    pub async fn run_until_signal(self) -> Result<(), ServeError> {
        shutdown_signal().await;
        tracing::info!("shutting down");
        self.shutdown().await
    }
}

pub use sim_common::shutdown_signal;

/// `cloud-sim serve`: validates flags, prepares the data dir and serves until a signal.
pub async fn serve(args: config::ServeArgs) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let config = Config::from_args(&args)?;
    let url = Config::database_url(&args);
    if args.database_url.is_none() {
        std::fs::create_dir_all(&args.data_dir)
            .with_context(|| format!("cannot create data dir {}", args.data_dir.display()))?;
    }
    let server = Server::start(config, &url, args.listen).await?;
    tracing::info!(database = %url, "state is stored in the database");
    server.run_until_signal().await?;
    Ok(())
}
