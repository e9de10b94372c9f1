#!/usr/bin/env bash
# Copies the protobuf definitions kube-sim decodes request bodies with from the pinned Kubernetes
# release (the k8s.io/api and k8s.io/apimachinery modules tests/control-plane/go.mod requires)
# into this directory, under their import paths. build.rs compiles them (protox) into the
# descriptor set src/protobuf.rs reads. Run it after changing that pin or the served group
# versions (crates/kube-sim/src/resources.rs).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
module_dir="$here/../../../tests/control-plane"
dir_of() {
    (cd "$module_dir" && go mod download -json "$1@$(go list -m -f '{{.Version}}' "$1")" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')
}
api="$(dir_of k8s.io/api)"
machinery="$(dir_of k8s.io/apimachinery)"
rm -rf "$here/k8s.io"
for g in core apps authorization rbac coordination discovery events autoscaling; do
    mkdir -p "$here/k8s.io/api/$g/v1"
    cp "$api/$g/v1/generated.proto" "$here/k8s.io/api/$g/v1/"
done
for p in api/resource apis/meta/v1 runtime runtime/schema util/intstr; do
    mkdir -p "$here/k8s.io/apimachinery/pkg/$p"
    cp "$machinery/pkg/$p/generated.proto" "$here/k8s.io/apimachinery/pkg/$p/"
done
chmod -R u+w "$here/k8s.io"
(cd "$module_dir" && go list -m -f '{{.Version}}' k8s.io/api) >"$here/VERSION"
echo "copied $(find "$here/k8s.io" -name '*.proto' | wc -l) proto files of k8s.io/api $(cat "$here/VERSION")"
