//! `simctl scenario run FILE`: a topology experiment from a file (reference/topology.md §6.2):
//! nodes and their types per zone, a workload with replicas per zone, a client mix, traffic of
//! one class at a rate, a timeline of events, and the expected value of each metric per mode,
//! with tolerances. Each mode runs in a fresh sandbox; the report is a matrix of modes by
//! metrics, and `--out DIR` writes the time series as JSON and CSV and an SVG plot.
//!
//! This module is the file format, its checks and the reports (pure); [`run`] does the
//! experiment.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::traffic::{Class, Summary, Window};

pub mod run;

mod report;
pub use report::*;

/// A scenario file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Node groups: how many nodes of which instance type in which zone.
    pub nodes: Vec<NodeGroup>,
    pub workload: Workload,
    /// Client weights per zone; default every zone with nodes equally.
    #[serde(default)]
    pub clients: BTreeMap<String, u32>,
    #[serde(default)]
    pub traffic: TrafficSpec,
    /// The modes to run; default none, auto, prefer-same-zone, prefer-same-node.
    #[serde(default)]
    pub modes: Vec<Mode>,
    #[serde(default)]
    pub timeline: Vec<Step>,
    /// Expected values per mode and metric.
    #[serde(default)]
    pub expect: BTreeMap<Mode, BTreeMap<Metric, Expectation>>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct NodeGroup {
    pub zone: String,
    #[serde(rename = "type", default = "default_type")]
    pub instance_type: String,
    #[serde(default = "one")]
    pub count: u32,
}

fn default_type() -> String {
    "sim.medium".into()
}

fn one() -> u32 {
    1
}

/// The Deployment behind the Service: Ready replicas per zone.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    pub replicas: BTreeMap<String, u32>,
    /// CPU each Pod requests (`500m`), for placements that run out of room.
    #[serde(default)]
    pub cpu: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TrafficSpec {
    #[serde(default = "default_class")]
    pub class: Class,
    /// Requests per second, all clients together.
    #[serde(default = "default_rate")]
    pub rate: f64,
    #[serde(default = "default_duration", with = "duration")]
    pub duration: Duration,
    #[serde(default = "default_window", with = "duration")]
    pub window: Duration,
    /// Price of a cross-zone gigabyte.
    #[serde(default = "default_price")]
    pub price_per_gb: f64,
}

fn default_class() -> Class {
    Class::EastWest
}
fn default_rate() -> f64 {
    100.0
}
fn default_duration() -> Duration {
    Duration::from_secs(3)
}
fn default_window() -> Duration {
    Duration::from_secs(1)
}
fn default_price() -> f64 {
    0.01
}

impl Default for TrafficSpec {
    fn default() -> Self {
        Self {
            class: default_class(),
            rate: default_rate(),
            duration: default_duration(),
            window: default_window(),
            price_per_gb: default_price(),
        }
    }
}

/// Durations as `1s`, `500ms`, `2m`.
mod duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let s = String::deserialize(d)?;
        sim_common::parse_duration(&s).map_err(serde::de::Error::custom)
    }

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", d.as_millis()))
    }
}

/// A timeline event: `at: 1s`, `action: stop-zone zone-c`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Step {
    #[serde(with = "duration")]
    pub at: Duration,
    pub action: String,
}

/// What a timeline step does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Stop every instance of the zone.
    StopZone(String),
    /// Start them again.
    StartZone(String),
    /// Stop one node's instance.
    StopNode(String),
    /// Scale the workload to this many replicas (spread by the per-zone weights).
    Scale(u32),
}

impl Action {
    pub fn parse(s: &str) -> Result<Self, String> {
        let words: Vec<&str> = s.split_whitespace().collect();
        match words.as_slice() {
            ["stop-zone", z] => Ok(Self::StopZone((*z).into())),
            ["start-zone", z] => Ok(Self::StartZone((*z).into())),
            ["stop-node", n] => Ok(Self::StopNode((*n).into())),
            ["scale", n] => n
                .parse()
                .map(Self::Scale)
                .map_err(|_| format!("scale takes a replica count, not {n:?}")),
            _ => Err(format!(
                "unknown action {s:?}; one of: stop-zone ZONE, start-zone ZONE, stop-node NODE, scale N"
            )),
        }
    }
}

