#!/usr/bin/env bash
# Builds the real Kubernetes control plane used as a test fixture (kube-apiserver,
# kube-controller-manager, kube-scheduler, kubectl at the version pinned in go.mod, and the etcd
# that version is tested with) into a cache directory, and prints that directory.
#
# The build is skipped when the cache already holds binaries built from the same go.mod, go.sum,
# this script and Go version. Go's own caches (GOMODCACHE, GOCACHE) make a rebuild after a change
# fast. Writes go to a temporary directory that is renamed into place only when every binary
# built, so an interrupted build never leaves a cache that looks complete.
#
# Usage: tests/control-plane/build.sh [--print-dir]
#   --print-dir   print where the binaries are (or would be) and exit, building nothing
# Environment:
#   SIMCLOUD_CONTROL_PLANE_DIR   cache root (default: ${XDG_CACHE_HOME:-~/.cache}/simcloud/control-plane)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
version="v1.37.2"
binaries=(etcd kube-apiserver kube-controller-manager kube-scheduler kubectl)
root="${SIMCLOUD_CONTROL_PLANE_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/simcloud/control-plane}"
dest="$root/$version"

if [[ "${1:-}" == "--print-dir" ]]; then
    echo "$dest/bin"
    exit 0
elif [[ $# -gt 0 ]]; then
    echo "usage: $0 [--print-dir]" >&2
    exit 2
fi

if ! command -v go >/dev/null 2>&1; then
    echo "build.sh: 'go' is not on PATH; Go 1.26 is needed to build the control-plane fixture" >&2
    exit 1
fi

# What the binaries are built from: a change to any of these rebuilds them.
key="$(cat "$here/go.mod" "$here/go.sum" "$here/build.sh" <(go version) | sha256sum | cut -d' ' -f1)"

# The cache is current when its manifest names this key and every binary matches its checksum.
if [[ -f "$dest/manifest" ]] && [[ "$(head -n1 "$dest/manifest")" == "key $key" ]] &&
    (cd "$dest/bin" && tail -n +2 ../manifest | sha256sum --check --quiet --status); then
    echo "control plane $version is current in $dest/bin" >&2
    echo "$dest/bin"
    exit 0
fi

echo "building control plane $version into $dest/bin (a cold build takes 15-30 minutes on 2 cores)" >&2
mkdir -p "$root"
tmp="$(mktemp -d "$root/.build.XXXXXX")"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"

# The version the binaries report, as Kubernetes' own release build stamps it
# (hack/lib/version.sh); kubectl and clients compare it.
minor="${version#v1.}"
minor="${minor%%.*}"
ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ldflags+=" -X $pkg.gitVersion=$version -X $pkg.gitMajor=1 -X $pkg.gitMinor=$minor"
    ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

start=$SECONDS
cd "$here"
export CGO_ENABLED=0
go build -trimpath -ldflags "$ldflags" -o "$tmp/bin/" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
go build -trimpath -ldflags "-s -w" -o "$tmp/bin/etcd" go.etcd.io/etcd/server/v3

{
    echo "key $key"
    (cd "$tmp/bin" && sha256sum "${binaries[@]}")
} >"$tmp/manifest"

rm -rf "$dest.old"
if [[ -d "$dest" ]]; then mv "$dest" "$dest.old"; fi
mv "$tmp" "$dest"
rm -rf "$dest.old"
trap - EXIT
echo "built control plane $version in $((SECONDS - start)) s: $dest/bin" >&2
echo "$dest/bin"
