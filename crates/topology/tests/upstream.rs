//! Upstream's table tests, ported: `topologycache_test.go` (SetNodes, AddHints),
//! `utils_test.go` (serviceOverloaded), `trafficdist_test.go` and `pkg/proxy/topology_test.go`
//! (Kubernetes 1.37), plus the worked examples of the reference (topology.md §1.4, §1.7).

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointSlice};
use serde_json::json;
use topology::auto::{self, SliceInfo, TopologyCache};
use topology::proxy::{self, Mode, Policies, ProxyEndpoint};
use topology::trafficdist;

fn node(zone: &str, cpu: &str, ready: bool, control_plane: bool) -> Node {
    let mut labels = serde_json::Map::new();
    if !zone.is_empty() {
        labels.insert(topology::LABEL_ZONE.into(), json!(zone));
    }
    if control_plane {
        labels.insert("node-role.kubernetes.io/control-plane".into(), json!(""));
    }
    serde_json::from_value(json!({"metadata": {"labels": labels},
        "status": {"allocatable": {"cpu": cpu},
            "conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}}))
    .unwrap()
}

fn ratios(r: &[(&str, f64)]) -> BTreeMap<String, f64> {
    r.iter().map(|(z, v)| ((*z).to_owned(), *v)).collect()
}

#[test]
fn set_nodes() {
    // (name, nodes (zone, cpu, ready, control plane), expected ratios)
    type Case = (
        &'static str,
        Vec<(&'static str, &'static str, bool, bool)>,
        Option<Vec<(&'static str, f64)>>,
    );
    let cases: Vec<Case> = vec![
        ("empty", vec![], None),
        ("single node", vec![("zone-a", "1000m", true, false)], None),
        (
            "single zone",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-a", "1000m", true, false),
            ],
            None,
        ),
        (
            "2 zones",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-b", "1000m", true, false),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "2 zones, unready node in 1, ready node in 1",
            vec![
                ("zone-a", "1000m", false, false),
                ("zone-b", "1000m", true, false),
            ],
            None,
        ),
        (
            "2 zones, control plane node in 1, ready node in 1",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-b", "1000m", true, true),
            ],
            None,
        ),
        (
            "2 zones, unready node in 1, ready node in 2",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-b", "1000m", true, false),
                ("zone-b", "1000m", false, false),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "2 zones, control plane node in 1, ready node in 2",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-b", "1000m", true, false),
                ("zone-b", "1000m", true, true),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.5)]),
        ),
        (
            "3 zones, 4 nodes in 1, 2 nodes in 1, 1 node in 1",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-a", "1000m", true, false),
                ("zone-a", "1000m", true, false),
                ("zone-a", "2000m", true, false),
                ("zone-b", "3000m", true, false),
                ("zone-b", "1500m", true, false),
                ("zone-c", "500m", true, false),
            ],
            Some(vec![("zone-a", 0.5), ("zone-b", 0.45), ("zone-c", 0.05)]),
        ),
        // The reference's note: one node without a zone bails out for the whole cluster.
        (
            "a node without zone",
            vec![
                ("zone-a", "1000m", true, false),
                ("zone-b", "1000m", true, false),
                ("", "1000m", true, false),
            ],
            None,
        ),
    ];
    for (name, nodes, want) in cases {
        let nodes: Vec<Node> = nodes
            .iter()
            .map(|(z, c, r, cp)| node(z, c, *r, *cp))
            .collect();
        let mut cache = TopologyCache::new();
        cache.set_nodes(&nodes);
        assert_eq!(cache.sufficient_node_info(), want.is_some(), "{name}");
        match want {
            None => assert!(cache.ratios().is_none(), "{name}"),
            Some(w) => {
                let got = cache.ratios().unwrap();
                assert_eq!(got.len(), w.len(), "{name}");
                for (z, r) in w {
                    assert!((got[z] - r).abs() < 1e-9, "{name}: {z} {} vs {r}", got[z]);
                }
            }
        }
    }
}

