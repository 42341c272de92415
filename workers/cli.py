"""The `payouts` command: run each part of the pipeline, and inspect or fix its records.

Subcommands import what they need when they run, so `payouts --help` is instant and a
shadowed `schema` package is reported before anything depends on it.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

from workers.console import (
    POSTGRES_HINT,
    RABBITMQ_HINT,
    ServiceUnreachable,
    add_command,
    load_checked_settings,
    print_data,
    with_connection,
)
from workers.dlq_commands import register_dlq_commands

if TYPE_CHECKING:
    from collections.abc import Callable

    import asyncpg

    from schema.settings import Settings

__all__ = ["main"]

DEFAULT_CONFIG = "payouts.toml"


def _ensure_own_schema_package() -> None:
    import schema

    if not getattr(schema, "IS_PAYOUTS_SCHEMA", False):
        sys.exit(
            f"payouts: the module 'schema' at {getattr(schema, '__file__', '?')} is not this "
            "project's; uninstall the unrelated PyPI package 'schema' from this environment"
        )


def cmd_migrate(args: argparse.Namespace) -> int:
    from schema.topology import Topology
    from workers.database import apply_migrations, create_database_if_missing

    settings = load_checked_settings(args)
    if args.create_database:
        try:
            asyncio.run(create_database_if_missing(settings.database.url))
        except OSError as error:
            raise ServiceUnreachable(f"Postgres: {error}; {POSTGRES_HINT}") from None
    applied = asyncio.run(with_connection(settings, apply_migrations))
    asyncio.run(_declare_topology(settings))
    print_data(
        {"applied": applied, "topology": Topology.from_settings(settings.broker).exchange},
        args.json,
    )
    return 0


async def _declare_topology(settings: Settings) -> None:
    import aio_pika

    from schema.logs import redacted_url
    from schema.topology import Topology, declare

    try:
        connection = await aio_pika.connect(settings.broker.url, timeout=10)
    except (OSError, TimeoutError, aio_pika.exceptions.AMQPError) as error:
        where = redacted_url(settings.broker.url)
        raise ServiceUnreachable(f"RabbitMQ at {where}: {error!r}; {RABBITMQ_HINT}") from None
    async with connection:
        await declare(await connection.channel(), Topology.from_settings(settings.broker))


def cmd_topology(args: argparse.Namespace) -> int:
    from schema.topology import Topology

    settings = load_checked_settings(args)
    print_data(Topology.from_settings(settings.broker).definitions(), as_json=True)
    return 0


def cmd_ingress(args: argparse.Namespace) -> int:
    from ingress.server import serve

    settings = _overridden(load_checked_settings(args), "ingress", args, host="host", port="port")
    serve(settings, os.environ, args.processes)
    return 0


def _overridden(
    settings: Settings, section: str, args: argparse.Namespace, **keys: str
) -> Settings:
    """`settings` with `section`'s keys replaced by the command-line options given (key=option)."""
    overrides = {
        key: getattr(args, option)
        for key, option in keys.items()
        if getattr(args, option) is not None
    }
    if not overrides:
        return settings
    from pydantic import ValidationError

    from schema.settings import ConfigError

    current = getattr(settings, section)
    try:
        updated = type(current).model_validate({**current.model_dump(), **overrides})
    except ValidationError as error:
        problems = "; ".join(
            f"--{keys[str(item['loc'][0])].replace('_', '-')}: {item['msg']}"
            for item in error.errors()
        )
        raise ConfigError(problems) from None
    return settings.model_copy(update={section: updated})


def cmd_worker(args: argparse.Namespace) -> int:
    import logging

    from schema.logs import log
    from workers import event_loop
    from workers.consumer import Worker
    from workers.database import create_pool_when_available
    from workers.status_server import StatusServer, waiting_for_database
    from workers.stopping import stop_on_signals, unless_stopped

    settings = _overridden(
        load_checked_settings(args),
        "worker",
        args,
        status_host="status_host",
        status_port="status_port",
    )

    if args.processes > 1:
        return _supervise(args, settings)

    async def run() -> int:
        stop = stop_on_signals()
        orphan_watch = None
        if args.supervisor_pid is not None:
            from workers.supervisor import stop_when_orphaned

            orphan_watch = asyncio.create_task(stop_when_orphaned(args.supervisor_pid, stop))
        # Open before the pool: while Postgres is away at start-up the process is alive, not
        # ready, and a startup or liveness probe must not restart it for waiting.
        status = StatusServer(
            settings.worker.status_host, settings.worker.status_port, waiting_for_database
        )
        try:
            await status.start()
            pool = await unless_stopped(create_pool_when_available(settings.database), stop)
            if pool is None:
                await status.close()
                log(
                    logging.getLogger("workers.consumer"),
                    logging.INFO,
                    "worker stopped before the database answered",
                    exit_code=0,
                )
                return 0
            try:
                return await Worker(settings, pool, status=status).run(stop)
            finally:
                await pool.close()
        finally:
            if orphan_watch is not None:
                orphan_watch.cancel()

    return event_loop.run(run())


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    from workers.consumer import stop_seconds
    from workers.supervisor import Supervisor, child_command

    worker = settings.worker
    commands = [
        child_command(args.config, index, worker.status_host, worker.status_port)
        for index in range(args.processes)
    ]

    async def run() -> int:
        supervisor = Supervisor(commands, stop_seconds(settings))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        return await supervisor.run()

    return asyncio.run(run())


