"""Small builders for settings objects used across tests."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from schema.settings import AccountPolicy, ProviderInstance


def provider(protocol: str, **overrides: Any) -> ProviderInstance:
    values: dict[str, Any] = {
        "name": f"test-{protocol.replace('_', '-')}",
        "protocol": protocol,
        "route": f"/callbacks/{protocol}",
        "secret_env": "TEST_SECRET",
        "max_amount": Decimal(100000),
        "account_policy": AccountPolicy.CREATE,
    }
    if protocol == "offerwall_md5":
        values["default_currency"] = "COIN"
    values.update(overrides)
    return ProviderInstance.model_validate(values)
