"""The Prometheus exposition both sides serve, in single-process or multiprocess mode.

With several processes behind one port (`payouts ingress --processes N`), each process writes its
samples to files in `PROMETHEUS_MULTIPROC_DIR` and any process can render all of them; without that
variable each process serves its own registry (docs/operations.md, "Metrics").
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    generate_latest,
    multiprocess,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from prometheus_client.metrics import MetricWrapperBase

__all__ = [
    "CONTENT_TYPE_LATEST",
    "LATENCY_BUCKETS",
    "MULTIPROCESS_DIR_ENV",
    "children",
    "exposition",
    "forget_process",
]

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"

Metric = TypeVar("Metric", bound="MetricWrapperBase")

# Seconds: fine below 100 ms, where the pipeline should live, coarse above, where it should not.
LATENCY_BUCKETS = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
)  # fmt: skip


def children(metric: Metric, *fixed: str) -> Callable[..., Metric]:
    """`metric.labels(*fixed, *rest)`, each child looked up once and kept: `labels()` checks and
    converts every value and takes a lock on each call, and callbacks count per request. Label
    values come from the configuration and fixed vocabularies, so what is kept is bounded too."""
    made: dict[tuple[object, ...], Metric] = {}

    def child(*rest: object) -> Metric:
        found = made.get(rest)
        if found is None:
            found = made[rest] = metric.labels(*fixed, *rest)
        return found

    return child


def exposition() -> bytes:
    """Every metric of this process, or of all processes sharing the multiprocess directory."""
    if directory := os.environ.get(MULTIPROCESS_DIR_ENV):
        _forget_exited_processes(directory)
        registry = CollectorRegistry()
        multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
        return generate_latest(registry)
    return generate_latest(REGISTRY)


def forget_process(pid: int, directory: str) -> None:
    """Leave process `pid` out of the "live*" gauges (livemin and the like) of `directory`; its
    counters and histograms still count."""
    with contextlib.suppress(FileNotFoundError):  # another process's scrape was first
        multiprocess.mark_process_dead(pid, directory)  # type: ignore[no-untyped-call]


def _forget_exited_processes(directory: str) -> None:
    """The client library renders a "live*" gauge's file until mark_process_dead removes it, and
    uvicorn's supervisor, which replaces a dead process, has no hook to call it: so a process
    that died with a gauge at 0 would hold a livemin at 0 for good. Whoever scrapes forgets the
    processes that no longer run, which assumes the directory holds the processes of one host
    (one PID namespace), as a directory of one `payouts ingress` command does."""
    for path in Path(directory).glob("gauge_live*_*.db"):
        pid = int(path.stem.rpartition("_")[2])
        if not _running(pid):
            forget_process(pid, directory)


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: it runs
    return True
