"""Spec 004: the wallet's game billing callback, `POST` JSON signed with
`md5(txnid . userid . gameid . serverid . items . amount . apptxnid . addinfo . secret_key)`.

It delivers `items` (one package id, as sent) to `userid`; `amount` is what the user paid, recorded
with the payout and never credited. `apptxnid` names the game's own pending order, which the
payout must match and consume when `verify_orders` is on. Codes 1 and 2 are the spec's; every
other code is ours (docs/protocols.md), and the wallet treats them all as a failed transaction.
"""

from __future__ import annotations

import hashlib
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from starlette.responses import JSONResponse

from ingress import fields
from ingress.parameter_formats import open_pair_warning, open_pairs
from ingress.protocols.base import Claim, JsonCallbackProtocol, require_fields, signed_text
from ingress.verdicts import Verdict
from schema.errors import ConfigError
from schema.outcomes import Outcome
from schema.settings import AccountPolicy

if TYPE_CHECKING:
    from starlette.responses import Response

    from ingress.bodies import JsonObject
    from schema.outcomes import OutcomeReport
    from schema.settings import ProviderInstance

__all__ = ["WalletBilling", "sig"]

SIGNED_IN_ORDER = (
    "txnid",
    "userid",
    "gameid",
    "serverid",
    "items",
    "amount",
    "apptxnid",
    "addinfo",
)
REQUIRED = ("txnid", "userid", "items", "amount", "sig")
# What a shift would change to someone's gain: who gets which package, for what price, under
# which of the game's orders.
PROTECTED = frozenset({"txnid", "userid", "items", "amount", "apptxnid"})
# A pending order holds these: with `verify_orders`, a copy that changes one is refused.
ORDER_FIELDS = frozenset({"userid", "items", "amount", "apptxnid"})
MAX_ADDINFO_LENGTH = 1024
# The user bought items: the wallet is not credited, the price is recorded.
NOTHING_CREDITED = Decimal(0)

SUCCESS = 1
DUPLICATE = 2
BAD_SIGNATURE = 3
BAD_PARAMETERS = 4
ORDER_NOT_FOUND = 5
ORDER_MISMATCH = 6
USER_NOT_FOUND = 7
TRANSACTION_CONFLICT = 8
TRY_AGAIN = 9
CALLER_NOT_ALLOWED = 10

MESSAGES = {
    SUCCESS: "Success",
    DUPLICATE: "Transaction Duplicate",
    BAD_SIGNATURE: "Invalid signature",
    BAD_PARAMETERS: "Invalid parameters",
    ORDER_NOT_FOUND: "Order not found or already used",
    ORDER_MISMATCH: "Order does not match the transaction",
    USER_NOT_FOUND: "User does not exist",
    TRANSACTION_CONFLICT: "Transaction id already used with different content",
    TRY_AGAIN: "Temporarily unavailable, retry later",
    CALLER_NOT_ALLOWED: "Caller not allowed",
}

VERDICT_CODES = {
    Verdict.MALFORMED: BAD_PARAMETERS,
    Verdict.TOO_LARGE: BAD_PARAMETERS,
    Verdict.METHOD_NOT_ALLOWED: BAD_PARAMETERS,
    Verdict.UNKNOWN_CURRENCY: BAD_PARAMETERS,
    Verdict.BAD_SIGNATURE: BAD_SIGNATURE,
    Verdict.IP_NOT_ALLOWED: CALLER_NOT_ALLOWED,
    Verdict.RATE_LIMITED: TRY_AGAIN,
    Verdict.TRY_AGAIN: TRY_AGAIN,
}

OUTCOME_CODES = {
    Outcome.CREDITED: SUCCESS,
    Outcome.DUPLICATE: DUPLICATE,
    Outcome.HELD_UNKNOWN_ACCOUNT: USER_NOT_FOUND,
    Outcome.CONFLICT: TRANSACTION_CONFLICT,
    Outcome.SIGNATURE_REUSED: TRANSACTION_CONFLICT,
    Outcome.ORDER_NOT_FOUND: ORDER_NOT_FOUND,
    Outcome.ORDER_MISMATCH: ORDER_MISMATCH,
    Outcome.EXPIRED: BAD_PARAMETERS,  # this protocol sends no time, so never in practice
}


