//! Wall time of one scenario (S2, three modes, each in a fresh kube-sim sandbox), against a
//! baseline measured in the same process: starting and stopping the same sandbox with no
//! workload. Prints the figures; asserts nothing (these machines are shared and noisy).
//!
//! cargo bench -p simctl --bench scenario

use std::path::PathBuf;
use std::time::{Duration, Instant};

use simctl::scenario::Scenario;
use simctl::scenario::run::{RunArgs, node_specs};
use simctl::up::{ControlPlaneKind, Sandbox};

fn main() -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("../../scenarios/s02-uneven-endpoints.yaml");
        let args = RunArgs {
            file: file.clone(),
            modes: Vec::new(),
            out: None,
            address_block: 196,
            control_plane: ControlPlaneKind::KubeSim,
            setup_timeout: Duration::from_secs(90),
            log_filter: "error".into(),
        };
        let s = Scenario::load(&file)?;
        // Baseline: the sandbox alone (cloud-sim, kube-sim, kubelets, ccm; six nodes initialised).
        let up = simctl::scenario::run::up_args(&s, &args, simctl::scenario::Mode::None);
        let t = Instant::now();
        let sandbox = Sandbox::start(&up, &node_specs(&s)).await?;
        sandbox.shutdown().await;
        let baseline = t.elapsed();
        let _ = std::fs::remove_dir_all(&up.data_dir);

        let t = Instant::now();
        let (_, results) = simctl::scenario::run::run(&args).await?;
        let wall = t.elapsed();
        let traffic = s.traffic.duration.as_secs_f64();
        println!(
            "scenario {} ({} modes, {traffic:.1}s of traffic each)",
            s.name,
            results.len()
        );
        println!(
            "  baseline (sandbox up + down, no workload): {:.2}s",
            baseline.as_secs_f64()
        );
        for r in &results {
            println!(
                "  mode {:<17} workload served after {:.2}s, {} requests",
                r.mode.name(),
                r.setup_seconds,
                r.total.requests
            );
        }
        let per_mode = wall.as_secs_f64() / results.len() as f64;
        println!(
            "  wall {:.2}s: {per_mode:.2}s per mode = {:.2}x the baseline, {:.2}x the traffic time",
            wall.as_secs_f64(),
            per_mode / baseline.as_secs_f64(),
            per_mode / traffic
        );
        anyhow::Ok(())
    })
}
