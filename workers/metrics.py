"""What the worker counts, for Prometheus: per payout, per database transaction, per failure, and
the depth of the queues it consumes. Label values come from the configuration and from fixed
vocabularies, never from message contents."""

from __future__ import annotations

from prometheus_client import Counter, Gauge, Histogram

from schema.metrics import LATENCY_BUCKETS, children

__all__ = [
    "BATCH_SIZE",
    "COMMIT_SECONDS",
    "CONSUMING",
    "DEAD_LETTERED",
    "LAG_SECONDS",
    "PAYOUTS",
    "QUEUE_MESSAGES",
    "RETRIES",
]

PAYOUTS = Counter(
    "payouts_worker_payouts",
    "Payout deliveries settled, by provider instance and outcome (credited, duplicate, "
    "conflict, held and order refusals).",
    ["instance", "outcome"],
)
BATCH_SIZE = Histogram(
    "payouts_worker_batch_size",
    "Payouts applied per database transaction.",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500),
)
COMMIT_SECONDS = Histogram(
    "payouts_worker_commit_seconds",
    "Time from opening a crediting transaction to its commit.",
    buckets=LATENCY_BUCKETS,
)
LAG_SECONDS = Histogram(
    "payouts_worker_lag_seconds",
    "Time from the ingress receiving a callback to the commit of its outcome.",
    ["instance"],
    buckets=LATENCY_BUCKETS,
)
RETRIES = Counter(
    "payouts_worker_retries",
    "Failed attempts retried: 'in_place' while holding the delivery, or the retry tier's delay "
    "in seconds.",
    ["tier"],
)
DEAD_LETTERED = Counter(
    "payouts_worker_dead_lettered",
    "Messages moved to the dead-letter queue, by failure kind and reason.",
    ["kind", "reason"],
)
CONSUMING = Gauge(
    "payouts_worker_consuming",
    "1 while the worker holds a consumer on the work queue.",
    multiprocess_mode="livesum",
)
QUEUE_MESSAGES = Gauge(
    "payouts_queue_messages",
    "Messages ready in each queue of the topology (work, retry tiers, dead letters), as last "
    "sampled by this worker.",
    ["queue"],
    multiprocess_mode="livemax",
)

# The labelled children counted for every payout, looked up once per label values rather than
# per payout.
payouts_of = children(PAYOUTS)
lag_of = children(LAG_SECONDS)
