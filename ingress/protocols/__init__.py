"""Provider protocols: how each provider's callback is read, verified and answered.

A protocol is one module in this package that sets `PROTOCOL` to its class; the registry finds
it by the class's `name`, which is what the configuration's `protocol` key names.
"""

from __future__ import annotations

import importlib
import pkgutil
from functools import cache

from ingress.protocols.base import Claim, ProviderProtocol, QueryCallbackProtocol
from schema.settings import ConfigError

__all__ = ["Claim", "ProviderProtocol", "QueryCallbackProtocol", "protocol_class"]


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
