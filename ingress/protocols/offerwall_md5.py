"""Spec 000: offerwall GET callback signed with md5(values sorted by parameter name + pub key).

Every received parameter but `sign` is signed, including ones the spec does not list, ordered by
the name as sent (the integrator renames parameters), in byte order.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING

from ingress import fields
from ingress.protocols.base import Claim, QueryCallbackProtocol
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError

if TYPE_CHECKING:
    from schema.settings import ProviderInstance

__all__ = ["OfferwallMd5"]

OPTIONAL_DEVICE_PARAMETERS = ("gaid", "mac", "imei", "android_id")


def sign(params: dict[str, str], pub_key: str) -> str:
    """The spec's formula over every parameter in `params` (which must not contain `sign`)."""
    # In byte order: for text read from UTF-8, code point order is UTF-8 byte order, so the
    # names sort as they are, without encoding each.
    ordered = sorted(params)
    return hashlib.md5(("".join(params[n] for n in ordered) + pub_key).encode()).hexdigest()


class OfferwallMd5(QueryCallbackProtocol):
    name = "offerwall_md5"
    renamable_parameters = ("user_id", "amount", "trans_id", *OPTIONAL_DEVICE_PARAMETERS)
    device_parameters = OPTIONAL_DEVICE_PARAMETERS
    fixed_parameters = ("sign", "send_time")

    @classmethod
    def check_settings(cls, instance: ProviderInstance) -> None:
        if instance.default_currency is None:
            raise ConfigError(
                "default_currency is required: protocol offerwall_md5 sends no currency"
            )
        if instance.allowed_currencies is not None:
            raise ConfigError(
                "allowed_currencies is not used: offerwall_md5 always pays default_currency"
            )

    def success_body(self) -> dict[str, object]:
        return {"is_valid": True}

    def failure_body(self) -> dict[str, object]:
        return {"is_valid": False}

    def verify(self, params: dict[str, str]) -> Claim:
        received = params.get("sign", "")
        if not received:
            raise Rejection(Verdict.MALFORMED, "parameter 'sign' is missing")
        signed = {name: value for name, value in params.items() if name != "sign"}
        secret_name = self.matching_secret(
            lambda pub_key: sign(signed, pub_key), received, "sign does not match the parameters"
        )

        send_time = self.required(params, "send_time")
        fields.positive_integer("send_time", send_time)
        amount_name = self.sent_name("amount")
        assert self.instance.default_currency is not None  # check_settings guarantees it
        attributes = {"send_time": send_time}
        for spec_name in OPTIONAL_DEVICE_PARAMETERS:
            sent = self.sent_name(spec_name)
            value = fields.text(
                sent, params.get(sent, ""), max_length=fields.MAX_ID_LENGTH, required=False
            )
            if value:
                attributes[spec_name] = value
        return Claim(
            transaction_id=fields.text(
                self.sent_name("trans_id"),
                self.required(params, "trans_id"),
                max_length=fields.MAX_ID_LENGTH,
            ),
            user_id=fields.text(
                self.sent_name("user_id"),
                self.required(params, "user_id"),
                max_length=fields.MAX_ID_LENGTH,
            ),
            amount=fields.amount(
                amount_name,
                self.required(params, "amount"),
                decimal_places=self.instance.amount_decimal_places,
                maximum=self.instance.max_amount,
            ),
            currency=self.instance.default_currency,
            signature=received.lower(),
            secret_name=secret_name,
            attributes=attributes,
        )


PROTOCOL = OfferwallMd5
