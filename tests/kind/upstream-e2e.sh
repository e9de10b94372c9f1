#!/usr/bin/env bash
# Upstream's own LoadBalancer e2e tests (test/e2e/network/loadbalancer.go) against the cluster
# tests/kind/run.sh built, as cloud-provider-kind's CI runs them: ginkgo and e2e.test from
# kubernetes-test-linux-amd64.tar.gz of the cluster's own Kubernetes version, focused on
# [Feature:LoadBalancer], JUnit reports into $ARTIFACTS/junit.
#
# Called by run.sh when UPSTREAM_E2E=1 (so a failure collects the same evidence); by hand, after
# `KEEP=1 tests/kind/run.sh`:
#   tests/kind/upstream-e2e.sh v1.36.1
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=${1:?usage: upstream-e2e.sh <kubernetes version, e.g. v1.36.1>}
ARTIFACTS=${ARTIFACTS:-tests/kind/artifacts}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/simcloud/e2e/$VERSION
KUBECONFIG_FILE=${KUBECONFIG:-$HOME/.kube/config}

# What a simulated cloud cannot do, one pattern each (ginkgo matches them against full names):
#  - LoadBalancer.Service.without.NodePort: cloud-sim's load balancers forward to node ports, as
#    cloud-provider-kind's do, so allocateLoadBalancerNodePorts=false has nothing to reach.
#  - type.and.ports.of.a.TCP.service: expects "connection refused" from a frontend without
#    endpoints; cloud-sim accepts and closes (as cloud-provider-kind's haproxy does).
#  - source.ranges: the frontends live on the host's loopback, which the test's client pods
#    inside the kind nodes cannot reach.
#  - should.work.from.pods and preserve.UDP.traffic: the same, clients inside the cluster.
#  - Disruptive|Serial: they restart nodes or components one at a time; not for a shared runner.
SKIP='LoadBalancer.Service.without.NodePort|type.and.ports.of.a.TCP.service|source.ranges|should.work.from.pods|preserve.UDP.traffic|Disruptive|Serial'
FOCUS='\[Feature:LoadBalancer\]'

if [[ ! -x "$CACHE/e2e.test" || ! -x "$CACHE/ginkgo" ]]; then
    echo "== fetching kubernetes-test-linux-amd64.tar.gz $VERSION"
    mkdir -p "$CACHE"
    curl -fsSL "https://dl.k8s.io/$VERSION/kubernetes-test-linux-amd64.tar.gz" |
        tar -xz -C "$CACHE" --strip-components=3 kubernetes/test/bin/ginkgo kubernetes/test/bin/e2e.test
fi

mkdir -p "$ARTIFACTS/junit"
echo "== upstream e2e: $FOCUS, skipping $SKIP"
# --provider=skeleton: no cloud-specific code paths; the LoadBalancer tests only need Services of
# type LoadBalancer to get reachable ingress addresses, which the ccm and cloud-sim provide.
"$CACHE/ginkgo" --nodes=4 --focus="$FOCUS" --skip="$SKIP" "$CACHE/e2e.test" -- \
    --kubeconfig="$KUBECONFIG_FILE" \
    --provider=skeleton \
    --report-dir="$ARTIFACTS/junit" \
    --dump-logs-on-failure=false \
    --disable-log-dump=true
