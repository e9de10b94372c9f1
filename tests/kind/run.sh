#!/usr/bin/env bash
# End to end on kind, with the manifests we ship: a kind cluster whose kubelets run with
# --cloud-provider=external, cloud-sim on this host (the cloud lives outside the cluster, as a
# real one does), one cloud-sim instance per kind node (its container IP, zones round robin), the
# ccm from manifests/ccm, and manifests/examples/web.yaml. Checks that every node is initialised
# with a zone and a provider ID, and that the LoadBalancer Service gets one ingress IP per zone
# that answers HTTP through cloud-sim's load balancer.
#
# Needs Docker, kind, kubectl and a Rust toolchain; it cannot run where there is no Docker.
#   tests/kind/run.sh              # KEEP=1 keeps the cluster and cloud-sim afterwards
#   KUBERNETES=oldest tests/kind/run.sh    # the oldest supported node image (default: newest)
#   UPSTREAM_E2E=1 tests/kind/run.sh       # then upstream's LoadBalancer e2e (upstream-e2e.sh)
#   BUILD_IMAGE=0 tests/kind/run.sh        # the image simcloud/ccm:dev is already built
# Versions (kind, node images by digest) come from tests/kind/versions.env.
# On any failure (a check, a command under `set -e`, Ctrl-C) the evidence is collected into
# $ARTIFACTS (default: tests/kind/artifacts) before the cluster goes: `kind export logs`,
# cloud-sim's and the ccm's logs, pods, events and the Service.
set -euo pipefail
cd "$(dirname "$0")/../.."

# shellcheck source=tests/kind/versions.env
source tests/kind/versions.env
CLUSTER=simcloud
IMAGE=simcloud/ccm:dev
case "${KUBERNETES:-newest}" in
oldest) NODE_IMAGE=$KIND_NODE_IMAGE_OLDEST ;;
newest) NODE_IMAGE=$KIND_NODE_IMAGE_NEWEST ;;
*) echo "KUBERNETES must be oldest or newest (tests/kind/versions.env), not ${KUBERNETES}" >&2; exit 2 ;;
esac
# v1.36.1 from kindest/node:v1.36.1@sha256:...
K8S_VERSION=${NODE_IMAGE#*:}
K8S_VERSION=${K8S_VERSION%@*}
# Preflight, before anything needs cleaning up.
for tool in docker kind kubectl cargo curl; do
    command -v "$tool" >/dev/null 2>&1 || { echo "tests/kind/run.sh needs $tool on the PATH" >&2; exit 2; }
done
# The example Service listens on port 80, and so do cloud-sim's frontends for it.
if [[ $(id -u) != 0 && $(cat /proc/sys/net/ipv4/ip_unprivileged_port_start) -gt 80 ]]; then
    echo "cloud-sim must bind port 80: run as root, or first" >&2
    echo "  sudo sysctl -w net.ipv4.ip_unprivileged_port_start=0" >&2
    exit 2
fi

# Docker Desktop (macOS, Windows) runs the nodes in a VM whose container addresses the host
# cannot reach, so cloud-sim's load balancers on this host could not forward to the nodes, and the
# gateway below is not this host. Run the script inside a Linux VM there (docs/kind.md).
if [[ $(docker info --format '{{.OperatingSystem}}' 2>/dev/null) == *"Docker Desktop"* ]]; then
    echo "Docker Desktop: the host cannot reach kind's node addresses; run this inside a Linux VM" >&2
    echo "with its own Docker engine (docs/kind.md, \"Docker Desktop\")" >&2
    exit 2
fi
if [[ $(kind version) != *"$KIND_VERSION "* ]]; then
    echo "warning: node images are pinned for kind $KIND_VERSION; this is $(kind version)" >&2
fi

ZONES=(zone-a zone-b zone-c)
WORK=$(mktemp -d)
ARTIFACTS=${ARTIFACTS:-tests/kind/artifacts}
CLOUD_PID=

# Everything that explains a failure, into $ARTIFACTS.
collect() {
    mkdir -p "$ARTIFACTS"
    kind export logs "$ARTIFACTS/kind" --name "$CLUSTER" >/dev/null 2>&1 || true
    cp "$WORK/cloud-sim.log" "$ARTIFACTS/" 2>/dev/null || true
    kubectl -n kube-system logs deploy/simcloud-ccm --all-containers >"$ARTIFACTS/ccm.log" 2>&1 || true
    kubectl get nodes -o wide >"$ARTIFACTS/nodes.txt" 2>&1 || true
    kubectl get pods -A -o wide >"$ARTIFACTS/pods.txt" 2>&1 || true
    kubectl get events -A --sort-by=.lastTimestamp >"$ARTIFACTS/events.txt" 2>&1 || true
    kubectl describe svc web >"$ARTIFACTS/svc-web.txt" 2>&1 || true
    echo "evidence collected in $ARTIFACTS" >&2
}

cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ $status != 0 ]]; then
        collect
    fi
    if [[ "${KEEP:-0}" != 1 ]]; then
        if [[ -n "$CLOUD_PID" ]]; then kill "$CLOUD_PID" 2>/dev/null || true; fi
        kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
        rm -rf "$WORK"
    fi
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

