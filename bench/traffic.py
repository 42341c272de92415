"""Signed provider traffic for every protocol, written once before a run so the load generator
only replays it: unique transactions over many users with a hot subset, and a share of exact
re-sends, as providers retry."""

from __future__ import annotations

import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from schema.events import PayoutEvent, RawRequest
from tests.signing import adjoe_query, aigame_payout_body, offerwall_query, wallet_billing_body

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = [
    "ACCEPTED_BODIES",
    "PROTOCOLS",
    "SECRETS",
    "Request",
    "pick_user",
    "sample_event",
    "write_requests",
]

USERS = 10_000
HOT_USERS = 10
HOT_SHARE = 0.2  # of all payouts go to the hot users
RESEND_SHARE = 0.05

SECRETS = {
    "BENCH_OFFERWALL_KEY": "bench-offerwall-key",
    "BENCH_ADJOE_TOKEN": "bench-adjoe-token",
    "BENCH_AIGAME_KEY": "bench-aigame-key",
    "BENCH_BILLING_SECRET": "bench-billing-secret",
}


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str = ""

    def line(self) -> str:
        """One line of the file `replay.lua` reads: method, path and body, tab-separated."""
        return f"{self.method}\t{self.path}\t{self.body}"


def pick_user(rng: random.Random) -> str:
    if rng.random() < HOT_SHARE:
        return f"hot-{rng.randrange(HOT_USERS)}"
    return f"user-{rng.randrange(USERS)}"


def offerwall(rng: random.Random) -> Request:
    params = {
        "user_id": pick_user(rng),
        "amount": str(rng.randint(1, 500)),
        "trans_id": uuid.uuid4().hex,
        "send_time": str(int(time.time())),
    }
    return Request(
        "GET", f"/callbacks/offerwall?{offerwall_query(params, SECRETS['BENCH_OFFERWALL_KEY'])}"
    )


def adjoe(rng: random.Random) -> Request:
    params = {
        "user_uuid": pick_user(rng),
        "coin_amount": str(rng.randint(1, 500)),
        "currency": "coins",
        "trans_uuid": str(uuid.uuid4()),
    }
    return Request("GET", f"/callbacks/adjoe?{adjoe_query(params, SECRETS['BENCH_ADJOE_TOKEN'])}")


def aigame(rng: random.Random) -> Request:
    now = int(time.time() * 1000)
    fields: dict[str, object] = {
        "agent_id": "agent001",
        "user_id": pick_user(rng),
        "game_id": "101",
        "inst_id": "1",
        "shoe_id": 1,
        "round_id": rng.randint(1, 10**6),
        "bet_txn_id": uuid.uuid4().hex[:24],
        "win_amount": str(Decimal(rng.randint(0, 500_000)) / 100),
        "pay_out_time": now,
        "currency": "VND2",
        "timestamp": now,
    }
    body = aigame_payout_body(fields, SECRETS["BENCH_AIGAME_KEY"])
    return Request("POST", "/aigame/v1/wallet/payout", json.dumps(body, separators=(",", ":")))


def wallet_billing(rng: random.Random) -> Request:
    fields: dict[str, object] = {
        "txnid": f"W-{uuid.uuid4().hex[:16]}",
        "userid": pick_user(rng),
        "gameid": "g1",
        "serverid": "s1",
        "items": rng.choice(["gem_pack_100", "sword", "shield"]),
        "amount": rng.choice([10000, 20000, 50000]),
        "apptxnid": f"APP-{uuid.uuid4().hex[:16]}",
        "addinfo": "",
    }
    body = wallet_billing_body(fields, SECRETS["BENCH_BILLING_SECRET"])
    return Request("POST", "/callbacks/billing", json.dumps(body, separators=(",", ":")))


PROTOCOLS: dict[str, Callable[[random.Random], Request]] = {
    "offerwall_md5 (000)": offerwall,
    "adjoe (003)": adjoe,
    "aigame_payout (001)": aigame,
    "wallet_billing (004)": wallet_billing,
}
# What an accepting answer's body holds (texts separated by "|"), for the protocols that answer
# a refusal with HTTP 200 and a code in the body (the query protocols refuse with an HTTP error
# status). Spec 004 answers a re-send of a credited payout with its own code, 2.
ACCEPTED_BODIES = {
    "aigame_payout (001)": '"code":200,',
    "wallet_billing (004)": '"resultCode":1,|"resultCode":2,',
}


def write_requests(
    path: Path, make: Callable[[random.Random], Request], count: int, seed: int
) -> None:
    """`count` requests, about RESEND_SHARE of them exact re-sends of an earlier one."""
    rng = random.Random(seed)
    requests: list[Request] = []
    for _ in range(count):
        if requests and rng.random() < RESEND_SHARE:
            requests.append(rng.choice(requests))
        else:
            requests.append(make(rng))
    path.write_text("\n".join(request.line() for request in requests) + "\n")


def sample_event(instance: str, user: str, amount: Decimal) -> PayoutEvent:
    """A spec 000 payout event the size of the ingress's: what the broker baselines publish and
    the drains fill the work queue with."""
    return PayoutEvent(
        event_id=uuid.uuid4(),
        provider_instance=instance,
        protocol="offerwall_md5",
        transaction_id=uuid.uuid4().hex,
        user_id=user,
        amount=amount,
        currency="COIN",
        signature=uuid.uuid4().hex,
        create_account=True,
        answer_code="200",
        received_at=datetime.now(UTC),
        raw_request=RawRequest(
            method="GET", path="/callbacks/offerwall", query_string="bench", client_ip="127.0.0.1"
        ),
    )
