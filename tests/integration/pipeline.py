"""The ingress app and a worker in one process, against the real RabbitMQ and Postgres: what the
protocols that answer with the outcome need to be tested end to end."""

from __future__ import annotations

import asyncio
import contextlib
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
import httpx

from ingress.app import create_app
from schema.settings import (
    BrokerSettings,
    DatabaseSettings,
    InternalApiSettings,
    Partner,
    Settings,
    WorkerSettings,
)
from tests.factories import provider
from tests.polling import wait_until
from workers.accounts import create_wallet
from workers.consumer import Worker
from workers.database import create_pool_when_available

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from tests.services import Services

AIGAME_KEY = "aigame-key"
BILLING_SECRET = "billing-secret"
INTERNAL_TOKEN = "Internal-Token-1"  # capitals: a token is compared exactly
PARTNERS = {
    # pid: (api key, secret)
    "partner-a": ("key-a", "secret-a"),
    "partner-b": ("key-b", "secret-b"),
    # The values of spec 002's own examples.
    "your_provided_pid": ("your_provided_api_key", "your_provided_secret_key"),
}
ENVIRON = {
    "AIGAME_KEY": AIGAME_KEY,
    "BILLING_SECRET": BILLING_SECRET,
    "TEST_SECRET": "pub-key-1",
    "INTERNAL_TOKEN": INTERNAL_TOKEN,
    # partner-a's next key and secret, for the tests of a rotation.
    "PARTNER_A_NEXT_KEY": "key-a-next",
    "PARTNER_A_NEXT_SECRET": "secret-a-next",
    **{f"{pid.upper().replace('-', '_')}_KEY": key for pid, (key, _) in PARTNERS.items()},
    **{f"{pid.upper().replace('-', '_')}_SECRET": secret for pid, (_, secret) in PARTNERS.items()},
}
AIGAME = "/aigame/v1/wallet/payout"
AIGAME_ORDERS = "/aigame-orders/v1/wallet/payout"
BILLING = "/callbacks/billing"


def pipeline_settings(services: Services, database_url: str, **database: Any) -> Settings:
    common = {"max_amount": Decimal(1_000_000), "outcome_timeout_seconds": 5}
    return Settings(
        database=DatabaseSettings(url=database_url, pool_max_size=8, **database),
        broker=BrokerSettings(
            urls=(services.rabbitmq_url,),
            namespace=services.new_namespace((1, 2)),
            retry_delays_seconds=(1, 2),
            publish_timeout_seconds=3,
        ),
        worker=WorkerSettings(
            prefetch=8, in_place_retry_seconds=0.5, shutdown_grace_seconds=5, status_port=0
        ),
        providers=(
            provider(
                "aigame_payout",
                name="aigame",
                route=AIGAME,
                secret_env="AIGAME_KEY",
                allowed_currencies=("VND2", "THB"),
                amount_decimal_places=2,
                account_policy="require_existing",
                **common,
            ),
            provider(
                "aigame_payout",
                name="aigame-orders",
                route=AIGAME_ORDERS,
                secret_env="AIGAME_KEY",
                amount_decimal_places=2,
                account_policy="create",
                verify_orders=True,
                **common,
            ),
            provider(
                "wallet_billing",
                name="billing",
                route=BILLING,
                secret_env="BILLING_SECRET",
                default_currency="VND",
                account_policy="create",
                verify_orders=True,
                **common,
            ),
            provider("offerwall_md5", name="offerwall"),
        ),
        partners=(
            Partner(
                pid="partner-a",
                api_key_env="PARTNER_A_KEY",
                secret_env="PARTNER_A_SECRET",
                provider_instances=("aigame", "billing"),
            ),
            Partner(
                pid="partner-b",
                api_key_env="PARTNER_B_KEY",
                secret_env="PARTNER_B_SECRET",
                provider_instances=("offerwall",),
            ),
            Partner(
                pid="your_provided_pid",
                api_key_env="YOUR_PROVIDED_PID_KEY",
                secret_env="YOUR_PROVIDED_PID_SECRET",
                provider_instances=("aigame",),
            ),
        ),
        internal_api=InternalApiSettings(token_env="INTERNAL_TOKEN"),
    )


class Pipeline:
    """An ingress client, and a worker that a test can start late or stop."""

    def __init__(self, settings: Settings, client: httpx.AsyncClient) -> None:
        self.settings = settings
        self.client = client
        self._worker: tuple[asyncio.Event, asyncio.Task[int], asyncpg.Pool] | None = None
        self.worker: Worker | None = None

    async def start_worker(self) -> None:
        stop = asyncio.Event()
        pool = await create_pool_when_available(self.settings.database)
        self.worker = Worker(self.settings, pool)
        self._worker = (stop, asyncio.create_task(self.worker.run(stop)), pool)

    async def stop_worker(self) -> None:
        if self._worker is not None:
            stop, task, pool = self._worker
            stop.set()
            await task
            await pool.close()
            self._worker = None

    async def create_member(self, user_id: str, currency: str) -> None:
        conn = await asyncpg.connect(self.settings.database.url)
        try:
            await create_wallet(conn, user_id, currency)
        finally:
            await conn.close()

    async def value(self, query: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.settings.database.url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()


@contextlib.asynccontextmanager
async def worker_running(settings: Settings) -> AsyncIterator[None]:
    """A worker consuming until the block ends."""
    stop = asyncio.Event()
    pool = await create_pool_when_available(settings.database)
    task = asyncio.create_task(Worker(settings, pool).run(stop))
    try:
        yield
    finally:
        stop.set()
        await task
        await pool.close()


@contextlib.asynccontextmanager
async def pipeline(
    settings: Settings, services: Services, with_worker: bool = True
) -> AsyncIterator[Pipeline]:
    try:
        async with _running(settings, with_worker) as started:
            yield started
    finally:
        await services.release_namespace(settings.broker.namespace)


@contextlib.asynccontextmanager
async def _running(settings: Settings, with_worker: bool) -> AsyncIterator[Pipeline]:
    app = create_app(settings, ENVIRON)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://ingress", timeout=30
        ) as client:

            async def ready() -> bool:
                report = (await client.get("/readyz")).json()
                return report.get("broker") == "connected" and report.get("outcomes") in (
                    "listening",
                    None,
                )

            await wait_until(ready, "ingress connected and listening for outcomes")
            running = Pipeline(settings, client)
            if with_worker:
                await running.start_worker()
            try:
                yield running
            finally:
                await running.stop_worker()