def cmd_payout_show(args: argparse.Namespace) -> int:
    from workers.inspection import payout_details

    async def show(conn: asyncpg.Connection) -> Any:
        return await payout_details(conn, args.provider, args.transaction)

    details = asyncio.run(with_connection(load_checked_settings(args), show))
    if details is None:
        print(
            f"no payout {args.transaction!r} for provider instance {args.provider!r}",
            file=sys.stderr,
        )
        return 1
    print_data(details, args.json)
    return 0


def cmd_balance_show(args: argparse.Namespace) -> int:
    from workers.inspection import user_balances

    async def show(conn: asyncpg.Connection) -> Any:
        return await user_balances(conn, args.user)

    print_data(asyncio.run(with_connection(load_checked_settings(args), show)), args.json)
    return 0


def cmd_account_create(args: argparse.Namespace) -> int:
    from workers.accounts import create_wallet

    async def create(conn: asyncpg.Connection) -> Any:
        created, credited = await create_wallet(conn, args.user, args.currency)
        return {
            "user_id": args.user,
            "currency": args.currency,
            "created": created,
            "credited_held_payouts": [vars(payout) for payout in credited],
        }

    print_data(asyncio.run(with_connection(load_checked_settings(args), create)), args.json)
    return 0


def cmd_payout_attach_proof(args: argparse.Namespace) -> int:
    from pathlib import Path

    from workers.proof_images import ProofImageError, validated_media_type
    from workers.proofs import NoSuchPayout, attach_proof

    settings = load_checked_settings(args)
    limit = settings.proof_api.max_image_bytes
    try:
        path = Path(args.file)
        if path.stat().st_size > limit:
            raise ProofImageError(f"the file is over proof_api.max_image_bytes ({limit} bytes)")
        data = path.read_bytes()
        media_type = validated_media_type(data, max_bytes=limit)
    except OSError as error:
        print(f"payouts: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 1
    except ProofImageError as error:
        print(f"payouts: {args.file}: {error}", file=sys.stderr)
        return 1

    async def attach(conn: asyncpg.Connection) -> Any:
        return await attach_proof(conn, args.provider, args.transaction, media_type, data)

    try:
        image_id = asyncio.run(with_connection(settings, attach))
    except NoSuchPayout as error:
        print(f"payouts: {error}", file=sys.stderr)
        return 1
    print_data(
        {"image_id": image_id, "media_type": media_type, "already_attached": image_id is None},
        args.json,
    )
    return 0


def cmd_order_register(args: argparse.Namespace) -> int:
    from ingress.order_terms import OrderRefused, checked_order
    from workers.orders import RegisterResult, register_order

    settings = load_checked_settings(args)
    try:
        order = checked_order(
            settings, args.provider, args.order_id, args.user, args.item, args.amount
        )
    except OrderRefused as error:
        print(f"payouts: {error}", file=sys.stderr)
        return 1

    async def register(conn: asyncpg.Connection) -> Any:
        return await register_order(conn, order)

    result, stored = asyncio.run(with_connection(settings, register))
    print_data({"result": result.value, "order": vars(stored)}, args.json)
    return 1 if result is RegisterResult.CONFLICT else 0


def cmd_order_show(args: argparse.Namespace) -> int:
    from workers.orders import find_order

    async def show(conn: asyncpg.Connection) -> Any:
        return await find_order(conn, args.provider, args.order_id)

    order = asyncio.run(with_connection(load_checked_settings(args), show))
    if order is None:
        print(f"no order {args.order_id!r} for {args.provider!r}", file=sys.stderr)
        return 1
    print_data(vars(order), args.json)
    return 0


def cmd_order_cancel(args: argparse.Namespace) -> int:
    from workers.orders import cancel_order

    async def cancel(conn: asyncpg.Connection) -> Any:
        return await cancel_order(conn, args.provider, args.order_id)

    if not asyncio.run(with_connection(load_checked_settings(args), cancel)):
        print(f"no pending order {args.order_id!r} for {args.provider!r}", file=sys.stderr)
        return 1
    print_data({"cancelled": args.order_id}, args.json)
    return 0


def _add_processes_option(parser: argparse.ArgumentParser, help_text: str) -> None:
    parser.add_argument(
        "--processes",
        type=int,
        default=1,
        choices=range(1, 65),
        metavar="N",
        help=f"{help_text} (default: 1)",
    )


def _parser() -> argparse.ArgumentParser:
    from schema.settings import CONFIG_PATH_ENV

    parser = argparse.ArgumentParser(prog="payouts", description=__doc__)
    parser.add_argument(
        "--config",
        default=os.environ.get(CONFIG_PATH_ENV, DEFAULT_CONFIG),
        help="configuration file (default: $PAYOUTS_CONFIG or ./payouts.toml)",
    )
    commands = parser.add_subparsers(dest="command", required=True)

    def command(
        name: str,
        handler: Callable[[argparse.Namespace], int],
        help_text: str,
        parent: Any = commands,
    ) -> argparse.ArgumentParser:
        return add_command(parent, name, handler, help_text)

    command(
        "migrate", cmd_migrate, "apply database migrations and declare the broker topology"
    ).add_argument(
        "--create-database", action="store_true", help="create the database first if it is missing"
    )
    command("topology", cmd_topology, "print the broker topology as RabbitMQ definitions (JSON)")
    ingress = command("ingress", cmd_ingress, "serve the provider callback endpoints")
    ingress.add_argument("--host", help="listen address (default: ingress.host in the config)")
    ingress.add_argument(
        "--port", type=int, help="listen port (default: ingress.port in the config)"
    )
    _add_processes_option(
        ingress,
        "serve from N processes sharing the port, restarting any that dies; /metrics renders "
        "all of them",
    )
    worker = command("worker", cmd_worker, "consume payout events and credit them")
    worker.add_argument(
        "--status-host", help="metrics and health address (default: worker.status_host)"
    )
    worker.add_argument(
        "--status-port",
        type=int,
        help="metrics and health port, one per process on a host (default: worker.status_port)",
    )
    _add_processes_option(
        worker,
        "run N worker processes, restarting any that dies; process i serves its status on "
        "status port + i",
    )
    # Given by the supervisor of --processes to each worker it starts: stop once it is gone.
    worker.add_argument("--supervisor-pid", type=int, help=argparse.SUPPRESS)

    payout = commands.add_parser("payout", help="inspect payouts").add_subparsers(required=True)
    show = command("show", cmd_payout_show, "one payout: outcome, ledger, raw request", payout)
    show.add_argument("--provider", required=True, help="provider instance name")
    show.add_argument("--transaction", required=True, help="the provider's transaction id")

    attach = command(
        "attach-proof",
        cmd_payout_attach_proof,
        "attach a PNG, JPEG or WebP image to a payout as proof for the Payout Proof API",
        payout,
    )
    attach.add_argument("--provider", required=True, help="provider instance name")
    attach.add_argument("--transaction", required=True, help="the provider's transaction id")
    attach.add_argument("--file", required=True, help="the image file")

    balance = commands.add_parser("balance", help="inspect balances").add_subparsers(required=True)
    command(
        "show", cmd_balance_show, "a user's wallets, held payouts and inventory", balance
    ).add_argument("--user", required=True)

    order = commands.add_parser("order", help="the game's pending orders").add_subparsers(
        required=True
    )
    register = command(
        "register",
        cmd_order_register,
        "register a pending order that a provider's payout must match (docs/orders.md)",
        order,
    )
    for sub in (
        register,
        command("show", cmd_order_show, "one order and its status", order),
        command("cancel", cmd_order_cancel, "cancel a pending order", order),
    ):
        sub.add_argument("--provider", required=True, help="provider instance name")
        sub.add_argument("--order-id", required=True, help="the game's order id")
    register.add_argument("--user", required=True, help="the user the order is for")
    register.add_argument(
        "--item", action="append", help="an item id the order grants (wallet_billing: exactly one)"
    )
    register.add_argument("--amount", help="the order's price, as a decimal")

    account = commands.add_parser("account", help="manage accounts").add_subparsers(required=True)
    create = command(
        "create",
        cmd_account_create,
        "create a user's wallet and credit payouts held for it",
        account,
    )
    create.add_argument("--user", required=True)
    create.add_argument("--currency", required=True)

    register_dlq_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    _ensure_own_schema_package()
    from schema.broker import BrokerUnavailable
    from schema.logs import configure_logging
    from schema.settings import ConfigError

    args = _parser().parse_args(argv)
    # The long-running parts log every request and payout; one-shot commands only what is wrong.
    default_level = "INFO" if args.command in ("ingress", "worker") else "WARNING"
    configure_logging(os.environ.get("PAYOUTS_LOG_LEVEL", default_level))
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        print(f"payouts: configuration error: {error}", file=sys.stderr)
        return 2
    except ServiceUnreachable as error:
        print(f"payouts: cannot reach {error}", file=sys.stderr)
        return 3
    except BrokerUnavailable as error:
        print(f"payouts: cannot reach {error}; {RABBITMQ_HINT}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as other command-line tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaced for the rest of the exit
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
