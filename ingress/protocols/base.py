"""What every provider protocol provides, and the two shapes callbacks come in: GET query strings
answered at once, and POSTed JSON objects answered with the worker's outcome."""

from __future__ import annotations

from abc import ABC, abstractmethod
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from typing import TYPE_CHECKING, ClassVar

from starlette.responses import JSONResponse, Response

from ingress import rotated_secrets
from ingress.bodies import parse_json_object
from ingress.parameter_formats import parse_formats
from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from schema.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping
    from decimal import Decimal

    from starlette.requests import Request

    from ingress.bodies import JsonObject
    from schema.outcomes import Outcome, OutcomeReport
    from schema.settings import ProviderInstance

__all__ = [
    "Claim",
    "JsonCallbackProtocol",
    "ProviderProtocol",
    "QueryCallbackProtocol",
    "require_fields",
    "signed_text",
]


# True once `matching_secret` found the request being verified signed by a configured secret.
_signature_matched: ContextVar[bool] = ContextVar("signature_matched", default=False)


@contextmanager
def _refusals_marked() -> Iterator[None]:
    """Mark a refusal raised after the signature was found good as `after_signature`."""
    token = _signature_matched.set(False)
    try:
        yield
    except Rejection as rejection:
        rejection.after_signature = _signature_matched.get()
        raise
    finally:
        _signature_matched.reset(token)


@dataclass(frozen=True)
class Claim:
    """A verified, well-formed payout request, in the provider-neutral terms of the event."""

    transaction_id: str
    user_id: str
    amount: Decimal
    currency: str
    signature: str
    # The environment variable whose secret verified the request (never the secret itself).
    secret_name: str = ""
    attributes: dict[str, str] = field(default_factory=dict)
    items: tuple[str, ...] = ()
    price: Decimal | None = None
    # The game's pending order the payout must match, where the protocol names one.
    order_id: str | None = None
    # False for a request too old to start a transaction (it may still settle a recorded one).
    may_record_new: bool = True


