"""What every provider protocol provides, and the shared shape of GET query-string callbacks."""

from __future__ import annotations

import hmac
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from starlette.responses import JSONResponse, Response

from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from schema.settings import ConfigError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping
    from decimal import Decimal

    from starlette.requests import Request

    from schema.settings import ProviderInstance

__all__ = ["Claim", "ProviderProtocol", "QueryCallbackProtocol", "signatures_match"]


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


def signatures_match(expected_hex: str, received: str) -> bool:
    """Constant-time; hex case carries no meaning, so either case is accepted."""
    return hmac.compare_digest(expected_hex.encode(), received.lower().encode())


class ProviderProtocol(ABC):
    """One configured provider instance speaking one protocol."""

    name: ClassVar[str]
    # The spec's parameter names that the integrator may rename, in the spec's own words.
    renamable_parameters: ClassVar[tuple[str, ...]]
    # Names the spec fixes; a renamed parameter must not take one of them.
    fixed_parameters: ClassVar[tuple[str, ...]] = ()

    def __init__(self, instance: ProviderInstance, secrets: Mapping[str, str]) -> None:
        """`secrets` maps each environment variable's name to its secret, in configured order."""
        self.instance = instance
        self._secrets = dict(secrets)
        self.names = self.validate(instance)

    def matching_secret(self, expected_for: Callable[[str], str], received: str) -> str | None:
        """The name of the secret under which `received` is the expected signature, if any."""
        for name, secret in self._secrets.items():
            if signatures_match(expected_for(secret), received):
                return name
        return None

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
        cls.check_settings(instance)
        return names

    @classmethod  # noqa: B027 - an optional hook, empty by default on purpose
    def check_settings(cls, instance: ProviderInstance) -> None:
        """Refuse settings this protocol cannot honour, naming the key."""

    @abstractmethod
    async def read_claim(self, request: Request) -> Claim:
        """Parse and verify the request; raise `Rejection` for anything that is not a payout."""

    @abstractmethod
    def answer(self, verdict: Verdict, detail: str = "") -> Response:
        """The response in the provider's own format."""

    @property
    def accepted_answer_code(self) -> str:
        """What an accepted callback (and every retry of it) is answered: stored with the payout."""
        return str(Verdict.ACCEPTED.http_status)


class QueryCallbackProtocol(ProviderProtocol):
    """Providers that call `GET ?name=value...` and read only the HTTP status and a JSON body."""

    async def read_claim(self, request: Request) -> Claim:
        if request.method != "GET":
            raise Rejection(Verdict.METHOD_NOT_ALLOWED, "callbacks are HTTP GET requests")
        return self.verify(parse_query(request.scope["query_string"]))

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
