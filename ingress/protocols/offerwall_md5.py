"""Spec 000: offerwall GET callback signed with md5(values sorted by parameter name + pub key).

Every received parameter but `sign` is signed, including ones the spec does not list, ordered by
the name as sent (the integrator renames parameters), in byte order. Nothing separates the
values, so every parameter beyond the mandatory ones must be declared with a format
(`extra_parameters`), which is what refuses characters shifted across a boundary
(docs/security.md).
"""

from __future__ import annotations

import hashlib
import re
from functools import cached_property
from typing import TYPE_CHECKING

from ingress import fields
from ingress.parameter_formats import open_pair_warning, open_pairs, parse_formats
from ingress.protocols.base import Claim, QueryCallbackProtocol
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ingress.parameter_formats import ParameterFormat
    from schema.settings import FormatSpec, ProviderInstance

__all__ = ["OfferwallMd5"]

OPTIONAL_DEVICE_PARAMETERS = ("gaid", "mac", "imei", "android_id")
# Each is also the name of its built-in format: what an instance accepts when it declares none.
DEFAULT_EXTRA_FORMATS = {name: name for name in OPTIONAL_DEVICE_PARAMETERS}
MANDATORY = ("user_id", "amount", "trans_id")
# Unix seconds, 2001 to 2286: a fixed width, so no character can shift across either side.
_SEND_TIME = re.compile(r"[1-9][0-9]{9}")
ANY = "any"
# Declared in these formats, an extra parameter identifies a device or a person: it is hashed
# in the stored request like the spec's own device ids (ingress/device_ids.py).
DEVICE_FORMATS = frozenset({"gaid", "idfa", "android_id", "imei", "mac", "ip"})


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
    formattable_fields = ("user_id", "trans_id")
    takes_extra_parameters = True

    def __init__(self, instance: ProviderInstance, secrets: Mapping[str, str]) -> None:
        super().__init__(instance, secrets)
        # None: any parameter, unchecked ("any").
        self._extra = self._extra_formats()
        self._mandatory = frozenset(
            [*(self.sent_name(name) for name in MANDATORY), *self.fixed_parameters]
        )

    @cached_property
    def sent_device_parameters(self) -> frozenset[str]:
        declared = self._extra or {}
        identifying = {name for name, form in declared.items() if form.describe in DEVICE_FORMATS}
        return super().sent_device_parameters | identifying

    def _extra_formats(self) -> dict[str, ParameterFormat] | None:
        declared = self.instance.extra_parameters
        if declared == ANY:
            return None
        specs: dict[str, FormatSpec]
        if declared is None:
            specs = {self.sent_name(spec): spec for spec in DEFAULT_EXTRA_FORMATS}
        else:
            assert not isinstance(declared, str)  # "any" is the one string it takes
            specs = declared
        return parse_formats(specs, "extra_parameters")

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
        declared = instance.extra_parameters
        if isinstance(declared, dict):
            mandatory = {instance.parameters.get(name, name) for name in MANDATORY}
            clashes = sorted(set(declared) & (mandatory | set(cls.fixed_parameters)))
            if clashes:
                raise ConfigError(
                    f"extra_parameters: {', '.join(clashes)} are the spec's own parameters; "
                    "declare only the others"
                )
            if "" in declared:
                raise ConfigError("extra_parameters: a name must not be empty")
            parse_formats(declared, "extra_parameters")

    def startup_warnings(self) -> list[str]:
        """Where a shift across a boundary could keep the signature and every format: the
        extra parameters unchecked, or two free values next to each other in the signing
        order, one of them amount, user_id or trans_id."""
        if self._extra is None:
            return [
                'extra_parameters = "any": parameters are accepted without a format, so '
                "characters shifted between amount, user_id or trans_id and a parameter beside "
                "it keep the signature, and a shifted copy that arrives before the original "
                "is credited instead of it; declare each parameter with its format"
            ]
        extra = self._extra
        mandatory = [self.sent_name(spec) for spec in MANDATORY]
        # send_time's values always have one length.
        closed = {"send_time"} | {name for name, declared in extra.items() if declared.fixed_width}
        closed |= {
            self.sent_name(spec)
            for spec, declared in self.field_formats.items()
            if declared.fixed_width
        }
        order = sorted([*extra, "send_time", *mandatory], key=str.encode)
        free_text = {self.sent_name(spec) for spec in ("trans_id", "user_id")} - closed
        pairs = open_pairs(order, closed, set(extra), set(mandatory), free_text)
        return [open_pair_warning(first, second) for first, second in pairs]

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
        if not _SEND_TIME.fullmatch(send_time):
            raise Rejection(
                Verdict.MALFORMED, "parameter 'send_time' must be unix seconds (10 digits)"
            )
        self._check_extra_parameters(params)
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
            transaction_id=self._free_field(params, "trans_id"),
            user_id=self._free_field(params, "user_id"),
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

    def _free_field(self, params: dict[str, str], spec_name: str) -> str:
        sent = self.sent_name(spec_name)
        value = fields.text(sent, self.required(params, spec_name), max_length=fields.MAX_ID_LENGTH)
        return self.formatted(spec_name, sent, value)

    def _check_extra_parameters(self, params: dict[str, str]) -> None:
        """Every parameter beyond the mandatory ones declared, and in its format; an empty
        value signs nothing, so it needs none."""
        if self._extra is None:
            return
        for name, value in params.items():
            if name in self._mandatory:
                continue
            declared = self._extra.get(name)
            if declared is None:
                raise Rejection(
                    Verdict.MALFORMED,
                    f"parameter {name!r} is not declared in this instance's extra_parameters",
                )
            if value:
                declared.check(name, value)


PROTOCOL = OfferwallMd5
