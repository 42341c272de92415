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
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payouts.output import add_command, print_data

if TYPE_CHECKING:
    from collections.abc import Callable

    from payouts.actions.operator import Operator
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


def _settings(args: argparse.Namespace) -> Settings:
    from payouts.actions.connections import load_checked_settings

    return load_checked_settings(Path(args.config))


def cmd_migrate(args: argparse.Namespace) -> int:
    from payouts.actions.setup import migrate

    print_data(asyncio.run(migrate(_settings(args), args.create_database)), args.json)
    return 0


def cmd_topology(args: argparse.Namespace) -> int:
    from schema.topology import Topology

    print_data(Topology.from_settings(_settings(args).broker).definitions(), as_json=True)
    return 0


def cmd_ingress(args: argparse.Namespace) -> int:
    from ingress.server import serve

    settings = _overridden(_settings(args), "ingress", args, host="host", port="port")
    return serve(settings, os.environ, args.processes)


def cmd_console(args: argparse.Namespace) -> int:
    from payouts.console.server import serve

    settings = _overridden(
        _settings(args),
        "console",
        args,
        host="host",
        port="port",
        operators_file="operators_file",
    )
    return serve(settings, os.environ)


def cmd_console_hash_password(args: argparse.Namespace) -> int:
    import getpass

    from payouts.console.passwords import hash_password

    if sys.stdin.isatty():
        password = getpass.getpass("Password: ")
        if getpass.getpass("Again: ") != password:
            print("payouts: the two passwords differ; nothing printed", file=sys.stderr)
            return 1
    else:
        # Piped in (a password manager, a script): the first line, without its line break.
        password = sys.stdin.readline().rstrip("\r\n")
    if not password:
        print("payouts: an empty password; nothing printed", file=sys.stderr)
        return 1
    print(hash_password(password))
    return 0


def cmd_console_sign_out(args: argparse.Namespace) -> int:
    from payouts.actions.audit import command_line_actor
    from payouts.actions.console_sessions import sign_out

    revoked = asyncio.run(sign_out(_settings(args), args.operator, command_line_actor()))
    print_data({"operator": args.operator, "revoked_sessions": revoked}, args.json)
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

    from schema.errors import ConfigError

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
    from workers import event_loop, garbage
    from workers.consumer import Worker
    from workers.database import create_pool_when_available
    from workers.status_server import StatusServer, waiting_for_database
    from workers.stopping import stop_on_signals, unless_stopped

    settings = _overridden(
        _settings(args),
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

    garbage.tune()
    return event_loop.run(run())


def _supervise(args: argparse.Namespace, settings: Settings) -> int:
    from workers.consumer import stop_seconds
    from workers.supervisor import Supervisor

    worker = settings.worker
    commands = [
        _worker_command(args.config, index, worker.status_host, worker.status_port)
        for index in range(args.processes)
    ]

    async def run() -> int:
        supervisor = Supervisor(commands, stop_seconds(settings))
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, supervisor.stop)
        return await supervisor.run()

    return asyncio.run(run())


def _operator(args: argparse.Namespace) -> Operator:
    from payouts.actions.operator import Operator

    return Operator(_settings(args))


def _worker_command(config: str, index: int, status_host: str, status_port: int) -> list[str]:
    """The command line of worker `index` of this supervisor: port 0 (any free port) stays 0
    for every worker."""
    port = status_port + index if status_port else 0
    return [
        sys.executable, "-m", "payouts", "--config", config, "worker",
        "--status-host", status_host, "--status-port", str(port),
        "--supervisor-pid", str(os.getpid()),
    ]  # fmt: skip


def cmd_payout_show(args: argparse.Namespace) -> int:
    details = asyncio.run(_operator(args).payout(args.provider, args.transaction))
    if details is None:
        print(
            f"no payout {args.transaction!r} for provider instance {args.provider!r}",
            file=sys.stderr,
        )
        return 1
    print_data(details, args.json)
    return 0


def cmd_balance_show(args: argparse.Namespace) -> int:
    print_data(asyncio.run(_operator(args).balances(args.user)), args.json)
    return 0


def cmd_account_create(args: argparse.Namespace) -> int:
    from payouts.actions.audit import command_line_actor
    from payouts.actions.operator import AccountRefused

    created = _operator(args).create_account(args.user, args.currency, command_line_actor())
    try:
        print_data(asyncio.run(created), args.json)
    except AccountRefused as error:
        print(f"payouts: {error}", file=sys.stderr)
        return 1
    return 0


