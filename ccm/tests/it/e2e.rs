//! End to end: cloud-sim in process, the simulated kubelets, two real ccm processes, against
//! kube-sim and (control-plane tier) against the real kube-apiserver and
//! kube-controller-manager, where the ccm runs under its own service account with exactly the
//! RBAC of `manifests/ccm/rbac.yaml`, so a missing permission is a real 403.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use cloud_api::{CreateInstanceRequest, Tags};
use k8s_openapi::api::coordination::v1::Lease;
use k8s_openapi::api::core::v1::{Node, Service};
use kube::Api;
use kube::api::{PatchParams, PostParams};
use kubelet_sim::{KubeletConfig, Kubelets};
use tokio::process::{Child, Command};

use crate::common::{client_for, initialized, lb_backends, wait_for};

const T: Duration = Duration::from_secs(60);

fn rbac_manifest() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/ccm/rbac.yaml")
}

/// A ccm process; its output goes to `<dir>/<identity>.log`, printed if the test fails.
struct Ccm {
    identity: &'static str,
    child: Child,
    log: PathBuf,
}

impl Ccm {
    fn spawn(dir: &Path, kubeconfig: &Path, identity: &'static str, extra: &[String]) -> Self {
        let log = dir.join(format!("{identity}.log"));
        let out = std::fs::File::create(&log).unwrap();
        let serving = extra.iter().any(|a| a.starts_with("--secure-port"));
        let child = Command::new(env!("CARGO_BIN_EXE_ccm"))
            .args((!serving).then_some("--secure-port=0"))
            .args([
                "--cloud-provider=simcloud",
                "--node-monitor-period=300ms",
                "--concurrent-node-syncs=4",
                "--cluster-cidr=10.244.0.0/16",
                "--route-reconciliation-period=1s",
            ])
            .args([
                "--leader-elect-lease-duration=2s",
                "--leader-elect-renew-deadline=1500ms",
                "--leader-elect-retry-period=300ms",
            ])
            .arg(format!("--leader-elect-identity={identity}"))
            .args(extra)
            .arg("--kubeconfig")
            .arg(kubeconfig)
            .arg("--cloud-config")
            .arg(dir.join("cloud.yaml"))
            .env("CCM_LOG", "info")
            .stdout(Stdio::null())
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .expect("spawn ccm");
        Self {
            identity,
            child,
            log,
        }
    }
}

impl Drop for Ccm {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let log = std::fs::read_to_string(&self.log).unwrap_or_default();
            let tail: Vec<&str> = log.lines().rev().take(40).collect();
            eprintln!(
                "---- {} ({}), last 40 lines ----",
                self.identity,
                self.log.display()
            );
            for l in tail.into_iter().rev() {
                eprintln!("{l}");
            }
        }
    }
}

fn zone_of(n: &Node) -> Option<String> {
    n.metadata
        .labels
        .as_ref()?
        .get(ccm::names::LABEL_ZONE)
        .cloned()
}

/// Where the scenario runs: an admin client for checks, and the kubeconfig the ccm uses.
struct Cluster {
    admin: kube::Client,
    ccm_kubeconfig: PathBuf,
    kubelets: KubeletConfig,
    /// More ccm flags.
    ccm_args: Vec<String>,
}