/// An endpoint: (address, zone, ready).
fn ep(addr: &str, zone: &str, ready: Option<bool>) -> serde_json::Value {
    let mut e = json!({"addresses": [addr], "zone": zone});
    if let Some(r) = ready {
        e["conditions"] = json!({"ready": r});
    }
    e
}

fn slice(endpoints: Vec<serde_json::Value>) -> EndpointSlice {
    serde_json::from_value(json!({"metadata": {}, "addressType": "IPv4", "endpoints": endpoints}))
        .unwrap()
}

fn hints(slices: &[EndpointSlice]) -> Vec<Option<String>> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .map(|e: &Endpoint| {
            e.hints
                .as_ref()
                .and_then(|h| h.for_zones.as_ref())
                .map(|z| {
                    z.iter()
                        .map(|z| z.name.clone())
                        .collect::<Vec<_>>()
                        .join(",")
                })
        })
        .collect()
}

fn s(v: &str) -> Option<String> {
    Some(v.to_owned())
}

#[test]
fn add_hints() {
    let si = |to_create: Vec<EndpointSlice>, to_update: Vec<EndpointSlice>| SliceInfo {
        service_key: "ns/svc".into(),
        address_type: "IPv4".into(),
        to_create,
        to_update,
        unchanged: Vec::new(),
    };
    let t = Some(true);

    // empty: no ratios.
    let mut cache = TopologyCache::new();
    let mut info = si(vec![], vec![]);
    let events = cache.add_hints(&mut info);
    assert_eq!(events.len(), 1);
    assert!(events[0].message.starts_with(auto::INSUFFICIENT_NODE_INFO));
    assert!(cache.hints_of("ns/svc").is_none());

    // slice to create, no zone ratios
    let mut info = si(vec![slice(vec![ep("10.1.2.3", "zone-a", t)])], vec![]);
    let events = cache.add_hints(&mut info);
    assert_eq!(hints(&info.to_create), [None]);
    assert_eq!(
        events[0].message,
        format!("{}, addressType: IPv4", auto::INSUFFICIENT_NODE_INFO)
    );

    // slice to create with 2 endpoints, zone ratios require 3
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(ratios(&[
        ("zone-a", 0.3),
        ("zone-b", 0.4),
        ("zone-c", 0.3),
    ])));
    let mut info = si(
        vec![slice(vec![
            ep("10.1.2.3", "zone-a", t),
            ep("10.1.2.4", "zone-b", t),
        ])],
        vec![],
    );
    let events = cache.add_hints(&mut info);
    assert_eq!(hints(&info.to_create), [None, None]);
    assert_eq!(
        events[0].message,
        "Insufficient number of endpoints (2 endpoints, 3 zones), addressType: IPv4"
    );
    assert!(cache.hints_of("ns/svc").is_none());

    // slice to create with 2 endpoints, zone ratios only require 2
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(ratios(&[("zone-a", 0.45), ("zone-b", 0.55)])));
    let mut info = si(
        vec![slice(vec![
            ep("10.1.2.3", "zone-a", t),
            ep("10.1.2.4", "zone-b", t),
        ])],
        vec![],
    );
    let events = cache.add_hints(&mut info);
    assert_eq!(hints(&info.to_create), [s("zone-a"), s("zone-b")]);
    assert_eq!(
        (
            events[0].warning,
            events[0].reason,
            events[0].message.as_str()
        ),
        (
            false,
            auto::REASON_ENABLED,
            "Topology Aware Hints has been enabled, addressType: IPv4"
        )
    );
    assert_eq!(
        cache.hints_of("ns/svc").unwrap()["IPv4"],
        BTreeMap::from([("zone-a".into(), 1), ("zone-b".into(), 1)])
    );

    // 2 ready, 1 unready, 1 unknown endpoints
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(ratios(&[("zone-a", 0.45), ("zone-b", 0.55)])));
    let mut info = si(
        vec![slice(vec![
            ep("10.1.2.3", "zone-a", t),
            ep("10.1.2.4", "zone-b", t),
            ep("10.1.2.5", "zone-b", Some(false)),
            ep("10.1.2.6", "zone-b", None),
        ])],
        vec![],
    );
    cache.add_hints(&mut info);
    assert_eq!(
        hints(&info.to_create),
        [s("zone-a"), s("zone-b"), None, None]
    );

    // slices to create and update within 3 zone threshold
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(ratios(&[
        ("zone-a", 0.35),
        ("zone-b", 0.35),
        ("zone-c", 0.30),
    ])));
    let mut info = si(
        vec![
            slice(vec![
                ep("10.1.2.3", "zone-a", t),
                ep("10.1.2.4", "zone-b", t),
            ]),
            slice(vec![
                ep("10.1.3.3", "zone-c", t),
                ep("10.1.3.4", "zone-c", t),
                ep("10.1.3.4", "zone-a", t),
            ]),
        ],
        vec![
            slice(vec![
                ep("10.2.2.3", "zone-a", t),
                ep("10.2.2.4", "zone-a", t),
            ]),
            slice(vec![
                ep("10.2.3.3", "zone-b", t),
                ep("10.2.3.4", "zone-c", t),
                ep("10.2.3.4", "zone-a", t),
            ]),
        ],
    );
    let events = cache.add_hints(&mut info);
    assert_eq!(
        hints(&info.to_create),
        [
            s("zone-b"),
            s("zone-b"),
            s("zone-c"),
            s("zone-c"),
            s("zone-a")
        ]
    );
    assert_eq!(
        hints(&info.to_update),
        [
            s("zone-a"),
            s("zone-a"),
            s("zone-b"),
            s("zone-c"),
            s("zone-a")
        ]
    );
    assert_eq!(events[0].reason, auto::REASON_ENABLED);
    assert_eq!(
        cache.hints_of("ns/svc").unwrap()["IPv4"],
        BTreeMap::from([
            ("zone-a".into(), 4),
            ("zone-b".into(), 3),
            ("zone-c".into(), 3)
        ])
    );

    // An endpoint without a zone removes the hints, with upstream's event.
    let mut info = si(
        vec![slice(vec![
            ep("10.1.2.3", "zone-a", t),
            ep("10.1.2.4", "", t),
            ep("10.1.2.5", "zone-b", t),
            ep("10.1.2.6", "zone-b", t),
        ])],
        vec![],
    );
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(ratios(&[("zone-a", 0.5), ("zone-b", 0.5)])));
    let events = cache.add_hints(&mut info);
    assert_eq!(hints(&info.to_create), [None, None, None, None]);
    assert_eq!(
        events.last().unwrap().message,
        "One or more endpoints do not have a zone specified, addressType: IPv4"
    );
}

