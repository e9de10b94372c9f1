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

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
struct RowKey {
    port: u16,
    frontend_zone: String,
    backend_zone: String,
    backend: String,
}

#[derive(Debug, Default)]
struct RowStats {
    connections: AtomicU64,
    bytes_in: AtomicU64,
    bytes_out: AtomicU64,
    errors: AtomicU64,
    /// The same counts on /metrics; handles made once per row, not per connection.
    metrics: Option<RowMetrics>,
}

#[derive(Debug)]
struct RowMetrics {
    connections: prometheus_client::metrics::counter::Counter,
    bytes_in: prometheus_client::metrics::counter::Counter,
    bytes_out: prometheus_client::metrics::counter::Counter,
    errors: prometheus_client::metrics::counter::Counter,
}

impl RowStats {
    fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.errors.inc();
        }
    }
}

/// Decaying per-zone connection counts: the measured share of clients per zone.
#[derive(Debug, Default)]
struct Rates {
    counts: BTreeMap<String, f64>,
    last: Option<Instant>,
    /// Connections recorded so far (not decayed): plans note it to expire after [`PLAN_MAX_USES`].
    recorded: u64,
}

impl Rates {
    fn record(&mut self, zone: &str, now: Instant) {
        if let Some(last) = self.last {
            let decay =
                0.5f64.powf(now.duration_since(last).as_secs_f64() / RATE_HALF_LIFE.as_secs_f64());
            self.counts.values_mut().for_each(|c| *c *= decay);
        }
        self.last = Some(now);
        self.recorded += 1;
        *self.counts.entry(zone.to_owned()).or_default() += 1.0;
    }
}

#[derive(Debug, Clone)]
struct BackendRt {
    instance_id: String,
    zone: String,
    ip: Ipv4Addr,
    health: Health,
    /// Connections (UDP: flows) open to this backend; kept across reconciles.
    active: Arc<AtomicUsize>,
}

/// One open connection or flow to a backend: counted in its `active` until dropped.
#[derive(Debug)]
struct ActiveConn(Arc<AtomicUsize>);

impl ActiveConn {
    fn open(active: &Arc<AtomicUsize>) -> Self {
        active.fetch_add(1, Ordering::Relaxed);
        Self(active.clone())
    }
}

impl Drop for ActiveConn {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Least connections: the index of the smallest load, scanning from `start` (wrapping) so
/// that ties go to each backend in turn. `loads` must not be empty.
fn least_loaded(loads: &[usize], start: usize) -> usize {
    let n = loads.len();
    (0..n)
        .map(|k| (start + k) % n)
        .min_by_key(|&i| loads[i])
        .expect("loads is not empty")
}

/// A zone plan, when it was computed and the connection count then (`None` inside: refuse).
type CachedPlan = (Instant, u64, Arc<Option<zone::Plan>>);

/// The live state of one load balancer.
#[derive(Debug)]
struct LbRt {
    id: String,
    lb: Mutex<LoadBalancer>,
    backends: Mutex<Vec<BackendRt>>,
    outage: Mutex<HashSet<String>>,
    rates: Mutex<Rates>,
    /// Zone plans per client zone, reused for [`PLAN_TTL`] or [`PLAN_MAX_USES`] connections.
    plans: Mutex<HashMap<String, CachedPlan>>,
    rr: AtomicUsize,
    /// The LB's `zone_policy.balancing` is least connections (else round robin).
    least_connections: std::sync::atomic::AtomicBool,
    rows: Mutex<BTreeMap<RowKey, Arc<RowStats>>>,
    refused: AtomicU64,
    listeners: Mutex<HashMap<(String, u16, Protocol), JoinHandle<()>>>,
    checker: Mutex<Option<JoinHandle<()>>>,
    /// Cancelled when the load balancer goes (deleted, or the data plane shuts down): its open
    /// connections end with it rather than outliving it.
    connections: CancellationToken,
    /// Listeners that could not bind and were warned about (retried quietly until they bind).
    bind_failed: Mutex<HashSet<(String, u16, Protocol)>>,
}

impl LbRt {
    /// The backend port of the listener on `port`/`protocol`, if the LB still has one.
    fn backend_port(&self, port: u16, protocol: Protocol) -> Option<u16> {
        self.lb
            .lock()
            .expect("lb lock")
            .listeners
            .iter()
            .find(|l| l.port == port && l.protocol == protocol)
            .map(|l| l.backend_port)
    }

