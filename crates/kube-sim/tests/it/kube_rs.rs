//! kube-sim driven by the kube client and kube-runtime, the way the ccm will drive it.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Node, Service};
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::runtime::controller::Action;
use kube::runtime::finalizer::{Event as FinalizerEvent, finalizer};
use kube::runtime::watcher::{self, Event};
use serde_json::json;

use crate::common::start;

fn client(url: &str) -> kube::Client {
    let config = kube::Config::new(url.parse().unwrap());
    kube::Client::try_from(config).unwrap()
}

fn cm(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}})).unwrap()
}

const T: Duration = Duration::from_secs(20);

#[tokio::test]
async fn watcher_relists_after_an_in_stream_410() {
    let s = start().await;
    let c = client(&s.server.url());
    let api: Api<ConfigMap> = Api::namespaced(c, "default");
    api.create(&PostParams::default(), &cm("before"))
        .await
        .unwrap();
    let mut stream = watcher::watcher(api.clone(), watcher::Config::default()).boxed();
    // Initial list: Init, InitApply(before), InitDone.
    let mut inits = 0;
    loop {
        match tokio::time::timeout(T, stream.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap()
        {
            Event::Init => inits += 1,
            Event::InitApply(o) => assert_eq!(o.metadata.name.as_deref(), Some("before")),
            Event::InitDone => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(inits, 1);
    // Make sure the watch is open, then expire it inside the stream.
    api.create(&PostParams::default(), &cm("during"))
        .await
        .unwrap();
    match tokio::time::timeout(T, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Event::Apply(o) => assert_eq!(o.metadata.name.as_deref(), Some("during")),
        other => panic!("unexpected {other:?}"),
    }
    assert!(
        s.server
            .faults()
            .control_watches(kube_sim::watch::WatchControl::Expire)
            >= 1
    );
    // The watcher reports the 410, then goes back to a full relist, which has both objects.
    let mut relisted = Vec::new();
    let mut saw_expired = false;
    loop {
        match tokio::time::timeout(T, stream.next()).await.unwrap() {
            Some(Ok(Event::Init)) => relisted.clear(),
            Some(Ok(Event::InitApply(o))) => relisted.push(o.metadata.name.unwrap()),
            Some(Ok(Event::InitDone)) => break,
            Some(Ok(other)) => panic!("unexpected {other:?}"),
            Some(Err(watcher::Error::WatchError(s))) if s.code == 410 => saw_expired = true,
            Some(Err(e)) => panic!("watcher error {e}"),
            None => panic!("watcher ended"),
        }
    }
    assert!(saw_expired);
    assert_eq!(relisted, ["before", "during"]);
    api.create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();
    match tokio::time::timeout(T, stream.next())
        .await
        .unwrap()
        .unwrap()
        .unwrap()
    {
        Event::Apply(o) => assert_eq!(o.metadata.name.as_deref(), Some("after")),
        other => panic!("unexpected {other:?}"),
    }
}

#[tokio::test]
async fn finalizer_helper_runs_its_full_cycle() {
    let s = start().await;
    let api: Api<ConfigMap> = Api::namespaced(client(&s.server.url()), "default");
    api.create(&PostParams::default(), &cm("guarded"))
        .await
        .unwrap();
    let cleaned = Arc::new(AtomicBool::new(false));
    let run = |obj: ConfigMap| {
        let api = api.clone();
        let cleaned = cleaned.clone();
        async move {
            finalizer(
                &api,
                "example.com/cleanup",
                Arc::new(obj),
                |ev| async move {
                    match ev {
                        FinalizerEvent::Apply(_) => {
                            Ok::<_, std::convert::Infallible>(Action::await_change())
                        }
                        FinalizerEvent::Cleanup(_) => {
                            cleaned.store(true, Ordering::SeqCst);
                            Ok(Action::await_change())
                        }
                    }
                },
            )
            .await
        }
    };
    // First pass adds the finalizer (JSON patch with a `test` on a null list).
    run(api.get("guarded").await.unwrap()).await.unwrap();
    assert_eq!(
        api.get("guarded").await.unwrap().metadata.finalizers,
        Some(vec!["example.com/cleanup".to_owned()])
    );
    // Second pass applies.
    run(api.get("guarded").await.unwrap()).await.unwrap();
    assert!(!cleaned.load(Ordering::SeqCst));
    // Delete: the object stays with a deletionTimestamp until cleanup removes the finalizer.
    api.delete("guarded", &DeleteParams::default())
        .await
        .unwrap();
    let deleting = api.get("guarded").await.unwrap();
    assert!(deleting.metadata.deletion_timestamp.is_some());
    run(deleting).await.unwrap();
    assert!(cleaned.load(Ordering::SeqCst));
    assert!(api.get_opt("guarded").await.unwrap().is_none());
}

#[tokio::test]
async fn patch_types_give_the_real_results() {
    let s = start().await;
    let nodes: Api<Node> = Api::all(client(&s.server.url()));
    let n: Node = serde_json::from_value(json!({"metadata": {"name": "n1", "labels": {"a": "1"}},
        "spec": {"taints": [{"key": "node.cloudprovider.kubernetes.io/uninitialized", "value": "true", "effect": "NoSchedule"}, {"key": "x", "effect": "NoSchedule"}]}}))
    .unwrap();
    nodes.create(&PostParams::default(), &n).await.unwrap();
    let pp = PatchParams::default();
    let merged = nodes
        .patch(
            "n1",
            &pp,
            &Patch::Merge(json!({"metadata": {"labels": {"b": "2"}}})),
        )
        .await
        .unwrap();
    assert_eq!(merged.metadata.labels.unwrap().len(), 2);
    let strategic = nodes
        .patch("n1", &pp, &Patch::Strategic(json!({"spec": {"providerID": "simcloud://zone-a/i-0000000000000001", "taints": [{"key": "x", "effect": "NoSchedule"}]}})))
        .await
        .unwrap();
    let taints = strategic.spec.unwrap().taints.unwrap();
    assert_eq!(
        taints.len(),
        1,
        "the uninitialized taint is removed by an atomic list"
    );
    let ops: json_patch::Patch = serde_json::from_value(
        json!([{"op": "add", "path": "/metadata/annotations", "value": {"c": "3"}}]),
    )
    .unwrap();
    let jp = nodes
        .patch("n1", &pp, &Patch::Json::<()>(ops))
        .await
        .unwrap();
    assert_eq!(jp.metadata.annotations.unwrap()["c"], "3");
    // Changing the provider ID is refused as on a real server.
    let err = nodes
        .patch(
            "n1",
            &pp,
            &Patch::Merge(json!({"spec": {"providerID": "other://x"}})),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (422, "Invalid")),
        e => panic!("{e}"),
    }
}

#[tokio::test]
async fn replace_conflicts_and_delete_responses() {
    let s = start().await;
    let c = client(&s.server.url());
    let cms: Api<ConfigMap> = Api::namespaced(c.clone(), "default");
    let created = cms.create(&PostParams::default(), &cm("r")).await.unwrap();
    let mut first = created.clone();
    first.data = Some([("k".to_owned(), "1".to_owned())].into());
    cms.replace("r", &PostParams::default(), &first)
        .await
        .unwrap();
    let mut stale = created;
    stale.data = Some([("k".to_owned(), "2".to_owned())].into());
    match cms
        .replace("r", &PostParams::default(), &stale)
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "Conflict")),
        e => panic!("{e}"),
    }
    match cms
        .create(&PostParams::default(), &cm("r"))
        .await
        .unwrap_err()
    {
        kube::Error::Api(s) => assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists")),
        e => panic!("{e}"),
    }
    // Services come back as the object, Nodes as a Status.
    let svcs: Api<Service> = Api::namespaced(c.clone(), "default");
    let svc: Service = serde_json::from_value(json!({"metadata": {"name": "web"}, "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}})).unwrap();
    let svc = svcs.create(&PostParams::default(), &svc).await.unwrap();
    assert!(
        svc.spec.as_ref().unwrap().ports.as_ref().unwrap()[0]
            .node_port
            .is_some()
    );
    assert!(
        svcs.delete("web", &DeleteParams::default())
            .await
            .unwrap()
            .is_left()
    );
    let nodes: Api<Node> = Api::all(c.clone());
    nodes
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "n"}})).unwrap(),
        )
        .await
        .unwrap();
    assert!(
        nodes
            .delete("n", &DeleteParams::default())
            .await
            .unwrap()
            .is_right()
    );
    assert!(nodes.get_opt("n").await.unwrap().is_none());
    let v = c.apiserver_version().await.unwrap();
    assert_eq!(v.major, "1");
}

