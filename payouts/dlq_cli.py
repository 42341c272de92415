"""`payouts dlq`: list, show, replay, purge, export and import dead-lettered messages."""

from __future__ import annotations

import argparse
import asyncio
import re
import signal
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from payouts.actions import dead_letter_runs
from payouts.actions.audit import command_line_actor
from payouts.actions.connections import load_checked_settings, with_connection
from payouts.actions.dead_letters import (
    DeadLetterQueue,
    Exported,
    Selection,
    SelectionError,
    with_credits,
)
from payouts.output import add_command, print_data
from schema.errors import DatabaseUnavailable

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

    from payouts.actions.dead_letter_runs import OnEach
    from payouts.actions.dead_letters import Fetched, SelectionRun
    from schema.errors import PayoutsError
    from schema.settings import Settings

__all__ = ["register_dlq_commands"]

# What stops a replay or purge after the message in hand.
STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_DURATION = re.compile(r"(\d+)([smhd])")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
_TABLE_COLUMNS = (
    "dead_letter_id",
    "provider_instance",
    "transaction_id",
    "kind",
    "attempts",
    "age_seconds",
    "already_credited_at",
    "error",
)
# In `dlq list` when Postgres did not answer: whether a payout was credited since is not known.
UNKNOWN = "unknown"


def _duration(text: str) -> float:
    match = _DURATION.fullmatch(text)
    if match is None:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 15m, 2h or 3d")
    return int(match.group(1)) * _SECONDS[match.group(2)]


def _selection(args: argparse.Namespace) -> Selection:
    return Selection(
        ids=tuple(getattr(args, "ids", ()) or ()),
        provider=args.provider,
        reason=args.reason,
        transaction=args.transaction,
        older_than_seconds=args.older_than,
        envelopes=getattr(args, "envelopes", False),
    )


def _cell(row: dict[str, Any], column: str) -> str:
    envelope = row.get("envelope")
    if column == "transaction_id" and envelope is not None:
        # An envelope dead-lettered whole carries many transactions, or unreadable ones.
        events = envelope["events"]
        return f"envelope of {events} events" if events is not None else "envelope, unreadable"
    value = row[column]
    if isinstance(value, datetime):
        return f"{value.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}"
    return str(value if value is not None else "-")