def sig(values: dict[str, str], secret_key: str) -> str:
    """The spec's formula; `values` holds the signed fields as text, absent ones omitted."""
    signed = "".join(values.get(name, "") for name in SIGNED_IN_ORDER)
    return hashlib.md5((signed + secret_key).encode()).hexdigest()


class WalletBilling(JsonCallbackProtocol):
    name = "wallet_billing"
    order_terms: ClassVar[frozenset[str] | None] = frozenset({"items", "amount"})
    items_per_order = 1  # a callback carries one package id
    formattable_fields = tuple(name for name in SIGNED_IN_ORDER if name != "amount")
    outcome_codes = OUTCOME_CODES
    messages = MESSAGES

    @property
    def accepted_answer_code(self) -> str:
        return str(SUCCESS)

    @classmethod
    def check_settings(cls, instance: ProviderInstance) -> None:
        if instance.default_currency is None:
            raise ConfigError(
                "default_currency is required: wallet_billing sends no currency; it is the "
                "currency of `amount`, the price the user paid"
            )
        if instance.allowed_currencies is not None:
            raise ConfigError("allowed_currencies is not used: wallet_billing sends no currency")
        if instance.account_policy is not AccountPolicy.CREATE:
            raise ConfigError(
                'account_policy must be "create": the wallet takes every answer but 1 and 2 as '
                "a final failure, so a purchase cannot wait for its user to be created"
            )

    def startup_warnings(self) -> list[str]:
        """Pairs of the signing order a shift could cross: `verify_orders` closes the fields
        an order holds, a format of fixed length closes any field but amount."""
        closed = {name for name, declared in self.field_formats.items() if declared.fixed_width}
        if self.instance.verify_orders:
            closed |= ORDER_FIELDS
        optional = set(SIGNED_IN_ORDER) - set(REQUIRED)
        free_text = PROTECTED - {"amount"} - closed
        pairs = open_pairs(SIGNED_IN_ORDER, closed, optional, PROTECTED, free_text)
        return [open_pair_warning(first, second) for first, second in pairs]

    def verify(self, body: JsonObject) -> Claim:
        require_fields(body, REQUIRED)
        if self.instance.verify_orders:
            require_fields(body, ("apptxnid",))
        signed = {name: signed_text(name, body.get(name)) for name in SIGNED_IN_ORDER}
        received = signed_text("sig", body["sig"])
        secret_name = self.matching_secret(
            lambda key: sig(signed, key), received, "sig does not match the fields"
        )

        checked = {
            name: self.formatted(
                name,
                name,
                fields.text(
                    name,
                    signed[name],
                    max_length=MAX_ADDINFO_LENGTH if name == "addinfo" else fields.MAX_ID_LENGTH,
                    required=name in REQUIRED,
                ),
            )
            for name in SIGNED_IN_ORDER
            if name != "amount"
        }
        assert self.instance.default_currency is not None  # check_settings guarantees it
        return Claim(
            transaction_id=checked["txnid"],
            user_id=checked["userid"],
            amount=NOTHING_CREDITED,
            currency=self.instance.default_currency,
            signature=received.lower(),
            secret_name=secret_name,
            attributes={
                name: checked[name] for name in ("gameid", "serverid", "addinfo") if checked[name]
            },
            items=(checked["items"],),
            price=fields.amount(
                "amount",
                signed["amount"],
                decimal_places=self.instance.amount_decimal_places,
                maximum=self.instance.max_amount,
                allow_zero=True,
            ),
            order_id=checked["apptxnid"] or None,
        )

    def answer(self, verdict: Verdict, detail: str = "") -> Response:
        return _answer(VERDICT_CODES[verdict])

    def answer_outcome(self, claim: Claim, report: OutcomeReport) -> Response:
        return _answer(self.outcome_codes[report.outcome])


def _answer(code: int) -> Response:
    return JSONResponse({"resultCode": code, "resultMessage": MESSAGES[code]})


PROTOCOL = WalletBilling
