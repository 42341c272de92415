"""The one builder from a verified claim to the payout event the ingress publishes."""

from __future__ import annotations

import dataclasses
import uuid
from decimal import Decimal

from ingress.claimed_events import claimed_event, new_event_id
from ingress.device_ids import mask
from ingress.protocols.base import Claim
from ingress.protocols.offerwall_md5 import OfferwallMd5
from ingress.protocols.wallet_billing import WalletBilling
from schema.events import RawRequest
from schema.settings import AccountPolicy
from tests.factories import provider

SECRETS = {"TEST_SECRET": "key"}
CLAIM = Claim(
    transaction_id="t-1",
    user_id="u-1",
    amount=Decimal(5),
    currency="COIN",
    signature="abc",
    secret_name="TEST_SECRET",
    attributes={"gaid": "device-1", "send_time": "1"},
)
RAW = RawRequest(
    method="GET", path="/cb", query_string="gaid=device-1&send_time=1", client_ip="::1"
)


def test_the_event_carries_the_claim_and_the_instances_settings() -> None:
    protocol = OfferwallMd5(
        provider("offerwall_md5", account_policy=AccountPolicy.REQUIRE_EXISTING), SECRETS
    )
    event_id = uuid.uuid4()
    event = claimed_event(protocol, CLAIM, RAW, event_id)
    assert event.event_id == event_id
    assert (event.provider_instance, event.protocol) == ("test-offerwall-md5", "offerwall_md5")
    assert (event.transaction_id, event.user_id, event.amount) == ("t-1", "u-1", Decimal(5))
    assert event.signature == "abc"
    assert not event.create_account
    assert not event.verify_order
    assert not event.report_outcome
    assert event.answer_code == "200"


def test_device_ids_are_hashed_in_the_attributes_and_the_query() -> None:
    protocol = OfferwallMd5(provider("offerwall_md5"), SECRETS)
    event = claimed_event(protocol, CLAIM, RAW, uuid.uuid4())
    assert event.attributes == {"gaid": mask("device-1"), "send_time": "1"}
    assert "device-1" not in event.raw_request.query_string
    assert event.raw_request.query_string.endswith("&send_time=1")


def test_device_ids_are_kept_where_the_instance_stores_them() -> None:
    protocol = OfferwallMd5(provider("offerwall_md5", store_device_ids=True), SECRETS)
    event = claimed_event(protocol, CLAIM, RAW, uuid.uuid4())
    assert event.attributes == CLAIM.attributes
    assert event.raw_request == RAW


def test_a_protocol_that_waits_asks_for_the_outcome_with_its_own_answer_code() -> None:
    instance = provider("wallet_billing", default_currency="VND", verify_orders=True)
    claim = dataclasses.replace(CLAIM, order_id="o-1")
    event = claimed_event(WalletBilling(instance, SECRETS), claim, RAW, uuid.uuid4())
    assert event.report_outcome
    assert (event.verify_order, event.order_id) == (True, "o-1")
    assert event.create_account
    assert event.answer_code == "1"


def test_a_new_event_id_is_a_random_uuid4_in_its_canonical_text() -> None:
    made = [new_event_id() for _ in range(2000)]
    parsed = [uuid.UUID(text) for text in made]
    assert all(one.version == 4 and one.variant == uuid.RFC_4122 for one in parsed)
    assert [str(one) for one in parsed] == made
    assert len(set(made)) == len(made)
    # Every value of the bits around the fixed ones is drawn.
    assert {text[19] for text in made} == set("89ab")
    assert {text[14] for text in made} == {"4"}
    assert {text[15] for text in made} == set("0123456789abcdef")


def test_an_event_built_with_a_new_id_carries_it() -> None:
    protocol = OfferwallMd5(provider("offerwall_md5"), SECRETS)
    event_id = new_event_id()
    assert str(claimed_event(protocol, CLAIM, RAW, event_id).event_id) == event_id