/// A routing mode: how the Service (and its load balancer) is configured.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    PartialOrd,
    Ord,
    Hash,
    Deserialize,
    Serialize,
    clap::ValueEnum,
)]
#[serde(rename_all = "kebab-case")]
pub enum Mode {
    /// No topology: every endpoint for every client.
    None,
    /// `service.kubernetes.io/topology-mode: Auto`.
    Auto,
    /// `trafficDistribution: PreferSameZone`.
    PreferSameZone,
    /// `trafficDistribution: PreferSameNode`.
    PreferSameNode,
    /// `trafficDistribution: PreferClose`.
    PreferClose,
    /// The load balancer's Envoy-style spill (`simcloud.dev/load-balancer-zone-affinity:
    /// balanced`), north-south only.
    Balanced,
}

impl Mode {
    pub const DEFAULT: [Mode; 4] = [
        Mode::None,
        Mode::Auto,
        Mode::PreferSameZone,
        Mode::PreferSameNode,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mode::None => "none",
            Mode::Auto => "auto",
            Mode::PreferSameZone => "prefer-same-zone",
            Mode::PreferSameNode => "prefer-same-node",
            Mode::PreferClose => "prefer-close",
            Mode::Balanced => "balanced",
        }
    }

    /// crates/topology's offline prediction of this mode, where it has one.
    pub fn predicted(self) -> Option<topology::predict::Mode> {
        match self {
            Mode::None => Some(topology::predict::Mode::None),
            Mode::Auto => Some(topology::predict::Mode::Auto),
            Mode::PreferSameZone | Mode::PreferClose | Mode::PreferSameNode => {
                Some(topology::predict::Mode::PreferSameZone)
            }
            Mode::Balanced => None,
        }
    }
}

/// A measured figure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    InZoneFraction,
    CrossZoneFraction,
    PeakToMean,
    Overload,
    ErrorFraction,
    /// 1 when the Service's slices carried hints once the workload was up, else 0.
    Hints,
}

impl Metric {
    pub fn name(self) -> &'static str {
        match self {
            Metric::InZoneFraction => "in_zone_fraction",
            Metric::CrossZoneFraction => "cross_zone_fraction",
            Metric::PeakToMean => "peak_to_mean",
            Metric::Overload => "overload",
            Metric::ErrorFraction => "error_fraction",
            Metric::Hints => "hints",
        }
    }
}

/// An expected value with its tolerance, over the requests sent in `[from, until)`.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Expectation {
    pub value: f64,
    #[serde(default)]
    pub tolerance: f64,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub from: Option<Duration>,
    #[serde(
        default,
        with = "opt_duration",
        skip_serializing_if = "Option::is_none"
    )]
    pub until: Option<Duration>,
}

mod opt_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        let s = Option::<String>::deserialize(d)?;
        s.map(|s| sim_common::parse_duration(&s).map_err(serde::de::Error::custom))
            .transpose()
    }

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&format!("{}ms", d.as_millis())),
            None => s.serialize_none(),
        }
    }
}

/// A file that does not make a scenario.
#[derive(Debug, thiserror::Error)]
pub enum ScenarioError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: String, message: String },
}

impl Scenario {
    /// Parses and checks a scenario file's text; errors name the file, the line and the field.
    pub fn parse(path: &str, text: &str) -> Result<Self, ScenarioError> {
        let invalid = |message: String| ScenarioError::Invalid {
            path: path.to_owned(),
            message,
        };
        let s: Scenario = serde_saphyr::from_str(text).map_err(|e| invalid(e.to_string()))?;
        s.check()
            .map_err(|m| invalid(format!("{m} (line {})", Self::line_of(text, &m))))?;
        Ok(s)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ScenarioError> {
        let p = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| ScenarioError::Read {
            path: p.clone(),
            source,
        })?;
        Self::parse(&p, &text)
    }

