"""Characters shifted across the boundary of two adjacent signed fields (docs/security.md).

Specs 000, 003 and 004 sign a plain concatenation of values, so any such shift keeps the
signature. For every adjacent pair of every protocol, a shifted copy of a valid callback must
fail a format, change nothing that is credited, or be a pair that start-up warns about; an
instance whose start-up warns of nothing refuses every shift that would change a payout. Spec
001 separates its pairs with `&`, spec 002 puts the secret between its two fields.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ingress.bodies import parse_json_object
from ingress.protocols.adjoe import SIGNED_IN_ORDER as ADJOE_ORDER
from ingress.protocols.adjoe import Adjoe
from ingress.protocols.aigame_payout import AigamePayout
from ingress.protocols.offerwall_md5 import OfferwallMd5
from ingress.protocols.wallet_billing import SIGNED_IN_ORDER as WALLET_ORDER
from ingress.protocols.wallet_billing import WalletBilling
from ingress.querystring import parse_query
from ingress.verdicts import Rejection, Verdict
from tests.factories import provider
from tests.signing import (
    adjoe_query,
    aigame_payout_body,
    offerwall_query,
    proof_signature,
    wallet_billing_body,
)
from tests.unit.test_aigame_payout import SPEC_EXAMPLE

if TYPE_CHECKING:
    from collections.abc import Callable

    from hypothesis.strategies import DrawFn

    from ingress.protocols.base import Claim, ProviderProtocol

SECRET = "shift-secret"
SHIFTS = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
_WARNED_PAIR = re.compile(r"^'([^']+)' and '([^']+)' can be next to each other")


def regex(pattern: str) -> st.SearchStrategy[str]:
    return st.from_regex(pattern, fullmatch=True)


FREE = regex(r"[A-Za-z0-9-]{1,12}")
AMOUNTS = st.integers(1, 99_999).map(str)


@dataclass(frozen=True)
class Case:
    """One protocol instance and how to build its callbacks."""

    name: str
    protocol: ProviderProtocol
    # Each field's values; an optional field may be left out.
    values: dict[str, st.SearchStrategy[str]]
    optional: frozenset[str]
    # The names of the present fields in signing order.
    order: Callable[[dict[str, str]], list[str]]
    # The claim `protocol` makes of a callback with these fields, signed as the provider would.
    claim: Callable[[ProviderProtocol, dict[str, str]], Claim]
    # Terms the worker refuses a change of on its own (a pending order's), none by default.
    refused_downstream: frozenset[str] = frozenset()

    def warned_pairs(self) -> set[tuple[str, str]]:
        found = set()
        for warning in self.protocol.startup_warnings():
            match = _WARNED_PAIR.match(warning)
            assert match, warning
            found.add((match[1], match[2]))
        return found


def offerwall_claim(protocol: ProviderProtocol, fields: dict[str, str]) -> Claim:
    assert isinstance(protocol, OfferwallMd5)
    return protocol.verify(parse_query(offerwall_query(fields, SECRET).encode()))


def adjoe_claim(protocol: ProviderProtocol, fields: dict[str, str]) -> Claim:
    assert isinstance(protocol, Adjoe)
    return protocol.verify(parse_query(adjoe_query(fields, SECRET).encode()))


def wallet_claim(protocol: ProviderProtocol, fields: dict[str, str]) -> Claim:
    assert isinstance(protocol, WalletBilling)
    body = json.dumps(wallet_billing_body(dict(fields), SECRET)).encode()
    return protocol.verify(parse_json_object(body))


def instance_of(cls: type[ProviderProtocol], protocol: str, **settings: Any) -> ProviderProtocol:
    return cls(provider(protocol, **settings), {"TEST_SECRET": SECRET})


DEVICE_IDS = {
    "gaid": regex(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"),
    "mac": regex(r"[0-9A-F]{2}(:[0-9A-F]{2}){5}"),
    "imei": regex(r"[0-9]{15}"),
    "android_id": regex(r"[0-9a-f]{16}"),
}
OFFERWALL = {
    "user_id": FREE,
    "amount": AMOUNTS,
    "trans_id": FREE,
    "send_time": st.integers(1_000_000_000, 9_999_999_999).map(str),
    **DEVICE_IDS,
}


def sorted_names(fields: dict[str, str]) -> list[str]:
    return sorted(fields, key=str.encode)


CASES = [
    Case(
        "000 closed by formats",
        instance_of(
            OfferwallMd5,
            "offerwall_md5",
            extra_parameters={
                **{name: name for name in DEVICE_IDS},
                "click_id": {"regex": "[0-9a-f]{32}"},
            },
            field_formats={"user_id": {"regex": "[a-z]{2}[0-9]{6}"}},
        ),
        {**OFFERWALL, "user_id": regex(r"[a-z]{2}[0-9]{6}"), "click_id": regex(r"[0-9a-f]{32}")},
        frozenset({*DEVICE_IDS, "click_id"}),
        sorted_names,
        offerwall_claim,
    ),
    Case(
        "000 with a free extra parameter",
        instance_of(
            OfferwallMd5,
            "offerwall_md5",
            extra_parameters={**{name: name for name in DEVICE_IDS}, "aff_sub": "token"},
        ),
        {**OFFERWALL, "aff_sub": regex(r"[A-Za-z0-9._~-]{1,20}")},
        frozenset({*DEVICE_IDS, "aff_sub"}),
        sorted_names,
        offerwall_claim,
    ),
    Case(
        "000 with a fixed-length extra beside trans_id",
        instance_of(
            OfferwallMd5,
            "offerwall_md5",
            extra_parameters={"tz": {"regex": "[0-9]{4}"}},
            field_formats={"user_id": {"regex": "[a-z]{2}[0-9]{6}"}},
        ),
        {
            **{name: OFFERWALL[name] for name in ("amount", "trans_id", "send_time")},
            "user_id": regex(r"[a-z]{2}[0-9]{6}"),
            "tz": regex(r"[0-9]{4}"),
        },
        frozenset({"tz"}),
        sorted_names,
        offerwall_claim,
    ),
    Case(
        "003 closed by formats and allowed currencies",
        instance_of(
            Adjoe,
            "adjoe",
            allowed_currencies=["coins", "gems"],
            field_formats={
                "user_uuid": "uuid",
                "device_id": "android_id",
                "sdk_app_id": {"regex": "[a-z]{3}[.][a-z]{4}"},
            },
        ),
        {
            "trans_uuid": st.uuids(version=4).map(str),
            "user_uuid": st.uuids().map(str),
            "currency": st.sampled_from(["coins", "gems"]),
            "coin_amount": AMOUNTS,
            "device_id": DEVICE_IDS["android_id"],
            "sdk_app_id": regex(r"[a-z]{3}[.][a-z]{4}"),
        },
        frozenset({"device_id", "sdk_app_id"}),
        lambda fields: [name for name in ADJOE_ORDER if name in fields],
        adjoe_claim,
    ),
    Case(
        "003 as the spec leaves it",
        instance_of(Adjoe, "adjoe"),
        {
            "trans_uuid": st.uuids(version=4).map(str),
            "user_uuid": FREE,
            "currency": regex(r"[a-z]{1,6}"),
            "coin_amount": AMOUNTS,
            "device_id": FREE,
            "sdk_app_id": FREE,
        },
        frozenset({"device_id", "sdk_app_id"}),
        lambda fields: [name for name in ADJOE_ORDER if name in fields],
        adjoe_claim,
    ),
]
WALLET = {
    "txnid": FREE,
    "userid": FREE,
    "gameid": FREE,
    "serverid": FREE,
    "items": FREE,
    "amount": AMOUNTS,
    "apptxnid": FREE,
    "addinfo": FREE,
}
WALLET_FORMATS = {
    "txnid": "W-[0-9]{6}",
    "userid": "[a-z]{2}[0-9]{6}",
    "gameid": "g[0-9]",
    "serverid": "s[0-9]{2}",
    "items": "[a-z]{3}_[0-9]{3}",
    "apptxnid": "A-[0-9]{6}",
    "addinfo": "[a-z]{5}",
}
CASES += [
    Case(
        "004 closed by formats",
        instance_of(
            WalletBilling,
            "wallet_billing",
            default_currency="VND",
            field_formats={name: {"regex": pattern} for name, pattern in WALLET_FORMATS.items()},
        ),
        {**WALLET, **{name: regex(pattern) for name, pattern in WALLET_FORMATS.items()}},
        frozenset({"gameid", "serverid", "apptxnid", "addinfo"}),
        lambda fields: [name for name in WALLET_ORDER if name in fields],
        wallet_claim,
    ),
    Case(
        "004 with verify_orders",
        instance_of(WalletBilling, "wallet_billing", default_currency="VND", verify_orders=True),
        WALLET,
        frozenset({"gameid", "serverid", "addinfo"}),
        lambda fields: [name for name in WALLET_ORDER if name in fields],
        wallet_claim,
        # The pending order holds the user, the item and the price, and apptxnid names it.
        refused_downstream=frozenset({"user_id", "items", "price", "order_id"}),
    ),
    Case(
        "004 as the spec leaves it",
        instance_of(WalletBilling, "wallet_billing", default_currency="VND"),
        WALLET,
        frozenset({"gameid", "serverid", "apptxnid", "addinfo"}),
        lambda fields: [name for name in WALLET_ORDER if name in fields],
        wallet_claim,
    ),
]
CLOSED = [case for case in CASES if "closed" in case.name or "verify_orders" in case.name]
# What a payout is: a copy that changes none of these credits nothing else.
CREDITED_TERMS = ("transaction_id", "user_id", "amount", "currency", "items", "price", "order_id")


@st.composite
def callbacks(draw: DrawFn, case: Case) -> dict[str, str]:
    fields = {}
    for name, values in case.values.items():
        if name not in case.optional or draw(st.booleans()):
            fields[name] = draw(values)
    return fields


@st.composite
def shifted(draw: DrawFn, case: Case) -> tuple[dict[str, str], dict[str, str], tuple[str, str]]:
    """A valid callback, and a copy with one boundary between adjacent values moved."""
    original = draw(callbacks(case))
    order = case.order(original)
    boundary = draw(st.integers(0, len(order) - 2))
    first, second = order[boundary], order[boundary + 1]
    joined = original[first] + original[second]
    split = draw(st.integers(0, len(joined)).filter(lambda at: at != len(original[first])))
    copy = {**original, first: joined[:split], second: joined[split:]}
    return original, copy, (first, second)


def attempt(case: Case, fields: dict[str, str]) -> Claim | Rejection:
    try:
        return case.claim(case.protocol, fields)
    except Rejection as rejection:
        return rejection


def attempt_claim(case: Case, fields: dict[str, str]) -> Claim:
    outcome = attempt(case, fields)
    assert not isinstance(outcome, Rejection), (fields, outcome)
    return outcome


def changed_terms(original: Claim, copy: Claim) -> set[str]:
    return {term for term in CREDITED_TERMS if getattr(original, term) != getattr(copy, term)}


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.name)
@SHIFTS
@given(data=st.data())
def test_a_shift_that_keeps_the_signature_fails_or_is_warned_of(
    case: Case, data: st.DataObject
) -> None:
    original, copy, pair = data.draw(shifted(case))
    claim = attempt(case, original)
    assert not isinstance(claim, Rejection), (original, claim)
    outcome = attempt(case, copy)
    if isinstance(outcome, Rejection):
        # The same signed text: never refused as a forgery, always for what it says.
        assert outcome.verdict in (Verdict.MALFORMED, Verdict.UNKNOWN_CURRENCY), outcome
        return
    changed = changed_terms(claim, outcome)
    assert outcome.signature == claim.signature
    assert not changed or changed & case.refused_downstream or pair in case.warned_pairs(), (
        f"{case.name}: shift across {pair} changes {sorted(changed)} unwarned: {original} -> {copy}"
    )


@pytest.mark.parametrize("case", CLOSED, ids=lambda case: case.name)
def test_an_instance_that_closes_every_pair_warns_of_none(case: Case) -> None:
    assert case.protocol.startup_warnings() == []


@pytest.mark.parametrize(
    ("case", "pairs"),
    [
        (CASES[1], {("aff_sub", "amount"), ("trans_id", "user_id")}),
        (CASES[2], {("trans_id", "tz")}),
        (CASES[4], {("user_uuid", "currency"), ("currency", "coin_amount")}),
        (CASES[7], {("txnid", "userid"), ("items", "amount")}),
    ],
    ids=lambda value: value.name if isinstance(value, Case) else "",
)
def test_the_warned_pairs_are_really_open(case: Case, pairs: set[tuple[str, str]]) -> None:
    """No false alarm in these: one shift across each that passes and changes a payout."""
    assert pairs <= case.warned_pairs()
    base = {
        "000": {"user_id": "u9", "amount": "1", "trans_id": "tx-123", "send_time": "1694588072"},
        "003": {
            "trans_uuid": str(uuid.uuid4()),
            "user_uuid": "user-42",
            "currency": "coins",
            "coin_amount": "150",
        },
        "004": {"txnid": "W-1001", "userid": "player-7", "items": "gem_100", "amount": "2500"},
    }[case.name[:3]]
    extras = {"aff_sub": "x2", "tz": "1234"}
    for first, second in pairs:
        fields = {**base, **{name: extras[name] for name in (first, second) if name in extras}}
        if "tz" in fields:
            fields["user_id"] = "ab123456"
            # Folded whole: the copy leaves tz empty, its digits moved onto trans_id.
            moved = {**fields, first: fields[first] + fields[second], second: ""}
            assert changed_terms(attempt_claim(case, fields), attempt_claim(case, moved))
            continue
        order = case.order(fields)
        assert order.index(second) == order.index(first) + 1
        # One character from the end of the first onto the start of the second, or back.
        moved = {**fields, first: fields[first][:-1], second: fields[first][-1] + fields[second]}
        if isinstance(attempt(case, moved), Rejection):
            moved = {**fields, first: fields[first] + fields[second][0], second: fields[second][1:]}
        claim, copy = attempt(case, fields), attempt(case, moved)
        assert not isinstance(claim, Rejection), claim
        assert not isinstance(copy, Rejection), (first, second, copy)
        assert changed_terms(claim, copy)


@SHIFTS
@given(
    # Names of no spec field, sorting among them.
    extra=st.dictionaries(regex(r"[a-z]{1,3}_x"), regex(r"[a-z0-9]{1,6}"), max_size=2),
    boundary=st.integers(0, 20),
)
def test_spec_001_a_field_folded_into_its_neighbour_is_refused(
    extra: dict[str, str], boundary: int
) -> None:
    """`a=1&b=2` read as `a="1&b=2"`: the same signed text, one field fewer."""
    fields = {**SPEC_EXAMPLE, "timestamp": int(time.time() * 1000), **extra}
    protocol = AigamePayout(provider("aigame_payout"), {"TEST_SECRET": SECRET})
    original = aigame_payout_body(fields, SECRET)
    assert protocol.verify(parse_json_object(json.dumps(original).encode()))
    names = sorted(fields, key=str.encode)
    first, second = names[boundary % (len(names) - 1)], names[boundary % (len(names) - 1) + 1]
    folded = {name: value for name, value in fields.items() if name != second}
    folded[first] = f"{json_text(fields[first])}&{second}={json_text(fields[second])}"
    copy = {**folded, "sign": original["sign"]}
    assert aigame_payout_body(folded, SECRET)["sign"] == original["sign"]
    with pytest.raises(Rejection) as raised:
        protocol.verify(parse_json_object(json.dumps(copy).encode()))
    assert raised.value.verdict is Verdict.MALFORMED


def json_text(value: object) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def test_spec_002_has_no_adjacent_fields() -> None:
    """SHA256(pid + secret + order_id): the secret stands between the two fields, so moving
    characters between them changes the signed text."""
    assert proof_signature("p1", SECRET, "23") != proof_signature("p12", SECRET, "3")
