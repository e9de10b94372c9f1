//! The load-balancer data plane: every active load balancer listens on each zonal frontend and
//! listener port (TCP, and UDP with per-client-flow stickiness) and proxies to its backends'
//! `private IP : backend port`,
//! zone-aware ([`zone`]), health-checked ([`health`]) and counted per (port, frontend zone,
//! backend).
//!
//! A reconcile pass (at start-up, after every committed change, and every second) makes the
//! running listeners match the database, so listeners follow the load balancer's life and come
//! back after a restart. A zone in `outage` closes its frontends and marks its backends
//! unhealthy. The client's zone is the zone of the instance it connects from, when its source
//! address is an instance's; otherwise the zone of the frontend it connected to.

pub mod health;
mod lb;
pub mod listeners;
mod probes;
mod tcp;
mod udp;
pub mod zone;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use cloud_api::{
    BackendHealth, Balancing, HealthCheckProtocol, LoadBalancer, LoadBalancerState, Protocol,
    TrafficReport, TrafficRow,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::ops::Cloud;
use crate::store;
use health::Health;
use lb::*;
use probes::*;
use tcp::*;
use udp::*;
use zone::ZoneBackends;

/// After a write, how long the data plane waits for more before its reconcile pass.
pub const RECONCILE_COALESCE: Duration = Duration::from_millis(50);
/// How long connecting to a backend may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// Half-life of the per-zone client-rate estimate that feeds zone-aware routing.
pub const RATE_HALF_LIFE: Duration = Duration::from_secs(10);
/// Connections each frontend zone is assumed to have had, so light traffic does not look skewed.
pub const RATE_PRIOR: f64 = 5.0;
/// How long a computed zone plan is reused (rates move slowly; health changes clear it at once).
pub const PLAN_TTL: Duration = Duration::from_millis(100);
/// A zone plan is also recomputed after this many connections, so a fast burst that shifts the
/// client mix is acted on within the burst rather than after it.
pub const PLAN_MAX_USES: u64 = 32;

/// How often a data plane running apart publishes its traffic reports (the API leaves out
/// reports five of these old).
pub const PUBLISH_EVERY: Duration = Duration::from_secs(1);

/// Added delay on connections that cross zones: `(from, to) -> delay`.
pub type LatencyMatrix = BTreeMap<(String, String), Duration>;

/// The data plane of one cloud-sim.
#[derive(Debug)]
pub struct DataPlane {
    cloud: Cloud,
    metrics: Arc<crate::metrics::Metrics>,
    lbs: Mutex<HashMap<String, Arc<LbRt>>>,
    latency: LatencyMatrix,
    /// Zones of instance addresses: a client connecting from an instance is in that instance's zone.
    instance_zones: Mutex<HashMap<Ipv4Addr, String>>,
}

impl DataPlane {
    /// A client on an instance is in that instance's zone; any other client is in the zone of
    /// the frontend it reached.
    fn client_zone(&self, peer: SocketAddr, frontend_zone: &str) -> String {
        match peer.ip() {
            std::net::IpAddr::V4(ip) => self
                .instance_zones
                .lock()
                .expect("instance zones lock")
                .get(&ip)
                .cloned(),
            std::net::IpAddr::V6(_) => None,
        }
        .unwrap_or_else(|| frontend_zone.to_owned())
    }

    pub fn new(
        cloud: Cloud,
        latency: LatencyMatrix,
        metrics: Arc<crate::metrics::Metrics>,
    ) -> Arc<Self> {
        Arc::new(Self {
            cloud,
            metrics,
            lbs: Mutex::default(),
            latency,
            instance_zones: Mutex::default(),
        })
    }

    /// The traffic of a load balancer (empty before any connection).
    pub fn report(&self, lb: &LoadBalancer) -> TrafficReport {
        match self.lbs.lock().expect("lbs lock").get(lb.id.as_str()) {
            Some(rt) => rt.report(),
            None => TrafficReport {
                load_balancer_id: lb.id.to_string(),
                rows: vec![],
                backends: lb
                    .backends
                    .iter()
                    .map(|b| BackendHealth {
                        instance_id: b.instance_id.to_string(),
                        zone: b.zone.clone(),
                        healthy: false,
                        active_connections: 0,
                    })
                    .collect(),
                connections: 0,
                refused: 0,
                in_zone_fraction: None,
            },
        }
    }

    /// Publishes every load balancer's report as `name` every [`PUBLISH_EVERY`] until
    /// `shutdown`, for API replicas that run without a data plane (`cloud-sim data-plane`).
    pub async fn publish(self: Arc<Self>, name: String, shutdown: CancellationToken) {
        loop {
            let reports: Vec<TrafficReport> = self
                .lbs
                .lock()
                .expect("lbs lock")
                .values()
                .map(|rt| rt.report())
                .collect();
            if let Err(e) = self.cloud.publish_traffic(&name, &reports).await {
                tracing::warn!(error = %crate::http::error::error_chain(&e), "publishing traffic reports failed; will retry");
            }
            tokio::select! {
                () = tokio::time::sleep(PUBLISH_EVERY) => {}
                () = shutdown.cancelled() => return,
            }
        }
    }

