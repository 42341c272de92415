"""The depth of every queue a payout may wait in, sampled for payouts_queue_messages: the signal
an autoscaler and the dashboards read."""

from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING

from broker.connection import BROKER_ERRORS
from broker.depths import QueueDepths
from schema.logs import log
from workers import metrics

if TYPE_CHECKING:
    from broker.connection import RobustConnection
    from schema.topology import Topology

__all__ = ["sample_queue_depths"]

logger = logging.getLogger(__name__)


async def sample_queue_depths(
    connection: RobustConnection, topology: Topology, interval_seconds: float
) -> None:
    """Until cancelled: read the depths of `topology`'s work, retry and dead-letter queues every
    `interval_seconds`."""
    names = [*topology.pending_queues, topology.dead_letter_queue]
    depths = QueueDepths(connection)
    while True:
        try:
            for name in names:
                metrics.QUEUE_MESSAGES.labels(name).set(await depths.read(name))
        except BROKER_ERRORS as error:
            # A broker outage shows in the other signals; the depths resume with it.
            log(logger, logging.DEBUG, "queue depths not sampled", error=repr(error))
        await asyncio.sleep(interval_seconds)
