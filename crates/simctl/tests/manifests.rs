//! The manifests we ship (`manifests/`), checked as far as a machine without Docker allows: every
//! object parses into its k8s-openapi type without losing a field, the ccm's command line and the
//! example cloud-config parse with the ccm's own parsers, the kind cluster config asks every
//! kubelet for `--cloud-provider=external`, and the kustomizations apply cleanly (and idempotently)
//! to kube-sim with kubectl. `tests/kind/run.sh` runs them on kind where Docker exists.

use std::path::{Path, PathBuf};

use clap::Parser as _;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Service, ServiceAccount};
use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, Role, RoleBinding};
use serde_json::Value;

mod common;
use common::kubectl;

fn manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../manifests")
}

fn read(rel: &str) -> String {
    let path = manifests().join(rel);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// Every YAML document of a Kubernetes manifest file.
fn documents(rel: &str) -> Vec<Value> {
    serde_saphyr::from_multiple::<Value>(&read(rel))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
        .into_iter()
        .filter(|d| !d.is_null())
        .collect()
}

/// Parses `doc` as `T` and back: a field k8s-openapi does not know (a typo, a wrong level) is
/// dropped on the way and shows as a difference.
fn round_trips<T: serde::de::DeserializeOwned + serde::Serialize>(what: &str, doc: &Value) -> T {
    let typed: T = serde_json::from_value(doc.clone())
        .unwrap_or_else(|e| panic!("{what} does not parse as its type: {e}"));
    assert_eq!(
        &serde_json::to_value(&typed).unwrap(),
        doc,
        "{what} loses fields when parsed (a misspelt or misplaced field?)"
    );
    typed
}

fn check_objects(rel: &str) -> Vec<Value> {
    let docs = documents(rel);
    assert!(!docs.is_empty(), "{rel} has no objects");
    for doc in &docs {
        let kind = doc["kind"].as_str().unwrap_or_default();
        let what = format!("{rel}: {kind} {}", doc["metadata"]["name"]);
        match kind {
            "ServiceAccount" => drop(round_trips::<ServiceAccount>(&what, doc)),
            "ClusterRole" => drop(round_trips::<ClusterRole>(&what, doc)),
            "ClusterRoleBinding" => drop(round_trips::<ClusterRoleBinding>(&what, doc)),
            "Role" => drop(round_trips::<Role>(&what, doc)),
            "RoleBinding" => drop(round_trips::<RoleBinding>(&what, doc)),
            "Deployment" => drop(round_trips::<Deployment>(&what, doc)),
            "Service" => drop(round_trips::<Service>(&what, doc)),
            other => panic!("{what}: no check for kind {other:?}; add one"),
        }
    }
    docs
}

#[test]
fn every_object_parses_into_its_type_without_losing_fields() {
    let mut kinds: Vec<String> = ["ccm/rbac.yaml", "ccm/deployment.yaml", "examples/web.yaml"]
        .into_iter()
        .flat_map(check_objects)
        .map(|d| d["kind"].as_str().unwrap().to_owned())
        .collect();
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "ClusterRole",
            "ClusterRoleBinding",
            "ClusterRoleBinding",
            "Deployment",
            "Deployment",
            "Role",
            "RoleBinding",
            "Service",
            "ServiceAccount"
        ]
    );
}

