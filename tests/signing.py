"""The providers' side of the specs, written independently of the code under test.

Tests sign requests with these, so a mistake in `ingress.protocols` cannot hide behind itself.
"""

from __future__ import annotations

import hashlib
from urllib.parse import urlencode


def offerwall_query(params: dict[str, str], pub_key: str) -> str:
    """Spec 000 as the provider sends it: values ordered by name in ASCII, + pub key, md5."""
    values = "".join(value for _, value in sorted(params.items()))
    sign = hashlib.md5((values + pub_key).encode("utf-8")).hexdigest()
    return urlencode({**params, "sign": sign})


def adjoe_query(params: dict[str, str], s2s_token: str) -> str:
    """Spec 003 as adjoe sends it: sid over six fields in the spec's order, then the token."""
    order = ("trans_uuid", "user_uuid", "currency", "coin_amount", "device_id", "sdk_app_id")
    concatenated = "".join(params.get(name, "") for name in order) + s2s_token
    sid = hashlib.sha1(concatenated.encode("utf-8")).hexdigest()
    return urlencode({**params, "sid": sid})
