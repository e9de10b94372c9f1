//! The `route` controller: one cloud route per node pod CIDR, as upstream's route controller.
//!
//! Each pass (every `--route-reconciliation-period`, and soon after a node's pod CIDRs change)
//! lists the cluster's routes, plans ([`plan`]) which to create and which to delete (stale or
//! blackhole routes, only inside `--cluster-cidr`), acts with up to 200 operations in flight, and
//! sets each node's `NetworkUnavailable` condition (`RouteCreated` / `NoRouteCreated`).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use ipnet::IpNet;
use k8s_openapi::api::core::v1::Node;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::events::{Event, EventType};
use kube::runtime::watcher;
use kube::{Resource, ResourceExt};
use serde_json::json;
use tokio::sync::Notify;
use tracing::Instrument as _;

use crate::cloud::{CloudRoute, HasRoutes, RouteSpec, is_ours, provider_id};
use crate::event_recorder::Recorder;
use crate::informer::NodeEvents;
use crate::metrics::Metrics;
use crate::names;

/// Most route creates and deletes in flight at once (upstream's `maxConcurrentRouteOperations`).
pub const MAX_CONCURRENT_ROUTE_OPERATIONS: usize = 200;
/// Node changes never trigger passes more often than this (upstream's `minRouteResyncInterval`),
/// nor more often than `--route-reconciliation-period` when that is shorter.
pub const MIN_RESYNC_INTERVAL: Duration = Duration::from_secs(10);

/// Parses `--cluster-cidr`: one CIDR, or a dual-stack pair (one per family).
pub fn parse_cluster_cidrs(s: &str) -> Result<Vec<IpNet>, String> {
    let parts: Vec<&str> = s
        .split(',')
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .collect();
    if parts.is_empty() {
        return Err("--cluster-cidr is required when the route controller runs (or pass --configure-cloud-routes=false)".into());
    }
    let nets = parts
        .iter()
        .map(|p| {
            p.parse::<IpNet>()
                .map(|n| n.trunc())
                .map_err(|_| format!("--cluster-cidr: {p:?} is not a CIDR"))
        })
        .collect::<Result<Vec<_>, _>>()?;
    match nets.as_slice() {
        [_] => Ok(nets),
        [a, b] if matches!(a, IpNet::V4(_)) != matches!(b, IpNet::V4(_)) => Ok(nets),
        [_, _] => {
            Err("--cluster-cidr: two CIDRs must be a dual-stack pair (one IPv4, one IPv6)".into())
        }
        _ => Err("--cluster-cidr: at most two CIDRs (a dual-stack pair)".into()),
    }
}

/// True when the route's destination starts or ends inside a cluster CIDR (upstream's
/// `isResponsibleForRoute`): only such routes are ever deleted.
pub fn responsible(destination: &str, cluster: &[IpNet]) -> bool {
    let Ok(net) = destination.parse::<IpNet>() else {
        return false;
    };
    cluster
        .iter()
        .any(|c| c.contains(&net.network()) || c.contains(&net.broadcast()))
}

/// What the route controller needs to know about a node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    pub name: String,
    pub uid: String,
    pub provider_id: Option<String>,
    pub pod_cidrs: Vec<String>,
}

impl NodeInfo {
    pub fn from_node(n: &Node) -> Self {
        let spec = n.spec.as_ref();
        let mut pod_cidrs: Vec<String> = spec.and_then(|s| s.pod_cidrs.clone()).unwrap_or_default();
        if pod_cidrs.is_empty()
            && let Some(c) = spec
                .and_then(|s| s.pod_cidr.clone())
                .filter(|c| !c.is_empty())
        {
            pod_cidrs.push(c);
        }
        Self {
            name: n.name_any(),
            uid: n.uid().unwrap_or_default(),
            provider_id: provider_id(n).map(str::to_owned),
            pod_cidrs,
        }
    }
}

