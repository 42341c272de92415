"""Declaring the topology on a channel, from `Topology.definitions()` so the two never differ."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import aio_pika

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

    from schema.topology import Topology

__all__ = ["Declared", "declare"]


@dataclass(frozen=True)
class Declared:
    """What `declare` made, as objects of the channel that declared them.

    Consume from `work_queue` itself: a robust channel restores consumers only on the queue
    objects it declared, so a queue looked up another way loses its consumer on reconnect.
    """

    exchanges: dict[str, AbstractExchange]
    work_queue: AbstractQueue


async def declare(channel: AbstractChannel, topology: Topology) -> Declared:
    """Declare everything idempotently."""
    definitions = topology.definitions()
    exchanges = {
        spec["name"]: await channel.declare_exchange(
            spec["name"], aio_pika.ExchangeType(spec["type"]), durable=True
        )
        for spec in definitions["exchanges"]
    }
    queues = {
        spec["name"]: await channel.declare_queue(
            spec["name"], durable=True, arguments=spec["arguments"]
        )
        for spec in definitions["queues"]
    }
    for spec in definitions["bindings"]:
        await queues[spec["destination"]].bind(exchanges[spec["source"]], spec["routing_key"])
    return Declared(exchanges, queues[topology.work_queue])
