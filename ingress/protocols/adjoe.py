"""Spec 003: adjoe's GET callback, sid = sha1(trans_uuid + user_uuid + currency + coin_amount +
device_id + sdk_app_id + s2s_token), an absent optional parameter contributing the empty string.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ingress import fields
from ingress.parameter_formats import open_pair_warning, open_pairs
from ingress.protocols.base import Claim, QueryCallbackProtocol
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError

if TYPE_CHECKING:
    from schema.settings import ProviderInstance

__all__ = ["Adjoe"]

SIGNED_IN_ORDER = ("trans_uuid", "user_uuid", "currency", "coin_amount", "device_id", "sdk_app_id")
OPTIONAL_PARAMETERS = (
    "device_id",
    "app_name",
    "sdk_app_id",
    "app_id",
    "sdk_sub_id1",
    "sdk_sub_id2",
    "reward_level",
    "reward_type",
)
MAX_CURRENCY_LENGTH = 64
MAX_OPTIONAL_LENGTH = 256
# Signed and left free by the spec: what `field_formats` may narrow.
FREE_SIGNED = ("user_uuid", "device_id", "sdk_app_id")


def sid(values: dict[str, str], s2s_token: str) -> str:
    """The spec's formula; `values` is keyed by the spec's names, absent ones omitted."""
    signed = "".join(values.get(name, "") for name in SIGNED_IN_ORDER)
    return hashlib.sha1((signed + s2s_token).encode()).hexdigest()


class Adjoe(QueryCallbackProtocol):
    name = "adjoe"
    renamable_parameters = (
        "user_uuid",
        "sid",
        "coin_amount",
        "currency",
        "trans_uuid",
        *OPTIONAL_PARAMETERS,
    )
    device_parameters = ("device_id",)
    formattable_fields = FREE_SIGNED

    @classmethod
    def check_settings(cls, instance: ProviderInstance) -> None:
        if instance.default_currency is not None:
            raise ConfigError(
                "default_currency is not used: adjoe sends the currency; "
                "restrict it with allowed_currencies instead"
            )
        if instance.amount_decimal_places != 0:
            raise ConfigError("amount_decimal_places must be 0: adjoe's coin_amount is an integer")

    def startup_warnings(self) -> list[str]:
        """Pairs of the signing order a shift could cross: trans_uuid is a UUID, currency is
        closed by `allowed_currencies`, the free fields by a format of fixed length."""
        closed = {"trans_uuid"} | {
            name for name, declared in self.field_formats.items() if declared.fixed_width
        }
        if self.instance.allowed_currencies is not None:
            closed.add("currency")
        pairs = open_pairs(
            SIGNED_IN_ORDER,
            closed,
            {"device_id", "sdk_app_id"},
            {"user_uuid", "coin_amount"},
            {"user_uuid"} - closed,
        )
        return [open_pair_warning(first, second) for first, second in pairs]

    def verify(self, params: dict[str, str]) -> Claim:
        received = self.required(params, "sid")
        by_spec_name = {
            spec: params[self.sent_name(spec)]
            for spec in self.renamable_parameters
            if self.sent_name(spec) in params
        }
        secret_name = self.matching_secret(
            lambda token: sid(by_spec_name, token), received, "sid does not match the parameters"
        )

        currency_name = self.sent_name("currency")
        currency = fields.text(
            currency_name, self.required(params, "currency"), max_length=MAX_CURRENCY_LENGTH
        )
        allowed = self.instance.allowed_currencies
        if allowed is not None and currency not in allowed:
            raise Rejection(
                Verdict.UNKNOWN_CURRENCY,
                f"parameter {currency_name!r}: currency {currency!r} is not accepted",
            )
        attributes = {}
        for spec_name in OPTIONAL_PARAMETERS:
            sent = self.sent_name(spec_name)
            value = fields.text(
                sent, params.get(sent, ""), max_length=MAX_OPTIONAL_LENGTH, required=False
            )
            value = self.formatted(spec_name, sent, value)
            if value:
                attributes[spec_name] = value
        return Claim(
            transaction_id=fields.uuid_v4(
                self.sent_name("trans_uuid"), self.required(params, "trans_uuid")
            ),
            user_id=self.formatted(
                "user_uuid",
                self.sent_name("user_uuid"),
                fields.text(
                    self.sent_name("user_uuid"),
                    self.required(params, "user_uuid"),
                    max_length=fields.MAX_ID_LENGTH,
                ),
            ),
            amount=fields.amount(
                self.sent_name("coin_amount"),
                self.required(params, "coin_amount"),
                decimal_places=0,
                maximum=self.instance.max_amount,
            ),
            currency=currency,
            signature=received.lower(),
            secret_name=secret_name,
            attributes=attributes,
        )


PROTOCOL = Adjoe
