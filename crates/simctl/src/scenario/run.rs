//! Running a scenario: per mode a fresh sandbox on its own loopback addresses, the workload and
//! its Service, a wait until the data plane serves it, traffic with the timeline's events, and
//! the checks.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, Service};
use kube::Api;
use kube::api::{ListParams, Patch, PatchParams, PostParams};
use serde_json::json;

use super::{Action, Mode, ModeResult, Scenario};
use crate::traffic::{self, Class, Entry};
use crate::up::{ControlPlaneKind, NodeSpec, Sandbox, UpArgs};

/// Name of the scenario's Deployment and Service (in `default`).
pub const WORKLOAD: &str = "app";
/// The workload's container port.
pub const POD_PORT: i32 = 8080;
/// How long the scheduler's "cannot be placed" must stand before a run gives up on it. A node
/// still starting has taints that clear within seconds (`not-ready`, and `network-unavailable`
/// until its route exists, set by the real kube-controller-manager), and the scheduler retries
/// as they go; a workload that does not fit keeps its report.
pub const UNSCHEDULABLE_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The scenario file (see scenarios/).
    pub file: PathBuf,

    /// Modes to run, comma-separated; default the file's.
    #[arg(long, value_enum, value_delimiter = ',')]
    pub modes: Vec<Mode>,

    /// Write `<name>.json`, `<name>.csv` and `<name>.svg` here.
    #[arg(long)]
    pub out: Option<PathBuf>,

    /// Loopback block B of the sandboxes: nodes in 127.B.<zone>.0/24, load-balancer frontends
    /// in 127.(B+1).<zone>.0/24, pods in 127.(B+2).0.0/16. Runs at the same time need
    /// different blocks.
    #[arg(long, default_value_t = 230, value_parser = clap::value_parser!(u8).range(2..=250))]
    pub address_block: u8,

    /// The Kubernetes API server of the sandboxes.
    #[arg(long, value_enum, default_value = "kube-sim")]
    pub control_plane: ControlPlaneKind,

    /// Give up on a mode whose workload is not served within this long.
    #[arg(long, default_value = "90s", value_parser = sim_common::parse_duration)]
    pub setup_timeout: Duration,

    /// Log filter in `tracing` syntax.
    #[arg(long, env = "SIMCTL_LOG", default_value = "warn")]
    pub log_filter: String,
}

/// The nodes of the scenario, named `<zone>-<n>`.
pub fn node_specs(s: &Scenario) -> Vec<NodeSpec> {
    let mut per_zone: BTreeMap<&str, u32> = BTreeMap::new();
    let mut out = Vec::new();
    for g in &s.nodes {
        for _ in 0..g.count {
            let n = per_zone.entry(&g.zone).or_default();
            *n += 1;
            out.push(NodeSpec {
                name: format!("{}-{n}", g.zone),
                zone: g.zone.clone(),
                instance_type: g.instance_type.clone(),
            });
        }
    }
    out
}

/// The sandbox settings of one mode's run.
pub fn up_args(s: &Scenario, args: &RunArgs, mode: Mode) -> UpArgs {
    let zones = s.zones();
    let b = args.address_block;
    let block = |o: u8| -> Vec<(String, ipnet::Ipv4Net)> {
        zones
            .iter()
            .enumerate()
            .map(|(i, z)| {
                let net = format!("127.{}.{}.0/24", b + o, i + 1);
                (z.clone(), net.parse().expect("valid CIDR"))
            })
            .collect()
    };
    let real = args.control_plane == ControlPlaneKind::Real;
    UpArgs {
        data_dir: std::env::temp_dir().join(format!(
            "simctl-scenario-{}-{}-{}",
            s.name,
            mode.name(),
            std::process::id()
        )),
        nodes: 0,
        zones: zones.clone(),
        instance_type: "sim.medium".into(),
        cloud_listen: "127.0.0.1:0".parse().expect("valid address"),
        control_plane: args.control_plane,
        kube_listen: "127.0.0.1:0".parse().expect("valid address"),
        instance_subnets: block(0),
        lb_pools: block(1),
        cluster_cidr: Some("10.244.0.0/16".parse().expect("valid CIDR")),
        node_cidr_mask_size: 24,
        pod_loopback_cidr: Some(format!("127.{}.0.0/16", b + 2).parse().expect("valid CIDR")),
        cluster_name: "simcloud".into(),
        boot_delay: Duration::ZERO,
        // kube-controller-manager needs a few seconds more than kube-sim's stand-in.
        node_monitor_grace_period: Duration::from_secs(if real { 6 } else { 1 }),
        node_monitor_period: Duration::from_millis(300),
        route_quota: Some(1000),
        timeout: args.setup_timeout,
        ccm: crate::up::CcmMode::InProcess,
        data_plane: true,
        log_filter: args.log_filter.clone(),
    }
}

