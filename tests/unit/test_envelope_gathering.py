"""The gathering rule, against a hand-written publisher whose confirms the test gives."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

import pytest

from ingress.envelope_gathering import EnvelopeGatherer, GatheredEvent, messages_for
from schema.errors import BrokerUnavailable
from tests.factories import payout_event

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schema.events import PayoutEvent


class HeldPublisher:
    """Records each message, then holds it until the test confirms or fails it."""

    def __init__(self) -> None:
        self.sent: list[tuple[list[PayoutEvent], str | None]] = []
        self._confirms: list[asyncio.Future[None]] = []

    async def publish_event(self, event: PayoutEvent, *, reply_to: str | None = None) -> None:
        await self._hold([event], reply_to)

    async def publish_envelope(
        self, events: Sequence[PayoutEvent], *, reply_to: str | None = None
    ) -> None:
        await self._hold(list(events), reply_to)

    async def _hold(self, events: list[PayoutEvent], reply_to: str | None) -> None:
        self.sent.append((events, reply_to))
        confirm = asyncio.get_running_loop().create_future()
        self._confirms.append(confirm)
        await confirm

    def confirm(self, index: int, error: Exception | None = None) -> None:
        if error is None:
            self._confirms[index].set_result(None)
        else:
            self._confirms[index].set_exception(error)

    def sizes(self) -> list[int]:
        return [len(events) for events, _ in self.sent]


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def publishing(
    gatherer: EnvelopeGatherer, count: int, reply_to: str | None = None
) -> list[asyncio.Task[None]]:
    return [asyncio.create_task(gatherer.publish(payout_event(), reply_to)) for _ in range(count)]


async def test_an_event_with_no_publish_in_flight_goes_out_at_once_alone() -> None:
    publisher = HeldPublisher()
    (request,) = publishing(EnvelopeGatherer(publisher, 50, 5), 1, "channel")
    await settle()
    assert publisher.sent[0][1] == "channel"
    assert publisher.sizes() == [1]
    assert not request.done()  # answered only after the confirm
    publisher.confirm(0)
    await request


async def test_events_gathered_during_a_publish_go_out_together_when_it_completes() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 50, 5)
    first = publishing(gatherer, 1)
    await settle()
    gathered = publishing(gatherer, 7)
    await settle()
    assert publisher.sizes() == [1]
    publisher.confirm(0)
    await first[0]
    await settle()
    assert publisher.sizes() == [1, 7]
    assert not any(request.done() for request in gathered)
    publisher.confirm(1)
    await asyncio.gather(*gathered)


async def test_a_full_envelope_goes_out_without_waiting_for_the_publish_in_flight() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 3, 5)
    requests = publishing(gatherer, 1) + publishing(gatherer, 7)
    await settle()
    assert publisher.sizes() == [1, 3, 3]
    for index in range(3):
        publisher.confirm(index)
    await settle()
    assert publisher.sizes() == [1, 3, 3, 1]
    publisher.confirm(3)
    await asyncio.gather(*requests)


async def test_one_event_per_message_is_todays_behaviour() -> None:
    publisher = HeldPublisher()
    requests = publishing(EnvelopeGatherer(publisher, 1, 5), 4)
    await settle()
    assert publisher.sizes() == [1, 1, 1, 1]
    for index in range(4):
        publisher.confirm(index)
    await asyncio.gather(*requests)  # none left to fail unobserved at its timeout


async def test_a_failed_envelope_fails_every_request_in_it_and_no_other() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 50, 5)
    first = publishing(gatherer, 1)
    await settle()
    gathered = publishing(gatherer, 3)
    await settle()
    publisher.confirm(0)
    await settle()
    publisher.confirm(1, BrokerUnavailable("nacked"))
    outcomes = await asyncio.gather(*first, *gathered, return_exceptions=True)
    assert outcomes[0] is None
    assert all(isinstance(outcome, BrokerUnavailable) for outcome in outcomes[1:])


async def test_a_request_that_goes_away_leaves_the_shared_publish_to_the_others() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 50, 5)
    publishing(gatherer, 1)
    await settle()
    gone, staying = publishing(gatherer, 2)
    await settle()
    publisher.confirm(0)
    await settle()
    gone.cancel()
    await settle()
    publisher.confirm(1)
    await staying
    assert gone.cancelled()
    assert publisher.sizes() == [1, 2]


async def test_a_request_that_goes_away_before_its_message_left_is_never_sent() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 50, 5)
    publishing(gatherer, 1)
    await settle()
    (gone,) = publishing(gatherer, 1)
    await settle()
    gone.cancel()
    await settle()
    publisher.confirm(0)
    await settle()
    assert publisher.sizes() == [1]


async def test_an_event_still_waiting_to_go_out_at_the_timeout_fails_and_is_never_sent() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 50, 0.05)
    stuck = publishing(gatherer, 1)
    await settle()
    (late,) = publishing(gatherer, 1)
    with pytest.raises(BrokerUnavailable, match="in time"):
        await late
    with pytest.raises(BrokerUnavailable, match="in time"):
        await stuck[0]  # its message was sent, and is still unconfirmed
    publisher.confirm(0)
    await settle()
    assert publisher.sizes() == [1]


async def test_close_publishes_what_is_gathered_and_refuses_more() -> None:
    publisher = HeldPublisher()
    gatherer = EnvelopeGatherer(publisher, 50, 5)
    requests = publishing(gatherer, 1)
    await settle()
    requests += publishing(gatherer, 2)
    await settle()
    closing = asyncio.create_task(gatherer.close())
    await settle()
    assert publisher.sizes() == [1, 2]
    with pytest.raises(BrokerUnavailable, match="shutting down"):
        await gatherer.publish(payout_event())
    publisher.confirm(0)
    publisher.confirm(1)
    await closing
    await asyncio.gather(*requests)


async def test_events_awaiting_outcomes_on_other_channels_go_in_other_messages() -> None:
    event = payout_event()
    pending = [
        GatheredEvent(event, None),
        GatheredEvent(event, "a"),
        GatheredEvent(event, "b"),
        GatheredEvent(event, "a"),
    ]
    grouped = [[gathered.reply_to for gathered in message] for message in messages_for(pending)]
    assert grouped == [["a", "a", None], ["b"]]
    assert [len(m) for m in messages_for([GatheredEvent(event, None)] * 2)] == [2]
