//! Which zone a connection's backend comes from (pure): the load balancer's zone policy applied to
//! the client's zone, the healthy backends per zone, and the measured share of clients per zone.
//!
//! - `same-zone-only`: the client's zone, always.
//! - `prefer-same-zone` (Kubernetes' `trafficDistribution: PreferSameZone`): the client's zone
//!   while it has an eligible backend, however loaded; otherwise every eligible backend evenly,
//!   as kube-proxy falls back to all endpoints.
//! - `balanced`: Envoy's zone-aware routing. With `local` the client zone's share of
//!   clients and `upstream` its share of healthy backends: if `upstream >= local` everything stays
//!   local; otherwise `upstream / local` of it stays and the rest spills to the other zones in
//!   proportion to their residual capacity `max(0, upstream_i - local_i)` (uniformly if none has
//!   any). This keeps as much traffic local as possible while every backend gets the same load.
//!   Because the client shares are measured rates rather than Envoy's membership counts, a zone
//!   within [`DIRECT_TOLERANCE`] of its backend share still keeps everything local, and so does a
//!   zone whose excess is within [`NOISE_SIGMAS`] standard errors of what chance gives on the
//!   number of connections measured (one connection must never look like a skew). As Envoy,
//!   it is off below the policy's `min_cluster_size` backends (every healthy backend evenly) and
//!   ignores health below its `panic_threshold_percent` healthy (every backend evenly).
//! - no affinity, `cross_zone = false` (AWS NLB's default): the client's zone while it has a healthy
//!   backend, otherwise the other zones in proportion to their healthy backends.
//! - no affinity, `cross_zone = true`: every healthy backend equally, wherever it is.
//!
//! When no eligible backend is healthy, `fail_open` sends to the unhealthy ones by the same rules,
//! and otherwise the connection is refused.

use std::collections::BTreeMap;

use cloud_api::{ZoneAffinity, ZonePolicy};

/// Measured client shares are noisy, so a zone whose share of clients is within 10% of its share
/// of backends keeps all its traffic (Envoy compares static membership counts and needs none).
pub const DIRECT_TOLERANCE: f64 = 1.1;

/// How many standard errors of the measured share a zone may exceed its backend share by before
/// it spills: with `n` connections measured and backend share `u`, the margin is
/// `NOISE_SIGMAS * sqrt(u (1 - u) / n)`.
pub const NOISE_SIGMAS: f64 = 3.0;

/// How a `balanced` plan came about, for Envoy's counters (`lb_zone_routing_all_directly`,
/// `_sampled`, `_cross_zone`, `lb_zone_cluster_too_small`, `lb_healthy_panic`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Routing {
    /// Not `balanced`.
    Other,
    /// Everything stays in the client's zone.
    AllDirectly,
    /// The residual split: each connection is sampled local or cross-zone.
    Sampled,
    /// Too few backends for zone-aware routing.
    ClusterTooSmall,
    /// Too few healthy backends: health ignored.
    Panic,
}

/// Where the clients are.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Clients {
    /// Clients per zone, in any unit (only the proportions matter).
    pub shares: BTreeMap<String, f64>,
    /// For measured shares, the connections they rest on (noise shrinks as it grows); `None` for
    /// exact shares such as Envoy's membership counts.
    pub samples: Option<f64>,
}

/// Backends of one zone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ZoneBackends {
    pub healthy: usize,
    pub total: usize,
}

/// The zone distribution for a connection, and whether it may use unhealthy backends.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    /// `(zone, probability)`, probabilities summing to 1.
    pub zones: Vec<(String, f64)>,
    /// The eligible backends are all unhealthy and the policy fails open (or Envoy's panic).
    pub unhealthy: bool,
    pub routing: Routing,
}

fn proportional(
    zones: &BTreeMap<String, ZoneBackends>,
    weight: impl Fn(&ZoneBackends) -> usize,
    skip: Option<&str>,
) -> Vec<(String, f64)> {
    let total: usize = zones
        .iter()
        .filter(|(z, _)| Some(z.as_str()) != skip)
        .map(|(_, b)| weight(b))
        .sum();
    if total == 0 {
        return Vec::new();
    }
    zones
        .iter()
        .filter(|(z, b)| Some(z.as_str()) != skip && weight(b) > 0)
        .map(|(z, b)| (z.clone(), weight(b) as f64 / total as f64))
        .collect()
}

