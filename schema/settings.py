"""The configuration file: its shape, its validation, and the errors a person can act on."""

from __future__ import annotations

import os
import re
import tomllib
from decimal import Decimal
from enum import StrEnum
from ipaddress import IPv4Network, IPv6Network, ip_network
from typing import TYPE_CHECKING, Annotated, Any

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = [
    "AccountPolicy",
    "BrokerSettings",
    "ConfigError",
    "DatabaseSettings",
    "IngressSettings",
    "ProviderInstance",
    "Settings",
    "WorkerSettings",
    "load_settings",
]

DATABASE_URL_ENV = "PAYOUTS_DATABASE_URL"
BROKER_URL_ENV = "PAYOUTS_BROKER_URL"
CONFIG_PATH_ENV = "PAYOUTS_CONFIG"

IPNetwork = IPv4Network | IPv6Network


class ConfigError(Exception):
    """The configuration cannot be used; the message names the file and the key."""


def _decimal_not_float(value: object) -> object:
    # A TOML float has already lost exactness; money limits must be written as strings or integers.
    if isinstance(value, float):
        raise ValueError('write amounts as a string or an integer (e.g. "1000.50"), not a float')
    return value


def _names(value: object) -> object:
    return (value,) if isinstance(value, str) else value


def _network(value: object) -> object:
    if isinstance(value, str):
        return ip_network(value, strict=False)
    return value


ExactDecimal = Annotated[Decimal, BeforeValidator(_decimal_not_float)]
Network = Annotated[IPNetwork, BeforeValidator(_network)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DatabaseSettings(_Section):
    url: str = "postgresql://root@127.0.0.1:5432/payouts"
    pool_min_size: int = Field(default=1, ge=1)
    pool_max_size: int = Field(default=10, ge=1)
    acquire_timeout_seconds: float = Field(default=10.0, gt=0)


class BrokerSettings(_Section):
    url: str = "amqp://guest:guest@127.0.0.1:5672/"
    namespace: str = Field(default="payouts", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,100}$")
    publish_timeout_seconds: float = Field(default=5.0, gt=0)
    reconnect_interval_seconds: float = Field(default=2.0, gt=0)
    # One wait queue per delay: a failed delivery waits in tier N before its N+1-th attempt, and
    # is dead-lettered after the last tier. Part of the topology, so every process must agree.
    retry_delays_seconds: tuple[int, ...] = Field(
        default=(5, 60, 600, 3600), min_length=1, max_length=10
    )
    # Each wait is shortened by up to this fraction, at random, so retries do not arrive in step.
    retry_jitter: float = Field(default=0.2, ge=0, lt=1)

    @field_validator("retry_delays_seconds")
    @classmethod
    def _increasing(cls, delays: tuple[int, ...]) -> tuple[int, ...]:
        if any(delay < 1 or delay > 86_400 for delay in delays) or list(delays) != sorted(
            set(delays)
        ):
            raise ValueError("must be distinct whole seconds from 1 to 86400, in increasing order")
        return delays


class IngressSettings(_Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    max_query_bytes: int = Field(default=4096, ge=256)
    max_body_bytes: int = Field(default=65536, ge=0)
    trusted_proxies: tuple[Network, ...] = ()


class WorkerSettings(_Section):
    # Deliveries in flight per worker; more than the database pool only makes them queue for a
    # connection.
    prefetch: int = Field(default=10, ge=1, le=1000)
    # How long one delivery retries a transient failure in place before it moves to the next
    # retry tier; short, so a delivery never holds a slot (or nears the consumer timeout) for long.
    in_place_retry_seconds: float = Field(default=2.0, ge=0, le=600)
    # A worker that has held no consumer for this long exits, so its supervisor restarts it.
    no_consumer_exit_seconds: float = Field(default=120.0, gt=0)
    shutdown_grace_seconds: float = Field(default=20.0, gt=0)


class AccountPolicy(StrEnum):
    CREATE = "create"
    REQUIRE_EXISTING = "require_existing"


_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class ProviderInstance(_Section):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,62}$")
    protocol: str
    route: str = Field(pattern=r"^/[A-Za-z0-9/_.-]*$")
    # One variable name, or several while a secret is being rotated (current and next): a
    # request signed with any of them verifies, and the log names the one that matched.
    secret_env: Annotated[tuple[str, ...], BeforeValidator(_names)] = Field(
        min_length=1, max_length=3
    )
    parameters: dict[str, str] = Field(default_factory=dict)
    default_currency: str | None = Field(default=None, min_length=1, max_length=32)
    allowed_currencies: tuple[str, ...] | None = None
    ip_allowlist: tuple[Network, ...] | None = None
    max_amount: ExactDecimal = Field(gt=0)
    amount_decimal_places: int = Field(default=0, ge=0, le=8)
    account_policy: AccountPolicy

    @field_validator("secret_env")
    @classmethod
    def _env_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        if not all(_ENV_NAME.match(name) for name in names):
            raise ValueError("must name environment variables, not hold the secret itself")
        if len(set(names)) != len(names):
            raise ValueError("names the same environment variable twice")
        return names

    def read_secrets(self, environ: Mapping[str, str]) -> dict[str, str]:
        """Each named variable's secret, in the order configured; every one must be set."""
        secrets = {name: environ.get(name, "") for name in self.secret_env}
        for name, secret in secrets.items():
            if not secret:
                raise ConfigError(
                    f"provider instance {self.name!r}: environment variable {name} is not set "
                    "or empty; export it with the secret the provider gave you"
                )
        return secrets


class Settings(_Section):
    database: DatabaseSettings = DatabaseSettings()
    broker: BrokerSettings = BrokerSettings()
    ingress: IngressSettings = IngressSettings()
    worker: WorkerSettings = WorkerSettings()
    providers: tuple[ProviderInstance, ...] = ()

    @model_validator(mode="after")
    def _unique_names_and_routes(self) -> Settings:
        for attribute in ("name", "route"):
            seen: set[str] = set()
            for provider in self.providers:
                value = getattr(provider, attribute)
                if value in seen:
                    raise ValueError(f"two provider instances share the {attribute} {value!r}")
                seen.add(value)
        return self


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def load_settings(path: Path, environ: dict[str, str] | None = None) -> Settings:
    """Read and validate the file; `PAYOUTS_DATABASE_URL` and `PAYOUTS_BROKER_URL` override it."""
    env = dict(os.environ) if environ is None else environ
    try:
        raw: dict[str, Any] = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such configuration file") from None
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"{path}: not valid TOML: {error}") from None
    for section, key, variable in (
        ("database", "url", DATABASE_URL_ENV),
        ("broker", "url", BROKER_URL_ENV),
    ):
        if env.get(variable):
            raw.setdefault(section, {})[key] = env[variable]
    try:
        return Settings.model_validate(raw)
    except ValidationError as error:
        problems = "\n".join(
            f"  {_location(item['loc'])}: {item['msg']}" for item in error.errors()
        )
        raise ConfigError(f"{path}: invalid configuration\n{problems}") from None