#[test]
fn the_ccm_deployment_runs_a_command_line_the_ccm_accepts() {
    let docs = documents("ccm/deployment.yaml");
    let d: Deployment = serde_json::from_value(docs[0].clone()).unwrap();
    let pod = d.spec.unwrap().template.spec.unwrap();
    let c = &pod.containers[0];
    let command = c.command.clone().unwrap();
    assert_eq!(
        command[0], "/usr/local/bin/ccm",
        "the Dockerfile installs it there"
    );
    let args = ccm::config::Args::try_parse_from(&command).expect("the ccm parses its flags");
    // Validating reads the cloud-config: point it at the example instead of the Secret's mount.
    let example = manifests().join("ccm/cloud-config.example.yaml");
    let mut local = args.clone();
    local.cloud_config = Some(example);
    local.validate().expect("the flags are valid together");
    assert_eq!(args.cloud_provider, "simcloud");
    // The probes and the declared port are the port the ccm serves on.
    let port = i32::from(args.secure_port);
    assert_eq!(c.ports.as_ref().unwrap()[0].container_port, port);
    for probe in [&c.liveness_probe, &c.readiness_probe] {
        let get = probe.as_ref().unwrap().http_get.as_ref().unwrap();
        assert_eq!(
            get.port,
            k8s_openapi::apimachinery::pkg::util::intstr::IntOrString::Int(port)
        );
        assert_eq!(
            get.scheme.as_deref(),
            Some("HTTPS"),
            "the ccm serves HTTPS only"
        );
    }
    // It reads the cloud-config from the mounted Secret, and can run before nodes are initialised.
    let mount = &c.volume_mounts.as_ref().unwrap()[0];
    assert!(
        args.cloud_config
            .as_ref()
            .unwrap()
            .starts_with(&mount.mount_path)
    );
    assert_eq!(pod.host_network, Some(true));
    let tolerated: Vec<String> = pod
        .tolerations
        .unwrap()
        .into_iter()
        .filter_map(|t| t.key)
        .collect();
    assert!(
        tolerated.contains(&"node.cloudprovider.kubernetes.io/uninitialized".to_owned()),
        "{tolerated:?}"
    );
    assert_eq!(
        pod.service_account_name.as_deref(),
        Some("cloud-controller-manager")
    );
    // The example cloud-config parses with the ccm's parser.
    let cfg = ccm::config::CloudConfig::parse(&read("ccm/cloud-config.example.yaml"))
        .expect("the example cloud-config parses");
    assert!(cfg.endpoint.starts_with("http://"), "{cfg:?}");
}

