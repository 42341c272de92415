"""`python -m bench`: every measurement of docs/benchmarks.md, in one run, then the report.

Each figure is taken beside the ceiling it is compared with, on the same machine in the same run:
nothing else of the pipeline runs while one is measured.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import platform
import random
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import aio_pika
import asyncpg
import httpx

from bench import broker_ceiling, report
from bench.constants import (
    ABANDON_BEHIND_SECONDS,
    ANSWER_WAIT_SECONDS,
    CONFIRM_WAIT_SECONDS,
    CONNECTIONS,
    MAX_CONNECTIONS,
    SOAK_FRACTIONS,
    WAITS_FOR_OUTCOME,
)
from bench.observed import (
    IngressCounts,
    after_commit_ms,
    ingress_counts,
    latest_settled,
    percentile,
    read_settled,
    worker_counts,
)
from bench.processes import (
    MEASURED,
    CpuMeter,
    Load,
    Service,
    pgbench,
    profile,
    wait_http,
    wrk,
)
from bench.search import Step, highest_sustained, lowest_not_sustained
from bench.traffic import (
    ACCEPTED_BODIES,
    PARTNER,
    PROOF_ACCEPTED_BODY,
    PROTOCOLS,
    SECRETS,
    each_once,
    pick_user,
    polled,
    proof_lookup,
    sample_event,
    write_requests,
)
from schema.envelopes import ENVELOPE_TYPE, encode_envelope
from schema.events import encode_event
from schema.settings import BrokerSettings
from schema.topology import Topology
from tests.e2e.stack import free_port
from workers import event_loop

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from bench.traffic import Request

T = TypeVar("T")

ROOT = Path(__file__).resolve().parent.parent
PGBENCH_CLIENTS = 10  # = the worker's database pool
MEASURE_SECONDS = 10
DRAIN_PAYOUTS = 100_000
HOT_PAYOUTS = 20_000
HOT_WALLETS = 5
STEP_SECONDS = 15
# A step is sustained when its last payout is credited within this long of the load's end.
CAUGHT_UP_SECONDS = 2
# No new credit for this long, with the work queue empty: the step's payouts are all credited.
QUIET_SECONDS = 1.0
DRAIN_LIMIT_SECONDS = 120
# The profiled drain's length at the unprofiled rate: the sampler's 5 s, its start and a margin
# for the sampler's own cost.
PROFILE_DRAIN_SECONDS = 12
POSTGRES_SETTINGS_SHOWN = ("shared_buffers", "max_wal_size", "checkpoint_timeout", "autovacuum")
WATCH_SECONDS = 5  # between two looks at a soak attempt
# Of spec 000's rate: what specs 001 and 004 must sustain.
JSON_SHARE = 0.8
# Spec 002: the payouts of specs 001 and 004 its partner may see, how many it asks for once
# each, and how many it polls.
PARTNER_INSTANCES = ("aigame", "billing")
PROOF_PAYOUTS = 20_000
POLLED_PAYOUTS = 500
PROOF_NAME = "proof API (002), polled"
PROOF_FIRST_LABEL = "proof API (002), each payout once"
# What `--parts` may name, in the order a run takes them.
PARTS = (
    "http_ceiling",
    "broker_ceiling",
    "publishing_ceiling",
    "pgbench_baseline",
    "naive_handler",
    "ingress_per_protocol",
    "ingress_processes",
    "worker_drain",
    "end_to_end",
    # Not in a whole run: the end-to-end part measures the same at half of spec 000's rate.
    "answer_path",
)
WHOLE_RUN = tuple(part for part in PARTS if part != "answer_path")

CONFIG = """
[database]
url = "{database_url}"
pool_max_size = 10

[broker]
url = "{broker_url}"
namespace = "{namespace}"

[ingress]
host = "127.0.0.1"
port = {port}

[worker]
status_port = {status_port}

[[providers]]
name = "offerwall"
protocol = "offerwall_md5"
route = "/callbacks/offerwall"
secret_env = "BENCH_OFFERWALL_KEY"
default_currency = "COIN"
max_amount = "100000"
account_policy = "create"

[[providers]]
name = "adjoe"
protocol = "adjoe"
route = "/callbacks/adjoe"
secret_env = "BENCH_ADJOE_TOKEN"
max_amount = "100000"
account_policy = "create"

[[providers]]
name = "aigame"
protocol = "aigame_payout"
route = "/aigame/v1/wallet/payout"
secret_env = "BENCH_AIGAME_KEY"
allowed_currencies = ["VND2"]
amount_decimal_places = 2
max_amount = "100000000"
account_policy = "create"

[[providers]]
name = "billing"
protocol = "wallet_billing"
route = "/callbacks/billing"
secret_env = "BENCH_BILLING_SECRET"
default_currency = "VND"
max_amount = "10000000"
account_policy = "create"