/// Creates and deletes of one pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// `(node, pod CIDR)` pairs without a route.
    pub creates: Vec<(String, String)>,
    pub deletes: Vec<CloudRoute>,
}

/// A route destination as compared: its network when it parses (so `10.244.1.0/24` and
/// `10.244.1.7/24` are one), else its text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Dest<'a> {
    Net(IpNet),
    Text(&'a str),
}

fn dest(s: &str) -> Dest<'_> {
    s.parse::<IpNet>()
        .map_or(Dest::Text(s), |n| Dest::Net(n.trunc()))
}

/// Plans a pass (pure): a route for every pod CIDR of every simcloud node; deletion of blackhole
/// routes and of routes no node wants, inside the cluster CIDRs only.
pub fn plan(nodes: &[NodeInfo], routes: &[CloudRoute], cluster: &[IpNet]) -> RoutePlan {
    let mut out = RoutePlan::default();
    // Sets, not scans: at 10,000 nodes and routes a pass compared every pair (10^8 parses).
    let existing: HashSet<(&str, Dest<'_>)> = routes
        .iter()
        .map(|r| (r.target_node.as_str(), dest(&r.destination_cidr)))
        .collect();
    let mut wanted: HashSet<(&str, Dest<'_>)> = HashSet::new();
    for n in nodes {
        if n.provider_id
            .as_deref()
            .is_some_and(|p| !cloud_api::ProviderId::is_ours(p))
        {
            continue;
        }
        for cidr in &n.pod_cidrs {
            let key = (n.name.as_str(), dest(cidr));
            wanted.insert(key);
            // A blackhole route for it counts too: this pass deletes it, the next creates the
            // route (upstream does the same; creating now would race the delete, and an
            // AlreadyExists answer would report a route that is about to vanish).
            if !existing.contains(&key) {
                out.creates.push((n.name.clone(), cidr.clone()));
            }
        }
    }
    for r in routes {
        if !responsible(&r.destination_cidr, cluster) {
            continue;
        }
        let is_wanted = wanted.contains(&(r.target_node.as_str(), dest(&r.destination_cidr)));
        if r.blackhole || !is_wanted {
            out.deletes.push(r.clone());
        }
    }
    out
}

/// The `NetworkUnavailable` status a node should have after a pass: `Some(true)` = unavailable
/// (`NoRouteCreated`), `Some(false)` = `RouteCreated`, `None` = leave the node alone (no pod
/// CIDRs and no routes).
pub fn network_unavailable(
    node: &NodeInfo,
    had_routes: bool,
    failed: &BTreeSet<(String, String)>,
) -> Option<bool> {
    if node.pod_cidrs.is_empty() {
        return had_routes.then_some(true);
    }
    Some(
        node.pod_cidrs
            .iter()
            .any(|c| failed.contains(&(node.name.clone(), c.clone()))),
    )
}

pub struct RouteContext {
    pub client: kube::Client,
    pub cloud: HasRoutes,
    pub metrics: Arc<Metrics>,
    pub recorder: Recorder,
    pub cluster_name: String,
    pub cluster_cidrs: Vec<IpNet>,
    /// Nodes whose route is failing, with the destination it fails for: a failure is reported
    /// (warning, event) when a node starts failing or its destination changes, not on every pass.
    failing: std::sync::Mutex<HashMap<String, String>>,
}

/// Whether a failed create for `node` to `cidr` is news: the node was not failing, or failed
/// for another destination. Records it as failing.
pub fn failure_is_news(failing: &mut HashMap<String, String>, node: &str, cidr: &str) -> bool {
    failing.insert(node.to_owned(), cidr.to_owned()).as_deref() != Some(cidr)
}

/// Whether `node`'s route, now created, had been failing (its recovery is worth a line).
pub fn recovered(failing: &mut HashMap<String, String>, node: &str) -> bool {
    failing.remove(node).is_some()
}

impl RouteContext {
    pub fn new(
        client: kube::Client,
        cloud: HasRoutes,
        metrics: Arc<Metrics>,
        identity: &str,
        cluster_name: &str,
        cluster_cidrs: Vec<IpNet>,
    ) -> Self {
        let recorder = crate::recorder(&client, names::ROUTE_EVENT_SOURCE, identity);
        Self {
            client,
            cloud,
            metrics,
            recorder,
            cluster_name: cluster_name.to_owned(),
            cluster_cidrs,
            failing: Default::default(),
        }
    }
}

/// The node's current `NetworkUnavailable` (status, reason), if set.
fn current_condition(node: &Node) -> Option<(String, String)> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == names::CONDITION_NETWORK_UNAVAILABLE)
        .map(|c| (c.status.clone(), c.reason.clone().unwrap_or_default()))
}

