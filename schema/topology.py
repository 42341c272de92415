"""The broker topology: every exchange, queue and binding, named from one namespace. The broker
package declares it (`broker.declaration`), and `payouts topology` exports it as RabbitMQ
definitions for operators who manage the broker declaratively."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from schema.events import EVENT_TYPE

if TYPE_CHECKING:
    from schema.settings import BrokerSettings

__all__ = ["DELIVERY_LIMIT", "ROUTING_KEY", "Topology"]

ROUTING_KEY = EVENT_TYPE
# A message that keeps killing its consumer is dead-lettered after this many deliveries, so one
# poison message cannot stall a queue forever. Failures the worker sees never count against it:
# it re-publishes those to a retry tier and acks the original.
DELIVERY_LIMIT = 20
_QUORUM_AT_LEAST_ONCE = {
    "x-queue-type": "quorum",
    # At-least-once dead-lettering needs reject-publish overflow (RabbitMQ quorum docs).
    "x-dead-letter-strategy": "at-least-once",
    "x-overflow": "reject-publish",
}


@dataclass(frozen=True)
class Topology:
    """Names and arguments derived from one namespace, so tests and tenants can share a broker."""

    namespace: str
    retry_delays_seconds: tuple[int, ...] = (5, 60, 600, 3600)
    # 0: the quorum queues are declared without x-quorum-initial-group-size (BrokerSettings).
    quorum_initial_group_size: int = 3

    @classmethod
    def from_settings(cls, settings: BrokerSettings) -> Topology:
        return cls(
            settings.namespace, settings.retry_delays_seconds, settings.quorum_initial_group_size
        )

    @property
    def exchange(self) -> str:
        return f"{self.namespace}.payouts"

    @property
    def work_queue(self) -> str:
        return f"{self.namespace}.payouts.work"

    @property
    def retry_exchange(self) -> str:
        return f"{self.namespace}.payouts.retry"

    def retry_queue(self, delay_seconds: int) -> str:
        return f"{self.namespace}.payouts.retry.{delay_seconds}s"

    @staticmethod
    def retry_routing_key(delay_seconds: int) -> str:
        return f"retry.{delay_seconds}s"

    @property
    def pending_queues(self) -> tuple[str, ...]:
        """Where a payout waits to be processed: the work queue and every retry tier."""
        return (self.work_queue, *map(self.retry_queue, self.retry_delays_seconds))

    @property
    def dead_letter_exchange(self) -> str:
        return f"{self.namespace}.payouts.dead-letter"

    @property
    def dead_letter_queue(self) -> str:
        return f"{self.namespace}.payouts.dead"

    def _quorum_arguments(self) -> dict[str, Any]:
        if not self.quorum_initial_group_size:
            return dict(_QUORUM_AT_LEAST_ONCE)
        # Replicas on that many nodes; RabbitMQ takes all of them when the cluster has fewer.
        return {
            **_QUORUM_AT_LEAST_ONCE,
            "x-quorum-initial-group-size": self.quorum_initial_group_size,
        }

    def work_queue_arguments(self) -> dict[str, Any]:
        return {
            **self._quorum_arguments(),
            "x-delivery-limit": DELIVERY_LIMIT,
            "x-dead-letter-exchange": self.dead_letter_exchange,
        }

    def retry_queue_arguments(self, delay_seconds: int) -> dict[str, Any]:
        # Messages expire only at the head of a queue, hence one queue (one TTL) per delay.
        return {
            **self._quorum_arguments(),
            "x-message-ttl": delay_seconds * 1000,
            "x-dead-letter-exchange": self.exchange,
            "x-dead-letter-routing-key": ROUTING_KEY,
        }

    @staticmethod
    def dead_letter_queue_arguments() -> dict[str, Any]:
        # Classic: browsing the queue returns messages unacked, and a quorum queue would count
        # each browse as a delivery (RabbitMQ 4 dead-letters, here dropping, after 20 of them).
        return {"x-queue-type": "classic"}

    def definitions(self, vhost: str = "/") -> dict[str, Any]:
        """The same topology as RabbitMQ definitions (`rabbitmqctl import_definitions`)."""

        def exchange(name: str, kind: str) -> dict[str, Any]:
            return {
                "name": name,
                "vhost": vhost,
                "type": kind,
                "durable": True,
                "auto_delete": False,
                "internal": False,
                "arguments": {},
            }

        def queue(name: str, arguments: dict[str, Any]) -> dict[str, Any]:
            return {
                "name": name,
                "vhost": vhost,
                "durable": True,
                "auto_delete": False,
                "arguments": arguments,
            }

        def binding(source: str, destination: str, key: str) -> dict[str, Any]:
            return {
                "source": source,
                "vhost": vhost,
                "destination": destination,
                "destination_type": "queue",
                "routing_key": key,
                "arguments": {},
            }

        delays = self.retry_delays_seconds
        return {
            "exchanges": [
                exchange(self.exchange, "direct"),
                exchange(self.retry_exchange, "direct"),
                exchange(self.dead_letter_exchange, "fanout"),
            ],
            "queues": [
                queue(self.work_queue, self.work_queue_arguments()),
                *(queue(self.retry_queue(d), self.retry_queue_arguments(d)) for d in delays),
                queue(self.dead_letter_queue, self.dead_letter_queue_arguments()),
            ],
            "bindings": [
                binding(self.exchange, self.work_queue, ROUTING_KEY),
                *(
                    binding(self.retry_exchange, self.retry_queue(d), self.retry_routing_key(d))
                    for d in delays
                ),
                binding(self.dead_letter_exchange, self.dead_letter_queue, ""),
            ],
        }
