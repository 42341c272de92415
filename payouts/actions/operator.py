"""The operator's actions on the records: search payouts, look a payout, a user or a proof image
up, create an account, attach proof, and register, show or cancel a pending order. Each runs on
a Postgres connection of its own; a refusal raises a PayoutsError that says why, before any
connection is opened."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingress.order_terms import checked_order
from ingress.pending_orders import cancel_order, find_order, register_order
from payouts.actions.audit import AuditResult, failures_recorded, record
from payouts.actions.connections import with_connection
from payouts.actions.inspection import (
    payout_details,
    payout_key,
    proof_image,
    search_payouts,
    user_balances,
)
from payouts.actions.proof_images import validated_media_type
from payouts.actions.proofs import attach_proof
from payouts.actions.shown_requests import shown_request
from schema.errors import PayoutsError
from schema.events import PayoutEvent
from schema.orders import RegisterResult
from workers.accounts import create_wallet

if TYPE_CHECKING:
    from payouts.actions.audit import Actor
    from payouts.actions.inspection import PayoutFilter, ProofImage
    from schema.orders import Order
    from schema.settings import Settings
    from workers.database import Connection

__all__ = ["AccountRefused", "Operator", "checked_account"]


class AccountRefused(PayoutsError, ValueError):
    """A wallet that no provider's callback could ever credit: the message says what to fix."""


def _longest(field_name: str) -> int:
    """The most characters a payout event's `field_name` may have."""
    limits = PayoutEvent.model_fields[field_name].metadata
    longest: int = next(limit.max_length for limit in limits if hasattr(limit, "max_length"))
    return longest


def checked_account(user: str, currency: str) -> None:
    """AccountRefused unless `user` and `currency` are what a payout event can name: printable
    (no control character), and no longer than the event allows."""
    for field_name, value in (("user_id", user), ("currency", currency)):
        longest = _longest(field_name)
        if not 0 < len(value) <= longest or not value.isprintable():
            raise AccountRefused(
                f"{field_name} {value!r}: give 1 to {longest} printable characters, as a "
                "provider's callback carries it"
            )