class ProviderProtocol(ABC):
    """One configured provider instance speaking one protocol."""

    name: ClassVar[str]
    method: ClassVar[str]
    # The spec's parameter names that the integrator may rename, in the spec's own words.
    renamable_parameters: ClassVar[tuple[str, ...]] = ()
    # Names the spec fixes; a renamed parameter must not take one of them.
    fixed_parameters: ClassVar[tuple[str, ...]] = ()
    # The answer depends on what the worker decides: the ingress waits for the outcome.
    waits_for_outcome: ClassVar[bool] = False
    # What a pending order registered for this protocol holds besides its user (docs/orders.md);
    # None: the protocol names no order, so `verify_orders` cannot be turned on.
    order_terms: ClassVar[frozenset[str] | None] = None
    # How many items an order registered for this protocol may list.
    items_per_order: ClassVar[int] = 100
    # The request carries its own send time, checked against `request_max_age_seconds`.
    checks_request_age: ClassVar[bool] = False
    # Values `signature_scheme` may take; the first is the default.
    signature_schemes: ClassVar[tuple[str, ...]] = ()
    # The spec's names of parameters that identify a device, hashed before they are stored
    # unless the instance sets `store_device_ids` (ingress/device_ids.py).
    device_parameters: ClassVar[tuple[str, ...]] = ()
    # The spec's names of signed fields it leaves free, which `field_formats` may narrow.
    formattable_fields: ClassVar[tuple[str, ...]] = ()
    # The postback URL may carry parameters of the operator's choosing (`extra_parameters`).
    takes_extra_parameters: ClassVar[bool] = False

    def __init__(self, instance: ProviderInstance, secrets: Mapping[str, str]) -> None:
        """`secrets` maps each environment variable's name to its secret, in configured order."""
        self.instance = instance
        self._secrets = dict(secrets)
        self.names = self.validate(instance)
        self.field_formats = parse_formats(instance.field_formats, "field_formats")

    def matching_secret(
        self, expected_for: Callable[[str], str], received: str, mismatch: str
    ) -> str:
        """The name of the secret under which `received` is the expected signature; if there is
        none, the request is refused with `mismatch` as the detail."""
        name = rotated_secrets.matching_secret(self._secrets, received, expected_for)
        if name is None:
            raise Rejection(Verdict.BAD_SIGNATURE, mismatch)
        _signature_matched.set(True)
        return name

    @classmethod
    def validate(cls, instance: ProviderInstance) -> dict[str, str]:
        """Check the instance's settings against this protocol; return the names as sent.

        Needs no secret, so every `payouts` command can refuse a bad file before doing anything.
        """
        unknown = sorted(set(instance.parameters) - set(cls.renamable_parameters))
        if unknown:
            raise ConfigError(
                f"parameters: {', '.join(unknown)} cannot be renamed in protocol {cls.name}; "
                f"renamable: {', '.join(cls.renamable_parameters)}"
            )
        names = {spec: instance.parameters.get(spec, spec) for spec in cls.renamable_parameters}
        taken = list(names.values()) + list(cls.fixed_parameters)
        clashes = sorted({name for name in taken if taken.count(name) > 1})
        if clashes or not all(names.values()):
            raise ConfigError(f"parameters: names must be non-empty and distinct: {clashes}")
        cls._check_optional_settings(instance)
        cls._check_field_formats(instance)
        cls.check_settings(instance)
        return names

    @classmethod
    def _check_field_formats(cls, instance: ProviderInstance) -> None:
        unknown = sorted(set(instance.field_formats) - set(cls.formattable_fields))
        if unknown:
            formattable = ", ".join(cls.formattable_fields) or "none"
            raise ConfigError(
                f"field_formats: {', '.join(unknown)} cannot be given a format in protocol "
                f"{cls.name}; formattable: {formattable}"
            )
        parse_formats(instance.field_formats, "field_formats")

    def startup_warnings(self) -> list[str]:
        """Risks the settings accept but an operator should know of, one sentence each."""
        return []

    @classmethod
    def _check_optional_settings(cls, instance: ProviderInstance) -> None:
        unused = {
            "verify_orders": instance.verify_orders and cls.order_terms is None,
            "signature_scheme": instance.signature_scheme is not None and not cls.signature_schemes,
            "outcome_timeout_seconds": not cls.waits_for_outcome,
            "request_max_age_seconds": not cls.checks_request_age,
            "extra_parameters": not cls.takes_extra_parameters,
        }
        for key, refused in unused.items():
            if refused and key in instance.model_fields_set:
                raise ConfigError(f"{key} is not used by protocol {cls.name}")
        scheme = instance.signature_scheme
        if scheme is not None and cls.signature_schemes and scheme not in cls.signature_schemes:
            raise ConfigError(
                f"signature_scheme {scheme!r} is unknown to protocol {cls.name}; "
                f"known: {', '.join(cls.signature_schemes)}"
            )

    def formatted(self, spec_name: str, name: str, value: str) -> str:
        """`value` checked against the format `field_formats` gives the field, if any; an empty
        value (an absent optional field) has no format to match."""
        declared = self.field_formats.get(spec_name)
        return declared.check(name, value) if declared is not None and value else value

    @cached_property  # read for every callback; the names are fixed once validated
    def sent_device_parameters(self) -> frozenset[str]:
        """`device_parameters` under the names this instance's provider sends them."""
        return frozenset(self.names.get(name, name) for name in self.device_parameters)

    @property
    def scheme(self) -> str:
        """The configured signature scheme, or the protocol's default."""
        return self.instance.signature_scheme or self.signature_schemes[0]

    @classmethod  # noqa: B027 - an optional hook, empty by default on purpose
    def check_settings(cls, instance: ProviderInstance) -> None:
        """Refuse settings this protocol cannot honour, naming the key."""

    @abstractmethod
    async def read_claim(self, request: Request, body: bytes) -> Claim:
        """Parse and verify the request (its method already checked, its body read and
        decompressed); raise `Rejection` for anything that is not a payout."""

    @abstractmethod
    def answer(self, verdict: Verdict, detail: str = "") -> Response:
        """The response in the provider's own format."""

    def answer_outcome(self, claim: Claim, report: OutcomeReport) -> Response:
        """The answer to a request whose outcome the ingress waited for."""
        raise NotImplementedError(f"protocol {self.name} does not wait for outcomes")

    @property
    def accepted_answer_code(self) -> str:
        """The code of this protocol's success answer, stored with the payout it accepted."""
        return str(Verdict.ACCEPTED.http_status)

    @classmethod
    def outcome_answer(cls, outcome: Outcome) -> tuple[str, str] | None:
        """The code and message a delivery whose outcome was `outcome` was answered with, for
        operators reading the record; None for a protocol that answers before any outcome is
        known, whatever the worker decides later."""
        return None