#[test]
fn service_overloaded() {
    // (counts per zone, ratios, overloaded) from utils_test.go.
    let z = |v: &[(&str, usize)]| -> BTreeMap<String, usize> {
        v.iter().map(|(k, n)| ((*k).to_owned(), *n)).collect()
    };
    let cases = [
        ("empty", z(&[]), ratios(&[]), false),
        (
            "single zone",
            z(&[("zone-a", 1)]),
            ratios(&[("zone-a", 1.0)]),
            false,
        ),
        (
            "single zone, no ratios",
            z(&[("zone-a", 1)]),
            ratios(&[]),
            true,
        ),
        (
            "3 zones, all balanced",
            z(&[("zone-a", 1), ("zone-b", 1), ("zone-c", 1)]),
            ratios(&[("zone-a", 0.33), ("zone-b", 0.33), ("zone-c", 0.33)]),
            false,
        ),
        (
            "3 zones, 1 missing",
            z(&[("zone-a", 1), ("zone-b", 1)]),
            ratios(&[("zone-a", 0.33), ("zone-b", 0.33), ("zone-c", 0.33)]),
            true,
        ),
        (
            "3 zones, overload threshold exceeded",
            z(&[("zone-a", 4), ("zone-b", 2), ("zone-c", 2)]),
            ratios(&[("zone-a", 0.2), ("zone-b", 0.4), ("zone-c", 0.4)]),
            true,
        ),
    ];
    for (name, counts, r, want) in cases {
        let r = (!r.is_empty()).then_some(r);
        assert_eq!(
            auto::service_overloaded(&counts, r.as_ref()),
            want,
            "{name}"
        );
    }
}

