"""Which address a request really came from, and whether an instance's allowlist admits it.

X-Forwarded-For is believed only as far as it was written by proxies the operator trusts: walking
from the right, the first address that is not a trusted proxy is the client. Anything else would
let a caller forge its way past an allowlist.
"""

from __future__ import annotations

import functools
from ipaddress import IPv4Address, IPv6Address, ip_address
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    from starlette.requests import Request

    from schema.settings import IPNetwork

__all__ = ["IPAddress", "client_address", "is_allowed", "request_address"]

IPAddress = IPv4Address | IPv6Address


def _parse(text: str) -> IPAddress | None:
    try:
        return ip_address(text.strip())
    except ValueError:
        return None


# Per request, and providers call from few addresses. Only the socket's peer goes through the
# cache: forwarded hops are text a caller wrote, and must not fill it.
_parse_peer = functools.lru_cache(maxsize=4096)(_parse)


def _trusted(address: IPAddress, proxies: Sequence[IPNetwork]) -> bool:
    return any(address in network for network in proxies)


def client_address(
    peer: str | None, forwarded_for: str | None, trusted_proxies: Sequence[IPNetwork]
) -> IPAddress | None:
    """The client's address, or None when it cannot be told (then no allowlist admits it)."""
    address = _parse_peer(peer) if peer else None
    if address is None or not forwarded_for or not _trusted(address, trusted_proxies):
        return address
    for hop in reversed(forwarded_for.split(",")):
        hop_address = _parse(hop)
        if hop_address is None:
            return None
        address = hop_address
        if not _trusted(address, trusted_proxies):
            return address
    return address


def is_allowed(address: IPAddress | None, allowlist: Sequence[IPNetwork] | None) -> bool:
    if allowlist is None:
        return True
    return address is not None and any(address in network for network in allowlist)


def request_address(request: Request, trusted_proxies: Sequence[IPNetwork]) -> IPAddress | None:
    """`client_address` of a request, reading every X-Forwarded-For line in order: proxies may
    add a line instead of extending one, and reading only the first would let a caller's forged
    line decide the address."""
    # The scope's pair, not request.client, which builds a named tuple on every read.
    client = request.scope.get("client")
    peer = client[0] if client else None
    forwarded_for = ", ".join(request.headers.getlist("x-forwarded-for"))
    return client_address(peer, forwarded_for, trusted_proxies)
