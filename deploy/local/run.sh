#!/usr/bin/env bash
# Set up and run the pipeline on this machine: virtualenv, install, database, migrations, then
# the ingress and workers (PAYOUTS_WORKERS, default 2) in the foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/setup.sh

ensure_venv
[ -n "${PAYOUTS_DATABASE_URL:-}${PAYOUTS_BROKER_URL:-}" ] || ensure_local_services

export PAYOUTS_CONFIG=${PAYOUTS_CONFIG:-deploy/payouts.example.toml}
if [ -z "${PAYOUTS_OFFERWALL_PUB_KEY:-}" ] || [ -z "${PAYOUTS_ADJOE_S2S_TOKEN:-}" ]; then
    echo "using the example secrets; export PAYOUTS_OFFERWALL_PUB_KEY and PAYOUTS_ADJOE_S2S_TOKEN for real ones"
    export PAYOUTS_OFFERWALL_PUB_KEY=${PAYOUTS_OFFERWALL_PUB_KEY:-example-pub-key}
    export PAYOUTS_ADJOE_S2S_TOKEN=${PAYOUTS_ADJOE_S2S_TOKEN:-example-s2s-token}
fi

"$VENV/bin/payouts" migrate --create-database

pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait || true
}
trap stop EXIT INT TERM
for _ in $(seq "${PAYOUTS_WORKERS:-2}"); do
    "$VENV/bin/payouts" worker &
    pids+=($!)
done
"$VENV/bin/payouts" ingress &
pids+=($!)
echo "payouts running with config $PAYOUTS_CONFIG (pids ${pids[*]}); Ctrl-C stops it"
# Whichever process ends first ends the whole run, so a crash is never silent.
wait -n
