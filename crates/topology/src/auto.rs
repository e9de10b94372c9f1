//! `service.kubernetes.io/topology-mode: Auto`: the EndpointSlice controller's topology cache
//! (`k8s.io/endpointslice/topologycache`, Kubernetes 1.37), ported.
//!
//! [`TopologyCache::set_nodes`] turns Nodes into zone CPU ratios; [`TopologyCache::add_hints`]
//! hints the ready endpoints of one Service's slices so that each zone gets a share of
//! endpoints close to its CPU share, never below `desired / 1.2`, or removes every hint with the
//! reason upstream gives.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::api::discovery::v1::{Endpoint, EndpointHints, EndpointSlice, ForZone};

use crate::{LABEL_ZONE, endpoint_ready};

/// Upstream's `overloadThreshold`: an endpoint may get 20% more than an even share.
pub const OVERLOAD_THRESHOLD: f64 = 0.2;

/// Event reasons and messages, as upstream words them.
pub const REASON_DISABLED: &str = "TopologyAwareHintsDisabled";
pub const REASON_ENABLED: &str = "TopologyAwareHintsEnabled";
pub const NO_ZONE_SPECIFIED: &str = "One or more endpoints do not have a zone specified";
pub const NO_ALLOCATED_HINTS_FOR_ZONES: &str = "No hints allocated for zones";
pub const HINTS_ENABLED: &str = "Topology Aware Hints has been enabled";
pub const HINTS_DISABLED: &str = "Topology Aware Hints has been disabled";
pub const INSUFFICIENT_NODE_INFO: &str =
    "Insufficient Node information: allocatable CPU or zone not specified on one or more nodes";
pub const NODES_READY_IN_ONE_ZONE_ONLY: &str = "Nodes only ready in one zone";
pub const INSUFFICIENT_NUMBER_OF_ENDPOINTS: &str = "Insufficient number of endpoints";
pub const MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD: &str = "Unable to allocate minimum required endpoints to each zone without exceeding overload threshold";

/// An event for the Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

impl Event {
    /// A `TopologyAwareHintsDisabled` warning.
    pub fn disabled(message: impl Into<String>) -> Self {
        Self {
            warning: true,
            reason: REASON_DISABLED,
            message: message.into(),
        }
    }
}

/// upstream's `FormatWithAddressType`.
pub fn with_address_type(message: &str, address_type: &str) -> String {
    format!("{message}, addressType: {address_type}")
}

/// One zone's share of a Service's ready endpoints.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Allocation {
    pub minimum: usize,
    pub maximum: usize,
    /// max(ratio x N, minimum): what the redistribution aims at.
    pub desired: f64,
}

/// A Service's slices as one reconcile sees them (upstream's `SliceInfo`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SliceInfo {
    pub service_key: String,
    pub address_type: String,
    pub to_create: Vec<EndpointSlice>,
    pub to_update: Vec<EndpointSlice>,
    pub unchanged: Vec<EndpointSlice>,
}

/// Endpoints hinted per zone.
pub type ZoneCounts = BTreeMap<String, usize>;

/// Parses a CPU quantity (`"2"`, `"1500m"`, `"0.5"`) into millicores.
pub fn milli_cpu(q: &str) -> Option<u64> {
    let q = q.trim();
    if let Some(m) = q.strip_suffix('m') {
        return m.parse::<u64>().ok();
    }
    let cores: f64 = q.parse().ok()?;
    (cores >= 0.0).then(|| (cores * 1000.0).ceil() as u64)
}

fn node_ready(n: &Node) -> bool {
    n.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .and_then(|cs| cs.iter().find(|c| c.type_ == "Ready"))
        .is_some_and(|c| c.status == "True")
}

fn excluded(n: &Node) -> bool {
    n.metadata.labels.as_ref().is_some_and(|l| {
        l.contains_key("node-role.kubernetes.io/control-plane")
            || l.contains_key("node-role.kubernetes.io/master")
    })
}

