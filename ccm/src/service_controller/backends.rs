//! Follows the Node watch and says when the backend set changed.

use super::*;

/// Follows the Node watch and says when the backend set changed: a node that is a backend or
/// not, and its provider ID, per name; a deleted node (also one that vanished while the watch
/// relisted) is a change when it was known. Pure: fed watcher events, no I/O.
#[derive(Debug, Default)]
pub struct BackendTracker {
    known: HashMap<String, (bool, String)>,
    /// Names seen during a relist that is under way.
    relist: Option<std::collections::HashSet<String>>,
}

impl BackendTracker {
    pub fn changed<N: std::borrow::Borrow<Node>>(&mut self, event: &watcher::Event<N>) -> bool {
        match event {
            watcher::Event::Init => {
                self.relist = Some(Default::default());
                false
            }
            watcher::Event::InitApply(n) => {
                if let Some(seen) = &mut self.relist {
                    seen.insert(n.borrow().name_any());
                }
                self.apply(n.borrow())
            }
            watcher::Event::InitDone => {
                let seen = self.relist.take().unwrap_or_default();
                let before = self.known.len();
                self.known.retain(|name, _| seen.contains(name));
                self.known.len() != before
            }
            watcher::Event::Apply(n) => self.apply(n.borrow()),
            watcher::Event::Delete(n) => self.known.remove(&n.borrow().name_any()).is_some(),
        }
    }

    fn apply(&mut self, n: &Node) -> bool {
        let now = (
            service_plan::is_backend(n),
            crate::cloud::provider_id(n).unwrap_or("").to_owned(),
        );
        self.known.insert(n.name_any(), now.clone()) != Some(now)
    }
}
