//! One load balancer at run time: its backends with health and open connections, the client
//! rates and cached zone plans that choose a backend, and the traffic counters behind its report.

use super::*;

#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) struct RowKey {
    pub(super) port: u16,
    pub(super) frontend_zone: String,
    pub(super) backend_zone: String,
    pub(super) backend: String,
}

#[derive(Debug, Default)]
pub(super) struct RowStats {
    pub(super) connections: AtomicU64,
    pub(super) bytes_in: AtomicU64,
    pub(super) bytes_out: AtomicU64,
    pub(super) errors: AtomicU64,
    /// The same counts on /metrics; handles made once per row, not per connection.
    pub(super) metrics: Option<RowMetrics>,
}

#[derive(Debug)]
pub(super) struct RowMetrics {
    pub(super) connections: prometheus_client::metrics::counter::Counter,
    pub(super) bytes_in: prometheus_client::metrics::counter::Counter,
    pub(super) bytes_out: prometheus_client::metrics::counter::Counter,
    pub(super) errors: prometheus_client::metrics::counter::Counter,
}

impl RowStats {
    pub(super) fn error(&self) {
        self.errors.fetch_add(1, Ordering::Relaxed);
        if let Some(m) = &self.metrics {
            m.errors.inc();
        }
    }
}

/// Decaying per-zone connection counts: the measured share of clients per zone.
#[derive(Debug, Default)]
pub(super) struct Rates {
    pub(super) counts: BTreeMap<String, f64>,
    pub(super) last: Option<Instant>,
    /// Connections recorded so far (not decayed): plans note it to expire after [`PLAN_MAX_USES`].
    pub(super) recorded: u64,
}

impl Rates {
    pub(super) fn record(&mut self, zone: &str, now: Instant) {
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
pub(super) struct BackendRt {
    pub(super) instance_id: String,
    pub(super) zone: String,
    pub(super) ip: Ipv4Addr,
    pub(super) health: Health,
    /// Connections (UDP: flows) open to this backend; kept across reconciles.
    pub(super) active: Arc<AtomicUsize>,
}

/// One open connection or flow to a backend: counted in its `active` until dropped.
#[derive(Debug)]
pub(super) struct ActiveConn(Arc<AtomicUsize>);

impl ActiveConn {
    pub(super) fn open(active: &Arc<AtomicUsize>) -> Self {
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
pub(super) fn least_loaded(loads: &[usize], start: usize) -> usize {
    let n = loads.len();
    (0..n)
        .map(|k| (start + k) % n)
        .min_by_key(|&i| loads[i])
        .expect("loads is not empty")
}

/// A zone plan, when it was computed and the connection count then (`None` inside: refuse).
pub(super) type CachedPlan = (Instant, u64, Arc<Option<zone::Plan>>);

/// The live state of one load balancer.
#[derive(Debug)]
pub(super) struct LbRt {
    pub(super) id: String,
    pub(super) lb: Mutex<LoadBalancer>,
    pub(super) backends: Mutex<Vec<BackendRt>>,
    pub(super) outage: Mutex<HashSet<String>>,
    pub(super) rates: Mutex<Rates>,
    /// Zone plans per client zone, reused for [`PLAN_TTL`] or [`PLAN_MAX_USES`] connections.
    pub(super) plans: Mutex<HashMap<String, CachedPlan>>,
    pub(super) rr: AtomicUsize,
    /// The LB's `zone_policy.balancing` is least connections (else round robin).
    pub(super) least_connections: std::sync::atomic::AtomicBool,
    pub(super) rows: Mutex<BTreeMap<RowKey, Arc<RowStats>>>,
    pub(super) refused: AtomicU64,
    pub(super) listeners: Mutex<HashMap<(String, u16, Protocol), JoinHandle<()>>>,
    pub(super) checker: Mutex<Option<JoinHandle<()>>>,
    /// Cancelled when the load balancer goes (deleted, or the data plane shuts down): its open
    /// connections end with it rather than outliving it.
    pub(super) connections: CancellationToken,
    /// Listeners that could not bind and were warned about (retried quietly until they bind).
    pub(super) bind_failed: Mutex<HashSet<(String, u16, Protocol)>>,
}

impl LbRt {
    /// The backend port of the listener on `port`/`protocol`, if the LB still has one.
    pub(super) fn backend_port(&self, port: u16, protocol: Protocol) -> Option<u16> {
        self.lb
            .lock()
            .expect("lb lock")
            .listeners
            .iter()
            .find(|l| l.port == port && l.protocol == protocol)
            .map(|l| l.backend_port)
    }

    pub(super) fn row(&self, key: RowKey, metrics: &crate::metrics::Metrics) -> Arc<RowStats> {
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
    pub(super) fn choose(
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
    pub(super) fn compute_plan(&self, client_zone: &str) -> Option<zone::Plan> {
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
    pub(super) fn replan(&self) {
        self.plans.lock().expect("plans lock").clear();
    }

    /// Closes the listeners, stops the probes and ends every open connection.
    pub(super) fn stop(&self) {
        for (_, h) in self.listeners.lock().expect("listeners lock").drain() {
            h.abort();
        }
        if let Some(h) = self.checker.lock().expect("checker lock").take() {
            h.abort();
        }
        self.connections.cancel();
    }

    pub(super) fn report(&self) -> TrafficReport {
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
        let in_zone_fraction = crate::domain::traffic::in_zone_fraction(&rows);
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
            in_zone_fraction,
        }
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
