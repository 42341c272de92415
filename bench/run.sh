#!/usr/bin/env bash
# The whole benchmark comparison in one command (about twelve minutes on 2 cores): sets up the
# project, the load tools and the services' databases, measures the pipeline beside its ceilings
# and baselines, and rewrites docs/benchmarks.md and docs/benchmarks.svg. Extra arguments go to
# `python -m bench` (e.g. --soak-seconds 600 for ten-minute soaks, about half an hour in all;
# --parts to run part of it).
set -euo pipefail
cd "$(dirname "$0")/.."
source deploy/local/setup.sh

ensure_venv
ensure_local_services
# The load generator and the profiler: wrk from Debian's packages, py-spy from PyPI.
if ! command -v wrk >/dev/null; then
    if [ "$(id -u)" -eq 0 ]; then
        # A fresh machine may have no package lists yet.
        apt-get install -y -q wrk >/dev/null 2>&1 \
            || { apt-get update -q >/dev/null && apt-get install -y -q wrk >/dev/null; }
    else
        echo "wrk is missing: sudo apt-get install wrk" >&2
        exit 1
    fi
fi
command -v pgbench >/dev/null || { echo "pgbench is missing: apt-get install postgresql-client" >&2; exit 1; }
"$VENV/bin/python" -m pip install --quiet -c deploy/constraints.txt py-spy
PATH="$VENV/bin:$PATH" exec "$VENV/bin/python" -m bench "$@"
