//! ccm: a Kubernetes cloud-controller-manager for simcloud.
//!
//! Layout: [`config`] holds the flags and the cloud-config file; [`controllers`] the
//! `--controllers` syntax; [`cloud`] the provider traits (mirroring upstream's InstancesV2) with
//! the simcloud and fake implementations; [`node_plan`] the pure planning of the node controllers;
//! [`node_controller`] (`cloud-node`) and [`node_lifecycle`] (`cloud-node-lifecycle`) act on it;
//! [`leader`] is Lease-based leader election; [`server`] serves health and metrics; [`names`]
//! holds every name the cluster sees. [`run`] wires it together.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

pub use tokio_util::sync::CancellationToken;

pub mod cloud;
pub mod config;
pub mod controllers;
pub mod credentials;
pub mod delegation;
pub mod event_recorder;
pub mod informer;
pub mod leader;
pub mod metrics;
pub mod names;
pub mod node_controller;
pub mod node_lifecycle;
pub mod node_plan;
pub mod rate_limit;
pub mod route_controller;
pub mod server;
pub mod service_controller;
pub mod service_plan;
pub mod serving;
pub mod upstream_flags;

use crate::cloud::CloudProvider;
use crate::controllers::ControllerName;

pub use sim_common::{error_chain, shutdown_signal};

/// An event recorder reporting as `controller` from this replica.
pub fn recorder(
    client: &kube::Client,
    controller: &str,
    identity: &str,
) -> event_recorder::Recorder {
    event_recorder::Recorder::new(
        client.clone(),
        kube::runtime::events::Reporter {
            controller: controller.to_owned(),
            instance: Some(identity.to_owned()),
        },
    )
}

/// Settings of the controllers, independent of how the ccm was started.
#[derive(Debug, Clone)]
pub struct Options {
    pub controllers: BTreeSet<ControllerName>,
    pub identity: String,
    pub concurrent_node_syncs: u16,
    pub concurrent_node_status_updates: u16,
    pub node_status_update_frequency: Duration,
    pub node_monitor_period: Duration,
    /// `--cluster-name`: tags and names of cloud resources.
    pub cluster_name: String,
    /// Parsed `--cluster-cidr` (required when routes are configured).
    pub cluster_cidrs: Vec<ipnet::IpNet>,
    pub configure_cloud_routes: bool,
    pub route_reconciliation_period: Duration,
    pub concurrent_service_syncs: u16,
    /// Handle Services of this `loadBalancerClass` (instead of class-less ones).
    pub load_balancer_class: Option<String>,
}

impl Options {
    /// All node controllers with upstream defaults but quick periods, for tests.
    pub fn for_tests(identity: &str) -> Self {
        Self {
            controllers: [
                ControllerName::CloudNode,
                ControllerName::CloudNodeLifecycle,
            ]
            .into(),
            identity: identity.to_owned(),
            concurrent_node_syncs: 4,
            concurrent_node_status_updates: 4,
            node_status_update_frequency: Duration::from_secs(300),
            node_monitor_period: Duration::from_millis(200),
            cluster_name: "kubernetes".into(),
            cluster_cidrs: vec!["10.244.0.0/16".parse().expect("valid CIDR")],
            configure_cloud_routes: true,
            route_reconciliation_period: Duration::from_millis(300),
            concurrent_service_syncs: 4,
            load_balancer_class: None,
        }
    }
}

/// The running controllers (and the Node informer they share), each a named task.
pub type Controllers = sim_common::Supervised<()>;

