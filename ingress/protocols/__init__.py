"""Provider protocols: how each provider's callback is read, verified and answered.

A protocol is one module in this package that sets `PROTOCOL` to its class; the registry finds
it by the class's `name`, which is what the configuration's `protocol` key names.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache
from typing import TYPE_CHECKING

from ingress.protocols.base import Claim, ProviderProtocol, QueryCallbackProtocol
from schema.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from schema.settings import ProviderInstance

__all__ = [
    "Claim",
    "ProviderProtocol",
    "QueryCallbackProtocol",
    "protocol_class",
    "validate_providers",
]


@cache
def _registry() -> dict[str, type[ProviderProtocol]]:
    found: dict[str, type[ProviderProtocol]] = {}
    for module_info in pkgutil.iter_modules(__path__):
        module = importlib.import_module(f"{__name__}.{module_info.name}")
        protocol = getattr(module, "PROTOCOL", None)
        if protocol is not None:
            found[protocol.name] = protocol
    return found


def protocol_class(name: str) -> type[ProviderProtocol]:
    try:
        return _registry()[name]
    except KeyError:
        known = ", ".join(sorted(_registry()))
        raise ConfigError(f"unknown protocol {name!r}; known protocols: {known}") from None


def validate_providers(providers: Sequence[ProviderInstance]) -> None:
    """Every instance against its protocol; the error names the instance's place in the file."""
    for index, instance in enumerate(providers):
        try:
            protocol_class(instance.protocol).validate(instance)
        except ConfigError as error:
            raise ConfigError(f"providers[{index}] ({instance.name}): {error}") from None