/// Envoy's residual split for clients of `local_zone`.
fn prefer_same_zone(
    local_zone: &str,
    zones: &BTreeMap<String, ZoneBackends>,
    clients: &Clients,
    weight: impl Fn(&ZoneBackends) -> usize + Copy,
) -> Vec<(String, f64)> {
    let client_share = &clients.shares;
    let total: usize = zones.values().map(weight).sum();
    if total == 0 {
        return Vec::new();
    }
    let upstream = |z: &str| {
        zones
            .get(z)
            .map_or(0.0, |b| weight(b) as f64 / total as f64)
    };
    let share_total: f64 = client_share.values().sum();
    let local = |z: &str| {
        if share_total > 0.0 {
            client_share.get(z).copied().unwrap_or(0.0) / share_total
        } else {
            0.0
        }
    };
    let (up_l, lo_l) = (upstream(local_zone), local(local_zone));
    let noise = clients.samples.map_or(0.0, |n| {
        NOISE_SIGMAS * (up_l * (1.0 - up_l) / n.max(f64::MIN_POSITIVE)).sqrt()
    });
    if up_l > 0.0 && up_l * DIRECT_TOLERANCE + noise >= lo_l {
        return vec![(local_zone.to_owned(), 1.0)];
    }
    let stay = if lo_l > 0.0 { up_l / lo_l } else { 0.0 };
    let residuals: Vec<(String, f64)> = zones
        .keys()
        .filter(|z| z.as_str() != local_zone)
        .map(|z| (z.clone(), (upstream(z) - local(z)).max(0.0)))
        .filter(|(z, _)| upstream(z) > 0.0)
        .collect();
    let residual_total: f64 = residuals.iter().map(|(_, r)| r).sum();
    let spill = 1.0 - stay;
    let mut out = Vec::new();
    if stay > 0.0 {
        out.push((local_zone.to_owned(), stay));
    }
    if residual_total > 0.0 {
        out.extend(
            residuals
                .into_iter()
                .filter(|(_, r)| *r > 0.0)
                .map(|(z, r)| (z, spill * r / residual_total)),
        );
    } else {
        let others: Vec<_> = zones
            .iter()
            .filter(|(z, b)| z.as_str() != local_zone && weight(b) > 0)
            .map(|(z, _)| z.clone())
            .collect();
        let n = others.len() as f64;
        out.extend(others.into_iter().map(|z| (z, spill / n)));
    }
    if out.is_empty() {
        return proportional(zones, weight, None);
    }
    out
}

fn distribution(
    policy: &ZonePolicy,
    client_zone: &str,
    zones: &BTreeMap<String, ZoneBackends>,
    clients: &Clients,
    weight: impl Fn(&ZoneBackends) -> usize + Copy,
) -> Vec<(String, f64)> {
    let local_has = zones.get(client_zone).is_some_and(|b| weight(b) > 0);
    match policy.zone_affinity {
        ZoneAffinity::SameZoneOnly => {
            if local_has {
                vec![(client_zone.to_owned(), 1.0)]
            } else {
                Vec::new()
            }
        }
        ZoneAffinity::PreferSameZone => {
            if local_has {
                vec![(client_zone.to_owned(), 1.0)]
            } else {
                proportional(zones, weight, None)
            }
        }
        ZoneAffinity::Balanced => prefer_same_zone(client_zone, zones, clients, weight),
        ZoneAffinity::None if !policy.cross_zone => {
            if local_has {
                vec![(client_zone.to_owned(), 1.0)]
            } else {
                proportional(zones, weight, Some(client_zone))
            }
        }
        ZoneAffinity::None => proportional(zones, weight, None),
    }
}

