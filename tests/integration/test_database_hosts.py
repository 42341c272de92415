"""A database URL naming several hosts, as a primary and its standbys are named: every part of
payouts gets to the host that takes writes, and follows it when it moves, without a restart.

One real Postgres plays every host here: a closed port is a server that is down, a port that
listens and never answers (or a frozen proxy) is a host that hangs, a proxy that starts sessions
read-only is a standby, and a proxy the test cuts is a primary that died. A real
standby's promotion is the failover tests' (tests/clusters/)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
import uuid
from decimal import Decimal
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from broker.publisher import ConfirmedPublisher
from database.connection import connect
from ingress.database import IngressDatabase
from ingress.outcomes import OutcomeListener
from payouts.actions.connections import with_connection
from payouts.actions.setup import create_database_if_missing
from schema.errors import DatabaseUnavailable
from schema.logs import logged_fields
from schema.settings import DATABASE_URL_ENV, DatabaseSettings, load_settings
from schema.topology import Topology
from tests.books import assert_books_balance
from tests.factories import payout_event
from tests.integration.pipeline import pipeline_settings, worker_running
from tests.polling import wait_until
from tests.postgres_proxies import CommitAnswerLost, ReadOnlyServer, naming_hosts
from tests.services import queue_depth
from tests.tcp_proxy import TcpProxy
from workers.database import create_pool_when_available

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Iterator
    from pathlib import Path

    from schema.settings import Settings
    from tests.services import Services

READ_WRITE_CHECK = "SELECT current_setting('transaction_read_only')"


def closed_port() -> str:
    """A host nothing listens on: a server that is down refuses the connection at once."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{probe.getsockname()[1]}"


@contextlib.contextmanager
def hung_host() -> Iterator[str]:
    """A host that takes the TCP connection and never says a word, as a frozen server does;
    one whose packets are dropped hangs the same way, a step earlier."""
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(64)  # the kernel completes the handshakes; nothing ever reads
        yield f"127.0.0.1:{silent.getsockname()[1]}"


def server_of(database_url: str) -> str:
    parts = urlsplit(database_url)
    return f"{parts.hostname}:{parts.port or 5432}"


@pytest.fixture
async def settings(services: Services, database_url: str) -> AsyncIterator[Settings]:
    built = pipeline_settings(services, database_url)
    yield built
    await services.release_namespace(built.broker.namespace)


def with_url(settings: Settings, url: str, **database: float) -> Settings:
    """`settings` on another URL, validated as a configured one is (model_copy is not)."""
    changed = {**settings.database.model_dump(), "url": url, **database}
    return settings.model_copy(update={"database": DatabaseSettings.model_validate(changed)})


async def credited(settings: Settings, count: int) -> None:
    async def all_in() -> bool:
        conn = await asyncpg.connect(settings.database.url)
        try:
            return int(await conn.fetchval("SELECT count(*) FROM payouts")) == count
        finally:
            await conn.close()

    await wait_until(all_in, f"{count} payouts credited", 20)


