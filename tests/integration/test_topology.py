"""The shipped RabbitMQ definitions match what the code declares, and the broker loads them."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import TYPE_CHECKING

import aio_pika
from yarl import URL

from broker.declaration import declare
from schema.settings import load_settings
from schema.topology import Topology
from tests.availability import require_tool
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


async def rabbitmqctl(*arguments: str, stdin: bytes = b"") -> None:
    command = await asyncio.create_subprocess_exec(
        require_tool("rabbitmqctl", "the broker is not local (in a container)"),
        "-q",
        *arguments,
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.DEVNULL,
    )
    await command.communicate(stdin)
    assert command.returncode == 0, f"rabbitmqctl {' '.join(arguments)} failed"


async def test_definitions_load_into_the_broker_and_agree_with_declare(services: Services) -> None:
    topology = Topology(services.new_namespace())
    # Through standard input: the broker node, not this process, would read a file path.
    await rabbitmqctl("import_definitions", stdin=json.dumps(topology.definitions()).encode())
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


async def test_the_compose_brokers_user_definitions_load_and_let_the_stack_log_in(
    services: Services,
) -> None:
    """deploy/compose/rabbitmq/users.json as the compose broker imports it at boot, under a
    name of this run's own so the machine's users stay as they were."""
    definitions = json.loads((DEPLOY / "compose" / "rabbitmq" / "users.json").read_text())
    (user,) = definitions["users"]
    (permission,) = definitions["permissions"]
    password = user["name"]  # the development user's password is its name (deploy/compose.yaml)
    user["name"] = permission["user"] = f"payouts-test-{services.run_id}"
    await rabbitmqctl("import_definitions", stdin=json.dumps(definitions).encode())
    try:
        login = URL(services.rabbitmq_url).with_user(user["name"]).with_password(password)

        async def logged_in() -> bool:
            try:
                connection = await aio_pika.connect(str(login))
            except aio_pika.exceptions.AMQPConnectionError:
                return False
            await connection.close()
            return True

        await wait_until(logged_in, "the imported user to log in")
    finally:
        await rabbitmqctl("delete_user", user["name"])
