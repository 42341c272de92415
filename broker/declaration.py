"""Declaring the topology on a channel, from `Topology.definitions()` so the two never differ."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

import aio_pika
import aiormq

from schema.logs import log

if TYPE_CHECKING:
    from collections.abc import Callable

    from aio_pika.abc import AbstractChannel, AbstractConnection, AbstractExchange, AbstractQueue

    from schema.topology import Topology

__all__ = ["Declared", "declare", "declare_dead_letter_queue", "declare_replicated"]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Declared:
    """What `declare` made, as objects of the channel that declared them.

    Consume from `work_queue` itself: a robust channel restores consumers only on the queue
    objects it declared, so a queue looked up another way loses its consumer on reconnect.
    """

    exchanges: dict[str, AbstractExchange]
    work_queue: AbstractQueue


async def declare(channel: AbstractChannel, topology: Topology) -> Declared:
    """Declare everything idempotently, on one channel: what a one-shot command does."""
    exchanges, queues = await _declare(channel, topology, lambda _: True)
    return Declared(exchanges, queues[topology.work_queue])


async def declare_replicated(channel: AbstractChannel, topology: Topology) -> Declared:
    """The exchanges, the quorum queues and their bindings: what a long-running process declares
    on its robust channel, which declares them again after every reconnect. Any node of a
    cluster can, as long as the queues have a majority."""
    exchanges, queues = await _declare(
        channel, topology, lambda name: name != topology.dead_letter_queue
    )
    return Declared(exchanges, queues[topology.work_queue])


async def declare_dead_letter_queue(connection: AbstractConnection, topology: Topology) -> None:
    """The dead-letter queue and its binding, on a channel of its own, once per process: never
    again on a reconnect, and not at all while its node is down.

    It is a classic queue (`Topology.dead_letter_queue_arguments`), so it lives on one node of
    a cluster. While that node is down, RabbitMQ refuses to declare it (NOT_FOUND, "home node
    ... is down or inaccessible"): declared on the robust channel, it made every reconnect fail,
    and a process whose node died could not move to another one until the dead-letter queue's
    node was back. That refusal means the queue exists, bound: nothing is left to do, and
    dead-lettering waits for its node (at-least-once dead-lettering keeps the messages)."""
    async with connection.channel() as channel:
        try:
            await _declare(channel, topology, lambda name: name == topology.dead_letter_queue)
        except aiormq.exceptions.ChannelNotFoundEntity as error:
            log(
                logger,
                logging.WARNING,
                "the dead-letter queue's node is down; the queue exists, declared before",
                queue=topology.dead_letter_queue,
                error=repr(error),
            )


async def _declare(
    channel: AbstractChannel, topology: Topology, including: Callable[[str], bool]
) -> tuple[dict[str, AbstractExchange], dict[str, AbstractQueue]]:
    """Every exchange, the queues `including` accepts, and the bindings to those queues."""
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
        if including(spec["name"])
    }
    for spec in definitions["bindings"]:
        if spec["destination"] in queues:
            await queues[spec["destination"]].bind(exchanges[spec["source"]], spec["routing_key"])
    return exchanges, queues