def cmd_payout_attach_proof(args: argparse.Namespace) -> int:
    from payouts.actions.audit import command_line_actor
    from payouts.actions.proof_images import ProofImageError
    from payouts.actions.proofs import NoSuchPayout

    operator = _operator(args)
    limit = operator.settings.proof_api.max_image_bytes
    try:
        path = Path(args.file)
        if path.stat().st_size > limit:
            raise ProofImageError(f"the file is over proof_api.max_image_bytes ({limit} bytes)")
        attached = asyncio.run(
            operator.attach_proof(
                args.provider, args.transaction, path.read_bytes(), command_line_actor()
            )
        )
    except OSError as error:
        print(f"payouts: cannot read {args.file}: {error.strerror}", file=sys.stderr)
        return 1
    except ProofImageError as error:
        print(f"payouts: {args.file}: {error}", file=sys.stderr)
        return 1
    except NoSuchPayout as error:
        print(f"payouts: {error}", file=sys.stderr)
        return 1
    print_data(attached, args.json)
    return 0


def cmd_order_register(args: argparse.Namespace) -> int:
    from ingress.order_terms import OrderRefused
    from payouts.actions.audit import command_line_actor
    from schema.orders import RegisterResult

    try:
        result, stored = asyncio.run(
            _operator(args).register_order(
                args.provider,
                args.order_id,
                args.user,
                args.item,
                args.amount,
                command_line_actor(),
            )
        )
    except OrderRefused as error:
        print(f"payouts: {error}", file=sys.stderr)
        return 1
    print_data({"result": result.value, "order": vars(stored)}, args.json)
    return 1 if result is RegisterResult.CONFLICT else 0


def cmd_order_show(args: argparse.Namespace) -> int:
    order = asyncio.run(_operator(args).order(args.provider, args.order_id))
    if order is None:
        print(f"no order {args.order_id!r} for {args.provider!r}", file=sys.stderr)
        return 1
    print_data(vars(order), args.json)
    return 0


def cmd_order_cancel(args: argparse.Namespace) -> int:
    from payouts.actions.audit import command_line_actor

    cancel = _operator(args).cancel_order(args.provider, args.order_id, command_line_actor())
    if not asyncio.run(cancel):
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
    console = command(
        "console", cmd_console, "serve the operator web console on its own port (docs/console.md)"
    )
    console.add_argument("--host", help="listen address (default: console.host in the config)")
    console.add_argument(
        "--port", type=int, help="listen port (default: console.port in the config)"
    )
    console.add_argument(
        "--operators-file",
        help="an absolute path to more [[console.operators]], e.g. a mounted secret "
        "(default: console.operators_file in the config)",
    )
    console_commands = console.add_subparsers(required=False)
    command(
        "hash-password",
        cmd_console_hash_password,
        "read a password (without echo, or one line of standard input) and print its argon2id "
        "hash for [[console.operators]]",
        console_commands,
    )
    command(
        "sign-out",
        cmd_console_sign_out,
        "end every open console session of an operator (their copied cookies too) and say how many",
        console_commands,
    ).add_argument("operator", help="the operator's name in [[console.operators]]")
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

    from payouts.dlq_cli import register_dlq_commands

    register_dlq_commands(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    _ensure_own_schema_package()
    from payouts.actions.connections import start_hint
    from schema.errors import ConfigError, ServiceUnavailable
    from schema.logs import configure_logging

    args = _parser().parse_args(argv)
    # The long-running parts log every request and payout; one-shot commands only what is wrong.
    default_level = "INFO" if args.command in ("ingress", "worker", "console") else "WARNING"
    configure_logging(os.environ.get("PAYOUTS_LOG_LEVEL", default_level))
    try:
        code: int = args.handler(args)
    except ConfigError as error:
        print(f"payouts: configuration error: {error}", file=sys.stderr)
        return 2
    except ServiceUnavailable as error:
        print(f"payouts: cannot reach {error}; {start_hint(error)}", file=sys.stderr)
        return 3
    except BrokenPipeError:
        # Output piped into `head` and the like: stop quietly, as other command-line tools do.
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - replaced for the rest of the exit
        return 0
    return code


if __name__ == "__main__":
    sys.exit(main())
