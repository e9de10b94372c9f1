#!/usr/bin/env bash
# Copies the OpenAPI v3 documents kube-sim serves from the pinned Kubernetes release (the
# k8s.io/kubernetes module tests/control-plane/go.mod requires) into v3/, gzipped: one per group
# version kube-sim serves, and the group documents. Run it after changing that pin or the served
# group versions (crates/kube-sim/src/resources.rs); the kube-sim test
# `openapi_documents_cover_the_served_group_versions` fails when they disagree.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
module_dir="$here/../../../tests/control-plane"
version="$(cd "$module_dir" && go list -m -f '{{.Version}}' k8s.io/kubernetes)"
src="$(cd "$module_dir" && go mod download -json "k8s.io/kubernetes@$version" | sed -n 's/.*"Dir": "\(.*\)",*/\1/p')/api/openapi-spec/v3"
[ -d "$src" ] || { echo "no OpenAPI v3 documents in $src" >&2; exit 1; }
out="$here/v3"
rm -rf "$out"
mkdir -p "$out"
for gv in api api/v1 apis/apps apis/apps/v1 \
    apis/authorization.k8s.io apis/authorization.k8s.io/v1 \
    apis/coordination.k8s.io apis/coordination.k8s.io/v1 \
    apis/discovery.k8s.io apis/discovery.k8s.io/v1 \
    apis/events.k8s.io apis/events.k8s.io/v1 \
    apis/rbac.authorization.k8s.io apis/rbac.authorization.k8s.io/v1; do
    file="${gv//\//__}_openapi.json"
    gzip -9n <"$src/$file" >"$out/$file.gz"
done
echo "$version" >"$out/VERSION"
echo "wrote $(find "$out" -name '*.gz' | wc -l) documents of Kubernetes $version into $out"