#[test]
fn the_kind_cluster_runs_every_kubelet_with_an_external_cloud_provider() {
    let cluster: Value = serde_saphyr::from_str(&read("kind/cluster.yaml")).unwrap();
    assert_eq!(cluster["apiVersion"], "kind.x-k8s.io/v1alpha4");
    let nodes = cluster["nodes"].as_array().unwrap();
    let roles: Vec<&str> = nodes.iter().map(|n| n["role"].as_str().unwrap()).collect();
    assert_eq!(roles, ["control-plane", "worker", "worker", "worker"]);
    for (i, n) in nodes.iter().enumerate() {
        let wanted = if i == 0 {
            "InitConfiguration"
        } else {
            "JoinConfiguration"
        };
        let patches = n["kubeadmConfigPatches"].as_array().unwrap();
        let ok = patches.iter().any(|p| {
            let p: Value = serde_saphyr::from_str(p.as_str().unwrap()).unwrap();
            let args = &p["nodeRegistration"]["kubeletExtraArgs"];
            // kind's own kind:// provider ID would make the ccm leave the node alone.
            p["kind"] == wanted && args["cloud-provider"] == "external" && args["provider-id"] == ""
        });
        assert!(
            ok,
            "node {i} ({}) gets cloud-provider=external and no provider ID",
            roles[i]
        );
    }
    assert_eq!(cluster["networking"]["podSubnet"], "10.244.0.0/16");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kustomizations_apply_cleanly_and_idempotently_with_kubectl() {
    let dir = std::env::temp_dir().join(format!("simctl-manifests-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let server = kube_sim::Server::start(kube_sim::ServerConfig {
        kubeconfig: Some(kubeconfig.clone()),
        ..kube_sim::ServerConfig::default()
    })
    .await
    .unwrap();
    let k = async |args: &[&str]| kubectl(&dir, args).await;
    let ns = dir.join("namespace.yaml");
    std::fs::write(
        &ns,
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: kube-system\n",
    )
    .unwrap();
    k(&["apply", "-f", ns.to_str().unwrap()]).await;
    for base in ["ccm", "examples"] {
        let path = manifests().join(base);
        let path = path.to_str().unwrap();
        let first = k(&["apply", "-k", path]).await;
        assert!(
            first.lines().all(|l| l.ends_with(" created")),
            "{base}: {first}"
        );
        let again = k(&["apply", "-k", path]).await;
        assert!(
            again.lines().all(|l| l.ends_with(" unchanged")),
            "{base} applied twice changes nothing: {again}"
        );
    }
    let ccm = k(&[
        "-n",
        "kube-system",
        "get",
        "deployment",
        "simcloud-ccm",
        "-o",
        "jsonpath={.spec.template.spec.serviceAccountName} {.metadata.generation}",
    ])
    .await;
    assert_eq!(ccm, "cloud-controller-manager 1");
    let svc = k(&[
        "get",
        "service",
        "web",
        "-o",
        "jsonpath={.spec.type} {.spec.trafficDistribution}",
    ])
    .await;
    assert_eq!(svc, "LoadBalancer PreferSameZone");
    let binding = k(&[
        "get",
        "clusterrolebinding",
        "system:cloud-controller-manager",
        "-o",
        "jsonpath={.subjects[0].namespace}/{.subjects[0].name}",
    ])
    .await;
    assert_eq!(binding, "kube-system/cloud-controller-manager");
    server.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
}

/// The leader-election Lease lives in kube-system, so that is the only place the ccm may touch
/// Leases: a Role there, nothing cluster-wide.
#[test]
fn leases_are_granted_only_in_kube_system() {
    let docs = documents("ccm/rbac.yaml");
    for d in &docs {
        let leases = d["rules"].as_array().into_iter().flatten().any(|r| {
            r["resources"]
                .as_array()
                .is_some_and(|l| l.iter().any(|x| x == "leases"))
        });
        match d["kind"].as_str() {
            Some("ClusterRole") => assert!(!leases, "the ClusterRole grants leases cluster-wide"),
            Some("Role") => {
                assert!(leases);
                assert_eq!(d["metadata"]["namespace"], ccm::names::LEASE_NAMESPACE);
            }
            _ => {}
        }
    }
    assert!(
        docs.iter().any(|d| d["kind"] == "RoleBinding"
            && d["metadata"]["namespace"] == ccm::names::LEASE_NAMESPACE)
    );
}

/// The ccm as tests/kind/run.sh deploys it (`kubectl kustomize manifests/kind/ccm`): kindnet routes
/// pods, so cloud routes are off; the flags still parse and validate with the ccm's own parser;
/// it tolerates network-unavailable nodes and is replaced with Recreate (host network, one port).
#[test]
fn the_kind_ccm_overlay_turns_cloud_routes_off() {
    let out = std::process::Command::new("kubectl")
        .arg("kustomize")
        .arg(manifests().join("kind/ccm"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let docs: Vec<Value> =
        serde_saphyr::from_multiple(&String::from_utf8(out.stdout).unwrap()).unwrap();
    let d: Deployment = docs
        .into_iter()
        .find(|d| d["kind"] == "Deployment")
        .map(|d| serde_json::from_value(d).unwrap())
        .expect("the overlay has the ccm Deployment");
    let spec = d.spec.unwrap();
    assert_eq!(
        spec.strategy.and_then(|s| s.type_).as_deref(),
        Some("Recreate")
    );
    let pod = spec.template.spec.unwrap();
    let command = pod.containers[0].command.clone().unwrap();
    let mut args = ccm::config::Args::try_parse_from(&command).expect("the ccm parses its flags");
    assert!(!args.configure_cloud_routes, "{command:?}");
    args.cloud_config = Some(manifests().join("ccm/cloud-config.example.yaml"));
    let v = args.validate().expect("valid together");
    assert!(
        v.controllers
            .contains(&ccm::controllers::ControllerName::Route)
    );
    let tolerated: Vec<String> = pod
        .tolerations
        .unwrap_or_default()
        .into_iter()
        .filter_map(|t| t.key)
        .collect();
    assert!(
        tolerated.contains(&"node.kubernetes.io/network-unavailable".to_owned()),
        "{tolerated:?}"
    );
}
