"""Device identifiers are hashed: stable, short, and the rest of the request kept as sent."""

from __future__ import annotations

import hashlib

from ingress.device_ids import mask, masked_query


def test_a_mask_is_a_stable_truncated_sha256() -> None:
    imei = "490154203237518"
    assert mask(imei) == "sha256:" + hashlib.sha256(imei.encode()).hexdigest()[:16]
    assert mask(imei) == mask(imei)
    assert mask(imei) != mask("490154203237519")
    assert mask("") == ""


def test_only_the_named_parameters_are_masked_and_the_rest_kept_byte_for_byte() -> None:
    query = "user_id=a%20b&mac=00%3A1A%3A2B&imei=490154203237518&amount=1.50&x=%zz&flag"
    masked = masked_query(query, frozenset({"mac", "imei"}))
    pairs = masked.split("&")
    assert pairs[0] == "user_id=a%20b"
    assert pairs[1] == "mac=" + mask("00:1A:2B").replace(":", "%3A")
    assert pairs[2] == "imei=" + mask("490154203237518").replace(":", "%3A")
    assert pairs[3:] == ["amount=1.50", "x=%zz", "flag"]
    assert "490154203237518" not in masked
    assert "00%3A1A%3A2B" not in masked


def test_a_percent_encoded_name_is_recognised() -> None:
    masked = masked_query("ga%69d=abc&gaid=", frozenset({"gaid"}))
    assert masked == f"ga%69d={mask('abc').replace(':', '%3A')}&gaid="
