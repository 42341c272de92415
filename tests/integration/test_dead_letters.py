"""Failures walk the retry tiers into the dead-letter queue with their history, and
`payouts dlq` (run as an engineer runs it) replays, purges, exports and imports them safely."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from datetime import UTC
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aio_pika
import asyncpg
import pytest

from broker.publisher import ConfirmedPublisher
from schema.envelopes import ENVELOPE_TYPE
from schema.events import encode_event
from schema.settings import BrokerSettings, DatabaseSettings, Settings, WorkerSettings
from schema.topology import DELIVERY_LIMIT, ROUTING_KEY, Topology
from tests.books import assert_books_balance, wallet_balance
from tests.factories import payout_event
from tests.integration.pipeline import worker_running
from tests.integration.test_database_hosts import closed_port
from tests.polling import wait_until
from tests.services import fetch_value, queue_depth
from tests.tcp_proxy import TcpProxy

if TYPE_CHECKING:
    from schema.events import PayoutEvent
    from tests.services import Services

TIERS = (1, 2)
PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = """
[database]
url = "{database_url}"
[broker]
url = "{broker_url}"
namespace = "{namespace}"
retry_delays_seconds = [1, 2]
"""


class Scene:
    """A database, a namespace, a config file for the CLI, and helpers around them."""

    def __init__(self, services: Services, database_url: str, tmp_path: Path) -> None:
        self.database_url = database_url
        self.namespace = services.new_namespace(TIERS)
        self.broker = BrokerSettings(
            urls=(services.rabbitmq_url,),
            namespace=self.namespace,
            retry_delays_seconds=TIERS,
            retry_jitter=0.1,
        )
        self.topology = Topology.from_settings(self.broker)
        self.config = tmp_path / "payouts.toml"
        self.config.write_text(
            CONFIG.format(
                database_url=database_url,
                broker_url=services.rabbitmq_url,
                namespace=self.namespace,
            )
        )

    def settings(self, database_url: str | None = None) -> Settings:
        return Settings(
            database=DatabaseSettings(
                url=database_url or self.database_url, pool_max_size=4, acquire_timeout_seconds=2
            ),
            broker=self.broker,
            worker=WorkerSettings(
                prefetch=4, in_place_retry_seconds=0.2, shutdown_grace_seconds=5, status_port=0
            ),
        )

    def dlq(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.payouts("dlq", *args, stdin=stdin)

    def payouts(
        self, *args: str, stdin: str | None = None, config: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "payouts", "--config", str(config or self.config), *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
            input=stdin,
            env={"PATH": "/usr/bin:/bin", "PAYOUTS_LOG_LEVEL": "WARNING"},
            cwd=PROJECT_ROOT,
        )

    def dlq_json(self, *args: str) -> Any:
        done = self.dlq(*args, "--json")
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout)

    async def depth(self, queue: str) -> int:
        return await queue_depth(self.broker.urls[0], queue)

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await fetch_value(self.database_url, query, *args)

    async def returned_until_the_broker_dead_letters_it(self) -> None:
        """A consumer returns the work queue's one message until its delivery limit is spent and
        the broker dead-letters it, with only x-death."""
        connection = await aio_pika.connect(self.broker.urls[0])
        async with connection:
            queue = await (await connection.channel()).get_queue(self.topology.work_queue)
            for _ in range(DELIVERY_LIMIT + 1):
                delivery = await queue.get(timeout=10)
                await delivery.nack(requeue=True)
        await wait_for_depth(
            self, self.topology.dead_letter_queue, 1, "dead-lettered by the broker"
        )

    async def publish(self, events: list[PayoutEvent], *, in_envelope: bool = False) -> None:
        publisher = ConfirmedPublisher(self.broker, "test")
        publisher.start()
        await publisher.wait_ready()
        try:
            if in_envelope:
                await publisher.publish_envelope(events)
            else:
                await asyncio.gather(*(publisher.publish_event(e) for e in events))
        finally:
            await publisher.close()


@pytest.fixture
def scene(services: Services, database_url: str, tmp_path: Path) -> Scene:
    return Scene(services, database_url, tmp_path)


def payout(user: str, amount: int = 5, create_account: bool = True) -> PayoutEvent:
    return payout_event(user_id=user, amount=Decimal(amount), create_account=create_account)


async def wait_for_depth(scene: Scene, queue: str, expected: int, what: str) -> None:
    async def reached() -> bool:
        return await scene.depth(queue) == expected

    await wait_until(reached, what, 60)


async def test_transient_failures_walk_the_tiers_then_dead_letter_with_their_history(
    scene: Scene,
) -> None:
    proxy = await TcpProxy.in_front_of(scene.database_url)
    through_proxy = proxy.url_through(scene.database_url)
    events = [payout("gina") for _ in range(5)]
    try:
        async with worker_running(scene.settings(through_proxy)):
            await proxy.cut()  # the database is unreachable for the worker from now on
            await scene.publish(events)
            await wait_for_depth(scene, scene.topology.dead_letter_queue, 5, "all dead-lettered")
            rows = scene.dlq_json("list")
            assert len(rows) == 5
            assert {(r["kind"], r["attempts"], r["provider_instance"]) for r in rows} == {
                ("transient", len(TIERS) + 1, "ow")
            }
            details = scene.dlq_json("show", rows[0]["dead_letter_id"][:12])
            assert len(details["history"]) == len(TIERS) + 1
            assert details["original_routing_key"] == ROUTING_KEY
            assert details["worker"]
            assert details["first_failure_at"] < details["last_failure_at"]
            assert details["body"]["transaction_id"] in {e.transaction_id for e in events}

            await proxy.restore()
            dry = scene.dlq_json("replay", "--all", "--dry-run")
            assert (dry["selected"], dry["replayed"], len(dry["ids"])) == (5, 0, 5)
            await wait_for_depth(scene, scene.topology.dead_letter_queue, 5, "dry run kept all")
            summary = scene.dlq_json("replay", "--all")
            assert (summary["replayed"], summary["failed"]) == (5, 0)

            async def all_credited() -> bool:
                count = await scene.fetchval(
                    "SELECT count(*) FROM payouts WHERE status = 'credited'"
                )
                return int(count) == 5

            await wait_until(all_credited, "replayed payouts credited")
            assert scene.dlq_json("replay", "--all")["selected"] == 0  # a second run finds nothing
        assert await scene.depth(scene.topology.dead_letter_queue) == 0
        assert (
            await scene.fetchval(
                "SELECT count(*) FROM dead_letters WHERE status = 'replayed' AND kind = 'transient'"
            )
            == 5
        )
        conn = await asyncpg.connect(scene.database_url)
        try:
            assert await wallet_balance(conn, "gina", "COIN") == Decimal(25)
            await assert_books_balance(conn)
        finally:
            await conn.close()
    finally:
        await proxy.close()


async def test_business_failure_fixed_then_replayed_is_credited_once(scene: Scene) -> None:
    held = payout("hank", amount=7, create_account=False)
    async with worker_running(scene.settings()):
        await scene.publish([held])
        await wait_for_depth(
            scene, scene.topology.dead_letter_queue, 1, "held payout dead-lettered"
        )
        (row,) = scene.dlq_json("list", "--reason", "business")
        assert row["error"].startswith("held_unknown_account")
        assert await scene.fetchval("SELECT status FROM dead_letters") == "dead_lettered"

        # The fix: the game creates the user's wallet (without crediting anything itself).
        await scene.fetchval(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', 'hank', 'COIN')"
        )
        assert scene.dlq_json("replay", "--provider", "ow")["replayed"] == 1

        async def credited() -> bool:
            return bool(await scene.fetchval("SELECT status FROM payouts") == "credited")

        await wait_until(credited, "held payout credited after the replay")
    assert await scene.fetchval("SELECT balance FROM accounts WHERE owner = 'hank'") == Decimal(7)
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    assert await scene.fetchval("SELECT status FROM dead_letters") == "replayed"


async def test_a_held_payout_from_an_envelope_is_replayed_as_itself_and_credited_once(
    scene: Scene,
) -> None:
    """Its envelope's other payouts are credited and acked; the held one waits in the dead-letter
    queue as a single payout, which `payouts dlq` lists and replays like any other."""
    held = payout("uma", amount=7, create_account=False)
    async with worker_running(scene.settings()):
        await scene.publish([payout("val"), held, payout("val")], in_envelope=True)
        await wait_for_depth(
            scene, scene.topology.dead_letter_queue, 1, "held payout dead-lettered"
        )
        (row,) = scene.dlq_json("list")
        assert (row["kind"], row["transaction_id"]) == ("business", held.transaction_id)
        await scene.fetchval(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', 'uma', 'COIN')"
        )
        assert scene.dlq_json("replay", str(held.event_id))["replayed"] == 1

        async def credited() -> bool:
            return bool(
                await scene.fetchval("SELECT status FROM payouts WHERE user_id = 'uma'")
                == "credited"
            )

        await wait_until(credited, "held payout credited after the replay")
        assert scene.dlq_json("replay", "--all")["selected"] == 0
    assert await scene.fetchval("SELECT balance FROM accounts WHERE owner = 'uma'") == Decimal(7)
    assert await scene.fetchval("SELECT balance FROM accounts WHERE owner = 'val'") == Decimal(10)
    assert await scene.fetchval("SELECT count(*) FROM payouts") == 3
    assert await scene.depth(scene.topology.work_queue) == 0


async def test_a_payout_credited_since_it_was_dead_lettered_is_listed_so_and_replayed_only_forced(
    scene: Scene,
) -> None:
    """A held payout released by `payouts account create` leaves its dead letter behind: `list`
    says when it was credited, `replay` skips it saying why (a dry run too) and replays the one
    not credited, and a forced replay of it is a duplicate that credits nothing."""
    released = payout("kim", amount=7, create_account=False)
    still_held = payout("lou", amount=3, create_account=False)
    async with worker_running(scene.settings()):
        await scene.publish([released, still_held])
        await wait_for_depth(
            scene, scene.topology.dead_letter_queue, 2, "both held payouts dead-lettered"
        )
        assert {row["already_credited_at"] for row in scene.dlq_json("list")} == {None}

        created = scene.payouts("account", "create", "--user", "kim", "--currency", "COIN")
        assert created.returncode == 0, created.stderr
        # lou's wallet appears without crediting anything: its dead letter still needs a replay.
        await scene.fetchval(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', 'lou', 'COIN')"
        )
        credited_at = await scene.fetchval(
            "SELECT credited_at FROM payouts WHERE transaction_id = $1", released.transaction_id
        )
        rows = {row["transaction_id"]: row for row in scene.dlq_json("list")}
        assert rows[released.transaction_id]["already_credited_at"] == credited_at.isoformat()
        assert rows[still_held.transaction_id]["already_credited_at"] is None
        table = scene.dlq("list")
        assert table.stdout.splitlines()[0].split()[6] == "credited", table.stdout
        assert f"{credited_at.astimezone(UTC):%Y-%m-%dT%H:%M:%SZ}" in table.stdout
        skipped_id = rows[released.transaction_id]["dead_letter_id"]

        dry = scene.dlq("replay", "--all", "--dry-run", "--json")
        assert json.loads(dry.stdout)["ids"] == [rows[still_held.transaction_id]["dead_letter_id"]]
        assert f"{skipped_id}: would not be replayed: its payout was already credited" in (
            dry.stderr
        )
        replay = scene.dlq("replay", "--all", "--json")
        assert replay.returncode == 0, replay.stderr
        summary = json.loads(replay.stdout)
        assert (summary["replayed"], summary["skipped"], summary["failed"]) == (1, 1, 0)
        assert f"{skipped_id}: not replayed: its payout was already credited at" in replay.stderr

        async def lou_credited() -> bool:
            status = await scene.fetchval(
                "SELECT status FROM payouts WHERE transaction_id = $1", still_held.transaction_id
            )
            return bool(status == "credited")

        await wait_until(lou_credited, "the payout not credited yet replayed and credited")
        assert await scene.depth(scene.topology.dead_letter_queue) == 1  # the skipped one stays
        assert (
            await scene.fetchval(
                "SELECT status FROM dead_letters WHERE dead_letter_id = $1", skipped_id
            )
            == "dead_lettered"
        )

        forced = scene.dlq_json("replay", skipped_id, "--force")
        assert (forced["replayed"], forced["skipped"]) == (1, 0)

        async def seen_as_duplicate() -> bool:
            duplicates = await scene.fetchval(
                "SELECT duplicate_deliveries FROM payouts WHERE transaction_id = $1",
                released.transaction_id,
            )
            return int(duplicates) >= 1 and await scene.depth(scene.topology.work_queue) == 0

        await wait_until(seen_as_duplicate, "the forced replay processed as a duplicate")
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    conn = await asyncpg.connect(scene.database_url)
    try:
        assert await wallet_balance(conn, "kim", "COIN") == Decimal(7)
        assert await wallet_balance(conn, "lou", "COIN") == Decimal(3)
        assert (
            await conn.fetchval(
                "SELECT count(*) FROM ledger_entries JOIN payouts USING (payout_id)"
                " WHERE transaction_id = $1",
                released.transaction_id,
            )
            == 2
        )  # one credit: the wallet's entry and the funding account's
        await assert_books_balance(conn)
    finally:
        await conn.close()


async def test_dlq_list_without_postgres_still_lists_and_says_credits_are_unknown(
    scene: Scene, tmp_path: Path
) -> None:
    async with worker_running(scene.settings()):
        await scene.publish([payout("max", create_account=False)])
        await wait_for_depth(
            scene, scene.topology.dead_letter_queue, 1, "held payout dead-lettered"
        )
    away_host = closed_port()
    away = tmp_path / "away.toml"
    away.write_text(
        scene.config.read_text().replace(
            scene.database_url, f"postgresql://root@{away_host}/payouts"
        )
    )
    listed = scene.payouts("dlq", "list", "--json", config=away)
    assert listed.returncode == 0, listed.stderr
    (row,) = json.loads(listed.stdout)
    assert row["already_credited_at"] == "unknown"
    assert "cannot tell which payouts were credited since" in listed.stderr
    assert away_host in listed.stderr


async def test_interrupted_replay_run_again_and_a_queue_replayed_twice_credit_once(
    scene: Scene, tmp_path: Path
) -> None:
    events = [payout("ivy", amount=2, create_account=False) for _ in range(40)]
    export = tmp_path / "dead.jsonl"
    async with worker_running(scene.settings()):
        await scene.publish(events)
        await wait_for_depth(
            scene, scene.topology.dead_letter_queue, 40, "40 held payouts dead-lettered"
        )
        assert scene.dlq_json("export", str(export))["exported"] == 40
        await scene.fetchval(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', 'ivy', 'COIN')"
        )

        slow = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "payouts",
            "--config",
            str(scene.config),
            "dlq",
            "replay",
            "--all",
            "--rate",
            "10",
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            cwd=PROJECT_ROOT,
        )

        async def some_replayed() -> bool:
            return (
                int(
                    await scene.fetchval(
                        "SELECT count(*) FROM dead_letters WHERE status = 'replayed'"
                    )
                    or 0
                )
                >= 5
            )

        await wait_until(some_replayed, "the slow replay under way")
        slow.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(slow.wait(), 30) == 1, "stopped, so not a success"
        replayed = int(
            await scene.fetchval("SELECT count(*) FROM dead_letters WHERE status = 'replayed'")
        )
        # What the interrupted run did not ack returns to the queue once its connection closed.
        await wait_for_depth(
            scene,
            scene.topology.dead_letter_queue,
            40 - replayed,
            "the interrupted run's unacked messages back in the queue",
        )
        assert 0 < replayed < 40, "the interruption came too late or too early to prove anything"
        assert scene.dlq_json("replay", "--all")["replayed"] == 40 - replayed

        async def all_credited() -> bool:
            credited = await scene.fetchval(
                "SELECT count(*) FROM payouts WHERE status = 'credited'"
            )
            return int(credited) == 40 and await scene.depth(scene.topology.work_queue) == 0

        await wait_until(all_credited, "every payout credited after the second run")
        assert await scene.depth(scene.topology.dead_letter_queue) == 0
        assert (
            await scene.fetchval("SELECT count(*) FROM dead_letters WHERE status = 'replayed'")
            == 40
        )

        # The same dead-letter queue, brought back from its export: every payout in it is
        # credited now, so a replay skips them all, and one forced replays them a second time.
        assert scene.dlq_json("import", str(export))["imported"] == 40
        skipped = scene.dlq_json("replay", "--all")
        assert (skipped["replayed"], skipped["skipped"], skipped["failed"]) == (0, 40, 0)
        assert scene.dlq_json("replay", "--all", "--force")["replayed"] == 40

        async def drained() -> bool:
            duplicates = await scene.fetchval("SELECT sum(duplicate_deliveries) FROM payouts")
            return int(duplicates or 0) >= 40 and await scene.depth(scene.topology.work_queue) == 0

        await wait_until(drained, "the second replay processed")
    assert await scene.fetchval("SELECT balance FROM accounts WHERE owner = 'ivy'") == Decimal(80)
    assert await scene.fetchval("SELECT count(*) FROM ledger_entries") == 80


async def test_poison_is_dead_lettered_and_purge_needs_confirmation(scene: Scene) -> None:
    async with worker_running(scene.settings()):
        await scene.publish([])  # its publisher declares the topology before we publish raw
        connection = await aio_pika.connect(scene.broker.urls[0])
        async with connection:
            exchange = await (await connection.channel()).get_exchange(scene.topology.exchange)
            for body in (b"{", b'{"contract_version": 7}'):
                await exchange.publish(aio_pika.Message(body, message_id="junk"), ROUTING_KEY)
        await wait_for_depth(scene, scene.topology.dead_letter_queue, 2, "poison dead-lettered")
    rows = scene.dlq_json("list", "--reason", "poison")
    assert len(rows) == 2
    assert all(r["attempts"] == 1 for r in rows)

    refused = scene.dlq("purge", "--all", stdin="")
    assert refused.returncode != 0
    assert "without --yes" in refused.stderr
    assert await scene.depth(scene.topology.dead_letter_queue) == 2

    assert scene.dlq_json("purge", "--all", "--yes")["purged"] == 2
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    assert (
        await scene.fetchval(
            "SELECT count(*) FROM dead_letters WHERE status = 'purged' AND kind = 'poison'"
        )
        == 2
    )


async def test_a_message_the_broker_dead_lettered_itself_can_be_listed_and_replayed(
    scene: Scene,
) -> None:
    """A consumer that keeps returning a message exhausts the work queue's delivery limit; the
    broker dead-letters it with only x-death. The tool still shows and replays it."""
    event = payout("jack", amount=4)
    await scene.publish([event])
    await scene.returned_until_the_broker_dead_letters_it()
    (row,) = scene.dlq_json("list", "--reason", "broker:delivery_limit")
    assert (row["transaction_id"], row["provider_instance"]) == (event.transaction_id, "ow")
    async with worker_running(scene.settings()):
        assert scene.dlq_json("replay", row["dead_letter_id"][:12])["replayed"] == 1

        async def credited() -> bool:
            return bool(await scene.fetchval("SELECT status FROM payouts") == "credited")

        await wait_until(credited, "the broker's dead letter credited after the replay")


async def publish_raw(scene: Scene, message: aio_pika.Message) -> None:
    await scene.publish([])  # its publisher declares the topology before we publish raw
    connection = await aio_pika.connect(scene.broker.urls[0])
    async with connection:
        exchange = await (await connection.channel()).get_exchange(scene.topology.exchange)
        await exchange.publish(message, ROUTING_KEY)


async def test_a_malformed_envelope_is_listed_as_one_and_replayed_only_when_forced(
    scene: Scene,
) -> None:
    """Dead-lettered whole, it is shown as an envelope with its events counted and its reason;
    a replay leaves it in the queue (a worker would only dead-letter it again) unless forced."""
    enclosed = [json.loads(encode_event(payout("wes"))) for _ in range(3)]
    malformed = json.dumps({"envelope_version": 9, "events": enclosed}).encode()
    held = payout("xan", create_account=False)
    async with worker_running(scene.settings()):
        await publish_raw(
            scene, aio_pika.Message(malformed, message_id="env-9", type=ENVELOPE_TYPE)
        )
        await scene.publish([held])
        await wait_for_depth(scene, scene.topology.dead_letter_queue, 2, "both dead-lettered")

        (row,) = scene.dlq_json("list", "--envelopes")
        assert row["kind"] == "poison"
        assert "not a payout envelope" in row["error"]
        assert row["envelope"]["events"] == 3
        assert "not a payout envelope" in row["envelope"]["malformed"]
        assert {r["envelope"] for r in scene.dlq_json("list", "--reason", "business")} == {None}
        table = scene.dlq("list").stdout
        assert "envelope of 3 events" in table
        assert held.transaction_id in table

        await scene.fetchval(
            "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', 'xan', 'COIN')"
        )
        skipped = scene.dlq("replay", "--all", "--json")
        assert skipped.returncode == 0, skipped.stderr
        summary = json.loads(skipped.stdout)
        assert (summary["selected"], summary["replayed"], summary["skipped"]) == (2, 1, 1)
        assert summary["failed"] == 0
        assert "malformed envelope" in skipped.stderr
        assert "--force" in skipped.stderr
        await wait_for_depth(scene, scene.topology.dead_letter_queue, 1, "the held one replayed")
        (left,) = scene.dlq_json("list")
        assert left["envelope"]["events"] == 3
        assert await scene.fetchval("SELECT status FROM dead_letters WHERE kind = 'poison'") == (
            "dead_lettered"
        )

        # Forced, it goes back to the work queue, and this release's worker refuses it again.
        assert scene.dlq_json("replay", "--envelopes", "--force")["replayed"] == 1

        async def poisoned_again() -> bool:
            poisoned = "SELECT count(*) FROM dead_letters WHERE kind = 'poison'"
            return int(await scene.fetchval(poisoned)) == 2

        await wait_until(poisoned_again, "the forced envelope dead-lettered again")
        await wait_for_depth(scene, scene.topology.dead_letter_queue, 1, "back in the queue")
    assert await scene.fetchval("SELECT count(*) FROM payouts WHERE user_id = 'wes'") == 0


async def test_a_whole_envelope_the_broker_dead_lettered_is_replayed_as_an_envelope(
    scene: Scene, tmp_path: Path
) -> None:
    """Well-formed (dead-lettered by the delivery limit), it is replayed as an envelope, even
    once an export and import lost its AMQP type, and each of its events is credited once."""
    events = [payout("yul", amount=amount) for amount in (1, 2, 3)]
    await scene.publish(events, in_envelope=True)
    await scene.returned_until_the_broker_dead_letters_it()
    (row,) = scene.dlq_json("list", "--envelopes")
    assert row["kind"] == "broker:delivery_limit"
    assert row["envelope"] == {"events": 3, "malformed": None}

    export = tmp_path / "dead.jsonl"
    assert scene.dlq_json("export", str(export), "--envelopes")["exported"] == 1
    assert scene.dlq_json("purge", "--envelopes", "--yes")["purged"] == 1
    assert scene.dlq_json("import", str(export))["imported"] == 1
    (imported,) = scene.dlq_json("list", "--envelopes")
    assert imported["envelope"] == {"events": 3, "malformed": None}
    async with worker_running(scene.settings()):
        assert scene.dlq_json("replay", "--envelopes")["replayed"] == 1

        async def credited() -> bool:
            return int(await scene.fetchval("SELECT count(*) FROM payouts")) == 3

        await wait_until(credited, "the envelope's payouts credited after the replay")
        await wait_for_depth(scene, scene.topology.work_queue, 0, "the replay settled")
    assert await scene.fetchval("SELECT balance FROM accounts WHERE owner = 'yul'") == Decimal(6)
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    assert await scene.fetchval("SELECT count(*) FROM ledger_entries") == 6
