//! Fault injection for tests: fail matching requests with a status (and `Retry-After`), and act on
//! open watches (in-stream 410, or a cut connection).

use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use tokio::sync::broadcast;

use crate::status::StatusError;
use crate::watch::WatchControl;

/// Fail requests that match.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FailRule {
    /// HTTP method to match; absent matches all.
    #[serde(default)]
    pub method: Option<String>,
    /// Substring of the path to match (e.g. `/services`); absent matches all API paths.
    #[serde(default)]
    pub path_contains: Option<String>,
    /// Status to answer: 409 (Conflict), 429 (TooManyRequests), 500, 503 (ServiceUnavailable), ...
    pub status: u16,
    #[serde(default)]
    pub retry_after_seconds: Option<u64>,
    /// How many requests to fail; absent means until cleared.
    #[serde(default)]
    pub count: Option<u64>,
}

#[derive(Debug)]
pub struct Faults {
    rules: Mutex<Vec<FailRule>>,
    watches: broadcast::Sender<WatchControl>,
}

impl Default for Faults {
    fn default() -> Self {
        Self::new()
    }
}

impl Faults {
    pub fn new() -> Self {
        Self {
            rules: Mutex::new(Vec::new()),
            watches: broadcast::channel(16).0,
        }
    }

    pub fn add(&self, rule: FailRule) -> Result<(), String> {
        if !(400..=599).contains(&rule.status) {
            return Err("status must be 400-599".into());
        }
        self.rules.lock().expect("fault lock").push(rule);
        Ok(())
    }

    pub fn clear(&self) {
        self.rules.lock().expect("fault lock").clear();
    }

    /// The failure for this request, if a rule matches (using up one of its count).
    pub fn check(&self, method: &str, path: &str) -> Option<StatusError> {
        let mut rules = self.rules.lock().expect("fault lock");
        let i = rules.iter().position(|r| {
            r.method
                .as_deref()
                .is_none_or(|m| m.eq_ignore_ascii_case(method))
                && r.path_contains.as_deref().is_none_or(|p| path.contains(p))
        })?;
        let rule = rules[i].clone();
        if let Some(n) = rules[i].count.as_mut() {
            *n = n.saturating_sub(1);
            if *n == 0 {
                rules.remove(i);
            }
        }
        let reason = match rule.status {
            409 => "Conflict",
            410 => "Expired",
            429 => "TooManyRequests",
            500 => "InternalError",
            503 => "ServiceUnavailable",
            504 => "Timeout",
            _ => "BadRequest",
        };
        let mut e = StatusError::new(rule.status, reason, format!("injected fault: {reason}"));
        e.retry_after = rule.retry_after_seconds;
        Some(e)
    }

    /// Sends `ctl` to every open watch; returns how many received it.
    pub fn control_watches(&self, ctl: WatchControl) -> usize {
        self.watches.send(ctl).unwrap_or(0)
    }

    pub fn subscribe_watches(&self) -> broadcast::Receiver<WatchControl> {
        self.watches.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rules_match_and_run_out() {
        let f = Faults::new();
        f.add(FailRule {
            method: Some("PUT".into()),
            path_contains: Some("/leases".into()),
            status: 409,
            retry_after_seconds: None,
            count: Some(1),
        })
        .unwrap();
        f.add(FailRule {
            method: None,
            path_contains: Some("/services".into()),
            status: 429,
            retry_after_seconds: Some(2),
            count: None,
        })
        .unwrap();
        assert!(
            f.check(
                "GET",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"
            )
            .is_none()
        );
        assert_eq!(
            f.check(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"
            )
            .unwrap()
            .reason,
            "Conflict"
        );
        assert!(
            f.check(
                "PUT",
                "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/x"
            )
            .is_none()
        );
        let e = f.check("GET", "/api/v1/services").unwrap();
        assert_eq!((e.code, e.retry_after), (429, Some(2)));
        assert!(f.check("GET", "/api/v1/services").is_some());
        f.clear();
        assert!(f.check("GET", "/api/v1/services").is_none());
        assert!(
            f.add(FailRule {
                method: None,
                path_contains: None,
                status: 200,
                retry_after_seconds: None,
                count: None
            })
            .is_err()
        );
    }
}