    /// The line of `text` the message's field path (its first word, `workload.replicas` or
    /// `timeline[1].action`) is on, for errors found after parsing: each segment is looked for
    /// below the previous one's line (list indexes are not counted).
    fn line_of(text: &str, message: &str) -> usize {
        let path = message.split([' ', ':']).next().unwrap_or("");
        let lines: Vec<&str> = text.lines().collect();
        let mut at = 0;
        for seg in path.split('.') {
            let key = seg.split('[').next().unwrap_or(seg);
            let Some(i) = (at..lines.len()).find(|&i| {
                let l = lines[i]
                    .trim_start()
                    .trim_start_matches("- ")
                    .trim_start_matches('{');
                l.starts_with(&format!("{key}:"))
            }) else {
                break;
            };
            at = i;
        }
        at + 1
    }

    /// The zones that have nodes, sorted.
    pub fn zones(&self) -> Vec<String> {
        let mut z: Vec<String> = self.nodes.iter().map(|n| n.zone.clone()).collect();
        z.sort();
        z.dedup();
        z
    }

    /// Semantic checks the types cannot express.
    pub fn check(&self) -> Result<(), String> {
        if self.nodes.is_empty() {
            return Err("nodes: at least one node group is needed".into());
        }
        if let Some((i, _)) = self.nodes.iter().enumerate().find(|(_, n)| n.count == 0) {
            return Err(format!("nodes[{i}].count: must be at least 1"));
        }
        let zones = self.zones();
        for z in self.workload.replicas.keys() {
            if !zones.contains(z) {
                return Err(format!(
                    "workload.replicas: zone {z:?} has no nodes (zones with nodes: {zones:?})"
                ));
            }
        }
        if let Some(cpu) = &self.workload.cpu
            && topology::auto::milli_cpu(cpu).is_none()
        {
            return Err(format!(
                "workload.cpu: {cpu:?} is not a CPU quantity (2, 500m)"
            ));
        }
        if self.workload.replicas.values().sum::<u32>() == 0 {
            return Err("workload.replicas: at least one replica is needed".into());
        }
        for z in self.clients.keys() {
            if !zones.contains(z) {
                return Err(format!(
                    "clients: zone {z:?} has no nodes (zones with nodes: {zones:?})"
                ));
            }
        }
        if !self.clients.is_empty() && self.clients.values().sum::<u32>() == 0 {
            return Err("clients: the weights add up to zero".into());
        }
        if self.traffic.rate.is_nan() || self.traffic.rate <= 0.0 {
            return Err("traffic.rate: must be above zero".into());
        }
        if self.traffic.duration.is_zero() {
            return Err("traffic.duration: must be above zero".into());
        }
        for (i, s) in self.timeline.iter().enumerate() {
            let a = Action::parse(&s.action).map_err(|e| format!("timeline[{i}].action: {e}"))?;
            if let Action::StopZone(z) | Action::StartZone(z) = &a
                && !zones.contains(z)
            {
                return Err(format!("timeline[{i}].action: no nodes in zone {z:?}"));
            }
            if s.at >= self.traffic.duration {
                return Err(format!(
                    "timeline[{i}].at: {:?} is not within the traffic's duration {:?}",
                    s.at, self.traffic.duration
                ));
            }
        }
        for m in self.modes() {
            if m == Mode::Balanced && self.traffic.class != Class::NorthSouth {
                return Err(
                    "modes: balanced is a load-balancer policy; it needs traffic.class north-south"
                        .into(),
                );
            }
        }
        for m in self.expect.keys() {
            if !self.modes().contains(m) {
                return Err(format!(
                    "expect: mode {} is not among the modes run",
                    m.name()
                ));
            }
        }
        Ok(())
    }

    pub fn modes(&self) -> Vec<Mode> {
        if self.modes.is_empty() {
            Mode::DEFAULT.to_vec()
        } else {
            self.modes.clone()
        }
    }

    /// Client weights: the file's, or every zone with nodes equally.
    pub fn client_weights(&self) -> Vec<(String, u32)> {
        if self.clients.is_empty() {
            self.zones().into_iter().map(|z| (z, 1)).collect()
        } else {
            self.clients.iter().map(|(z, w)| (z.clone(), *w)).collect()
        }
    }

