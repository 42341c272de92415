"""Group commit for publishes: events accepted while a publish awaits its confirm go out together,
in one envelope, so the broker's per-message cost is paid once for all of them."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Protocol

from ingress import metrics
from schema.errors import BrokerUnavailable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schema.events import PayoutEvent

__all__ = ["EnvelopeGatherer", "EventPublisher", "GatheredEvent", "messages_for"]


class EventPublisher(Protocol):
    """What the gatherer publishes with: `broker.publisher.ConfirmedPublisher`."""

    async def publish_event(self, event: PayoutEvent, *, reply_to: str | None = None) -> None: ...

    async def publish_envelope(
        self, events: Sequence[PayoutEvent], *, reply_to: str | None = None
    ) -> None: ...


@dataclass(eq=False, slots=True)
class GatheredEvent:
    """One request's event, and the future that tells it how its message fared."""

    event: PayoutEvent
    reply_to: str | None
    confirmed: asyncio.Future[None] = field(default_factory=asyncio.Future)


def messages_for(pending: Sequence[GatheredEvent]) -> list[list[GatheredEvent]]:
    """The messages `pending` goes out as: one per outcome channel, so each event's outcome is
    reported where it is awaited. Events that await none join any message."""
    by_channel: dict[str | None, list[GatheredEvent]] = {}
    for waiting in pending:
        by_channel.setdefault(waiting.reply_to, []).append(waiting)
    unanswered = by_channel.pop(None, [])
    groups = list(by_channel.values())
    if groups:
        groups[0].extend(unanswered)
    elif unanswered:
        groups.append(unanswered)
    return groups


def _expire(confirmed: asyncio.Future[None]) -> None:
    if not confirmed.done():
        confirmed.set_exception(BrokerUnavailable("the broker did not confirm in time"))


class EnvelopeGatherer:
    """Publishes an event at once when no publish is in flight; otherwise gathers it with others
    until the in-flight publish completes or `max_events` are gathered. One event alone goes out
    as a single-event message, two or more as an envelope."""

    def __init__(self, publisher: EventPublisher, max_events: int, timeout_seconds: float) -> None:
        self._publisher = publisher
        self._max_events = max_events
        # A request waits this long for its confirm, its wait for the one in flight included.
        self._timeout_seconds = timeout_seconds
        self._pending: list[GatheredEvent] = []
        self._in_flight = 0
        self._tasks: set[asyncio.Task[None]] = set()  # held, or the loop may collect them
        self._closed = False

    async def publish(self, event: PayoutEvent, reply_to: str | None = None) -> None:
        """Return once the message carrying `event` is confirmed; BrokerUnavailable if it was
        not (returned, nacked, late, or no connection) or if it is still waiting to go out after
        the timeout (it is then never sent)."""
        if self._closed:
            raise BrokerUnavailable("the ingress is shutting down")
        waiting = GatheredEvent(event, reply_to)
        self._pending.append(waiting)
        if not self._in_flight or len(self._pending) >= self._max_events:
            self._send_pending()
        # A timer that fails the request's own future: a third of asyncio.timeout()'s cost,
        # which cancels and uncancels the task. Its own future: a request cancelled here, or
        # timed out, leaves the shared publish running.
        timer = asyncio.get_running_loop().call_later(
            self._timeout_seconds, _expire, waiting.confirmed
        )
        try:
            await waiting.confirmed
        finally:
            timer.cancel()
            if waiting in self._pending:  # given up before it was sent: it never will be
                self._pending.remove(waiting)

    def _send_pending(self) -> None:
        pending, self._pending = self._pending, []
        for message in messages_for(pending):
            self._in_flight += 1
            metrics.EVENTS_PER_MESSAGE.observe(len(message))
            task = asyncio.create_task(self._send(message), name="ingress-publish")
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, message: list[GatheredEvent]) -> None:
        error: BrokerUnavailable | None = None
        events = [waiting.event for waiting in message]
        reply_to = next((w.reply_to for w in message if w.reply_to is not None), None)
        try:
            if len(events) == 1:
                await self._publisher.publish_event(events[0], reply_to=reply_to)
            else:
                await self._publisher.publish_envelope(events, reply_to=reply_to)
        except BrokerUnavailable as unavailable:
            error = unavailable
        except Exception as unexpected:  # each waiting request must hear of it, not just the log
            error = BrokerUnavailable(f"publish failed: {unexpected!r}")
        finally:
            self._in_flight -= 1
            if self._pending:
                self._send_pending()
        for waiting in message:
            if not waiting.confirmed.done():  # not cancelled by a request that went away
                if error is None:
                    waiting.confirmed.set_result(None)
                else:
                    waiting.confirmed.set_exception(error)

    async def close(self) -> None:
        """Publish what is gathered and wait for every publish in flight: nothing accepted is
        dropped unanswered. Later publishes raise BrokerUnavailable."""
        self._closed = True
        if self._pending:
            self._send_pending()
        if self._tasks:
            await asyncio.wait(self._tasks)