async fn set_condition(ctx: &RouteContext, node: &Node, unavailable: bool) {
    let (status, reason, message) = if unavailable {
        (
            "True",
            names::REASON_NO_ROUTE_CREATED,
            names::MESSAGE_NO_ROUTE_CREATED,
        )
    } else {
        (
            "False",
            names::REASON_ROUTE_CREATED,
            names::MESSAGE_ROUTE_CREATED,
        )
    };
    if current_condition(node).is_some_and(|(s, r)| s == status && r == reason) {
        return;
    }
    let now = jiff::Timestamp::now().to_string();
    let cond = json!({"type": names::CONDITION_NETWORK_UNAVAILABLE, "status": status, "reason": reason, "message": message, "lastHeartbeatTime": now, "lastTransitionTime": now});
    let api: Api<Node> = Api::all(ctx.client.clone());
    match api
        .patch_status(
            &node.name_any(),
            &PatchParams::default(),
            &Patch::Strategic(json!({"status": {"conditions": [cond]}})),
        )
        .await
    {
        Ok(_) => tracing::info!(node = %node.name_any(), status, reason, "set NetworkUnavailable"),
        Err(e) => {
            tracing::warn!(node = %node.name_any(), error = %e, "cannot set NetworkUnavailable")
        }
    }
}

/// Outcome of a pass, for logs, metrics and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PassReport {
    pub created: usize,
    pub deleted: usize,
    pub failed_creates: usize,
    pub failed_deletes: usize,
}

/// A finished route operation of a pass.
enum Op {
    Deleted(bool),
    Created((String, String, Result<(), (String, Duration)>)),
}