/// Starts the enabled controllers; they run until `stop`. Controllers whose cloud interface is
/// missing are skipped with a warning, as upstream does.
pub fn start_controllers(
    clients: impl Into<credentials::ControllerClients>,
    cloud: Arc<dyn CloudProvider>,
    metrics: Arc<metrics::Metrics>,
    opts: &Options,
    stop: &CancellationToken,
) -> Controllers {
    let mut set = Controllers::new();
    let clients = clients.into();
    let instances = cloud::HasInstances::of(&cloud);
    let routes = cloud::HasRoutes::of(&cloud);
    let load_balancers = cloud::HasLoadBalancers::of(&cloud);
    // One Node watch for all controllers, with the ccm's own credentials (upstream's informers
    // use them too, with --use-service-account-credentials or without).
    let mut informer = informer::NodeInformer::new(clients.root());
    for c in &opts.controllers {
        match c {
            ControllerName::CloudNode if let Some(instances) = &instances => {
                let ctx = Arc::new(node_controller::NodeContext::new(
                    clients.for_controller(*c),
                    instances.clone(),
                    metrics.clone(),
                    &opts.identity,
                ));
                let status_workers = if opts.concurrent_node_status_updates == 0 {
                    opts.concurrent_node_syncs
                } else {
                    opts.concurrent_node_status_updates
                };
                set.spawn(
                    ControllerName::CloudNode.as_str(),
                    node_controller::run(
                        ctx,
                        informer.nodes(),
                        informer.subscribe(),
                        opts.concurrent_node_syncs,
                        opts.node_status_update_frequency,
                        status_workers,
                        stop.clone().cancelled_owned(),
                    ),
                );
            }
            ControllerName::CloudNodeLifecycle if let Some(instances) = &instances => {
                let ctx = Arc::new(node_lifecycle::LifecycleContext::new(
                    clients.for_controller(*c),
                    instances.clone(),
                    metrics.clone(),
                    &opts.identity,
                ));
                set.spawn(
                    ControllerName::CloudNodeLifecycle.as_str(),
                    node_lifecycle::run(
                        ctx,
                        informer.nodes(),
                        opts.node_monitor_period,
                        stop.clone().cancelled_owned(),
                    ),
                );
            }
            ControllerName::Route if !opts.configure_cloud_routes => {
                tracing::info!("--configure-cloud-routes=false: not starting the route controller");
                continue;
            }
            ControllerName::Route if let Some(routes) = &routes => {
                let ctx = Arc::new(route_controller::RouteContext::new(
                    clients.for_controller(*c),
                    routes.clone(),
                    metrics.clone(),
                    &opts.identity,
                    &opts.cluster_name,
                    opts.cluster_cidrs.clone(),
                ));
                set.spawn(
                    ControllerName::Route.as_str(),
                    route_controller::run(
                        ctx,
                        informer.nodes(),
                        informer.subscribe(),
                        opts.route_reconciliation_period,
                        stop.clone().cancelled_owned(),
                    ),
                );
            }
            ControllerName::Service if let Some(load_balancers) = &load_balancers => {
                let ctx = Arc::new(service_controller::ServiceContext::new(
                    clients.for_controller(*c),
                    load_balancers.clone(),
                    metrics.clone(),
                    &opts.identity,
                    &opts.cluster_name,
                    opts.load_balancer_class.clone(),
                ));
                set.spawn(
                    ControllerName::Service.as_str(),
                    service_controller::run(
                        ctx,
                        informer.nodes(),
                        informer.subscribe(),
                        opts.concurrent_service_syncs,
                        stop.clone().cancelled_owned(),
                    ),
                );
            }
            other => {
                let needs = match other {
                    ControllerName::Route => "routes",
                    ControllerName::Service => "load balancers",
                    _ => "instances",
                };
                tracing::warn!(
                    controller = other.as_str(),
                    needs,
                    "the cloud provider does not support what this controller needs; skipping it"
                );
                continue;
            }
        }
        tracing::info!(controller = c.as_str(), "started controller");
    }
    if !set.is_empty() {
        set.spawn(
            "node informer",
            informer.run(stop.clone().cancelled_owned()),
        );
    }
    set
}

/// The client for the serving port's reviews: from `path` when given (upstream's
/// `--authentication-kubeconfig` / `--authorization-kubeconfig`), else the ccm's own. Not rate
/// limited by `--kube-api-qps`, as upstream's delegated clients are not.
async fn review_client(path: &Option<PathBuf>, own: &kube::Client) -> anyhow::Result<kube::Client> {
    match path {
        Some(p) => client_for(config_from_file(p).await?, None),
        None => Ok(own.clone()),
    }
}

async fn config_from_file(path: &std::path::Path) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    let kc = kube::config::Kubeconfig::read_from(path)
        .with_context(|| format!("cannot read kubeconfig {}", path.display()))?;
    kube::Config::from_custom_kubeconfig(kc, &kube::config::KubeConfigOptions::default())
        .await
        .with_context(|| format!("invalid kubeconfig {}", path.display()))
}

/// Builds the kube client from `--kubeconfig` / `--master` (in-cluster config when both are unset).
pub async fn kube_client(args: &config::Args) -> anyhow::Result<kube::Client> {
    client_for(
        kube_config(args).await?,
        Some((args.kube_api_qps, args.kube_api_burst)),
    )
}

/// The Kubernetes connection the flags describe (`--kubeconfig`, in-cluster, `--master`).
pub async fn kube_config(args: &config::Args) -> anyhow::Result<kube::Config> {
    use anyhow::Context as _;
    let mut cfg = match &args.kubeconfig {
        Some(path) => config_from_file(path).await?,
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig given and no in-cluster configuration found")?,
    };
    if let Some(master) = &args.master {
        cfg.cluster_url = master
            .parse()
            .with_context(|| format!("invalid --master {master:?}"))?;
    }
    Ok(cfg)
}

