"""From a verified claim to the payout event the ingress publishes: the claim's fields, what the
provider instance's settings ask of the worker, and device identifiers hashed unless the
instance stores them."""

from __future__ import annotations

import os
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from ingress.device_ids import masked_fields
from schema.events import PayoutEvent
from schema.settings import AccountPolicy

if TYPE_CHECKING:
    from uuid import UUID

    from ingress.protocols import Claim, ProviderProtocol
    from schema.events import RawRequest

__all__ = ["claimed_event", "new_event_id"]


def new_event_id() -> str:
    """A random UUID version 4, as `str(uuid.uuid4())` writes it, from the same source: a third
    of uuid4()'s time and no UUID object, which the event's validation takes slower than text."""
    digits = os.urandom(16).hex()
    variant = "89ab"[int(digits[16], 16) & 3]  # the two variant bits: 10
    return f"{digits[:8]}-{digits[8:12]}-4{digits[13:16]}-{variant}{digits[17:20]}-{digits[20:]}"


def claimed_event(
    protocol: ProviderProtocol, claim: Claim, raw_request: RawRequest, event_id: UUID | str
) -> PayoutEvent:
    """The event for `claim`, verified by `protocol` from `raw_request`, received now."""
    instance = protocol.instance
    attributes = claim.attributes
    if not instance.store_device_ids:
        attributes, query = masked_fields(protocol, attributes, raw_request.query_string)
        if query != raw_request.query_string:  # copied only when something was masked
            raw_request = raw_request.model_copy(update={"query_string": query})
    return PayoutEvent(
        event_id=event_id,
        provider_instance=instance.name,
        protocol=protocol.name,
        transaction_id=claim.transaction_id,
        user_id=claim.user_id,
        amount=claim.amount,
        currency=claim.currency,
        items=claim.items,
        price=claim.price,
        order_id=claim.order_id,
        verify_order=instance.verify_orders,
        may_record_new=claim.may_record_new,
        report_outcome=protocol.waits_for_outcome,
        signature=claim.signature,
        create_account=instance.account_policy is AccountPolicy.CREATE,
        answer_code=protocol.accepted_answer_code,
        received_at=datetime.now(UTC),
        attributes=attributes,
        raw_request=raw_request,
    )