[[partners]]
pid = "{partner}"
api_key_env = "BENCH_PROOF_API_KEY"
secret_env = "BENCH_PROOF_SECRET"
provider_instances = {partner_instances}
"""


@dataclass(frozen=True)
class _Pipeline:
    """The ingress and the worker of the end-to-end run."""

    ingress: Service
    worker: Service

    @property
    def pids(self) -> dict[str, list[int]]:
        assert self.ingress.popen is not None
        assert self.worker.popen is not None
        return {"ingress": [self.ingress.popen.pid], "worker": [self.worker.popen.pid]}


def _connections(protocol: str, rate: float) -> int:
    """wrk's connections for a steady run of `protocol` at `rate`: enough for each request to
    wait as long as its protocol may make it (Little's law), within CONNECTIONS and
    MAX_CONNECTIONS."""
    wait = ANSWER_WAIT_SECONDS if protocol.startswith(WAITS_FOR_OUTCOME) else CONFIRM_WAIT_SECONDS
    return min(MAX_CONNECTIONS, max(CONNECTIONS, math.ceil(rate * wait)))


class Bench:
    def __init__(self, admin_url: str, broker_url: str, workdir: Path, soak_seconds: int) -> None:
        self.admin_url = admin_url
        self.broker_url = broker_url
        self.workdir = workdir
        self.soak_seconds = soak_seconds
        suffix = uuid.uuid4().hex[:8]
        self.database = f"payouts_bench_{suffix}"
        self.database_url = _with_database(admin_url, self.database)
        self.namespace = f"payouts-bench-{suffix}"
        self.port = free_port()
        self.status_port = free_port()
        self.config = workdir / "payouts.toml"
        self.results: dict[str, Any] = {"cpu": {}, "profiles": {}}
        self.steps_run: list[str] = []
        self.memory: dict[str, list[tuple[float, float]]] = {}
        self.env = {**os.environ, **SECRETS, "PAYOUTS_CONFIG": str(self.config)}
        self._pipeline: _Pipeline  # while the end-to-end run is on

    # -- set-up and tear-down ------------------------------------------------------------------

    async def set_up(self) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'CREATE DATABASE "{self.database}"')
        finally:
            await admin.close()
        self.config.write_text(
            CONFIG.format(
                database_url=self.database_url,
                broker_url=self.broker_url,
                namespace=self.namespace,
                port=self.port,
                status_port=self.status_port,
                partner=PARTNER,
                partner_instances=json.dumps(list(PARTNER_INSTANCES)),
            )
        )
        await self._payouts("migrate")
        # Read, not assumed: the report states it, and durability must not be traded for speed.
        self.results["synchronous_commit"] = await self._sql("SHOW synchronous_commit")
        # The server's tuning, which the soaks depend on: the machine's, not the bench's.
        self.results["postgres_settings"] = {
            name: await self._sql(f"SHOW {name}") for name in POSTGRES_SETTINGS_SHOWN
        }
        for index, (name, make) in enumerate(PROTOCOLS.items()):
            count = 40_000 if name.startswith(("aigame", "wallet")) else 120_000
            write_requests(self._requests(name), make, count, seed=index)

    async def tear_down(self) -> None:
        admin = await asyncpg.connect(self.admin_url)
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)')
        finally:
            await admin.close()
        connection = await aio_pika.connect(self.broker_url)
        async with connection:
            channel = await connection.channel()
            topology = Topology(self.namespace)
            for spec in topology.definitions()["queues"]:
                await channel.queue_delete(spec["name"])
            for spec in topology.definitions()["exchanges"]:
                await channel.exchange_delete(spec["name"])
            # The raw clients' queue, left behind when a ceiling measurement failed.
            await channel.queue_delete(self._ceiling_queue)

    @property
    def _ceiling_queue(self) -> str:
        return f"{self.namespace}.ceiling"

    def _requests(self, protocol: str) -> Path:
        return self.workdir / f"{protocol.split()[0]}.requests"

    async def _payouts(self, *args: str) -> None:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "payouts", "--config", str(self.config), *args,
            env=self.env, stdout=asyncio.subprocess.DEVNULL,
        )  # fmt: skip
        if await process.wait() != 0:
            raise RuntimeError(f"payouts {' '.join(args)} failed")

    def _service(self, name: str, *command: str, env: dict[str, str] | None = None) -> Service:
        return Service(name, command, env or self.env, self.workdir / f"{name}.log")

    async def _sql(self, query: str, *args: Any) -> Any:
        conn = await asyncpg.connect(self.database_url)
        try:
            return await conn.fetchval(query, *args)
        finally:
            await conn.close()

    # -- ceilings and baselines ------------------------------------------------------------------

    async def http_ceiling(self) -> None:
        load = await self._uvicorn_load("bare Starlette", "bench.baselines:hello", {})
        self.results["http_ceiling"] = _load(load)

    async def naive_handler(self) -> None:
        env = {**self.env, "BENCH_DATABASE_URL": self.database_url}
        load = await self._uvicorn_load("naive handler", "bench.baselines:naive", env)
        credited = await self._sql("SELECT count(*) FROM payouts WHERE provider_instance = 'naive'")
        self.results["naive"] = {**_load(load), "credited": credited}

    async def _uvicorn_load(self, label: str, factory: str, env: dict[str, str]) -> Load:
        port = free_port()
        service = self._service(
            factory.rpartition(":")[2], sys.executable, "-m", "uvicorn", "--factory", factory,
            "--port", str(port),
            "--no-access-log", "--log-level", "warning", "--no-server-header",
            env={**self.env, **env},
        )  # fmt: skip
        service.start()
        try:
            await wait_http(f"http://127.0.0.1:{port}/healthz", 30)
            assert service.popen is not None
            return await self._metered(
                label,
                [service.popen.pid],
                wrk(
                    f"http://127.0.0.1:{port}",
                    self._requests("offerwall_md5"),
                    seconds=MEASURE_SECONDS,
                    connections=CONNECTIONS,
                ),
            )
        finally:
            await service.stop()

    async def broker_ceiling(self) -> None:
        body = encode_event(sample_event("ceiling", "user-1", Decimal(7)))
        queue = self._ceiling_queue
        # The raw clients run in this process: it is the one measured.
        publish = await self._metered(
            "raw publisher",
            [os.getpid()],
            broker_ceiling.publish_rate(self.broker_url, queue, body, CONNECTIONS, MEASURE_SECONDS),
        )
        await broker_ceiling.prefill(self.broker_url, queue, body, DRAIN_PAYOUTS)
        consume = await self._metered(
            "raw consumer",
            [os.getpid()],
            broker_ceiling.consume_rate(self.broker_url, queue, DRAIN_PAYOUTS, prefetch=200),
        )
        self.results["broker"] = {"publish_per_second": publish, "consume_per_second": consume}

    async def publishing_ceiling(self) -> None:
        """An endpoint that only publishes: the broker ceiling as an HTTP ingress meets it."""
        queue = f"{self.namespace}.publishing"
        env = {"BENCH_RABBITMQ_URL": self.broker_url, "BENCH_PUBLISH_QUEUE": queue}
        try:
            load = await self._uvicorn_load("HTTP + publish", "bench.baselines:publishing", env)
        finally:
            connection = await aio_pika.connect(self.broker_url)
            async with connection:
                await (await connection.channel()).queue_delete(queue)
        self.results["http_publish"] = _load(load)

    async def pgbench_baseline(self) -> None:
        conn = await asyncpg.connect(self.database_url)
        try:
            await conn.execute(
                "INSERT INTO accounts (kind, owner, currency)"
                " SELECT 'wallet', 'pg-' || n, 'COIN' FROM generate_series(1, 10000) n;"
                " INSERT INTO accounts (kind, owner, currency)"
                " VALUES ('funding', 'pgbench', 'COIN')"
            )
        finally:
            await conn.close()
        script = self.workdir / "pgbench_credit.sql"
        results = {}
        for label, users in (("hot", HOT_WALLETS), ("spread", 10_000)):
            script.write_text(
                (ROOT / "bench" / "pgbench_credit.sql").read_text().replace(":users", str(users))
            )
            results[label] = await pgbench(
                self.database_url, script, clients=PGBENCH_CLIENTS, seconds=MEASURE_SECONDS
            )
        self.results["pgbench"] = results
        self.results["pgbench_clients"] = PGBENCH_CLIENTS

    # -- the pipeline ----------------------------------------------------------------------------

    def _ingress(self, processes: int = 1) -> Service:
        return self._service(
            f"ingress-{processes}", sys.executable, "-m", "payouts", "ingress",
            "--processes", str(processes),
        )  # fmt: skip

    def _workers(self, processes: int, *extra: str) -> Service:
        return self._service(
            f"worker-{processes}", sys.executable, "-m", "payouts", "worker",
            "--processes", str(processes), *extra,
        )  # fmt: skip

    async def ingress_per_protocol(self) -> None:
        """The query protocols against the ingress alone. The JSON ones wait for a worker's
        answer: they run with one worker, on an emptied work queue (the query protocols' payouts
        are not needed), so the answers do not wait behind a backlog."""
        ingress = self._ingress()
        ingress.start()
        worker = None
        results = {}
        try:
            await wait_http(f"http://127.0.0.1:{self.port}/readyz")
            for name in PROTOCOLS:
                if name.startswith(("aigame", "wallet")) and worker is None:
                    await self._purge_work_queue()
                    worker = self._workers(1)
                    worker.start()
                    await wait_http(f"http://127.0.0.1:{self.status_port}/readyz")
                assert ingress.popen is not None
                if name.startswith("offerwall"):
                    label = "ingress (spec 000)"
                    load = await self._metered(
                        label, [ingress.popen.pid], self._wrk(name, MEASURE_SECONDS)
                    )
                    # Profiled in a pass of its own: the sampler's CPU would slow the one measured.
                    await self._profiled(
                        {label: ingress.popen.pid},
                        self._wrk(name, MEASURE_SECONDS),
                        MEASURE_SECONDS,
                    )
                else:
                    load = await self._wrk(name, MEASURE_SECONDS)
                results[name] = {**_load(load), "with_worker": worker is not None}
        finally:
            await ingress.stop()
            if worker is not None:
                await worker.stop()
        self.results["ingress"] = results
        self.memory["ingress (protocols)"] = ingress.rss_samples

    async def ingress_processes(self) -> None:
        """Spec 000 against `payouts ingress --processes 2`: what a second process buys."""
        ingress = self._ingress(processes=2)
        ingress.start()
        try:
            await wait_http(f"http://127.0.0.1:{self.port}/readyz")
            assert ingress.popen is not None
            load = await self._metered(
                "ingress (spec 000), 2 processes",
                [ingress.popen.pid],
                self._wrk("offerwall_md5", MEASURE_SECONDS),
                processes=2,
            )
        finally:
            await ingress.stop()
        await self._purge_work_queue()  # the drains start from an empty queue
        self.results["ingress"]["offerwall_md5 (000), 2 processes"] = {
            **_load(load),
            "with_worker": False,
        }

    def _wrk(self, protocol: str, seconds: int) -> Any:
        name = next(name for name in PROTOCOLS if name.startswith(protocol))
        return wrk(
            f"http://127.0.0.1:{self.port}",
            self._requests(protocol),
            seconds=seconds,
            connections=CONNECTIONS,
            accepted_body=ACCEPTED_BODIES.get(name, ""),
        )

    async def _metered(
        self, label: str, pids: list[int], work: Awaitable[T], *, processes: int = 1
    ) -> T:
        """Run `work` while counting the cores used by `pids` (with their children), by the
        services and by the whole machine: the row of `label` in the table of what limits it."""
        meter = CpuMeter({MEASURED: pids})
        meter.start()
        result = await work
        self.results["cpu"][label] = {"cores": meter.stop(), "processes": processes}
        return result

    async def _profiled(self, pids: dict[str, int], work: Awaitable[Any], seconds: float) -> None:
        """Run `work` while py-spy samples each of `pids` (by label) for most of it."""
        task = asyncio.ensure_future(work)
        await asyncio.sleep(1)
        sampled = max(2, int(seconds) - 3)
        found = await asyncio.gather(
            *(
                # A label may hold a slash ("at 900/s"), which a file name cannot.
                profile(pid, sampled, self.workdir / f"{label.replace('/', ' per ')}.profile")
                for label, pid in pids.items()
            )
        )
        for label, one in zip(pids, found, strict=True):
            self.results["profiles"][label] = {
                "running": one.running[:12],
                "on_stack": one.on_stack[:18],
            }
        await task

    async def _purge_work_queue(self) -> None:
        connection = await aio_pika.connect(self.broker_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(Topology(self.namespace).work_queue, passive=True)
            await queue.purge()

    async def worker_drain(self) -> None:
        drains = {}
        for processes in (1, 2, 4):
            drains[f"{processes} process(es)"] = await self._drain(
                f"drain-{processes}", DRAIN_PAYOUTS, processes, hot=False
            )
        size = BrokerSettings.model_fields["max_events_per_message"].default
        drains[f"envelopes of {size} (1 process)"] = await self._drain(
            "drain-envelopes", DRAIN_PAYOUTS, 1, hot=False, envelope_size=size
        )
        drains["5 hot wallets, batched (1 process)"] = await self._drain(
            "hot-batched", HOT_PAYOUTS, 1, hot=True
        )
        drains["5 hot wallets, one payout per transaction (1 process)"] = await self._drain(
            "hot-single", HOT_PAYOUTS, 1, hot=True, one_per_transaction=True
        )
        self.results["drain"] = drains
        # Profiled in a drain of its own: the sampler's CPU would slow the one measured. Long
        # enough to outlast the sampling, at the rate one process just drained at, unsampled.
        rate = drains["1 process(es)"]["per_second"]
        count = min(DRAIN_PAYOUTS, int(rate * PROFILE_DRAIN_SECONDS))
        await self._drain("drain-profiled", count, 1, hot=False, profiled=True)

    async def _drain(
        self,
        instance: str,
        count: int,
        processes: int,
        *,
        hot: bool,
        one_per_transaction: bool = False,
        profiled: bool = False,
        envelope_size: int | None = None,
    ) -> dict[str, float]:
        """`count` payouts drained, one a message or `envelope_size` to an envelope."""
        rng = random.Random(instance)
        events = [
            sample_event(
                instance,
                f"hot-{rng.randrange(HOT_WALLETS)}" if hot else pick_user(rng),
                Decimal(rng.randint(1, 500)),
            )
            for _ in range(count)
        ]
        work_queue = Topology(self.namespace).work_queue
        if envelope_size is None:
            await broker_ceiling.fill(
                self.broker_url, work_queue, [encode_event(e) for e in events]
            )
        else:
            envelopes = [
                encode_envelope(events[start : start + envelope_size])
                for start in range(0, count, envelope_size)
            ]
            await broker_ceiling.fill(
                self.broker_url, work_queue, envelopes, message_type=ENVELOPE_TYPE
            )
        config = self.config
        if one_per_transaction:
            # One payout per transaction, with as many transactions at once as pgbench's clients
            # (the worker's whole pool): the fairest one-per-transaction worker, not a slow one.
            config = self.workdir / "payouts-one-per-transaction.toml"
            config.write_text(
                self.config.read_text().replace(
                    "[worker]\n",
                    f"[worker]\nbatch_size = 1\nconcurrent_batches = {PGBENCH_CLIENTS}\n",
                )
            )
        service = self._service(
            f"drain-{instance}", sys.executable, "-m", "payouts", "--config", str(config),
            "worker", "--processes", str(processes),
        )  # fmt: skip
        service.start()
        try:
            await self._until_credited(instance, 1)  # its processes are up and consuming
            assert service.popen is not None
            drained = self._until_credited(instance, count)
            if profiled:
                await self._profiled(
                    {"worker (1 process)": service.popen.pid}, drained, PROFILE_DRAIN_SECONDS - 4
                )
            elif not hot:
                await self._metered(
                    f"worker drain, {processes} process(es)"
                    + (f", envelopes of {envelope_size}" if envelope_size else ""),
                    [service.popen.pid],
                    drained,
                    processes=processes,
                )
            else:
                await drained
        finally:
            await service.stop()
        conn = await asyncpg.connect(self.database_url)
        try:
            seconds = await conn.fetchval(
                "SELECT extract(epoch FROM max(credited_at) - min(credited_at))"
                " FROM payouts WHERE provider_instance = $1",
                instance,
            )
        finally:
            await conn.close()
        if not profiled:
            self.memory[f"worker ({instance})"] = service.rss_samples
        return {
            "payouts": count,
            "per_second": count / float(seconds),
            "peak_rss_mib": service.peak_rss_mib(),
        }

    async def _until_credited(self, instance: str, count: int) -> None:
        deadline = time.monotonic() + 600
        while await self._credited(instance) < count:
            if time.monotonic() > deadline:
                raise RuntimeError(f"{instance}: not drained in 10 minutes")
            await asyncio.sleep(0.5)

    async def _credited(self, instance: str) -> int:
        return int(
            await self._sql(
                "SELECT count(*) FROM payouts WHERE provider_instance = $1 AND status = 'credited'",
                instance,
            )
        )

    async def end_to_end(self, ceiling: float) -> None:
        """Stepped steady rates to find the highest the pipeline sustains; a soak at that rate,
        stepping down when it does not hold; a soak at half the rate that held, with the
        request-to-credit latency; the protocols that wait for the outcome at half and at
        JSON_SHARE of it; and the partners' look-ups of spec 002."""
        async with self._running_pipeline() as (ingress, worker):
            sustained, steps = await highest_sustained(
                lambda rate: self._steady("offerwall_md5", rate, STEP_SECONDS), ceiling
            )
            await self._profile_end_to_end(steps)
            # The rate of the step sustained at the highest rate, to be held for the whole soak;
            # the first step's if none was.
            highest = max(
                (step for step in steps if step["sustained"]),
                key=lambda step: step["achieved_per_second"],
                default=steps[0],
            )["target_per_second"]
            soaks, held = [], None
            for fraction in SOAK_FRACTIONS:
                window = self._memory_window()
                attempt = await self._steady(
                    "offerwall_md5", highest * fraction, self.soak_seconds, watch=True
                )
                soaks.append(attempt)
                self._keep_memory(
                    window,
                    f"soak at {attempt['target_per_second']:,.0f}/s"
                    + ("" if attempt["sustained"] else ", not held"),
                )
                if attempt["sustained"]:
                    held = attempt
                    break
            # Spec 000's rate, which the others are measured against: the soak's that held;
            # the highest step's if none did.
            rate = held["target_per_second"] if held is not None else highest
            window = self._memory_window()
            soak = await self._steady("adjoe", rate / 2, self.soak_seconds)
            self._keep_memory(window, "soak at half that rate")
            # Both protocols that answer with the outcome: at half the rate for their answer
            # times, and at JSON_SHARE of it for their throughput.
            json_answers = [
                await self._steady(protocol, rate / 2, STEP_SECONDS)
                for protocol in WAITS_FOR_OUTCOME
            ]
            json_rates = [
                await self._steady(protocol, rate * JSON_SHARE, STEP_SECONDS)
                for protocol in WAITS_FOR_OUTCOME
            ]
            proofs = await self._proofs(rate / 2)
        self.results["end_to_end"] = {
            "ceiling_per_second": ceiling,
            "steps": steps,
            "highest_sustained_per_second": sustained,
            "soaks": soaks,
            "held_per_second": held["achieved_per_second"] if held is not None else None,
            "rate_per_second": rate,
            "soak": soak,
            "json_answers": json_answers,
            "json_rates": json_rates,
            "json_share": JSON_SHARE,
            "proofs": proofs,
            "max_events_per_message": BrokerSettings.model_fields["max_events_per_message"].default,
        }
        self.memory["ingress (end to end)"] = ingress.rss_samples
        self.memory["worker (end to end)"] = worker.rss_samples

    async def answer_path(self, rate: float, rounds: int) -> None:
        """Where an answer's time goes at one rate, `rounds` times over: spec 003, which answers
        at the confirm, and specs 001 and 004, which answer after the commit, each for a step.
        The end-to-end part runs them at half of spec 000's rate; this runs them alone, at the
        rate given, to try a change against them."""
        runs = []
        async with self._running_pipeline():
            for _ in range(rounds):
                for protocol in ("adjoe", *WAITS_FOR_OUTCOME):
                    runs.append(await self._steady(protocol, rate, STEP_SECONDS))
        self.results["answer_path"] = {"rate_per_second": rate, "runs": runs}

    @contextlib.asynccontextmanager
    async def _running_pipeline(self) -> AsyncIterator[tuple[Service, Service]]:
        """The ingress and one worker process, ready, for the runs of `_steady`."""
        ingress, worker = self._ingress(), self._workers(1)
        self._pipeline = _Pipeline(ingress, worker)
        ingress.start()
        worker.start()
        try:
            await wait_http(f"http://127.0.0.1:{self.port}/readyz")
            await wait_http(f"http://127.0.0.1:{self.status_port}/readyz")
            yield ingress, worker
        finally:
            await ingress.stop()
            await worker.stop()

    def _memory_window(self) -> tuple[int, int]:
        """Where the pipeline's memory samples stand: a run's are those taken after."""
        return len(self._pipeline.ingress.rss_samples), len(self._pipeline.worker.rss_samples)

    def _keep_memory(self, window: tuple[int, int], label: str) -> None:
        self.memory[f"ingress ({label})"] = self._pipeline.ingress.rss_samples[window[0] :]
        self.memory[f"worker ({label})"] = self._pipeline.worker.rss_samples[window[1] :]

    async def _profile_end_to_end(self, steps: list[Step]) -> None:
        """The lowest rate not sustained, once more, with the ingress and the worker sampled: what
        held the pipeline there. A step of its own: the sampler's CPU would slow a measured one."""
        if (failed := lowest_not_sustained(steps)) is None:
            return
        rate = failed["target_per_second"]
        await self._profiled(
            {
                f"end to end at {rate:,.0f}/s: {name}": group[0]
                for name, group in self._pipeline.pids.items()
            },
            self._steady("offerwall_md5", rate, STEP_SECONDS),
            STEP_SECONDS,
        )

    async def _proofs(self, rate: float) -> dict[str, Any]:
        """Spec 002 against the payouts of specs 001 and 004 just credited: flat out, each payout
        asked for once (each answer draws its receipt); then paced at `rate`, a partner polling
        POLLED_PAYOUTS payouts whose receipts were drawn before (the ingress keeps them)."""
        conn = await asyncpg.connect(self.database_url)
        try:
            rows = await conn.fetch(
                "SELECT transaction_id FROM payouts"
                " WHERE provider_instance = ANY($1::text[]) AND status = 'credited' LIMIT $2",
                list(PARTNER_INSTANCES),
                PROOF_PAYOUTS,
            )
        finally:
            await conn.close()
        order_ids = [row["transaction_id"] for row in rows]
        if len(order_ids) < 2 * POLLED_PAYOUTS:
            raise RuntimeError(f"only {len(order_ids)} payouts of specs 001 and 004 to look up")
        first = self.workdir / "proof-first.requests"
        write_requests(first, each_once(order_ids), len(order_ids), seed=2)
        ingress_pid = self._pipeline.pids["ingress"][0]
        first_lookups = await self._metered(
            PROOF_FIRST_LABEL,
            [ingress_pid],
            wrk(
                f"http://127.0.0.1:{self.port}",
                first,
                seconds=MEASURE_SECONDS,
                connections=CONNECTIONS,
                accepted_body=PROOF_ACCEPTED_BODY,
            ),
        )
        # The last ones: the flat-out run asked for the first ones.
        chosen = order_ids[-POLLED_PAYOUTS:]
        warm_up_refused = await self._look_up_once(chosen)
        polled_run = await self._steady(
            PROOF_NAME,
            rate,
            STEP_SECONDS,
            make=polled(chosen),
            accepted_body=PROOF_ACCEPTED_BODY,
            credits=False,
        )
        return {
            "first_lookups": {**_load(first_lookups), "payouts": len(order_ids)},
            "polled": {**polled_run, "payouts": len(chosen), "warm_up_refused": warm_up_refused},
        }

    async def _look_up_once(self, order_ids: list[str]) -> int:
        """Each of `order_ids` asked for once, a few at a time: their receipts drawn. How many
        answers were not a success."""
        slots = asyncio.Semaphore(16)
        refused = 0
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}") as client:

            async def ask(order_id: str) -> None:
                nonlocal refused
                request = proof_lookup(order_id)
                async with slots:
                    answer = await client.post(
                        request.path, content=request.body, headers=dict(request.headers)
                    )
                refused += PROOF_ACCEPTED_BODY not in answer.text

            await asyncio.gather(*(ask(order_id) for order_id in order_ids))
        return refused

    async def _steady(
        self,
        protocol: str,
        rate: float,
        seconds: int,
        *,
        watch: bool = False,
        make: Callable[[random.Random], Request] | None = None,
        accepted_body: str | None = None,
        credits: bool = True,
    ) -> dict[str, Any]:
        """One steady rate for `seconds` against the running pipeline, with the cores each of
        its processes used meanwhile. With `watch`, the run stops early once it can no longer
        be sustained (`_watch`). `make` builds the requests (else the protocol's own);
        `credits` is False for requests that credit nothing (spec 002)."""
        name = next((name for name in PROTOCOLS if name.startswith(protocol)), protocol)
        # Fresh transactions for every step (and fresh timestamps for spec 001's window).
        requests = self.workdir / f"steady-{len(self.steps_run)}.requests"
        self.steps_run.append(name)
        write_requests(
            requests,
            make or PROTOCOLS[name],
            int(rate * seconds * 1.2) + 1000,
            seed=100 + len(self.steps_run),
        )
        pipeline = self._pipeline
        log_offset = pipeline.worker.log_path.stat().st_size
        ingress_log_offset = pipeline.ingress.log_path.stat().st_size
        before = await ingress_counts(self._metrics_url)
        worker_before = await worker_counts(self._worker_metrics_url)
        connections = _connections(name, rate)
        abandoned: list[str] = []
        timeline: list[dict[str, float]] = []
        started = time.monotonic()
        meter = CpuMeter(pipeline.pids)
        meter.start()
        load = await wrk(
            f"http://127.0.0.1:{self.port}",
            requests,
            seconds=seconds,
            connections=connections,
            rate=rate,
            accepted_body=ACCEPTED_BODIES.get(name, "") if accepted_body is None else accepted_body,
            watch=self._watch(rate, seconds, before, abandoned, timeline) if watch else None,
        )
        cores = meter.stop()
        ended = datetime.now(UTC)
        ran = time.monotonic() - started
        counts = await ingress_counts(self._metrics_url) - before
        requests.unlink()  # a soak's file is large
        # Every payout of the step credited before the latency is read, and before the next step
        # starts: else the slowest credits would be missing from it, and the next step would
        # start behind this one's backlog.
        await self._drained()
        settled = read_settled(pipeline.worker.log_path, log_offset)
        last_credit = settled.last_credit
        worker = await worker_counts(self._worker_metrics_url) - worker_before
        # Only a protocol that waits for the outcome answers after the commit.
        after_commit = (
            after_commit_ms(pipeline.ingress.log_path, ingress_log_offset, settled)
            if name.startswith(WAITS_FOR_OUTCOME)
            else []
        )
        return {
            "protocol": name,
            "target_per_second": rate,
            "achieved_per_second": load.requests_per_second,
            "connections": connections,
            "answer_p50_ms": load.p50_ms,
            "answer_p99_ms": load.p99_ms,
            "credit_p50_ms": settled.percentile(0.5),
            "credit_p99_ms": settled.percentile(0.99),
            "credited": len(settled.credit_lags_ms),
            "non_2xx": load.non_2xx,
            "errors": load.errors,
            "refused": load.refused,
            "events_per_message": counts.events / counts.messages if counts.messages else None,
            "events": counts.events,
            "messages": counts.messages,
            # Where the time went: the wait for the broker's confirm, the crediting
            # transactions and their size, and (waiting protocols) from the commit to the answer.
            "confirm_mean_ms": (
                1000 * counts.publish_seconds / counts.publishes if counts.publishes else None
            ),
            "transaction_mean_ms": (
                1000 * worker.transaction_seconds / worker.transactions
                if worker.transactions
                else None
            ),
            "payouts_per_transaction": (
                worker.batched / worker.transactions if worker.transactions else None
            ),
            "after_commit_p50_ms": percentile(after_commit, 0.5) if after_commit else None,
            "after_commit_p99_ms": percentile(after_commit, 0.99) if after_commit else None,
            "caught_up_seconds": (
                (last_credit - ended).total_seconds() if last_credit is not None else None
            ),
            "abandoned": abandoned[0] if abandoned else None,
            # Sustained: the rate reached, every answer an acceptance, and the last payout
            # credited within CAUGHT_UP_SECONDS of the load's end.
            "sustained": (
                load.requests_per_second >= 0.95 * rate
                and load.refused == 0
                and load.errors == 0
                and not abandoned
                and (
                    not credits
                    or (
                        last_credit is not None
                        and last_credit <= ended + timedelta(seconds=CAUGHT_UP_SECONDS)
                    )
                )
            ),
            "seconds": seconds,
            "ran_seconds": round(ran, 1),
            "cores": cores,
            "timeline": timeline,
        }

    @property
    def _metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    @property
    def _worker_metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.status_port}/metrics"

    async def _watch(
        self,
        rate: float,
        seconds: int,
        before: IngressCounts,
        reasons: list[str],
        timeline: list[dict[str, float]],
    ) -> None:
        """Return, with the reason in `reasons`, once a run at `rate` for `seconds` can no longer
        be sustained: a callback refused, 95% of the rate out of reach even if every remaining
        second ran at the full rate, or the worker more than ABANDON_BEHIND_SECONDS behind.
        Each look goes into `timeline`: when the run fell behind, and beside what."""
        started, started_at = time.monotonic(), datetime.now(UTC)
        postgres_before = await self._postgres_counters()
        while True:
            await asyncio.sleep(WATCH_SECONDS)
            elapsed = time.monotonic() - started
            counts = await ingress_counts(self._metrics_url) - before
            postgres = await self._postgres_counters()
            timeline.append(
                {
                    "elapsed": elapsed,
                    "answered": counts.answered,
                    **{name: postgres[name] - postgres_before[name] for name in postgres},
                    "worker_behind": self._worker_behind(started_at, elapsed) or 0.0,
                }
            )
            if counts.refused:
                reasons.append(f"{counts.refused:,.0f} callbacks refused in {elapsed:.0f} s")
                return
            if counts.answered + rate * (seconds - elapsed) < 0.95 * rate * seconds:
                reasons.append(
                    f"{counts.answered / elapsed:,.0f}/s answered in {elapsed:.0f} s:"
                    " 95% of the rate out of reach"
                )
                return
            behind = self._worker_behind(started_at, elapsed)
            if behind is not None and behind > ABANDON_BEHIND_SECONDS:
                reasons.append(f"the worker {behind:.0f} s behind after {elapsed:.0f} s")
                return

    def _worker_behind(self, started_at: datetime, elapsed: float) -> float | None:
        """How long ago the payout the worker settled last was received, or since it settled
        it; None when its log's last lines are about something else."""
        latest = latest_settled(self._pipeline.worker.log_path)
        if latest is None:
            return None
        if latest[0] < started_at:
            return elapsed  # nothing settled since the start
        return max(latest[1], (datetime.now(UTC) - latest[0]).total_seconds())

    async def _postgres_counters(self) -> dict[str, float]:
        """Postgres's cumulative counters that tell whether it fell behind: its checkpoints
        (timed, or asked for by a full WAL), the WAL it wrote, and the bench database's blocks
        read from outside its buffers."""
        conn = await asyncpg.connect(self.database_url)
        try:
            row = await conn.fetchrow(
                "SELECT (SELECT checkpoints_timed + checkpoints_req FROM pg_stat_bgwriter)"
                " AS checkpoints,"
                " pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0') AS wal_bytes,"
                " (SELECT blks_read FROM pg_stat_database WHERE datname = current_database())"
                " AS blocks_read"
            )
        finally:
            await conn.close()
        assert row is not None
        return {name: float(value) for name, value in row.items()}

    async def _drained(self) -> None:
        """Wait until the payouts received so far are all settled: the work queue empty and no
        payout settled for QUIET_SECONDS (the worker's prefetched deliveries are not in the
        queue's count), as the worker's log says."""
        deadline = time.monotonic() + DRAIN_LIMIT_SECONDS
        seen: tuple[datetime, float] | None = None
        changed = time.monotonic()
        while time.monotonic() < deadline:
            latest = latest_settled(self._pipeline.worker.log_path)
            if latest != seen:
                seen, changed = latest, time.monotonic()
            elif time.monotonic() - changed >= QUIET_SECONDS and not await self._backlog():
                return
            await asyncio.sleep(0.25)
        raise RuntimeError(f"the payouts received were not settled in {DRAIN_LIMIT_SECONDS} s")

    async def _backlog(self) -> int:
        connection = await aio_pika.connect(self.broker_url)
        async with connection:
            channel = await connection.channel()
            queue = await channel.declare_queue(Topology(self.namespace).work_queue, passive=True)
            return int(queue.declaration_result.message_count or 0)


