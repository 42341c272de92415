"""The shipped RabbitMQ definitions match what the code declares, and the broker loads them."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
import pytest

from schema.settings import load_settings
from schema.topology import Topology, declare
from tests.polling import wait_until

if TYPE_CHECKING:
    from tests.services import Services

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"


def test_shipped_definitions_match_the_example_configuration() -> None:
    settings = load_settings(DEPLOY / "payouts.example.toml", environ={})
    shipped = json.loads((DEPLOY / "rabbitmq" / "definitions.json").read_text())
    assert shipped == Topology.from_settings(settings.broker).definitions(), (
        "regenerate with: payouts --config deploy/payouts.example.toml topology "
        "> deploy/rabbitmq/definitions.json"
    )


async def test_definitions_load_into_the_broker_and_agree_with_declare(services: Services) -> None:
    if shutil.which("rabbitmqctl") is None:
        pytest.skip("rabbitmqctl is not on this machine (broker in a container)")
    topology = Topology(services.new_namespace())
    # Through standard input: the broker node, not this process, would read a file path.
    imported = await asyncio.create_subprocess_exec(
        "rabbitmqctl",
        "-q",
        "import_definitions",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    await imported.communicate(json.dumps(topology.definitions()).encode())
    assert imported.returncode == 0
    connection = await aio_pika.connect(services.rabbitmq_url)
    async with connection:

        async def imported_queue_exists() -> bool:
            try:
                await (await connection.channel()).declare_queue(topology.work_queue, passive=True)
            except aio_pika.exceptions.ChannelClosed:
                return False
            return True

        await wait_until(imported_queue_exists, "the asynchronous import to finish")
        # Declaring with different arguments would close the channel (PRECONDITION_FAILED).
        declared = await declare(await connection.channel(), topology)
        assert declared.work_queue.name == topology.work_queue
