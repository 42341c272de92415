"""Device identifiers (IMEI, MAC, advertising ids) hashed before they are stored or logged.

A payout needs none of them to be credited; they are kept for fraud review, where equality is what
matters, so a truncated SHA-256 keeps them comparable without keeping them. A hash of a value with
few possibilities (an IMEI) can be reversed by trying them all: it is a pseudonym, not anonymity,
and the stored rows stay personal data (docs/security.md). `store_device_ids = true` keeps them as
sent, for operators whose audit needs the raw request.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING
from urllib.parse import quote_plus

from ingress.querystring import decode_component

if TYPE_CHECKING:
    from collections.abc import Mapping

    from ingress.protocols import ProviderProtocol

__all__ = ["mask", "masked_fields", "masked_query"]

PREFIX = "sha256:"


def mask(value: str) -> str:
    """A stable, short stand-in for `value`; an empty value stays empty."""
    if not value:
        return value
    return PREFIX + hashlib.sha256(value.encode()).hexdigest()[:16]


def masked_query(query: str, names: frozenset[str]) -> str:
    """`query` (its bytes as sent, decoded as Latin-1) with the values of the parameters in
    `names` masked; everything else, including the order and the encoding of other parameters,
    is kept as sent."""
    # Where each component reads as written, a parameter of `names` would show as text: most
    # callbacks carry none, and are kept without splitting them.
    readable = query.isascii() and "%" not in query and "+" not in query
    if readable and not any(name in query for name in names):
        return query
    pairs = []
    for pair in query.split("&"):
        name, separator, value = pair.partition("=")
        if separator and _text(name) in names and value:
            pair = f"{name}={quote_plus(mask(_text(value)))}"
        pairs.append(pair)
    return "&".join(pairs)


def masked_fields(
    protocol: ProviderProtocol, attributes: Mapping[str, str], query: str
) -> tuple[dict[str, str], str]:
    """A callback's attributes and query string with the device ids `protocol` names masked:
    what the ingress stores unless the instance keeps them, and what the console shows."""
    hashed = protocol.device_parameters
    return (
        {name: mask(value) if name in hashed else value for name, value in attributes.items()},
        masked_query(query, protocol.sent_device_parameters),
    )


def _text(component: str) -> str:
    """A query component as the protocol read it (the query passed `parse_query` already), so
    that its mask here is the mask of the same value in the event's attributes."""
    return decode_component(component.encode("latin-1"))
