//! `simctl up` as a user runs it, then kubectl and simctl against the sandbox it started.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

mod common;
use common::kubectl;

async fn simctl(cloud_url: &str, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .arg("--cloud-url")
        .arg(cloud_url)
        .args(args)
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "simctl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_runs_a_sandbox_that_kubectl_and_simctl_drive() {
    sandbox("kube-sim", 21, 85).await;
}

#[tokio::test]
async fn up_with_a_real_control_plane_but_no_binaries_names_the_build_command() {
    let dir = std::env::temp_dir().join(format!("simctl-up-nobin-{}", std::process::id()));
    let out = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args([
            "up",
            "--control-plane",
            "real",
            "--cloud-listen",
            "127.0.0.1:0",
        ])
        .arg("--data-dir")
        .arg(&dir)
        .env(control_plane::BIN_ENV, dir.join("no-such-dir"))
        .output()
        .await
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tests/control-plane/build.sh") && !err.contains("starting cloud-sim"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Control-plane tier: `simctl up --control-plane real` gives the same sandbox.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn up_on_a_real_control_plane_gives_the_same_sandbox() {
    if control_plane::binaries_for_test().is_none() {
        return;
    }
    sandbox("real", 22, 86).await;
}

/// The whole sandbox scenario against one control plane. Instances get addresses from
/// 127.`nodes`.n.0/24 and frontends from 127.`pools`.n.0/24: addresses no other test uses (in-process
/// clouds of parallel tests listen on the default pools, and a frontend taken by another process
/// would answer for ours).
async fn sandbox(control_plane: &str, nodes: u8, pools: u8) {
    let kube_sim = control_plane == "kube-sim";
    let dir: PathBuf =
        std::env::temp_dir().join(format!("simctl-up-{control_plane}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let subnets =
        |b: u8| format!("zone-a=127.{b}.1.0/24,zone-b=127.{b}.2.0/24,zone-c=127.{b}.3.0/24");
    // kube-sim's stand-in marks a stopped node Unknown after the grace period; the real
    // kube-controller-manager takes a few seconds more, and the kubelets beat within it.
    let grace = if kube_sim { "1s" } else { "6s" };
    let mut child = Command::new(env!("CARGO_BIN_EXE_simctl"))
        .env("SIMCTL_LOG", "warn,cloud_sim::dataplane=debug")
        .args([
            "up",
            "--control-plane",
            control_plane,
            "--cloud-listen",
            "127.0.0.1:0",
            "--kube-listen",
            "127.0.0.1:0",
            "--nodes",
            "3",
            "--boot-delay",
            "0",
        ])
        .args([
            "--node-monitor-grace-period",
            grace,
            "--node-monitor-period",
            "300ms",
            "--route-quota",
            "2",
        ])
        .arg("--instance-subnets")
        .arg(subnets(nodes))
        .arg("--lb-pools")
        .arg(subnets(pools))
        .arg("--pod-loopback-cidr")
        .arg(format!("127.{}.0.0/16", u16::from(nodes) + 140))
        .arg("--data-dir")
        .arg(&dir)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut progress = Vec::new();
    let (cloud_url, console_url) = tokio::time::timeout(Duration::from_secs(120), async {
        let (mut up, mut cloud_url) = (false, None);
        loop {
            tokio::select! {
                line = stdout.next_line() => {
                    let line = line.unwrap().expect("simctl up exited early");
                    up |= line.contains("simcloud sandbox is up");
                    if let Some(url) = line.trim().strip_prefix("cloud-sim API:") {
                        assert!(up);
                        cloud_url = Some(url.trim().to_owned());
                    }
                    if let Some(url) = line.trim().strip_prefix("console:") {
                        let cloud_url = cloud_url.clone().expect("the API's URL comes first");
                        return (cloud_url, url.trim().to_owned());
                    }
                }
                line = stderr.next_line() => {
                    if let Ok(Some(l)) = line { progress.push(l) }
                }
            }
        }
    })
    .await
    .expect("simctl up came up");
    assert!(
        progress.iter().any(|l| l.starts_with("waiting for nodes:")),
        "progress is shown: {progress:?}"
    );
    // Keep reading what simctl prints, so it never blocks on a full pipe; it shows on failure.
    tokio::spawn(async move {
        while let Ok(Some(l)) = stderr.next_line().await {
            eprintln!("simctl up: {l}");
        }
    });
    tokio::spawn(async move {
        while let Ok(Some(l)) = stdout.next_line().await {
            eprintln!("simctl up: {l}");
        }
    });

    // The console is served where simctl says.
    assert!(console_url.starts_with(&cloud_url), "{console_url}");
    let page = reqwest::get(&console_url).await.unwrap();
    assert_eq!(page.status(), 200);
    assert!(page.text().await.unwrap().contains("simcloud console"));

    // Every node initialised, zones round robin.
    let out = kubectl(&dir, &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.metadata.labels.topology\\.kubernetes\\.io/zone} {end}"]).await;
    let mut pairs: Vec<&str> = out.split_whitespace().collect();
    pairs.sort();
    assert_eq!(pairs, ["node-1=zone-a", "node-2=zone-b", "node-3=zone-c"]);
    let table = simctl(&cloud_url, &["instances", "list"]).await;
    assert!(
        table.starts_with("ID") && table.contains("node-2") && table.contains("running"),
        "{table}"
    );
    let instances: serde_json::Value =
        serde_json::from_str(&simctl(&cloud_url, &["-o", "json", "instances", "list"]).await)
            .unwrap();
    assert!(
        instances.as_array().unwrap().iter().all(|i| i["private_ip"]
            .as_str()
            .unwrap()
            .starts_with(&format!("127.{nodes}."))),
        "nodes get addresses from --instance-subnets: {instances}"
    );
    let json: serde_json::Value =
        serde_json::from_str(&simctl(&cloud_url, &["-o", "json", "zones", "list"]).await).unwrap();
    assert_eq!(json.as_array().unwrap().len(), 3);

    // Routes: the quota (2) leaves one of the three nodes without a route, visibly.
    let network = async || {
        kubectl(
            &dir,
            &["get", "nodes", "-o", "jsonpath={range .items[*]}{.metadata.name}={.status.conditions[?(@.type==\"NetworkUnavailable\")].status} {end}"],
        )
        .await
    };
    wait_for("two routed nodes and one NoRouteCreated", async || {
        let out = network().await;
        out.matches("=False").count() == 2 && out.matches("=True").count() == 1
    })
    .await;
    let starved: String = network()
        .await
        .split_whitespace()
        .find(|p| p.ends_with("=True"))
        .unwrap()
        .split('=')
        .next()
        .unwrap()
        .to_owned();

    // A LoadBalancer Service: a load balancer with a frontend per zone and backends in every zone.
    let svc = dir.join("svc.yaml");
    std::fs::write(
        &svc,
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\nspec:\n  type: LoadBalancer\n  trafficDistribution: PreferSameZone\n  selector:\n    app: web\n  ports:\n  - port: 80\n",
    )
    .unwrap();
    kubectl(&dir, &["apply", "-f", svc.to_str().unwrap()]).await;
    wait_for("ingress IPs on the Service", async || {
        kubectl(
            &dir,
            &[
                "get",
                "svc",
                "web",
                "-o",
                "jsonpath={.status.loadBalancer.ingress[*].ip}",
            ],
        )
        .await
        .split_whitespace()
        .count()
            == 3
    })
    .await;
    let lbs: serde_json::Value =
        serde_json::from_str(&simctl(&cloud_url, &["-o", "json", "lbs", "list"]).await).unwrap();
    let lb = &lbs.as_array().unwrap()[0];
    assert_eq!(lb["frontends"].as_array().unwrap().len(), 3);
    // The ccm's backend groups, one per zone, each holding that zone's node; the load balancer
    // sends to all three.
    let groups: serde_json::Value =
        serde_json::from_str(&simctl(&cloud_url, &["-o", "json", "groups", "list"]).await).unwrap();
    let mut zones: Vec<(&str, usize)> = groups
        .as_array()
        .unwrap()
        .iter()
        .map(|g| {
            (
                g["zone"].as_str().unwrap(),
                g["members"].as_array().unwrap().len(),
            )
        })
        .collect();
    zones.sort();
    assert_eq!(zones, [("zone-a", 1), ("zone-b", 1), ("zone-c", 1)]);
    assert_eq!(lb["backend_groups"].as_array().unwrap().len(), 3);
    assert!(
        simctl(&cloud_url, &["lbs", "list"])
            .await
            .contains("3 groups")
    );
    assert_eq!(lb["zone_policy"]["zone_affinity"], "prefer-same-zone");
    // Real traffic through the zonal frontends: once every backend passes its health checks,
    // balanced clients all stay in their zone.
    wait_for("every backend healthy", async || {
        let status: serde_json::Value = serde_json::from_str(
            &simctl(&cloud_url, &["-o", "json", "lbs", "status", "web"]).await,
        )
        .unwrap();
        let backends = status["backends"].as_array().unwrap();
        backends.len() == 3 && backends.iter().all(|b| b["healthy"] == true)
    })
    .await;
    let balanced: serde_json::Value = serde_json::from_str(
        &simctl(
            &cloud_url,
            &["-o", "json", "traffic", "web", "--connections", "60"],
        )
        .await,
    )
    .unwrap();
    assert_eq!(balanced["errors"], 0, "{balanced}");
    assert_eq!(
        balanced["in_zone_fraction"],
        1.0,
        "{balanced}\n{}",
        simctl(&cloud_url, &["-o", "json", "lbs", "status", "web"]).await
    );
    // Skewed clients (70/15/15). PreferSameZone is Kubernetes' strict preference: everything
    // stays in the client's zone, however loaded.
    let skewed = async || -> serde_json::Value {
        serde_json::from_str(
            &simctl(
                &cloud_url,
                &[
                    "-o",
                    "json",
                    "traffic",
                    "web",
                    "--connections",
                    "200",
                    "--from",
                    "zone-a=70,zone-b=15,zone-c=15",
                ],
            )
            .await,
        )
        .unwrap()
    };
    let in_zone = |v: &serde_json::Value, z: &str| {
        v["by_client_zone"][z]["in_zone_fraction"].as_f64().unwrap()
    };
    let strict = skewed().await;
    assert_eq!(strict["errors"], 0, "{strict}");
    for z in ["zone-a", "zone-b", "zone-c"] {
        assert_eq!(in_zone(&strict, z), 1.0, "{z} stays: {strict}");
    }
    // Envoy's zone-aware routing is the opt-in `balanced` (its minimum cluster size lowered
    // for three backends): zone-a spills to keep the backends evenly loaded.
    kubectl(
        &dir,
        &[
            "annotate",
            "svc",
            "web",
            "simcloud.dev/load-balancer-zone-affinity=balanced",
            "simcloud.dev/load-balancer-min-cluster-size=1",
        ],
    )
    .await;
    wait_for("the load balancer turned balanced", async || {
        let lbs: serde_json::Value =
            serde_json::from_str(&simctl(&cloud_url, &["-o", "json", "lbs", "list"]).await)
                .unwrap();
        lbs[0]["zone_policy"]["zone_affinity"] == "balanced"
    })
    .await;
    let spilled = skewed().await;
    assert_eq!(spilled["errors"], 0, "{spilled}");
    // Envoy's counters say the same: some of zone-a's connections were sampled cross-zone.
    let metrics = reqwest::get(format!("{cloud_url}/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let count = |name: &str| -> u64 {
        metrics
            .lines()
            .filter(|l| l.starts_with(&format!("cloudsim_{name}_total")))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    };
    assert!(
        count("lb_zone_routing_cross_zone") > 0 && count("lb_zone_routing_sampled") > 0,
        "{metrics}"
    );
    assert!(
        in_zone(&spilled, "zone-a") < 0.9,
        "zone-a spills: {spilled}"
    );
    assert_eq!(
        (in_zone(&spilled, "zone-b"), in_zone(&spilled, "zone-c")),
        (1.0, 1.0),
        "{spilled}"
    );
    let table = simctl(&cloud_url, &["traffic", "web", "--connections", "6"]).await;
    assert!(
        table.contains("CLIENT ZONE") && table.contains("peak-to-mean"),
        "{table}"
    );
    // 60 + 200 + 200 + 6 measured connections, plus the probes: the data plane counted them all.
    let status = simctl(&cloud_url, &["lbs", "status", "web"]).await;
    let proxied: u64 = status
        .lines()
        .last()
        .and_then(|l| l.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no totals line: {status}"));
    assert!(
        status.starts_with("BACKEND") && status.matches(" healthy ").count() == 3 && proxied >= 466,
        "{status}"
    );

    // ClusterIP: the load balancer goes.
    kubectl(
        &dir,
        &[
            "patch",
            "svc",
            "web",
            "--type",
            "merge",
            "-p",
            r#"{"spec":{"type":"ClusterIP"}}"#,
        ],
    )
    .await;
    wait_for("load balancer deleted", async || {
        simctl(&cloud_url, &["-o", "json", "lbs", "list"])
            .await
            .trim()
            == "[]"
    })
    .await;

    // Stop node-1: the shutdown taint appears. Terminate node-2: its Node is deleted.
    simctl(&cloud_url, &["instances", "stop", "node-1"]).await;
    wait_for("shutdown taint on node-1", async || {
        kubectl(
            &dir,
            &[
                "get",
                "node",
                "node-1",
                "-o",
                "jsonpath={.spec.taints[*].key}",
            ],
        )
        .await
        .contains("node.cloudprovider.kubernetes.io/shutdown")
    })
    .await;
    simctl(&cloud_url, &["instances", "terminate", "node-2"]).await;
    wait_for("node-2 deleted", async || {
        !kubectl(&dir, &["get", "nodes", "-o", "name"])
            .await
            .contains("node/node-2")
    })
    .await;
    // With node-2's route gone the starved node gets one (unless it was node-2 itself).
    if starved != "node-2" {
        wait_for("route quota recovered", async || {
            let out = network().await;
            out.contains(&format!("{starved}=False")) && !out.contains("=True")
        })
        .await;
    }

    // Everything the ccm asked the API server for is granted by the RBAC we ship (kube-sim
    // records it; the ccm e2e test checks the same with real RBAC on the real control plane).
    if kube_sim {
        check_ccm_requests_against_rbac(&dir).await;
    }

    // Ctrl-C (SIGINT) stops it cleanly.
    sim_common::signal_and_expect_clean_exit(&mut child, "INT").await;
    let _ = std::fs::remove_dir_all(&dir);
}

async fn check_ccm_requests_against_rbac(dir: &std::path::Path) {
    let seen: Vec<serde_json::Value> =
        serde_json::from_str(&kubectl(dir, &["get", "--raw", "/kube-sim/requests"]).await).unwrap();
    let by_ccm: Vec<(&str, &str, &str)> = seen
        .iter()
        .filter(|r| {
            r["userAgent"]
                .as_str()
                .and_then(|a| a.split_once('/'))
                .is_some_and(|(agent, _)| agent == ccm::names::USER_AGENT)
        })
        .map(|r| {
            (
                r["verb"].as_str().unwrap(),
                r["apiGroup"].as_str().unwrap(),
                r["resource"].as_str().unwrap(),
            )
        })
        .collect();
    for needed in [
        ("patch", "", "nodes/status"),
        ("patch", "", "services/status"),
    ] {
        assert!(by_ccm.contains(&needed), "the ccm's requests: {by_ccm:?}");
    }
    let rules = common::ccm_rbac_rules();
    let denied: Vec<_> = by_ccm
        .iter()
        .filter(|(verb, group, resource)| !kube_sim::rbac::allows(&rules, verb, group, resource))
        .collect();
    assert!(
        denied.is_empty(),
        "manifests/ccm/rbac.yaml does not grant {denied:?}"
    );
}