/// A Kubernetes client for the ccm: it names itself `cloud-controller-manager/<version>` in the
/// User-Agent, as upstream's does, so API-server logs (and kube-sim's request record) show it,
/// and with `limit` = `(qps, burst)` waits for a token before each request, as client-go does
/// for `--kube-api-qps`/`--kube-api-burst`.
pub fn client_for(cfg: kube::Config, limit: Option<(f32, u32)>) -> anyhow::Result<kube::Client> {
    build_client(cfg, limit, None)
}

/// [`client_for`] for a controller's own service account: the User-Agent ends with its name, as
/// upstream's per-controller clients do.
pub fn client_for_account(
    cfg: kube::Config,
    limit: Option<(f32, u32)>,
    account: &str,
) -> anyhow::Result<kube::Client> {
    build_client(cfg, limit, Some(account))
}

fn build_client(
    mut cfg: kube::Config,
    limit: Option<(f32, u32)>,
    account: Option<&str>,
) -> anyhow::Result<kube::Client> {
    use anyhow::Context as _;
    let mut agent = format!("{}/{}", names::USER_AGENT, env!("CARGO_PKG_VERSION"));
    if let Some(a) = account {
        agent = format!("{agent}/{a}");
    }
    cfg.headers.push((
        axum::http::header::USER_AGENT,
        axum::http::HeaderValue::from_str(&agent).context("user agent")?,
    ));
    let builder =
        kube::client::ClientBuilder::try_from(cfg).context("cannot build the Kubernetes client")?;
    Ok(match limit {
        Some((qps, burst)) => builder
            .with_layer(&rate_limit::QpsLayer::new(qps, burst))
            .build(),
        None => builder.build(),
    })
}