    fn row(&self, key: RowKey, metrics: &crate::metrics::Metrics) -> Arc<RowStats> {
        let mut rows = self.rows.lock().expect("rows lock");
        if let Some(r) = rows.get(&key) {
            return r.clone();
        }
        let labels = crate::metrics::LbLabels {
            lb: self.id.clone(),
            port: key.port,
            frontend_zone: key.frontend_zone.clone(),
            backend_zone: key.backend_zone.clone(),
        };
        let m = RowMetrics {
            connections: metrics.lb_connections.get_or_create(&labels).clone(),
            bytes_in: metrics.lb_bytes_in.get_or_create(&labels).clone(),
            bytes_out: metrics.lb_bytes_out.get_or_create(&labels).clone(),
            errors: metrics.lb_errors.get_or_create(&labels).clone(),
        };
        let r = Arc::new(RowStats {
            metrics: Some(m),
            ..RowStats::default()
        });
        rows.insert(key, r.clone());
        r
    }

    /// Picks a backend for a client in `client_zone` and counts the connection as open on it
    /// until the returned [`ActiveConn`] drops; `None` to refuse.
    fn choose(
        &self,
        client_zone: &str,
        metrics: &crate::metrics::Metrics,
    ) -> Option<(BackendRt, ActiveConn)> {
        let now = Instant::now();
        let recorded = {
            let mut rates = self.rates.lock().expect("rates lock");
            rates.record(client_zone, now);
            rates.recorded
        };
        let plan = {
            let mut cache = self.plans.lock().expect("plans lock");
            match cache.get(client_zone) {
                Some((at, uses_from, p))
                    if now.duration_since(*at) < PLAN_TTL
                        && recorded.saturating_sub(*uses_from) < PLAN_MAX_USES =>
                {
                    p.clone()
                }
                _ => {
                    let p = Arc::new(self.compute_plan(client_zone));
                    cache.insert(client_zone.to_owned(), (now, recorded, p.clone()));
                    p
                }
            }
        };
        let plan = plan.as_ref().as_ref()?;
        let zone = zone::pick(plan, rand::random::<f64>());
        let counter = match plan.routing {
            zone::Routing::Other => None,
            zone::Routing::AllDirectly => Some("lb_zone_routing_all_directly"),
            zone::Routing::Sampled if zone == client_zone => Some("lb_zone_routing_sampled"),
            zone::Routing::Sampled => Some("lb_zone_routing_cross_zone"),
            zone::Routing::ClusterTooSmall => Some("lb_zone_cluster_too_small"),
            zone::Routing::Panic => Some("lb_healthy_panic"),
        };
        if let Some(c) = counter {
            metrics.zone_routing(c, &self.id);
        }
        let backends = self.backends.lock().expect("backends lock");
        let eligible = |b: &&BackendRt| b.zone == zone && (plan.unhealthy || b.health.healthy);
        let n = backends.iter().filter(eligible).count();
        if n == 0 {
            return None;
        }
        let turn = self.rr.fetch_add(1, Ordering::Relaxed) % n;
        let i = if self.least_connections.load(Ordering::Relaxed) {
            let loads: Vec<usize> = backends
                .iter()
                .filter(eligible)
                .map(|b| b.active.load(Ordering::Relaxed))
                .collect();
            least_loaded(&loads, turn)
        } else {
            turn
        };
        let b = backends.iter().filter(eligible).nth(i)?.clone();
        let conn = ActiveConn::open(&b.active);
        Some((b, conn))
    }

