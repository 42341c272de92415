"""Provider simulators and the checker that reconciles what they were told with the books.

The simulator behaves like the query protocols' providers: it signs each payout, re-sends until
it is answered 200 (with a pause, as adjoe and offerwalls do), sometimes re-sends an accepted one,
and mixes in tampered copies that must never be credited. It logs every answer.
`WalletPlatform` is spec 001's game platform, whose requests wait for their outcome.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
import time
import uuid
from collections import Counter
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from tests.e2e.stack import ADJOE_TOKEN, AIGAME_KEY, OFFERWALL_KEY
from tests.signing import adjoe_query, aigame_payout_body, offerwall_query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from tests.e2e.stack import Stack

RETRY_PAUSE_SECONDS = 0.3
MAX_SENDS = 200
# Spec 001 payouts a second, each request held open by the ingress until its outcome is known.
WALLET_PAYOUTS_PER_SECOND = 5.0


@dataclass
class Payout:
    instance: str
    transaction_id: str
    user_id: str
    currency: str
    amount: int
    path: str
    tampered_path: str
    answers: list[int | str] = field(default_factory=list)

    @property
    def accepted(self) -> bool:
        return 200 in self.answers


def device_ids(user: str) -> dict[str, str]:
    """The user's phone, as the offerwall reports it: values that must never reach a log."""
    number = int(hashlib.sha256(user.encode()).hexdigest()[:12], 16)
    return {
        "imei": f"35{number % 10**13:013d}",
        "mac": ":".join(f"{(number >> shift) & 0xFF:02x}" for shift in range(0, 48, 8)),
        "gaid": str(uuid.UUID(int=number)),
    }


def make_payout(
    rng: random.Random, users: list[str], offerwall: str = "offerwall", key: str = OFFERWALL_KEY
) -> Payout:
    user, amount = rng.choice(users), rng.randint(1, 300)
    if rng.random() < 0.5 or offerwall != "offerwall":
        transaction = uuid.uuid4().hex
        params = {
            "user_id": user,
            "amount": str(amount),
            "trans_id": transaction,
            "send_time": "1763800000",
            **device_ids(user),
        }
        query = offerwall_query(params, key)
        path = f"/callbacks/{offerwall}?{query}"
        return Payout(
            offerwall,
            transaction,
            user,
            "COIN",
            amount,
            path,
            path.replace(f"amount={amount}", f"amount={amount + 1}"),
        )
    transaction = str(uuid.uuid4())
    params = {
        "user_uuid": user,
        "coin_amount": str(amount),
        "currency": "coins",
        "trans_uuid": transaction,
        "device_id": device_ids(user)["gaid"],
    }
    path = f"/callbacks/adjoe?{adjoe_query(params, ADJOE_TOKEN)}"
    return Payout(
        "adjoe",
        transaction,
        user,
        "coins",
        amount,
        path,
        path.replace(f"coin_amount={amount}", f"coin_amount={amount + 1}"),
    )