fail() {
    echo "FAIL: $*" >&2
    kubectl get nodes -o wide >&2 || true
    kubectl -n kube-system logs deploy/simcloud-ccm --tail=100 >&2 || true
    tail -n 50 "$WORK/cloud-sim.log" >&2 || true
    exit 1
}

# Polls `$@` every 2 s until it succeeds, for at most $1 seconds.
wait_until() {
    local deadline=$((SECONDS + $1)) what=$2
    shift 2
    until "$@"; do
        ((SECONDS < deadline)) || fail "timed out waiting for $what"
        sleep 2
    done
}

echo "== building the binaries and the image"
cargo build --release --locked -p cloud-sim -p simctl
if [[ "${BUILD_IMAGE:-1}" != 0 ]]; then
    docker build -t "$IMAGE" .
fi

echo "== kind cluster, Kubernetes $K8S_VERSION"
# A cluster left by an earlier run (KEEP=1, or a killed one) goes first.
kind delete cluster --name "$CLUSTER" >/dev/null 2>&1 || true
kind create cluster --config manifests/kind/cluster.yaml --image "$NODE_IMAGE"
kind load docker-image "$IMAGE" --name "$CLUSTER"

echo "== cloud-sim on this host"
# The gateway of the network the nodes are on, as the nodes see it (whatever that network is
# called: KIND_EXPERIMENTAL_DOCKER_NETWORK can rename it).
FIRST_NODE=$(kind get nodes --name "$CLUSTER" | sort | head -n 1)
GATEWAY=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.Gateway}} {{end}}' "$FIRST_NODE" |
    awk '{for (i = 1; i <= NF; i++) if ($i ~ /^[0-9.]+$/) {print $i; exit}}')
[[ -n "$GATEWAY" ]] || fail "no IPv4 gateway on the network of $FIRST_NODE"
# The region's network spans the kind node addresses (registered as instances) and the default
# load-balancer pools on loopback, which clients on this host reach.
target/release/cloud-sim serve --listen 0.0.0.0:8080 --network-cidr 0.0.0.0/0 \
    --database-url "sqlite://$WORK/cloud-sim.db" --data-dir "$WORK" \
    >"$WORK/cloud-sim.log" 2>&1 &
CLOUD_PID=$!
simctl() { target/release/simctl --cloud-url http://127.0.0.1:8080 "$@"; }
wait_until 30 "cloud-sim" simctl zones list >/dev/null

i=0
for node in $(kind get nodes --name "$CLUSTER" | sort); do
    ip=$(docker inspect -f '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}' "$node")
    zone=${ZONES[$((i % ${#ZONES[@]}))]}
    simctl instances create "$node" --zone "$zone" --ip "$ip" --tag "kubernetes.io/cluster/kubernetes=owned"
    i=$((i + 1))
done

echo "== the ccm"
printf 'endpoint: http://%s:8080\nregion: sim-1\n' "$GATEWAY" >"$WORK/cloud-config.yaml"
kubectl -n kube-system create secret generic simcloud-cloud-config \
    --from-file=cloud-config.yaml="$WORK/cloud-config.yaml" --dry-run=client -o yaml |
    kubectl apply -f -
kubectl apply -k manifests/kind/ccm

all_initialised() {
    local out
    out=$(kubectl get nodes -o jsonpath='{range .items[*]}{.spec.providerID}|{.metadata.labels.topology\.kubernetes\.io/zone}|{.spec.taints[*].key}{"\n"}{end}')
    # Every node initialised with a simcloud provider ID (not kind's kind://) and a zone.
    [[ -n "$out" ]] && ! grep -q -v -e '^simcloud://' <<<"$out" &&
        ! grep -q -e '||' -e 'uninitialized' <<<"$out"
}
wait_until 180 "every node initialised" all_initialised
kubectl get nodes -L topology.kubernetes.io/zone

echo "== a LoadBalancer Service"
kubectl apply -k manifests/examples
kubectl rollout status deploy/web --timeout=180s
three_ingress() {
    [[ $(kubectl get svc web -o jsonpath='{.status.loadBalancer.ingress[*].ip}' | wc -w) == 3 ]]
}
wait_until 120 "three ingress IPs" three_ingress
simctl lbs status default/web
answers() {
    local ip
    for ip in $(kubectl get svc web -o jsonpath='{.status.loadBalancer.ingress[*].ip}'); do
        curl -fsS --max-time 3 "http://$ip/hostname" >/dev/null || return 1
    done
}
wait_until 120 "HTTP answers on every frontend" answers
simctl lbs status default/web
echo "PASS: kind end to end (Kubernetes $K8S_VERSION)"

if [[ "${UPSTREAM_E2E:-0}" == 1 ]]; then
    ARTIFACTS=$ARTIFACTS tests/kind/upstream-e2e.sh "$K8S_VERSION"
    echo "PASS: upstream LoadBalancer e2e (Kubernetes $K8S_VERSION)"
fi
