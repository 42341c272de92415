"""What the ingress counts, for Prometheus. Label values come from the configuration and from
fixed vocabularies (verdicts, answer codes, reasons), never from request data, so a hostile
caller cannot grow the number of series."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from schema.metrics import LATENCY_BUCKETS

__all__ = [
    "BROKER_CONNECTED",
    "EVENTS_PER_MESSAGE",
    "OUTCOMES_LISTENING",
    "OUTCOME_NOTIFICATIONS",
    "OUTCOME_REPORTS",
    "OUTCOME_UNAVAILABLE",
    "PROOF_API_KEY_MATCHES",
    "PROOF_API_REQUESTS",
    "PUBLISH_FAILURES",
    "PUBLISH_SECONDS",
    "REQUESTS",
    "REQUEST_SECONDS",
    "SECRET_MATCHES",
    "VERIFICATION_FAILURES",
]

REQUESTS = Counter(
    "payouts_ingress_requests",
    "Callbacks answered, by provider instance, verdict and the answer code the provider reads.",
    ["instance", "verdict", "answer_code"],
)
REQUEST_SECONDS = Histogram(
    "payouts_ingress_request_seconds",
    "Time from a callback's arrival to its answer.",
    ["instance"],
    buckets=LATENCY_BUCKETS,
)
VERIFICATION_FAILURES = Counter(
    "payouts_ingress_verification_failures",
    "Callbacks refused before publishing: bad signature, malformed, address not allowed, "
    "rate limited and the like.",
    ["instance", "reason"],
)
SECRET_MATCHES = Counter(
    "payouts_ingress_secret_matches",
    "Verified callbacks by the environment variable whose secret matched; a secret whose "
    "count stops growing can be retired.",
    ["instance", "secret"],
)
PUBLISH_SECONDS = Histogram(
    "payouts_ingress_publish_seconds",
    "Time from publishing an event to the broker's confirm.",
    buckets=LATENCY_BUCKETS,
)
EVENTS_PER_MESSAGE = Histogram(
    "payouts_ingress_events_per_message",
    "Events in each message published: 1 at low load, up to broker.max_events_per_message as "
    "envelopes fill. The queue counts messages; its mean turns them into payouts.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000),
)
PUBLISH_FAILURES = Counter(
    "payouts_ingress_publish_failures",
    "Events the broker did not confirm in time (the provider was told to retry).",
)
OUTCOME_UNAVAILABLE = Counter(
    "payouts_ingress_outcome_unavailable",
    "Callbacks answered 'try again' because their outcome was not known in time.",
    ["instance", "reason"],
)
OUTCOME_NOTIFICATIONS = Counter(
    "payouts_ingress_outcome_notifications",
    "Outcome notifications received, by channel: the process's own, or the shared one that "
    "workers of an earlier release report on.",
    ["channel"],
)
OUTCOME_REPORTS = Counter(
    "payouts_ingress_outcome_reports_received",
    "Outcome reports received, by channel; on its own channel a process receives only the "
    "reports of the events it published.",
    ["channel"],
)
BROKER_CONNECTED = Gauge(
    "payouts_ingress_broker_connected",
    "1 while the publishing connection to the broker is up.",
    multiprocess_mode="livemin",
)
OUTCOMES_LISTENING = Gauge(
    "payouts_ingress_outcomes_listening",
    "1 while the outcome listener holds its LISTEN connection to Postgres.",
    multiprocess_mode="livemin",
)
PROOF_API_REQUESTS = Counter(
    "payouts_proof_api_requests",
    "Payout Proof API requests by the HTTP status answered.",
    ["status"],
)
PROOF_API_KEY_MATCHES = Counter(
    "payouts_proof_api_key_matches",
    "Authenticated Proof API requests by partner and the environment variables whose API key "
    "and secret matched; one that stops growing can be retired.",
    ["pid", "api_key", "secret"],
)