class ProviderSimulator:
    def __init__(
        self,
        stack: Stack,
        seed: int,
        offerwall: str = "offerwall",
        base_url: str | None = None,
        keep_alive: bool = True,
    ) -> None:
        """`offerwall` picks the instance: "offerwall-strict" requires wallets to exist.
        `base_url` sends elsewhere than the stack's ingress (a load balancer in front of several);
        without `keep_alive` every request opens its own connection."""
        self._rng = random.Random(seed)
        self._users = [f"player-{n}" for n in range(40)]
        self._offerwall = offerwall
        self._base_url = base_url or stack.base_url
        self._limits = httpx.Limits() if keep_alive else httpx.Limits(max_keepalive_connections=0)
        # The offerwall's signing key: a test switches it as a provider does during a rotation.
        self.offerwall_key = OFFERWALL_KEY
        self.payouts: list[Payout] = []
        self.tampered_answers: Counter[int | str] = Counter()

    async def run(self, count: int, spread_seconds: float = 0.0, concurrency: int = 8) -> None:
        """`count` payouts, their first sends spread evenly over `spread_seconds`, as real
        traffic arrives, so a fault injected meanwhile meets requests in flight."""
        await self._paced(lambda sent, _: sent < count, spread_seconds / max(count, 1), concurrency)

    @contextlib.asynccontextmanager
    async def traffic(
        self, per_second: float, at_least_seconds: float, burst: int = 1
    ) -> AsyncIterator[None]:
        """Payouts arriving at `per_second` while the body runs, and for `at_least_seconds`: a
        fault injected in the body meets requests in flight however long it takes. They come
        `burst` at a time (as a provider flushing its retry queue sends them), the same number
        a second: concurrent callbacks, which the ingress gathers into envelopes."""
        over = asyncio.Event()
        sending = asyncio.create_task(
            self._paced(
                lambda _, elapsed: elapsed < at_least_seconds or not over.is_set(),
                1 / per_second,
                concurrency=max(8, burst),
                burst=burst,
            )
        )
        try:
            yield
        except BaseException:
            sending.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await sending
            raise
        over.set()
        await sending

    async def _paced(
        self,
        more: Callable[[int, float], bool],
        interval_seconds: float,
        concurrency: int = 8,
        burst: int = 1,
    ) -> None:
        """A first send every `interval_seconds` on average while `more(sent so far, seconds
        elapsed)`, `burst` of them at the same moment."""
        limit = asyncio.Semaphore(concurrency)
        loop = asyncio.get_running_loop()
        started = loop.time()
        async with httpx.AsyncClient(
            base_url=self._base_url, timeout=10, limits=self._limits
        ) as client:

            async def deliver(payout: Payout) -> None:
                async with limit:
                    await self._deliver(client, payout)

            deliveries: list[asyncio.Task[None]] = []
            try:
                while more(len(deliveries), loop.time() - started):
                    # Signed when it is due, with the key the provider holds at that moment.
                    payout = make_payout(
                        self._rng, self._users, self._offerwall, self.offerwall_key
                    )
                    self.payouts.append(payout)
                    deliveries.append(asyncio.create_task(deliver(payout)))
                    if len(deliveries) % burst == 0:
                        due = started + len(deliveries) * interval_seconds
                        await asyncio.sleep(max(0.0, due - loop.time()))
                await asyncio.gather(*deliveries)
            finally:  # cancelled: no send outlives the simulator
                for delivery in deliveries:
                    delivery.cancel()
                await asyncio.gather(*deliveries, return_exceptions=True)

    async def _send(self, client: httpx.AsyncClient, path: str) -> int | str:
        try:
            return (await client.get(path)).status_code
        except httpx.TransportError as error:
            return type(error).__name__

    async def _deliver(self, client: httpx.AsyncClient, payout: Payout) -> None:
        if self._rng.random() < 0.05:
            self.tampered_answers[await self._send(client, payout.tampered_path)] += 1
        while not payout.accepted and len(payout.answers) < MAX_SENDS:
            payout.answers.append(await self._send(client, payout.path))
            if not payout.accepted:
                await asyncio.sleep(RETRY_PAUSE_SECONDS)
        if self._rng.random() < 0.15:  # providers re-send what was already accepted
            payout.answers.append(await self._send(client, payout.path))


async def settle_like_the_platform(
    client: httpx.AsyncClient, fields: dict[str, object]
) -> list[dict[str, Any]]:
    """Spec 001's FAQ: re-send (with a fresh timestamp) until the answer is success."""
    answers = []
    for _ in range(30):
        body = aigame_payout_body({**fields, "timestamp": int(time.time() * 1000)}, AIGAME_KEY)
        response = await client.post("/aigame/v1/wallet/payout", json=body, timeout=30)
        assert response.status_code == 200
        answers.append(response.json())
        if answers[-1]["code"] == 200:
            return answers
        assert answers[-1]["code"] == 800100, answers[-1]  # only "try again" is retried
        await asyncio.sleep(0.5)
    raise AssertionError(f"never settled: {answers}")


def aigame_fields(user: str, win_amount: str, pay_out_time: int) -> dict[str, object]:
    """A spec-001 settlement of a new bet for `user`, before the platform's signature."""
    return {
        "agent_id": "agent001",
        "user_id": user,
        "game_id": "101",
        "inst_id": "000002",
        "shoe_id": 1,
        "round_id": 1,
        "bet_txn_id": uuid.uuid4().hex[:24],
        "win_amount": win_amount,
        "pay_out_time": pay_out_time,
        "currency": "VND2",
    }


class WalletPlatform:
    """Spec 001's game platform: payouts sent at a steady rate, each re-sent until its answer is
    success (`settle_like_the_platform` fails on any answer but success and "try again")."""

    def __init__(self, stack: Stack, seed: int) -> None:
        self._stack = stack
        self._rng = random.Random(seed)
        self.payouts: list[Payout] = []

    @contextlib.asynccontextmanager
    async def traffic(self) -> AsyncIterator[None]:
        over = asyncio.Event()
        async with httpx.AsyncClient(base_url=self._stack.base_url) as client:
            sender = asyncio.create_task(self._send_until(over, client))
            try:
                yield
            finally:
                over.set()
                await sender

    async def _send_until(self, over: asyncio.Event, client: httpx.AsyncClient) -> None:
        async with asyncio.TaskGroup() as group:
            while not over.is_set():
                group.create_task(self._settle_one(client))
                await asyncio.sleep(1 / WALLET_PAYOUTS_PER_SECOND)

    async def _settle_one(self, client: httpx.AsyncClient) -> None:
        user, amount = f"player-{self._rng.randrange(10)}", self._rng.randint(1, 500)
        fields = aigame_fields(user, str(amount), pay_out_time=1763800000000)
        payout = Payout("aigame", str(fields["bet_txn_id"]), user, "VND2", amount, "", "")
        self.payouts.append(payout)
        payout.answers.extend(
            answer["code"] for answer in await settle_like_the_platform(client, fields)
        )


