//! kubectl v1.32 against kube-sim: the commands users and the sandbox docs rely on.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use kube_sim::ServerConfig;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{Sim, start_with};

struct Kubectl {
    sim: Sim,
    kubeconfig: PathBuf,
    cache: PathBuf,
    dir: PathBuf,
}

impl Drop for Kubectl {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn setup() -> Kubectl {
    let dir = std::env::temp_dir().join(format!("kube-sim-kubectl-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&dir).unwrap();
    let kubeconfig = dir.join("kubeconfig");
    let sim = start_with(ServerConfig {
        kubeconfig: Some(kubeconfig.clone()),
        ..ServerConfig::default()
    })
    .await;
    Kubectl {
        sim,
        kubeconfig,
        cache: dir.join("cache"),
        dir,
    }
}

impl Kubectl {
    fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::new("kubectl");
        c.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(&self.cache)
            .args(args);
        c.env_remove("KUBECONFIG").kill_on_drop(true);
        c
    }

    /// Runs kubectl, asserts success, returns stdout.
    async fn ok(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(60), self.cmd(args).output())
            .await
            .expect("kubectl timed out")
            .unwrap();
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs kubectl, asserts failure, returns stderr.
    async fn fails(&self, args: &[&str]) -> String {
        let out = tokio::time::timeout(Duration::from_secs(60), self.cmd(args).output())
            .await
            .expect("kubectl timed out")
            .unwrap();
        assert!(!out.status.success(), "kubectl {args:?} succeeded");
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn write(&self, name: &str, content: &str) -> String {
        let p = self.dir.join(name);
        std::fs::write(&p, content).unwrap();
        p.display().to_string()
    }
}

const SVC_YAML: &str = "apiVersion: v1
kind: Service
metadata:
  name: web
  labels:
    app: web
spec:
  type: LoadBalancer
  selector:
    app: web
  ports:
  - name: http
    port: 80
    targetPort: 8080
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_describe_and_api_resources() {
    let k = setup().await;
    let out = k.ok(&["api-resources"]).await;
    for want in ["nodes", "services", "leases", "endpointslices", "events"] {
        assert!(out.contains(want), "api-resources lacks {want}:\n{out}");
    }
    assert!(out.contains("svc"), "short names are listed:\n{out}");
    k.sim.post("/api/v1/nodes", json!({"metadata": {"name": "node-a", "labels": {"topology.kubernetes.io/zone": "zone-a"}}})).await;
    let out = k.ok(&["get", "nodes"]).await;
    assert!(out.contains("node-a"), "{out}");
    let out = k.ok(&["get", "no", "node-a", "-o", "yaml"]).await;
    assert!(
        out.contains("name: node-a") && out.contains("resourceVersion:"),
        "{out}"
    );
    let out = k
        .ok(&[
            "get",
            "nodes",
            "-l",
            "topology.kubernetes.io/zone=zone-a",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(out.trim(), "node/node-a");
    let out = k
        .ok(&[
            "get",
            "nodes",
            "-l",
            "topology.kubernetes.io/zone=zone-b",
            "-o",
            "name",
        ])
        .await;
    assert_eq!(out.trim(), "");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_twice_is_a_no_op_and_patches_label_taint_work() {
    let k = setup().await;
    let file = k.write("svc.yaml", SVC_YAML);
    let out = k.ok(&["apply", "-f", &file]).await;
    assert!(out.contains("service/web created"), "{out}");
    let rv1 = k
        .sim
        .get("/api/v1/namespaces/default/services/web")
        .await
        .body["metadata"]["resourceVersion"]
        .clone();
    let out = k.ok(&["apply", "-f", &file]).await;
    assert!(out.contains("service/web unchanged"), "{out}");
    let rv2 = k
        .sim
        .get("/api/v1/namespaces/default/services/web")
        .await
        .body["metadata"]["resourceVersion"]
        .clone();
    assert_eq!(rv1, rv2, "a second apply writes nothing");
    // A changed file is applied as a strategic merge patch.
    let file2 = k.write(
        "svc2.yaml",
        &SVC_YAML.replace("targetPort: 8080", "targetPort: 9090"),
    );
    k.ok(&["apply", "-f", &file2]).await;
    let svc = k
        .sim
        .get("/api/v1/namespaces/default/services/web")
        .await
        .body;
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 9090);
    assert!(
        svc["spec"]["ports"][0]["nodePort"].is_number(),
        "the allocated node port survives apply"
    );

    k.ok(&[
        "patch",
        "service",
        "web",
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"sessionAffinity":"ClientIP"}}"#,
    ])
    .await;
    k.ok(&[
        "patch",
        "service",
        "web",
        "-p",
        r#"{"metadata":{"annotations":{"a":"b"}}}"#,
    ])
    .await;
    let svc = k
        .sim
        .get("/api/v1/namespaces/default/services/web")
        .await
        .body;
    assert_eq!(svc["spec"]["sessionAffinity"], "ClientIP");
    assert_eq!(svc["metadata"]["annotations"]["a"], "b");

    k.sim
        .post("/api/v1/nodes", json!({"metadata": {"name": "n1"}}))
        .await;
    k.ok(&["label", "node", "n1", "tier=edge"]).await;
    k.ok(&["taint", "node", "n1", "dedicated=lb:NoSchedule"])
        .await;
    let node = k.sim.get("/api/v1/nodes/n1").await.body;
    assert_eq!(node["metadata"]["labels"]["tier"], "edge");
    assert_eq!(node["spec"]["taints"][0]["key"], "dedicated");
    k.ok(&["taint", "node", "n1", "dedicated-"]).await;
    let node = k.sim.get("/api/v1/nodes/n1").await.body;
    assert!(
        node["spec"]["taints"]
            .as_array()
            .is_none_or(|t| t.is_empty()),
        "{node}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_returns_once_the_object_is_gone() {
    let k = setup().await;
    k.sim
        .post(
            "/api/v1/namespaces/default/configmaps",
            json!({"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}),
        )
        .await;
    let child = k
        .cmd(&["delete", "configmap", "held"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // kubectl waits: the object is still there, marked for deletion.
    crate::common::wait_for("deletionTimestamp", Duration::from_secs(30), || async {
        let o = k
            .sim
            .get("/api/v1/namespaces/default/configmaps/held")
            .await
            .body;
        o["metadata"]["deletionTimestamp"].is_string().then_some(())
    })
    .await;
    k.sim
        .patch(
            "/api/v1/namespaces/default/configmaps/held",
            "merge",
            json!({"metadata": {"finalizers": null}}),
        )
        .await;
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("kubectl delete returned")
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("deleted"));
    assert_eq!(
        k.sim
            .get("/api/v1/namespaces/default/configmaps/held")
            .await
            .status,
        404
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_watch_prints_new_objects() {
    let k = setup().await;
    let mut child = k
        .cmd(&["get", "configmaps", "-w", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    // Keep creating until kubectl's watch reports one (it may start after the first create).
    let mut n = 0;
    let seen = tokio::time::timeout(Duration::from_secs(60), async {
        loop {
            k.sim
                .post(
                    "/api/v1/namespaces/default/configmaps",
                    json!({"metadata": {"name": format!("w{n}")}}),
                )
                .await;
            n += 1;
            if let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(500), lines.next_line()).await
            {
                return line;
            }
        }
    })
    .await
    .expect("kubectl get -w printed an event");
    assert!(seen.starts_with("configmap/w"), "{seen}");
    child.kill().await.unwrap();
}

/// kubectl validates against the server's OpenAPI documents (no `--validate=false`), refuses a
/// misspelt field with the server's strict-decoding message, and `explain` reads the documents.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_validates_and_explain_answers() {
    let k = setup().await;
    let typo = k.write(
        "typo.yaml",
        &SVC_YAML.replace("targetPort:", "targetPortt:"),
    );
    let stderr = k.fails(&["apply", "-f", &typo]).await;
    assert!(
        stderr.contains(r#"strict decoding error: unknown field "spec.ports[0].targetPortt""#),
        "{stderr}"
    );
    assert_eq!(
        k.sim
            .get("/api/v1/namespaces/default/services/web")
            .await
            .status,
        404,
        "nothing was created"
    );
    let explained = k
        .ok(&["explain", "service.spec.externalTrafficPolicy"])
        .await;
    assert!(
        explained.contains("FIELD: externalTrafficPolicy <string>"),
        "{explained}"
    );
    let out = k.ok(&["apply", "-f", &k.write("svc.yaml", SVC_YAML)]).await;
    assert!(out.contains("service/web created"), "{out}");
}

/// A file holding a `kind: List` is validated by kubectl against the server's OpenAPI v2 (it
/// cannot use v3 for a List): as with kube-apiserver, a misspelt field in an item is refused on
/// the client before anything is sent, and the corrected file creates every item.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_list_file_is_validated_against_openapi_v2_and_created() {
    let k = setup().await;
    let indent = |yaml: &str| {
        yaml.lines()
            .enumerate()
            .map(|(i, l)| format!("{}{l}\n", if i == 0 { "- " } else { "  " }))
            .collect::<String>()
    };
    let list = |svc: &str| {
        format!(
            "apiVersion: v1\nkind: List\nitems:\n{}{}",
            indent("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: listed\ndata:\n  a: b"),
            indent(svc)
        )
    };
    let typo = k.write(
        "typo-list.yaml",
        &list(&SVC_YAML.replace("targetPort:", "targetPortt:")),
    );
    let stderr = k.fails(&["create", "-f", &typo]).await;
    assert!(
        stderr.contains(r#"unknown field "targetPortt" in io.k8s.api.core.v1.ServicePort"#),
        "kubectl's own (v2) validation refused it: {stderr}"
    );
    assert_eq!(
        k.sim
            .get("/api/v1/namespaces/default/configmaps/listed")
            .await
            .status,
        404,
        "nothing was sent"
    );
    let out = k
        .ok(&["create", "-f", &k.write("list.yaml", &list(SVC_YAML))])
        .await;
    assert!(
        out.contains("configmap/listed created") && out.contains("service/web created"),
        "{out}"
    );
}

/// `kubectl scale` goes through the Deployment's scale subresource.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_sets_a_deployments_replicas() {
    let k = setup().await;
    let deploy = k.write(
        "deploy.yaml",
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: web\nspec:\n  selector:\n    matchLabels: {app: web}\n  template:\n    metadata:\n      labels: {app: web}\n    spec:\n      containers:\n      - {name: c, image: nginx}\n",
    );
    k.ok(&["apply", "-f", &deploy]).await;
    let out = k.ok(&["scale", "deployment", "web", "--replicas=3"]).await;
    assert!(out.contains("deployment.apps/web scaled"), "{out}");
    let d = k
        .sim
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .body;
    assert_eq!(d["spec"]["replicas"], 3);
    let scale = k
        .sim
        .get("/apis/apps/v1/namespaces/default/deployments/web/scale")
        .await
        .body;
    assert_eq!(
        (
            scale["spec"]["replicas"].as_i64(),
            scale["status"]["selector"].as_str()
        ),
        (Some(3), Some("app=web"))
    );
}

/// `kubectl get` prints kube-apiserver's columns (server-side tables), `-o wide` adds the wide
/// ones, and `-w` keeps printing rows in the same columns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_the_servers_columns() {
    let k = setup().await;
    let node = json!({"metadata": {"name": "n1", "labels": {"node-role.kubernetes.io/control-plane": ""}},
        "status": {"conditions": [{"type": "Ready", "status": "True"}],
            "addresses": [{"type": "InternalIP", "address": "127.1.0.5"}],
            "nodeInfo": {"kubeletVersion": "v1.37.2"}}});
    assert_eq!(k.sim.post("/api/v1/nodes", node).await.status, 201);
    let event = json!({"metadata": {"name": "n1.1"}, "involvedObject": {"kind": "Node", "name": "n1"},
        "reason": "Hello", "message": "hi there", "type": "Normal", "source": {"component": "test"}});
    assert_eq!(
        k.sim
            .post("/api/v1/namespaces/default/events", event)
            .await
            .status,
        201
    );
    let words = |out: &str, line: usize| -> Vec<String> {
        out.lines()
            .nth(line)
            .unwrap_or_default()
            .split("  ")
            .map(str::trim)
            .filter(|w| !w.is_empty())
            .map(str::to_owned)
            .collect()
    };
    let out = k.ok(&["get", "nodes"]).await;
    assert_eq!(
        words(&out, 0),
        ["NAME", "STATUS", "ROLES", "AGE", "VERSION"],
        "{out}"
    );
    let row = words(&out, 1);
    assert_eq!(
        (
            row[0].as_str(),
            row[1].as_str(),
            row[2].as_str(),
            row[4].as_str()
        ),
        ("n1", "Ready", "control-plane", "v1.37.2"),
        "{out}"
    );
    let out = k.ok(&["get", "nodes", "-o", "wide"]).await;
    assert_eq!(
        words(&out, 0),
        [
            "NAME",
            "STATUS",
            "ROLES",
            "AGE",
            "VERSION",
            "INTERNAL-IP",
            "EXTERNAL-IP",
            "OS-IMAGE",
            "KERNEL-VERSION",
            "CONTAINER-RUNTIME"
        ],
        "{out}"
    );
    assert!(words(&out, 1).contains(&"127.1.0.5".to_owned()), "{out}");
    let out = k.ok(&["get", "events"]).await;
    assert_eq!(
        words(&out, 0),
        ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"],
        "{out}"
    );
    assert!(out.contains("node/n1") && out.contains("hi there"), "{out}");
    // A watch prints later changes in the same columns.
    let mut w = k
        .cmd(&["get", "nodes", "-w", "--output-watch-events"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(w.stdout.take().unwrap()).lines();
    let header = lines.next_line().await.unwrap().unwrap();
    assert!(
        header.starts_with("EVENT") && header.contains("ROLES"),
        "{header}"
    );
    let added = lines.next_line().await.unwrap().unwrap();
    assert!(
        added.starts_with("ADDED") && added.contains("Ready"),
        "{added}"
    );
    assert_eq!(
        k.sim
            .patch(
                "/api/v1/nodes/n1",
                "application/merge-patch+json",
                json!({"spec": {"unschedulable": true}})
            )
            .await
            .status,
        200
    );
    let modified = tokio::time::timeout(Duration::from_secs(20), lines.next_line())
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert!(modified.contains("Ready,SchedulingDisabled"), "{modified}");
    let _ = w.kill().await;
}

/// The commands that go through client-go's typed clients send protobuf bodies: they work.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_client_commands_send_protobuf_and_work() {
    let k = setup().await;
    let out = k
        .ok(&[
            "create",
            "deployment",
            "web",
            "--image=nginx",
            "--replicas=2",
        ])
        .await;
    assert!(out.contains("deployment.apps/web created"), "{out}");
    let d = k
        .sim
        .get("/apis/apps/v1/namespaces/default/deployments/web")
        .await
        .body;
    assert_eq!(d["spec"]["replicas"], 2);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx"
    );
    assert!(d["metadata"]["creationTimestamp"].is_string(), "{d}");
    k.ok(&["create", "secret", "generic", "s", "--from-literal=a=b"])
        .await;
    let secret = k.sim.get("/api/v1/namespaces/default/secrets/s").await.body;
    assert_eq!(
        (secret["type"].as_str(), secret["data"]["a"].as_str()),
        (Some("Opaque"), Some("Yg=="))
    );
    assert_eq!(
        k.ok(&["auth", "can-i", "list", "nodes"]).await.trim(),
        "yes"
    );
    k.ok(&["create", "role", "reader", "--verb=get", "--resource=pods"])
        .await;
    k.ok(&[
        "create",
        "rolebinding",
        "bot-reads",
        "--role=reader",
        "--serviceaccount=default:bot",
    ])
    .await;
    let bot = "--as=system:serviceaccount:default:bot";
    assert_eq!(
        k.ok(&["auth", "can-i", "get", "pods", bot]).await.trim(),
        "yes"
    );
    let out = k
        .cmd(&["auth", "can-i", "delete", "pods", bot])
        .output()
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "no");
}

/// `kubectl apply --server-side`: applied, owned by kubectl, a conflicting change by another
/// writer refused until `--force-conflicts`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_side_apply_owns_conflicts_and_forces() {
    let k = setup().await;
    let file = k.write("svc.yaml", SVC_YAML);
    let out = k.ok(&["apply", "--server-side", "-f", &file]).await;
    assert!(out.contains("service/web serverside-applied"), "{out}");
    let svc = k
        .sim
        .get("/api/v1/namespaces/default/services/web")
        .await
        .body;
    assert_eq!(svc["metadata"]["managedFields"][0]["manager"], "kubectl");
    assert_eq!(svc["metadata"]["managedFields"][0]["operation"], "Apply");
    let changed = k
        .sim
        .patch(
            "/api/v1/namespaces/default/services/web?fieldManager=someone",
            "merge",
            json!({"spec": {"selector": {"app": "other"}}}),
        )
        .await;
    assert_eq!(changed.status, 200);
    let out = k
        .cmd(&["apply", "--server-side", "-f", &file])
        .output()
        .await
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(stderr.contains(r#"conflict with "someone""#), "{stderr}");
    k.ok(&["apply", "--server-side", "--force-conflicts", "-f", &file])
        .await;
    let svc = k
        .sim
        .get("/api/v1/namespaces/default/services/web")
        .await
        .body;
    assert_eq!(svc["spec"]["selector"]["app"], "web");
}
