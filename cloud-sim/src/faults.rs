//! Fault injection: rules that add latency, fail requests, or throttle them, and the token bucket
//! behind throttling.
//!
//! Rules live in memory on purpose: they are test scaffolding, and a restart clearing them is
//! what a tester expects. A rule without a zone is checked once per request by the HTTP layer; a
//! rule with a zone is checked by operations that know the zone of the resource they touch
//! (instance creates and per-instance calls), so each rule applies at most once per request.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cloud_api::{
    CreateFaultRequest, FaultEffect, FaultRule, MAX_FAULT_LATENCY_MS, MAX_FAULT_TTL_SECONDS,
};
use jiff::Timestamp;

use sim_common::TokenBucket;

use crate::error::ApiError;

/// What a request looks like to the fault rules.
#[derive(Debug, Clone, Copy)]
pub struct Target<'a> {
    pub method: &'a str,
    pub path: &'a str,
    /// `None` for the per-request check; `Some` for the zonal check of an operation.
    pub zone: Option<&'a str>,
    pub project: &'a str,
}

#[derive(Debug)]
struct Inner {
    rules: Vec<FaultRule>,
    buckets: HashMap<(String, String), TokenBucket>,
    next_id: u64,
}

/// The fault rules in force, plus the optional global per-project throttle.
#[derive(Debug)]
pub struct Faults {
    inner: Mutex<Inner>,
    global: Option<(f64, u32)>,
}

const GLOBAL_THROTTLE: &str = "global";

impl Faults {
    pub fn new(global_throttle: Option<(f64, u32)>) -> Self {
        Self {
            inner: Mutex::new(Inner {
                rules: Vec::new(),
                buckets: HashMap::new(),
                next_id: 1,
            }),
            global: global_throttle,
        }
    }

    /// Validates and installs a rule.
    pub fn add(&self, req: CreateFaultRequest, zones: &[String]) -> Result<FaultRule, ApiError> {
        let invalid = |field: &str, reason: &str| ApiError::Invalid {
            field: field.into(),
            reason: reason.into(),
        };
        if !(0.0..=1.0).contains(&req.probability) {
            return Err(invalid("probability", "must be between 0 and 1"));
        }
        if let Some(m) = &req.method
            && !["GET", "POST", "PUT", "PATCH", "DELETE"].contains(&m.to_ascii_uppercase().as_str())
        {
            return Err(invalid("method", "must be GET, POST, PUT, PATCH or DELETE"));
        }
        if let Some(p) = &req.path_prefix
            && !p.starts_with('/')
        {
            return Err(invalid("path_prefix", "must start with '/'"));
        }
        if let Some(z) = &req.zone
            && !zones.contains(z)
        {
            return Err(invalid("zone", "is not a zone of this region"));
        }
        match &req.effect {
            FaultEffect::Error { status, .. } if !(400..=599).contains(status) => {
                return Err(invalid(
                    "effect.status",
                    "must be an error status (400-599)",
                ));
            }
            FaultEffect::Latency { millis } if *millis > MAX_FAULT_LATENCY_MS => {
                return Err(invalid(
                    "effect.millis",
                    &format!("must be at most {MAX_FAULT_LATENCY_MS}"),
                ));
            }
            FaultEffect::Throttle {
                rate_per_second,
                burst,
            } if !(*rate_per_second > 0.0 && rate_per_second.is_finite()) || *burst == 0 => {
                return Err(invalid(
                    "effect",
                    "throttle needs rate_per_second > 0 and burst >= 1",
                ));
            }
            _ => {}
        }
        if req.count == Some(0) {
            return Err(invalid("count", "must be at least 1"));
        }
        if req.ttl_seconds.is_some_and(|s| s > MAX_FAULT_TTL_SECONDS) {
            return Err(invalid(
                "ttl_seconds",
                &format!("must be at most {MAX_FAULT_TTL_SECONDS} (a year)"),
            ));
        }
        let mut inner = self.inner.lock().expect("fault rules lock");
        let id = format!("fault-{}", inner.next_id);
        inner.next_id += 1;
        let rule = FaultRule {
            id,
            method: req.method.map(|m| m.to_ascii_uppercase()),
            path_prefix: req.path_prefix,
            zone: req.zone,
            effect: req.effect,
            probability: req.probability,
            remaining: req.count,
            expires_at: req.ttl_seconds.map(|s| {
                let ttl = jiff::SignedDuration::from_secs(s.cast_signed());
                Timestamp::now() + ttl
            }),
            hits: 0,
        };
        inner.rules.push(rule.clone());
        Ok(rule)
    }

    pub fn list(&self) -> Vec<FaultRule> {
        let mut inner = self.inner.lock().expect("fault rules lock");
        expire(&mut inner.rules, Timestamp::now());
        inner.rules.clone()
    }