/// Plans a connection from `client_zone`; `None` means refuse it.
pub fn plan(
    policy: &ZonePolicy,
    client_zone: &str,
    zones: &BTreeMap<String, ZoneBackends>,
    clients: &Clients,
) -> Option<Plan> {
    let balanced = policy.zone_affinity == ZoneAffinity::Balanced;
    if balanced {
        let total: usize = zones.values().map(|b| b.total).sum();
        let healthy: usize = zones.values().map(|b| b.healthy).sum();
        if total > 0
            && (healthy as f64) < f64::from(policy.panic_threshold_percent) / 100.0 * total as f64
        {
            return Some(Plan {
                zones: proportional(zones, |b| b.total, None),
                unhealthy: true,
                routing: Routing::Panic,
            });
        }
        if total < policy.min_cluster_size as usize && healthy > 0 {
            return Some(Plan {
                zones: proportional(zones, |b| b.healthy, None),
                unhealthy: false,
                routing: Routing::ClusterTooSmall,
            });
        }
    }
    let routing = |zones: &[(String, f64)]| match (balanced, zones) {
        (false, _) => Routing::Other,
        (true, [(z, _)]) if z == client_zone => Routing::AllDirectly,
        (true, _) => Routing::Sampled,
    };
    let healthy = distribution(policy, client_zone, zones, clients, |b| b.healthy);
    if !healthy.is_empty() {
        return Some(Plan {
            routing: routing(&healthy),
            zones: healthy,
            unhealthy: false,
        });
    }
    if !policy.fail_open {
        return None;
    }
    let any = distribution(policy, client_zone, zones, clients, |b| b.total);
    (!any.is_empty()).then_some(Plan {
        routing: routing(&any),
        zones: any,
        unhealthy: true,
    })
}

