"""The providers' side of the specs, written independently of the code under test.

Tests sign requests with these, so a mistake in `ingress.protocols` cannot hide behind itself.
"""

from __future__ import annotations

import hashlib
import json
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


def aigame_payout_body(fields: dict[str, object], key: str) -> dict[str, object]:
    """Spec 001 as the platform signs it: md5(KEY & k=v&... over non-empty fields by name).

    Numbers are signed as their JSON text, so pass them as they will be serialized.
    """
    pairs = "&".join(
        f"{name}={json.dumps(value) if not isinstance(value, str) else value}"
        for name, value in sorted(fields.items())
        if value not in ("", None)
    )
    sign = hashlib.md5(f"{key}&{pairs}".encode()).hexdigest()
    return {**fields, "sign": sign}


def wallet_billing_body(fields: dict[str, object], secret_key: str) -> dict[str, object]:
    """Spec 004 as the wallet signs it: md5 of nine values in the spec's order, then the key."""
    order = ("txnid", "userid", "gameid", "serverid", "items", "amount", "apptxnid", "addinfo")

    def text(value: object) -> str:
        if value is None:
            return ""
        return value if isinstance(value, str) else json.dumps(value)

    concatenated = "".join(text(fields.get(name)) for name in order) + secret_key
    return {**fields, "sig": hashlib.md5(concatenated.encode()).hexdigest()}


def proof_signature(pid: str, secret: str, order_id: str) -> str:
    """Spec 002: SHA256(pid + secret + order_id), hex."""
    return hashlib.sha256(f"{pid}{secret}{order_id}".encode()).hexdigest()
