"""Images an operator attaches to a payout as proof; the Payout Proof API serves them."""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from schema.errors import PayoutsError

if TYPE_CHECKING:
    from workers.database import Connection

__all__ = ["NoSuchPayout", "attach_proof"]

PAYOUT_ID = """
SELECT payout_id FROM payouts WHERE provider_instance = $1 AND transaction_id = $2
"""

ATTACH = """
INSERT INTO proof_images (payout_id, media_type, data, sha256) VALUES ($1, $2, $3, $4)
ON CONFLICT (payout_id, sha256) DO NOTHING
RETURNING image_id
"""


class NoSuchPayout(PayoutsError, LookupError):
    """No payout has that transaction id under that provider instance."""


async def attach_proof(
    conn: Connection, provider_instance: str, transaction_id: str, media_type: str, data: bytes
) -> int | None:
    """Attach the (already validated) image; None if that very image is attached already."""
    payout_id = await conn.fetchval(PAYOUT_ID, provider_instance, transaction_id)
    if payout_id is None:
        raise NoSuchPayout(
            f"no payout {transaction_id!r} for provider instance {provider_instance!r}"
        )
    image_id: int | None = await conn.fetchval(
        ATTACH, payout_id, media_type, data, hashlib.sha256(data).hexdigest()
    )
    return image_id