/// Picks a zone from a plan with `roll` uniform in [0, 1).
pub fn pick(plan: &Plan, roll: f64) -> &str {
    let mut acc = 0.0;
    for (z, p) in &plan.zones {
        acc += p;
        if roll < acc {
            return z;
        }
    }
    &plan.zones.last().expect("plans are never empty").0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn zones(spec: &[(&str, usize, usize)]) -> BTreeMap<String, ZoneBackends> {
        spec.iter()
            .map(|(z, h, t)| {
                (
                    (*z).to_owned(),
                    ZoneBackends {
                        healthy: *h,
                        total: *t,
                    },
                )
            })
            .collect()
    }

    fn shares(spec: &[(&str, f64)]) -> Clients {
        Clients {
            shares: spec.iter().map(|(z, s)| ((*z).to_owned(), *s)).collect(),
            samples: None,
        }
    }

    fn measured(spec: &[(&str, f64)]) -> Clients {
        let shares: BTreeMap<String, f64> =
            spec.iter().map(|(z, s)| ((*z).to_owned(), *s)).collect();
        Clients {
            samples: Some(shares.values().sum()),
            shares,
        }
    }

    fn prob(p: &Plan, zone: &str) -> f64 {
        p.zones
            .iter()
            .find(|(z, _)| z == zone)
            .map_or(0.0, |(_, x)| *x)
    }

    const EPS: f64 = 1e-9;

    /// Envoy's zone-aware routing without its size and panic thresholds (tested apart).
    fn prefer() -> ZonePolicy {
        ZonePolicy {
            cross_zone: false,
            zone_affinity: ZoneAffinity::Balanced,
            fail_open: true,
            min_cluster_size: 1,
            panic_threshold_percent: 0,
            ..ZonePolicy::default()
        }
    }

    #[test]
    fn envoy_worked_example() {
        // Callers 40/40/20 over zones 1/2/3; upstream hosts 25/50/25 (1, 2, 1 hosts).
        let z = zones(&[("z1", 1, 1), ("z2", 2, 2), ("z3", 1, 1)]);
        let s = shares(&[("z1", 0.4), ("z2", 0.4), ("z3", 0.2)]);
        let p1 = plan(&prefer(), "z1", &z, &s).unwrap();
        assert!((prob(&p1, "z1") - 0.625).abs() < EPS, "{p1:?}");
        assert!((prob(&p1, "z2") - 0.375 * 2.0 / 3.0).abs() < EPS);
        assert!((prob(&p1, "z3") - 0.375 / 3.0).abs() < EPS);
        assert_eq!(
            plan(&prefer(), "z2", &z, &s).unwrap().zones,
            vec![("z2".to_owned(), 1.0)]
        );
        assert_eq!(
            plan(&prefer(), "z3", &z, &s).unwrap().zones,
            vec![("z3".to_owned(), 1.0)]
        );
        // Upstream load is exactly proportional to hosts (25/50/25), and 15% crosses zones.
        let mut load: BTreeMap<&str, f64> = BTreeMap::new();
        let mut cross = 0.0;
        for (client, share) in [("z1", 0.4), ("z2", 0.4), ("z3", 0.2)] {
            let p = plan(&prefer(), client, &z, &s).unwrap();
            for (zone, x) in &p.zones {
                *load
                    .entry(["z1", "z2", "z3"].into_iter().find(|n| n == zone).unwrap())
                    .or_default() += share * x;
                if zone != client {
                    cross += share * x;
                }
            }
        }
        assert!(
            (load["z1"] - 0.25).abs() < EPS
                && (load["z2"] - 0.5).abs() < EPS
                && (load["z3"] - 0.25).abs() < EPS,
            "{load:?}"
        );
        assert!((cross - 0.15).abs() < EPS, "cross-zone {cross}");
    }

    #[test]
    fn small_measurement_noise_stays_local() {
        let z = zones(&[("a", 1, 1), ("b", 1, 1), ("c", 1, 1)]);
        let s = shares(&[("a", 0.35), ("b", 0.33), ("c", 0.32)]);
        assert_eq!(
            plan(&prefer(), "a", &z, &s).unwrap().zones,
            vec![("a".to_owned(), 1.0)]
        );
        let skewed = shares(&[("a", 0.7), ("b", 0.15), ("c", 0.15)]);
        assert!(prob(&plan(&prefer(), "a", &z, &skewed).unwrap(), "a") < 0.5);
    }

    #[test]
    fn measured_skews_spill_only_beyond_chance() {
        // Three zones with one backend each; decayed connection counts per zone (including the
        // data plane's prior of 5 per zone); does zone a keep all its traffic?
        let z = zones(&[("a", 1, 1), ("b", 1, 1), ("c", 1, 1)]);
        let cases: &[(&str, [f64; 3], bool)] = &[
            ("first connection", [6.0, 5.0, 5.0], true),
            ("two in a row", [7.0, 5.0, 5.0], true),
            ("a burst of ten", [15.0, 5.0, 5.0], true),
            ("balanced, long run", [300.0, 300.0, 300.0], true),
            ("slightly busier, long run", [330.0, 300.0, 300.0], true),
            ("70/15/15 over 30", [26.0, 9.5, 9.5], false),
            ("70/15/15 over 200", [145.0, 35.0, 35.0], false),
            ("50/25/25 over 1000", [505.0, 255.0, 255.0], false),
        ];
        for (what, [a, b, c], local) in cases {
            let p = plan(
                &prefer(),
                "a",
                &z,
                &measured(&[("a", *a), ("b", *b), ("c", *c)]),
            )
            .unwrap();
            assert_eq!(prob(&p, "a") == 1.0, *local, "{what}: {p:?}");
        }
        // Exact shares of the same proportions as the first case do spill: no noise margin.
        let exact = plan(
            &prefer(),
            "a",
            &z,
            &shares(&[("a", 6.0), ("b", 5.0), ("c", 5.0)]),
        );
        assert!(prob(&exact.unwrap(), "a") < 1.0);
    }

    #[test]
    fn balanced_clients_stay_local() {
        let z = zones(&[("a", 2, 2), ("b", 2, 2), ("c", 2, 2)]);
        let s = shares(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]);
        for c in ["a", "b", "c"] {
            assert_eq!(
                plan(&prefer(), c, &z, &s).unwrap().zones,
                vec![(c.to_owned(), 1.0)]
            );
        }
    }

    #[test]
    fn policies_table() {
        let z = zones(&[("a", 1, 1), ("b", 3, 3), ("c", 0, 2)]);
        let s = shares(&[("a", 1.0)]);
        let p = |policy: ZonePolicy, client: &str| plan(&policy, client, &z, &s);
        let nlb = ZonePolicy {
            cross_zone: false,
            zone_affinity: ZoneAffinity::None,
            fail_open: true,
            ..ZonePolicy::default()
        };
        // Cross-zone off: stay local while local is healthy...
        assert_eq!(p(nlb, "a").unwrap().zones, vec![("a".to_owned(), 1.0)]);
        // ... and go where the healthy backends are when it is not.
        assert_eq!(
            p(nlb, "c").unwrap().zones,
            vec![("a".to_owned(), 0.25), ("b".to_owned(), 0.75)]
        );
        // Cross-zone on: per healthy backend, wherever it is.
        let cross = ZonePolicy {
            cross_zone: true,
            ..nlb
        };
        assert_eq!(
            p(cross, "a").unwrap().zones,
            vec![("a".to_owned(), 0.25), ("b".to_owned(), 0.75)]
        );
        // Same-zone-only never leaves; with no healthy local backend it fails open locally, or refuses.
        let only = ZonePolicy {
            zone_affinity: ZoneAffinity::SameZoneOnly,
            ..nlb
        };
        assert_eq!(p(only, "b").unwrap().zones, vec![("b".to_owned(), 1.0)]);
        let open = p(only, "c").unwrap();
        assert_eq!(
            (open.zones.clone(), open.unhealthy),
            (vec![("c".to_owned(), 1.0)], true)
        );
        assert_eq!(
            p(
                ZonePolicy {
                    fail_open: false,
                    ..only
                },
                "c"
            ),
            None
        );
        // Balanced with an unhealthy local zone spills by residual capacity.
        let spill = p(prefer(), "c").unwrap();
        assert!(!spill.unhealthy);
        assert!((spill.zones.iter().map(|(_, x)| x).sum::<f64>() - 1.0).abs() < EPS);
        assert_eq!(prob(&spill, "c"), 0.0);
        assert_eq!(spill.routing, Routing::Sampled);
        // Kubernetes' PreferSameZone: local while it has a healthy backend, however skewed the
        // clients; otherwise every healthy backend evenly.
        let strict = ZonePolicy {
            zone_affinity: ZoneAffinity::PreferSameZone,
            ..nlb
        };
        let skewed = shares(&[("a", 0.9), ("b", 0.05), ("c", 0.05)]);
        let local = plan(&strict, "a", &z, &skewed).unwrap();
        assert_eq!(
            (local.zones, local.routing),
            (vec![("a".to_owned(), 1.0)], Routing::Other)
        );
        assert_eq!(
            p(strict, "c").unwrap().zones,
            vec![("a".to_owned(), 0.25), ("b".to_owned(), 0.75)]
        );
    }

    /// Envoy's thresholds: below the minimum cluster size every healthy backend evenly; below
    /// the panic threshold every backend, health ignored.
    #[test]
    fn balanced_cluster_size_and_panic() {
        let envoy = ZonePolicy {
            zone_affinity: ZoneAffinity::Balanced,
            ..ZonePolicy::default()
        };
        let skewed = shares(&[("a", 0.9), ("b", 0.05), ("c", 0.05)]);
        let small = zones(&[("a", 1, 1), ("b", 2, 2), ("c", 1, 1)]);
        let p = plan(&envoy, "b", &small, &skewed).unwrap();
        assert_eq!(p.routing, Routing::ClusterTooSmall);
        assert_eq!(
            p.zones,
            vec![
                ("a".to_owned(), 0.25),
                ("b".to_owned(), 0.5),
                ("c".to_owned(), 0.25)
            ]
        );
        let big = zones(&[("a", 2, 2), ("b", 2, 2), ("c", 2, 2)]);
        let p = plan(
            &envoy,
            "b",
            &big,
            &shares(&[("a", 1.0), ("b", 1.0), ("c", 1.0)]),
        )
        .unwrap();
        assert_eq!(p.routing, Routing::AllDirectly);
        let p = plan(&envoy, "a", &big, &skewed).unwrap();
        assert_eq!(p.routing, Routing::Sampled);
        let sick = zones(&[("a", 1, 2), ("b", 0, 2), ("c", 1, 2)]);
        let p = plan(&envoy, "a", &sick, &skewed).unwrap();
        assert_eq!((p.routing, p.unhealthy), (Routing::Panic, true));
        assert_eq!(p.zones.len(), 3);
    }

    #[test]
    fn nothing_healthy_fails_open_or_refuses() {
        let z = zones(&[("a", 0, 1), ("b", 0, 1)]);
        let s = shares(&[]);
        let open = plan(&ZonePolicy::default(), "a", &z, &s).unwrap();
        assert!(open.unhealthy);
        assert_eq!(open.zones, vec![("a".to_owned(), 1.0)]);
        assert_eq!(
            plan(
                &ZonePolicy {
                    fail_open: false,
                    ..ZonePolicy::default()
                },
                "a",
                &z,
                &s
            ),
            None
        );
        assert_eq!(plan(&ZonePolicy::default(), "a", &zones(&[]), &s), None);
    }

    #[test]
    fn picking_follows_the_distribution() {
        let p = Plan {
            zones: vec![("a".into(), 0.25), ("b".into(), 0.75)],
            unhealthy: false,
            routing: Routing::Other,
        };
        assert_eq!(pick(&p, 0.0), "a");
        assert_eq!(pick(&p, 0.2499), "a");
        assert_eq!(pick(&p, 0.25), "b");
        assert_eq!(pick(&p, 0.9999), "b");
    }
}