    /// Removes a rule; false when there was none with that ID.
    pub fn remove(&self, id: &str) -> bool {
        let mut inner = self.inner.lock().expect("fault rules lock");
        let before = inner.rules.len();
        inner.rules.retain(|r| r.id != id);
        inner.buckets.retain(|(rule, _), _| rule != id);
        inner.rules.len() != before
    }

    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("fault rules lock");
        inner.rules.clear();
        inner.buckets.retain(|(rule, _), _| rule == GLOBAL_THROTTLE);
    }

    /// Decides what happens to a request: how long to delay it, and whether to fail it.
    pub fn evaluate(&self, t: Target<'_>) -> (Duration, Option<ApiError>) {
        self.evaluate_at(t, Instant::now(), Timestamp::now(), || {
            rand::random::<f64>()
        })
    }

    /// [`Faults::evaluate`] with the clock and the dice supplied, for tests.
    pub fn evaluate_at(
        &self,
        t: Target<'_>,
        now: Instant,
        wall: Timestamp,
        mut roll: impl FnMut() -> f64,
    ) -> (Duration, Option<ApiError>) {
        let mut inner = self.inner.lock().expect("fault rules lock");
        let Inner { rules, buckets, .. } = &mut *inner;
        if t.zone.is_none()
            && let Some((rate, burst)) = self.global
        {
            let bucket = buckets
                .entry((GLOBAL_THROTTLE.to_owned(), t.project.to_owned()))
                .or_insert_with(|| TokenBucket::new(rate, burst, now));
            if let Err(retry_after) = bucket.try_take(now) {
                return (Duration::ZERO, Some(ApiError::Throttled { retry_after }));
            }
        }
        expire(rules, wall);
        let mut delay = Duration::ZERO;
        let mut failure = None;
        for rule in rules.iter_mut() {
            if !matches(rule, &t) || roll() >= rule.probability {
                continue;
            }
            let affected = match &rule.effect {
                FaultEffect::Latency { millis } => {
                    delay += Duration::from_millis(*millis);
                    true
                }
                FaultEffect::Error {
                    status,
                    retry_after_seconds,
                } => {
                    failure = Some(ApiError::Injected {
                        status: *status,
                        retry_after: retry_after_seconds.map(|s| Duration::from_secs(u64::from(s))),
                    });
                    true
                }
                FaultEffect::Throttle {
                    rate_per_second,
                    burst,
                } => {
                    let bucket = buckets
                        .entry((rule.id.clone(), t.project.to_owned()))
                        .or_insert_with(|| TokenBucket::new(*rate_per_second, *burst, now));
                    match bucket.try_take(now) {
                        Ok(()) => false,
                        Err(retry_after) => {
                            failure = Some(ApiError::Throttled { retry_after });
                            true
                        }
                    }
                }
            };
            if affected {
                rule.hits += 1;
                if let Some(n) = rule.remaining.as_mut() {
                    *n = n.saturating_sub(1);
                }
            }
            if failure.is_some() {
                break;
            }
        }
        rules.retain(|r| r.remaining != Some(0));
        (delay, failure)
    }
}

fn matches(rule: &FaultRule, t: &Target<'_>) -> bool {
    rule.zone.as_deref() == t.zone
        && rule
            .method
            .as_deref()
            .is_none_or(|m| m.eq_ignore_ascii_case(t.method))
        && t.path
            .starts_with(rule.path_prefix.as_deref().unwrap_or("/v1/"))
        && !t.path.starts_with("/v1/admin/")
}

