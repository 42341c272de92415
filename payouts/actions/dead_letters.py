"""The operator's actions on the dead-letter queue: browse, replay, purge, export and import.

Browsing fetches messages without acking them; whatever was not settled returns to the queue when
the session ends. A message leaves the queue only after its replay was confirmed by the broker
(or, for a purge, after it was recorded in Postgres), so an interrupted run loses nothing and a
second run is safe: a replayed payout that was already credited is a duplicate, nothing more.
Replay still skips one credited meanwhile (a provider's re-send, a held payout released by
`payouts account create`) unless forced: the operator sees that it needs nothing more.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from broker.browsing import QueueBrowser
from broker.connection import BROKER_ERRORS
from broker.publisher import ConfirmedPublisher, persistent_message
from payouts.actions.connections import with_connection
from payouts.moments import utc
from schema.envelopes import ENVELOPE_TYPE
from schema.errors import BrokerUnavailable, PayoutsError
from schema.topology import Topology
from workers import failures as names
from workers.dead_letters import DeadLetter, record_dead_letter

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from broker.browsing import Browsed
    from schema.settings import BrokerSettings, Settings
    from workers.database import Connection

__all__ = [
    "MIN_ID_LENGTH",
    "DeadLetterQueue",
    "Exported",
    "Fetched",
    "NotReplayed",
    "QueueView",
    "Selection",
    "SelectionError",
    "SelectionRun",
    "run_on_selection",
    "with_credits",
]

MARK = """
UPDATE dead_letters SET status = $2,
       replayed_at = CASE WHEN $2 = 'replayed' THEN now() ELSE replayed_at END,
       purged_at = CASE WHEN $2 = 'purged' THEN now() ELSE purged_at END
WHERE dead_letter_id = $1
"""

# When each dead letter's payout was credited, found by the payout's uniqueness key (provider
# instance, transaction id): one statement per page of dead letters.
CREDITED = """
SELECT provider_instance, transaction_id, payouts.credited_at
FROM unnest($1::text[], $2::text[]) AS dead (provider_instance, transaction_id)
JOIN payouts USING (provider_instance, transaction_id)
WHERE payouts.status = 'credited'
"""
CREDIT_PAGE = 1000

REPLAY_OF = "x-payouts-replay-of"
# A shorter id could name many messages by accident; replay and purge refuse it.
MIN_ID_LENGTH = 8


class SelectionError(PayoutsError):
    """The selection cannot be acted on as given; the message says why."""


class NotReplayed(PayoutsError):
    """A message replay leaves in the queue on purpose (it would only be dead-lettered again);
    the message says why and what to do instead."""


@dataclass(frozen=True)
class Selection:
    """Which dead letters an operation applies to; an empty selection matches all."""

    ids: tuple[str, ...] = ()
    provider: str | None = None
    reason: str | None = None
    transaction: str | None = None
    older_than_seconds: float | None = None
    # Only envelopes dead-lettered whole.
    envelopes: bool = False

    @property
    def narrowed(self) -> bool:
        """Whether it names messages or filters them; an empty one needs the operator's --all."""
        return bool(
            self.ids
            or self.provider
            or self.reason
            or self.transaction
            or self.older_than_seconds
            or self.envelopes
        )

    def matches(self, entry: DeadLetter, now: datetime) -> bool:
        if self.ids and not any(
            entry.dead_letter_id.startswith(wanted) or entry.message_id == wanted
            for wanted in self.ids
        ):
            return False
        if self.provider is not None and entry.provider_instance != self.provider:
            return False
        if self.transaction is not None and entry.transaction_id != self.transaction:
            return False
        if self.envelopes and entry.envelope is None:
            return False
        if self.reason is not None and self.reason not in (entry.kind, entry.error.split(":")[0]):
            return False
        if self.older_than_seconds is not None:
            age = entry.age_seconds(now)
            return age is not None and age >= self.older_than_seconds
        return True

    def check_ids(self, selected: list[Fetched]) -> None:
        """Each id names one message: an exact message id, or a prefix of one dead-letter id."""
        for wanted in self.ids:
            matches = {
                item.entry.dead_letter_id
                for item in selected
                if item.entry.dead_letter_id.startswith(wanted) or item.entry.message_id == wanted
            }
            if len(matches) > 1 and not any(item.entry.message_id == wanted for item in selected):
                raise SelectionError(
                    f"{wanted!r} matches {len(matches)} dead letters; give more of the id"
                )


