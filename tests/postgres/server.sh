#!/usr/bin/env bash
# A throw-away PostgreSQL server for the tests.
#
#   tests/postgres/server.sh start DIR [PORT]  # a new cluster in DIR (or the one already there) on
#                                              # 127.0.0.1:PORT (default: the first free port from
#                                              # 55432), trust auth on loopback; prints its URL
#   tests/postgres/server.sh stop DIR          # stops it (the data stays until DIR is removed)
#
# Uses the server binaries of Debian's postgresql package (`.ci/run` installs it when missing).
# PostgreSQL will not run as root, so as root the cluster belongs to the `postgres` user.
set -euo pipefail

usage="usage: $0 start DIR [PORT] | stop DIR"
command="${1:?$usage}"
dir="${2:?$usage}"
port="${3:-}"

bindir="$(find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1)"
if [[ -z "$bindir" || ! -x "$bindir/initdb" ]]; then
    echo "no PostgreSQL server binaries under /usr/lib/postgresql (apt-get install postgresql)" >&2
    exit 1
fi

as_owner() {
    if [[ $(id -u) == 0 ]]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

if [[ "$command" == stop ]]; then
    as_owner "$bindir/pg_ctl" -D "$dir" -m fast -w stop >/dev/null
    exit 0
fi
[[ "$command" == start ]] || { echo "$usage" >&2; exit 2; }

mkdir -p "$dir"
if [[ $(id -u) == 0 ]]; then
    chown postgres: "$dir"
fi
if [[ ! -f "$dir/PG_VERSION" ]]; then
    as_owner "$bindir/initdb" -D "$dir" -U postgres --auth=trust -E UTF8 >"$dir.initdb.log" 2>&1 ||
        { cat "$dir.initdb.log" >&2; exit 1; }
fi
if as_owner "$bindir/pg_ctl" -D "$dir" status >/dev/null 2>&1; then
    # Already running: report the port it was started on.
    port="$(sed -n 's/^port = \([0-9]*\).*/\1/p' "$dir/postgresql.auto.conf" 2>/dev/null | tail -n 1)"
else
    if [[ -z "$port" ]]; then
        # The first port from 55432 that nothing accepts connections on.
        port=55432
        while (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; do
            port=$((port + 1))
        done
    fi
    # Remembered in the cluster, so that a second `start` reports where it runs.
    echo "port = $port" >"$dir/postgresql.auto.conf"
    if [[ $(id -u) == 0 ]]; then
        chown postgres: "$dir/postgresql.auto.conf"
    fi
    # Loopback only, no Unix socket directory to share; enough connections for parallel tests.
    as_owner "$bindir/pg_ctl" -D "$dir" -l "$dir/server.log" -w -t 60 start \
        -o "-h 127.0.0.1 -k '' -c max_connections=500" >/dev/null ||
        { cat "$dir/server.log" >&2; exit 1; }
fi
echo "postgres://postgres@127.0.0.1:${port}/postgres"
