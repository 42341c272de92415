"""What a worker decides about one payout event; stored, logged, shown to operators, and reported
to the ingress process waiting to answer the provider (Postgres NOTIFY on that process's own
channel, named in the event message's `reply_to`, or on `OUTCOME_CHANNEL` without one)."""

from __future__ import annotations

import json
import re
import uuid
from decimal import Decimal
from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import BaseModel, ConfigDict, PlainSerializer, TypeAdapter, ValidationError

from schema.events import decimal_text

__all__ = [
    "OUTCOME_CHANNEL",
    "REPLY_CHANNEL_PREFIX",
    "Outcome",
    "OutcomeReport",
    "decode_reports",
    "encode_reports",
    "new_reply_channel",
    "report_channel",
]

# Where a worker reports an event that names no channel of its own: one published by an ingress
# of an earlier release, which listens here only.
OUTCOME_CHANNEL = "payout_outcomes"
# An ingress process's own channel: this prefix and 32 hex digits, 48 bytes, a plain identifier
# well under Postgres' 63-byte limit on channel names.
REPLY_CHANNEL_PREFIX = f"{OUTCOME_CHANNEL}_"
_REPLY_CHANNEL = re.compile(rf"{REPLY_CHANNEL_PREFIX}[0-9a-f]{{32}}")


def new_reply_channel() -> str:
    """A channel for one ingress process, unique among all processes that ever run."""
    return f"{REPLY_CHANNEL_PREFIX}{uuid.uuid4().hex}"


def report_channel(reply_to: str | None) -> str:
    """Where to report an event whose message carried `reply_to`. Anything that is not a reply
    channel goes to the shared one: pg_notify refuses an empty or over-long name, and that must
    not fail a crediting transaction."""
    if reply_to is not None and _REPLY_CHANNEL.fullmatch(reply_to):
        return reply_to
    return OUTCOME_CHANNEL


class Outcome(StrEnum):
    CREDITED = "credited"
    """The wallet was credited (and items granted) and the ledger written, in this delivery."""
    DUPLICATE = "duplicate"
    """The transaction was already recorded with the same content."""
    HELD_UNKNOWN_ACCOUNT = "held_unknown_account"
    """The wallet does not exist and the instance requires it to; credited once it exists."""
    CONFLICT = "conflict"
    """The transaction id reappeared with different content: never credited."""
    SIGNATURE_REUSED = "signature_reused"
    """Another transaction already carried this signature (a field-boundary shift)."""
    ORDER_NOT_FOUND = "order_not_found"
    """Order verification is on and no pending order has this id (unknown, used or cancelled)."""
    ORDER_MISMATCH = "order_mismatch"
    """The pending order names another user, other items or another amount."""
    EXPIRED = "expired"
    """The request was too old to start a transaction and none was recorded: nothing changed."""


class OutcomeReport(BaseModel):
    """One event's outcome, as the worker committed it.

    Read by ingress processes that may run another release during a rolling upgrade: fields are
    only ever added, optional, and a reader ignores those it does not know. A change of meaning
    takes a new name, and so does a field whose reading a new field would change (a reader that
    ignores the new one must not misread the old). Empty fields are left out of the encoding.
    """

    model_config = ConfigDict(extra="ignore", frozen=True)

    event_id: UUID
    outcome: Outcome
    # The wallet's balance right after this transaction was credited (the first time, for a
    # duplicate), when there is one.
    balance: Annotated[Decimal, PlainSerializer(decimal_text, str)] | None = None
    # The currency of `balance` where the event may name another: a conflict's recorded payout.
    currency: str | None = None


_REPORTS = TypeAdapter(list[OutcomeReport])


def encode_reports(reports: list[OutcomeReport]) -> str:
    return _REPORTS.dump_json(reports, exclude_none=True).decode()


def decode_reports(payload: str) -> tuple[list[OutcomeReport], list[str]]:
    """The reports in `payload`, and why each element that is not one was skipped: one report a
    reader cannot read (an outcome of a later release, say) must not cost the others theirs.
    Raises ValueError for a payload that is not a JSON list."""
    try:
        # Numbers as Decimal, should one ever carry money: a float would round it.
        elements = json.loads(payload, parse_float=Decimal)
    except ValueError as error:
        raise ValueError(f"not an outcome report list: {error}") from None
    if not isinstance(elements, list):
        raise ValueError(f"not an outcome report list: a JSON {type(elements).__name__}")
    reports: list[OutcomeReport] = []
    unreadable: list[str] = []
    for element in elements:
        try:
            reports.append(OutcomeReport.model_validate(element))
        except ValidationError as error:
            unreadable.append(str(error))
    return reports, unreadable
