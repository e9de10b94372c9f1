#!/usr/bin/env bash
# Property-based checks of cloud-sim's API against its own OpenAPI document, with schemathesis
# (from PyPI, pinned, in a virtualenv under ~/.cache/simcloud): 25 examples per operation, every
# phase (examples, coverage, fuzzing, and the stateful phase, which follows the document's links
# from creates to reads, updates, actions and deletes of real resources). Fails on a server
# error, an undocumented status code, a response that violates its schema, or a request the
# schema forbids being accepted.
#
# Not run: POST /v1/admin/faults. A rule it creates makes the server answer other requests with
# the status it names (a 500, say) on purpose, which every later check would report as the
# server's failure; fault rules have their own tests (cloud-sim's faults module and `it`).
#
# Not checked: positive_data_acceptance (a schema-valid request refused). The served document
# states the region's zones and instance types, the forms of names and IDs, and ranges and
# bounds (the "schema validation mismatch" warning lists operations whose generated requests
# were mostly refused anyway), but some rules are relations a schema cannot state (a requested address must lie in its zone's pool, a route
# may not overlap another, a backend must exist), so such requests get a documented 409 or 422.
#
#   tests/api/schemathesis.sh          # builds cloud-sim (debug) first; .ci/run calls it
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=4.32.5
VENV=${XDG_CACHE_HOME:-$HOME/.cache}/simcloud/schemathesis-$VERSION
ARTIFACTS=$(realpath -m "${ARTIFACTS:-target/schemathesis}")

if [[ ! -x "$VENV/bin/st" ]]; then
    echo "== installing schemathesis $VERSION into $VENV" >&2
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet "schemathesis==$VERSION"
fi

cargo build --locked -p cloud-sim
WORK=$(mktemp -d)
PID=
# shellcheck disable=SC2317 # called by the trap
cleanup() {
    if [[ -n "$PID" ]]; then kill "$PID" 2>/dev/null || true; fi
    rm -rf "$WORK"
}
trap cleanup EXIT

target/debug/cloud-sim serve --listen 127.0.0.1:0 --data-dir "$WORK" --log-format json \
    --log-filter info >"$WORK/cloud-sim.log" 2>&1 &
PID=$!
addr=
for _ in $(seq 1 100); do
    addr=$(grep '"cloud-sim serving"' "$WORK/cloud-sim.log" | grep -o '"addr":"[^"]*"' | head -n 1 | cut -d'"' -f4 || true)
    [[ -n "$addr" ]] && break
    kill -0 "$PID" 2>/dev/null || { cat "$WORK/cloud-sim.log" >&2; exit 1; }
    sleep 0.1
done
[[ -n "$addr" ]] || { echo "cloud-sim did not report its address" >&2; exit 1; }

mkdir -p "$ARTIFACTS"
status=0
(cd "$WORK" && "$VENV/bin/st" run "http://$addr/openapi.json" \
    --max-examples 25 \
    --phases examples,coverage,fuzzing,stateful \
    --checks all --exclude-checks positive_data_acceptance \
    --generation-deterministic \
    --exclude-operation-id admin_create_fault \
    --report junit --report-junit-path "$ARTIFACTS/junit.xml") || status=$?
if grep -q 'panicked' "$WORK/cloud-sim.log"; then
    echo "cloud-sim panicked while serving schemathesis:" >&2
    grep -A5 'panicked' "$WORK/cloud-sim.log" >&2
    status=1
fi
exit "$status"