/// One Deployment per zone (`app-<zone>`, pinned by a node selector), so that the same
/// workload comes out the same on kube-sim and on the real control plane.
fn deployments(s: &Scenario, replicas: &BTreeMap<String, u32>) -> anyhow::Result<Vec<Deployment>> {
    replicas
        .iter()
        .map(|(zone, n)| {
            let mut pod_spec = json!({"terminationGracePeriodSeconds": 1,
                "nodeSelector": {topology::LABEL_ZONE: zone},
                "containers": [{"name": "echo", "image": "simcloud.dev/echo",
                    "ports": [{"name": "http", "containerPort": POD_PORT}]}]});
            if let Some(cpu) = &s.workload.cpu {
                pod_spec["containers"][0]["resources"] = json!({"requests": {"cpu": cpu}});
            }
            Ok(serde_json::from_value(json!({
                "apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": format!("{WORKLOAD}-{zone}"), "namespace": "default"},
                "spec": {"replicas": n, "selector": {"matchLabels": {"app": WORKLOAD, "zone": zone}},
                    "template": {"metadata": {"labels": {"app": WORKLOAD, "zone": zone}}, "spec": pod_spec}}
            }))?)
        })
        .collect()
}

fn service(s: &Scenario, mode: Mode) -> anyhow::Result<Service> {
    let mut v = json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": WORKLOAD, "namespace": "default", "annotations": {}},
        "spec": {"selector": {"app": WORKLOAD}, "ports": [{"name": "http", "port": 80, "targetPort": "http"}],
            "type": if s.traffic.class == Class::NorthSouth { "LoadBalancer" } else { "ClusterIP" }}
    });
    if s.traffic.class == Class::NorthSouth {
        // Quick health checks, so that every node is a healthy backend within seconds.
        v["metadata"]["annotations"][ccm::names::ANN_HC_INTERVAL] = json!("1");
        v["metadata"]["annotations"][ccm::names::ANN_HC_HEALTHY] = json!("1");
        v["metadata"]["annotations"][ccm::names::ANN_HC_TIMEOUT] = json!("1");
    }
    match mode {
        Mode::None => {}
        Mode::Auto => {
            v["metadata"]["annotations"][topology::ANNOTATION_TOPOLOGY_MODE] = json!("Auto")
        }
        Mode::PreferSameZone => {
            v["spec"]["trafficDistribution"] = json!(topology::PREFER_SAME_ZONE)
        }
        Mode::PreferSameNode => {
            v["spec"]["trafficDistribution"] = json!(topology::PREFER_SAME_NODE)
        }
        Mode::PreferClose => v["spec"]["trafficDistribution"] = json!(topology::PREFER_CLOSE),
        Mode::Balanced => {
            v["metadata"]["annotations"][ccm::names::ANN_ZONE_AFFINITY] = json!("balanced")
        }
    }
    Ok(serde_json::from_value(v)?)
}

