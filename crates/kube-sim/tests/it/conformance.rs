//! Plain HTTP conformance tests: each asserts what a real kube-apiserver does, so the suite could
//! run unchanged against one.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{rv, start};

fn cm(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": {"k": "v"}})
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}, "spec": {}, "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
}

fn lb_service(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
        "spec": {"type": "LoadBalancer", "selector": {"app": name}, "ports": [{"name": "http", "port": 80}]}})
}

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const SVCS: &str = "/api/v1/namespaces/default/services";

#[tokio::test]
async fn lists_always_carry_a_resource_version_and_items() {
    let s = start().await;
    let r = s.get("/api/v1/nodes").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["kind"], "NodeList");
    assert_eq!(r.body["apiVersion"], "v1");
    assert_eq!(r.body["items"], json!([]));
    let list_rv: u64 = r.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!(list_rv > 0);
    // The empty leading pair kube-rs sends is ignored.
    assert_eq!(s.get("/api/v1/nodes?&limit=500").await.status, 200);
}

#[tokio::test]
async fn pagination_keeps_one_resource_version() {
    let s = start().await;
    for n in ["a", "b", "c"] {
        assert_eq!(s.post(CMS, cm(n)).await.status, 201);
    }
    let mut names = Vec::new();
    let mut rvs = Vec::new();
    let mut path = format!("{CMS}?limit=1");
    loop {
        let r = s.get(&path).await;
        assert_eq!(r.status, 200);
        rvs.push(r.body["metadata"]["resourceVersion"].clone());
        names.extend(
            r.body["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned()),
        );
        match r.body["metadata"]["continue"].as_str() {
            Some(c) => path = format!("{CMS}?limit=1&continue={c}"),
            None => break,
        }
    }
    assert_eq!(names, ["a", "b", "c"]);
    assert!(rvs.windows(2).all(|w| w[0] == w[1]), "{rvs:?}");
    assert_eq!(
        s.get(&format!("{CMS}?limit=1&continue=zz")).await.status,
        400
    );
}

#[tokio::test]
async fn create_fills_system_fields_and_refuses_duplicates() {
    let s = start().await;
    let r = s.post(CMS, cm("one")).await;
    assert_eq!(r.status, 201);
    let m = &r.body["metadata"];
    assert_eq!(m["uid"].as_str().unwrap().len(), 36);
    assert!(m["creationTimestamp"].as_str().unwrap().ends_with('Z'));
    assert_eq!(m["namespace"], "default");
    rv(&r.body);
    let dup = s.post(CMS, cm("one")).await;
    assert_eq!(
        (dup.status, dup.body["reason"].as_str()),
        (409, Some("AlreadyExists"))
    );
    assert_eq!(dup.body["kind"], "Status");
    let with_rv = s
        .post(
            CMS,
            json!({"metadata": {"name": "two", "resourceVersion": "5"}}),
        )
        .await;
    assert_eq!(with_rv.status, 500);
    let bad = s.post(CMS, cm("Bad_Name")).await;
    assert_eq!(
        (bad.status, bad.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    let svc = s.post(SVCS, lb_service("1web")).await;
    assert_eq!(svc.status, 422, "Service names are DNS-1035 labels");
    let ns = s.post("/api/v1/namespaces/nope/configmaps", cm("x")).await;
    assert_eq!(ns.status, 404);
    let mismatch = s
        .post(
            CMS,
            json!({"metadata": {"name": "x", "namespace": "kube-system"}}),
        )
        .await;
    assert_eq!(mismatch.status, 400);
    let kind = s
        .post(CMS, json!({"kind": "Secret", "metadata": {"name": "x"}}))
        .await;
    assert_eq!(kind.status, 400);
    let generated = s
        .post(CMS, json!({"metadata": {"generateName": "gen-"}}))
        .await;
    assert_eq!(generated.status, 201);
    let name = generated.body["metadata"]["name"].as_str().unwrap();
    assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
}

#[tokio::test]
async fn optimistic_concurrency_and_no_op_writes() {
    let s = start().await;
    let created = s.post(CMS, cm("occ")).await.body;
    let path = format!("{CMS}/occ");
    let mut v1 = created.clone();
    v1["data"]["k"] = json!("v2");
    let updated = s.put(&path, v1).await;
    assert_eq!(updated.status, 200);
    assert!(rv(&updated.body) > rv(&created));
    // The stale RV from the create is a conflict.
    let mut stale = created.clone();
    stale["data"]["k"] = json!("v3");
    let r = s.put(&path, stale).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    // A write that changes nothing keeps the RV.
    let again = s.put(&path, updated.body.clone()).await;
    assert_eq!(rv(&again.body), rv(&updated.body));
    // Unconditional PUT works for most kinds...
    let mut unconditional = updated.body.clone();
    unconditional["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("resourceVersion");
    unconditional["data"]["k"] = json!("v4");
    assert_eq!(s.put(&path, unconditional).await.status, 200);
    // ...but not for Leases.
    let leases = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases";
    let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease", "metadata": {"name": "l"}, "spec": {"holderIdentity": "a", "leaseDurationSeconds": 15}});
    assert_eq!(s.post(leases, lease.clone()).await.status, 201);
    let r = s.put(&format!("{leases}/l"), lease).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("must be specified for an update")
    );
    // PUT on a missing Node is 404 (no create on update); on a missing Lease it creates.
    assert_eq!(
        s.put("/api/v1/nodes/ghost", node("ghost")).await.status,
        404
    );
    let new_lease = json!({"metadata": {"name": "fresh"}, "spec": {"holderIdentity": "b"}});
    assert_eq!(
        s.put(&format!("{leases}/fresh"), new_lease).await.status,
        201
    );
}

#[tokio::test]
async fn status_is_split_from_the_main_resource() {
    let s = start().await;
    let created = s.post(SVCS, lb_service("web")).await;
    assert_eq!(created.status, 201);
    assert!(created.body.get("status").is_none_or(|st| {
        st.get("loadBalancer")
            .is_none_or(|l| l.get("ingress").is_none())
    }));
    // Main PUT with a status: the status is dropped.
    let mut with_status = created.body.clone();
    with_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "127.64.1.2"}]}});
    let r = s.put(&format!("{SVCS}/web"), with_status.clone()).await;
    assert_eq!(r.status, 200);
    assert!(
        r.body["status"]["loadBalancer"]["ingress"].is_null(),
        "{}",
        r.body
    );
    // /status PUT with a spec change: the spec change is dropped, the status lands, ipMode defaulted.
    let mut via_status = r.body.clone();
    via_status["status"] = json!({"loadBalancer": {"ingress": [{"ip": "127.64.1.2"}]}});
    via_status["spec"]["ports"][0]["port"] = json!(8080);
    let r = s.put(&format!("{SVCS}/web/status"), via_status).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["spec"]["ports"][0]["port"], 80);
    assert_eq!(
        r.body["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "127.64.1.2", "ipMode": "VIP"}])
    );
    // Merge patch on /status too.
    let r = s.patch(&format!("{SVCS}/web/status"), "merge", json!({"status": {"loadBalancer": {"ingress": [{"ip": "127.64.2.2", "ipMode": "Proxy"}]}}})).await;
    assert_eq!(
        r.body["status"]["loadBalancer"]["ingress"],
        json!([{"ip": "127.64.2.2", "ipMode": "Proxy"}])
    );
    // Metadata written through /status persists (the service controller adds its finalizer there).
    let r = s
        .patch(
            &format!("{SVCS}/web/status"),
            "strategic",
            json!({"metadata": {"finalizers": ["service.kubernetes.io/load-balancer-cleanup"]}, "spec": {"type": "ClusterIP"}}),
        )
        .await;
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["service.kubernetes.io/load-balancer-cleanup"])
    );
    assert_eq!(r.body["spec"]["type"], "LoadBalancer");
    // No status subresource on ConfigMaps.
    assert_eq!(
        s.get("/api/v1/namespaces/default/configmaps/x/status")
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn services_are_defaulted_and_allocated() {
    let s = start().await;
    let mut svc = lb_service("alloc");
    svc["spec"]["externalTrafficPolicy"] = json!("Local");
    let r = s.post(SVCS, svc).await;
    assert_eq!(r.status, 201, "{}", r.body);
    let spec = &r.body["spec"];
    assert!(spec["clusterIP"].as_str().unwrap().starts_with("10.96."));
    let np = spec["ports"][0]["nodePort"].as_u64().unwrap();
    assert!((30000..=32767).contains(&np));
    assert_eq!(spec["ports"][0]["protocol"], "TCP");
    assert_eq!(spec["ports"][0]["targetPort"], 80);
    assert!(spec["healthCheckNodePort"].as_u64().is_some());
    assert_eq!(spec["allocateLoadBalancerNodePorts"], true);
    // A second Service never gets the same node port or cluster IP.
    let r2 = s.post(SVCS, lb_service("alloc2")).await;
    assert_ne!(
        r2.body["spec"]["ports"][0]["nodePort"],
        spec["ports"][0]["nodePort"]
    );
    assert_ne!(r2.body["spec"]["clusterIP"], spec["clusterIP"]);
    // Requesting a taken node port is a 422.
    let mut taken = lb_service("alloc3");
    taken["spec"]["ports"][0]["nodePort"] = json!(np);
    assert_eq!(s.post(SVCS, taken).await.status, 422);
    // The cluster IP is immutable; a PUT that omits it keeps it.
    let mut changed = r.body.clone();
    changed["spec"]["clusterIP"] = json!("10.96.9.9");
    changed["spec"]["clusterIPs"] = json!(["10.96.9.9"]);
    assert_eq!(s.put(&format!("{SVCS}/alloc"), changed).await.status, 422);
    let mut omitted = r.body.clone();
    omitted["spec"].as_object_mut().unwrap().remove("clusterIP");
    omitted["spec"]
        .as_object_mut()
        .unwrap()
        .remove("clusterIPs");
    let kept = s.put(&format!("{SVCS}/alloc"), omitted).await;
    assert_eq!(kept.body["spec"]["clusterIP"], spec["clusterIP"]);
    // Switching to ClusterIP releases node ports.
    let r = s
        .patch(
            &format!("{SVCS}/alloc"),
            "merge",
            json!({"spec": {"type": "ClusterIP"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body["spec"]["ports"][0].get("nodePort").is_none());
    assert!(r.body["spec"].get("healthCheckNodePort").is_none());
}

#[tokio::test]
async fn node_provider_id_and_pod_cidr_are_set_once() {
    let s = start().await;
    assert_eq!(s.post("/api/v1/nodes", node("n1")).await.status, 201);
    let r = s.patch("/api/v1/nodes/n1", "merge", json!({"spec": {"providerID": "simcloud://zone-a/i-0000000000000001", "podCIDR": "10.244.1.0/24", "podCIDRs": ["10.244.1.0/24"]}})).await;
    assert_eq!(r.status, 200);
    let r = s
        .patch(
            "/api/v1/nodes/n1",
            "merge",
            json!({"spec": {"providerID": "simcloud://zone-b/i-0000000000000002"}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (422, Some("Invalid"))
    );
    assert!(r.body["message"].as_str().unwrap().contains("providerID"));
    let r = s
        .patch(
            "/api/v1/nodes/n1",
            "merge",
            json!({"spec": {"podCIDRs": ["10.244.2.0/24"]}}),
        )
        .await;
    assert_eq!(r.status, 422);
    // Node status survives main writes; node creates keep the status they were given.
    let got = s.get("/api/v1/nodes/n1").await.body;
    assert_eq!(got["status"]["conditions"][0]["type"], "Ready");
}

#[tokio::test]
async fn finalizers_hold_deletion_until_removed() {
    let s = start().await;
    let mut obj = cm("fin");
    obj["metadata"]["finalizers"] = json!(["example.com/cleanup"]);
    s.post(CMS, obj).await;
    let path = format!("{CMS}/fin");
    let r = s
        .delete(&path, json!({"propagationPolicy": "Background"}))
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.body["kind"], "ConfigMap");
    assert!(r.body["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(r.body["metadata"]["deletionGracePeriodSeconds"], 0);
    // A repeated delete changes nothing.
    let again = s.delete(&path, json!({})).await;
    assert_eq!(rv(&again.body), rv(&r.body));
    // No new finalizers while deleting.
    let r2 = s
        .patch(
            &path,
            "merge",
            json!({"metadata": {"finalizers": ["example.com/cleanup", "other"]}}),
        )
        .await;
    assert_eq!(r2.status, 422);
    // Removing the last finalizer deletes.
    let r3 = s.patch(&path, "json", json!([{"op": "test", "path": "/metadata/finalizers/0", "value": "example.com/cleanup"}, {"op": "remove", "path": "/metadata/finalizers/0"}])).await;
    assert_eq!(r3.status, 200);
    assert_eq!(s.get(&path).await.status, 404);
}

#[tokio::test]
async fn delete_answers_per_kind_and_checks_preconditions() {
    let s = start().await;
    s.post("/api/v1/nodes", node("gone")).await;
    let created = s.get("/api/v1/nodes/gone").await.body;
    let r = s
        .delete(
            "/api/v1/nodes/gone",
            json!({"preconditions": {"uid": "wrong"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = s
        .delete(
            "/api/v1/nodes/gone",
            json!({"preconditions": {"resourceVersion": "1"}}),
        )
        .await;
    assert_eq!(r.status, 409);
    let r = s
        .delete(
            "/api/v1/nodes/gone",
            json!({"preconditions": {"uid": created["metadata"]["uid"]}}),
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(
        (r.body["kind"].as_str(), r.body["status"].as_str()),
        (Some("Status"), Some("Success"))
    );
    assert_eq!(r.body["details"]["name"], "gone");
    assert_eq!(s.delete("/api/v1/nodes/gone", json!({})).await.status, 404);
    // Services answer with the deleted object.
    s.post(SVCS, lb_service("svc")).await;
    let r = s.delete(&format!("{SVCS}/svc"), json!({})).await;
    assert_eq!(r.body["kind"], "Service");
    // kube-rs sends no body at all on delete_collection and `{}` on delete.
    let r = s
        .send(
            Method::DELETE,
            "/api/v1/namespaces/default/configmaps",
            "",
            None,
        )
        .await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn patches_follow_the_real_list_semantics() {
    let s = start().await;
    let mut n = node("p1");
    n["spec"]["taints"] =
        json!([{"key": "a", "effect": "NoSchedule"}, {"key": "b", "effect": "NoSchedule"}]);
    n["metadata"]["finalizers"] = json!(["x"]);
    s.post("/api/v1/nodes", n).await;
    let r = s.patch("/api/v1/nodes/p1", "strategic", json!({"metadata": {"finalizers": ["y"]}, "spec": {"taints": [{"key": "b", "effect": "NoSchedule"}]}})).await;
    assert_eq!(r.status, 200);
    assert_eq!(
        r.body["spec"]["taints"],
        json!([{"key": "b", "effect": "NoSchedule"}]),
        "taints are atomic"
    );
    assert_eq!(
        r.body["metadata"]["finalizers"],
        json!(["x", "y"]),
        "finalizers are a set"
    );
    let r = s
        .patch(
            "/api/v1/nodes/p1/status",
            "strategic",
            json!({"status": {"conditions": [{"type": "NetworkUnavailable", "status": "False"}]}}),
        )
        .await;
    let types: Vec<_> = r.body["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["type"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        types,
        ["Ready", "NetworkUnavailable"],
        "conditions merge on type"
    );
    // Merge patch replaces lists.
    let r = s
        .patch(
            "/api/v1/nodes/p1",
            "merge",
            json!({"metadata": {"finalizers": ["z"]}}),
        )
        .await;
    assert_eq!(r.body["metadata"]["finalizers"], json!(["z"]));
    // A failed JSON-patch test is a 422.
    let r = s
        .patch(
            "/api/v1/nodes/p1",
            "json",
            json!([{"op": "test", "path": "/metadata/finalizers", "value": null}]),
        )
        .await;
    assert_eq!(r.status, 422);
    // A resourceVersion inside a patch is a precondition.
    let r = s
        .patch(
            "/api/v1/nodes/p1",
            "strategic",
            json!({"metadata": {"resourceVersion": "1", "labels": {"a": "b"}}}),
        )
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (409, Some("Conflict"))
    );
    let current = s.get("/api/v1/nodes/p1").await.body;
    let r = s.patch("/api/v1/nodes/p1", "strategic", json!({"metadata": {"resourceVersion": current["metadata"]["resourceVersion"], "labels": {"a": "b"}}})).await;
    assert_eq!(r.status, 200);
    // Service ports merge on port.
    let mut svc = lb_service("ports");
    svc["spec"]["ports"] = json!([{"name": "http", "port": 80}, {"name": "https", "port": 443}]);
    s.post(SVCS, svc).await;
    let r = s
        .patch(
            &format!("{SVCS}/ports"),
            "strategic",
            json!({"spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]}}),
        )
        .await;
    let ports = r.body["spec"]["ports"].as_array().unwrap();
    assert_eq!(ports.len(), 2);
    assert_eq!(ports[0]["targetPort"], 8080);
    assert!(
        ports[0]["nodePort"].is_number(),
        "allocated node port survives"
    );
    // Unsupported patch types; an apply needs its field manager.
    assert_eq!(
        s.patch(
            "/api/v1/nodes/p1",
            "application/apply-patch+cbor",
            json!({})
        )
        .await
        .status,
        415
    );
    assert_eq!(
        s.patch(
            "/api/v1/nodes/p1",
            "application/apply-patch+yaml",
            json!({"apiVersion": "v1", "kind": "Node"})
        )
        .await
        .status,
        422
    );
    assert_eq!(
        s.patch("/api/v1/nodes/missing", "merge", json!({}))
            .await
            .status,
        404
    );
}

#[tokio::test]
async fn endpointslices_keep_a_generation() {
    let s = start().await;
    let path = "/apis/discovery.k8s.io/v1/namespaces/default/endpointslices";
    let es = json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice", "metadata": {"name": "web-1", "labels": {"kubernetes.io/service-name": "web"}}, "addressType": "IPv4", "endpoints": [], "ports": []});
    let r = s.post(path, es).await;
    assert_eq!(r.body["metadata"]["generation"], 1);
    let r = s
        .patch(
            &format!("{path}/web-1"),
            "merge",
            json!({"metadata": {"annotations": {"a": "b"}}}),
        )
        .await;
    assert_eq!(
        r.body["metadata"]["generation"], 1,
        "metadata changes keep the generation"
    );
    let r = s
        .patch(
            &format!("{path}/web-1"),
            "merge",
            json!({"endpoints": [{"addresses": ["10.244.1.5"], "zone": "zone-a"}]}),
        )
        .await;
    assert_eq!(r.body["metadata"]["generation"], 2);
    let r = s
        .patch(
            &format!("{path}/web-1"),
            "merge",
            json!({"metadata": {"labels": {"x": "y"}}}),
        )
        .await;
    assert_eq!(r.body["metadata"]["generation"], 3, "label changes bump it");
    // Services have none.
    s.post(SVCS, lb_service("gen")).await;
    let r = s
        .patch(
            &format!("{SVCS}/gen"),
            "merge",
            json!({"spec": {"sessionAffinity": "ClientIP"}}),
        )
        .await;
    assert!(r.body["metadata"].get("generation").is_none());
}

#[tokio::test]
async fn selectors_filter_and_unknown_fields_are_rejected() {
    let s = start().await;
    for (name, app) in [("a", "web"), ("b", "db"), ("c", "web")] {
        let mut o = cm(name);
        o["metadata"]["labels"] = json!({"app": app});
        s.post(CMS, o).await;
    }
    let names = |r: &crate::common::Resp| {
        r.body["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_owned())
            .collect::<Vec<_>>()
    };
    assert_eq!(
        names(&s.get(&format!("{CMS}?labelSelector=app%3Dweb")).await),
        ["a", "c"]
    );
    assert_eq!(
        names(&s.get(&format!("{CMS}?labelSelector=app+in+%28db%29")).await),
        ["b"]
    );
    assert_eq!(
        names(
            &s.get(&format!("{CMS}?fieldSelector=metadata.name%21%3Da"))
                .await
        ),
        ["b", "c"]
    );
    let r = s.get(&format!("{CMS}?fieldSelector=data.k%3Dv")).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("field label not supported")
    );
    // Node and Service specific fields.
    s.post("/api/v1/nodes", node("sel")).await;
    assert_eq!(
        names(
            &s.get("/api/v1/nodes?fieldSelector=spec.unschedulable%3Dfalse")
                .await
        ),
        ["sel"]
    );
    s.post(SVCS, lb_service("lb")).await;
    assert_eq!(
        names(
            &s.get("/api/v1/services?fieldSelector=spec.type%3DLoadBalancer")
                .await
        ),
        ["lb"]
    );
}

#[tokio::test]
async fn events_are_one_storage_in_two_apis() {
    let s = start().await;
    let ev = json!({"apiVersion": "events.k8s.io/v1", "kind": "Event", "metadata": {"name": "n1.1234", "namespace": "default"},
        "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Synced", "action": "Sync", "note": "Node synced successfully",
        "reportingController": "cloud-node-controller", "reportingInstance": "ccm-1", "regarding": {"kind": "Node", "name": "n1", "apiVersion": "v1"}});
    let r = s
        .post(
            "/apis/events.k8s.io/v1/namespaces/default/events",
            ev.clone(),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["note"], "Node synced successfully");
    let core = s.get("/api/v1/namespaces/default/events").await;
    let item = &core.body["items"][0];
    assert_eq!(item["message"], "Node synced successfully");
    assert_eq!(item["involvedObject"]["name"], "n1");
    assert_eq!(item["reason"], "Synced");
    let sel = s.get("/api/v1/namespaces/default/events?fieldSelector=involvedObject.name%3Dn1,reason%3DSynced").await;
    assert_eq!(sel.body["items"].as_array().unwrap().len(), 1);
    // The Recorder's follow-up merge patch with a series.
    let r = s
        .patch(
            "/apis/events.k8s.io/v1/namespaces/default/events/n1.1234",
            "merge",
            json!({"series": {"count": 2, "lastObservedTime": "2026-01-01T00:00:05.000000Z"}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(
        s.get("/api/v1/namespaces/default/events/n1.1234")
            .await
            .body["count"],
        2
    );
    // events.k8s.io validation.
    let mut bad = ev.clone();
    bad["metadata"]["name"] = json!("n1.5678");
    bad["type"] = json!("Info");
    assert_eq!(
        s.post("/apis/events.k8s.io/v1/namespaces/default/events", bad)
            .await
            .status,
        422
    );
}

#[tokio::test]
async fn discovery_version_and_unsupported_requests() {
    let s = start().await;
    let api = s.get("/api").await.body;
    assert_eq!(api["versions"], json!(["v1"]));
    let groups = s.get("/apis").await.body;
    let names: Vec<_> = groups["groups"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"coordination.k8s.io")
            && names.contains(&"discovery.k8s.io")
            && names.contains(&"events.k8s.io")
    );
    let v1 = s.get("/api/v1").await.body;
    let nodes = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "nodes")
        .unwrap()
        .clone();
    assert_eq!(nodes["shortNames"], json!(["no"]));
    assert_eq!(nodes["namespaced"], false);
    assert!(
        v1["resources"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["name"] == "services/status")
    );
    assert_eq!(
        s.get("/apis/coordination.k8s.io/v1").await.body["resources"][0]["kind"],
        "Lease"
    );
    let version = s.get("/version").await.body;
    for f in [
        "major",
        "minor",
        "gitVersion",
        "gitCommit",
        "gitTreeState",
        "buildDate",
        "goVersion",
        "compiler",
        "platform",
    ] {
        assert!(version[f].is_string(), "{f}");
    }
    let r = s
        .send(
            Method::POST,
            "/api/v1/namespaces",
            "application/cbor",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (415, Some("UnsupportedMediaType"))
    );
    // Protobuf is decoded; a body that is not protobuf is a bad request.
    let r = s
        .send(
            Method::POST,
            "/api/v1/namespaces",
            "application/vnd.kubernetes.protobuf",
            Some(json!({})),
        )
        .await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (400, Some("BadRequest"))
    );
    let v2 = s.get("/openapi/v2").await;
    assert_eq!(v2.status, 200);
    assert_eq!(v2.body["swagger"], "2.0");
    assert_eq!(
        v2.body["definitions"]["io.k8s.api.apps.v1.Deployment"]["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let index = s.get("/openapi/v3").await;
    assert_eq!(index.status, 200);
    let apps = index.body["paths"]["apis/apps/v1"]["serverRelativeURL"]
        .as_str()
        .unwrap()
        .to_owned();
    let doc = s.get(&apps).await;
    assert_eq!(doc.status, 200);
    assert!(
        doc.body["components"]["schemas"]["io.k8s.api.apps.v1.Deployment"].is_object(),
        "{apps}"
    );
    assert_eq!(s.get("/openapi/v3/apis/batch/v1").await.status, 404);
    assert_eq!(s.get("/api/v1/namespaces/default/nodes").await.status, 404);
    assert_eq!(s.get("/healthz").await.status, 200);
}

#[tokio::test]
async fn injected_faults_answer_with_status_and_retry_after() {
    let s = start().await;
    let r = s.post("/kube-sim/faults", json!({"method": "GET", "path_contains": "/services", "status": 429, "retry_after_seconds": 1, "count": 1})).await;
    assert_eq!(r.status, 201);
    let r = s.get("/api/v1/services").await;
    assert_eq!(r.status, 429);
    assert_eq!(r.headers["retry-after"], "1");
    assert_eq!(r.body["kind"], "Status");
    assert_eq!(
        s.get("/api/v1/services").await.status,
        200,
        "the rule ran out"
    );
}

#[tokio::test]
async fn namespaces_hold_their_objects() {
    let s = start().await;
    assert_eq!(
        s.post("/api/v1/namespaces", json!({"metadata": {"name": "team"}}))
            .await
            .status,
        201
    );
    assert_eq!(
        s.post("/api/v1/namespaces/team/configmaps", cm("c"))
            .await
            .status,
        201
    );
    assert_eq!(
        s.get("/api/v1/namespaces/team").await.body["status"]["phase"],
        "Active"
    );
    assert_eq!(
        s.delete("/api/v1/namespaces/team", json!({})).await.status,
        200
    );
    assert_eq!(
        s.get("/api/v1/namespaces/team/configmaps/c").await.status,
        404
    );
    assert_eq!(
        s.delete("/api/v1/namespaces/default", json!({}))
            .await
            .status,
        403
    );
}

#[tokio::test]
async fn requests_are_recorded_in_rbac_terms_per_user_agent() {
    let s = start().await;
    let as_agent = |method: Method, path: &str| {
        s.http
            .request(method, s.url(path))
            .header("user-agent", "tester/1")
    };
    let node = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "n1"}});
    let created = as_agent(Method::POST, "/api/v1/nodes")
        .header("content-type", "application/json")
        .body(node.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(created.status().as_u16(), 201);
    as_agent(Method::GET, "/api/v1/nodes").send().await.unwrap();
    as_agent(Method::PATCH, "/api/v1/nodes/n1/status")
        .header("content-type", "application/merge-patch+json")
        .body(r#"{"status":{"phase":"Running"}}"#)
        .send()
        .await
        .unwrap();
    as_agent(
        Method::GET,
        "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases?watch=true&timeoutSeconds=1",
    )
    .send()
    .await
    .unwrap();
    let seen = s.get("/kube-sim/requests").await.body;
    let mine: Vec<(&str, &str, &str)> = seen
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["userAgent"] == "tester/1")
        .map(|r| {
            (
                r["verb"].as_str().unwrap(),
                r["apiGroup"].as_str().unwrap(),
                r["resource"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mine,
        [
            ("create", "", "nodes"),
            ("list", "", "nodes"),
            ("patch", "", "nodes/status"),
            ("watch", "coordination.k8s.io", "leases"),
        ]
    );
}

/// A new kube-sim has what a new cluster has: the system namespaces, and the `kubernetes`
/// Service with an EndpointSlice pointing at the API server's own address.
#[tokio::test]
async fn a_new_server_has_the_system_namespaces_and_its_own_service() {
    let s = start().await;
    let names = s.get("/api/v1/namespaces").await.body["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["metadata"]["name"].as_str().unwrap().to_owned())
        .collect::<Vec<_>>();
    for ns in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(names.contains(&ns.to_owned()), "{names:?}");
    }
    let url: http::Uri = s.url("/").parse().unwrap();
    let (host, port) = (url.host().unwrap(), url.port_u16().unwrap());
    let svc = s
        .get("/api/v1/namespaces/default/services/kubernetes")
        .await
        .body;
    assert_eq!(svc["spec"]["clusterIP"], "10.96.0.1");
    assert_eq!(svc["spec"]["ports"][0]["port"], 443);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], port);
    // A loopback address cannot be an endpoint: kube-apiserver advertising 127.0.0.1 has no
    // slice for its own Service either.
    assert!(url.host().unwrap().starts_with("127."), "{host}");
    let slice = s
        .get("/apis/discovery.k8s.io/v1/namespaces/default/endpointslices/kubernetes")
        .await;
    assert_eq!(slice.status, 404, "{}", slice.body);
}

#[tokio::test]
async fn binding_assigns_an_unassigned_pod_once() {
    let s = start().await;
    let pods = "/api/v1/namespaces/default/pods";
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "i"}]}});
    assert_eq!(s.post(pods, pod).await.status, 201);
    let bind = |node: &str| {
        json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "p"},
            "target": {"apiVersion": "v1", "kind": "Node", "name": node}})
    };
    let r = s.post(&format!("{pods}/p/binding"), bind("n1")).await;
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["status"], "Success");
    let p = s.get(&format!("{pods}/p")).await.body;
    assert_eq!(p["spec"]["nodeName"], "n1");
    let scheduled = p["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(scheduled["status"], "True");
    // A second binding is a conflict, and the first stands.
    let r = s.post(&format!("{pods}/p/binding"), bind("n2")).await;
    assert_eq!(r.status, 409, "{}", r.body);
    assert!(
        r.body["message"]
            .as_str()
            .unwrap()
            .contains("is already assigned to node \"n1\""),
        "{}",
        r.body
    );
    assert_eq!(
        s.get(&format!("{pods}/p")).await.body["spec"]["nodeName"],
        "n1"
    );
    // Only pods have it, and only create.
    assert_eq!(
        s.post(
            "/api/v1/namespaces/default/configmaps/x/binding",
            bind("n1")
        )
        .await
        .status,
        404
    );
}

#[tokio::test]
async fn status_writes_leave_the_generation_alone() {
    let s = start().await;
    let deps = "/apis/apps/v1/namespaces/default/deployments";
    let d = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
        "spec": {"replicas": 1, "selector": {"matchLabels": {"a": "b"}},
            "template": {"metadata": {"labels": {"a": "b"}}, "spec": {"containers": [{"name": "c", "image": "i"}]}}}});
    assert_eq!(s.post(deps, d).await.status, 201);
    let r = s
        .patch(
            &format!("{deps}/d/status"),
            "merge",
            json!({"status": {"replicas": 1, "observedGeneration": 1}}),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.body);
    assert_eq!(r.body["metadata"]["generation"], 1);
    let r = s
        .patch(
            &format!("{deps}/d"),
            "merge",
            json!({"spec": {"replicas": 2}}),
        )
        .await;
    assert_eq!(r.body["metadata"]["generation"], 2);
}
