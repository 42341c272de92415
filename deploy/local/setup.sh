# Shared by run.sh and test.sh (sourced, not run): a virtualenv with the project installed, and
# the services it needs reachable. Everything it does is repeatable and skips what is done.

PYTHON=${PYTHON:-python3}
VENV=${PAYOUTS_VENV:-.venv}

ensure_python() {
    if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
        echo "payouts needs Python 3.11 or newer; set PYTHON=/path/to/python3.11" >&2
        exit 1
    fi
}

ensure_venv() {
    ensure_python
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    # Reinstall only when the declared dependencies changed since the last install.
    local stamp="$VENV/.payouts-installed"
    local wanted
    wanted=$(cat pyproject.toml deploy/constraints.txt | sha256sum | cut -d' ' -f1)
    if [ "$(cat "$stamp" 2>/dev/null)" != "$wanted" ]; then
        echo "installing payouts and its dependencies into $VENV ..."
        "$VENV/bin/python" -m pip install --quiet --upgrade pip
        "$VENV/bin/python" -m pip install --quiet -c deploy/constraints.txt -e ".[test]"
        echo "$wanted" > "$stamp"
    fi
}

reachable() {  # host port
    (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null
}

docker_works() {
    command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1
}

# Postgres and RabbitMQ on localhost: start them from deploy/compose.yaml where Docker runs,
# otherwise say exactly what to start. Skipped when URLs are given through the environment.
ensure_local_services() {
    local missing=()
    reachable 127.0.0.1 5432 || missing+=(postgres)
    reachable 127.0.0.1 5672 || missing+=(rabbitmq)
    [ ${#missing[@]} -eq 0 ] && return 0
    if docker_works; then
        echo "starting ${missing[*]} with docker compose ..."
        docker compose -f deploy/compose.yaml up -d --wait "${missing[@]}"
        return 0
    fi
    echo "not reachable on 127.0.0.1: ${missing[*]}" >&2
    for service in "${missing[@]}"; do
        case $service in
            postgres) echo "  start PostgreSQL:  pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start" >&2 ;;
            rabbitmq) echo "  start RabbitMQ:    rabbitmq-server -detached" >&2 ;;
        esac
    done
    echo "  (or run them anywhere and set PAYOUTS_DATABASE_URL / PAYOUTS_BROKER_URL)" >&2
    exit 1
}

# A command from a Debian package, installed where we may (root with apt-get, without the
# package's recommends: prometheus would bring the node exporter); elsewhere say how, and let the
# tests that need it skip (fail under CI).
ensure_apt_command() {  # command package what-needs-it
    command -v "$1" >/dev/null 2>&1 && return 0
    if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing $2 for $3 ..."
        local install=(apt-get install -y -qq --no-install-recommends "$2")
        DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null \
            || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive "${install[@]}" >/dev/null; }
        return 0
    fi
    echo "$1 is missing: $3 will skip (or fail under CI=true);" \
        "install it as root: apt-get install $2" >&2
}

# The failover tests cut cluster nodes apart with iptables (tests/clusters/partitions.py).
ensure_iptables() {
    ensure_apt_command iptables iptables "the partition tests"
}

# promtool checks the shipped Prometheus configuration and unit-tests the alerts, and a real
# Prometheus scrapes an end-to-end stack (tests/deploy/test_prometheus_rules.py,
# tests/e2e/test_prometheus.py). Debian's package holds both. The tests never use the service the
# package may start on :9090: each starts its own Prometheus on a free port.
ensure_prometheus() {
    ensure_apt_command promtool prometheus "the Prometheus tests"
}

# The console's browser tests drive Debian's chromium through Playwright
# (tests/e2e/test_console_browser.py): Playwright's own browser download is not used.
ensure_chromium() {
    ensure_apt_command chromium chromium "the console's browser tests"
}