@dataclass
class Reconciliation:
    payouts: list[Payout]
    lost: list[str]
    duplicated: list[str]
    recovered: list[str]
    unexpected: list[str]
    never_accepted: list[str]
    details: dict[str, Any]

    def assert_clean(self) -> None:
        report = (self.summary(), self.details)
        assert self.lost == [], report
        assert self.duplicated == [], report
        assert self.unexpected == [], report
        assert self.never_accepted == [], report

    def summary(self) -> dict[str, int]:
        names = ("lost", "duplicated", "recovered", "unexpected", "never_accepted")
        return {name: len(getattr(self, name)) for name in names}


DEAD_LETTERED = """
SELECT provider_instance, transaction_id FROM dead_letters WHERE status = 'dead_lettered'
"""

CREDITS = """
SELECT p.provider_instance, p.transaction_id, p.status, count(e.entry_id) AS entries
FROM payouts p LEFT JOIN ledger_entries e USING (payout_id)
GROUP BY p.payout_id
"""


async def reconcile(stack: Stack, payouts: list[Payout]) -> Reconciliation:
    """What every payout's provider was told, against the ledger and the dead-letter record."""
    conn = await asyncpg.connect(stack.database_url)
    try:
        rows = {(r["provider_instance"], r["transaction_id"]): r for r in await conn.fetch(CREDITS)}
        dead = {
            (r["provider_instance"], r["transaction_id"]) for r in await conn.fetch(DEAD_LETTERED)
        }
        wallets = {
            (r["owner"], r["currency"]): r["balance"]
            for r in await conn.fetch(
                "SELECT owner, currency, balance FROM accounts WHERE kind = 'wallet'"
            )
        }
        books = await conn.fetchval("SELECT coalesce(sum(amount), 0) FROM ledger_entries")
    finally:
        await conn.close()
    known = {(p.instance, p.transaction_id) for p in payouts}
    dead |= await _in_dead_letter_queue(stack)
    lost: list[str] = []
    duplicated: list[str] = []
    recovered: list[str] = []
    never: list[str] = []
    expected: Counter[tuple[str, str]] = Counter()
    for payout in payouts:
        key = (payout.instance, payout.transaction_id)
        row = rows.get(key)
        credited = row is not None and row["status"] == "credited"
        if row is not None and row["entries"] > 2:
            duplicated.append(payout.transaction_id)
        if credited:
            expected[(payout.user_id, payout.currency)] += payout.amount
        if payout.accepted and row is None and key not in dead:
            lost.append(payout.transaction_id)
        if not payout.accepted:
            (recovered if credited else never).append(payout.transaction_id)
        elif 200 not in payout.answers[:1] and credited:
            recovered.append(payout.transaction_id)
    unexpected = [f"{key}" for key in rows if key not in known]
    wrong_wallets = {
        key: (wallets.get(key), Decimal(value))
        for key, value in expected.items()
        if wallets.get(key) != Decimal(value)
    }
    if wrong_wallets or books != 0:
        unexpected.append(f"wallets off: {wrong_wallets}, books sum {books}")
    credited_count = sum(1 for row in rows.values() if row["status"] == "credited")
    return Reconciliation(
        payouts,
        lost,
        duplicated,
        recovered,
        unexpected,
        never,
        {
            "payouts": len(payouts),
            "credited": credited_count,
            "answers": Counter(a for p in payouts for a in p.answers),
        },
    )


async def _in_dead_letter_queue(stack: Stack) -> set[tuple[str, str]]:
    """Dead letters the worker could not record in Postgres (it was down) are still in the queue."""
    from payouts.actions.dead_letters import DeadLetterQueue, Selection
    from schema.settings import BrokerSettings
    from tests.e2e.stack import RETRY_TIERS

    settings = BrokerSettings(
        urls=stack.broker_urls, namespace=stack.namespace, retry_delays_seconds=RETRY_TIERS
    )
    async with DeadLetterQueue.open(settings) as dlq:
        return {
            (item.entry.provider_instance or "", item.entry.transaction_id or "")
            for item in await dlq.fetch(Selection())
        }
