#!/usr/bin/env bash
# Set up and run the pipeline on this machine: virtualenv, install, database, migrations, then
# the ingress and `payouts worker --processes ${PAYOUTS_WORKERS:-2}` in the foreground until
# Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/setup.sh

ensure_venv
[ -n "${PAYOUTS_DATABASE_URL:-}${PAYOUTS_BROKER_URL:-}" ] || ensure_local_services

export PAYOUTS_CONFIG=${PAYOUTS_CONFIG:-deploy/payouts.example.toml}
# Each secret the example config names: yours if exported, else the example's, said out loud.
while IFS='=' read -r name value; do
    case $name in ''|'#'*) continue ;; esac
    if [ -z "${!name:-}" ]; then
        echo "using the example value of $name; export it for real use"
        export "$name=$value"
    fi
done < deploy/local/example-secrets.env

"$VENV/bin/payouts" migrate --create-database

pids=()
stop() {
    kill -TERM "${pids[@]}" 2>/dev/null || true
    wait || true
}
trap stop EXIT INT TERM
# One supervisor for the workers: it gives each its own status port (the configured one plus
# its index), where separate `payouts worker` processes would all bind the same one.
"$VENV/bin/payouts" worker --processes "${PAYOUTS_WORKERS:-2}" &
pids+=($!)
"$VENV/bin/payouts" ingress &
pids+=($!)
echo "payouts running with config $PAYOUTS_CONFIG (pids ${pids[*]}); Ctrl-C stops it"
# Whichever process ends first ends the whole run, so a crash is never silent.
wait -n