/// Why the controllers stopped.
#[derive(Debug, PartialEq, Eq)]
pub enum Stopped {
    Signal,
    LostLease,
    /// A controller (or the informer) ended on its own: returned, or panicked.
    TaskDied(&'static str, String),
}

/// Runs until `signal`, until `lease_lost` (the elector stopped holding the lease), or until one
/// of `tasks` ends on its own: the ccm never carries on without one of its controllers.
pub async fn until_stopped(
    tasks: &mut Controllers,
    lease_lost: impl std::future::Future<Output = ()>,
    signal: impl std::future::Future<Output = ()>,
) -> Stopped {
    let ended = async {
        match tasks.join_next().await {
            Some((task, Ok(()))) => (task, "it returned".to_owned()),
            Some((task, Err(why))) => (task, why),
            None => std::future::pending().await,
        }
    };
    tokio::select! {
        () = lease_lost => Stopped::LostLease,
        () = signal => Stopped::Signal,
        (task, why) = ended => Stopped::TaskDied(task, why),
    }
}

/// The ccm: validates flags, connects, elects a leader, runs controllers until a signal or until
/// leadership is lost (an error: the process should exit and restart, as upstream's does).
pub async fn run(args: config::Args) -> anyhow::Result<()> {
    let v = args.validate().map_err(anyhow::Error::msg)?;
    for w in args.upstream.warnings() {
        tracing::warn!("{w}");
    }
    let client = kube_client(&args).await?;
    let cloud: Arc<dyn CloudProvider> = Arc::new(
        cloud::simcloud::SimCloud::from_config(&v.cloud)
            .map_err(|e| anyhow::anyhow!("the cloud config: {}", error_chain(&e)))?,
    );
    let metrics = Arc::new(metrics::Metrics::new());
    let health = Arc::new(server::Health::new(args.leader_elect_renew_deadline));
    if let Some(serving) = &v.serving {
        let delegation = Arc::new(delegation::Delegation::new(
            Arc::new(delegation::KubeReviewer {
                authn: review_client(&args.upstream.authentication_kubeconfig, &client).await?,
                authz: review_client(&args.upstream.authorization_kubeconfig, &client).await?,
            }),
            &args.upstream.authorization_always_allow_paths,
        ));
        server::spawn(serving, health.clone(), metrics.clone(), delegation)
            .await
            .map_err(|e| anyhow::anyhow!("serving on {}: {e}", serving.addr))?;
    }
    let opts = Options {
        controllers: v.controllers.clone(),
        identity: v.identity.clone(),
        concurrent_node_syncs: args.concurrent_node_syncs,
        concurrent_node_status_updates: args.concurrent_node_status_updates,
        node_status_update_frequency: args.node_status_update_frequency,
        node_monitor_period: args.node_monitor_period,
        cluster_name: args.cluster_name.clone(),
        cluster_cidrs: v.cluster_cidrs.clone(),
        configure_cloud_routes: args.configure_cloud_routes,
        route_reconciliation_period: args.route_reconciliation_period,
        concurrent_service_syncs: args.concurrent_service_syncs,
        load_balancer_class: args.load_balancer_class.clone(),
    };
    tracing::info!(identity = %opts.identity, controllers = ?opts.controllers.iter().map(|c| c.as_str()).collect::<Vec<_>>(), project = v.cloud.project.as_deref().unwrap_or("default"), "starting cloud-controller-manager");
    let mut elector = args.leader_elect.then(|| {
        leader::LeaderElector::new(
            client.clone(),
            leader::LeaderConfig {
                namespace: args.leader_elect_resource_namespace.clone(),
                name: args.leader_elect_resource_name.clone(),
                identity: opts.identity.clone(),
                lease_duration: args.leader_elect_lease_duration,
                renew_deadline: args.leader_elect_renew_deadline,
                retry_period: args.leader_elect_retry_period,
            },
        )
    });
    health.set_started();
    let leader_label = metrics::QueueLabels {
        name: names::LEASE_NAME.into(),
    };
    if let Some(e) = elector.as_mut() {
        tokio::select! {
            _ = e.acquire() => {}
            _ = shutdown_signal() => return Ok(()),
        }
        health.set_leading(true);
        metrics.leader.get_or_create(&leader_label).set(1);
    }
    cloud
        .initialize()
        .await
        .map_err(|e| anyhow::anyhow!("initializing the cloud provider: {}", error_chain(&e)))?;
    // As upstream: once leading, each controller gets its own service account's token.
    let (clients, renewer) = if args.upstream.use_service_account_credentials == Some(true) {
        let base = kube_config(&args).await?;
        let dir = std::env::temp_dir().join(format!("ccm-tokens-{}", std::process::id()));
        let controllers: Vec<ControllerName> = opts.controllers.iter().copied().collect();
        let (clients, renewer) = credentials::service_account_clients(
            &client,
            &base,
            Some((args.kube_api_qps, args.kube_api_burst)),
            &controllers,
            &dir,
        )
        .await
        .map_err(|e| anyhow::anyhow!("--use-service-account-credentials: {}", error_chain(&e)))?;
        tracing::info!(dir = %dir.display(), "controllers use their own service accounts' tokens");
        (clients, Some(renewer))
    } else {
        (credentials::ControllerClients::shared(client.clone()), None)
    };
    let stop = CancellationToken::new();
    let mut tasks = start_controllers(clients, cloud, metrics.clone(), &opts, &stop);
    let renewals = async {
        match elector.as_mut() {
            Some(e) => {
                let h = health.clone();
                e.hold(move || h.renewed()).await;
            }
            None => std::future::pending().await,
        }
    };
    let stopped = until_stopped(&mut tasks, renewals, shutdown_signal()).await;
    stop.cancel();
    while tasks.join_next().await.is_some() {}
    if let Some(r) = renewer {
        r.abort();
    }
    metrics.leader.get_or_create(&leader_label).set(0);
    health.set_leading(false);
    match stopped {
        Stopped::Signal => {}
        Stopped::LostLease => {
            anyhow::bail!("lost the leader lease; exiting so a fresh process can campaign again")
        }
        Stopped::TaskDied(task, why) => {
            anyhow::bail!(
                "the {task} task stopped while running ({why}); exiting so a fresh process takes over"
            )
        }
    }
    if let Some(e) = elector.as_mut() {
        e.release().await;
    }
    tracing::info!("stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::{pending, ready};

    #[tokio::test]
    async fn a_controller_that_dies_stops_the_ccm_and_is_named() {
        let mut tasks = Controllers::new();
        tasks.spawn("route", async { panic!("no routes today") });
        tasks.spawn("service", pending());
        let stopped = until_stopped(&mut tasks, pending(), pending()).await;
        assert_eq!(
            stopped,
            Stopped::TaskDied("route", "it panicked: no routes today".into())
        );
        let mut tasks = Controllers::new();
        tasks.spawn("cloud-node", async {});
        assert_eq!(
            until_stopped(&mut tasks, pending(), pending()).await,
            Stopped::TaskDied("cloud-node", "it returned".into())
        );
    }

    #[tokio::test]
    async fn a_signal_or_a_lost_lease_stops_the_ccm() {
        let mut tasks = Controllers::new();
        tasks.spawn("service", pending());
        assert_eq!(
            until_stopped(&mut tasks, pending(), ready(())).await,
            Stopped::Signal
        );
        assert_eq!(
            until_stopped(&mut tasks, ready(()), pending()).await,
            Stopped::LostLease
        );
        // No controllers at all (every one skipped) is not a death: only a signal ends it.
        let mut none = Controllers::new();
        assert_eq!(
            until_stopped(&mut none, pending(), ready(())).await,
            Stopped::Signal
        );
    }
}
