"""Spec 001: the Baccarat platform's wallet payout, `POST /aigame/v1/wallet/payout` with JSON.

The spec leaves the signature to the provider's general interface description:
`md5(KEY + "&" + k1=v1&k2=v2...)` over every field but `sign`, fields with empty values left out,
ordered by field name in ASCII order, values exactly as sent (`key_first`, the default). The
`key_param_last` scheme, `md5(k1=v1&...&key=KEY)`, serves platforms configured the other common way.
The answer carries the wallet's balance after the payout, so the ingress waits for the outcome.
"""

from __future__ import annotations

import hashlib
import time
from decimal import Decimal
from typing import TYPE_CHECKING, ClassVar

from starlette.responses import JSONResponse

from ingress import fields
from ingress.protocols.base import Claim, JsonCallbackProtocol, require_fields, signed_text
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError
from schema.events import decimal_text
from schema.outcomes import Outcome

if TYPE_CHECKING:
    from starlette.responses import Response

    from ingress.bodies import JsonObject
    from schema.outcomes import OutcomeReport
    from schema.settings import ProviderInstance

__all__ = ["AigamePayout", "sign"]

SUCCESS = 200
SERVICE_EXCEPTION = 800100
PARAMETER_ERROR = 408000
SIGNATURE_ERROR = 600100
MEMBER_NOT_FOUND = 800101
CURRENCY_NOT_FOUND = 800102
ORDER_NOT_FOUND = 800107
PAYOUT_FAILURE = 800109

# The spec's own words for each code.
MESSAGES = {
    SUCCESS: "success",
    SERVICE_EXCEPTION: "Service exception",
    PARAMETER_ERROR: "Parameter error",
    SIGNATURE_ERROR: "Signature error",
    MEMBER_NOT_FOUND: "Member does not exist",
    CURRENCY_NOT_FOUND: "Currency does not exist",
    ORDER_NOT_FOUND: "Order ID does not exist",
    PAYOUT_FAILURE: "Payout failure",
}

VERDICT_CODES = {
    Verdict.MALFORMED: PARAMETER_ERROR,
    Verdict.TOO_LARGE: PARAMETER_ERROR,
    Verdict.METHOD_NOT_ALLOWED: PARAMETER_ERROR,
    Verdict.BAD_SIGNATURE: SIGNATURE_ERROR,
    # Not a signature in the strict sense, but the same answer: this caller is not trusted.
    Verdict.IP_NOT_ALLOWED: SIGNATURE_ERROR,
    Verdict.UNKNOWN_CURRENCY: CURRENCY_NOT_FOUND,
    Verdict.RATE_LIMITED: SERVICE_EXCEPTION,  # the spec's only "retry later"
    Verdict.TRY_AGAIN: SERVICE_EXCEPTION,
}

OUTCOME_CODES = {
    Outcome.CREDITED: SUCCESS,
    Outcome.DUPLICATE: SUCCESS,
    Outcome.HELD_UNKNOWN_ACCOUNT: MEMBER_NOT_FOUND,
    # A settled order re-sent with other content is answered as settled (below); a conflict
    # with a payout that is not settled is a failure.
    Outcome.CONFLICT: PAYOUT_FAILURE,
    Outcome.SIGNATURE_REUSED: PAYOUT_FAILURE,
    Outcome.ORDER_NOT_FOUND: ORDER_NOT_FOUND,
    Outcome.ORDER_MISMATCH: ORDER_NOT_FOUND,
    Outcome.EXPIRED: PARAMETER_ERROR,
}

TEXT_FIELDS = ("agent_id", "user_id", "game_id", "inst_id", "bet_txn_id", "currency")
INTEGER_FIELDS = ("shoe_id", "round_id", "pay_out_time", "timestamp")
REQUIRED = (*TEXT_FIELDS, *INTEGER_FIELDS, "win_amount", "sign")
MAX_CURRENCY_LENGTH = 32


def sign(values: dict[str, str], key: str, scheme: str = "key_first") -> str:
    """The signature over `values` (every field but `sign`, as signed text)."""
    pairs = "&".join(
        f"{name}={values[name]}"
        for name in sorted(values, key=lambda name: name.encode())
        if values[name] != ""
    )
    text = f"{pairs}&key={key}" if scheme == "key_param_last" else f"{key}&{pairs}"
    return hashlib.md5(text.encode()).hexdigest()