/// One reconciliation pass over `nodes`: planned from a snapshot of them, while the conditions
/// and events at its end read each Node as it is by then. The snapshot is not kept across the
/// pass: a pass outlasts many Node updates at bring-up, and would pin every old version.
pub async fn reconcile(
    ctx: &RouteContext,
    nodes: &crate::informer::SharedNodes,
) -> Result<PassReport, crate::cloud::CloudError> {
    let routes_api = ctx.cloud.get();
    let routes = routes_api.list_routes(&ctx.cluster_name).await?;
    let infos: Vec<NodeInfo> = nodes
        .state()
        .iter()
        .filter(|n| is_ours(n))
        .map(|n| NodeInfo::from_node(n))
        .collect();
    let p = plan(&infos, &routes, &ctx.cluster_cidrs);
    // Which nodes had routes as the pass began decides their condition at its end; the list
    // itself goes now (at 10,000 routes it is ~10 MiB, held for the whole pass).
    let with_routes: HashSet<String> = routes.into_iter().map(|r| r.target_node).collect();
    let mut report = PassReport::default();
    // Owned data in every future, so the pass stays `Send` for any lifetime. One limit is shared
    // by creates and deletes, as upstream's semaphore of 200.
    let mut ops: Vec<futures_util::future::BoxFuture<'static, Op>> = Vec::new();
    for r in p.deletes.iter().cloned() {
        let cloud = ctx.cloud.clone();
        let cluster = ctx.cluster_name.clone();
        ops.push(Box::pin(async move {
            let routes_api = cloud.get();
            let res = routes_api.delete_route(&cluster, &r).await;
            match &res {
                Ok(()) => tracing::info!(route = %r.name, destination = %r.destination_cidr, node = %r.target_node, blackhole = r.blackhole, "deleted route"),
                Err(e) => tracing::warn!(route = %r.name, error = %crate::error_chain(e), "deleting route failed"),
            }
            Op::Deleted(res.is_ok())
        }));
    }
    let by_name: HashMap<&str, &NodeInfo> = infos.iter().map(|n| (n.name.as_str(), n)).collect();
    for (node, cidr) in p.creates.iter().cloned() {
        let info = by_name[node.as_str()].clone();
        let cloud = ctx.cloud.clone();
        let cluster = ctx.cluster_name.clone();
        ops.push(Box::pin(async move {
            let routes_api = cloud.get();
            let started = Instant::now();
            let spec = RouteSpec {
                target_node: node.clone(),
                target_provider_id: info.provider_id.clone(),
                destination_cidr: cidr.clone(),
            };
            let res = routes_api.create_route(&cluster, &info.uid, &spec).await;
            Op::Created((
                node,
                cidr,
                res.map_err(|e| (crate::error_chain(&e), started.elapsed())),
            ))
        }));
    }
    let done: Vec<Op> = futures_util::stream::iter(ops)
        .buffer_unordered(MAX_CONCURRENT_ROUTE_OPERATIONS)
        .collect()
        .await;
    let mut deleted = Vec::new();
    let mut created = Vec::new();
    for op in done {
        match op {
            Op::Deleted(ok) => deleted.push(ok),
            Op::Created(c) => created.push(c),
        }
    }
    report.deleted = deleted.iter().filter(|ok| **ok).count();
    report.failed_deletes = deleted.len() - report.deleted;
    let mut failed = BTreeSet::new();
    for (node, cidr, res) in created {
        match res {
            Ok(()) => {
                report.created += 1;
                let was_failing = recovered(&mut ctx.failing.lock().expect("failing lock"), &node);
                tracing::info!(node, destination = %cidr, recovered = was_failing, "created route");
            }
            Err((err, took)) => {
                report.failed_creates += 1;
                let news =
                    failure_is_news(&mut ctx.failing.lock().expect("failing lock"), &node, &cidr);
                failed.insert((node.clone(), cidr.clone()));
                if !news {
                    // Reported when it started; the NetworkUnavailable condition still says so.
                    tracing::debug!(node, destination = %cidr, error = %err, "creating route still fails");
                    continue;
                }
                tracing::warn!(node, destination = %cidr, error = %err, "creating route failed; retried every pass, reported again only if it changes");
                if let Some(n) = nodes.get(&node) {
                    let note = format!(
                        "Could not create route {} {cidr} for node {node} after {took:?}: {err}",
                        by_name[node.as_str()].uid
                    );
                    let ev = Event {
                        type_: EventType::Warning,
                        reason: names::REASON_FAILED_TO_CREATE_ROUTE.into(),
                        note: Some(note.chars().take(1000).collect()),
                        action: "CreateRoute".into(),
                        secondary: None,
                    };
                    if let Err(e) = ctx.recorder.publish(&ev, &n.object_ref(&())).await {
                        tracing::warn!(node, error = %e, "cannot publish FailedToCreateRoute event");
                    }
                }
            }
        }
    }
    // Nodes gone from the cluster (or never ours) are no longer failing.
    {
        let mut failing = ctx.failing.lock().expect("failing lock");
        failing.retain(|node, _| by_name.contains_key(node.as_str()));
    }
    for info in &infos {
        let had_routes = with_routes.contains(&info.name);
        if let (Some(unavailable), Some(n)) = (
            network_unavailable(info, had_routes, &failed),
            nodes.get(&info.name),
        ) {
            set_condition(ctx, &n, unavailable).await;
        }
    }
    Ok(report)
}

