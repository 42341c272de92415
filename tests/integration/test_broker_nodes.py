"""Several broker nodes: two proxies in front of the one local RabbitMQ stand for two nodes of a
cluster; cutting one is a node lost to its clients."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from prometheus_client import REGISTRY

import broker.publisher
from broker.connection import NodeConnection, connect_once, connect_when_available
from broker.publisher import ConfirmedPublisher, persistent_message
from broker.subscription import subscribe
from schema.errors import BrokerUnavailable
from schema.events import decode_event
from schema.logs import redacted_url
from schema.settings import BrokerSettings, NodeOrder
from schema.topology import Topology
from tests.broker_admin import refusing_queue
from tests.factories import payout_event
from tests.polling import wait_until
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    import uuid
    from collections.abc import AsyncIterator

    from broker.deliveries import Delivery

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Each node gets its turn quickly, so a test never waits out a production backoff.
FAST_RECONNECTS = {"reconnect_interval_seconds": 0.1, "reconnect_max_interval_seconds": 0.4}


def closed_port_url() -> str:
    """An AMQP URL of a port nothing listens on (bound, then released): a node that is down."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return f"amqp://guest:guest@127.0.0.1:{port}/"


def with_nodes(settings: BrokerSettings, *urls: str) -> BrokerSettings:
    return BrokerSettings.model_validate(
        {
            **settings.model_dump(),
            **FAST_RECONNECTS,
            "urls": urls,
            "node_order": NodeOrder.LISTED,
        }
    )


@pytest.fixture
async def proxies(broker_settings: BrokerSettings) -> AsyncIterator[tuple[TcpProxy, TcpProxy]]:
    first = await TcpProxy.in_front_of(broker_settings.urls[0])
    second = await TcpProxy.in_front_of(broker_settings.urls[0])
    try:
        yield first, second
    finally:
        await first.close()
        await second.close()


def reconnects(role: str, node: str) -> float:
    return (
        REGISTRY.get_sample_value("payouts_broker_reconnects_total", {"role": role, "node": node})
        or 0.0
    )


async def test_a_dead_first_node_is_passed_over_in_the_listed_order(
    broker_settings: BrokerSettings,
) -> None:
    live = broker_settings.urls[0]
    settings = with_nodes(broker_settings, closed_port_url(), live)
    connection = await connect_when_available(settings, "test")
    try:
        assert connection.node == redacted_url(live)
    finally:
        await connection.close()


async def test_a_command_tries_each_node_once_in_order(broker_settings: BrokerSettings) -> None:
    settings = with_nodes(broker_settings, closed_port_url(), broker_settings.urls[0])
    connection = await connect_once(settings, "test", timeout_seconds=2)
    await connection.close()


async def test_a_command_names_every_node_it_could_not_reach(
    broker_settings: BrokerSettings,
) -> None:
    dead = (closed_port_url(), closed_port_url())
    with pytest.raises(BrokerUnavailable) as unavailable:
        await connect_once(with_nodes(broker_settings, *dead), "test", timeout_seconds=2)
    assert all(redacted_url(url) in str(unavailable.value) for url in dead)


async def test_operator_commands_pass_over_a_dead_first_node(
    broker_settings: BrokerSettings, database_url: str, tmp_path: Path
) -> None:
    config = tmp_path / "payouts.toml"
    config.write_text(
        f'[database]\nurl = "{database_url}"\n[broker]\n'
        f'urls = ["{closed_port_url()}", "{broker_settings.urls[0]}"]\n'
        f'namespace = "{broker_settings.namespace}"\n'
        f"retry_delays_seconds = {list(broker_settings.retry_delays_seconds)}\n"
    )

    def payouts(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "payouts", "--config", str(config), *args, "--json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
            env={"PATH": "/usr/bin:/bin", "PAYOUTS_LOG_LEVEL": "WARNING"},
            cwd=PROJECT_ROOT,
        )

    migrated = payouts("migrate")
    assert migrated.returncode == 0, migrated.stderr
    assert (
        json.loads(migrated.stdout)["topology"] == Topology.from_settings(broker_settings).exchange
    )
    browsed = payouts("dlq", "list")
    assert (browsed.returncode, json.loads(browsed.stdout)) == (0, []), browsed.stderr


