"""Signed provider traffic for every protocol, written once before a run so the load generator
only replays it: unique transactions over many users with a hot subset, and a share of exact
re-sends, as providers retry; and a partner's signed look-ups of payouts (spec 002)."""

from __future__ import annotations

import itertools
import json
import random
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from schema.events import PayoutEvent, RawRequest
from tests.signing import (
    adjoe_query,
    aigame_payout_body,
    offerwall_query,
    proof_signature,
    wallet_billing_body,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

__all__ = [
    "ACCEPTED_BODIES",
    "PARTNER",
    "PROOF_ACCEPTED_BODY",
    "PROOF_API",
    "PROTOCOLS",
    "SECRETS",
    "Request",
    "each_once",
    "pick_user",
    "polled",
    "sample_event",
    "write_requests",
]

USERS = 10_000
HOT_USERS = 10
HOT_SHARE = 0.2  # of all payouts go to the hot users
RESEND_SHARE = 0.05
# A re-send repeats one of the requests made last, as a provider retries soon after.
RESEND_WINDOW = 10_000

SECRETS = {
    "BENCH_OFFERWALL_KEY": "bench-offerwall-key",
    "BENCH_ADJOE_TOKEN": "bench-adjoe-token",
    "BENCH_AIGAME_KEY": "bench-aigame-key",
    "BENCH_BILLING_SECRET": "bench-billing-secret",
    "BENCH_PROOF_API_KEY": "bench-proof-api-key",
    "BENCH_PROOF_SECRET": "bench-proof-secret",
}
# The spec 002 partner of the bench's configuration, and the route it asks.
PARTNER = "bench-partner"
PROOF_API = "/payout/api/proof/get_data.php"


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    body: str = ""
    headers: tuple[tuple[str, str], ...] = ()

    def line(self) -> str:
        """One line of the file `replay.lua` reads: method, path, body and each header as
        `name: value`, tab-separated (JSON escapes any tab in a body)."""
        headers = "".join(f"\t{name}: {value}" for name, value in self.headers)
        return f"{self.method}\t{self.path}\t{self.body}{headers}"


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


def proof_lookup(order_id: str) -> Request:
    """Spec 002: the bench partner asks for one payout's status and proof images."""
    body = {
        "pid": PARTNER,
        "order_id": order_id,
        "signature": proof_signature(PARTNER, SECRETS["BENCH_PROOF_SECRET"], order_id),
    }
    return Request(
        "POST",
        PROOF_API,
        json.dumps(body, separators=(",", ":")),
        (("X-API-KEY", SECRETS["BENCH_PROOF_API_KEY"]),),
    )


def each_once(order_ids: Sequence[str]) -> Callable[[random.Random], Request]:
    """Look-ups of `order_ids` in turn, as a partner that keeps the images it fetched (the
    spec's advice) asks for each payout once: every answer draws its receipt."""
    turn = itertools.cycle(order_ids)
    return lambda _: proof_lookup(next(turn))


def polled(order_ids: Sequence[str]) -> Callable[[random.Random], Request]:
    """Look-ups of payouts picked at random from `order_ids`, as a partner polling the same
    payouts again and again."""
    return lambda rng: proof_lookup(rng.choice(order_ids))


# What an accepting answer's body holds (texts separated by "|"), for the protocols that answer
# a refusal with HTTP 200 and a code in the body (the query protocols refuse with an HTTP error
# status). Spec 004 answers a re-send of a credited payout with its own code, 2.
ACCEPTED_BODIES = {
    "aigame_payout (001)": '"code":200,',
    "wallet_billing (004)": '"resultCode":1,|"resultCode":2,',
}
# Spec 002 answers "Transaction not found" and "Invalid user" with HTTP 200 too.
PROOF_ACCEPTED_BODY = '"status":"success"'


def write_requests(
    path: Path, make: Callable[[random.Random], Request], count: int, seed: int
) -> None:
    """`count` requests, about RESEND_SHARE of them exact re-sends of one of the last
    RESEND_WINDOW, written as they are made: a long soak's file need not fit in memory."""
    rng = random.Random(seed)
    recent: list[str] = []
    with path.open("w") as out:
        for made in range(count):
            if recent and rng.random() < RESEND_SHARE:
                line = rng.choice(recent)
            else:
                line = make(rng).line()
                if len(recent) < RESEND_WINDOW:
                    recent.append(line)
                else:
                    recent[made % RESEND_WINDOW] = line
            out.write(line + "\n")


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
