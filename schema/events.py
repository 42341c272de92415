"""The normalized payout event: the one message the ingress publishes and the workers consume.

Versioned by `contract_version`; a worker rejects versions it does not know instead of guessing.
Amounts travel as decimal strings so no float ever touches money.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    ValidationError,
    model_validator,
)

from schema.errors import ContractError

__all__ = [
    "CONTRACT_VERSION",
    "EVENT_TYPE",
    "PayoutEvent",
    "RawRequest",
    "decimal_text",
    "decode_event",
    "encode_event",
    "event_from_json",
]

# The one place the version is written: mypy holds the value to the type.
ContractVersion = Literal[1]
CONTRACT_VERSION: ContractVersion = 1
# The AMQP message type of an event, and the routing key that carries it to the work queue.
EVENT_TYPE = f"payout.v{CONTRACT_VERSION}"


def _amount_not_a_number(value: object) -> object:
    # A JSON number would have passed through a float (pydantic #9180): only text is exact.
    if not isinstance(value, str | Decimal):
        raise ValueError("amount must be a decimal string")
    return value


def decimal_text(value: Decimal) -> str:
    """Plain notation, never an exponent: what a person and a provider expect to read."""
    return format(value, "f")


Amount = Annotated[
    Decimal,
    BeforeValidator(_amount_not_a_number),
    PlainSerializer(decimal_text, return_type=str),
    # Zero is a real payout: a lost bet settled with no winnings, or items bought and paid for.
    Field(ge=0, allow_inf_nan=False),
]
ItemId = Annotated[str, Field(min_length=1, max_length=128)]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class RawRequest(_Frozen):
    """The provider's request as received, for audit; providers put no secrets in these fields."""

    method: str
    path: str
    query_string: str
    client_ip: str
    user_agent: str | None = None
    # The decoded body of a POST callback, as text.
    body: str | None = None


class PayoutEvent(_Frozen):
    contract_version: ContractVersion = CONTRACT_VERSION
    event_id: UUID
    provider_instance: str = Field(min_length=1, max_length=64)
    protocol: str = Field(min_length=1, max_length=64)
    transaction_id: str = Field(min_length=1, max_length=128)
    user_id: str = Field(min_length=1, max_length=128)
    # Credited to the user's wallet in `currency`.
    amount: Amount
    currency: str = Field(min_length=1, max_length=64)
    # Items granted to the user's inventory, one of each, and what the user paid for them (in
    # `currency`; recorded, never credited).
    items: tuple[ItemId, ...] = ()
    price: Amount | None = None
    # The game's own pending order this payout must match and consume (docs/orders.md).
    order_id: str | None = Field(default=None, min_length=1, max_length=128)
    verify_order: bool = False
    # False when the request came too late to start a transaction: only a transaction already
    # recorded is answered, nothing new is recorded.
    may_record_new: bool = True
    # The ingress waits for this event's outcome (docs/outcomes.md): report it on commit.
    report_outcome: bool = False
    # The provider's signature over the request. Two different requests carrying one signature are
    # a field-boundary shift (see docs/security.md), so the worker keeps it unique per instance.
    signature: str = Field(min_length=1, max_length=128)
    create_account: bool
    # What the ingress answered when it accepted the callback, which is also what a retry gets.
    answer_code: str = Field(max_length=32)
    received_at: AwareDatetime
    attributes: dict[str, str] = Field(default_factory=dict)
    raw_request: RawRequest

    @model_validator(mode="after")
    def _order_to_verify(self) -> PayoutEvent:
        if self.verify_order and self.order_id is None:
            raise ValueError("verify_order needs an order_id")
        return self

    def log_fields(self) -> dict[str, str]:
        """What every log line about this payout carries, on either side of the queue."""
        return {
            "event_id": str(self.event_id),
            "provider_instance": self.provider_instance,
            "transaction_id": self.transaction_id,
        }


def encode_event(event: PayoutEvent) -> bytes:
    return event.model_dump_json().encode()


def decode_event(body: bytes) -> PayoutEvent:
    try:
        return PayoutEvent.model_validate_json(body)
    except ValidationError as error:
        raise _not_an_event(error) from None


def event_from_json(value: dict[str, Any]) -> PayoutEvent:
    """An event already parsed from JSON, as one of an envelope's (`schema/envelopes.py`)."""
    try:
        return PayoutEvent.model_validate(value)
    except ValidationError as error:
        raise _not_an_event(error) from None


def _not_an_event(error: ValidationError) -> ContractError:
    return ContractError(f"not a payout event of contract version {CONTRACT_VERSION}: {error}")