fn expire(rules: &mut Vec<FaultRule>, now: Timestamp) {
    rules.retain(|r| r.expires_at.is_none_or(|at| at > now));
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target<'a>(method: &'a str, path: &'a str, zone: Option<&'a str>) -> Target<'a> {
        Target {
            method,
            path,
            zone,
            project: "p",
        }
    }

    fn req(effect: FaultEffect) -> CreateFaultRequest {
        CreateFaultRequest {
            method: None,
            path_prefix: None,
            zone: None,
            effect,
            probability: 1.0,
            count: None,
            ttl_seconds: None,
        }
    }

    fn zones() -> Vec<String> {
        vec!["zone-a".into(), "zone-b".into()]
    }

    #[test]
    fn rules_match_on_method_path_and_zone() {
        let f = Faults::new(None);
        let mut r = req(FaultEffect::Error {
            status: 503,
            retry_after_seconds: Some(2),
        });
        r.method = Some("post".into());
        r.path_prefix = Some("/v1/instances".into());
        f.add(r, &zones()).unwrap();
        let now = Instant::now();
        let wall = Timestamp::now();
        let eval = |t| f.evaluate_at(t, now, wall, || 0.0).1.map(|e| e.status());
        assert_eq!(eval(target("POST", "/v1/instances", None)), Some(503));
        assert_eq!(eval(target("GET", "/v1/instances", None)), None);
        assert_eq!(eval(target("POST", "/v1/load-balancers", None)), None);
        // Zoneless rules are not re-applied by the zonal check.
        assert_eq!(eval(target("POST", "/v1/instances", Some("zone-a"))), None);

        let mut z = req(FaultEffect::Error {
            status: 500,
            retry_after_seconds: None,
        });
        z.zone = Some("zone-b".into());
        let f = Faults::new(None);
        f.add(z, &zones()).unwrap();
        let eval = |t| f.evaluate_at(t, now, wall, || 0.0).1.map(|e| e.status());
        assert_eq!(
            eval(target("GET", "/v1/instances/x", Some("zone-b"))),
            Some(500)
        );
        assert_eq!(eval(target("GET", "/v1/instances/x", Some("zone-a"))), None);
        assert_eq!(eval(target("GET", "/v1/instances/x", None)), None);
    }

    #[test]
    fn count_probability_and_latency() {
        let f = Faults::new(None);
        let mut r = req(FaultEffect::Error {
            status: 500,
            retry_after_seconds: None,
        });
        r.count = Some(2);
        r.probability = 0.5;
        f.add(r, &zones()).unwrap();
        f.add(req(FaultEffect::Latency { millis: 30 }), &zones())
            .unwrap();
        let now = Instant::now();
        let wall = Timestamp::now();
        let t = target("GET", "/v1/zones", None);
        // A roll of 0.9 misses the 50% rule; latency still applies.
        let (delay, err) = f.evaluate_at(t, now, wall, || 0.9);
        assert_eq!(delay, Duration::from_millis(30));
        assert!(err.is_none());
        assert!(f.evaluate_at(t, now, wall, || 0.1).1.is_some());
        assert!(f.evaluate_at(t, now, wall, || 0.1).1.is_some());
        // Count exhausted: the rule is gone.
        assert!(f.evaluate_at(t, now, wall, || 0.1).1.is_none());
        assert_eq!(f.list().len(), 1);
    }

    #[test]
    fn throttle_is_per_project_and_admin_is_exempt() {
        let f = Faults::new(None);
        f.add(
            req(FaultEffect::Throttle {
                rate_per_second: 1.0,
                burst: 1,
            }),
            &zones(),
        )
        .unwrap();
        let now = Instant::now();
        let wall = Timestamp::now();
        let a = Target {
            method: "GET",
            path: "/v1/zones",
            zone: None,
            project: "a",
        };
        let b = Target { project: "b", ..a };
        assert!(f.evaluate_at(a, now, wall, || 0.0).1.is_none());
        let err = f.evaluate_at(a, now, wall, || 0.0).1.unwrap();
        assert_eq!(err.retry_after(), Some(Duration::from_secs(1)));
        assert!(f.evaluate_at(b, now, wall, || 0.0).1.is_none());
        let admin = Target {
            path: "/v1/admin/faults",
            ..a
        };
        assert!(f.evaluate_at(admin, now, wall, || 0.0).1.is_none());
    }

    #[test]
    fn global_throttle_applies_once_per_request() {
        let f = Faults::new(Some((1.0, 1)));
        let now = Instant::now();
        let wall = Timestamp::now();
        let t = target("GET", "/v1/zones", None);
        assert!(f.evaluate_at(t, now, wall, || 0.0).1.is_none());
        // The zonal check of the same request does not take a second token.
        assert!(
            f.evaluate_at(
                target("GET", "/v1/zones", Some("zone-a")),
                now,
                wall,
                || 0.0
            )
            .1
            .is_none()
        );
        assert!(matches!(
            f.evaluate_at(t, now, wall, || 0.0).1,
            Some(ApiError::Throttled { .. })
        ));
    }

    #[test]
    fn bad_rules_name_the_field() {
        let f = Faults::new(None);
        let cases = [
            (
                CreateFaultRequest {
                    probability: 1.5,
                    ..req(FaultEffect::Latency { millis: 1 })
                },
                "probability",
            ),
            (
                req(FaultEffect::Error {
                    status: 200,
                    retry_after_seconds: None,
                }),
                "effect.status",
            ),
            (
                CreateFaultRequest {
                    zone: Some("zone-z".into()),
                    ..req(FaultEffect::Latency { millis: 1 })
                },
                "zone",
            ),
            (
                CreateFaultRequest {
                    method: Some("FETCH".into()),
                    ..req(FaultEffect::Latency { millis: 1 })
                },
                "method",
            ),
            (
                CreateFaultRequest {
                    count: Some(0),
                    ..req(FaultEffect::Latency { millis: 1 })
                },
                "count",
            ),
            (
                req(FaultEffect::Throttle {
                    rate_per_second: 0.0,
                    burst: 1,
                }),
                "effect",
            ),
        ];
        for (r, field) in cases {
            let e = f.add(r, &zones()).unwrap_err();
            assert_eq!(e.field(), Some(field));
        }
    }
}