/// Waits until the workload is served: every replica Ready, in the slices, slices stable, the
/// load balancer (north-south) up, and a probe from every client zone answered by a Pod.
/// A Pod unschedulable for [`UNSCHEDULABLE_GRACE`] ends the wait with the scheduler's reason.
async fn wait_served(
    sandbox: &Sandbox,
    kube: &kube::Client,
    s: &Scenario,
    deadline: Instant,
) -> anyhow::Result<Entry> {
    let replicas: usize = s.workload.replicas.values().sum::<u32>() as usize;
    let node_count: usize = s.nodes.iter().map(|n| n.count as usize).sum();
    let pods: Api<Pod> = Api::namespaced(kube.clone(), "default");
    let mut last = String::new();
    let mut stable = 0;
    let mut state = String::from("nothing yet");
    let mut unschedulable_since: BTreeMap<String, Instant> = BTreeMap::new();
    loop {
        if Instant::now() > deadline {
            bail!("the workload was not served in time; last seen: {state}");
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
        let list = pods
            .list(&ListParams::default().labels(&format!("app={WORKLOAD}")))
            .await?;
        let unschedulable: BTreeMap<String, String> = list
            .items
            .iter()
            .filter_map(|p| {
                let c = p
                    .status
                    .as_ref()?
                    .conditions
                    .as_ref()?
                    .iter()
                    .find(|c| c.type_ == "PodScheduled" && c.status == "False")?;
                Some((
                    p.metadata.name.clone()?,
                    c.message.clone().unwrap_or_default(),
                ))
            })
            .collect();
        unschedulable_since.retain(|name, _| unschedulable.contains_key(name));
        for (name, why) in &unschedulable {
            let since = *unschedulable_since
                .entry(name.clone())
                .or_insert_with(Instant::now);
            if since.elapsed() >= UNSCHEDULABLE_GRACE {
                bail!("the workload cannot be placed: pod {name}: {why}");
            }
        }
        let placing = unschedulable
            .iter()
            .next()
            .map(|(name, why)| format!("; pod {name} not placed yet: {why}"))
            .unwrap_or_default();
        let ready = list
            .items
            .iter()
            .filter(|p| {
                p.metadata.deletion_timestamp.is_none()
                    && p.status
                        .as_ref()
                        .and_then(|s| s.conditions.as_ref())
                        .is_some_and(|cs| {
                            cs.iter().any(|c| c.type_ == "Ready" && c.status == "True")
                        })
            })
            .count();
        let sl = traffic::slices(kube, WORKLOAD).await?;
        let in_slices = sl
            .iter()
            .flat_map(|x| &x.endpoints)
            .filter(|e| topology::endpoint_ready(e))
            .count();
        state = format!(
            "{ready}/{replicas} pods ready, {in_slices} ready endpoints in slices{placing}"
        );
        if ready != replicas || in_slices != replicas {
            stable = 0;
            continue;
        }
        let now = serde_json::to_string(&sl.iter().map(|x| &x.endpoints).collect::<Vec<_>>())?;
        if now == last {
            stable += 1;
        } else {
            stable = 0;
            last = now;
        }
        if stable < 2 {
            continue;
        }
        let entry = match s.traffic.class {
            Class::EastWest => traffic::cluster_entry(kube, WORKLOAD, None).await?,
            Class::NorthSouth => match traffic::find(&sandbox.cloud, WORKLOAD).await {
                Ok(lb) if lb.state == cloud_api::LoadBalancerState::Active => {
                    let report = sandbox.cloud.load_balancer_traffic(lb.id.as_str()).await?;
                    let healthy =
                        report.map_or(0, |r| r.backends.iter().filter(|b| b.healthy).count());
                    if healthy < node_count {
                        state = format!("{healthy}/{node_count} load-balancer backends healthy");
                        continue;
                    }
                    traffic::lb_entry(&lb, None)?
                }
                _ => {
                    state = "waiting for the load balancer".into();
                    continue;
                }
            },
        };
        let mut all = true;
        for (zone, w) in s.client_weights() {
            if w == 0 {
                continue;
            }
            let probe = traffic::request(&entry, &zone, 0).await;
            if probe.error.is_some() || probe.pod.is_none() {
                state = format!("probe from {zone}: {:?}", probe.error);
                all = false;
                break;
            }
        }
        if all {
            return Ok(entry);
        }
    }
}

/// Runs one mode in a fresh sandbox.
pub async fn run_mode(s: &Scenario, args: &RunArgs, mode: Mode) -> anyhow::Result<ModeResult> {
    let up = up_args(s, args, mode);
    let _ = std::fs::remove_dir_all(&up.data_dir);
    let sandbox = Sandbox::start(&up, &node_specs(s)).await?;
    let result = measure(&sandbox, s, args, mode).await;
    let dir = up.data_dir.clone();
    sandbox.shutdown().await;
    let _ = std::fs::remove_dir_all(dir);
    result
}

async fn measure(
    sandbox: &Sandbox,
    s: &Scenario,
    args: &RunArgs,
    mode: Mode,
) -> anyhow::Result<ModeResult> {
    let kube = sandbox.kube()?;
    let started = Instant::now();
    let pp = PostParams::default();
    for d in deployments(s, &s.workload.replicas)? {
        Api::<Deployment>::namespaced(kube.clone(), "default")
            .create(&pp, &d)
            .await
            .context("creating the workload")?;
    }
    Api::<Service>::namespaced(kube.clone(), "default")
        .create(&pp, &service(s, mode)?)
        .await
        .context("creating the Service")?;
    let entry = wait_served(sandbox, &kube, s, started + args.setup_timeout).await?;
    let setup_seconds = started.elapsed().as_secs_f64();
    let slices = traffic::slices(&kube, WORKLOAD).await?;
    let hints = slices
        .iter()
        .flat_map(|x| &x.endpoints)
        .any(|e| e.hints.is_some());
    let endpoints = traffic::endpoint_names(&slices);
    let order = traffic::plan(
        &s.client_weights(),
        0,
        Some(s.traffic.rate),
        s.traffic.duration,
    );
    let mut timeline = tokio::task::JoinSet::new();
    let t0 = tokio::time::Instant::now();
    for step in &s.timeline {
        let action = Action::parse(&step.action).map_err(anyhow::Error::msg)?;
        let at = t0 + step.at;
        let (cloud, kube, s) = (sandbox.cloud.clone(), kube.clone(), s.clone());
        timeline.spawn(async move {
            tokio::time::sleep_until(at).await;
            let r = act(&cloud, &kube, &s, &action).await;
            (action, r)
        });
    }
    let samples = traffic::drive(&entry, &order, Some(s.traffic.rate)).await;
    while let Some(r) = timeline.join_next().await {
        if let Ok((action, Err(e))) = r {
            bail!("timeline action {action:?} failed: {e:#}");
        }
    }
    let price = s.traffic.price_per_gb;
    let vcpus: BTreeMap<String, u32> = sandbox
        .cloud
        .instance_types()
        .await?
        .into_iter()
        .map(|t| (t.name, t.vcpus))
        .collect();
    let prediction = s.predict(mode, &vcpus);
    let checks = s
        .expect
        .get(&mode)
        .map(|e| super::check(e, &samples, &endpoints, hints, price))
        .unwrap_or_default();
    Ok(ModeResult {
        mode,
        total: traffic::summarize(&samples, &endpoints, price),
        windows: traffic::windows(&samples, s.traffic.window.as_secs_f64(), &endpoints, price),
        hints,
        setup_seconds,
        checks,
        predicted_in_zone_fraction: prediction.as_ref().map(|p| p.in_zone),
        predicted_peak_to_mean: prediction.as_ref().map(|p| p.peak_to_mean),
        samples,
    })
}

/// `n` replicas split over the zones by the workload's per-zone counts.
fn scaled(s: &Scenario, n: u32) -> Vec<(String, u32)> {
    let weights: Vec<(String, u32)> = s
        .workload
        .replicas
        .iter()
        .map(|(z, c)| (z.clone(), *c))
        .collect();
    sim_common::split_by_weight(n, &weights)
}

/// Does a timeline step.
async fn act(
    cloud: &cloud_client::Client,
    kube: &kube::Client,
    s: &Scenario,
    action: &Action,
) -> anyhow::Result<()> {
    match action {
        Action::StopZone(z) | Action::StartZone(z) => {
            let f = cloud_client::InstanceFilter {
                zone: Some(z.clone()),
                ..Default::default()
            };
            for i in cloud.list_all_instances(&f).await? {
                if matches!(action, Action::StartZone(_)) {
                    cloud.start_instance(i.id.as_str()).await?;
                } else {
                    cloud.stop_instance(i.id.as_str()).await?;
                }
            }
        }
        Action::StopNode(n) => {
            let f = cloud_client::InstanceFilter {
                name: Some(n.clone()),
                ..Default::default()
            };
            for i in cloud.list_all_instances(&f).await? {
                cloud.stop_instance(i.id.as_str()).await?;
            }
        }
        Action::Scale(n) => {
            let api = Api::<Deployment>::namespaced(kube.clone(), "default");
            for (zone, count) in scaled(s, *n) {
                api.patch(
                    &format!("{WORKLOAD}-{zone}"),
                    &PatchParams::default(),
                    &Patch::Merge(json!({"spec": {"replicas": count}})),
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Runs every mode of the scenario in turn; the results, and whether every check passed.
pub async fn run(args: &RunArgs) -> anyhow::Result<(Scenario, Vec<ModeResult>)> {
    crate::up::init_logging(&args.log_filter)?;
    let mut s = Scenario::load(&args.file)?;
    if !args.modes.is_empty() {
        s.modes = args.modes.clone();
        s.expect.retain(|m, _| args.modes.contains(m));
        s.check().map_err(anyhow::Error::msg)?;
    }
    let mut results = Vec::new();
    for mode in s.modes() {
        eprintln!("scenario {}: mode {} ...", s.name, mode.name());
        let r = run_mode(&s, args, mode)
            .await
            .with_context(|| format!("scenario {}, mode {}", s.name, mode.name()))?;
        results.push(r);
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let json = json!({"scenario": s, "results": results});
        let write = |ext: &str, body: String| -> anyhow::Result<()> {
            let p = dir.join(format!("{}.{ext}", s.name));
            std::fs::write(&p, body).with_context(|| format!("cannot write {}", p.display()))
        };
        write("json", serde_json::to_string_pretty(&json)?)?;
        write("csv", super::csv(&results))?;
        write("svg", super::svg(&s, &results))?;
    }
    Ok((s, results))
}