class AigamePayout(JsonCallbackProtocol):
    name = "aigame_payout"
    order_terms: ClassVar[frozenset[str] | None] = frozenset()
    checks_request_age = True
    signature_schemes = ("key_first", "key_param_last")
    outcome_codes = OUTCOME_CODES
    messages = MESSAGES

    @classmethod
    def check_settings(cls, instance: ProviderInstance) -> None:
        if instance.default_currency is not None:
            raise ConfigError(
                "default_currency is not used: aigame_payout sends the currency; "
                "restrict it with allowed_currencies instead"
            )

    def verify(self, body: JsonObject) -> Claim:
        require_fields(body, REQUIRED)
        signed = {name: signed_text(name, value) for name, value in body.items() if name != "sign"}
        received = signed_text("sign", body["sign"])
        secret_name = self.matching_secret(
            lambda key: sign(signed, key, self.scheme), received, "sign does not match the fields"
        )

        # The signed text joins the pairs with `&` and escapes nothing: a value holding `&` reads
        # as that value or as two fields, so a copy could fold a field into its neighbour.
        folded = sorted(name for name, value in signed.items() if "&" in value)
        if folded:
            raise Rejection(
                Verdict.MALFORMED, f"field {folded[0]!r} contains '&', which separates fields"
            )
        text = {
            name: fields.text(
                name,
                signed[name],
                max_length=MAX_CURRENCY_LENGTH if name == "currency" else fields.MAX_ID_LENGTH,
            )
            for name in TEXT_FIELDS
        }
        # The spec types these as int; a string of digits is the same number, so it passes too.
        numbers = {name: fields.unsigned_integer(name, signed[name]) for name in INTEGER_FIELDS}
        amount = self._win_amount(signed["win_amount"])
        allowed = self.instance.allowed_currencies
        if allowed is not None and text["currency"] not in allowed:
            raise Rejection(
                Verdict.UNKNOWN_CURRENCY, f"currency {text['currency']!r} is not enabled"
            )
        age_ms = abs(time.time() * 1000 - numbers["timestamp"])
        return Claim(
            transaction_id=text["bet_txn_id"],
            user_id=text["user_id"],
            amount=amount,
            currency=text["currency"],
            signature=received.lower(),
            secret_name=secret_name,
            attributes={
                **{name: text[name] for name in ("agent_id", "game_id", "inst_id")},
                **{name: str(number) for name, number in numbers.items()},
            },
            order_id=text["bet_txn_id"],
            may_record_new=age_ms <= self.instance.request_max_age_seconds * 1000,
        )

    def _win_amount(self, value: str) -> Decimal:
        return fields.amount(
            "win_amount",
            value,
            decimal_places=self.instance.amount_decimal_places,
            maximum=self.instance.max_amount,
            allow_zero=True,
        )

    def answer(self, verdict: Verdict, detail: str = "") -> Response:
        return _answer(VERDICT_CODES[verdict])

    def answer_outcome(self, claim: Claim, report: OutcomeReport) -> Response:
        code = self.outcome_codes[report.outcome]
        if report.outcome is Outcome.CONFLICT and report.balance is not None:
            # The FAQ: an order already settled is answered with success, whatever the re-send
            # says; the differing content is recorded for an operator, never credited.
            code = SUCCESS
        if code != SUCCESS or report.balance is None:
            return _answer(code)
        # A conflict's balance is the recorded payout's wallet's, in its currency.
        currency = report.currency or claim.currency
        return _answer(code, {"balance": self._balance_text(report.balance), "currency": currency})

    def _balance_text(self, balance: Decimal) -> str:
        """At least the instance's decimal places, padded, never rounded: a wallet shared with
        another instance may hold finer amounts, and a balance must be exact."""
        places = self.instance.amount_decimal_places
        exponent = balance.as_tuple().exponent
        if isinstance(exponent, int) and -exponent < places:
            balance = balance.quantize(Decimal(1).scaleb(-places))
        return decimal_text(balance)


def _answer(code: int, data: dict[str, str] | None = None) -> Response:
    return JSONResponse({"code": code, "message": MESSAGES[code], "data": data or {}})


PROTOCOL = AigamePayout
