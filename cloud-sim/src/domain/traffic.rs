//! Traffic reports of data planes that run apart from the API: which frontends a data plane
//! serves, and one report for a load balancer out of what each data plane serving it published.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use cloud_api::{BackendHealth, TrafficReport, TrafficRow};
use ipnet::Ipv4Net;

/// Whether a data plane limited to `frontends` (none: every address) serves `ip`.
pub fn serves(frontends: Option<&[Ipv4Net]>, ip: Ipv4Addr) -> bool {
    frontends.is_none_or(|nets| nets.iter().any(|n| n.contains(&ip)))
}

/// One report out of several data planes' (each serves some of the load balancer's frontends):
/// counters add up per (port, frontend zone, backend); a backend is healthy if any data plane
/// that checks it finds it so, and its open connections add up; the in-zone fraction is
/// recomputed from the sums. `backends` lists the load balancer's backends, in its order, for
/// when no data plane reports one.
pub fn merge(
    lb_id: &str,
    backends: &[(String, String)],
    reports: &[TrafficReport],
) -> TrafficReport {
    let mut rows: BTreeMap<(u16, String, String), TrafficRow> = BTreeMap::new();
    for r in reports.iter().flat_map(|r| &r.rows) {
        let key = (r.port, r.frontend_zone.clone(), r.backend.clone());
        let row = rows.entry(key).or_insert_with(|| TrafficRow {
            connections: 0,
            bytes_in: 0,
            bytes_out: 0,
            errors: 0,
            ..r.clone()
        });
        row.connections += r.connections;
        row.bytes_in += r.bytes_in;
        row.bytes_out += r.bytes_out;
        row.errors += r.errors;
    }
    let health: Vec<BackendHealth> = backends
        .iter()
        .map(|(id, zone)| {
            let seen = reports
                .iter()
                .flat_map(|r| &r.backends)
                .filter(|b| &b.instance_id == id);
            let (healthy, active) = seen.fold((false, 0), |(h, a), b| {
                (h || b.healthy, a + b.active_connections)
            });
            BackendHealth {
                instance_id: id.clone(),
                zone: zone.clone(),
                healthy,
                active_connections: active,
            }
        })
        .collect();
    let rows: Vec<TrafficRow> = rows.into_values().collect();
    let connections: u64 = reports.iter().map(|r| r.connections).sum();
    TrafficReport {
        in_zone_fraction: in_zone_fraction(&rows),
        load_balancer_id: lb_id.to_owned(),
        rows,
        backends: health,
        connections,
        refused: reports.iter().map(|r| r.refused).sum(),
    }
}

/// Share of `rows`' connections whose backend was in the client's zone; `None` before any.
pub fn in_zone_fraction(rows: &[TrafficRow]) -> Option<f64> {
    let total: u64 = rows.iter().map(|r| r.connections).sum();
    let same: u64 = rows
        .iter()
        .filter(|r| r.frontend_zone == r.backend_zone)
        .map(|r| r.connections)
        .sum();
    (total > 0).then(|| same as f64 / total as f64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(zone: &str, backend_zone: &str, backend: &str, n: u64) -> TrafficRow {
        TrafficRow {
            port: 80,
            frontend_zone: zone.into(),
            backend_zone: backend_zone.into(),
            backend: backend.into(),
            connections: n,
            bytes_in: n * 10,
            bytes_out: n * 100,
            errors: 0,
        }
    }

    fn health(id: &str, healthy: bool, active: u64) -> BackendHealth {
        BackendHealth {
            instance_id: id.into(),
            zone: "zone-a".into(),
            healthy,
            active_connections: active,
        }
    }

    #[test]
    fn serves_everything_without_a_filter_and_only_its_networks_with_one() {
        let ip = Ipv4Addr::new(127, 64, 1, 9);
        assert!(serves(None, ip));
        let mine = ["127.64.1.0/24".parse().unwrap()];
        assert!(serves(Some(&mine), ip));
        assert!(!serves(Some(&mine), Ipv4Addr::new(127, 64, 2, 9)));
        assert!(!serves(Some(&[]), ip));
    }

    #[test]
    fn reports_of_two_data_planes_add_up() {
        let a = TrafficReport {
            load_balancer_id: "lb-1".into(),
            rows: vec![
                row("zone-a", "zone-a", "i-1", 3),
                row("zone-a", "zone-b", "i-2", 1),
            ],
            backends: vec![health("i-1", true, 2), health("i-2", false, 0)],
            connections: 4,
            refused: 1,
            in_zone_fraction: Some(0.75),
        };
        let b = TrafficReport {
            load_balancer_id: "lb-1".into(),
            rows: vec![
                row("zone-b", "zone-b", "i-2", 4),
                row("zone-a", "zone-a", "i-1", 2),
            ],
            backends: vec![health("i-1", false, 1), health("i-2", true, 5)],
            connections: 6,
            refused: 0,
            in_zone_fraction: Some(1.0),
        };
        let backends = [
            ("i-1".to_owned(), "zone-a".to_owned()),
            ("i-2".to_owned(), "zone-b".to_owned()),
            ("i-3".to_owned(), "zone-c".to_owned()),
        ];
        let m = merge("lb-1", &backends, &[a, b]);
        assert_eq!((m.connections, m.refused), (10, 1));
        let aa = m
            .rows
            .iter()
            .find(|r| r.frontend_zone == "zone-a" && r.backend == "i-1")
            .unwrap();
        assert_eq!((aa.connections, aa.bytes_in, aa.bytes_out), (5, 50, 500));
        assert_eq!(m.rows.len(), 3);
        assert_eq!(m.in_zone_fraction, Some(0.9));
        let h: Vec<_> = m
            .backends
            .iter()
            .map(|b| (b.instance_id.as_str(), b.healthy, b.active_connections))
            .collect();
        assert_eq!(h, [("i-1", true, 3), ("i-2", true, 5), ("i-3", false, 0)]);
    }

    #[test]
    fn no_reports_is_no_traffic_and_no_healthy_backend() {
        let m = merge("lb-1", &[("i-1".into(), "zone-a".into())], &[]);
        assert!(m.rows.is_empty());
        assert_eq!(m.in_zone_fraction, None);
        assert!(!m.backends[0].healthy);
    }
}
