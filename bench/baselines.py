"""The HTTP baselines served beside the ingress, on the same uvicorn settings:

- `hello`: a bare Starlette app, the HTTP ceiling of this machine;
- `publishing`: a Starlette endpoint that only publishes a payout event per request and waits
  for the broker's confirm, with the ingress's own publish call: what any ingress on this stack
  could reach before verifying or recording anything;
- `naive`: the callback handler most teams would write: verify spec 000's signature, then credit
  inside the request, one Postgres transaction each, and answer. No broker, no batching, no
  outcome records, and it serializes on hot wallets.

Run with `uvicorn --factory bench.baselines:hello` (`publishing` with BENCH_RABBITMQ_URL and
BENCH_PUBLISH_QUEUE set, `naive` with BENCH_DATABASE_URL).
"""

from __future__ import annotations

import hashlib
import os
from contextlib import asynccontextmanager
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING

import aio_pika
import asyncpg
from pamqp.commands import Basic
from starlette.applications import Starlette
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from bench.broker_ceiling import QUORUM
from bench.traffic import SECRETS, sample_event
from broker.publisher import event_properties
from schema.events import encode_event

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from starlette.requests import Request
    from starlette.responses import Response

__all__ = ["hello", "naive", "publishing"]

NAIVE_CREDIT = """
WITH claimed AS (
    INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                         currency, signature, create_account, status, outcome, answer_code,
                         raw_request, received_at, credited_at)
    VALUES ('naive', $1, gen_random_uuid(), 'offerwall_md5', $2, $3, 'COIN', $4, true,
            'credited', 'credited', '200', '{}', now(), now())
    ON CONFLICT DO NOTHING
    RETURNING payout_id
)
SELECT payout_id FROM claimed
"""
NAIVE_WALLET = """
INSERT INTO accounts (kind, owner, currency, balance) VALUES ('wallet', $1, 'COIN', $2)
ON CONFLICT (kind, owner, currency) DO UPDATE SET balance = accounts.balance + excluded.balance
RETURNING account_id
"""
# Both sides, as the pipeline and bench/pgbench_credit.sql write them: the wallet's credit and
# the provider funding account's debit.
NAIVE_LEDGER = """
INSERT INTO ledger_entries (payout_id, account_id, amount)
VALUES ($1, $2, $3),
       ($1, (SELECT account_id FROM accounts WHERE kind = 'funding' AND owner = 'naive'
             AND currency = 'COIN'), -$3::numeric)
"""
NAIVE_FUNDING = """
INSERT INTO accounts (kind, owner, currency) VALUES ('funding', 'naive', 'COIN')
ON CONFLICT DO NOTHING
"""


def hello() -> Starlette:
    async def answer(_: Request) -> Response:
        return PlainTextResponse("hello")

    return Starlette(routes=[Route("/{path:path}", answer)])


def publishing() -> Starlette:
    queue = os.environ["BENCH_PUBLISH_QUEUE"]
    event = sample_event("publishing", "user-1", Decimal(7))
    body, properties = encode_event(event), event_properties(event)
    state: dict[str, aio_pika.abc.AbstractChannel] = {}

    async def publish(_: Request) -> Response:
        # The call `ConfirmedPublisher` makes: aiormq's publish beneath aio-pika's channel.
        channel = await state["channel"].get_underlay_channel()
        confirmation = await channel.basic_publish(
            body, exchange="", routing_key=queue, properties=properties, mandatory=True
        )
        if not isinstance(confirmation, Basic.Ack):
            return PlainTextResponse("not confirmed", status_code=503)
        return PlainTextResponse("published")

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        connection = await aio_pika.connect(os.environ["BENCH_RABBITMQ_URL"])
        async with connection:
            channel = await connection.channel(publisher_confirms=True)
            await channel.declare_queue(queue, durable=True, arguments=QUORUM)
            state["channel"] = channel
            yield

    async def alive(_: Request) -> Response:
        return PlainTextResponse("alive")

    routes = [Route("/healthz", alive), Route("/{path:path}", publish)]
    return Starlette(routes=routes, lifespan=lifespan)


def naive() -> Starlette:
    state: dict[str, asyncpg.Pool] = {}
    key = SECRETS["BENCH_OFFERWALL_KEY"]

    async def callback(request: Request) -> Response:
        params = dict(request.query_params)
        received = params.pop("sign", "")
        values = "".join(value for _, value in sorted(params.items()))
        if hashlib.md5((values + key).encode()).hexdigest() != received:
            return JSONResponse({"error": "bad signature"}, status_code=403)
        try:
            amount = Decimal(params["amount"])
            user, transaction = params["user_id"], params["trans_id"]
        except (KeyError, InvalidOperation):
            return JSONResponse({"error": "malformed"}, status_code=400)
        async with state["pool"].acquire() as conn, conn.transaction():
            payout_id = await conn.fetchval(NAIVE_CREDIT, transaction, user, amount, received)
            if payout_id is not None:
                wallet = await conn.fetchval(NAIVE_WALLET, user, amount)
                await conn.execute(NAIVE_LEDGER, payout_id, wallet, amount)
        return JSONResponse({"status": "ok"})

    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[None]:
        state["pool"] = await asyncpg.create_pool(
            os.environ["BENCH_DATABASE_URL"], min_size=10, max_size=10
        )
        await state["pool"].execute(NAIVE_FUNDING)
        try:
            yield
        finally:
            await state["pool"].close()

    async def alive(_: Request) -> Response:
        return PlainTextResponse("alive")

    routes = [Route("/callbacks/offerwall", callback), Route("/healthz", alive)]
    return Starlette(routes=routes, lifespan=lifespan)
