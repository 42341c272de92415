"""The operator's actions on the records: look a payout or a user up, create an account, attach
proof, and register, show or cancel a pending order. Each runs on a Postgres connection of its
own; a refusal raises a PayoutsError that says why, before any connection is opened."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ingress.order_terms import checked_order
from ingress.pending_orders import cancel_order, find_order, register_order
from payouts.actions.audit import AuditResult, failures_recorded, record
from payouts.actions.connections import with_connection
from payouts.actions.inspection import payout_details, user_balances
from payouts.actions.proof_images import validated_media_type
from payouts.actions.proofs import attach_proof
from schema.orders import RegisterResult
from workers.accounts import create_wallet

if TYPE_CHECKING:
    from payouts.actions.audit import Actor
    from schema.orders import Order
    from schema.settings import Settings
    from workers.database import Connection

__all__ = ["Operator"]


class Operator:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def payout(self, provider: str, transaction: str) -> dict[str, Any] | None:
        """The payout with its ledger, items and proofs, and the deliveries refused under its
        transaction id; None when there is neither."""

        async def show(conn: Connection) -> dict[str, Any] | None:
            return await payout_details(conn, provider, transaction)

        return await with_connection(self.settings, show)

    async def balances(self, user: str) -> dict[str, Any]:
        """The user's wallets, held payouts and inventory."""

        async def show(conn: Connection) -> dict[str, Any]:
            return await user_balances(conn, user)

        return await with_connection(self.settings, show)

    async def create_account(self, user: str, currency: str, actor: Actor) -> dict[str, Any]:
        """Create the wallet if missing and credit the payouts held for it, exactly once; the
        audit entry of `actor` commits with it (or, if it fails, is written as failed)."""

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

        return await failures_recorded(
            self.settings,
            actor,
            "account.create",
            f"{user} {currency}",
            with_connection(self.settings, create),
        )

    async def attach_proof(self, provider: str, transaction: str, image: bytes) -> dict[str, Any]:
        """Attach a proof image to the payout (ProofImageError if it is not one we accept,
        NoSuchPayout if there is no such payout)."""
        media_type = validated_media_type(image, max_bytes=self.settings.proof_api.max_image_bytes)

        async def attach(conn: Connection) -> int | None:
            return await attach_proof(conn, provider, transaction, media_type, image)

        image_id = await with_connection(self.settings, attach)
        return {
            "image_id": image_id,
            "media_type": media_type,
            "already_attached": image_id is None,
        }

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
