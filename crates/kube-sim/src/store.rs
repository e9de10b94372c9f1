//! The object store: every object as JSON text keyed by (resource, namespace, name), one global
//! resourceVersion counter, and a bounded history of changes that watches replay from.
//!
//! Objects are kept as their serialized JSON ([`Object`]), not as `serde_json::Value` trees: a
//! kubelet's Node is about 3 KB of text and 12 KiB as a tree (every small map is a B-tree node),
//! and the store holds every object plus the older versions its watch history refers to. A
//! write parses the current object for its decision and serializes the result once; every
//! watcher then sends that same text.
//!
//! All writes go through [`Store::write`], which runs the caller's decision under the store lock,
//! so a read-modify-write is atomic. A write that leaves the object byte-for-byte equal (ignoring
//! its resourceVersion) is not persisted: no new resourceVersion, no watch event, as etcd's
//! `GuaranteedUpdate` does.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use serde_json::Value;
use tokio::sync::broadcast;

/// An object as stored: its JSON text in storage form, resourceVersion included. Cheap to clone
/// (the text is shared).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Object(Bytes);

impl Object {
    /// Serializes `v`.
    pub fn new(v: &Value) -> Self {
        Self(Bytes::from(
            serde_json::to_vec(v).expect("a JSON value serializes"),
        ))
    }

    /// The object as a JSON tree.
    pub fn value(&self) -> Value {
        // Only `new` makes an Object, from a Value: its text always parses.
        serde_json::from_slice(&self.0).expect("a stored object is valid JSON")
    }

    /// The JSON text.
    pub fn json(&self) -> &Bytes {
        &self.0
    }
}

/// Where an object lives.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Key {
    /// The storage ID of the resource (core/v1 and events.k8s.io/v1 Events share one).
    pub storage: &'static str,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub name: String,
}

impl Key {
    pub fn new(
        storage: &'static str,
        namespace: impl Into<String>,
        name: impl Into<String>,
    ) -> Self {
        Self {
            storage,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Modified,
    Deleted,
}

/// One committed change, as watches see it.
#[derive(Debug, Clone)]
pub struct Change {
    pub rv: u64,
    pub key: Key,
    pub kind: ChangeKind,
    /// The object after the change; for deletes, the last state stamped with the delete's RV.
    /// Shared with the store (and the next change's `old`): history costs no copies.
    pub object: Object,
    /// The object before the change (for selector transitions).
    pub old: Option<Object>,
}

/// Receives every committed change, in resourceVersion order.
pub type ChangeReceiver = broadcast::Receiver<Arc<Change>>;

/// What a write decided.
#[derive(Debug)]
pub enum Write {
    /// Store this object (create or update).
    Put(Value),
    /// Remove the object.
    Delete,
}

/// What a write did, with the object as stored.
#[derive(Debug, Clone)]
pub enum Written {
    Created(Value),
    Updated(Value),
    /// The new object equalled the stored one: nothing was persisted.
    Unchanged(Value),
    /// Removed; the object carries the delete's resourceVersion.
    Deleted(Value),
}

impl Written {
    pub fn object(&self) -> &Value {
        match self {
            Written::Created(v)
            | Written::Updated(v)
            | Written::Unchanged(v)
            | Written::Deleted(v) => v,
        }
    }

    pub fn into_object(self) -> Value {
        match self {
            Written::Created(v)
            | Written::Updated(v)
            | Written::Unchanged(v)
            | Written::Deleted(v) => v,
        }
    }
}

/// The watch cannot start from the requested resourceVersion: it is older than the history.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too old resource version: {requested} ({oldest})")]
pub struct Expired {
    pub requested: u64,
    pub oldest: u64,
}

#[derive(Debug)]
struct Inner {
    rv: u64,
    /// Shared with the changes in `history` that carry them.
    objects: BTreeMap<Key, Object>,
    history: VecDeque<Arc<Change>>,
    /// Every change with an RV above this is in `history`.
    compacted: u64,
}

/// The store. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct Store {
    inner: Mutex<Inner>,
    changes: broadcast::Sender<Arc<Change>>,
    history_limit: usize,
}

/// The first resourceVersion handed out is above this (never "0", which means "any" to clients).
pub const INITIAL_RV: u64 = 1000;

pub fn resource_version(obj: &Value) -> Option<u64> {
    obj.pointer("/metadata/resourceVersion")
        .and_then(Value::as_str)
        .and_then(|s| s.parse().ok())
}

fn set_resource_version(obj: &mut Value, rv: u64) {
    if let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.insert("resourceVersion".into(), Value::String(rv.to_string()));
    }
}

