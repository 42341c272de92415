"""Small builders for the settings and events tests need."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from schema.events import PayoutEvent, RawRequest
from schema.settings import AccountPolicy, ProviderInstance


def provider(protocol: str, **overrides: Any) -> ProviderInstance:
    values: dict[str, Any] = {
        "name": f"test-{protocol.replace('_', '-')}",
        "protocol": protocol,
        "route": f"/callbacks/{protocol}",
        "secret_env": "TEST_SECRET",
        "max_amount": Decimal(100000),
        "account_policy": AccountPolicy.CREATE,
    }
    if protocol == "offerwall_md5":
        values["default_currency"] = "COIN"
    values.update(overrides)
    return ProviderInstance.model_validate(values)


# Fields that break the event contract: an unknown version, a negative or non-finite amount, a
# key the contract does not have, a time without its zone.
INVALID_EVENT_FIELDS: list[tuple[str, object]] = [
    ("contract_version", 2),
    ("amount", "-1"),
    ("amount", "NaN"),
    ("unexpected", 1),
    ("received_at", "2026-01-01T00:00:00"),
]


def payout_event(**overrides: Any) -> PayoutEvent:
    """A valid event with a fresh transaction id and signature; override what the test is about."""
    values: dict[str, Any] = {
        "event_id": uuid.uuid4(),
        "provider_instance": "ow",
        "protocol": "offerwall_md5",
        "transaction_id": f"tx-{uuid.uuid4().hex[:12]}",
        "user_id": "alice",
        "amount": Decimal("10.5"),
        "currency": "COIN",
        "signature": uuid.uuid4().hex,
        "create_account": True,
        "answer_code": "200",
        "received_at": datetime.now(UTC),
        "raw_request": RawRequest(
            method="GET", path="/cb", query_string="q", client_ip="127.0.0.1"
        ),
    }
    values.update(overrides)
    return PayoutEvent.model_validate(values)