/// topology.md §1.4: with 3 equal zones, N ready endpoints give hints or not.
#[test]
fn three_equal_zones_jagged_feasibility() {
    let r = ratios(&[("a", 1.0 / 3.0), ("b", 1.0 / 3.0), ("c", 1.0 / 3.0)]);
    let feasible: Vec<usize> = (1..=30)
        .filter(|n| auto::allocations(Some(&r), *n).is_ok())
        .collect();
    let mut want: Vec<usize> = vec![3, 6, 7, 9, 10];
    want.extend(12..=30);
    assert_eq!(feasible, want);
    let e = auto::allocations(Some(&r), 11).unwrap_err();
    assert_eq!(
        e.message,
        "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold (11 endpoints, 3 zones)"
    );
    // Two zones with CPU 2:1 and two endpoints: minimums 2 and 1 do not fit.
    let two = ratios(&[("a", 2.0 / 3.0), ("b", 1.0 / 3.0)]);
    assert!(auto::allocations(Some(&two), 2).is_err());
}

/// topology.md §1.7: CPU 20/16/14, 10 ready endpoints placed 2/4/4 end up hinted 4/3/3.
#[test]
fn the_keps_cpu_example() {
    let nodes = [
        node("zone-a", "20", true, false),
        node("zone-b", "16", true, false),
        node("zone-c", "14", true, false),
    ];
    let mut cache = TopologyCache::new();
    cache.set_nodes(&nodes);
    let r = cache.ratios().unwrap();
    assert!((r["zone-a"] - 0.40).abs() < 1e-9 && (r["zone-c"] - 0.28).abs() < 1e-9);
    let t = Some(true);
    let placed = [
        "zone-a", "zone-a", "zone-b", "zone-b", "zone-b", "zone-b", "zone-c", "zone-c", "zone-c",
        "zone-c",
    ];
    let mut info = SliceInfo {
        service_key: "ns/web".into(),
        address_type: "IPv4".into(),
        to_create: vec![slice(
            placed
                .iter()
                .enumerate()
                .map(|(i, z)| ep(&format!("10.0.0.{i}"), z, t))
                .collect(),
        )],
        ..SliceInfo::default()
    };
    cache.add_hints(&mut info);
    assert_eq!(
        cache.hints_of("ns/web").unwrap()["IPv4"],
        BTreeMap::from([
            ("zone-a".into(), 4),
            ("zone-b".into(), 3),
            ("zone-c".into(), 3)
        ])
    );
    // A node change that leaves zone-a without CPU makes the Service overloaded (requeued).
    cache.set_nodes(&nodes[1..]);
    assert_eq!(cache.overloaded_services(), ["ns/web"]);
}