    /// crates/topology's prediction for `mode`, from the nodes' CPU (`vcpus` per instance
    /// type), the replicas and the client mix.
    pub fn predict(
        &self,
        mode: Mode,
        vcpus: &BTreeMap<String, u32>,
    ) -> Option<topology::predict::Prediction> {
        let m = mode.predicted()?;
        let mut cpu: BTreeMap<String, u64> = BTreeMap::new();
        for n in &self.nodes {
            *cpu.entry(n.zone.clone()).or_default() +=
                u64::from(*vcpus.get(&n.instance_type)?) * 1000 * u64::from(n.count);
        }
        let clients = self
            .client_weights()
            .into_iter()
            .map(|(z, w)| (z, f64::from(w)))
            .collect();
        let inputs = topology::predict::Inputs {
            cpu,
            clients: Some(clients),
            endpoints: self
                .workload
                .replicas
                .iter()
                .map(|(z, c)| (z.clone(), *c as usize))
                .collect(),
        };
        Some(topology::predict::predict(&inputs, m))
    }
}

/// One mode's outcome.
#[derive(Debug, Clone, Serialize)]
pub struct ModeResult {
    pub mode: Mode,
    pub total: Summary,
    pub windows: Vec<Window>,
    /// The slices carried hints when traffic started.
    pub hints: bool,
    /// Seconds from creating the workload to traffic.
    pub setup_seconds: f64,
    pub checks: Vec<Check>,
    pub predicted_in_zone_fraction: Option<f64>,
    pub predicted_peak_to_mean: Option<f64>,
    #[serde(skip)]
    pub samples: Vec<crate::traffic::Sample>,
}

/// An expectation, checked.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Check {
    pub metric: Metric,
    pub expected: f64,
    pub tolerance: f64,
    pub measured: f64,
    pub pass: bool,
}

/// The value of `metric` over `s`.
pub fn metric_of(metric: Metric, s: &Summary, hints: bool) -> f64 {
    match metric {
        Metric::InZoneFraction => s.in_zone_fraction,
        Metric::CrossZoneFraction => s.cross_zone_fraction,
        Metric::PeakToMean => s.peak_to_mean,
        Metric::Overload => s.overload,
        Metric::ErrorFraction => {
            if s.requests == 0 {
                0.0
            } else {
                f64::from(s.errors) / f64::from(s.requests)
            }
        }
        Metric::Hints => f64::from(u8::from(hints)),
    }
}

