"""`payouts dlq`: list, show, replay, purge, export and import dead-lettered messages."""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika

from workers.console import add_command, load_checked_settings, print_data, with_connection

if TYPE_CHECKING:
    from workers.database import Connection
    from workers.dead_letters import DeadLetterQueue, Fetched, Selection

__all__ = ["register_dlq_commands"]

MIN_ID_LENGTH = 8
_DURATION = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TABLE_COLUMNS = (
    "dead_letter_id",
    "provider_instance",
    "transaction_id",
    "kind",
    "attempts",
    "age_seconds",
    "error",
)


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 3d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _selection(args: argparse.Namespace) -> Selection:
    from workers.dead_letters import Selection

    return Selection(
        ids=tuple(getattr(args, "ids", ()) or ()),
        provider=args.provider,
        reason=args.reason,
        transaction=args.transaction,
        older_than_seconds=args.older_than,
    )


def _print_table(rows: list[dict[str, Any]]) -> None:
    cells = [
        [str(row[column] if row[column] is not None else "-") for column in _TABLE_COLUMNS]
        for row in rows
    ]
    cells = [[cell[0][:8], *cell[1:6], cell[6][:60]] for cell in cells]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(_TABLE_COLUMNS)]
    header = ["id", "provider", "transaction", "reason", "attempts", "age_s", "error"]
    for line in [header, *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


async def _session(args: argparse.Namespace, work: Any) -> Any:
    from workers.dead_letters import DeadLetterQueue

    settings = load_checked_settings(args)
    async with DeadLetterQueue.open(settings.broker) as dlq:
        return await work(dlq, settings)


def cmd_list(args: argparse.Namespace) -> int:
    async def work(dlq: DeadLetterQueue, _: Any) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        return [item.entry.summary(now) for item in await dlq.fetch(_selection(args), args.limit)]

    rows = asyncio.run(_session(args, work))
    if args.json:
        print_data(rows, as_json=True)
    elif rows:
        _print_table(rows)
    else:
        print("the dead-letter queue holds no matching message")
    return 0


def cmd_show(args: argparse.Namespace) -> int:
    args.ids = [args.id]
    args.provider = args.reason = args.transaction = args.older_than = None

    async def work(dlq: DeadLetterQueue, _: Any) -> list[dict[str, Any]]:
        return [item.entry.details() for item in await dlq.fetch(_selection(args))]

    found = asyncio.run(_session(args, work))
    if not found:
        print(f"no dead letter {args.id!r}", file=sys.stderr)
        return 1
    print_data(found if len(found) > 1 else found[0], args.json)
    return 0


def _check_ids(args: argparse.Namespace, selected: list[Fetched]) -> None:
    """Each id names one message: an exact message id, or a prefix of one dead-letter id."""
    for wanted in getattr(args, "ids", None) or ():
        matches = {
            item.entry.dead_letter_id
            for item in selected
            if item.entry.dead_letter_id.startswith(wanted) or item.entry.message_id == wanted
        }
        if len(matches) > 1 and not any(item.entry.message_id == wanted for item in selected):
            raise SystemExit(
                f"payouts dlq: {wanted!r} matches {len(matches)} dead letters; give more of the id"
            )


def _require_selection(args: argparse.Namespace) -> None:
    chosen = args.ids or args.provider or args.reason or args.transaction or args.older_than
    if not chosen and not args.all:
        raise SystemExit("payouts dlq: name messages, give a filter, or say --all")


class _Progress:
    """A one-line progress bar on a terminal; a line every tenth of the way elsewhere."""

    def __init__(self, total: int, verb: str) -> None:
        self._total, self._verb, self._done = total, verb, 0

    def step(self) -> None:
        self._done += 1
        if sys.stderr.isatty():
            filled = 30 * self._done // max(self._total, 1)
            sys.stderr.write(
                f"\r{self._verb} [{'#' * filled}{'.' * (30 - filled)}] {self._done}/{self._total}"
            )
            if self._done == self._total:
                sys.stderr.write("\n")
        elif self._done == self._total or self._done % max(self._total // 10, 1) == 0:
            print(f"{self._verb} {self._done}/{self._total}", file=sys.stderr)


def _run_on_each(
    args: argparse.Namespace,
    verb: str,
    action: Any,
) -> int:
    """Fetch the selection, apply `action` to each (recording in Postgres first), summarize."""
    from schema.broker import BrokerUnavailable

    _require_selection(args)
    if any(len(wanted.strip()) < MIN_ID_LENGTH for wanted in getattr(args, "ids", None) or ()):
        raise SystemExit(f"payouts dlq: ids must have at least {MIN_ID_LENGTH} characters")
    dry_run = getattr(args, "dry_run", False)
    interval = 1 / args.rate if getattr(args, "rate", None) else 0.0

    async def work(dlq: DeadLetterQueue, settings: Any) -> dict[str, Any]:
        selected = await dlq.fetch(_selection(args))
        summary: dict[str, Any] = {
            "selected": len(selected),
            verb: 0,
            "failed": 0,
            "dry_run": dry_run,
        }
        _check_ids(args, selected)
        if dry_run or not selected or not await _confirmed(args, verb, len(selected)):
            summary["ids"] = [item.entry.dead_letter_id for item in selected]
            return summary
        progress = _Progress(len(selected), verb)

        async def each(conn: Connection) -> None:
            for item in selected:
                try:
                    await action(dlq, item, conn)
                    summary[verb] += 1
                except BrokerUnavailable as error:
                    summary["failed"] += 1
                    print(f"{item.entry.dead_letter_id}: not {verb}: {error}", file=sys.stderr)
                except (aio_pika.exceptions.AMQPError, ConnectionError, RuntimeError) as error:
                    # The session's connection is gone: every message it held is back in the
                    # queue (a replayed one may come back as a duplicate, which changes nothing).
                    summary["failed"] += 1
                    summary["stopped"] = f"lost the broker connection ({error!r}); run it again"
                    return
                progress.step()
                await asyncio.sleep(interval)

        await with_connection(settings, each)
        return summary

    summary = asyncio.run(_session(args, work))
    print_data(summary, args.json)
    return 1 if summary["failed"] else 0


async def _confirmed(args: argparse.Namespace, verb: str, count: int) -> bool:
    if not getattr(args, "confirm", False) or args.yes:
        return True
    if not sys.stdin.isatty():
        raise SystemExit(f"payouts dlq: refusing to purge {count} messages without --yes")
    # In a thread: the event loop must keep the broker connection's heartbeats going meanwhile.
    answer = await asyncio.to_thread(
        input, f"{verb.rstrip('d')} {count} dead-lettered messages for good? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def cmd_replay(args: argparse.Namespace) -> int:
    async def replay(dlq: DeadLetterQueue, item: Fetched, conn: Connection) -> None:
        await dlq.replay(item, conn)

    return _run_on_each(args, "replayed", replay)


def cmd_purge(args: argparse.Namespace) -> int:
    args.confirm = True

    async def purge(dlq: DeadLetterQueue, item: Fetched, conn: Connection) -> None:
        await dlq.purge(item, conn)

    return _run_on_each(args, "purged", purge)


def cmd_export(args: argparse.Namespace) -> int:
    async def work(dlq: DeadLetterQueue, _: Any) -> int:
        fetched = await dlq.fetch(_selection(args))
        text = "".join(item.entry.to_jsonl() + "\n" for item in fetched)
        await asyncio.to_thread(Path(args.file).write_text, text, "utf-8")
        return len(fetched)

    count = asyncio.run(_session(args, work))
    print_data({"exported": count, "file": args.file, "left_in_queue": True}, args.json)
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from workers.dead_letters import Exported

    lines = Path(args.file).read_text(encoding="utf-8").splitlines()
    messages = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            messages.append(Exported.parse(line))
        except ValueError as error:
            # Nothing is published unless every line is good, so a fixed file can be re-run.
            raise SystemExit(f"payouts dlq import: {args.file}:{number}: {error}") from None

    async def work(dlq: DeadLetterQueue, _: Any) -> int:
        for message in messages:
            await dlq.add(message)
        return len(messages)

    count = asyncio.run(_session(args, work))
    print_data({"imported": count, "file": args.file}, args.json)
    return 0


def _filters(sub: argparse.ArgumentParser, with_ids: bool = True) -> None:
    if with_ids:
        sub.add_argument(
            "ids", nargs="*", help="dead-letter ids (or a unique prefix) or message ids"
        )
    sub.add_argument("--provider", help="only this provider instance")
    sub.add_argument(
        "--reason",
        help="only this kind (transient, poison, business, unexpected, "
        "broker:delivery_limit) or error type",
    )
    sub.add_argument("--transaction", help="only this transaction id")
    sub.add_argument(
        "--older-than", type=_duration, help="only messages older than this (90s, 15m, 2h, 3d)"
    )


def register_dlq_commands(commands: Any) -> None:
    dlq = commands.add_parser("dlq", help="inspect and replay the dead-letter queue")
    sub = dlq.add_subparsers(required=True)

    listing = add_command(sub, "list", cmd_list, "the dead-lettered messages, as a table")
    _filters(listing, with_ids=False)
    listing.add_argument("--limit", type=int, help="at most this many")

    add_command(sub, "show", cmd_show, "one message whole, with its history").add_argument(
        "id", help="dead-letter id (or a unique prefix) or message id"
    )

    replay = add_command(
        sub,
        "replay",
        cmd_replay,
        "re-publish to the work queue; a message leaves the dead-letter queue "
        "only once the broker confirmed its replay",
    )
    _filters(replay)
    replay.add_argument("--all", action="store_true", help="every message in the queue")
    replay.add_argument("--dry-run", action="store_true", help="show what would be replayed")
    replay.add_argument("--rate", type=float, default=50.0, help="messages per second (default 50)")

    purge = add_command(sub, "purge", cmd_purge, "remove for good (recorded in Postgres first)")
    _filters(purge)
    purge.add_argument("--all", action="store_true", help="every message in the queue")
    purge.add_argument("--yes", action="store_true", help="do not ask for confirmation")

    export = add_command(
        sub, "export", cmd_export, "write messages to a JSONL file; they stay in the queue"
    )
    export.add_argument("file")
    _filters(export)

    add_command(
        sub,
        "import",
        cmd_import,
        "put messages from an exported JSONL file back into the dead-letter queue",
    ).add_argument("file")
