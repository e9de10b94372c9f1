//! Compiles the Kubernetes protobuf definitions in `proto/` (copied from the pinned release by
//! `proto/update.sh`) into a descriptor set that `src/protobuf.rs` decodes request bodies with.

use prost::Message as _;

const FILES: &[&str] = &[
    "k8s.io/api/core/v1/generated.proto",
    "k8s.io/api/apps/v1/generated.proto",
    "k8s.io/api/authorization/v1/generated.proto",
    "k8s.io/api/rbac/v1/generated.proto",
    "k8s.io/api/coordination/v1/generated.proto",
    "k8s.io/api/discovery/v1/generated.proto",
    "k8s.io/api/events/v1/generated.proto",
    "k8s.io/api/autoscaling/v1/generated.proto",
];

fn main() {
    println!("cargo::rerun-if-changed=proto");
    let set = protox::compile(FILES, ["proto"]).unwrap_or_else(|e| panic!("compiling proto/: {e}"));
    let out = std::path::PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("k8s.bin"), set.encode_to_vec()).expect("writing the descriptor set");
}