def _load(load: Load) -> dict[str, float]:
    return {
        "per_second": load.requests_per_second,
        "p50_ms": load.p50_ms,
        "p99_ms": load.p99_ms,
        "non_2xx": load.non_2xx,
        "errors": load.errors,
        "refused": load.refused,
    }


def _with_database(url: str, database: str) -> str:
    base, _, _ = url.rpartition("/")
    return f"{base}/{database}"


async def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--soak-seconds", type=int, default=60, help="each soak (default 60)")
    parser.add_argument("--report", default=str(ROOT / "docs" / "benchmarks.md"))
    parser.add_argument(
        "--rate", type=float, default=1600.0, help="answer_path's rate per second (default 1600)"
    )
    parser.add_argument(
        "--rounds", type=int, default=3, help="answer_path's runs of each protocol (default 3)"
    )
    parser.add_argument(
        "--parts",
        help="only these parts, comma-separated, of: " + ", ".join(PARTS) + " (end_to_end runs"
        " broker_ceiling too, for its ceiling). To reproduce part of the report: the results"
        " are printed and the report is not written. Default: every part, and the report.",
    )
    args = parser.parse_args()
    parts = WHOLE_RUN if args.parts is None else tuple(args.parts.split(","))
    if unknown := set(parts) - set(PARTS):
        parser.error(f"unknown parts: {', '.join(sorted(unknown))}")
    if "end_to_end" in parts:
        parts = (*parts, "broker_ceiling")
    admin_url = os.environ.get(
        "BENCH_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
    )
    broker_url = os.environ.get("BENCH_RABBITMQ_URL", "amqp://guest:guest@127.0.0.1:5672/")
    started = time.monotonic()
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix="payouts-bench-") as workdir:
        bench = Bench(admin_url, broker_url, Path(workdir), args.soak_seconds)
        try:
            await _timed(seconds, "set_up", bench.set_up())
            for name in PARTS:
                if name not in parts:
                    continue
                if name == "end_to_end":
                    # The lower of the broker's two ceilings: what the pipeline could at best
                    # sustain.
                    ceiling = min(
                        bench.results["broker"]["publish_per_second"],
                        bench.results["broker"]["consume_per_second"],
                    )
                    await _timed(seconds, name, bench.end_to_end(ceiling))
                elif name == "answer_path":
                    await _timed(seconds, name, bench.answer_path(args.rate, args.rounds))
                else:
                    await _timed(seconds, name, getattr(bench, name)())
        finally:
            await _timed(seconds, "tear_down", bench.tear_down())
    bench.results["run"] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "seconds": round(time.monotonic() - started),
        "parts": {name: round(took) for name, took in seconds.items()},
        "machine": _machine(),
        "cores": os.cpu_count() or 1,
        "command": "bench/run.sh"
        + (f" --soak-seconds {args.soak_seconds}" if args.soak_seconds != 60 else ""),
    }
    if args.parts is None:
        report.write(Path(args.report), bench.results, bench.memory)
    print(json.dumps(bench.results, indent=2, default=str))
    return 0


async def _timed(seconds: dict[str, float], name: str, work: Awaitable[None]) -> None:
    print(f"bench: {name} ...", flush=True)
    started = time.monotonic()
    await work
    seconds[name] = time.monotonic() - started
    print(f"bench: {name} took {seconds[name]:.0f} s", flush=True)


def _machine() -> str:
    cpu = next(
        (line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
         if line.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    memory_kib = int(Path("/proc/meminfo").read_text().split()[1])
    return (
        f"{os.cpu_count()} cores ({cpu}), {memory_kib // 1024 // 1024} GiB, {platform.platform()}"
    )


if __name__ == "__main__":
    # The ceilings run in this process: on the loop the pipeline's processes use.
    sys.exit(event_loop.run(main()))