/// kube-rs's `Patch::Apply`: created by the first apply, a conflict with another manager's
/// update is a 409 the client reports, and `force` takes the field over.
#[tokio::test]
async fn server_side_apply_with_kube_rs() {
    let s = start().await;
    let cms: Api<ConfigMap> = Api::namespaced(client(&s.url("")), "default");
    let mine = |v: &str| -> ConfigMap {
        serde_json::from_value(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "ssa"}, "data": {"k": v}}))
        .unwrap()
    };
    let created = cms
        .patch(
            "ssa",
            &PatchParams::apply("simcloud"),
            &Patch::Apply(mine("1")),
        )
        .await
        .unwrap();
    let owners = created.metadata.managed_fields.unwrap();
    assert_eq!(
        (owners[0].manager.as_deref(), owners[0].operation.as_deref()),
        (Some("simcloud"), Some("Apply"))
    );
    cms.patch(
        "ssa",
        &PatchParams {
            field_manager: Some("other".into()),
            ..PatchParams::default()
        },
        &Patch::Merge(json!({"data": {"k": "2"}})),
    )
    .await
    .unwrap();
    let err = cms
        .patch(
            "ssa",
            &PatchParams::apply("simcloud"),
            &Patch::Apply(mine("1")),
        )
        .await
        .unwrap_err();
    match err {
        kube::Error::Api(s) => {
            assert_eq!(s.code, 409);
            assert!(
                s.message.contains(r#"conflict with "other""#),
                "{}",
                s.message
            );
        }
        other => panic!("{other}"),
    }
    let forced = cms
        .patch(
            "ssa",
            &PatchParams::apply("simcloud").force(),
            &Patch::Apply(mine("1")),
        )
        .await
        .unwrap();
    assert_eq!(forced.data.unwrap()["k"], "1");
}