@dataclass(frozen=True)
class Fetched:
    entry: DeadLetter
    message: Browsed
    # When its payout was credited, once `with_credits` looked (None: not credited, or not
    # looked up, or an envelope dead-lettered whole, which carries many payouts).
    credited_at: datetime | None = None

    def summary(self, now: datetime) -> dict[str, Any]:
        return {**self.entry.summary(now), "already_credited_at": self.credited_at}


async def with_credits(conn: Connection, fetched: list[Fetched]) -> list[Fetched]:
    """`fetched`, each single payout already credited marked with when."""
    keyed = [item for item in fetched if item.entry.provider_instance and item.entry.transaction_id]
    credited: dict[tuple[str | None, str | None], datetime] = {}
    for start in range(0, len(keyed), CREDIT_PAGE):
        page = [item.entry for item in keyed[start : start + CREDIT_PAGE]]
        rows = await conn.fetch(
            CREDITED,
            [entry.provider_instance for entry in page],
            [entry.transaction_id for entry in page],
        )
        credited.update(
            {(row["provider_instance"], row["transaction_id"]): row["credited_at"] for row in rows}
        )
    return [
        replace(
            item,
            credited_at=credited.get((item.entry.provider_instance, item.entry.transaction_id)),
        )
        for item in fetched
    ]


@dataclass(frozen=True)
class QueueView:
    """What one bounded browse saw: the messages matching among the first `browsed` of the
    queue, which held `depth` ready messages when the session opened."""

    matching: list[Fetched]
    browsed: int
    depth: int
    # The browse reached the queue's end: `matching` is the whole selection, not a sample of it.
    whole: bool


