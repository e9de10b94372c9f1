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
use tokio_util::sync::CancellationToken;

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
    /// A task the server needs ended while it was serving: the process must not carry on
    /// without it.
    #[error("the {task} task stopped while serving: {why}")]
    TaskDied { task: &'static str, why: String },
    #[error(
        "a data plane running apart shares the database with the API: it needs \
         --database-url postgres://... (SQLite has one writing process)"
    )]
    DataPlaneNeedsPostgres,
}

/// A running cloud-sim: the API server, the data plane and the delayed-transition worker, each a
/// named task under one cancellation token.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    shutdown: CancellationToken,
    tasks: sim_common::Supervised<Result<(), ServeError>>,
}

impl Server {
    /// Opens the database, binds `listen` (port 0 picks one) and starts serving.
    pub async fn start(
        config: Config,
        database_url: &str,
        listen: SocketAddr,
    ) -> Result<Self, ServeError> {
        let db = store::Db::connect(database_url).await?;
        let apart = config.data_plane_only.clone();
        if apart.is_some() && db.engine() != store::Engine::Postgres {
            return Err(ServeError::DataPlaneNeedsPostgres);
        }
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
            cloud.config().inter_zone_latency.clone(),
            metrics.clone(),
        );
        let state = AppState {
            cloud: cloud.clone(),
            metrics,
            dataplane: dataplane.clone(),
        };
        let shutdown = CancellationToken::new();
        let mut tasks = sim_common::Supervised::new();
        if let Some(name) = apart.clone() {
            // Publishing stops with the data plane's passes: the same token ends both.
            let (token, dp) = (shutdown.clone(), dataplane.clone());
            tasks.spawn("traffic publisher", async move {
                dp.publish(name, token).await;
                Ok(())
            });
        } else {
            let token = shutdown.clone();
            tasks.spawn("worker", async move {
                worker::run(cloud, token).await;
                Ok(())
            });
        }
        if state.cloud.config().data_plane || apart.is_some() {
            let token = shutdown.clone();
            tasks.spawn("data plane", async move {
                dataplane.run(token).await;
                Ok(())
            });
        } else {
            tracing::info!("data plane off: load balancers get addresses but serve no traffic");
        }
        let router = if apart.is_some() {
            http::data_plane_app(state.clone())
        } else {
            app(state.clone())
        };
        let token = shutdown.clone();
        tasks.spawn("API server", async move {
            axum::serve(listener, router)
                .with_graceful_shutdown(token.cancelled_owned())
                .await
                .map_err(ServeError::Serve)
        });
        tracing::info!(%addr, region = %state.cloud.config().region, zones = state.cloud.config().zones.len(), "cloud-sim serving");
        Ok(Self {
            addr,
            state,
            shutdown,
            tasks,
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

    /// Stops accepting, lets in-flight requests finish, stops the worker and the data plane (every
    /// load balancer's listeners and probes) and closes the database.
    pub async fn shutdown(mut self) -> Result<(), ServeError> {
        self.shutdown.cancel();
        let mut result = Ok(());
        for (task, exit) in self.tasks.join_all().await {
            match exit {
                Ok(Ok(())) => {}
                Ok(Err(e)) => result = Err(e),
                Err(why) => tracing::error!(task, why, "a server task died"),
            }
        }
        self.state.cloud.close().await;
        result
    }

    /// Kills the named task (`worker`, `data plane`, `API server`) as a crash would: for tests of
    /// the supervision in [`Server::run_until`].
    #[doc(hidden)]
    pub fn kill_task(&self, name: &str) {
        self.tasks.kill(name);
    }

    /// Serves until SIGINT or SIGTERM, then shuts down gracefully. If a task ends first (a panic,
    /// or the listener failing), the rest are shut down and the error names that task, so the
    /// process exits non-zero instead of serving without it.
    pub async fn run_until_signal(self) -> Result<(), ServeError> {
        self.run_until(shutdown_signal()).await
    }

    /// [`Server::run_until_signal`] with any future as the signal.
    pub async fn run_until(
        mut self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServeError> {
        let died = tokio::select! {
            () = signal => None,
            Some((task, exit)) = self.tasks.join_next() => Some(ServeError::TaskDied {
                task,
                why: match exit {
                    Ok(Ok(())) => "it returned".to_owned(),
                    Ok(Err(e)) => sim_common::error_chain(&e),
                    Err(why) => why,
                },
            }),
        };
        match died {
            None => {
                tracing::info!("shutting down");
                self.shutdown().await
            }
            Some(e) => {
                tracing::error!(error = %e, "shutting down: a task died");
                let _ = self.shutdown().await;
                Err(e)
            }
        }
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
    tracing::info!(database = %store::redacted_url(&url), "state is stored in the database");
    server.run_until_signal().await?;
    Ok(())
}

/// `cloud-sim data-plane`: the data plane alone, on the API replicas' PostgreSQL database.
pub async fn data_plane(args: config::DataPlaneArgs) -> anyhow::Result<()> {
    let mut config = Config::from_args(&args.serve)?;
    config.frontends = (!args.frontends.is_empty()).then(|| args.frontends.clone());
    config.data_plane_only = Some(
        args.name
            .clone()
            .unwrap_or_else(|| format!("data-plane@{}", args.serve.listen)),
    );
    let url = Config::database_url(&args.serve);
    let server = Server::start(config, &url, args.serve.listen).await?;
    tracing::info!(database = %store::redacted_url(&url), frontends = ?args.frontends, "data plane running apart from the API");
    server.run_until_signal().await?;
    Ok(())
}