/// Nodes initialised with their zones, a route per pod CIDR (NetworkUnavailable False), a
/// LoadBalancer Service with one ingress per zone and the cleanup finalizer, the shutdown taint on
/// a stopped instance's node, a terminated instance's node deleted, the Service's load balancer
/// deleted with it, and the second ccm taking over when the leader is killed.
async fn scenario(cluster: Cluster, cloud_client: &cloud_client::Client, dir: &Path) {
    let kubelets = Kubelets::start(cluster.kubelets, cluster.admin.clone()).unwrap();
    let mut ccms = vec![
        Ccm::spawn(dir, &cluster.ccm_kubeconfig, "ccm-a", &cluster.ccm_args),
        Ccm::spawn(dir, &cluster.ccm_kubeconfig, "ccm-b", &cluster.ccm_args),
    ];
    let create = |name: String, zone: &'static str| {
        let c = cloud_client.clone();
        async move {
            c.create_instance(&CreateInstanceRequest {
                name,
                zone: zone.into(),
                instance_type: "sim.small".into(),
                tags: Tags::new(),
                private_ip: None,
            })
            .await
            .unwrap()
        }
    };
    let mut instances = Vec::new();
    for i in 0..6 {
        let zone = ["zone-a", "zone-b", "zone-c"][i % 3];
        instances.push(create(format!("node-{i}"), zone).await);
    }
    let client = cluster.admin;
    let nodes: Api<Node> = Api::all(client.clone());
    // Every node initialised, with its instance's zone.
    for inst in &instances {
        let n = wait_for("node initialised", T, || async {
            nodes
                .get_opt(&inst.name)
                .await
                .ok()
                .flatten()
                .filter(initialized)
        })
        .await;
        assert_eq!(zone_of(&n).as_deref(), Some(inst.zone.as_str()));
        assert_eq!(
            n.spec.as_ref().unwrap().provider_id.as_deref(),
            Some(inst.provider_id.as_str())
        );
    }
    // Routes: every node's pod CIDR has a route, and the ccm says so on the Node.
    for inst in &instances {
        wait_for("NetworkUnavailable False (RouteCreated)", T, || async {
            let n = nodes.get_opt(&inst.name).await.ok().flatten()?;
            n.status?.conditions?.into_iter().find(|c| {
                c.type_ == ccm::names::CONDITION_NETWORK_UNAVAILABLE
                    && c.status == "False"
                    && c.reason.as_deref() == Some(ccm::names::REASON_ROUTE_CREATED)
            })
        })
        .await;
    }
    let routes = cloud_client
        .list_all_routes(cloud_client::DEFAULT_ROUTE_TABLE)
        .await
        .unwrap();
    assert_eq!(routes.len(), instances.len(), "{routes:?}");
    // A LoadBalancer Service: the finalizer, and an ingress IP per zone.
    let services: Api<Service> = Api::namespaced(client.clone(), "default");
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }))
    .unwrap();
    services.create(&PostParams::default(), &svc).await.unwrap();
    let svc = wait_for("ingress IPs", T, || async {
        let s = services.get_opt("web").await.ok().flatten()?;
        let n = s
            .status
            .as_ref()?
            .load_balancer
            .as_ref()?
            .ingress
            .as_ref()?
            .len();
        (n == 3).then_some(s)
    })
    .await;
    assert_eq!(
        svc.metadata.finalizers.as_deref(),
        Some(&[ccm::names::LB_FINALIZER.to_owned()][..])
    );
    assert_eq!(
        cloud_client
            .list_all_load_balancers(&Default::default())
            .await
            .unwrap()
            .len(),
        1
    );

    // Stop one: its node goes NotReady and gets the shutdown taint.
    cloud_client
        .stop_instance(instances[0].id.as_str())
        .await
        .unwrap();
    wait_for("shutdown taint", T, || async {
        nodes
            .get_opt("node-0")
            .await
            .ok()
            .flatten()
            .filter(ccm::node_plan::has_shutdown_taint)
    })
    .await;
    // Terminate another: its node is deleted.
    cloud_client
        .terminate_instance(instances[1].id.as_str())
        .await
        .unwrap();
    wait_for("node-1 deleted", T, || async {
        nodes
            .get_opt("node-1")
            .await
            .ok()
            .flatten()
            .is_none()
            .then_some(())
    })
    .await;
    // The node-lifecycle controller deletes outright (no finalizer): the deleted node leaves the
    // load balancer's backends.
    let gone = instances[1].id.clone();
    wait_for("node-1's instance no longer a backend", T, || async {
        let lbs = cloud_client
            .list_all_load_balancers(&Default::default())
            .await
            .ok()?;
        let backends = lb_backends(cloud_client, lbs.first()?).await?;
        (!backends.is_empty() && !backends.iter().any(|b| b.instance_id == gone)).then_some(())
    })
    .await;
    // The Service goes to ClusterIP: its load balancer is deleted and the finalizer removed.
    services
        .patch(
            "web",
            &PatchParams::default(),
            &kube::api::Patch::Merge(serde_json::json!({"spec": {"type": "ClusterIP"}})),
        )
        .await
        .unwrap();
    wait_for("load balancer deleted, finalizer gone", T, || async {
        let lbs = cloud_client
            .list_all_load_balancers(&Default::default())
            .await
            .ok()?;
        let s = services.get_opt("web").await.ok().flatten()?;
        (lbs.is_empty() && s.metadata.finalizers.unwrap_or_default().is_empty()).then_some(())
    })
    .await;
    other_class_and_requested_addresses(&services).await;

    // Kill the leader; the other replica takes over and keeps initialising nodes.
    let leases: Api<Lease> = Api::namespaced(client.clone(), ccm::names::LEASE_NAMESPACE);
    let holder = leases
        .get(ccm::names::LEASE_NAME)
        .await
        .unwrap()
        .spec
        .unwrap()
        .holder_identity
        .unwrap();
    let i = ccms
        .iter()
        .position(|c| c.identity == holder)
        .expect("the holder is one of ours");
    let mut leader = ccms.remove(i);
    leader.child.start_kill().unwrap();
    leader.child.wait().await.unwrap();
    let survivor = ccms[0].identity;
    wait_for("failover", T, || async {
        let h = leases
            .get(ccm::names::LEASE_NAME)
            .await
            .ok()?
            .spec?
            .holder_identity?;
        (h == survivor).then_some(())
    })
    .await;
    let late = create("node-late".into(), "zone-b").await;
    let n = wait_for("late node initialised by the new leader", T, || async {
        nodes
            .get_opt(&late.name)
            .await
            .ok()
            .flatten()
            .filter(initialized)
    })
    .await;
    assert_eq!(zone_of(&n).as_deref(), Some("zone-b"));
    for mut c in ccms {
        let _ = c.child.start_kill();
        let _ = c.child.wait().await;
    }
    kubelets.stop().await;
}