async def test_every_part_reaches_the_second_host_when_the_first_is_down(
    services: Services, database_url: str, tmp_path: Path
) -> None:
    """The URL comes through PAYOUTS_DATABASE_URL, as in production; the worker's pool, the
    ingress's pool, the outcome listener and the commands all pass over the host that is down."""
    config = tmp_path / "payouts.toml"
    config.write_text("")
    url = naming_hosts(database_url, closed_port(), server_of(database_url))
    full = load_settings(config, {DATABASE_URL_ENV: url})
    settings = full.database
    assert settings.url == f"{url}?target_session_attrs=read-write"

    pool = await create_pool_when_available(settings)
    try:
        assert await pool.fetchval(READ_WRITE_CHECK) == "off"
    finally:
        await pool.close()
    apis = IngressDatabase(settings)
    await apis.open()
    try:
        assert await apis.reachable()
    finally:
        await apis.close()
    listener = OutcomeListener(settings)
    listener.start()
    try:

        async def listening() -> bool:
            return listener.listening

        await wait_until(listening, "the outcome listener listening", 10)
    finally:
        await listener.close()
    assert await with_connection(full, lambda conn: conn.fetchval(READ_WRITE_CHECK)) == "off"

    name = f"payouts_hosts_{uuid.uuid4().hex[:10]}"
    new_database = urlunsplit(urlsplit(settings.url)._replace(path=f"/{name}"))
    assert await create_database_if_missing(new_database, settings.connect_timeout_seconds)
    try:
        assert not await create_database_if_missing(new_database, settings.connect_timeout_seconds)
    finally:
        admin = await asyncpg.connect(services.postgres_admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def test_a_read_only_server_first_in_the_list_is_passed_over(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Whatever the environment asks for: asyncpg reads PGTARGETSESSIONATTRS only when the URL
    names no target, and ours always names read-write."""
    monkeypatch.setenv("PGTARGETSESSIONATTRS", "read-only")
    async with ReadOnlyServer(database_url) as standby:
        alone = naming_hosts(database_url, standby.host)
        # The stand-in refuses writes, as a standby would, to anyone who lands on it...
        conn = await asyncpg.connect(f"{alone}?target_session_attrs=any")
        try:
            with pytest.raises(asyncpg.exceptions.ReadOnlySQLTransactionError):
                await conn.execute("CREATE TEMPORARY TABLE written (n int)")
        finally:
            await conn.close()
        # ...and our settings never land there: with it alone there is nothing to connect to.
        only_standby = with_url(settings, alone)
        refused = f"{standby.host} answered but takes no writes"
        with pytest.raises(DatabaseUnavailable, match=refused):
            await with_connection(only_standby, lambda conn: conn.fetchval("SELECT 1"))
        both = with_url(settings, naming_hosts(database_url, standby.host, server_of(database_url)))
        pool = await create_pool_when_available(both.database)
        try:
            assert await pool.fetchval(READ_WRITE_CHECK) == "off"
        finally:
            await pool.close()
        async with worker_running(both), publishing(both) as publisher:
            await publisher.publish_event(payout_event(amount=Decimal(7)))
            await credited(both, 1)


async def test_a_commit_whose_answer_was_lost_is_retried_and_credits_once(
    settings: Settings, database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """The server commits and the worker never hears it: the connection is gone mid-commit. The
    worker retries the batch on a new connection, where the transaction id's unique key finds
    the payout recorded: a duplicate, credited once."""
    caplog.set_level(logging.INFO)
    async with CommitAnswerLost(database_url) as dying:
        lossy = with_url(settings, naming_hosts(database_url, closed_port(), dying.host))
        event = payout_event(amount=Decimal(5), user_id="ida")
        async with worker_running(lossy), publishing(lossy) as publisher:
            await publisher.publish_event(event)
            await credited(lossy, 1)
            await wait_until(lambda: _is_set(dying), "the COMMIT's answer lost")

            async def acked() -> bool:
                work_queue = Topology.from_settings(settings.broker).work_queue
                return await queue_depth(settings.broker.urls[0], work_queue) == 0

            await wait_until(acked, "the delivery acked")
    outcomes = [
        logged_fields(record).get("outcome")
        for record in caplog.records
        if record.getMessage() == "payout processed"
    ]
    assert outcomes == ["duplicate"], "the retry did not find the lost commit"
    conn = await asyncpg.connect(database_url)
    try:
        assert await conn.fetchval("SELECT count(*) FROM ledger_entries") == 2
        balance = "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = 'ida'"
        assert await conn.fetchval(balance) == Decimal(5)
        await assert_books_balance(conn)
    finally:
        await conn.close()


async def test_the_worker_follows_the_primary_to_the_next_host_without_a_restart(
    settings: Settings, database_url: str
) -> None:
    first = await TcpProxy.in_front_of(database_url)
    second = await TcpProxy.in_front_of(database_url)
    moving = with_url(
        settings, naming_hosts(database_url, f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}")
    )
    try:
        async with worker_running(moving), publishing(moving) as publisher:
            await publisher.publish_event(payout_event(amount=Decimal(1)))
            await credited(moving, 1)
            await first.cut()  # the primary dies; it stays away, so the rest goes through `second`
            await publisher.publish_event(payout_event(amount=Decimal(2)))
            await credited(moving, 2)
    finally:
        await first.close()
        await second.close()


REFUSED_BACKENDS = """
CREATE TABLE refused_backends (pid int PRIMARY KEY);
CREATE FUNCTION refuse_writes() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM refused_backends WHERE pid = pg_backend_pid()) THEN
        RAISE EXCEPTION 'cannot execute INSERT in a read-only transaction'
            USING ERRCODE = 'read_only_sql_transaction';
    END IF;
    RETURN NULL;
END $$;
CREATE TRIGGER refuse_writes BEFORE INSERT ON payouts
    FOR EACH STATEMENT EXECUTE FUNCTION refuse_writes();
"""


async def test_a_pooled_connection_whose_server_turned_read_only_is_dropped(
    settings: Settings, database_url: str
) -> None:
    """A connection opened to the primary stays on its server: if that server stops taking
    writes while the connection lives, the worker drops it, and the pool's next one goes
    through the host list again. (Postgres's own answer is simulated for one backend: the
    machine's server must not be made read-only for everyone.)"""
    single = with_url(settings, settings.database.url, pool_min_size=1, pool_max_size=1)
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(REFUSED_BACKENDS)
        async with worker_running(single), publishing(single) as publisher:
            others = (
                "SELECT array_agg(pid) FROM pg_stat_activity"
                " WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
            (pooled,) = await conn.fetchval(others)
            await conn.execute("INSERT INTO refused_backends VALUES ($1)", pooled)
            await publisher.publish_event(payout_event(amount=Decimal(3)))
            await credited(single, 1)
            assert pooled not in await conn.fetchval(others)
        dead_letters = Topology.from_settings(settings.broker).dead_letter_queue
        assert await queue_depth(settings.broker.urls[0], dead_letters) == 0
    finally:
        await conn.close()


async def _is_set(proxy: CommitAnswerLost) -> bool:
    return proxy.lost.is_set()


@contextlib.asynccontextmanager
async def publishing(settings: Settings) -> AsyncIterator[ConfirmedPublisher]:
    publisher = ConfirmedPublisher(settings.broker, "test")
    publisher.start()
    try:
        await publisher.wait_ready()
        yield publisher
    finally:
        await publisher.close()


# Each host's own connect timeout in the tests below, and the whole wait the old connector would
# have made on a hung first host (asyncpg's one timeout, covering every host): a part that
# connects within HUNG_BOUND_SECONDS passed the hung host after its own timeout.
PER_HOST_SECONDS = 1.0
WHOLE_CONNECT_SECONDS = 10.0
HUNG_BOUND_SECONDS = 2.5


async def within_the_per_host_timeout(what: str, part: Awaitable[None]) -> float:
    """`part`'s run time; it must finish within HUNG_BOUND_SECONDS."""
    started = time.monotonic()
    try:
        async with asyncio.timeout(HUNG_BOUND_SECONDS):
            await part
    except TimeoutError:
        raise AssertionError(f"{what}: not connected within {HUNG_BOUND_SECONDS} s") from None
    return time.monotonic() - started


def behind_a_hung_host(settings: Settings, database_url: str, hung: str) -> Settings:
    return with_url(
        settings,
        naming_hosts(database_url, hung, server_of(database_url)),
        connect_timeout_seconds=PER_HOST_SECONDS,
        acquire_timeout_seconds=WHOLE_CONNECT_SECONDS,
        api_acquire_timeout_seconds=WHOLE_CONNECT_SECONDS,
    )


async def test_every_part_passes_a_hung_first_host_after_its_own_timeout(
    settings: Settings, database_url: str
) -> None:
    """The worker's pool, the ingress's pool, the outcome listener and a command each connect to
    the second host once the first has had `connect_timeout_seconds`, not the whole wait. Each
    part gets a hung host of its own: the host a part found is tried first by the next."""

    async def worker_pool(hung: Settings) -> None:
        pool = await create_pool_when_available(hung.database)
        try:
            assert await pool.fetchval(READ_WRITE_CHECK) == "off"
        finally:
            await pool.close()

    async def ingress_pool(hung: Settings) -> None:
        apis = IngressDatabase(hung.database)
        await apis.open()
        try:
            assert await apis.reachable()
        finally:
            await apis.close()

    async def outcome_listener(hung: Settings) -> None:
        listener = OutcomeListener(hung.database)
        listener.start()
        try:

            async def listening() -> bool:
                return listener.listening

            await wait_until(listening, "the outcome listener listening")
        finally:
            await listener.close()

    async def command(hung: Settings) -> None:
        assert await with_connection(hung, lambda conn: conn.fetchval(READ_WRITE_CHECK)) == "off"

    for part in (worker_pool, ingress_pool, outcome_listener, command):
        with hung_host() as hung:
            behind = behind_a_hung_host(settings, database_url, hung)
            took = await within_the_per_host_timeout(part.__name__, part(behind))
            assert took >= PER_HOST_SECONDS, f"{part.__name__} never tried the hung host"


async def test_the_host_that_took_the_last_connection_is_tried_first(
    settings: Settings, database_url: str
) -> None:
    """A promoted standby stays the primary: once a connection has passed a hung old primary,
    the next ones go to the new one at once; and when it goes away, the rest are tried in the
    URL's order."""
    first = await TcpProxy.in_front_of(database_url)
    second = await TcpProxy.in_front_of(database_url)
    url = with_url(
        settings,
        naming_hosts(database_url, f"127.0.0.1:{first.port}", f"127.0.0.1:{second.port}"),
    ).database.url

    async def connected() -> None:
        conn = await connect(url, timeout=PER_HOST_SECONDS)
        await conn.close()

    try:
        await connected()  # through `first`
        first.freeze()  # the primary's machine hangs; `second` is promoted
        assert await within_the_per_host_timeout("passing the hung host", connected()) >= 1
        assert await within_the_per_host_timeout("the promoted host", connected()) < 0.5
        await second.cut()  # and dies in turn, while the first is back
        first.thaw()
        assert await within_the_per_host_timeout("back to the first host", connected()) < 0.5
    finally:
        await first.close()
        await second.close()


async def test_the_ingress_apis_reach_the_primary_the_outcome_listener_found(
    settings: Settings, database_url: str
) -> None:
    """As with the defaults, an API request gives up (api_acquire_timeout_seconds) before a hung
    host's connect_timeout_seconds: the APIs answer "unavailable" until the listener, which waits
    the hung host out, has found the primary; from then on they reach it first."""
    with hung_host() as hung:
        ingress = with_url(
            settings,
            naming_hosts(database_url, hung, server_of(database_url)),
            connect_timeout_seconds=PER_HOST_SECONDS,
            api_acquire_timeout_seconds=PER_HOST_SECONDS / 2,
        ).database
        apis = IngressDatabase(ingress)
        listener = OutcomeListener(ingress)
        await apis.open()
        try:
            assert not await apis.reachable()
            listener.start()

            async def listening() -> bool:
                return listener.listening

            await wait_until(listening, "the outcome listener listening", 5)
            assert await apis.reachable()
        finally:
            await listener.close()
            await apis.close()


async def test_no_host_taking_the_connection_is_an_error_naming_each_and_why(
    database_url: str,
) -> None:
    with hung_host() as hung:
        down = closed_port()
        parts = urlsplit(naming_hosts(database_url, hung, down))
        url = urlunsplit(parts._replace(netloc=f"payouts:hunter2@{hung},{down}"))
        with pytest.raises(DatabaseUnavailable) as raised:
            await connect(url, timeout=PER_HOST_SECONDS)
    message = str(raised.value)
    assert f"{hung} did not answer within {PER_HOST_SECONDS} s" in message
    assert f"{down} failed: ConnectionRefusedError" in message
    assert "payouts:***@" in message
    assert "hunter2" not in message
