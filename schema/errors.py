"""The errors every part of payouts raises across a module boundary, under one base.

Two families matter to callers: `ServiceUnavailable` (Postgres or RabbitMQ did not answer: retry,
and tell the provider to retry) and the rest (the input or the configuration is wrong: retrying
changes nothing).
"""

from __future__ import annotations

__all__ = [
    "BrokerUnavailable",
    "ConfigError",
    "ContractError",
    "DatabaseUnavailable",
    "PayoutsError",
    "ServiceUnavailable",
]


class PayoutsError(Exception):
    """Raised by payouts on purpose; anything else escaping a module is a bug."""


class ConfigError(PayoutsError):
    """The configuration cannot be used; the message names the file and the key."""


class ContractError(PayoutsError, ValueError):
    """A message body that is not a valid payout event of a version this code knows."""


class ServiceUnavailable(PayoutsError):
    """A service we depend on did not answer in time; the message says which and where."""


class BrokerUnavailable(ServiceUnavailable):
    """RabbitMQ did not answer or did not confirm; whoever sent the message must retry."""


class DatabaseUnavailable(ServiceUnavailable):
    """Postgres did not answer in time; the caller answers "unavailable, retry"."""