/// A Service of another `loadBalancerClass` that carries our finalizer is left alone (defect 4
/// of [ccm-real]), and `spec.loadBalancerIP` outside every pool gets ordinary addresses and a
/// Warning event naming the pools.
async fn other_class_and_requested_addresses(services: &Api<Service>) {
    let other: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "other", "finalizers": [ccm::names::LB_FINALIZER]},
        "spec": {"type": "LoadBalancer", "loadBalancerClass": "example.com/other", "ports": [{"port": 80}]},
    }))
    .unwrap();
    let other = services
        .create(&PostParams::default(), &other)
        .await
        .unwrap();
    let pinned: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "pinned"},
        "spec": {"type": "LoadBalancer", "loadBalancerIP": "8.8.8.8", "ports": [{"port": 80}]},
    }))
    .unwrap();
    services
        .create(&PostParams::default(), &pinned)
        .await
        .unwrap();
    let events: Api<k8s_openapi::api::core::v1::Event> =
        Api::namespaced(services.clone().into_client(), "default");
    let warning = wait_for("LoadBalancerIPNotInPool on pinned", T, || async {
        let lp = kube::api::ListParams::default().fields("involvedObject.name=pinned");
        events.list(&lp).await.ok()?.items.into_iter().find(|e| {
            e.reason.as_deref() == Some(ccm::names::REASON_LB_IP_NOT_IN_POOL)
                && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    let note = warning.message.unwrap_or_default();
    assert!(note.contains("8.8.8.8"), "{note}");
    wait_for("pinned gets ordinary addresses", T, || async {
        let s = services.get_opt("pinned").await.ok().flatten()?;
        let ips: Vec<String> = s
            .status?
            .load_balancer?
            .ingress?
            .into_iter()
            .filter_map(|i| i.ip)
            .collect();
        (!ips.is_empty() && !ips.iter().any(|ip| ip == "8.8.8.8")).then_some(())
    })
    .await;
    // By now the ccm has seen both; the other class's Service is as it was created.
    let now = services.get("other").await.unwrap();
    assert_eq!(
        now.metadata.resource_version,
        other.metadata.resource_version
    );
    assert_eq!(
        now.metadata.finalizers.as_deref(),
        Some(&[ccm::names::LB_FINALIZER.to_owned()][..])
    );
    let lp = kube::api::ListParams::default().fields("involvedObject.name=other");
    assert!(
        events.list(&lp).await.unwrap().items.is_empty(),
        "the ccm said something about other"
    );
}

fn temp_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("ccm-e2e-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn write_cloud_config(dir: &Path, cloud: &cloud_sim::Server) {
    std::fs::write(
        dir.join("cloud.yaml"),
        format!("endpoint: {}\nregion: sim-1\n", cloud.base_url()),
    )
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_are_initialised_tainted_deleted_and_leadership_fails_over() {
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
        .await
        .unwrap();
    let cloud_client = cloud_client::Client::new(cloud.base_url()).unwrap();
    let kube = kube_sim::Server::start(kube_sim::ServerConfig::default())
        .await
        .unwrap();
    let dir = temp_dir();
    kube_sim::write_kubeconfig(&dir.join("kubeconfig"), &kube.url()).unwrap();
    write_cloud_config(&dir, &cloud);
    let mut kubelets = KubeletConfig::for_tests(&cloud.base_url());
    kubelets.mark_unknown_after = Some(Duration::from_millis(500));
    let cluster = Cluster {
        admin: client_for(&kube.url()),
        ccm_kubeconfig: dir.join("kubeconfig"),
        kubelets,
        ccm_args: Vec::new(),
    };
    scenario(cluster, &cloud_client, &dir).await;

    // kube-sim authorises nothing, but records what it served: what the ccm processes asked
    // for, leader election included, must be granted by the shipped RBAC.
    let seen: Vec<serde_json::Value> = reqwest::get(format!("{}/kube-sim/requests", kube.url()))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let rbac = std::fs::read_to_string(rbac_manifest()).unwrap();
    let docs: Vec<serde_json::Value> = serde_saphyr::from_multiple(&rbac).unwrap();
    let rules = kube_sim::rbac::rules_of(&docs);
    let mut leases = 0;
    for r in &seen {
        let s = |f: &str| r[f].as_str().unwrap_or_default();
        if s("userAgent").split_once('/').map(|(agent, _)| agent) != Some(ccm::names::USER_AGENT) {
            continue;
        }
        leases += usize::from(s("resource") == "leases");
        assert!(
            kube_sim::rbac::allows(&rules, s("verb"), s("apiGroup"), s("resource")),
            "manifests/ccm/rbac.yaml does not grant {r}"
        );
    }
    assert!(leases >= 3, "get, create and update of the Lease: {seen:?}");
    kube.shutdown().await;
    cloud.shutdown().await.unwrap();
    let _ = std::fs::remove_dir_all(&dir);
}

/// Control-plane tier: the same against kube-apiserver and kube-controller-manager (which
/// allocates pod CIDRs, marks silent nodes Unknown and taints them, next to the ccm), with the
/// ccm holding only its service account's token.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_control_plane_under_the_shipped_rbac() {
    real_control_plane_scenario(false).await;
}

/// Control-plane tier, `--use-service-account-credentials`: the ccm's own account keeps only
/// its kube-system Role and list/watch of Nodes for the shared informer, so the scenario passes
/// only if every controller works with its own service account's token and the roles
/// kube-apiserver binds to `node-controller`, `route-controller` and `service-controller`
/// (without the flag it times out waiting for the first node: tried).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_the_real_control_plane_with_service_account_credentials() {
    real_control_plane_scenario(true).await;
}

/// A real control plane with `manifests/ccm/rbac.yaml` applied (`None`: the fixture is not
/// built and the tier is skipped).
async fn control_plane_with_ccm_rbac() -> Option<control_plane::ControlPlane> {
    let bins = control_plane::binaries_for_test()?;
    let cp = control_plane::ControlPlane::start_with(bins, control_plane::Options::for_tests())
        .await
        .unwrap();
    kubectl_ok(&cp, &["apply", "-f", rbac_manifest().to_str().unwrap()]);
    Some(cp)
}

/// Runs kubectl against `cp`; panics with its output when it fails.
fn kubectl_ok(cp: &control_plane::ControlPlane, args: &[&str]) {
    let out = cp.kubectl().args(args).output().unwrap();
    assert!(out.status.success(), "kubectl {args:?}: {out:?}");
}

async fn real_control_plane_scenario(own_accounts: bool) {
    let Some(cp) = control_plane_with_ccm_rbac().await else {
        return;
    };
    if own_accounts {
        // The ccm's own account keeps only what the shared Node informer needs (upstream's
        // informers use the root credentials too): every write must come from a controller's
        // own account.
        kubectl_ok(
            &cp,
            &[
                "patch",
                "clusterrole",
                "system:cloud-controller-manager",
                "--type=json",
                r#"-p=[{"op":"replace","path":"/rules","value":[{"apiGroups":[""],"resources":["nodes"],"verbs":["list","watch"]}]}]"#,
            ],
        );
    }
    let ccm_kubeconfig = cp
        .service_account_kubeconfig("kube-system", "cloud-controller-manager")
        .await
        .unwrap();
    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
        .await
        .unwrap();
    let cloud_client = cloud_client::Client::new(cloud.base_url()).unwrap();
    let dir = cp.dir().join("e2e");
    std::fs::create_dir_all(&dir).unwrap();
    write_cloud_config(&dir, &cloud);
    let cluster = Cluster {
        admin: cp.client().await.unwrap(),
        ccm_kubeconfig,
        kubelets: KubeletConfig {
            status_interval: Duration::from_millis(500),
            ..KubeletConfig::with_controller_manager(&cloud.base_url())
        },
        ccm_args: if own_accounts {
            vec!["--use-service-account-credentials".into()]
        } else {
            Vec::new()
        },
    };
    scenario(cluster, &cloud_client, &dir).await;
    // The stopped node carries both writers' taints: the ccm's shutdown taint and
    // kube-controller-manager's unreachable one (the ccm patches taints with a resourceVersion
    // precondition from a fresh read, so neither drops the other's).
    let nodes: Api<Node> = Api::all(cp.client().await.unwrap());
    wait_for(
        "shutdown and unreachable taints together on node-0",
        T,
        || async {
            let keys: Vec<String> = nodes
                .get("node-0")
                .await
                .ok()?
                .spec?
                .taints?
                .into_iter()
                .map(|t| t.key)
                .collect();
            (keys.iter().any(|k| k == ccm::names::TAINT_SHUTDOWN)
                && keys.iter().any(|k| k == "node.kubernetes.io/unreachable"))
            .then_some(())
        },
    )
    .await;
    // Nothing the ccm did was refused.
    for id in ["ccm-a", "ccm-b"] {
        let log = std::fs::read_to_string(dir.join(format!("{id}.log"))).unwrap();
        assert!(
            !log.contains("forbidden"),
            "{id} was refused something by RBAC:\n{log}"
        );
    }
    cloud.shutdown().await.unwrap();
}

/// A client of the ccm's serving port at `url` that trusts the CA in `chain_pem` (the last
/// certificate of the generated chain) and sends `token`, if any.
fn serving_client(url: &str, chain_pem: &str, token: Option<&str>) -> kube::Client {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    let ca = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .last()
        .expect("a certificate")
        .unwrap();
    let mut cfg = kube::Config::new(url.parse().unwrap());
    cfg.root_cert = Some(vec![ca.to_vec()]);
    if let Some(t) = token {
        cfg.headers.push((
            axum::http::header::AUTHORIZATION,
            format!("Bearer {t}").parse().unwrap(),
        ));
    }
    kube::Client::try_from(cfg).unwrap()
}

/// `GET path` on the serving port: the body, or the Status code and message of a refusal.
async fn get(client: &kube::Client, path: &str) -> Result<String, (u16, String)> {
    let req = axum::http::Request::get(path).body(Vec::new()).unwrap();
    client.request_text(req).await.map_err(|e| match e {
        kube::Error::Api(s) => (s.code, s.message),
        other => (0, other.to_string()),
    })
}

/// The token of a kubeconfig written by `service_account_kubeconfig`.
fn token_of(kubeconfig: &Path) -> String {
    let text = std::fs::read_to_string(kubeconfig).unwrap();
    let doc: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    doc["users"][0]["user"]["token"]
        .as_str()
        .unwrap()
        .to_owned()
}

/// Control-plane tier: the serving port as upstream's. HTTPS with a certificate generated into
/// `--cert-dir`; `/healthz` open to anyone; `/metrics` only for a token the API server
/// authenticates (TokenReview) and authorises for the path (SubjectAccessReview), with the ccm
/// holding only the shipped RBAC; a token it does not know is 401 everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serving_on_the_real_control_plane_delegates_authn_and_authz() {
    let Some(cp) = control_plane_with_ccm_rbac().await else {
        return;
    };
    // A scraper allowed to read /metrics, and an account that is not.
    kubectl_ok(
        &cp,
        &[
            "create",
            "clusterrole",
            "metrics-reader",
            "--verb=get",
            "--non-resource-url=/metrics",
        ],
    );
    kubectl_ok(
        &cp,
        &[
            "create",
            "clusterrolebinding",
            "metrics-reader",
            "--clusterrole=metrics-reader",
            "--serviceaccount=default:prometheus",
        ],
    );
    let allowed = token_of(
        &cp.service_account_kubeconfig("default", "prometheus")
            .await
            .unwrap(),
    );
    let refused = token_of(
        &cp.service_account_kubeconfig("default", "nobody")
            .await
            .unwrap(),
    );
    let ccm_kubeconfig = cp
        .service_account_kubeconfig("kube-system", "cloud-controller-manager")
        .await
        .unwrap();

    let cloud = cloud_sim::Server::start_in_memory(cloud_sim::Config::for_tests_isolated())
        .await
        .unwrap();
    let dir = cp.dir().join("serving");
    std::fs::create_dir_all(&dir).unwrap();
    write_cloud_config(&dir, &cloud);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let certs = dir.join("certs");
    let _ccm = Ccm::spawn(
        &dir,
        &ccm_kubeconfig,
        "ccm-serving",
        &[
            "--bind-address=127.0.0.1".into(),
            format!("--secure-port={port}"),
            format!("--cert-dir={}", certs.display()),
        ],
    );
    let url = format!("https://127.0.0.1:{port}");
    let chain = wait_for("the generated certificate", T, || async {
        std::fs::read_to_string(certs.join("cloud-controller-manager.crt")).ok()
    })
    .await;
    let anonymous = serving_client(&url, &chain, None);
    wait_for("/healthz over HTTPS", T, || async {
        get(&anonymous, "/healthz").await.ok().filter(|b| b == "ok")
    })
    .await;
    assert_eq!(get(&anonymous, "/readyz").await.as_deref(), Ok("ok"));
    let (code, message) = get(&anonymous, "/metrics").await.unwrap_err();
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains(r#"User "system:anonymous" cannot get path "/metrics""#),
        "{message}"
    );
    // The leader gauge appears once the ccm holds the lease, which may be just after /readyz.
    let allowed_client = serving_client(&url, &chain, Some(&allowed));
    wait_for("the leader gauge on /metrics", T, || async {
        get(&allowed_client, "/metrics")
            .await
            .ok()
            .filter(|m| m.contains("leader_election_master_status"))
    })
    .await;
    let (code, message) = get(&serving_client(&url, &chain, Some(&refused)), "/metrics")
        .await
        .unwrap_err();
    assert_eq!(code, 403, "{message}");
    assert!(
        message.contains("system:serviceaccount:default:nobody"),
        "{message}"
    );
    for path in ["/metrics", "/healthz"] {
        let (code, message) = get(&serving_client(&url, &chain, Some("not-a-token")), path)
            .await
            .unwrap_err();
        assert_eq!(code, 401, "{path}: {message}");
    }
    // Plain HTTP is not served.
    assert!(
        reqwest::get(format!("http://127.0.0.1:{port}/healthz"))
            .await
            .is_err(),
        "plain HTTP answered"
    );
    cloud.shutdown().await.unwrap();
}