class Operator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def payout(self, provider: str, transaction: str) -> dict[str, Any] | None:
        """The payout with its ledger, items and proofs, and the deliveries refused under its
        transaction id; None when there is neither."""

        async def show(conn: Connection) -> dict[str, Any] | None:
            return await payout_details(conn, provider, transaction)

        return self._masked(await with_connection(self.settings, show))

    async def payout_by_id(self, payout_id: int) -> dict[str, Any] | None:
        """`payout` of the payout numbered `payout_id`; None if there is none."""

        async def show(conn: Connection) -> dict[str, Any] | None:
            key = await payout_key(conn, payout_id)
            return await payout_details(conn, *key) if key else None

        return self._masked(await with_connection(self.settings, show))

    def _masked(self, details: dict[str, Any] | None) -> dict[str, Any] | None:
        """`details` with the device ids of every raw request masked, as operators see them."""
        if details is None:
            return None
        payout = details["payout"]
        return {
            **details,
            "payout": shown_request(self.settings, payout) if payout else None,
            "refused": [shown_request(self.settings, each) for each in details["refused"]],
        }

    async def search_payouts(
        self, filters: PayoutFilter, before_id: int | None, limit: int
    ) -> list[dict[str, Any]]:
        """Up to `limit` payouts matching `filters`, newest received first, after `before_id`."""

        async def search(conn: Connection) -> list[dict[str, Any]]:
            return await search_payouts(conn, filters, before_id, limit)

        return await with_connection(self.settings, search)

    async def proof_image(self, payout_id: int, image_id: int) -> ProofImage | None:
        async def read(conn: Connection) -> ProofImage | None:
            return await proof_image(conn, payout_id, image_id)

        return await with_connection(self.settings, read)

    async def balances(self, user: str) -> dict[str, Any]:
        """The user's wallets, held payouts and inventory."""

        async def show(conn: Connection) -> dict[str, Any]:
            return await user_balances(conn, user)

        return await with_connection(self.settings, show)

    async def create_account(self, user: str, currency: str, actor: Actor) -> dict[str, Any]:
        """Create the wallet if missing and credit the payouts held for it, exactly once; the
        audit entry of `actor` commits with it (or, if it is refused or fails, is written as
        failed). AccountRefused for a user id or currency no callback can carry."""

        async def create(conn: Connection) -> dict[str, Any]:
            async with conn.transaction():
                created, credited = await create_wallet(conn, user, currency)
                detail = {"created": created, "credited_held_payouts": len(credited)}
                await record(
                    conn,
                    actor.entry("account.create", AuditResult.OK, f"{user} {currency}", detail),
                )
            return {
                "user_id": user,
                "currency": currency,
                "created": created,
                "credited_held_payouts": [vars(payout) for payout in credited],
            }

        async def checked_then_created() -> dict[str, Any]:
            checked_account(user, currency)
            return await with_connection(self.settings, create)

        return await failures_recorded(
            self.settings, actor, "account.create", f"{user} {currency}", checked_then_created()
        )

    async def attach_proof(
        self, provider: str, transaction: str, image: bytes, actor: Actor
    ) -> dict[str, Any]:
        """Attach a proof image to the payout (ProofImageError if it is not one we accept,
        NoSuchPayout if there is no such payout); the audit entry of `actor` commits with it
        (or, if it is refused or fails, is written as failed)."""
        target = f"{provider} {transaction}"
        attached = self._attached_proof(provider, transaction, image, actor)
        return await failures_recorded(self.settings, actor, "proof.attach", target, attached)

    async def _attached_proof(
        self, provider: str, transaction: str, image: bytes, actor: Actor
    ) -> dict[str, Any]:
        media_type = validated_media_type(image, max_bytes=self.settings.proof_api.max_image_bytes)

        async def attach(conn: Connection) -> dict[str, Any]:
            async with conn.transaction():
                image_id = await attach_proof(conn, provider, transaction, media_type, image)
                attached = {
                    "image_id": image_id,
                    "media_type": media_type,
                    "already_attached": image_id is None,
                }
                target = f"{provider} {transaction}"
                await record(conn, actor.entry("proof.attach", AuditResult.OK, target, attached))
            return attached

        return await with_connection(self.settings, attach)

    async def register_order(
        self,
        provider: str,
        order_id: str,
        user: str,
        items: list[str] | None,
        amount: str | None,
        actor: Actor,
    ) -> tuple[RegisterResult, Order]:
        """Register a pending order, checked as the orders API checks it (OrderRefused); the
        audit entry of `actor` commits with it (failed for a conflicting order)."""
        order = checked_order(self.settings, provider, order_id, user, items, amount)

        async def register(conn: Connection) -> tuple[RegisterResult, Order]:
            async with conn.transaction():
                result, stored = await register_order(conn, order)
                conflict = result is RegisterResult.CONFLICT
                outcome = AuditResult.FAILED if conflict else AuditResult.OK
                entry = actor.entry(
                    "order.register", outcome, f"{provider} {order_id}", {"result": result.value}
                )
                await record(conn, entry)
            return result, stored

        target = f"{provider} {order_id}"
        return await failures_recorded(
            self.settings, actor, "order.register", target, with_connection(self.settings, register)
        )

    async def order(self, provider: str, order_id: str) -> Order | None:
        async def show(conn: Connection) -> Order | None:
            return await find_order(conn, provider, order_id)

        return await with_connection(self.settings, show)

    async def cancel_order(self, provider: str, order_id: str, actor: Actor) -> bool:
        """Cancel a pending order; False if none is pending under that id. The audit entry of
        `actor` commits with it (failed when there was none, or when the cancel failed)."""

        async def cancel(conn: Connection) -> bool:
            async with conn.transaction():
                cancelled = await cancel_order(conn, provider, order_id)
                await record(
                    conn,
                    actor.entry(
                        "order.cancel",
                        AuditResult.OK if cancelled else AuditResult.FAILED,
                        f"{provider} {order_id}",
                        {} if cancelled else {"reason": "no pending order under that id"},
                    ),
                )
            return cancelled

        return await failures_recorded(
            self.settings,
            actor,
            "order.cancel",
            f"{provider} {order_id}",
            with_connection(self.settings, cancel),
        )
