"""What the broker connections count, for Prometheus, in every process that holds one. Label
values are the role and the configured node URLs (passwords left out), so they stay few."""

from __future__ import annotations

from prometheus_client import Counter, Gauge

__all__ = ["NODE_CONNECTED", "RECONNECTS"]

RECONNECTS = Counter(
    "payouts_broker_reconnects",
    "Connections made again after one was lost, by role and the node reached.",
    ["role", "node"],
)
NODE_CONNECTED = Gauge(
    "payouts_broker_node_connected",
    "Connections of this role held to each node now: 1 per process on the node it is using.",
    ["role", "node"],
    multiprocess_mode="livesum",
)
