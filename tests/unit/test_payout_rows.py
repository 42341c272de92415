"""The one mapping from a payout event to its `payouts` row's column values."""

from __future__ import annotations

import json
import re
from decimal import Decimal

from tests.factories import payout_event
from workers.batch_crediting import RECORD_CREDITED
from workers.crediting import CLAIM_TRANSACTION
from workers.payout_rows import PayoutRow


def test_a_row_carries_the_events_values_and_its_json_columns_as_text() -> None:
    event = payout_event(
        items=("sword", "shield"), price=Decimal("2.50"), order_id="o-1", attributes={"a": "b"}
    )
    row = PayoutRow.of(event)
    assert row.event_id == event.event_id
    assert row.amount == event.amount
    assert row.price == Decimal("2.50")
    assert row.order_id == "o-1"
    assert json.loads(row.items) == ["sword", "shield"]
    assert json.loads(row.attributes) == {"a": "b"}
    assert json.loads(row.raw_request) == json.loads(event.raw_request.model_dump_json())


def _inserted_columns(statement: str) -> list[str]:
    listed = re.search(r"INSERT INTO payouts \(([^)]*)\)", statement)
    assert listed is not None
    return [name.strip() for name in listed.group(1).split(",")]


def test_the_row_is_in_the_order_both_payouts_inserts_list_its_columns() -> None:
    for statement in (CLAIM_TRANSACTION, RECORD_CREDITED):
        columns = [name for name in _inserted_columns(statement) if name in PayoutRow._fields]
        assert columns == list(PayoutRow._fields)