/// What a Node contributes to the zone ratios.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeCpu {
    /// Not Ready, or a control-plane node: left out.
    Skipped,
    /// Eligible but without a zone or CPU: the node information is insufficient (for the whole
    /// cluster).
    Unknown,
    /// Its zone and allocatable millicores.
    Counted { zone: String, milli_cpu: u64 },
}

/// What `n` contributes to the zone ratios, as upstream's `SetNodes` decides.
pub fn node_cpu(n: &Node) -> NodeCpu {
    if excluded(n) || !node_ready(n) {
        return NodeCpu::Skipped;
    }
    let zone = n
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(LABEL_ZONE))
        .filter(|z| !z.is_empty());
    let cpu = n
        .status
        .as_ref()
        .and_then(|s| s.allocatable.as_ref())
        .and_then(|a| a.get("cpu"))
        .and_then(|q| milli_cpu(&q.0))
        .unwrap_or(0);
    match zone {
        Some(z) if cpu > 0 => NodeCpu::Counted {
            zone: z.clone(),
            milli_cpu: cpu,
        },
        _ => NodeCpu::Unknown,
    }
}

/// The topology cache: zone CPU ratios, and the hints each Service got.
#[derive(Debug, Default, Clone)]
pub struct TopologyCache {
    sufficient_node_info: bool,
    cpu_by_zone: Option<BTreeMap<String, u64>>,
    ratios: Option<BTreeMap<String, f64>>,
    endpoints_by_service: BTreeMap<String, BTreeMap<String, ZoneCounts>>,
    hints_populated: BTreeSet<String>,
}

impl TopologyCache {
    pub fn new() -> Self {
        Self::default()
    }

    /// The zone CPU ratios (`None`: insufficient node information).
    pub fn ratios(&self) -> Option<&BTreeMap<String, f64>> {
        self.ratios.as_ref()
    }

    /// Millicores per zone, when the ratios are known.
    pub fn cpu_by_zone(&self) -> Option<&BTreeMap<String, u64>> {
        self.cpu_by_zone.as_ref()
    }

    pub fn sufficient_node_info(&self) -> bool {
        self.sufficient_node_info
    }

    /// Hints per zone per address type that `service` got, if any.
    pub fn hints_of(&self, service: &str) -> Option<&BTreeMap<String, ZoneCounts>> {
        self.endpoints_by_service.get(service)
    }

    pub fn has_populated_hints(&self, service: &str) -> bool {
        self.hints_populated.contains(service)
    }