#[test]
fn traffic_distribution_hints() {
    let e = |zone: Option<&str>, node: Option<&str>, ready: bool, hint: Option<&str>| {
        let mut v = json!({"addresses": ["10.0.0.1"], "conditions": {"ready": ready}});
        if let Some(z) = zone {
            v["zone"] = json!(z);
        }
        if let Some(n) = node {
            v["nodeName"] = json!(n);
        }
        if let Some(h) = hint {
            v["hints"] = json!({"forZones": [{"name": h}]});
        }
        v
    };
    let zones_nodes = |slices: &[EndpointSlice]| -> Vec<(Vec<String>, Vec<String>)> {
        slices
            .iter()
            .flat_map(|s| &s.endpoints)
            .map(|e| {
                let h = e.hints.clone().unwrap_or_default();
                (
                    h.for_zones
                        .iter()
                        .flatten()
                        .map(|z| z.name.clone())
                        .collect(),
                    h.for_nodes
                        .iter()
                        .flatten()
                        .map(|n| n.name.clone())
                        .collect(),
                )
            })
            .collect()
    };
    let v = |x: &[&str]| x.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
    // PreferClose: ready endpoints with a zone get their zone; no zone, no hint; not-ready kept.
    let mut create = vec![slice(vec![
        e(Some("zone-a"), Some("n1"), true, None),
        e(None, Some("n2"), true, Some("zone-b")),
        e(Some("zone-c"), Some("n3"), false, Some("zone-x")),
    ])];
    let (mut update, mut unchanged) = (Vec::new(), Vec::new());
    trafficdist::reconcile_hints(
        Some(topology::PREFER_CLOSE),
        &mut create,
        &mut update,
        &mut unchanged,
    );
    assert_eq!(
        zones_nodes(&create),
        [
            (v(&["zone-a"]), v(&[])),
            (v(&[]), v(&[])),
            (v(&["zone-x"]), v(&[]))
        ]
    );
    // PreferSameNode adds node hints; an unchanged slice with only zone hints is updated.
    let mut unchanged = vec![slice(vec![e(
        Some("zone-a"),
        Some("n1"),
        true,
        Some("zone-a"),
    )])];
    let (mut create, mut update) = (Vec::new(), Vec::new());
    trafficdist::reconcile_hints(
        Some(topology::PREFER_SAME_NODE),
        &mut create,
        &mut update,
        &mut unchanged,
    );
    assert!(unchanged.is_empty());
    assert_eq!(zones_nodes(&update), [(v(&["zone-a"]), v(&["n1"]))]);
    // PreferSameZone keeps a correct unchanged slice as it is.
    let mut unchanged = vec![slice(vec![e(
        Some("zone-a"),
        Some("n1"),
        true,
        Some("zone-a"),
    )])];
    let mut update = Vec::new();
    trafficdist::reconcile_hints(
        Some(topology::PREFER_SAME_ZONE),
        &mut [],
        &mut update,
        &mut unchanged,
    );
    assert_eq!((unchanged.len(), update.len()), (1, 0));
    // Unset (or unknown): every hint goes, unchanged slices with hints included.
    let mut unchanged = vec![slice(vec![e(
        Some("zone-a"),
        Some("n1"),
        true,
        Some("zone-a"),
    )])];
    let mut update = Vec::new();
    trafficdist::reconcile_hints(Some("Random"), &mut [], &mut update, &mut unchanged);
    assert_eq!(zones_nodes(&update), [(v(&[]), v(&[]))]);
}

/// An endpoint for kube-proxy; `state` is (ready, serving, terminating), `me` the node asking.
fn pe(
    id: &str,
    node: &str,
    zones: &[&str],
    nodes: &[&str],
    (ready, serving, terminating): (bool, bool, bool),
    me: &str,
) -> ProxyEndpoint {
    ProxyEndpoint {
        id: id.into(),
        node_name: node.into(),
        zone_hints: zones.iter().map(|z| (*z).to_owned()).collect(),
        node_hints: nodes.iter().map(|n| (*n).to_owned()).collect(),
        ready,
        serving,
        terminating,
        local: node == me,
    }
}

fn ids(v: &[ProxyEndpoint]) -> BTreeSet<String> {
    v.iter().map(|e| e.id.clone()).collect()
}

