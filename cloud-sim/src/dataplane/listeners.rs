//! Which listeners a load balancer should have, and what a reconcile pass changes: a pure diff
//! between what the database says and what is running.

use std::collections::HashSet;
use std::net::SocketAddr;

use cloud_api::{LoadBalancer, Protocol};

/// A listener: frontend zone, port, protocol.
pub type ListenerKey = (String, u16, Protocol);

/// What a pass does to one load balancer's listeners.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct ListenerPlan {
    /// Running listeners to stop: no longer wanted, or their task has ended (to restart).
    pub stop: Vec<ListenerKey>,
    /// Listeners to start, each with the address to bind.
    pub start: Vec<(ListenerKey, SocketAddr)>,
}

/// Every listener port on every frontend outside a zone in `outage`, against `running` (each
/// with whether its task has ended). Sorted, so a pass acts in a stable order.
pub fn plan<'a>(
    lb: &LoadBalancer,
    outage: &HashSet<String>,
    running: impl IntoIterator<Item = (&'a ListenerKey, bool)>,
) -> ListenerPlan {
    let wanted: Vec<(ListenerKey, SocketAddr)> = lb
        .frontends
        .iter()
        .filter(|f| !outage.contains(&f.zone))
        .flat_map(|f| {
            lb.listeners.iter().map(move |l| {
                (
                    (f.zone.clone(), l.port, l.protocol),
                    SocketAddr::from((f.ip, l.port)),
                )
            })
        })
        .collect();
    let mut stop = Vec::new();
    let mut alive = HashSet::new();
    for (key, ended) in running {
        if ended || !wanted.iter().any(|(k, _)| k == key) {
            stop.push(key.clone());
        } else {
            alive.insert(key.clone());
        }
    }
    let mut start: Vec<_> = wanted
        .into_iter()
        .filter(|(k, _)| !alive.contains(k))
        .collect();
    stop.sort_by(|a, b| order(a).cmp(&order(b)));
    start.sort_by(|a, b| order(&a.0).cmp(&order(&b.0)));
    ListenerPlan { stop, start }
}

/// Zone, port, then TCP before UDP.
fn order(k: &ListenerKey) -> (&str, u16, bool) {
    (k.0.as_str(), k.1, k.2 == Protocol::Udp)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cloud_api::{Frontend, Listener};

    fn lb(zones: &[(&str, &str)], ports: &[(u16, Protocol)]) -> LoadBalancer {
        let mut lb: LoadBalancer = serde_json::from_value(serde_json::json!({
            "id": "lb-0000000000000001", "name": "web", "region": "sim-1", "state": "active",
            "scheme": "external", "ip_mode": "vip", "listeners": [], "backends": [],
            "health_check": {}, "zone_policy": {}, "frontends": [], "tags": {},
            "created_at": "2026-01-01T00:00:00Z", "updated_at": "2026-01-01T00:00:00Z", "etag": "1"
        }))
        .unwrap();
        lb.frontends = zones
            .iter()
            .map(|(z, ip)| Frontend {
                zone: (*z).into(),
                ip: ip.parse().unwrap(),
            })
            .collect();
        lb.listeners = ports
            .iter()
            .map(|(port, protocol)| Listener {
                protocol: *protocol,
                port: *port,
                backend_port: 30_000,
            })
            .collect();
        lb
    }

    fn key(z: &str, port: u16, p: Protocol) -> ListenerKey {
        (z.into(), port, p)
    }

    #[test]
    fn plans() {
        use Protocol::{Tcp, Udp};
        let two = lb(
            &[("zone-a", "127.64.1.2"), ("zone-b", "127.64.2.2")],
            &[(80, Tcp), (53, Udp)],
        );
        let none = HashSet::new();
        let b_out: HashSet<String> = ["zone-b".to_owned()].into();
        let (a80, a53, b80, b53) = (
            key("zone-a", 80, Tcp),
            key("zone-a", 53, Udp),
            key("zone-b", 80, Tcp),
            key("zone-b", 53, Udp),
        );
        let addr = |s: &str| s.parse::<SocketAddr>().unwrap();
        // Nothing running: everything starts, at its frontend's address.
        let p = plan(&two, &none, []);
        assert!(p.stop.is_empty());
        assert_eq!(
            p.start,
            [
                (a53.clone(), addr("127.64.1.2:53")),
                (a80.clone(), addr("127.64.1.2:80")),
                (b53.clone(), addr("127.64.2.2:53")),
                (b80.clone(), addr("127.64.2.2:80")),
            ]
        );
        // All running: nothing to do.
        let all = [(&a80, false), (&a53, false), (&b80, false), (&b53, false)];
        assert_eq!(plan(&two, &none, all), ListenerPlan::default());
        // A zone goes into outage: its listeners stop.
        let p = plan(&two, &b_out, all);
        assert_eq!(p.stop, [b53.clone(), b80.clone()]);
        assert!(p.start.is_empty());
        // A task that ended is stopped and started again.
        let p = plan(
            &two,
            &none,
            [(&a80, true), (&a53, false), (&b80, false), (&b53, false)],
        );
        assert_eq!(p.stop, std::slice::from_ref(&a80));
        assert_eq!(p.start, [(a80.clone(), addr("127.64.1.2:80"))]);
        // A port removed by an update stops; one added starts.
        let moved = lb(&[("zone-a", "127.64.1.2")], &[(8080, Tcp)]);
        let p = plan(&moved, &none, [(&a80, false)]);
        assert_eq!(p.stop, [a80]);
        assert_eq!(
            p.start,
            [(key("zone-a", 8080, Tcp), addr("127.64.1.2:8080"))]
        );
    }
}