/// Equal apart from `metadata.resourceVersion` (compared in place: every write asks this).
fn same_content(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    a.len() == b.len()
        && a.iter().all(|(k, va)| match b.get(k) {
            Some(vb) if k == "metadata" => same_apart_from_rv(va, vb),
            Some(vb) => va == vb,
            None => false,
        })
}

fn same_apart_from_rv(a: &Value, b: &Value) -> bool {
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return a == b;
    };
    let fields = |m: &serde_json::Map<String, Value>| {
        m.len() - usize::from(m.contains_key("resourceVersion"))
    };
    fields(a) == fields(b)
        && a.iter()
            .filter(|(k, _)| *k != "resourceVersion")
            .all(|(k, va)| b.get(k) == Some(va))
}

impl Store {
    /// A store keeping the last `history_limit` changes for watches to replay.
    pub fn new(history_limit: usize) -> Self {
        let (changes, _) = broadcast::channel(history_limit.max(1024));
        Self {
            inner: Mutex::new(Inner {
                rv: INITIAL_RV,
                objects: BTreeMap::new(),
                history: VecDeque::new(),
                compacted: INITIAL_RV,
            }),
            changes,
            history_limit: history_limit.max(1),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().expect("store lock poisoned")
    }

    /// The latest resourceVersion (what a list reports).
    pub fn current_rv(&self) -> u64 {
        self.lock().rv
    }

    pub fn get(&self, key: &Key) -> Option<Value> {
        let stored = self.lock().objects.get(key).cloned();
        stored.map(|o| o.value())
    }

    /// Whether an object is stored under `key`.
    pub fn contains(&self, key: &Key) -> bool {
        self.lock().objects.contains_key(key)
    }

    /// Objects of `storage` (in `namespace`, or all), in key order: a snapshot that shares their
    /// text with the store.
    pub fn objects(&self, storage: &'static str, namespace: Option<&str>) -> Vec<(Key, Object)> {
        Self::collect(&self.lock(), storage, namespace)
    }

    /// Visits the objects of `storage` (and `namespace`) in key order, starting after the object
    /// `after` (namespace, name) if given, until `visit` returns false; returns the current
    /// resourceVersion. Runs under the store lock and clones nothing itself, so a paged list
    /// costs its page, not the whole kind.
    pub fn scan(
        &self,
        storage: &'static str,
        namespace: Option<&str>,
        after: Option<(&str, &str)>,
        mut visit: impl FnMut(&Key, &Object) -> bool,
    ) -> u64 {
        use std::ops::Bound;
        let inner = self.lock();
        let start = match after {
            Some((ns, name)) => Bound::Excluded(Key::new(storage, ns, name)),
            None => Bound::Included(Key::new(storage, namespace.unwrap_or(""), "")),
        };
        for (k, v) in inner.objects.range((start, Bound::Unbounded)) {
            if k.storage != storage || namespace.is_some_and(|ns| k.namespace != ns) {
                break;
            }
            if !visit(k, v) {
                break;
            }
        }
        inner.rv
    }

    /// Objects of one storage (and namespace), by key range rather than a full scan.
    fn collect(
        inner: &Inner,
        storage: &'static str,
        namespace: Option<&str>,
    ) -> Vec<(Key, Object)> {
        let start = Key::new(storage, namespace.unwrap_or(""), "");
        inner
            .objects
            .range(start..)
            .take_while(|(k, _)| {
                k.storage == storage && namespace.is_none_or(|ns| k.namespace == ns)
            })
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Runs `decide` on the current object under the lock and commits what it returns.
    pub fn write<E>(
        &self,
        key: &Key,
        decide: impl FnOnce(Option<&Value>) -> Result<Write, E>,
    ) -> Result<Written, E> {
        let mut inner = self.lock();
        let old = inner.objects.get(key).cloned();
        let current = old.as_ref().map(Object::value);
        let decision = decide(current.as_ref())?;
        let written = match (decision, current) {
            (Write::Put(new), Some(current)) if same_content(&new, &current) => {
                Written::Unchanged(current)
            }
            (Write::Put(mut new), _) => {
                inner.rv += 1;
                let rv = inner.rv;
                set_resource_version(&mut new, rv);
                let stored = Object::new(&new);
                inner.objects.insert(key.clone(), stored.clone());
                let kind = if old.is_some() {
                    ChangeKind::Modified
                } else {
                    ChangeKind::Added
                };
                self.record(
                    &mut inner,
                    Change {
                        rv,
                        key: key.clone(),
                        kind,
                        object: stored,
                        old,
                    },
                );
                if kind == ChangeKind::Added {
                    Written::Created(new)
                } else {
                    Written::Updated(new)
                }
            }
            (Write::Delete, Some(mut gone)) => {
                inner.rv += 1;
                let rv = inner.rv;
                inner.objects.remove(key);
                set_resource_version(&mut gone, rv);
                self.record(
                    &mut inner,
                    Change {
                        rv,
                        key: key.clone(),
                        kind: ChangeKind::Deleted,
                        object: Object::new(&gone),
                        old,
                    },
                );
                Written::Deleted(gone)
            }
            (Write::Delete, None) => Written::Deleted(Value::Null),
        };
        Ok(written)
    }

    fn record(&self, inner: &mut Inner, change: Change) {
        let change = Arc::new(change);
        inner.history.push_back(change.clone());
        while inner.history.len() > self.history_limit {
            if let Some(dropped) = inner.history.pop_front() {
                inner.compacted = dropped.rv;
            }
        }
        // No receivers is fine: nobody is watching.
        let _ = self.changes.send(change);
    }

    /// Keys of every object in `namespace` (for namespace deletion).
    pub fn keys_in_namespace(&self, namespace: &str) -> Vec<Key> {
        self.lock()
            .objects
            .keys()
            .filter(|k| k.namespace == namespace)
            .cloned()
            .collect()
    }

    /// Starts a watch: the changes after `from` (all retained ones when `None`) and a receiver for
    /// what follows, taken under one lock so nothing falls between them.
    pub fn subscribe(&self, from: u64) -> Result<(Vec<Arc<Change>>, ChangeReceiver), Expired> {
        let inner = self.lock();
        if from < inner.compacted {
            return Err(Expired {
                requested: from,
                oldest: inner.compacted,
            });
        }
        let replay = inner
            .history
            .iter()
            .filter(|c| c.rv > from)
            .cloned()
            .collect();
        Ok((replay, self.changes.subscribe()))
    }

    /// A snapshot of current objects of `storage` plus a receiver for later changes, atomically
    /// (for watches that start with the current state).
    pub fn snapshot_and_subscribe(
        &self,
        storage: &'static str,
        namespace: Option<&str>,
    ) -> (Vec<(Key, Object)>, u64, ChangeReceiver) {
        let inner = self.lock();
        (
            Self::collect(&inner, storage, namespace),
            inner.rv,
            self.changes.subscribe(),
        )
    }

    /// Forgets all history, so watches from any earlier resourceVersion get 410 Expired (tests).
    pub fn compact(&self) {
        let mut inner = self.lock();
        inner.history.clear();
        inner.compacted = inner.rv;
    }

    /// Oldest resourceVersion a watch may start from.
    pub fn oldest_watchable(&self) -> u64 {
        self.lock().compacted
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_content_ignores_only_the_resource_version() {
        let base = serde_json::json!({
            "metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}},
            "spec": {"n": 1}
        });
        for (other, same) in [
            (
                serde_json::json!({"metadata": {"name": "a", "resourceVersion": "9", "labels": {"x": "1"}}, "spec": {"n": 1}}),
                true,
            ),
            (
                serde_json::json!({"metadata": {"name": "a", "labels": {"x": "1"}}, "spec": {"n": 1}}),
                true,
            ),
            (
                serde_json::json!({"metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "2"}}, "spec": {"n": 1}}),
                false,
            ),
            (
                serde_json::json!({"metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}}, "spec": {"n": 2}}),
                false,
            ),
            (
                serde_json::json!({"metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}}, "spec": {"n": 1}, "status": {}}),
                false,
            ),
            (
                serde_json::json!({"metadata": {"name": "a", "resourceVersion": "5", "labels": {"x": "1"}, "uid": "u"}, "spec": {"n": 1}}),
                false,
            ),
            (serde_json::json!({"spec": {"n": 1}}), false),
        ] {
            assert_eq!(same_content(&base, &other), same, "{other}");
            assert_eq!(same_content(&other, &base), same, "{other} (reversed)");
        }
    }
    use serde_json::json;

    fn obj(name: &str, data: &str) -> Value {
        json!({"metadata": {"name": name}, "data": data})
    }

    fn put(s: &Store, key: &Key, v: Value) -> Written {
        s.write::<()>(key, |_| Ok(Write::Put(v))).unwrap()
    }

    #[test]
    fn writes_bump_one_global_rv_and_no_ops_do_not() {
        let s = Store::new(100);
        let a = Key::new("configmaps", "default", "a");
        let b = Key::new("nodes", "", "b");
        let w1 = put(&s, &a, obj("a", "1"));
        assert!(matches!(w1, Written::Created(_)));
        assert_eq!(resource_version(w1.object()), Some(INITIAL_RV + 1));
        let w2 = put(&s, &b, obj("b", "1"));
        assert_eq!(resource_version(w2.object()), Some(INITIAL_RV + 2));
        // Same content (the stale RV inside does not count): nothing persisted.
        let same = put(&s, &a, w1.object().clone());
        assert!(matches!(same, Written::Unchanged(_)));
        assert_eq!(s.current_rv(), INITIAL_RV + 2);
        let w3 = put(&s, &a, obj("a", "2"));
        assert!(matches!(w3, Written::Updated(_)));
        assert_eq!(resource_version(w3.object()), Some(INITIAL_RV + 3));
        let gone = s.write::<()>(&a, |_| Ok(Write::Delete)).unwrap();
        assert_eq!(
            resource_version(gone.object()),
            Some(INITIAL_RV + 4),
            "DELETED carries the delete's RV"
        );
        assert!(s.get(&a).is_none());
    }

    #[test]
    fn subscribe_replays_exactly_the_later_changes() {
        let s = Store::new(100);
        let a = Key::new("configmaps", "default", "a");
        put(&s, &a, obj("a", "1"));
        let mid = s.current_rv();
        put(&s, &a, obj("a", "2"));
        put(&s, &a, obj("a", "3"));
        let (replay, _rx) = s.subscribe(mid).unwrap();
        assert_eq!(
            replay.iter().map(|c| c.rv).collect::<Vec<_>>(),
            [mid + 1, mid + 2]
        );
        assert_eq!(replay[0].kind, ChangeKind::Modified);
        assert_eq!(replay[0].old.as_ref().unwrap().value()["data"], "1");
    }

    #[test]
    fn history_is_bounded_and_old_rvs_expire() {
        let s = Store::new(3);
        let a = Key::new("configmaps", "default", "a");
        for i in 0..10 {
            put(&s, &a, obj("a", &i.to_string()));
        }
        let now = s.current_rv();
        assert!(s.subscribe(now - 3).is_ok());
        assert_eq!(
            s.subscribe(now - 4).unwrap_err(),
            Expired {
                requested: now - 4,
                oldest: now - 3
            }
        );
        s.compact();
        assert!(s.subscribe(now - 1).is_err());
        assert!(s.subscribe(now).is_ok());
    }

    #[test]
    fn failed_decisions_change_nothing() {
        let s = Store::new(10);
        let a = Key::new("configmaps", "default", "a");
        let r = s.write(&a, |_| Err::<Write, _>("nope"));
        assert_eq!(r.unwrap_err(), "nope");
        assert_eq!(s.current_rv(), INITIAL_RV);
    }
}