async def test_a_consumer_and_a_publisher_move_to_the_other_node_when_theirs_is_cut(
    broker_settings: BrokerSettings, proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    live = broker_settings.urls[0]
    first, second = (proxy.url_through(live) for proxy in proxies)
    settings = with_nodes(broker_settings, first, second)
    received: asyncio.Queue[Delivery] = asyncio.Queue()
    connection = await connect_when_available(settings, "nodes-worker")
    publisher = ConfirmedPublisher(settings, "nodes-ingress")
    publisher.start()
    try:
        subscription = await subscribe(
            connection, Topology.from_settings(settings), 10, received.put_nowait
        )
        await publisher.wait_ready()
        await publisher.publish_event(before := payout_event())
        delivered = await asyncio.wait_for(received.get(), 5)
        await delivered.ack()
        assert decode_event(delivered.body).event_id == before.event_id
        reconnected_before = reconnects("nodes-worker", redacted_url(second))

        cut_at = time.monotonic()
        await proxies[0].cut()
        after = payout_event()
        answers: list[str] = []
        # What a provider would see: "try again" while moving, then accepted.
        while True:
            try:
                await publisher.publish_event(after)
            except BrokerUnavailable:
                answers.append("try again")
                await asyncio.sleep(0.05)
                continue
            answers.append("accepted")
            break
        confirmed_after = time.monotonic() - cut_at
        # The first ack may not have reached the broker before the cut: then the first event
        # comes again, as at-least-once delivery allows, before the second.
        seen: list[uuid.UUID] = []
        while not seen or seen[-1] != after.event_id:
            delivered = await asyncio.wait_for(received.get(), 5)
            await delivered.ack()
            seen.append(decode_event(delivered.body).event_id)

        assert set(seen[:-1]) <= {before.event_id}
        assert set(answers[:-1]) <= {"try again"}
        assert connection.node == redacted_url(second)
        assert subscription.active
        assert reconnects("nodes-worker", redacted_url(second)) == reconnected_before + 1
        assert confirmed_after < 3, (
            f"publishing was confirmed again only {confirmed_after:.2f} s after the cut"
        )
        await subscription.cancel()
    finally:
        await publisher.close()
        await connection.close()


async def test_attempts_back_off_up_to_the_cap_while_no_node_answers(
    broker_settings: BrokerSettings, proxies: tuple[TcpProxy, TcpProxy]
) -> None:
    first, second = (proxy.url_through(broker_settings.urls[0]) for proxy in proxies)
    for proxy in proxies:
        await proxy.cut()
    connection = NodeConnection(with_nodes(broker_settings, first, second), "test")
    connecting = asyncio.ensure_future(connection.connect())

    async def waits_at_the_cap() -> bool:
        cap = FAST_RECONNECTS["reconnect_max_interval_seconds"]
        return bool(connection.reconnect_interval == cap)

    try:
        await wait_until(waits_at_the_cap, "the wait between attempts to reach its cap")
        await proxies[1].restore()
        await asyncio.wait_for(connecting, 5)
        assert connection.node == redacted_url(second)
        assert connection.reconnect_interval == FAST_RECONNECTS["reconnect_interval_seconds"]
    finally:
        connecting.cancel()
        await connection.close()


async def test_a_nack_gets_the_publisher_a_new_channel(
    broker_settings: BrokerSettings,
    publisher: ConfirmedPublisher,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Long enough that the second nack below always falls within it.
    monkeypatch.setattr(broker.publisher, "NACK_REOPEN_INTERVAL_SECONDS", 600.0)
    topology = Topology.from_settings(broker_settings)
    async with refusing_queue(broker_settings.urls[0], f"{topology.namespace}.full") as full:
        await full.bind(topology.retry_exchange, "full")
        message = persistent_message(b"{}")
        with pytest.raises(BrokerUnavailable, match="Nack"):
            await publisher.publish(message, exchange=topology.retry_exchange, routing_key="full")
        assert "opening a new channel" in caplog.text

        async def confirmed_again() -> bool:
            try:
                await publisher.publish_event(payout_event())
            except BrokerUnavailable:
                return False
            return True

        await wait_until(confirmed_again, "a publish confirmed on the new channel", 5)
        # A second nack within the interval leaves the new channel alone.
        caplog.clear()
        with pytest.raises(BrokerUnavailable, match="Nack"):
            await publisher.publish(message, exchange=topology.retry_exchange, routing_key="full")
        assert "opening a new channel" not in caplog.text


async def test_a_new_channel_that_nacks_too_is_replaced_before_the_old_one_is_closed(
    broker_settings: BrokerSettings,
    publisher: ConfirmedPublisher,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Just after a node died, the channel opened on the next node was seen to nack as well: its
    own replacement must not wait for the first nacked channel's delayed close."""
    interval = 0.2
    assert broker_settings.publish_timeout_seconds > 10 * interval
    monkeypatch.setattr(broker.publisher, "NACK_REOPEN_INTERVAL_SECONDS", interval)
    topology = Topology.from_settings(broker_settings)
    async with refusing_queue(broker_settings.urls[0], f"{topology.namespace}.full") as full:
        await full.bind(topology.retry_exchange, "full")
        message = persistent_message(b"{}")
        for _ in range(2):
            caplog.clear()
            await asyncio.sleep(interval)
            with pytest.raises(BrokerUnavailable, match="Nack"):
                await publisher.publish(
                    message, exchange=topology.retry_exchange, routing_key="full"
                )
            assert "opening a new channel" in caplog.text