    /// Recomputes the zone ratios from `nodes`: ready nodes that are not control-plane nodes;
    /// one without a zone or CPU makes the node information insufficient for the whole
    /// cluster, as do fewer than two zones.
    pub fn set_nodes<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) {
        let mut cpu_by_zone: BTreeMap<String, u64> = BTreeMap::new();
        let mut sufficient = true;
        let mut total = 0u64;
        for n in nodes {
            match node_cpu(n) {
                NodeCpu::Skipped => {}
                NodeCpu::Unknown => {
                    cpu_by_zone.clear();
                    sufficient = false;
                    break;
                }
                NodeCpu::Counted { zone, milli_cpu } => {
                    total += milli_cpu;
                    *cpu_by_zone.entry(zone).or_default() += milli_cpu;
                }
            }
        }
        if total == 0 || !sufficient || cpu_by_zone.len() < 2 {
            self.sufficient_node_info = false;
            self.cpu_by_zone = None;
            self.ratios = None;
        } else {
            self.sufficient_node_info = true;
            self.ratios = Some(
                cpu_by_zone
                    .iter()
                    .map(|(z, c)| (z.clone(), *c as f64 / total as f64))
                    .collect(),
            );
            self.cpu_by_zone = Some(cpu_by_zone);
        }
    }

    /// Sets the ratios directly (tests and predictions).
    pub fn set_ratios(&mut self, ratios: Option<BTreeMap<String, f64>>) {
        self.sufficient_node_info = ratios.is_some();
        self.ratios = ratios;
    }

    /// Upstream's `getAllocations` for `n` ready endpoints.
    pub fn allocations(&self, n: usize) -> Result<BTreeMap<String, Allocation>, Event> {
        allocations(self.ratios.as_ref(), n)
    }

    /// The Services whose hints no longer fit the ratios (to requeue after a node change).
    pub fn overloaded_services(&self) -> Vec<String> {
        self.endpoints_by_service
            .iter()
            .filter(|(_, by_type)| {
                by_type
                    .values()
                    .any(|counts| service_overloaded(counts, self.ratios.as_ref()))
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Upstream's `RemoveHints`: forgets the Service's hinted counts for the address type.
    pub fn remove_hints(&mut self, service: &str, address_type: &str) {
        if let Some(by_type) = self.endpoints_by_service.get_mut(service) {
            by_type.remove(address_type);
            if by_type.is_empty() {
                self.endpoints_by_service.remove(service);
            }
        }
        self.hints_populated.remove(service);
    }

    fn disable(&mut self, si: &mut SliceInfo, message: &str) -> Event {
        self.remove_hints(&si.service_key, &si.address_type);
        remove_hints_from_slices(si);
        Event::disabled(with_address_type(message, &si.address_type))
    }

    /// Upstream's `AddHints`: hints the ready endpoints of `si`'s created and updated slices
    /// (unchanged slices keep valid hints, else move to the updates), or removes every hint.
    /// Returns the events for the Service.
    pub fn add_hints(&mut self, si: &mut SliceInfo) -> Vec<Event> {
        let total = total_ready(si);
        let allocations = match self.allocations(total) {
            Ok(a) => a,
            Err(e) => return vec![self.disable(si, &e.message)],
        };
        let mut hinted = allocated_hints_by_zone(si, &allocations);
        let mut events = Vec::new();
        for slice in si.to_create.iter_mut().chain(si.to_update.iter_mut()) {
            for e in &mut slice.endpoints {
                if !endpoint_ready(e) {
                    e.hints = None;
                    continue;
                }
                let Some(zone) = e.zone.clone().filter(|z| !z.is_empty()) else {
                    events.push(self.disable(si, NO_ZONE_SPECIFIED));
                    return events;
                };
                *hinted.entry(zone.clone()).or_default() += 1;
                e.hints = Some(zone_hint(&zone));
            }
        }
        let (giving, receiving) = giving_and_receiving_zones(&allocations, &hinted);
        let redistributions = redistribute(
            si.to_create.iter_mut().chain(si.to_update.iter_mut()),
            giving,
            receiving,
        );
        for (zone, diff) in redistributions {
            let c = hinted.entry(zone).or_default();
            *c = (*c as i64 + diff).max(0) as usize;
        }
        if hinted.is_empty() {
            events.push(self.disable(si, NO_ALLOCATED_HINTS_FOR_ZONES));
            return events;
        }
        let enabled = self.hints_populated.contains(&si.service_key);
        self.endpoints_by_service
            .entry(si.service_key.clone())
            .or_default()
            .insert(si.address_type.clone(), hinted);
        self.hints_populated.insert(si.service_key.clone());
        if !enabled {
            events.push(Event {
                warning: false,
                reason: REASON_ENABLED,
                message: with_address_type(HINTS_ENABLED, &si.address_type),
            });
        }
        events
    }
}

fn zone_hint(zone: &str) -> EndpointHints {
    EndpointHints {
        for_zones: Some(vec![ForZone {
            name: zone.to_owned(),
        }]),
        for_nodes: None,
    }
}

fn total_ready(si: &SliceInfo) -> usize {
    si.to_create
        .iter()
        .chain(&si.to_update)
        .chain(&si.unchanged)
        .flat_map(|s| &s.endpoints)
        .filter(|e| endpoint_ready(e))
        .count()
}

/// Upstream's `getAllocations`.
pub fn allocations(
    ratios: Option<&BTreeMap<String, f64>>,
    n: usize,
) -> Result<BTreeMap<String, Allocation>, Event> {
    let Some(ratios) = ratios else {
        return Err(Event::disabled(INSUFFICIENT_NODE_INFO));
    };
    let zones = ratios.len();
    if zones < 2 {
        return Err(Event::disabled(NODES_READY_IN_ONE_ZONE_ONLY));
    }
    if zones > n {
        return Err(Event::disabled(format!(
            "{INSUFFICIENT_NUMBER_OF_ENDPOINTS} ({n} endpoints, {zones} zones)"
        )));
    }
    let mut remaining = n as i64;
    let mut min_total = 0usize;
    let mut out = BTreeMap::new();
    for (zone, ratio) in ratios {
        let desired = ratio * n as f64;
        let minimum = (desired * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil() as usize;
        out.insert(
            zone.clone(),
            Allocation {
                minimum,
                maximum: 0,
                desired: desired.max(minimum as f64),
            },
        );
        min_total += minimum;
        remaining -= minimum as i64;
        if remaining < 0 {
            return Err(Event::disabled(format!(
                "{MIN_ALLOCATION_EXCEEDS_OVERLOAD_THRESHOLD} ({n} endpoints, {zones} zones)"
            )));
        }
    }
    for a in out.values_mut() {
        a.maximum = a.minimum + n - min_total;
    }
    Ok(out)
}

/// Upstream's `RemoveHintsFromSlices`: no hints on the created and updated slices; unchanged
/// slices with hints move to the updates without them.
pub fn remove_hints_from_slices(si: &mut SliceInfo) {
    for slice in si.to_create.iter_mut().chain(si.to_update.iter_mut()) {
        for e in &mut slice.endpoints {
            e.hints = None;
        }
    }
    let mut kept = Vec::new();
    for mut slice in std::mem::take(&mut si.unchanged) {
        if slice.endpoints.iter().any(|e| e.hints.is_some()) {
            for e in &mut slice.endpoints {
                e.hints = None;
            }
            si.to_update.push(slice);
        } else {
            kept.push(slice);
        }
    }
    si.unchanged = kept;
}

/// Upstream's `getHintsByZone`: the hints of an unchanged slice per zone, or `None` when the
/// slice must be rewritten (a ready endpoint without hints, a hint for a zone not allocated,
/// or a zone over its maximum).
fn hints_by_zone(
    slice: &EndpointSlice,
    already: &ZoneCounts,
    allocations: &BTreeMap<String, Allocation>,
) -> Option<ZoneCounts> {
    let mut by_zone = ZoneCounts::new();
    for e in slice.endpoints.iter().filter(|e| endpoint_ready(e)) {
        let zones = e
            .hints
            .as_ref()
            .and_then(|h| h.for_zones.as_ref())
            .filter(|z| !z.is_empty())?;
        for z in zones {
            if !allocations.contains_key(&z.name) {
                return None;
            }
            *by_zone.entry(z.name.clone()).or_default() += 1;
        }
    }
    for (zone, n) in &by_zone {
        let a = allocations.get(zone)?;
        if n + already.get(zone).copied().unwrap_or(0) > a.maximum {
            return None;
        }
    }
    Some(by_zone)
}

/// Upstream's `getAllocatedHintsByZone`: keeps the unchanged slices whose hints still fit and
/// counts them; the others move to the updates.
fn allocated_hints_by_zone(
    si: &mut SliceInfo,
    allocations: &BTreeMap<String, Allocation>,
) -> ZoneCounts {
    let mut counts = ZoneCounts::new();
    let mut kept = Vec::new();
    for slice in std::mem::take(&mut si.unchanged) {
        match hints_by_zone(&slice, &counts, allocations) {
            None => si.to_update.push(slice),
            Some(by_zone) => {
                for (z, n) in by_zone {
                    *counts.entry(z).or_default() += n;
                }
                kept.push(slice);
            }
        }
    }
    si.unchanged = kept;
    counts
}

/// The zone with the most left, first in sorted order on a tie (Go: map order).
fn most(zones: &BTreeMap<String, f64>) -> (Option<String>, f64) {
    let mut best = (None, 0.0);
    for (z, n) in zones {
        if *n > best.1 {
            best = (Some(z.clone()), *n);
        }
    }
    best
}

/// Upstream's `getGivingAndReceivingZones`: how many endpoints each zone gives and receives.
pub fn giving_and_receiving_zones(
    allocations: &BTreeMap<String, Allocation>,
    hinted: &ZoneCounts,
) -> (BTreeMap<String, usize>, BTreeMap<String, usize>) {
    let mut giving_desired = BTreeMap::new();
    let mut receiving_desired = BTreeMap::new();
    for (zone, a) in allocations {
        let have = hinted.get(zone).copied().unwrap_or(0) as f64;
        if have > a.desired {
            giving_desired.insert(zone.clone(), have - a.desired);
        } else if have < a.desired {
            receiving_desired.insert(zone.clone(), a.desired - have);
        }
    }
    let mut giving = BTreeMap::new();
    let mut receiving = BTreeMap::new();
    loop {
        let (gz, give) = most(&giving_desired);
        let (rz, receive) = most(&receiving_desired);
        let (Some(gz), Some(rz)) = (gz, rz) else {
            break;
        };
        if (give < 1.0 && receive < 1.0) || give < 0.5 || receive < 0.5 {
            break;
        }
        *giving.entry(gz.clone()).or_default() += 1;
        *giving_desired.get_mut(&gz).expect("chosen from the map") -= 1.0;
        *receiving.entry(rz.clone()).or_default() += 1;
        *receiving_desired.get_mut(&rz).expect("chosen from the map") -= 1.0;
    }
    (giving, receiving)
}

/// Upstream's `redistributeHints`: re-hints endpoints of giving zones, in order, to the first
/// receiving zone (sorted) that still needs one. Returns the change per zone.
pub fn redistribute<'a>(
    slices: impl Iterator<Item = &'a mut EndpointSlice>,
    mut giving: BTreeMap<String, usize>,
    mut receiving: BTreeMap<String, usize>,
) -> BTreeMap<String, i64> {
    let mut changes: BTreeMap<String, i64> = BTreeMap::new();
    for slice in slices {
        for e in &mut slice.endpoints {
            if !endpoint_ready(e) {
                e.hints = None;
                continue;
            }
            if giving.is_empty() || receiving.is_empty() {
                return changes;
            }
            let Some(zone) = e.zone.clone().filter(|z| !z.is_empty()) else {
                continue;
            };
            let Some(to_give) = giving.get(&zone).copied().filter(|n| *n > 0) else {
                continue;
            };
            let Some(to) = receiving
                .iter()
                .find(|(_, n)| **n > 0)
                .map(|(z, _)| z.clone())
            else {
                continue;
            };
            e.hints = Some(zone_hint(&to));
            if to_give == 1 {
                giving.remove(&zone);
            } else {
                giving.insert(zone.clone(), to_give - 1);
            }
            let left = receiving[&to];
            if left == 1 {
                receiving.remove(&to);
            } else {
                receiving.insert(to.clone(), left - 1);
            }
            *changes.entry(to).or_default() += 1;
            *changes.entry(zone).or_default() -= 1;
        }
    }
    changes
}

/// Upstream's `serviceOverloaded`: a Service's hints leave a zone without endpoints, or with
/// fewer than `ceil(total x ratio / 1.2)`.
pub fn service_overloaded(counts: &ZoneCounts, ratios: Option<&BTreeMap<String, f64>>) -> bool {
    if counts.is_empty() {
        return false;
    }
    let Some(ratios) = ratios.filter(|r| !r.is_empty()) else {
        return true;
    };
    let total: f64 = counts.values().map(|n| *n as f64).sum();
    ratios.iter().any(|(zone, ratio)| match counts.get(zone) {
        None => true,
        Some(n) => {
            let min = (total * ratio * (1.0 / (1.0 + OVERLOAD_THRESHOLD))).ceil();
            (*n as f64) < min
        }
    })
}

/// The zone each ready endpoint is hinted for, in slice order (for tests and reports).
pub fn hinted_zones(slices: &[EndpointSlice]) -> Vec<Option<String>> {
    slices
        .iter()
        .flat_map(|s| &s.endpoints)
        .filter(|e| endpoint_ready(e))
        .map(|e: &Endpoint| {
            e.hints
                .as_ref()
                .and_then(|h| h.for_zones.as_ref())
                .and_then(|z| z.first())
                .map(|z| z.name.clone())
        })
        .collect()
}