class DeadLetterQueue:
    """One browsing session on the dead-letter queue, with a confirmed publisher beside it."""

    def __init__(self, settings: BrokerSettings, browser: QueueBrowser) -> None:
        self._topology = Topology.from_settings(settings)
        self._browser = browser
        self._publisher = ConfirmedPublisher(settings, "dlq")

    @classmethod
    @contextlib.asynccontextmanager
    async def open(cls, settings: BrokerSettings) -> AsyncIterator[DeadLetterQueue]:
        """BrokerUnavailable if RabbitMQ does not answer; if the connection drops later, the
        session ends (run it again) instead of fetching what it holds a second time."""
        topology = Topology.from_settings(settings)
        async with QueueBrowser.open(
            settings, topology, topology.dead_letter_queue, "dlq"
        ) as browser:
            dlq = cls(settings, browser)
            dlq._publisher.start()
            try:
                await dlq._publisher.wait_ready()
                yield dlq
            finally:
                await dlq._publisher.close()

    async def fetch(self, selection: Selection, limit: int | None = None) -> list[Fetched]:
        """Every message (up to `limit` matching ones), held unacked while this session lasts."""
        matching, _, _ = await self._browse(selection, limit=limit)
        return matching

    async def view(self, selection: Selection, browsed_at_most: int) -> QueueView:
        """The matching messages among the first `browsed_at_most` of the queue, held unacked
        while this session lasts: what a page can show of a queue of any size."""
        matching, browsed, reached_end = await self._browse(
            selection, browsed_at_most=browsed_at_most
        )
        return QueueView(matching, browsed, self._browser.depth_at_open, whole=reached_end)

    async def _browse(
        self,
        selection: Selection,
        *,
        limit: int | None = None,
        browsed_at_most: int | None = None,
    ) -> tuple[list[Fetched], int, bool]:
        """Up to `limit` matching messages among at most `browsed_at_most` fetched; how many
        were fetched, and whether the queue's end was reached."""
        now = datetime.now(UTC)
        matching: list[Fetched] = []
        browsed = 0
        while (limit is None or len(matching) < limit) and (
            browsed_at_most is None or browsed < browsed_at_most
        ):
            message = await self._browser.next()
            if message is None:
                return matching, browsed, True
            browsed += 1
            entry = DeadLetter.from_parts(
                message.headers, message.body, message.message_id, message.type
            )
            if selection.matches(entry, now):
                matching.append(Fetched(entry, message))
        return matching, browsed, False

    @staticmethod
    def refusal(fetched: Fetched) -> str | None:
        """Why replaying `fetched` would be undone or change nothing, so that it stays in the
        queue unless forced; None to replay it.

        A malformed envelope would only be dead-lettered whole again (force it once a worker
        release that reads it runs). A payout credited since it was dead-lettered would be a
        duplicate (forcing it changes nothing: the payout's uniqueness key sees to that).
        The console shows it too, as the command words it; its time is written as the console
        writes times."""
        envelope = fetched.entry.envelope
        if envelope is not None and envelope.malformed is not None:
            return (
                f"a malformed envelope ({envelope.malformed[:200]}) would be dead-lettered "
                "again; `payouts dlq show` it, purge it, or replay it with --force once workers "
                "that read it run"
            )
        if fetched.credited_at is not None:
            return (
                f"its payout was already credited at {utc(fetched.credited_at)} (a re-send of "
                "the provider's, or `payouts account create` releasing it); a replay would be a "
                "duplicate: purge it, or replay it with --force"
            )
        return None

    async def replay(self, fetched: Fetched, conn: Connection, *, force: bool = False) -> None:
        """Record, re-publish to the work exchange (confirmed), mark replayed, then ack.

        NotReplayed, and it stays in the queue, for what `refusal` names, unless `force`. A
        well-formed envelope goes back as an envelope even if its type was lost on the way (an
        export imported again), so each of its events is credited or is a duplicate."""
        entry = fetched.entry
        message_type = fetched.message.type
        why = None if force else self.refusal(fetched)
        if why is not None:
            raise NotReplayed(why)
        if entry.envelope is not None and entry.envelope.malformed is None:
            message_type = ENVELOPE_TYPE
        await record_dead_letter(conn, entry.body, entry.headers, entry.message_id)
        headers = {
            key: value
            for key, value in names.carried_headers(entry.headers).items()
            if key not in names.FAILURE_HEADERS
        }
        headers[REPLAY_OF] = entry.dead_letter_id
        await self._publisher.publish(
            persistent_message(
                entry.body,
                headers=headers,
                content_type=fetched.message.content_type,
                message_id=entry.message_id,
                type=message_type,
            )
        )
        await conn.execute(MARK, entry.dead_letter_id, "replayed")
        await fetched.message.ack()

    async def purge(self, fetched: Fetched, conn: Connection) -> None:
        """Record (so the incident can still be reviewed), ack, then mark it purged."""
        entry = fetched.entry
        await record_dead_letter(conn, entry.body, entry.headers, entry.message_id)
        await fetched.message.ack()
        await conn.execute(MARK, entry.dead_letter_id, "purged")

    async def add(self, exported: Exported) -> None:
        """Put one exported message back into the dead-letter queue, confirmed."""
        await self._publisher.publish(
            persistent_message(
                exported.body, headers=exported.headers, message_id=exported.message_id
            ),
            exchange=self._topology.dead_letter_exchange,
            routing_key="",
        )


@dataclass
class SelectionRun:
    """What replaying or purging a selection did; `failures` says why each failed one did."""

    verb: str
    selected: int = 0
    done: int = 0
    dry_run: bool = False
    ids: list[str] | None = None
    stopped: str | None = None
    failures: list[tuple[str, str]] = field(default_factory=list)
    # Left in the queue on purpose (NotReplayed), with why.
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "selected": self.selected,
            self.verb: self.done,
            "failed": len(self.failures) + (self.stopped is not None),
            "skipped": len(self.skipped),
            "dry_run": self.dry_run,
        }
        if self.stopped is not None:
            data["stopped"] = self.stopped
        if self.ids is not None:
            data["ids"] = self.ids
        return data


