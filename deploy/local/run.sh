#!/usr/bin/env bash
# Set up and run the pipeline on this machine: virtualenv, install, database, migrations, then
# the ingress, `payouts worker --processes ${PAYOUTS_WORKERS:-2}` and the operator console in the
# foreground until Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/setup.sh

ensure_venv
[ -n "${PAYOUTS_DATABASE_URL:-}${PAYOUTS_BROKER_URL:-}" ] || ensure_local_services

# The console (docs/console.md) needs an operator. With the example config, run.sh runs a copy
# of it with a [console] section and one local operator, `admin`, whose random password is
# printed once, when it is made; only its argon2id hash is kept, in a git-ignored file (delete
# it for a new password). Your own PAYOUTS_CONFIG is used as it is.
CONSOLE_OPERATOR=deploy/local/console-operator.toml
LOCAL_CONFIG=deploy/local/payouts.local.toml
local_console_config() {
    if [ ! -s "$CONSOLE_OPERATOR" ]; then
        local password hash
        password=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(18))')
        hash=$(printf '%s\n' "$password" | "$VENV/bin/payouts" console hash-password)
        (umask 077 && printf '[[console.operators]]\nname = "admin"\nrole = "operator"\npassword_hash = "%s"\n' \
            "$hash" > "$CONSOLE_OPERATOR")
        echo "console operator created: name admin, password $password (shown this once)"
    fi
    # Made again each run, so that it follows the example config.
    (umask 077 && {
        cat deploy/payouts.example.toml
        printf '\n[console]\nhost = "127.0.0.1"\nport = 8090\n'
        printf 'secure_cookies = false  # plain http, on loopback only\n\n'
        cat "$CONSOLE_OPERATOR"
    } > "$LOCAL_CONFIG")
}
if [ -z "${PAYOUTS_CONFIG:-}" ]; then
    local_console_config
    export PAYOUTS_CONFIG=$LOCAL_CONFIG
fi
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
if grep -q '^\[\[console\.operators\]\]' "$PAYOUTS_CONFIG"; then
    # A new session key each run unless you export one (a restart signs everyone out): never
    # a fixed example value, with which anyone could make a session cookie.
    if [ -z "${PAYOUTS_CONSOLE_SESSION_SECRET:-}" ]; then
        PAYOUTS_CONSOLE_SESSION_SECRET=$("$VENV/bin/python" -c 'import secrets; print(secrets.token_urlsafe(48))')
        export PAYOUTS_CONSOLE_SESSION_SECRET
    fi
    "$VENV/bin/payouts" console &
    pids+=($!)
    echo "console on http://127.0.0.1:8090/ (or console.port in $PAYOUTS_CONFIG)"
else
    echo "no [[console.operators]] in $PAYOUTS_CONFIG: the console is not started (docs/console.md)"
fi
echo "payouts running with config $PAYOUTS_CONFIG (pids ${pids[*]}); Ctrl-C stops it"
# Whichever process ends first ends the whole run, so a crash is never silent.
wait -n
