//! Watch streams: one JSON event per line, replay from a resourceVersion, 410 `Expired` inside
//! the stream when the resourceVersion is older than the history, selector transitions,
//! bookmarks on request, and a clean end at `timeoutSeconds`.

use std::sync::Arc;
use std::time::Duration;

use axum::body::{Body, Bytes};
use serde_json::{Value, json};
use tokio::sync::{broadcast, mpsc};
use tokio_stream::wrappers::ReceiverStream;

use crate::api::Target;
use crate::kinds;
use crate::selectors::{FieldSelector, LabelSelector};
use crate::store::{Change, ChangeKind, Store, resource_version};

/// What a watch was asked for.
#[derive(Debug, Clone)]
pub struct WatchParams {
    /// `None` or `"0"`: start with the current state; `N`: replay everything after N.
    pub resource_version: Option<u64>,
    pub timeout: Duration,
    pub bookmarks: bool,
    pub labels: LabelSelector,
    pub fields: FieldSelector,
    /// Send each object as a one-row Table (`kubectl get -w`); the first event carries the
    /// column definitions, later ones none, as kube-apiserver does.
    pub table: Option<crate::tables::Include>,
}

/// Test controls that act on every open watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WatchControl {
    /// Send an in-stream 410 `Expired` and end the stream (the client must relist).
    Expire,
    /// End the stream without a word, as a dropped connection would.
    Cut,
}

/// One event line, `{"type":KIND,"object":OBJECT}`, from the object's JSON text.
fn line_json(kind: &str, object: &[u8]) -> Bytes {
    let mut s = Vec::with_capacity(object.len() + kind.len() + 24);
    s.extend_from_slice(b"{\"type\":\"");
    s.extend_from_slice(kind.as_bytes());
    s.extend_from_slice(b"\",\"object\":");
    s.extend_from_slice(object);
    s.extend_from_slice(b"}\n");
    Bytes::from(s)
}

fn line(kind: &str, object: &Value) -> Bytes {
    line_json(
        kind,
        &serde_json::to_vec(object).expect("JSON values serialize"),
    )
}

fn change_type(kind: ChangeKind) -> &'static str {
    match kind {
        ChangeKind::Added => "ADDED",
        ChangeKind::Modified => "MODIFIED",
        ChangeKind::Deleted => "DELETED",
    }
}

fn expired_event(message: &str) -> Bytes {
    line(
        "ERROR",
        &json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure", "message": message, "reason": "Expired", "code": 410}),
    )
}

