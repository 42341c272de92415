"""The broker topology, declared from this one place by the ingress, the workers and `migrate`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aio_pika

if TYPE_CHECKING:
    from aio_pika.abc import AbstractChannel, AbstractExchange, AbstractQueue

__all__ = ["ROUTING_KEY", "Declared", "Topology", "declare"]

ROUTING_KEY = "payout.v1"
# A message that keeps killing its consumer is dead-lettered after this many deliveries, so one
# poison message cannot stall a queue forever. Transient failures never count against it: the
# worker retries them in place and then re-publishes the message instead of returning it.
DELIVERY_LIMIT = 20


@dataclass(frozen=True)
class Topology:
    """Names derived from one namespace, so tests and tenants can share a broker."""

    namespace: str

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.payouts"

    @property
    def work_queue(self) -> str:
        return f"{self.namespace}.payouts.work"

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.payouts.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.payouts.dead"

    def work_queue_arguments(self) -> dict[str, Any]:
        return {
            "x-queue-type": "quorum",
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
            # At-least-once dead-lettering needs reject-publish overflow (RabbitMQ quorum docs).
            "x-dead-letter-strategy": "at-least-once",
            "x-overflow": "reject-publish",
        }


@dataclass(frozen=True)
class Declared:
    """What `declare` made, as objects of the channel that declared them.

    Consume from `work_queue` itself: a robust channel restores consumers only on the queue
    objects it declared, so a queue looked up another way loses its consumer on reconnect.
    """

    exchange: AbstractExchange
    work_queue: AbstractQueue


async def declare(channel: AbstractChannel, topology: Topology) -> Declared:
    """Declare everything idempotently."""
    exchange = await channel.declare_exchange(
        topology.exchange, aio_pika.ExchangeType.DIRECT, durable=True
    )
    dead_letter_exchange = await channel.declare_exchange(
        topology.dead_letter_exchange, aio_pika.ExchangeType.FANOUT, durable=True
    )
    dead_letter_queue = await channel.declare_queue(
        topology.dead_letter_queue, durable=True, arguments={"x-queue-type": "quorum"}
    )
    await dead_letter_queue.bind(dead_letter_exchange, routing_key="")
    work_queue = await channel.declare_queue(
        topology.work_queue, durable=True, arguments=topology.work_queue_arguments()
    )
    await work_queue.bind(exchange, routing_key=ROUTING_KEY)
    return Declared(exchange, work_queue)
