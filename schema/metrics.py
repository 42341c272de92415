"""The Prometheus exposition both sides serve, in single-process or multiprocess mode.

With several processes behind one port (`payouts ingress --processes N`), each process writes its
samples to files in `PROMETHEUS_MULTIPROC_DIR` and any process can render all of them; without that
variable each process serves its own registry (docs/operations.md, "Metrics").
"""

from __future__ import annotations

import os

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

__all__ = ["CONTENT_TYPE_LATEST", "LATENCY_BUCKETS", "MULTIPROCESS_DIR_ENV", "exposition"]

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

# Seconds: fine below 100 ms, where the pipeline should live, coarse above, where it should not.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def exposition() -> bytes:
    """Every metric of this process, or of all processes sharing the multiprocess directory."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)