def _print_table(rows: list[dict[str, Any]]) -> None:
    cells = [[_cell(row, column) for column in _TABLE_COLUMNS] for row in rows]
    cells = [[cell[0][:8], *cell[1:7], cell[7][:60]] for cell in cells]
    widths = [max([len(c)] + [len(row[i]) for row in cells]) for i, c in enumerate(_TABLE_COLUMNS)]
    header = ["id", "provider", "transaction", "reason", "attempts", "age_s", "credited", "error"]
    for line in [header, *cells]:
        print("  ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True)))


async def _session(args: argparse.Namespace, work: Any) -> Any:
    settings = load_checked_settings(Path(args.config))
    async with DeadLetterQueue.open(settings.broker) as dlq:
        return await work(dlq, settings)


def cmd_list(args: argparse.Namespace) -> int:
    async def work(dlq: DeadLetterQueue, settings: Settings) -> list[dict[str, Any]]:
        now = datetime.now(UTC)
        fetched = await dlq.fetch(_selection(args), args.limit)
        if not fetched:
            return []
        try:
            fetched = await with_connection(settings, lambda conn: with_credits(conn, fetched))
        except DatabaseUnavailable as error:
            # Still listed: in an incident the queue matters, and Postgres may be its cause.
            print(
                f"payouts dlq list: cannot tell which payouts were credited since: {error}",
                file=sys.stderr,
            )
            return [{**item.summary(now), "already_credited_at": UNKNOWN} for item in fetched]
        return [item.summary(now) for item in fetched]

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
    args.envelopes = False

    async def work(dlq: DeadLetterQueue, _: Any) -> list[dict[str, Any]]:
        return [item.entry.details() for item in await dlq.fetch(_selection(args))]

    found = asyncio.run(_session(args, work))
    if not found:
        print(f"no dead letter {args.id!r}", file=sys.stderr)
        return 1
    print_data(found if len(found) > 1 else found[0], args.json)
    return 0


def _require_selection(args: argparse.Namespace, selection: Selection) -> None:
    if not selection.narrowed and not args.all:
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
    start: Callable[[Settings, Selection, OnEach, asyncio.Event], Awaitable[SelectionRun]],
) -> int:
    """Run the selection through `start` (an audited run of `payouts.actions.dead_letter_runs`),
    with a progress bar, stopping on a signal between messages, and summarize."""
    selection = _selection(args)
    _require_selection(args, selection)
    progress: _Progress | None = None

    def each(run: SelectionRun, item: Fetched, failure: PayoutsError | None) -> None:
        nonlocal progress
        if failure is not None:
            print(f"{item.entry.dead_letter_id}: not {verb}: {failure}", file=sys.stderr)
        progress = progress or _Progress(run.selected, verb)
        progress.step()

    async def interruptible() -> SelectionRun:
        # Ctrl-C or SIGTERM stops between messages, never inside one, so each is done or
        # untouched; a second signal ends the command at once. Installed even where SIGINT was
        # inherited ignored (a background job of a script), as the other commands do.
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def interrupted() -> None:
            stop.set()
            for signum in STOP_SIGNALS:
                loop.remove_signal_handler(signum)

        for signum in STOP_SIGNALS:
            loop.add_signal_handler(signum, interrupted)
        return await start(load_checked_settings(Path(args.config)), selection, each, stop)

    try:
        run = asyncio.run(interruptible())
    except SelectionError as error:
        raise SystemExit(f"payouts dlq: {error}") from None
    if run.dry_run:
        for dead_letter_id, why in run.skipped:
            print(f"{dead_letter_id}: would not be {verb}: {why}", file=sys.stderr)
    print_data(run.summary(), args.json)
    return 1 if run.failures or run.stopped else 0


async def _confirmed(args: argparse.Namespace, count: int) -> bool:
    if args.yes:
        return True
    if not sys.stdin.isatty():
        raise SystemExit(f"payouts dlq: refusing to purge {count} messages without --yes")
    # In a thread: the event loop must keep the broker connection's heartbeats going meanwhile.
    answer = await asyncio.to_thread(
        input, f"purge {count} dead-lettered messages for good? [y/N] "
    )
    return answer.strip().lower() in ("y", "yes")


def cmd_replay(args: argparse.Namespace) -> int:
    async def start(
        settings: Settings, selection: Selection, each: OnEach, stop: asyncio.Event
    ) -> SelectionRun:
        return await dead_letter_runs.replay(
            settings,
            selection,
            command_line_actor(),
            force=args.force,
            dry_run=args.dry_run,
            per_second=args.rate,
            on_each=each,
            stop=stop,
        )

    return _run_on_each(args, "replayed", start)


def cmd_purge(args: argparse.Namespace) -> int:
    async def confirm(count: int) -> bool:
        return await _confirmed(args, count)

    async def start(
        settings: Settings, selection: Selection, each: OnEach, stop: asyncio.Event
    ) -> SelectionRun:
        return await dead_letter_runs.purge(
            settings, selection, command_line_actor(), confirm=confirm, on_each=each, stop=stop
        )

    return _run_on_each(args, "purged", start)


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

    settings = load_checked_settings(Path(args.config))
    imported = dead_letter_runs.import_messages(settings, messages, args.file, command_line_actor())
    count = asyncio.run(imported)
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
    sub.add_argument(
        "--envelopes",
        action="store_true",
        help="only envelopes dead-lettered whole (their events dead-lettered one by one are "
        "single payouts)",
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
    replay.add_argument(
        "--force",
        action="store_true",
        help="replay what is skipped otherwise: malformed envelopes (this release's workers "
        "would dead-letter them again) and payouts already credited (each a duplicate, which "
        "changes nothing)",
    )

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