    /// Runs reconcile passes until `shutdown` is cancelled; then stops every load balancer's
    /// listeners and probes.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        loop {
            let notified = self.cloud.changes().notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            if let Err(e) = self.reconcile().await {
                tracing::warn!(error = %crate::http::error::error_chain(&e), "data plane reconcile failed");
            }
            let written = tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => false,
                _ = &mut notified => true,
                _ = shutdown.cancelled() => break,
            };
            if written {
                // Let a burst of writes settle into one pass (each pass reads every load balancer
                // and instance address).
                tokio::time::sleep(RECONCILE_COALESCE).await;
            }
        }
        for rt in self.lbs.lock().expect("lbs lock").drain().map(|(_, v)| v) {
            rt.stop();
        }
    }

    /// Makes the running listeners and backends match the database.
    pub async fn reconcile(self: &Arc<Self>) -> Result<(), store::StoreError> {
        let view = self.cloud.data_plane_view().await?;
        *self.instance_zones.lock().expect("instance zones lock") =
            view.instance_zones.into_iter().collect();
        let outage = view.outage;
        // A data plane limited to some frontend networks (`cloud-sim data-plane --frontends`)
        // serves the frontends there, and only load balancers that have one.
        let mine = self.cloud.config().frontends.as_deref();
        let active: Vec<LoadBalancer> = view
            .load_balancers
            .into_iter()
            .filter(|lb| lb.state == LoadBalancerState::Active)
            .filter_map(|mut lb| {
                lb.frontends
                    .retain(|f| crate::domain::traffic::serves(mine, f.ip));
                (!lb.frontends.is_empty()).then_some(lb)
            })
            .collect();
        let ids: HashSet<String> = active.iter().map(|lb| lb.id.to_string()).collect();
        let mut map = self.lbs.lock().expect("lbs lock");
        map.retain(|id, rt| {
            let keep = ids.contains(id);
            if !keep {
                rt.stop();
                tracing::info!(lb = %id, "data plane: load balancer gone; listeners closed");
            }
            keep
        });
        for lb in active {
            let id = lb.id.to_string();
            let rt = map
                .entry(id.clone())
                .or_insert_with(|| {
                    Arc::new(LbRt {
                        id: id.clone(),
                        lb: Mutex::new(lb.clone()),
                        backends: Mutex::default(),
                        outage: Mutex::default(),
                        rates: Mutex::default(),
                        plans: Mutex::default(),
                        rr: AtomicUsize::new(0),
                        least_connections: Default::default(),
                        rows: Mutex::default(),
                        refused: AtomicU64::new(0),
                        listeners: Mutex::default(),
                        checker: Mutex::default(),
                        connections: CancellationToken::new(),
                        bind_failed: Mutex::default(),
                    })
                })
                .clone();
            *rt.lb.lock().expect("lb lock") = lb.clone();
            rt.least_connections.store(
                lb.zone_policy.balancing == Balancing::LeastConnections,
                Ordering::Relaxed,
            );
            *rt.outage.lock().expect("outage lock") = outage.clone();
            rt.replan();
            {
                // Keep health state and open-connection counts for backends that stay.
                let mut backends = rt.backends.lock().expect("backends lock");
                let old: HashMap<String, (Health, Arc<AtomicUsize>)> = backends
                    .iter()
                    .map(|b| (b.instance_id.clone(), (b.health, b.active.clone())))
                    .collect();
                *backends = lb
                    .backends
                    .iter()
                    .map(|b| {
                        let (health, active) =
                            old.get(b.instance_id.as_str()).cloned().unwrap_or_default();
                        BackendRt {
                            instance_id: b.instance_id.to_string(),
                            zone: b.zone.clone(),
                            ip: b.private_ip,
                            health,
                            active,
                        }
                    })
                    .collect();
            }
            let mut listeners = rt.listeners.lock().expect("listeners lock");
            let plan = listeners::plan(
                &lb,
                &outage,
                listeners.iter().map(|(k, h)| (k, h.is_finished())),
            );
            for key in &plan.stop {
                if let Some(h) = listeners.remove(key) {
                    h.abort();
                }
            }
            for ((zone, port, proto), addr) in plan.start {
                let task = match proto {
                    Protocol::Tcp => std::net::TcpListener::bind(addr)
                        .and_then(|l| {
                            l.set_nonblocking(true)?;
                            TcpListener::from_std(l)
                        })
                        .map(|l| {
                            tokio::spawn(accept_loop(
                                self.clone(),
                                rt.clone(),
                                l,
                                zone.clone(),
                                port,
                            ))
                        }),
                    Protocol::Udp => std::net::UdpSocket::bind(addr)
                        .and_then(|s| {
                            s.set_nonblocking(true)?;
                            tokio::net::UdpSocket::from_std(s)
                        })
                        .map(|s| {
                            tokio::spawn(udp_loop(
                                self.clone(),
                                rt.clone(),
                                Arc::new(s),
                                zone.clone(),
                                port,
                            ))
                        }),
                };
                let key = (zone, port, proto);
                let mut failed = rt.bind_failed.lock().expect("bind_failed lock");
                match task {
                    Ok(task) => {
                        let recovered = failed.remove(&key);
                        tracing::info!(lb = %id, %addr, zone = key.0, protocol = ?proto, recovered, "data plane: listening");
                        listeners.insert(key, task);
                    }
                    // Warn once (the address may be another process's for a while), then retry
                    // every pass quietly.
                    Err(e) if failed.insert(key) => {
                        let hint = if e.kind() == std::io::ErrorKind::PermissionDenied {
                            "ports below 1024 need root, or sysctl net.ipv4.ip_unprivileged_port_start=0"
                        } else {
                            "another process may hold the address"
                        };
                        tracing::warn!(lb = %id, %addr, protocol = ?proto, error = %e, hint, "data plane: cannot listen; will keep retrying")
                    }
                    Err(e) => {
                        tracing::debug!(lb = %id, %addr, protocol = ?proto, error = %e, "data plane: still cannot listen")
                    }
                }
            }
            drop(listeners);
            let mut checker = rt.checker.lock().expect("checker lock");
            if checker.as_ref().is_none_or(JoinHandle::is_finished) {
                *checker = Some(tokio::spawn(health_loop(rt.clone())));
            }
        }
        Ok(())
    }
}
