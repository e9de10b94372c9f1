//! `simctl topology sweep` as a user runs it.

use std::process::Command;

fn simctl(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_simctl"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn sweep_prints_the_keps_example_and_refuses_bad_input() {
    let out = simctl(&[
        "topology",
        "sweep",
        "--cpu",
        "zone-a=20,zone-b=16,zone-c=14",
        "--endpoints",
        "10",
        "-o",
        "json",
    ]);
    assert!(out.status.success(), "{out:?}");
    let rows: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let row = &rows[0];
    // Spread 4/3/3 evenly, the KEP's ratios: Auto keeps hints, all three modes predicted.
    assert_eq!(
        row["spread"],
        serde_json::json!({"zone-a": 4, "zone-b": 3, "zone-c": 3})
    );
    assert!(row["auto_disabled"].is_null(), "{row}");
    for mode in ["none", "Auto", "PreferSameZone"] {
        assert!(row["in_zone"][mode].is_number(), "{row}");
    }
    let out = simctl(&["topology", "sweep", "--cpu", "zone-a=20"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--cpu") && err.contains("two zones"), "{err}");
    let out = simctl(&[
        "topology",
        "sweep",
        "--cpu",
        "a=1,b=1",
        "--endpoints",
        "9..3",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("FROM <= TO"),
        "{out:?}"
    );
}
