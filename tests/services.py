"""The real Postgres and RabbitMQ the tests talk to, and throwaway names inside them.

Services come from PAYOUTS_TEST_POSTGRES_URL / PAYOUTS_TEST_RABBITMQ_URL, else the local defaults,
else testcontainers where a Docker engine answers. Each run gets its own database and broker
namespace and removes them afterwards, so runs can repeat on one machine.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import socket
import uuid
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import aio_pika
import asyncpg

from broker.connection import connect_once
from payouts.actions.setup import apply_migrations
from schema.settings import BrokerSettings
from schema.topology import Topology

if TYPE_CHECKING:
    from collections.abc import Iterator

POSTGRES_ENV = "PAYOUTS_TEST_POSTGRES_URL"
RABBITMQ_ENV = "PAYOUTS_TEST_RABBITMQ_URL"
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/postgres"
DEFAULT_RABBITMQ = "amqp://guest:guest@127.0.0.1:5672/"
# A node that neither answers nor refuses within this is passed over for the next one.
CONNECT_TIMEOUT_SECONDS = 5.0
HOW_TO_START = (
    "start them with `pg_ctlcluster --skip-systemctl-redirect $(ls /etc/postgresql) main start` "
    "and `rabbitmq-server -detached`, or name running ones in "
    f"{POSTGRES_ENV} and {RABBITMQ_ENV}"
)


def _reachable(url: str) -> bool:
    """Whether a host the URL names accepts a connection: its one host, or any of those a
    replicated database's URL lists (h1:5432,h2:5432), where `urlsplit(url).port` would fail."""
    for host in urlsplit(url).netloc.rpartition("@")[2].split(","):
        parts = urlsplit(f"//{host}")
        address = (parts.hostname or "127.0.0.1", parts.port or 0)
        try:
            with socket.create_connection(address, timeout=2):
                return True
        except OSError:
            continue
    return False


def _docker_available() -> bool:
    try:
        import docker

        docker.from_env().ping()
    except Exception:
        return False
    return True


def _container_class(module: str, name: str) -> Any:
    # testcontainers 4.15 deprecates its own wait decorator at import time; the suite turns
    # warnings into errors, and this one is not ours to fix.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return getattr(importlib.import_module(f"testcontainers.community.{module}"), name)


@contextlib.contextmanager
def service_urls() -> Iterator[tuple[str, str]]:
    """(postgres admin URL, rabbitmq URL), starting containers only where nothing is reachable."""
    postgres = os.environ.get(POSTGRES_ENV, DEFAULT_POSTGRES)
    rabbitmq = os.environ.get(RABBITMQ_ENV, DEFAULT_RABBITMQ)
    with contextlib.ExitStack() as stack:
        missing = [url for url in (postgres, rabbitmq) if not _reachable(url)]
        if missing and not _docker_available():
            raise RuntimeError(f"test services unreachable ({', '.join(missing)}); {HOW_TO_START}")
        if not _reachable(postgres):
            PostgresContainer = _container_class("postgres", "PostgresContainer")  # noqa: N806

            container: Any = stack.enter_context(PostgresContainer("postgres:16", driver=None))
            postgres = container.get_connection_url()
        if not _reachable(rabbitmq):
            RabbitMqContainer = _container_class("rabbitmq", "RabbitMqContainer")  # noqa: N806

            broker: Any = stack.enter_context(RabbitMqContainer("rabbitmq:3.13"))
            params = broker.get_connection_params()
            rabbitmq = f"amqp://guest:guest@{params.host}:{params.port}/"
        yield postgres, rabbitmq


def _with_database(url: str, name: str) -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{name}"))


@dataclass
class Services:
    postgres_admin_url: str
    rabbitmq_url: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:10])
    _databases: list[str] = field(default_factory=list)
    _topologies: list[Topology] = field(default_factory=list)

    async def new_database(self) -> str:
        """A fresh, migrated database; returns its URL."""
        name = f"payouts_test_{self.run_id}_{len(self._databases)}"
        admin = await asyncpg.connect(self.postgres_admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{name}"')
        finally:
            await admin.close()
        self._databases.append(name)
        url = _with_database(self.postgres_admin_url, name)
        conn = await asyncpg.connect(url)
        try:
            await apply_migrations(conn)
        finally:
            await conn.close()
        return url

    def new_namespace(self, retry_delays_seconds: tuple[int, ...] | None = None) -> str:
        """A broker namespace of its own; its queues and exchanges are deleted at the end."""
        namespace = f"payouts-test-{self.run_id}-{len(self._topologies)}"
        delays = retry_delays_seconds or BrokerSettings().retry_delays_seconds
        self._topologies.append(Topology(namespace, delays))
        return namespace

    async def release_namespace(self, namespace: str, broker_url: str | None = None) -> None:
        """Delete one namespace's queues and exchanges now, not at the end of the run: hundreds
        of idle quorum queues are enough to make a small broker stop accepting connections.
        `broker_url` names the broker holding them when it is not the default one (a cluster's
        nodes, separated by commas)."""
        topology = next(t for t in self._topologies if t.namespace == namespace)
        connection = await connect_any(broker_url or self.rabbitmq_url)
        async with connection:
            await delete_topology(connection, topology)
        self._topologies.remove(topology)

    async def clean_up(self) -> None:
        admin = await asyncpg.connect(self.postgres_admin_url)
        try:
            for name in self._databases:
                await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()
        connection = await aio_pika.connect(self.rabbitmq_url)
        async with connection:
            for topology in self._topologies:
                await delete_topology(connection, topology)


async def delete_topology(connection: aio_pika.abc.AbstractConnection, topology: Topology) -> None:
    channel = await connection.channel()
    definitions = topology.definitions()
    for queue in definitions["queues"]:
        await channel.queue_delete(queue["name"])
    for exchange in definitions["exchanges"]:
        await channel.exchange_delete(exchange["name"])


async def fetch_value(database_url: str, query: str, *args: Any) -> Any:
    """One value from a short-lived connection: what a test asks the database between steps."""
    conn = await asyncpg.connect(database_url)
    try:
        return await conn.fetchval(query, *args)
    finally:
        await conn.close()


async def connect_any(broker_url: str) -> aio_pika.abc.AbstractConnection:
    """A short-lived connection to the first node that answers, of the one URL or the several
    separated by commas (a cluster whose first node a test may have killed)."""
    nodes = BrokerSettings(urls=tuple(broker_url.split(",")))
    return await connect_once(nodes, "tests", CONNECT_TIMEOUT_SECONDS)


async def queue_depth(broker_url: str, queue: str) -> int:
    """Messages ready in `queue` (not those delivered and unacknowledged), over a short-lived
    connection to one of `broker_url`'s nodes: what a test asks the broker between steps."""
    connection = await connect_any(broker_url)
    async with connection:
        declared = await (await connection.channel()).declare_queue(queue, passive=True)
        return int(declared.declaration_result.message_count or 0)
