"""A payout event as the column values of its `payouts` row: the one mapping that recording a
payout alone, in a batch, and a refused delivery (`payout_conflicts`) all use."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, NamedTuple

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal
    from uuid import UUID

    from schema.events import PayoutEvent

__all__ = ["PayoutRow"]


class PayoutRow(NamedTuple):
    """The event's columns, in the order the `payouts` inserts list them; JSON columns as text."""

    provider_instance: str
    transaction_id: str
    event_id: UUID
    protocol: str
    user_id: str
    amount: Decimal
    currency: str
    signature: str
    create_account: bool
    answer_code: str
    attributes: str
    raw_request: str
    received_at: datetime
    items: str
    price: Decimal | None
    order_id: str | None

    @classmethod
    def of(cls, event: PayoutEvent) -> PayoutRow:
        return cls(
            provider_instance=event.provider_instance,
            transaction_id=event.transaction_id,
            event_id=event.event_id,
            protocol=event.protocol,
            user_id=event.user_id,
            amount=event.amount,
            currency=event.currency,
            signature=event.signature,
            create_account=event.create_account,
            answer_code=event.answer_code,
            attributes=json.dumps(event.attributes),
            raw_request=event.raw_request.model_dump_json(),
            received_at=event.received_at,
            items=json.dumps(list(event.items)),
            price=event.price,
            order_id=event.order_id,
        )
