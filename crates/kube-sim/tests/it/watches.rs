//! Watch semantics over plain HTTP.

use std::time::Duration;

use kube_sim::ServerConfig;
use serde_json::json;

use crate::common::{rv, start, start_with};

const CMS: &str = "/api/v1/namespaces/default/configmaps";
const T: Duration = Duration::from_secs(10);

fn cm(name: &str, v: &str) -> serde_json::Value {
    json!({"metadata": {"name": name, "labels": {"app": "web"}}, "data": {"v": v}})
}

#[tokio::test]
async fn watch_from_a_list_rv_replays_exactly_the_later_changes() {
    let s = start().await;
    s.post(CMS, cm("a", "1")).await;
    let list_rv = s.get(CMS).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    s.post(CMS, cm("b", "1")).await;
    s.patch(&format!("{CMS}/a"), "merge", json!({"data": {"v": "2"}}))
        .await;
    s.delete(&format!("{CMS}/b"), json!({})).await;
    let mut w = s
        .watch(&format!("{CMS}?watch=true&resourceVersion={list_rv}"))
        .await;
    let e1 = w.next(T).await.unwrap();
    assert_eq!(
        (
            e1["type"].as_str(),
            e1["object"]["metadata"]["name"].as_str()
        ),
        (Some("ADDED"), Some("b"))
    );
    assert_eq!(e1["object"]["kind"], "ConfigMap");
    assert_eq!(e1["object"]["apiVersion"], "v1");
    let e2 = w.next(T).await.unwrap();
    assert_eq!(
        (e2["type"].as_str(), e2["object"]["data"]["v"].as_str()),
        (Some("MODIFIED"), Some("2"))
    );
    let e3 = w.next(T).await.unwrap();
    assert_eq!(e3["type"], "DELETED");
    // The DELETED event carries the delete's resourceVersion, not the object's last one.
    assert!(rv(&e3["object"]) > rv(&e2["object"]));
    w.quiet_for(Duration::from_millis(200)).await;
    // Live events follow.
    s.post(CMS, cm("c", "1")).await;
    assert_eq!(w.next(T).await.unwrap()["object"]["metadata"]["name"], "c");
}