/// Starts a watch and returns its response body.
pub fn stream(
    store: Arc<Store>,
    t: Target,
    p: WatchParams,
    mut control: broadcast::Receiver<WatchControl>,
    bookmark_every: Duration,
) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Bytes, std::convert::Infallible>>(256);
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(b)).await.is_ok() }
        };
        let matches = |v: &Value| p.labels.matches(v) && p.fields.matches(v);
        // Column definitions go with the first event only.
        let headers = std::sync::atomic::AtomicBool::new(true);
        let event = |kind: &str, obj: Value| -> Bytes {
            let Some(include) = p.table else {
                return line(kind, &obj);
            };
            let meta = json!({"resourceVersion": obj["metadata"]["resourceVersion"]});
            let mut table = crate::tables::table_for(
                t.def,
                std::slice::from_ref(&obj),
                meta,
                include,
                jiff::Timestamp::now(),
            );
            if !headers.swap(false, std::sync::atomic::Ordering::Relaxed) {
                table["columnDefinitions"] = Value::Null;
            }
            line(kind, &table)
        };
        let in_scope = |c: &Change| {
            c.key.storage == t.def.storage
                && t.namespace
                    .as_deref()
                    .is_none_or(|ns| c.key.namespace == ns)
        };
        // A watch of every object as JSON (what informers open) sends the stored text in an
        // envelope; selectors and tables need the object parsed.
        let plain = p.table.is_none() && p.labels.is_everything() && p.fields.is_everything();
        let emit = |c: &Change| -> Option<Bytes> {
            if !in_scope(c) {
                return None;
            }
            if plain {
                return Some(line_json(
                    change_type(c.kind),
                    &kinds::wire_json(t.def, &c.object),
                ));
            }
            render(&t, c, &matches).map(|(kind, obj)| event(kind, obj))
        };

        let (initial, mut last_rv, mut rx) = match p.resource_version {
            None => {
                let (items, rv, rx) =
                    store.snapshot_and_subscribe(t.def.storage, t.namespace.as_deref());
                let added: Vec<Bytes> = if plain {
                    items
                        .iter()
                        .map(|(_, o)| line_json("ADDED", &kinds::wire_json(t.def, o)))
                        .collect()
                } else {
                    items
                        .into_iter()
                        .map(|(_, o)| kinds::to_wire(t.def, o.value()))
                        .filter(|v| matches(v))
                        .map(|v| event("ADDED", v))
                        .collect()
                };
                (added, rv, rx)
            }
            Some(from) => match store.subscribe(from) {
                Ok((replay, rx)) => {
                    let mut out = Vec::new();
                    let mut last = from;
                    for c in replay {
                        last = c.rv;
                        out.extend(emit(&c));
                    }
                    (out, last, rx)
                }
                Err(e) => {
                    let _ = send(expired_event(&format!(
                        "The resourceVersion for the provided watch is too old. ({e})"
                    )))
                    .await;
                    return;
                }
            },
        };
        for b in initial {
            if !send(b).await {
                return;
            }
        }
        let deadline = tokio::time::Instant::now() + p.timeout;
        let mut bookmark =
            tokio::time::interval_at(tokio::time::Instant::now() + bookmark_every, bookmark_every);
        loop {
            tokio::select! {
                change = rx.recv() => match change {
                    Ok(c) => {
                        if c.rv <= last_rv {
                            continue;
                        }
                        last_rv = c.rv;
                        if let Some(b) = emit(&c)
                            && !send(b).await
                        {
                            return;
                        }
                    }
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        let _ = send(expired_event("The watch fell too far behind; relist and watch again.")).await;
                        return;
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = bookmark.tick(), if p.bookmarks => {
                    let obj = json!({"kind": t.def.kind, "apiVersion": t.def.api_version(), "metadata": {"resourceVersion": last_rv.to_string()}});
                    if !send(line("BOOKMARK", &obj)).await {
                        return;
                    }
                }
                ctl = control.recv() => match ctl {
                    Ok(WatchControl::Expire) => {
                        let _ = send(expired_event("The resourceVersion for the provided watch is too old.")).await;
                        return;
                    }
                    Ok(WatchControl::Cut) | Err(broadcast::error::RecvError::Closed) => return,
                    Err(broadcast::error::RecvError::Lagged(_)) => {}
                },
                _ = tokio::time::sleep_until(deadline) => return,
                _ = tx.closed() => return,
            }
        }
    });
    Body::from_stream(ReceiverStream::new(rx))
}

/// The event a watcher with these selectors sees for `c`, if any (selector transitions: entering
/// the selection is ADDED, leaving it is DELETED).
fn render(
    t: &Target,
    c: &Change,
    matches: &impl Fn(&Value) -> bool,
) -> Option<(&'static str, Value)> {
    let new = kinds::to_wire(t.def, c.object.value());
    match c.kind {
        ChangeKind::Added => matches(&new).then_some(("ADDED", new)),
        ChangeKind::Deleted => matches(&new).then_some(("DELETED", new)),
        ChangeKind::Modified => {
            let old = c.old.as_ref().map(|o| kinds::to_wire(t.def, o.value()));
            let was = old.as_ref().is_some_and(matches);
            match (was, matches(&new)) {
                (false, true) => Some(("ADDED", new)),
                (true, true) => Some(("MODIFIED", new)),
                (true, false) => {
                    let mut gone = old.unwrap_or(Value::Null);
                    if let Some(m) = gone.get_mut("metadata").and_then(Value::as_object_mut) {
                        m.insert("resourceVersion".into(), json!(c.rv.to_string()));
                    }
                    debug_assert_eq!(resource_version(&gone), Some(c.rv));
                    Some(("DELETED", gone))
                }
                (false, false) => None,
            }
        }
    }
}
