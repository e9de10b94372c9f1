//! Auto hints for 1,000 Services x 100 endpoints (3 zones, CPU 20/16/14), timed against a
//! baseline in the same run: cloning the same slices (what any reconcile pays to get them).
//!
//! `cargo bench -p topology --bench hints [-- SERVICES ENDPOINTS]`

use std::hint::black_box;
use std::time::Instant;

use k8s_openapi::api::discovery::v1::EndpointSlice;
use serde_json::json;
use topology::auto::{SliceInfo, TopologyCache};

fn main() {
    let args: Vec<usize> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let services = args.first().copied().unwrap_or(1000);
    let per = args.get(1).copied().unwrap_or(100);
    let zones = ["zone-a", "zone-b", "zone-c"];
    let slice = |s: usize| -> EndpointSlice {
        let endpoints: Vec<_> = (0..per)
            .map(|i| {
                json!({"addresses": [format!("10.{}.{}.{}", s / 250, s % 250, i)],
                    "zone": zones[(i * 7 + s) % 3], "conditions": {"ready": true}})
            })
            .collect();
        serde_json::from_value(
            json!({"metadata": {}, "addressType": "IPv4", "endpoints": endpoints}),
        )
        .unwrap()
    };
    let inputs: Vec<SliceInfo> = (0..services)
        .map(|s| SliceInfo {
            service_key: format!("ns/svc-{s}"),
            address_type: "IPv4".into(),
            to_create: vec![slice(s)],
            ..SliceInfo::default()
        })
        .collect();
    let mut cache = TopologyCache::new();
    cache.set_ratios(Some(
        [("zone-a", 0.40), ("zone-b", 0.32), ("zone-c", 0.28)]
            .into_iter()
            .map(|(z, r)| (z.to_owned(), r))
            .collect(),
    ));
    let rounds = 5;
    let started = Instant::now();
    for _ in 0..rounds {
        black_box(inputs.clone());
    }
    let baseline = started.elapsed() / rounds;
    let started = Instant::now();
    let mut hinted = 0;
    for _ in 0..rounds {
        for si in inputs.clone() {
            let mut si = si;
            hinted += cache.add_hints(&mut si).len();
        }
    }
    let with_hints = started.elapsed() / rounds;
    let hints_only = with_hints.saturating_sub(baseline);
    println!("{services} Services x {per} endpoints, 3 zones ({rounds} rounds, {hinted} events)");
    println!(
        "baseline (clone the slices):   {:>10.1} ms",
        baseline.as_secs_f64() * 1e3
    );
    println!(
        "clone + Auto hints:             {:>10.1} ms",
        with_hints.as_secs_f64() * 1e3
    );
    println!(
        "Auto hints alone:               {:>10.1} ms = {:.1} us per Service, {:.0} Services/s, {:.2}x the baseline",
        hints_only.as_secs_f64() * 1e3,
        hints_only.as_secs_f64() * 1e6 / services as f64,
        services as f64 / hints_only.as_secs_f64().max(1e-9),
        hints_only.as_secs_f64() / baseline.as_secs_f64().max(1e-9),
    );
}
