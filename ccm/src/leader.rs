//! Leader election on a `coordination.k8s.io/v1` Lease with get / create / update and
//! resourceVersion preconditions (no server-side apply), following client-go's algorithm: a
//! lease is expired when its record has not changed for `lease_duration` as observed on *our*
//! clock, so clock skew between replicas does not matter.

use std::time::Duration;

use jiff::Timestamp;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::Api;
use kube::api::PostParams;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub struct LeaderConfig {
    pub namespace: String,
    pub name: String,
    pub identity: String,
    pub lease_duration: Duration,
    pub renew_deadline: Duration,
    pub retry_period: Duration,
}

/// Tries to hold the lease.
pub struct LeaderElector {
    api: Api<Lease>,
    cfg: LeaderConfig,
    /// The last lease record seen, and when we saw it change.
    observed: Option<(String, Instant)>,
}

fn now_micro() -> MicroTime {
    MicroTime(Timestamp::now())
}

fn is_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

impl LeaderElector {
    pub fn new(client: kube::Client, cfg: LeaderConfig) -> Self {
        Self {
            api: Api::namespaced(client, &cfg.namespace),
            cfg,
            observed: None,
        }
    }

    pub fn config(&self) -> &LeaderConfig {
        &self.cfg
    }

    /// One attempt: `Ok(true)` when we hold the lease afterwards.
    pub async fn try_acquire_or_renew(&mut self) -> Result<bool, kube::Error> {
        let me = self.cfg.identity.clone();
        let duration = i32::try_from(self.cfg.lease_duration.as_secs()).unwrap_or(i32::MAX);
        let current = match self.api.get(&self.cfg.name).await {
            Ok(l) => l,
            Err(e) if is_status(&e, 404) => {
                let lease = Lease {
                    metadata: ObjectMeta {
                        name: Some(self.cfg.name.clone()),
                        namespace: Some(self.cfg.namespace.clone()),
                        ..Default::default()
                    },
                    spec: Some(LeaseSpec {
                        holder_identity: Some(me),
                        lease_duration_seconds: Some(duration),
                        acquire_time: Some(now_micro()),
                        renew_time: Some(now_micro()),
                        lease_transitions: Some(0),
                        ..Default::default()
                    }),
                };
                return match self.api.create(&PostParams::default(), &lease).await {
                    Ok(_) => Ok(true),
                    Err(e) if is_status(&e, 409) => Ok(false),
                    Err(e) => Err(e),
                };
            }
            Err(e) => return Err(e),
        };
        let spec = current.spec.clone().unwrap_or_default();
        let holder = spec.holder_identity.clone().unwrap_or_default();
        let record = serde_json::to_string(&spec).unwrap_or_default();
        let now = Instant::now();
        let observed_at = match &self.observed {
            Some((r, at)) if *r == record => *at,
            _ => {
                self.observed = Some((record, now));
                now
            }
        };
        let held_by_other = !holder.is_empty() && holder != me;
        let lease_len = Duration::from_secs(
            u64::try_from(spec.lease_duration_seconds.unwrap_or(duration)).unwrap_or(0),
        );
        if held_by_other && observed_at + lease_len > now {
            return Ok(false);
        }
        let mut new = current.clone();
        let s = new.spec.get_or_insert_with(Default::default);
        if holder != me {
            s.acquire_time = Some(now_micro());
            s.lease_transitions =
                Some(spec.lease_transitions.unwrap_or(0) + i32::from(!holder.is_empty()));
        }
        s.holder_identity = Some(me);
        s.lease_duration_seconds = Some(duration);
        s.renew_time = Some(now_micro());
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &new)
            .await
        {
            Ok(l) => {
                let rec = serde_json::to_string(&l.spec.unwrap_or_default()).unwrap_or_default();
                self.observed = Some((rec, Instant::now()));
                Ok(true)
            }
            Err(e) if is_status(&e, 409) => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// Blocks until we hold the lease.
    pub async fn acquire(&mut self) {
        loop {
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    tracing::info!(identity = %self.cfg.identity, lease = %format!("{}/{}", self.cfg.namespace, self.cfg.name), "acquired leader lease");
                    return;
                }
                Ok(false) => tracing::debug!("leader lease held by another replica"),
                Err(e) => tracing::warn!(error = %e, "leader election attempt failed"),
            }
            tokio::time::sleep(self.cfg.retry_period).await;
        }
    }

    /// Renews every retry period until a renewal has not succeeded for the renew deadline; then
    /// returns (leadership is lost). `renewed` is called after every successful renewal.
    pub async fn hold(&mut self, renewed: impl Fn()) {
        let mut last_ok = Instant::now();
        loop {
            tokio::time::sleep(self.cfg.retry_period).await;
            match self.try_acquire_or_renew().await {
                Ok(true) => {
                    last_ok = Instant::now();
                    renewed();
                }
                Ok(false) => {
                    tracing::error!("another replica took the leader lease");
                    return;
                }
                Err(e) => tracing::warn!(error = %e, "renewing the leader lease failed"),
            }
            if last_ok.elapsed() >= self.cfg.renew_deadline {
                tracing::error!(deadline = ?self.cfg.renew_deadline, "could not renew the leader lease in time");
                return;
            }
        }
    }

    /// Gives the lease up (on graceful shutdown) so another replica can take over at once.
    pub async fn release(&mut self) {
        let Ok(mut lease) = self.api.get(&self.cfg.name).await else {
            return;
        };
        let spec = lease.spec.get_or_insert_with(Default::default);
        if spec.holder_identity.as_deref() != Some(self.cfg.identity.as_str()) {
            return;
        }
        spec.holder_identity = None;
        spec.lease_duration_seconds = Some(1);
        spec.renew_time = Some(now_micro());
        match self
            .api
            .replace(&self.cfg.name, &PostParams::default(), &lease)
            .await
        {
            Ok(_) => tracing::info!("released the leader lease"),
            Err(e) => tracing::warn!(error = %e, "could not release the leader lease"),
        }
    }
}