    /// The zone plan for clients of `client_zone` from the current backends and measured rates.
    fn compute_plan(&self, client_zone: &str) -> Option<zone::Plan> {
        let (policy, frontend_zones): (_, Vec<String>) = {
            let lb = self.lb.lock().expect("lb lock");
            (
                lb.zone_policy,
                lb.frontends.iter().map(|f| f.zone.clone()).collect(),
            )
        };
        let mut zones: BTreeMap<String, ZoneBackends> = BTreeMap::new();
        for b in self.backends.lock().expect("backends lock").iter() {
            let z = zones.entry(b.zone.clone()).or_insert(ZoneBackends {
                healthy: 0,
                total: 0,
            });
            z.total += 1;
            z.healthy += usize::from(b.health.healthy);
        }
        // Until enough traffic is measured, assume clients are spread evenly over the frontends.
        let mut shares = self.rates.lock().expect("rates lock").counts.clone();
        for z in &frontend_zones {
            *shares.entry(z.clone()).or_default() += RATE_PRIOR;
        }
        let clients = zone::Clients {
            samples: Some(shares.values().sum()),
            shares,
        };
        let p = zone::plan(&policy, client_zone, &zones, &clients);
        tracing::debug!(lb = %self.id, client_zone, ?zones, ?clients, plan = ?p, "data plane: zone plan");
        p
    }

    /// Forgets cached plans (backends or their health changed).
    fn replan(&self) {
        self.plans.lock().expect("plans lock").clear();
    }

    /// Closes the listeners, stops the probes and ends every open connection.
    fn stop(&self) {
        for (_, h) in self.listeners.lock().expect("listeners lock").drain() {
            h.abort();
        }
        if let Some(h) = self.checker.lock().expect("checker lock").take() {
            h.abort();
        }
        self.connections.cancel();
    }

