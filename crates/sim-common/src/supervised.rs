//! Named tasks that must all keep running. A process built of several long-lived tasks (an API
//! server, a data plane, controllers) must not carry on when one of them dies: [`Supervised`]
//! reports the first to end, by name, whether it returned or panicked, so the process can stop
//! the rest and exit non-zero naming it.

use std::collections::HashMap;
use std::future::Future;

use tokio::task::{AbortHandle, Id, JoinSet};

/// A set of named tasks; see the module docs.
pub struct Supervised<T> {
    set: JoinSet<T>,
    names: HashMap<Id, &'static str>,
    aborts: Vec<(&'static str, AbortHandle)>,
}

/// How a task ended: its output, or why it has none (a panic's message, or "cancelled").
pub type Exit<T> = (&'static str, Result<T, String>);

impl<T: Send + 'static> Default for Supervised<T> {
    fn default() -> Self {
        Self {
            set: JoinSet::new(),
            names: HashMap::new(),
            aborts: Vec::new(),
        }
    }
}

impl<T: Send + 'static> Supervised<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Starts `task` under `name`.
    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = T> + Send + 'static) {
        let handle = self.set.spawn(task);
        self.names.insert(handle.id(), name);
        self.aborts.push((name, handle));
    }

    /// Supervises a task spawned elsewhere: a panic in it is reported with its message.
    pub fn adopt(&mut self, name: &'static str, task: tokio::task::JoinHandle<T>) {
        self.spawn(name, async move {
            match task.await {
                Ok(out) => out,
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(_) => panic!("it was cancelled"),
            }
        });
    }

    pub fn is_empty(&self) -> bool {
        self.set.is_empty()
    }

    pub fn len(&self) -> usize {
        self.set.len()
    }

    /// Waits for the next task to end; `None` when none is left.
    pub async fn join_next(&mut self) -> Option<Exit<T>> {
        let joined = self.set.join_next_with_id().await?;
        let (id, result) = match joined {
            Ok((id, out)) => (id, Ok(out)),
            Err(e) => (e.id(), Err(panic_message(e))),
        };
        Some((self.names.remove(&id).unwrap_or("unnamed"), result))
    }

    /// Waits for every task to end (after they were told to stop), in the order they end.
    pub async fn join_all(&mut self) -> Vec<Exit<T>> {
        let mut out = Vec::with_capacity(self.set.len());
        while let Some(exit) = self.join_next().await {
            out.push(exit);
        }
        out
    }

    /// Kills the tasks named `name` as a crash would: for tests of what supervises them.
    #[doc(hidden)]
    pub fn kill(&self, name: &str) {
        for (n, h) in &self.aborts {
            if *n == name {
                h.abort();
            }
        }
    }
}

fn panic_message(e: tokio::task::JoinError) -> String {
    if e.is_cancelled() {
        return "it was cancelled".into();
    }
    let payload = e.into_panic();
    let msg = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into());
    format!("it panicked: {msg}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_first_task_to_end_is_named_with_how_it_ended() {
        let mut tasks = Supervised::new();
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tasks.spawn("forever", std::future::pending::<u32>());
        tasks.spawn("returns", async move {
            let _ = rx.await;
            7
        });
        tasks.spawn("panics", async {
            panic!("boom");
        });
        let (name, how) = tasks.join_next().await.unwrap();
        assert_eq!((name, how), ("panics", Err("it panicked: boom".to_owned())));
        tx.send(()).unwrap();
        assert_eq!(tasks.join_next().await.unwrap(), ("returns", Ok(7)));
        tasks.kill("forever");
        assert_eq!(
            tasks.join_next().await.unwrap(),
            ("forever", Err("it was cancelled".to_owned()))
        );
        assert!(tasks.join_next().await.is_none());
        assert!(tasks.is_empty());
    }
}
