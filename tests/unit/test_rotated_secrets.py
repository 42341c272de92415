"""One matcher for every rotated secret: which configured variable a request's secret or
signature belongs to."""

from __future__ import annotations

import hashlib

from ingress.rotated_secrets import matching_secret

SECRETS = {"KEY_NEW": "new-Secret", "KEY_OLD": "old-Secret"}


def digest(secret: str) -> str:
    return hashlib.sha256(f"order-1{secret}".encode()).hexdigest()


def test_a_secret_is_named_by_its_variable_whether_current_or_previous() -> None:
    assert matching_secret(SECRETS, "new-Secret") == "KEY_NEW"
    assert matching_secret(SECRETS, "old-Secret") == "KEY_OLD"


def test_a_secret_is_compared_exactly() -> None:
    assert matching_secret(SECRETS, "new-secret") is None
    assert matching_secret(SECRETS, "new-Secret ") is None
    assert matching_secret(SECRETS, "") is None


def test_a_signature_is_named_by_the_secret_that_gives_it() -> None:
    assert matching_secret(SECRETS, digest("old-Secret"), digest) == "KEY_OLD"
    assert matching_secret(SECRETS, digest("new-Secret"), digest) == "KEY_NEW"


def test_a_signature_in_upper_case_hex_matches_too() -> None:
    assert matching_secret(SECRETS, digest("new-Secret").upper(), digest) == "KEY_NEW"


def test_a_signature_no_secret_gives_matches_none() -> None:
    assert matching_secret(SECRETS, digest("other"), digest) is None
    assert matching_secret({}, digest("new-Secret"), digest) is None


def test_non_ascii_input_is_refused_not_an_error() -> None:
    assert matching_secret(SECRETS, "nëw-Secret") is None
    assert matching_secret(SECRETS, "é" * 64, digest) is None
