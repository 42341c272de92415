"""The long lists an operator pages through: the payouts held for a wallet that does not exist,
and the game's orders. Each is filtered (a None filter lets every value through), newest first,
and paged by keyset (the last row shown), so a page stays cheap however far back it is."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from payouts.actions.connections import with_connection
from schema.outcomes import Outcome

if TYPE_CHECKING:
    from datetime import datetime
    from decimal import Decimal

    from schema.settings import Settings
    from workers.database import Connection

__all__ = ["HeldPayout", "ListedOrder", "held_payouts", "orders"]

HELD_PAGE = """
SELECT p.payout_id, p.provider_instance, p.transaction_id, p.user_id, p.amount, p.currency,
       p.items::text AS items, p.outcome, p.create_account, p.received_at, p.recorded_at,
       EXISTS (SELECT 1 FROM accounts a
               WHERE a.kind = 'wallet' AND a.owner = p.user_id AND a.currency = p.currency)
         AS wallet_exists
FROM payouts p
WHERE p.status = 'held'
  AND ($1::text IS NULL OR p.provider_instance = $1)
  AND ($2::text IS NULL OR p.user_id = $2)
  AND ($3::bigint IS NULL OR p.payout_id < $3)
ORDER BY p.payout_id DESC
LIMIT $4
"""

# The keyset is the last order shown ($4, $5): the next page starts after its registration.
ORDER_PAGE = """
SELECT o.provider_instance, o.order_id, o.user_id, o.items::text AS items, o.amount, o.status,
       o.registered_at, o.closed_at, o.consumed_by, p.transaction_id AS consumed_by_transaction
FROM pending_orders o LEFT JOIN payouts p ON p.payout_id = o.consumed_by
WHERE ($1::text IS NULL OR o.status = $1)
  AND ($2::text IS NULL OR o.provider_instance = $2)
  AND ($3::text IS NULL OR o.user_id = $3)
  AND ($4::text IS NULL OR (o.registered_at, o.provider_instance, o.order_id) <
       (SELECT registered_at, provider_instance, order_id FROM pending_orders
        WHERE provider_instance = $4 AND order_id = $5))
ORDER BY o.registered_at DESC, o.provider_instance DESC, o.order_id DESC
LIMIT $6
"""


@dataclass(frozen=True)
class HeldPayout:
    payout_id: int
    provider_instance: str
    transaction_id: str
    user_id: str
    amount: Decimal
    currency: str
    items: list[str]
    outcome: str
    create_account: bool
    received_at: datetime
    recorded_at: datetime
    wallet_exists: bool

    @property
    def why(self) -> str:
        """Why it waits, and what releases it."""
        if self.wallet_exists:
            # Created behind the pipeline's back (by hand in SQL): only creating it through the
            # operator's action credits what was held for it.
            return (
                f"the {self.currency} wallet of {self.user_id} exists now, but was created "
                "without crediting what was held for it"
            )
        if self.outcome == Outcome.HELD_UNKNOWN_ACCOUNT and not self.create_account:
            return (
                f"{self.user_id} has no {self.currency} wallet, and {self.provider_instance}'s "
                "account_policy is require_existing: the payout waits for the account"
            )
        return f"held with outcome {self.outcome}"


@dataclass(frozen=True)
class ListedOrder:
    provider_instance: str
    order_id: str
    user_id: str
    items: list[str] | None
    amount: Decimal | None
    status: str
    registered_at: datetime
    closed_at: datetime | None
    # The payout that consumed it, and that payout's transaction id.
    consumed_by: int | None
    consumed_by_transaction: str | None


async def held_payouts(
    settings: Settings,
    provider: str | None,
    user: str | None,
    before_id: int | None,
    limit: int,
) -> list[HeldPayout]:
    """Up to `limit` held payouts, newest first, older than payout `before_id` if given."""

    async def read(conn: Connection) -> list[HeldPayout]:
        rows = await conn.fetch(HELD_PAGE, provider, user, before_id, limit)
        return [HeldPayout(**{**row, "items": json.loads(row["items"])}) for row in rows]

    return await with_connection(settings, read)


async def orders(
    settings: Settings,
    status: str | None,
    provider: str | None,
    user: str | None,
    after: tuple[str, str] | None,
    limit: int,
) -> list[ListedOrder]:
    """Up to `limit` orders, newest first, registered before the order `after` names (its
    provider instance and order id) if given."""
    after_provider, after_order = after or (None, None)

    async def read(conn: Connection) -> list[ListedOrder]:
        rows = await conn.fetch(
            ORDER_PAGE, status, provider, user, after_provider, after_order, limit
        )
        return [
            ListedOrder(**{**row, "items": json.loads(row["items"]) if row["items"] else None})
            for row in rows
        ]

    return await with_connection(settings, read)