    fn report(&self) -> TrafficReport {
        let rows: Vec<TrafficRow> = self
            .rows
            .lock()
            .expect("rows lock")
            .iter()
            .map(|(k, s)| TrafficRow {
                port: k.port,
                frontend_zone: k.frontend_zone.clone(),
                backend_zone: k.backend_zone.clone(),
                backend: k.backend.clone(),
                connections: s.connections.load(Ordering::Relaxed),
                bytes_in: s.bytes_in.load(Ordering::Relaxed),
                bytes_out: s.bytes_out.load(Ordering::Relaxed),
                errors: s.errors.load(Ordering::Relaxed),
            })
            .collect();
        let connections: u64 = rows.iter().map(|r| r.connections).sum();
        let local: u64 = rows
            .iter()
            .filter(|r| r.frontend_zone == r.backend_zone)
            .map(|r| r.connections)
            .sum();
        let backends = self
            .backends
            .lock()
            .expect("backends lock")
            .iter()
            .map(|b| BackendHealth {
                instance_id: b.instance_id.clone(),
                zone: b.zone.clone(),
                healthy: b.health.healthy,
                active_connections: b.active.load(Ordering::Relaxed) as u64,
            })
            .collect();
        TrafficReport {
            load_balancer_id: self.id.clone(),
            rows,
            backends,
            connections,
            refused: self.refused.load(Ordering::Relaxed),
            in_zone_fraction: (connections > 0).then(|| local as f64 / connections as f64),
        }
    }
}

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
        let active: Vec<LoadBalancer> = view
            .load_balancers
            .into_iter()
            .filter(|lb| lb.state == LoadBalancerState::Active)
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
            let wanted: HashSet<(String, u16, Protocol)> = lb
                .frontends
                .iter()
                .filter(|f| !outage.contains(&f.zone))
                .flat_map(|f| {
                    lb.listeners
                        .iter()
                        .map(move |l| (f.zone.clone(), l.port, l.protocol))
                })
                .collect();
            let mut listeners = rt.listeners.lock().expect("listeners lock");
            listeners.retain(|k, h| {
                let keep = wanted.contains(k) && !h.is_finished();
                if !keep {
                    h.abort();
                }
                keep
            });
            for (zone, port, proto) in wanted {
                if listeners.contains_key(&(zone.clone(), port, proto)) {
                    continue;
                }
                let Some(ip) = lb.frontends.iter().find(|f| f.zone == zone).map(|f| f.ip) else {
                    continue;
                };
                let addr = SocketAddr::from((ip, port));
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

async fn accept_loop(
    dp: Arc<DataPlane>,
    rt: Arc<LbRt>,
    listener: TcpListener,
    zone: String,
    port: u16,
) {
    loop {
        let (client, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(lb = %rt.id, error = %e, "data plane: accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let client_zone = dp.client_zone(peer, &zone);
        let (dp, rt) = (dp.clone(), rt.clone());
        tokio::spawn(async move {
            let gone = rt.connections.clone();
            tokio::select! {
                () = proxy(dp, rt, client, client_zone, port) => {}
                () = gone.cancelled() => {}
            }
        });
    }
}

async fn proxy(
    dp: Arc<DataPlane>,
    rt: Arc<LbRt>,
    mut client: TcpStream,
    client_zone: String,
    port: u16,
) {
    let Some((backend, _open)) = rt.choose(&client_zone, &dp.metrics) else {
        rt.refused.fetch_add(1, Ordering::Relaxed);
        dp.metrics
            .lb_refused
            .get_or_create(&crate::metrics::LbRefusedLabels {
                lb: rt.id.clone(),
                frontend_zone: client_zone,
            })
            .inc();
        return;
    };
    let Some(backend_port) = rt.backend_port(port, Protocol::Tcp) else {
        return;
    };
    let stats = rt.row(
        RowKey {
            port,
            frontend_zone: client_zone.clone(),
            backend_zone: backend.zone.clone(),
            backend: backend.instance_id.clone(),
        },
        &dp.metrics,
    );
    if !dp.latency.is_empty()
        && let Some(delay) = dp.latency.get(&(client_zone.clone(), backend.zone.clone()))
    {
        tokio::time::sleep(*delay).await;
    }
    let upstream = tokio::time::timeout(
        CONNECT_TIMEOUT,
        TcpStream::connect(SocketAddr::from((backend.ip, backend_port))),
    )
    .await;
    let mut upstream = match upstream {
        Ok(Ok(s)) => s,
        _ => {
            stats.error();
            return;
        }
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(m) = &stats.metrics {
        m.connections.inc();
    }
    let _ = client.set_nodelay(true);
    let _ = upstream.set_nodelay(true);
    match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
        Ok((to_backend, to_client)) => {
            stats.bytes_in.fetch_add(to_backend, Ordering::Relaxed);
            stats.bytes_out.fetch_add(to_client, Ordering::Relaxed);
            if let Some(m) = &stats.metrics {
                m.bytes_in.inc_by(to_backend);
                m.bytes_out.inc_by(to_client);
            }
        }
        Err(_) => stats.error(),
    }
}

/// How long a UDP flow (client address to backend) lives without traffic.
pub const UDP_FLOW_IDLE: Duration = Duration::from_secs(60);

/// One UDP client flow: its backend socket and when it last carried a datagram.
struct UdpFlow {
    upstream: Arc<tokio::net::UdpSocket>,
    stats: Arc<RowStats>,
    last: Arc<Mutex<Instant>>,
    /// Counts the flow as open on its backend while it lives.
    _open: ActiveConn,
    /// Relays the backend's replies to the client; stopped when the flow is dropped.
    replies: JoinHandle<()>,
}

impl Drop for UdpFlow {
    fn drop(&mut self) {
        self.replies.abort();
    }
}

impl UdpFlow {
    fn touch(&self) {
        *self.last.lock().expect("flow lock") = Instant::now();
    }

    fn idle(&self) -> bool {
        self.last.lock().expect("flow lock").elapsed() >= UDP_FLOW_IDLE
    }
}

/// UDP: each client address is a flow pinned to the backend chosen for its first datagram
/// (per-client-flow stickiness); replies go back from the frontend address.
async fn udp_loop(
    dp: Arc<DataPlane>,
    rt: Arc<LbRt>,
    socket: Arc<tokio::net::UdpSocket>,
    zone: String,
    port: u16,
) {
    let mut flows: HashMap<SocketAddr, UdpFlow> = HashMap::new();
    let mut buf = vec![0u8; 65_536];
    let mut sweep = tokio::time::interval(Duration::from_secs(5));
    loop {
        let (n, client) = tokio::select! {
            r = socket.recv_from(&mut buf) => match r {
                Ok(x) => x,
                Err(_) => continue,
            },
            _ = sweep.tick() => {
                flows.retain(|_, f| !f.idle());
                continue;
            }
        };
        let flow = match flows.entry(client) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                match open_udp_flow(&dp, &rt, &socket, &zone, port, client).await {
                    Some(flow) => e.insert(flow),
                    None => continue,
                }
            }
        };
        flow.touch();
        if flow.upstream.send(&buf[..n]).await.is_ok() {
            flow.stats.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
            if let Some(m) = &flow.stats.metrics {
                m.bytes_in.inc_by(n as u64);
            }
        } else {
            flow.stats.error();
        }
    }
}

/// Picks a backend for a new UDP client (same zone first, like TCP) and opens its flow.
/// `None` when there is no healthy backend or the backend socket cannot be opened; the
/// datagram is then dropped and counted.
async fn open_udp_flow(
    dp: &DataPlane,
    rt: &LbRt,
    socket: &Arc<tokio::net::UdpSocket>,
    frontend_zone: &str,
    port: u16,
    client: SocketAddr,
) -> Option<UdpFlow> {
    let client_zone = dp.client_zone(client, frontend_zone);
    let Some((backend, open)) = rt.choose(&client_zone, &dp.metrics) else {
        rt.refused.fetch_add(1, Ordering::Relaxed);
        return None;
    };
    let backend_port = rt.backend_port(port, Protocol::Udp)?;
    let stats = rt.row(
        RowKey {
            port,
            frontend_zone: client_zone,
            backend_zone: backend.zone.clone(),
            backend: backend.instance_id.clone(),
        },
        &dp.metrics,
    );
    let upstream = async {
        let s = tokio::net::UdpSocket::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).await?;
        s.connect(SocketAddr::from((backend.ip, backend_port)))
            .await?;
        std::io::Result::Ok(Arc::new(s))
    }
    .await;
    let Ok(upstream) = upstream else {
        stats.error();
        return None;
    };
    stats.connections.fetch_add(1, Ordering::Relaxed);
    if let Some(m) = &stats.metrics {
        m.connections.inc();
    }
    let last = Arc::new(Mutex::new(Instant::now()));
    let replies = {
        let (upstream, socket, stats, last) = (
            upstream.clone(),
            socket.clone(),
            stats.clone(),
            last.clone(),
        );
        tokio::spawn(async move {
            let mut rbuf = vec![0u8; 65_536];
            while let Ok(k) = upstream.recv(&mut rbuf).await {
                *last.lock().expect("flow lock") = Instant::now();
                if socket.send_to(&rbuf[..k], client).await.is_ok() {
                    stats.bytes_out.fetch_add(k as u64, Ordering::Relaxed);
                    if let Some(m) = &stats.metrics {
                        m.bytes_out.inc_by(k as u64);
                    }
                }
            }
        })
    };
    Some(UdpFlow {
        upstream,
        stats,
        last,
        _open: open,
        replies,
    })
}

/// One health check: TCP connect, or an HTTP GET that must answer 2xx.
async fn check(
    ip: Ipv4Addr,
    port: u16,
    protocol: HealthCheckProtocol,
    path: &str,
    timeout: Duration,
) -> bool {
    let attempt = async {
        let mut s = TcpStream::connect(SocketAddr::from((ip, port)))
            .await
            .ok()?;
        if protocol == HealthCheckProtocol::Tcp {
            return Some(true);
        }
        s.write_all(format!("GET {path} HTTP/1.0\r\nHost: {ip}:{port}\r\nUser-Agent: cloud-sim-health-check\r\n\r\n").as_bytes()).await.ok()?;
        let mut buf = [0u8; 16];
        let mut n = 0;
        while n < 12 {
            let k = s.read(&mut buf[n..]).await.ok()?;
            if k == 0 {
                break;
            }
            n += k;
        }
        let line = String::from_utf8_lossy(&buf[..n]).to_string();
        Some(line.starts_with("HTTP/1.") && line.get(9..10) == Some("2"))
    };
    tokio::time::timeout(timeout, attempt)
        .await
        .ok()
        .flatten()
        .unwrap_or(false)
}

async fn health_loop(rt: Arc<LbRt>) {
    loop {
        let (hc, default_port) = {
            let lb = rt.lb.lock().expect("lb lock");
            (
                lb.health_check.clone(),
                lb.listeners.first().map(|l| l.backend_port),
            )
        };
        let outage = rt.outage.lock().expect("outage lock").clone();
        let targets = rt.backends.lock().expect("backends lock").clone();
        let port = hc.port.or(default_port);
        let timeout = Duration::from_secs(u64::from(hc.timeout_seconds.max(1)));
        let path = hc.path.clone().unwrap_or_else(|| "/".into());
        // Every backend probed at once: one slow or silent backend costs its timeout once, not
        // once per backend after it.
        let results = futures_util::future::join_all(targets.iter().map(|b| {
            let (path, outage, hc) = (&path, &outage, &hc);
            async move {
                let ok = match port {
                    _ if outage.contains(&b.zone) || b.ip.is_unspecified() => None,
                    Some(p) => Some(check(b.ip, p, hc.protocol, path, timeout).await),
                    None => Some(false),
                };
                (b.instance_id.clone(), ok)
            }
        }))
        .await;
        let mut any_flipped = false;
        {
            let mut backends = rt.backends.lock().expect("backends lock");
            for (id, ok) in results {
                if let Some(b) = backends.iter_mut().find(|b| b.instance_id == id) {
                    let flipped = match ok {
                        None => b.health.force_down(),
                        Some(ok) => {
                            b.health
                                .observe(ok, hc.healthy_threshold, hc.unhealthy_threshold)
                        }
                    };
                    if flipped {
                        tracing::info!(lb = %rt.id, backend = %b.instance_id, zone = %b.zone, healthy = b.health.healthy, "backend health changed");
                        any_flipped = true;
                    }
                }
            }
        }
        if any_flipped {
            rt.replan();
        }
        tokio::time::sleep(Duration::from_secs(u64::from(hc.interval_seconds.max(1)))).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn least_loaded_picks_the_minimum_and_rotates_ties() {
        // (loads, start, expected index)
        let cases: &[(&[usize], usize, usize)] = &[
            (&[0], 0, 0),
            (&[3, 1, 2], 0, 1),
            (&[3, 1, 2], 2, 1),
            (&[2, 2, 2], 0, 0),
            (&[2, 2, 2], 1, 1),
            (&[2, 2, 2], 2, 2),
            (&[1, 0, 0], 0, 1),
            (&[1, 0, 0], 2, 2),
            (&[0, 5, 0], 1, 2),
        ];
        for &(loads, start, want) in cases {
            assert_eq!(
                least_loaded(loads, start),
                want,
                "loads {loads:?} from {start}"
            );
        }
    }

    #[test]
    fn rates_decay_towards_recent_traffic() {
        let mut r = Rates::default();
        let t0 = Instant::now();
        for _ in 0..10 {
            r.record("a", t0);
        }
        r.record("b", t0 + RATE_HALF_LIFE);
        // a's ten connections are worth five after one half-life; b's one is fresh.
        assert!((r.counts["a"] - 5.0).abs() < 1e-6, "{:?}", r.counts);
        assert!((r.counts["b"] - 1.0).abs() < 1e-6);
    }
}