async def run_on_selection(
    settings: Settings,
    selection: Selection,
    verb: str,
    action: Callable[[DeadLetterQueue, Fetched, Connection], Awaitable[None]],
    *,
    dry_run: bool = False,
    per_second: float | None = None,
    confirm: Callable[[int], Awaitable[bool]] | None = None,
    on_each: Callable[[SelectionRun, Fetched, PayoutsError | None], None] | None = None,
    stop: asyncio.Event | None = None,
    refusal: Callable[[Fetched], str | None] | None = None,
    selecting: asyncio.Lock | None = None,
) -> SelectionRun:
    """Fetch the selection, mark the payouts already credited, and apply `action` (replay or
    purge) to each message, at most `per_second` a second, once `confirm` (if given) agreed to
    the count. `on_each` hears of every message done, failed or skipped, as it happens. Once
    `stop` is set, no further message is started; those not done stay in the queue. A dry run
    acts on none: its `ids` are those it would act on, its `skipped` those `refusal` (the
    action's own reason to raise NotReplayed) names. The selection is fetched holding
    `selecting`, the lock a process's browsing sessions hold, so that none of them holds
    messages of the queue meanwhile (the run would not see them)."""
    if any(len(wanted.strip()) < MIN_ID_LENGTH for wanted in selection.ids):
        raise SelectionError(f"ids must have at least {MIN_ID_LENGTH} characters")
    interval = 1 / per_second if per_second else 0.0
    run = SelectionRun(verb, dry_run=dry_run)
    async with DeadLetterQueue.open(settings.broker) as dlq:
        async with selecting or contextlib.nullcontext():
            selected = await dlq.fetch(selection)
        run.selected = len(selected)
        selection.check_ids(selected)
        if not selected or (
            not dry_run and confirm is not None and not await confirm(len(selected))
        ):
            run.ids = [item.entry.dead_letter_id for item in selected]
            return run

        async def each(conn: Connection) -> None:
            marked = await with_credits(conn, selected)
            if dry_run:
                run.ids = []
                for item in marked:
                    why = refusal(item) if refusal is not None else None
                    if why is None:
                        run.ids.append(item.entry.dead_letter_id)
                    else:
                        run.skipped.append((item.entry.dead_letter_id, why))
                return
            for item in marked:
                if stop is not None and stop.is_set():
                    run.stopped = "interrupted; the messages not done stay in the queue"
                    return
                failure: PayoutsError | None = None
                try:
                    await action(dlq, item, conn)
                except NotReplayed as error:
                    failure = error
                    run.skipped.append((item.entry.dead_letter_id, str(error)))
                except BrokerUnavailable as error:
                    failure = error
                    run.failures.append((item.entry.dead_letter_id, str(error)))
                except BROKER_ERRORS as error:
                    # The session's connection is gone: every message it held is back in the
                    # queue (a replayed one may come back as a duplicate, which changes nothing).
                    run.stopped = f"lost the broker connection ({error!r}); run it again"
                    return
                else:
                    run.done += 1
                if on_each is not None:
                    on_each(run, item, failure)
                await asyncio.sleep(interval)

        await with_connection(settings, each)
    return run


@dataclass(frozen=True)
class Exported:
    """One line of `payouts dlq export`, checked whole before anything is published."""

    body: bytes
    headers: dict[str, Any]
    message_id: str | None

    @classmethod
    def parse(cls, line: str) -> Exported:
        """ValueError says what is wrong with the line."""
        try:
            data = json.loads(line)
        except (ValueError, RecursionError):
            raise ValueError("not a JSON object") from None
        if not isinstance(data, dict):
            raise ValueError("not a JSON object")
        encoded = data.get("body_base64")
        headers = data.get("headers", {})
        message_id = data.get("message_id")
        if not isinstance(encoded, str):
            raise ValueError("body_base64 must be a string")
        if not isinstance(headers, dict):
            raise ValueError("headers must be an object")
        if message_id is not None and (not isinstance(message_id, str) or len(message_id) > 255):
            raise ValueError("message_id must be a string of at most 255 characters")
        try:
            body = base64.b64decode(encoded, validate=True)
        except ValueError:
            raise ValueError("body_base64 is not base64") from None
        return cls(body, names.carried_headers(headers), message_id)