#[test]
fn categorize_endpoints() {
    let cluster = Policies {
        uses_cluster: true,
        uses_local: false,
    };
    let local = Policies {
        uses_cluster: false,
        uses_local: true,
    };
    let both = Policies {
        uses_cluster: true,
        uses_local: true,
    };
    let set = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<BTreeSet<_>>();
    let me = "node-1";
    // hints enabled, hints annotation == auto: only the zone's endpoints.
    let eps = vec![
        pe(
            "10.1.2.3:80",
            "node-1",
            &["zone-a"],
            &[],
            (true, true, false),
            me,
        ),
        pe(
            "10.1.2.4:80",
            "node-2",
            &["zone-b"],
            &[],
            (true, true, false),
            me,
        ),
        pe(
            "10.1.2.5:80",
            "node-3",
            &["zone-c"],
            &[],
            (true, true, false),
            me,
        ),
        pe(
            "10.1.2.6:80",
            "node-4",
            &["zone-a"],
            &[],
            (true, true, false),
            me,
        ),
    ];
    let c = proxy::categorize(&eps, cluster, me, "zone-a");
    assert_eq!(ids(&c.cluster), set(&["10.1.2.3:80", "10.1.2.6:80"]));
    assert_eq!(proxy::mode_from_hints(&eps, me, "zone-a"), Mode::SameZone);
    // The node has no zone label: all endpoints.
    let c = proxy::categorize(&eps, cluster, me, "");
    assert_eq!(c.cluster.len(), 4);
    // No endpoint hinted for this zone: all endpoints.
    let c = proxy::categorize(&eps, cluster, me, "zone-d");
    assert_eq!(c.cluster.len(), 4);
    // One ready endpoint without a hint: all endpoints, on every node.
    let mut missing = eps.clone();
    missing[2].zone_hints.clear();
    assert_eq!(
        proxy::categorize(&missing, cluster, me, "zone-a")
            .cluster
            .len(),
        4
    );
    // ... unless it is not ready (only ready endpoints decide).
    missing[2].ready = false;
    missing[2].serving = false;
    assert_eq!(
        ids(&proxy::categorize(&missing, cluster, me, "zone-a").cluster),
        set(&["10.1.2.3:80", "10.1.2.6:80"])
    );
    // Same-node hints, then zone, then all.
    let node_eps = vec![
        pe(
            "10.0.0.1:80",
            "node-1",
            &["zone-a"],
            &["node-1"],
            (true, true, false),
            me,
        ),
        pe(
            "10.0.0.2:80",
            "node-2",
            &["zone-a"],
            &["node-2"],
            (true, true, false),
            me,
        ),
        pe(
            "10.0.0.3:80",
            "node-3",
            &["zone-b"],
            &["node-3"],
            (true, true, false),
            me,
        ),
    ];
    assert_eq!(
        ids(&proxy::categorize(&node_eps, cluster, me, "zone-a").cluster),
        set(&["10.0.0.1:80"])
    );
    assert_eq!(
        ids(&proxy::categorize(&node_eps, cluster, "node-9", "zone-a").cluster),
        set(&["10.0.0.1:80", "10.0.0.2:80"])
    );
    assert_eq!(
        proxy::categorize(&node_eps, cluster, "node-9", "zone-c")
            .cluster
            .len(),
        3
    );
    // Local policy: this node's ready endpoints, hints ignored.
    let c = proxy::categorize(&eps, local, me, "zone-b");
    assert_eq!(ids(&c.local), set(&["10.1.2.3:80"]));
    assert_eq!(ids(&c.all_reachable), set(&["10.1.2.3:80"]));
    // No ready endpoints: serving-and-terminating ones, cluster and local.
    let term = vec![
        pe("10.0.1.1:80", "node-1", &[], &[], (false, true, true), me),
        pe("10.0.1.2:80", "node-2", &[], &[], (false, false, true), me),
    ];
    let c = proxy::categorize(&term, both, me, "zone-a");
    assert_eq!(ids(&c.cluster), set(&["10.0.1.1:80"]));
    assert_eq!(ids(&c.local), set(&["10.0.1.1:80"]));
    assert!(c.has_any);
    // Both policies with a topology mode: cluster and local together.
    let on_node_3: Vec<ProxyEndpoint> = eps
        .iter()
        .map(|e| ProxyEndpoint {
            local: e.node_name == "node-3",
            ..e.clone()
        })
        .collect();
    let c = proxy::categorize(&on_node_3, both, "node-3", "zone-a");
    assert_eq!(
        ids(&c.all_reachable),
        set(&["10.1.2.3:80", "10.1.2.5:80", "10.1.2.6:80"])
    );
    // Nothing at all.
    assert_eq!(
        proxy::categorize(&[], both, me, "zone-a"),
        proxy::Categorized::default()
    );
}

