#!/usr/bin/env bash
# Set up and run every check: lint, format, types, and the tests against real Postgres and
# RabbitMQ (local services, ones named by PAYOUTS_TEST_POSTGRES_URL / PAYOUTS_TEST_RABBITMQ_URL,
# or containers where Docker runs). Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/../.."
source deploy/local/setup.sh

ensure_venv
ensure_iptables
ensure_prometheus
ensure_chromium
if [ -z "${PAYOUTS_TEST_POSTGRES_URL:-}${PAYOUTS_TEST_RABBITMQ_URL:-}" ] && ! docker_works; then
    ensure_local_services
fi

"$VENV/bin/ruff" check .
"$VENV/bin/ruff" format --check .
"$VENV/bin/mypy"
"$VENV/bin/pytest" "$@"