/// Checks the expectations of one mode against its samples (pure).
pub fn check(
    expect: &BTreeMap<Metric, Expectation>,
    samples: &[crate::traffic::Sample],
    endpoints: &[String],
    hints: bool,
    price: f64,
) -> Vec<Check> {
    expect
        .iter()
        .map(|(metric, e)| {
            let from = e.from.map_or(f64::NEG_INFINITY, |d| d.as_secs_f64());
            let until = e.until.map_or(f64::INFINITY, |d| d.as_secs_f64());
            let part: Vec<_> = samples
                .iter()
                .filter(|s| s.at >= from && s.at < until)
                .cloned()
                .collect();
            let s = crate::traffic::summarize(&part, endpoints, price);
            let measured = metric_of(*metric, &s, hints);
            Check {
                metric: *metric,
                expected: e.value,
                tolerance: e.tolerance,
                measured,
                pass: (measured - e.value).abs() <= e.tolerance + 1e-9,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: &str = "name: t\nnodes:\n  - zone: zone-a\n  - zone: zone-b\n    type: sim.large\n    count: 2\nworkload:\n  replicas: {zone-a: 2, zone-b: 4}\n";

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let s = Scenario::parse("t.yaml", S).unwrap();
        assert_eq!(s.nodes[0].instance_type, "sim.medium");
        assert_eq!(s.nodes[1].count, 2);
        assert_eq!(s.traffic.class, Class::EastWest);
        assert_eq!(s.modes(), Mode::DEFAULT.to_vec());
        assert_eq!(
            s.client_weights(),
            vec![("zone-a".into(), 1), ("zone-b".into(), 1)]
        );
    }

    #[test]
    fn bad_files_name_the_field_and_line() {
        let cases: &[(&str, &[&str])] = &[
            (
                "name: t\nnodes:\n  - zone: a\n    cuont: 2\nworkload: {replicas: {a: 1}}\n",
                &["line 4", "cuont"],
            ),
            (
                "name: t\nnodes:\n  - zone: a\n    count: two\nworkload: {replicas: {a: 1}}\n",
                &["line 4", "count: two"],
            ),
            (
                "name: t\nnodes:\n  - zone: a\nworkload:\n  replicas: {b: 1}\n",
                &["workload.replicas", "\"b\" has no nodes", "line 5"],
            ),
            (
                "name: t\nnodes:\n  - zone: a\nworkload: {replicas: {a: 1}}\ntimeline:\n  - at: 1s\n    action: explode\n",
                &["timeline[0].action", "unknown action", "line 7"],
            ),
            (
                "name: t\nnodes:\n  - zone: a\nworkload: {replicas: {a: 1}}\ntraffic: {duration: soon}\n",
                &["line 5", "soon"],
            ),
            (
                "name: t\nnodes:\n  - zone: a\nworkload: {replicas: {a: 1}}\nmodes: [balanced]\n",
                &["modes: balanced", "north-south"],
            ),
            (
                "name: t\nnodes:\n  - zone: a\nworkload: {replicas: {a: 1}}\nmodes: [none]\nexpect:\n  auto: {hints: {value: 1}}\n",
                &["expect: mode auto"],
            ),
        ];
        for (text, wants) in cases {
            let e = Scenario::parse("f.yaml", text).unwrap_err().to_string();
            for w in *wants {
                assert!(e.contains(w), "{w:?} not in: {e}");
            }
            assert!(e.starts_with("f.yaml: "), "{e}");
        }
    }

    #[test]
    fn predictions_follow_the_kep_example() {
        let s = Scenario::parse(
            "s2",
            "name: s2\nnodes:\n  - {zone: zone-a, type: big}\n  - {zone: zone-b, type: mid}\n  - {zone: zone-c, type: small}\nworkload:\n  replicas: {zone-a: 2, zone-b: 4, zone-c: 4}\nclients: {zone-a: 40, zone-b: 32, zone-c: 28}\n",
        )
        .unwrap();
        let vcpus: BTreeMap<String, u32> = [("big", 20), ("mid", 16), ("small", 14)]
            .map(|(k, v)| (k.to_owned(), v))
            .into();
        let auto = s.predict(Mode::Auto, &vcpus).unwrap();
        assert!((auto.in_zone - 0.8).abs() < 1e-9, "{auto:?}");
        let psz = s.predict(Mode::PreferSameZone, &vcpus).unwrap();
        assert!((psz.peak_to_mean - 2.0).abs() < 1e-9, "{psz:?}");
        assert!(s.predict(Mode::Balanced, &vcpus).is_none());
    }

    #[test]
    fn checks_use_their_time_range() {
        use crate::traffic::Sample;
        let sample = |at: f64, served: &str| Sample {
            at,
            client_zone: "zone-a".into(),
            node: Some(("n".into(), "zone-a".into())),
            pod: Some(("p".into(), "n".into(), served.into())),
            ..Default::default()
        };
        let samples = vec![
            sample(0.5, "zone-b"),
            sample(1.5, "zone-a"),
            sample(1.6, "zone-a"),
        ];
        let expect: BTreeMap<Metric, Expectation> = [(
            Metric::InZoneFraction,
            Expectation {
                value: 1.0,
                tolerance: 0.0,
                from: Some(Duration::from_secs(1)),
                until: None,
            },
        )]
        .into();
        let c = check(&expect, &samples, &[], false, 0.0);
        assert!(c[0].pass, "{c:?}");
        let all: BTreeMap<Metric, Expectation> = [(
            Metric::InZoneFraction,
            Expectation {
                value: 1.0,
                tolerance: 0.1,
                from: None,
                until: None,
            },
        )]
        .into();
        assert!(!check(&all, &samples, &[], false, 0.0)[0].pass);
    }
}
