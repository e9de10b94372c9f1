#!/usr/bin/env bash
# Runs the data-plane benchmark: the same backend and load, direct, through HAProxy (mode tcp)
# and through a cloud-sim load balancer, printing requests/s and p50/p99 latency for each and the
# cloud-sim/HAProxy ratios. Installs HAProxy from Debian's packages when it is missing.
#
#   cloud-sim/benches/lb-vs-haproxy.sh                 # 5 s per run, 32 concurrent clients, 3 rounds
#   cloud-sim/benches/lb-vs-haproxy.sh 10 64 5         # seconds, concurrency, rounds
set -euo pipefail
cd "$(dirname "$0")/../.."
if ! command -v haproxy >/dev/null 2>&1; then
    echo "installing haproxy (Debian package) ..." >&2
    apt-get update -qq
    apt-get install -y -qq haproxy >/dev/null
fi
exec cargo bench -p cloud-sim --bench proxy -- "$@"
