//! The scenario files of `scenarios/` run as tests: `simctl scenario run` must exit 0, i.e. every
//! measured value within its file's tolerance. Each run gets its own loopback block.

use std::path::PathBuf;
use std::process::Output;

use tokio::process::Command;

fn file(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../../scenarios")
        .join(name)
}

async fn scenario(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_simctl"))
        .arg("scenario")
        .arg("run")
        .args(args)
        .env("SIMCTL_LOG", "warn")
        .output()
        .await
        .unwrap()
}

async fn passes(name: &str, block: u8, extra: &[&str]) {
    let path = file(name);
    let block = block.to_string();
    let mut args = vec![path.to_str().unwrap(), "--address-block", &block];
    args.extend_from_slice(extra);
    let out = scenario(&args).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{name} failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains(", 0 failed"), "{stdout}");
    eprintln!("{stdout}");
}

#[tokio::test]
async fn s01_balanced() {
    passes("s01-balanced.yaml", 100, &[]).await;
}

#[tokio::test]
async fn s02_uneven_endpoints_reproduces_the_keps_example() {
    let out = std::env::temp_dir().join(format!("simctl-s02-{}", std::process::id()));
    passes(
        "s02-uneven-endpoints.yaml",
        104,
        &["--out", out.to_str().unwrap()],
    )
    .await;
    // The time series and the plot are written, one row per mode and window: 600 requests at
    // 200/s fill three 1 s windows (a loaded machine may push the last few into a fourth).
    let csv = std::fs::read_to_string(out.join("s02-uneven-endpoints.csv")).unwrap();
    let auto: Vec<&str> = csv.lines().filter(|l| l.starts_with("auto,")).collect();
    assert!((3..=4).contains(&auto.len()), "{csv}");
    let requests: u32 = auto
        .iter()
        .map(|l| l.split(',').nth(3).unwrap().parse::<u32>().unwrap())
        .sum();
    assert_eq!(requests, 600, "{csv}");
    let svg = std::fs::read_to_string(out.join("s02-uneven-endpoints.svg")).unwrap();
    assert_eq!(
        svg.matches("<polyline").count(),
        6,
        "two panels, three modes"
    );
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(out.join("s02-uneven-endpoints.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["results"][1]["mode"], "auto");
    assert_eq!(json["results"][1]["hints"], true);
    let _ = std::fs::remove_dir_all(out);
}

#[tokio::test]
async fn s03_infeasible_auto_removes_its_hints() {
    passes("s03-infeasible.yaml", 128, &[]).await;
}

#[tokio::test]
async fn s07_node_loss_keeps_auto_feasible() {
    passes("s07-node-loss.yaml", 136, &[]).await;
}

#[tokio::test]
async fn s13_north_south_stays_in_zone_on_every_hop() {
    passes("s13-north-south.yaml", 132, &[]).await;
}

#[tokio::test]
async fn s04_empty_zone() {
    passes("s04-empty-zone.yaml", 108, &[]).await;
}

#[tokio::test]
async fn s05_skewed_clients_overload_auto() {
    passes("s05-skewed-clients.yaml", 112, &[]).await;
}

#[tokio::test]
async fn s06_zone_failure() {
    passes("s06-zone-failure.yaml", 116, &[]).await;
}

#[tokio::test]
async fn a_failed_expectation_fails_the_run() {
    // S1 with the none mode expected to stay in zone: the run reports the miss and exits 1.
    let text = std::fs::read_to_string(file("s01-balanced.yaml"))
        .unwrap()
        .replace(
            "in_zone_fraction: {value: 0.333, tolerance: 0.03}",
            "in_zone_fraction: {value: 0.9, tolerance: 0.03}",
        );
    let path = std::env::temp_dir().join(format!("simctl-s01-wrong-{}.yaml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    let out = scenario(&[
        path.to_str().unwrap(),
        "--address-block",
        "120",
        "--modes",
        "none",
    ])
    .await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains("FAIL") && stdout.contains("1 failed"),
        "{stdout}"
    );
    let _ = std::fs::remove_file(path);
}

#[tokio::test]
async fn bad_files_and_impossible_placements_are_reported() {
    let dir = std::env::temp_dir().join(format!("simctl-bad-scenarios-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        "name: bad\nnodes:\n  - zone: zone-a\n    cuont: 2\nworkload: {replicas: {zone-a: 1}}\n",
    )
    .unwrap();
    let out = scenario(&[bad.to_str().unwrap()]).await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("bad.yaml") && err.contains("line 4") && err.contains("cuont"),
        "{err}"
    );
    // Three half-CPU Pods on one 1-CPU node: the third never fits, and the run says why
    // instead of waiting for it.
    let full = dir.join("full.yaml");
    std::fs::write(
        &full,
        "name: full\nnodes:\n  - {zone: zone-a, type: sim.small}\nworkload: {replicas: {zone-a: 3}, cpu: 500m}\nmodes: [none]\n",
    )
    .unwrap();
    // A setup timeout far beyond the test's patience: only the scheduler's report ends it.
    let out = scenario(&[
        full.to_str().unwrap(),
        "--address-block",
        "124",
        "--setup-timeout",
        "1h",
    ])
    .await;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("cannot be placed") && err.contains("Insufficient cpu"),
        "{err}"
    );
    let _ = std::fs::remove_dir_all(dir);
}

/// Control-plane tier: the same files against the real kube-apiserver, kube-scheduler and
/// kube-controller-manager (whose EndpointSlice controller computes the hints), with the same
/// expectations.
async fn passes_on_the_real_control_plane(name: &str, block: u8) {
    if control_plane::binaries_for_test().is_none() {
        return;
    }
    passes(name, block, &["--control-plane", "real"]).await;
}

#[tokio::test]
async fn s02_real_control_plane() {
    passes_on_the_real_control_plane("s02-uneven-endpoints.yaml", 140).await;
}

#[tokio::test]
async fn s04_real_control_plane() {
    passes_on_the_real_control_plane("s04-empty-zone.yaml", 144).await;
}

#[tokio::test]
async fn s05_real_control_plane() {
    passes_on_the_real_control_plane("s05-skewed-clients.yaml", 148).await;
}

#[tokio::test]
async fn s13_real_control_plane() {
    passes_on_the_real_control_plane("s13-north-south.yaml", 152).await;
}
