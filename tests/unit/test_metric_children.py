"""Kept metric children count into the series `labels()` names."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter

from schema.metrics import children


def test_a_kept_child_counts_into_its_labelled_series() -> None:
    registry = CollectorRegistry()
    requests = Counter("requests", "Requests.", ["instance", "verdict"], registry=registry)
    counted = children(requests, "offerwall")
    counted("accepted").inc()
    counted("accepted").inc()
    counted("bad_signature").inc()
    assert counted("accepted") is requests.labels("offerwall", "accepted")
    value = registry.get_sample_value
    assert value("requests_total", {"instance": "offerwall", "verdict": "accepted"}) == 2
    assert value("requests_total", {"instance": "offerwall", "verdict": "bad_signature"}) == 1
