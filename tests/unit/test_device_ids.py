"""Device identifiers are hashed: stable, short, and the rest of the request kept as sent."""

from __future__ import annotations

import hashlib
from urllib.parse import quote_plus

from ingress.device_ids import mask, masked_query
from ingress.querystring import parse_query


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


def test_a_value_sent_as_raw_utf8_is_masked_as_the_protocol_reads_it() -> None:
    """The raw request keeps the query's bytes as Latin-1 text; the mask stored there must be
    the mask of the value the claim's attributes hold, or the two no longer match."""
    raw = "imei=ïd-π+1&gaid=%C3%A9t%C3%A9".encode()
    read = parse_query(raw)
    masked = masked_query(raw.decode("latin-1"), frozenset({"imei", "gaid"}))
    assert masked == f"imei={quote_plus(mask(read['imei']))}&gaid={quote_plus(mask(read['gaid']))}"


def test_a_query_without_a_named_parameter_is_kept_as_sent() -> None:
    query = "user_id=gaid&amount=5&trans_id=t-1&sign=abc"
    assert masked_query(query, frozenset({"gaid", "mac"})) == query


def test_a_renamed_parameter_sent_as_raw_utf8_is_masked() -> None:
    raw = "user_id=u&gäid=abc".encode()
    masked = masked_query(raw.decode("latin-1"), frozenset({"gäid"}))
    assert masked == f"user_id=u&{'gäid'.encode().decode('latin-1')}={quote_plus(mask('abc'))}"