class QueryCallbackProtocol(ProviderProtocol):
    """Providers that call `GET ?name=value...` and read only the HTTP status and a JSON body."""

    method = "GET"

    async def read_claim(self, request: Request, body: bytes) -> Claim:
        params = parse_query(request.scope["query_string"])
        with _refusals_marked():
            return self.verify(params)

    @abstractmethod
    def verify(self, params: dict[str, str]) -> Claim:
        """Check the signature and every field of the decoded parameters."""

    def answer(self, verdict: Verdict, detail: str = "") -> Response:
        if verdict is Verdict.ACCEPTED:
            return JSONResponse(self.success_body(), status_code=verdict.http_status)
        return JSONResponse(
            {**self.failure_body(), "error": verdict.value, "detail": detail},
            status_code=verdict.http_status,
        )

    def success_body(self) -> dict[str, object]:
        return {"status": "ok"}

    def failure_body(self) -> dict[str, object]:
        return {}

    def sent_name(self, spec_name: str) -> str:
        return self.names.get(spec_name, spec_name)

    def required(self, params: dict[str, str], spec_name: str) -> str:
        name = self.sent_name(spec_name)
        if name not in params or params[name] == "":
            raise Rejection(Verdict.MALFORMED, f"parameter {name!r} is missing")
        return params[name]


class JsonCallbackProtocol(ProviderProtocol):
    """Providers that POST one JSON object and read the code in the answer's body, which
    depends on the outcome: always HTTP 200, so no proxy mistakes an answer for an outage."""

    method = "POST"
    waits_for_outcome = True
    # The code answering each outcome, and the spec's own message for each code.
    outcome_codes: ClassVar[Mapping[Outcome, int]]
    messages: ClassVar[Mapping[int, str]]

    async def read_claim(self, request: Request, body: bytes) -> Claim:
        fields = parse_json_object(body)
        with _refusals_marked():
            return self.verify(fields)

    @abstractmethod
    def verify(self, fields: JsonObject) -> Claim:
        """Check the signature and every field of the decoded object."""

    @classmethod
    def outcome_answer(cls, outcome: Outcome) -> tuple[str, str] | None:
        code = cls.outcome_codes[outcome]
        return str(code), cls.messages[code]


def require_fields(body: JsonObject, names: Iterable[str]) -> None:
    """Each of `names` present and not empty, else the request is malformed."""
    for name in names:
        if body.get(name) in (None, ""):
            raise Rejection(Verdict.MALFORMED, f"field {name!r} is missing")


def signed_text(name: str, value: object) -> str:
    """A JSON field as the provider signed it: a string as decoded, a number as its text, null
    as the empty string; anything else cannot be signed unambiguously and is refused."""
    if value is None:
        return ""
    if isinstance(value, str):  # JsonNumber is a str: its text as sent
        return value
    raise Rejection(Verdict.MALFORMED, f"field {name!r} must be a string or a number")