/// Runs passes every `period`, and soon after node pod CIDRs change (the shared informer's
/// `events`), over its `nodes`, until `shutdown` resolves.
pub async fn run(
    ctx: Arc<RouteContext>,
    nodes: crate::informer::SharedNodes,
    mut events: NodeEvents,
    period: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let trigger = Arc::new(Notify::new());
    let informer = {
        let trigger = trigger.clone();
        tokio::spawn(async move {
            let mut seen: HashMap<String, Vec<String>> = HashMap::new();
            while let Some(ev) = events.next().await {
                match &*ev {
                    watcher::Event::Apply(n) | watcher::Event::InitApply(n) => {
                        let info = NodeInfo::from_node(n);
                        if seen
                            .insert(info.name.clone(), info.pod_cidrs.clone())
                            .as_ref()
                            != Some(&info.pod_cidrs)
                        {
                            trigger.notify_one();
                        }
                    }
                    // A node that goes away leaves routes to delete.
                    watcher::Event::Delete(n) => {
                        seen.remove(&n.name_any());
                        trigger.notify_one();
                    }
                    watcher::Event::Init | watcher::Event::InitDone => {}
                }
            }
        })
    };
    let name = crate::controllers::ControllerName::Route.as_str();
    let queue = ctx.metrics.queue(name);
    ctx.metrics.set_running(name, true);
    let passes = async {
        nodes.ready().await;
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = trigger.notified() => {}
            }
            let started = Instant::now();
            // One work item per pass (upstream runs passes on a timer, without a queue).
            queue.add(crate::metrics::PASS);
            queue.start(crate::metrics::PASS);
            ctx.metrics.route_syncs.inc();
            let pass = tracing::debug_span!("route pass", cluster = %ctx.cluster_name);
            let result = reconcile(&ctx, &nodes).instrument(pass).await;
            queue.done(crate::metrics::PASS);
            if result.is_err() {
                queue.failed();
            }
            match result {
                Ok(r) if r != PassReport::default() => {
                    tracing::info!(?r, took = ?started.elapsed(), "route pass")
                }
                Ok(_) => tracing::debug!(took = ?started.elapsed(), "route pass: nothing to do"),
                Err(e) => {
                    tracing::warn!(error = %crate::error_chain(&e), "route pass failed: cannot list routes")
                }
            }
            tokio::time::sleep(
                MIN_RESYNC_INTERVAL
                    .min(period)
                    .saturating_sub(started.elapsed()),
            )
            .await;
        }
    };
    tokio::select! {
        _ = passes => {}
        _ = shutdown => {}
    }
    informer.abort();
    ctx.metrics.set_running(name, false);
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_failing_route_is_news_once_per_node_and_destination() {
        let mut failing = HashMap::new();
        // (step, node, destination or None for "created", news / was failing)
        let steps: [(&str, Option<&str>, bool); 7] = [
            ("n1", Some("10.244.1.0/24"), true),
            ("n1", Some("10.244.1.0/24"), false),
            ("n1", Some("10.244.1.0/24"), false),
            ("n2", Some("10.244.2.0/24"), true),
            ("n1", Some("10.244.9.0/24"), true),
            ("n1", None, true),
            ("n1", Some("10.244.9.0/24"), true),
        ];
        for (i, (node, cidr, want)) in steps.into_iter().enumerate() {
            let got = match cidr {
                Some(c) => failure_is_news(&mut failing, node, c),
                None => recovered(&mut failing, node),
            };
            assert_eq!(got, want, "step {i}");
        }
        assert!(!recovered(&mut failing, "n3"));
    }

    use super::*;

    fn node(name: &str, cidrs: &[&str]) -> NodeInfo {
        NodeInfo {
            name: name.into(),
            uid: format!("uid-{name}"),
            provider_id: Some(format!(
                "simcloud://zone-a/i-00000000000000{:02x}",
                name.len()
            )),
            pod_cidrs: cidrs.iter().map(|c| (*c).to_owned()).collect(),
        }
    }

    fn route(id: &str, node: &str, cidr: &str, blackhole: bool) -> CloudRoute {
        CloudRoute {
            id: id.into(),
            name: id.into(),
            target_node: node.into(),
            destination_cidr: cidr.into(),
            blackhole,
        }
    }

    #[test]
    fn cluster_cidr_flag() {
        assert_eq!(parse_cluster_cidrs("10.244.0.0/16").unwrap().len(), 1);
        assert_eq!(
            parse_cluster_cidrs("10.244.0.0/16,fd00:10:244::/56")
                .unwrap()
                .len(),
            2
        );
        for bad in [
            "",
            " ",
            "10.244.0.0",
            "10.244.0.0/16,10.245.0.0/16",
            "a/b",
            "10.0.0.0/8,fd00::/8,10.1.0.0/16",
        ] {
            assert!(parse_cluster_cidrs(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn responsibility_is_the_cluster_cidr() {
        let cluster = parse_cluster_cidrs("10.244.0.0/16").unwrap();
        assert!(responsible("10.244.3.0/24", &cluster));
        assert!(responsible("10.244.0.0/16", &cluster));
        assert!(
            !responsible("10.0.0.0/8", &cluster),
            "a wider route that merely contains the cluster CIDR is not ours"
        );
        assert!(!responsible("192.168.1.0/24", &cluster));
        assert!(!responsible("garbage", &cluster));
    }

    #[test]
    fn plan_table() {
        let cluster = parse_cluster_cidrs("10.244.0.0/16").unwrap();
        let nodes = vec![
            node("a", &["10.244.1.0/24"]),
            node("b", &["10.244.2.0/24"]),
            node("c", &[]),
        ];
        let routes = vec![
            route("r-a", "a", "10.244.1.0/24", false),         // keep
            route("r-old", "a", "10.244.9.0/24", false),       // stale CIDR: delete
            route("r-gone", "zz", "10.244.7.0/24", false),     // node gone: delete
            route("r-black", "b", "10.244.2.0/24", true), // blackhole: delete (re-create next pass)
            route("r-outside", "zz", "192.168.0.0/24", false), // outside the cluster CIDR: never deleted
        ];
        let p = plan(&nodes, &routes, &cluster);
        assert_eq!(
            p.creates,
            Vec::<(String, String)>::new(),
            "nothing races the deletes"
        );
        let mut deleted: Vec<_> = p.deletes.iter().map(|r| r.id.as_str()).collect();
        deleted.sort();
        assert_eq!(deleted, ["r-black", "r-gone", "r-old"]);
        // The next pass, with the blackhole gone, creates b's route.
        let after: Vec<CloudRoute> = routes
            .iter()
            .filter(|r| !p.deletes.contains(r))
            .cloned()
            .collect();
        assert_eq!(
            plan(&nodes, &after, &cluster).creates,
            vec![("b".to_owned(), "10.244.2.0/24".to_owned())]
        );
    }

    #[test]
    fn foreign_nodes_get_no_routes() {
        let cluster = parse_cluster_cidrs("10.244.0.0/16").unwrap();
        let mut n = node("kind-worker", &["10.244.5.0/24"]);
        n.provider_id = Some("kind://docker/kind/kind-worker".into());
        assert_eq!(plan(&[n], &[], &cluster), RoutePlan::default());
    }

    #[test]
    fn network_condition_table() {
        let n = node("a", &["10.244.1.0/24"]);
        let none = BTreeSet::new();
        let failed: BTreeSet<_> = [("a".to_owned(), "10.244.1.0/24".to_owned())].into();
        assert_eq!(network_unavailable(&n, true, &none), Some(false));
        assert_eq!(network_unavailable(&n, false, &failed), Some(true));
        let bare = node("c", &[]);
        assert_eq!(network_unavailable(&bare, false, &none), None);
        assert_eq!(network_unavailable(&bare, true, &none), Some(true));
    }
}