/// sliceinfo_test.go's point: an unchanged slice keeps hints that still fit the allocation and
/// moves to the updates when they do not (a zone no longer allocated).
#[test]
fn unchanged_slices_keep_valid_hints() {
    let hinted = |zone: &str, hint: &str| {
        json!({"addresses": ["10.0.0.1"], "zone": zone, "conditions": {"ready": true},
            "hints": {"forZones": [{"name": hint}]}})
    };
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(ratios(&[("zone-a", 0.5), ("zone-b", 0.5)])));
    let mut info = SliceInfo {
        service_key: "ns/svc".into(),
        address_type: "IPv4".into(),
        unchanged: vec![
            slice(vec![hinted("zone-a", "zone-a"), hinted("zone-a", "zone-a")]),
            slice(vec![
                hinted("zone-b", "zone-b"),
                hinted("zone-b", "zone-gone"),
            ]),
        ],
        ..SliceInfo::default()
    };
    cache.add_hints(&mut info);
    assert_eq!(info.unchanged.len(), 1, "the valid slice stays");
    assert_eq!(hints(&info.unchanged), [s("zone-a"), s("zone-a")]);
    assert_eq!(hints(&info.to_update), [s("zone-b"), s("zone-b")]);
    assert_eq!(
        cache.hints_of("ns/svc").unwrap()["IPv4"],
        BTreeMap::from([("zone-a".into(), 2), ("zone-b".into(), 2)])
    );
}

/// The kube-proxy view of slices: one endpoint per address, unset conditions as the API
/// documents them (ready true, serving as ready, terminating false), hints, and locality.
#[test]
fn proxy_endpoints_from_slices() {
    let slices = vec![slice(vec![
        json!({"addresses": ["10.0.0.1", "10.0.0.2"], "nodeName": "n1", "zone": "zone-a",
            "hints": {"forZones": [{"name": "zone-a"}], "forNodes": [{"name": "n1"}]}}),
        json!({"addresses": ["10.0.0.3"], "nodeName": "n2",
            "conditions": {"ready": false, "serving": true, "terminating": true}}),
    ])];
    let eps = ProxyEndpoint::from_slices(&slices, "n1");
    let want = |id: &str, (ready, serving, terminating): (bool, bool, bool), local, hinted| {
        let set = |x: &str| -> BTreeSet<String> {
            [x].iter()
                .filter(|_| hinted)
                .map(|s| (*s).to_owned())
                .collect()
        };
        ProxyEndpoint {
            id: id.into(),
            node_name: if local { "n1" } else { "n2" }.into(),
            zone_hints: set("zone-a"),
            node_hints: set("n1"),
            ready,
            serving,
            terminating,
            local,
        }
    };
    assert_eq!(
        eps,
        [
            want("10.0.0.1", (true, true, false), true, true),
            want("10.0.0.2", (true, true, false), true, true),
            want("10.0.0.3", (false, true, true), false, false),
        ]
    );
    // Only ready endpoints decide the mode: both are hinted for n1, so kube-proxy on n1 uses them
    // (same node); the terminating one is not ready and not a fallback while they are.
    let c = proxy::categorize(
        &eps,
        Policies {
            uses_cluster: true,
            uses_local: false,
        },
        "n1",
        "zone-a",
    );
    assert_eq!(
        ids(&c.cluster),
        ["10.0.0.1".to_owned(), "10.0.0.2".to_owned()].into()
    );
}