#[tokio::test]
async fn watch_without_rv_starts_with_the_current_state() {
    let s = start().await;
    s.post(CMS, cm("x", "1")).await;
    s.post(CMS, cm("y", "1")).await;
    let mut w = s.watch(&format!("{CMS}?watch=1")).await;
    let names: Vec<_> = [w.next(T).await.unwrap(), w.next(T).await.unwrap()]
        .iter()
        .map(|e| {
            (
                e["type"].as_str().unwrap().to_owned(),
                e["object"]["metadata"]["name"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        names,
        [
            ("ADDED".to_owned(), "x".to_owned()),
            ("ADDED".to_owned(), "y".to_owned())
        ]
    );
}

#[tokio::test]
async fn expired_rvs_get_410_inside_a_200_stream() {
    let s = start_with(ServerConfig {
        history: 2,
        ..ServerConfig::default()
    })
    .await;
    s.post(CMS, cm("a", "1")).await;
    let old = s.get(CMS).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    for v in 2..6 {
        s.patch(
            &format!("{CMS}/a"),
            "merge",
            json!({"data": {"v": v.to_string()}}),
        )
        .await;
    }
    let mut w = s
        .watch(&format!("{CMS}?watch=true&resourceVersion={old}"))
        .await;
    let e = w.next(T).await.unwrap();
    assert_eq!(e["type"], "ERROR");
    assert_eq!(e["object"]["kind"], "Status");
    assert_eq!(e["object"]["code"], 410);
    assert_eq!(e["object"]["reason"], "Expired");
    assert!(w.next(T).await.is_none(), "the stream ends after the error");
    // An expired continue token is a 410 as well.
    let s2 = start_with(ServerConfig {
        history: 1,
        ..ServerConfig::default()
    })
    .await;
    s2.post(CMS, cm("a", "1")).await;
    s2.post(CMS, cm("b", "1")).await;
    let page = s2.get(&format!("{CMS}?limit=1")).await.body;
    let token = page["metadata"]["continue"].as_str().unwrap().to_owned();
    // Two more writes push the list's resourceVersion out of the one-change history.
    s2.post(CMS, cm("c", "1")).await;
    s2.post(CMS, cm("d", "1")).await;
    let r = s2.get(&format!("{CMS}?limit=1&continue={token}")).await;
    assert_eq!(
        (r.status, r.body["reason"].as_str()),
        (410, Some("Expired"))
    );
}

#[tokio::test]
async fn selector_transitions_become_added_and_deleted() {
    let s = start().await;
    s.post(CMS, cm("t", "1")).await;
    let start_rv = s.get(CMS).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut w = s
        .watch(&format!(
            "{CMS}?watch=true&labelSelector=app%3Dweb&resourceVersion={start_rv}"
        ))
        .await;
    s.patch(
        &format!("{CMS}/t"),
        "merge",
        json!({"metadata": {"labels": {"app": "db"}}}),
    )
    .await;
    let e = w.next(T).await.unwrap();
    assert_eq!(e["type"], "DELETED", "leaving the selection is a DELETED");
    assert_eq!(
        e["object"]["metadata"]["labels"]["app"], "web",
        "with the last matching content"
    );
    s.patch(&format!("{CMS}/t"), "merge", json!({"data": {"v": "2"}}))
        .await;
    s.patch(
        &format!("{CMS}/t"),
        "merge",
        json!({"metadata": {"labels": {"app": "web"}}}),
    )
    .await;
    let e = w.next(T).await.unwrap();
    assert_eq!(e["type"], "ADDED", "entering the selection is an ADDED");
    assert_eq!(e["object"]["data"]["v"], "2");
}

#[tokio::test]
async fn bookmarks_only_when_asked_and_timeouts_end_the_stream() {
    let s = start_with(ServerConfig {
        bookmark_every: Duration::from_millis(100),
        ..ServerConfig::default()
    })
    .await;
    s.post(CMS, cm("a", "1")).await;
    let now = s.get(CMS).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut with = s.watch(&format!("/api/v1/nodes?watch=true&allowWatchBookmarks=true&resourceVersion={now}&timeoutSeconds=5")).await;
    let b = with.next(T).await.unwrap();
    assert_eq!(b["type"], "BOOKMARK");
    assert_eq!(b["object"]["kind"], "Node");
    assert_eq!(b["object"]["apiVersion"], "v1");
    assert_eq!(b["object"]["metadata"]["resourceVersion"], now);
    let mut without = s
        .watch(&format!(
            "/api/v1/nodes?watch=true&resourceVersion={now}&timeoutSeconds=1"
        ))
        .await;
    // No bookmarks, and the stream closes cleanly at its timeout.
    assert!(without.next(T).await.is_none());
}

#[tokio::test]
async fn no_op_writes_emit_no_events() {
    let s = start().await;
    let created = s.post(CMS, cm("same", "1")).await.body;
    let mut w = s
        .watch(&format!(
            "{CMS}?watch=true&resourceVersion={}",
            rv(&created)
        ))
        .await;
    let r = s
        .patch(&format!("{CMS}/same"), "merge", json!({"data": {"v": "1"}}))
        .await;
    assert_eq!(rv(&r.body), rv(&created));
    w.quiet_for(Duration::from_millis(300)).await;
}

#[tokio::test]
async fn finalizer_removal_emits_deleted() {
    let s = start().await;
    let mut o = cm("f", "1");
    o["metadata"]["finalizers"] = json!(["x/y"]);
    let created = s.post(CMS, o).await.body;
    let mut w = s
        .watch(&format!(
            "{CMS}?watch=true&resourceVersion={}",
            rv(&created)
        ))
        .await;
    s.delete(&format!("{CMS}/f"), json!({})).await;
    let e = w.next(T).await.unwrap();
    assert_eq!(e["type"], "MODIFIED");
    assert!(e["object"]["metadata"]["deletionTimestamp"].is_string());
    s.patch(
        &format!("{CMS}/f"),
        "merge",
        json!({"metadata": {"finalizers": null}}),
    )
    .await;
    let e = w.next(T).await.unwrap();
    assert_eq!(e["type"], "DELETED");
}

#[tokio::test]
async fn injected_watch_faults() {
    let s = start().await;
    let now = s.get(CMS).await.body["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_owned();
    let mut w1 = s
        .watch(&format!("{CMS}?watch=true&resourceVersion={now}"))
        .await;
    let mut w2 = s
        .watch(&format!("/api/v1/nodes?watch=true&resourceVersion={now}"))
        .await;
    // A watch subscribes to the controls before its response starts, so both are reached.
    assert_eq!(
        s.post("/kube-sim/watches/expire", json!({})).await.body["watches"],
        2
    );
    let e = w1.next(T).await.unwrap();
    assert_eq!(
        (e["type"].as_str(), e["object"]["code"].as_u64()),
        (Some("ERROR"), Some(410))
    );
    assert_eq!(w2.next(T).await.unwrap()["type"], "ERROR");
    let mut w3 = s
        .watch(&format!("{CMS}?watch=true&resourceVersion={now}"))
        .await;
    assert!(s.post("/kube-sim/watches/cut", json!({})).await.body["watches"].as_u64() >= Some(1));
    assert!(w3.next(T).await.is_none());
}

/// A watch with no selector sends the stored text as it is; one with a selector parses it. Both
/// must send the same objects, and each the object a GET returns (in both Event APIs).
#[tokio::test]
async fn plain_and_selecting_watches_send_what_a_get_returns() {
    let s = start().await;
    const EVENTS: &str = "/apis/events.k8s.io/v1/namespaces/default/events";
    const CORE_EVENTS: &str = "/api/v1/namespaces/default/events";
    let from = rv(&s.get(CMS).await.body);
    s.post(CMS, cm("a", "1")).await;
    s.patch(&format!("{CMS}/a"), "merge", json!({"data": {"v": "2"}}))
        .await;
    let ev = json!({"metadata": {"name": "n1.1", "labels": {"app": "web"}},
        "eventTime": "2026-01-01T00:00:00.000000Z", "type": "Normal", "reason": "Synced",
        "action": "Sync", "note": "synced", "reportingController": "c", "reportingInstance": "c-1",
        "regarding": {"kind": "Node", "name": "n1", "apiVersion": "v1"}});
    assert_eq!(s.post(EVENTS, ev).await.status, 201);
    for (path, name, events) in [
        (CMS, "a", ["ADDED", "MODIFIED"].as_slice()),
        (EVENTS, "n1.1", ["ADDED"].as_slice()),
        (CORE_EVENTS, "n1.1", ["ADDED"].as_slice()),
    ] {
        let current = s.get(&format!("{path}/{name}")).await.body;
        let mut plain = s
            .watch(&format!("{path}?watch=1&resourceVersion={from}"))
            .await;
        let mut selecting = s
            .watch(&format!(
                "{path}?watch=1&resourceVersion={from}&labelSelector=app%3Dweb"
            ))
            .await;
        let mut last = None;
        for want in events {
            let (p, q) = (
                plain.next(T).await.unwrap(),
                selecting.next(T).await.unwrap(),
            );
            assert_eq!(p, q, "{path}");
            assert_eq!(p["type"], *want, "{path}");
            last = Some(p["object"].clone());
        }
        assert_eq!(
            last.unwrap(),
            current,
            "{path}: the last event is the object now"
        );
        plain.quiet_for(Duration::from_millis(100)).await;
    }
}
