"""The benchmark harness's own logic: the traffic it replays is what the ingress accepts, and it
reads its tools' output and writes its report correctly."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest

from bench import report
from bench.processes import _frame_group, parse_wrk, read_profile
from bench.search import highest_sustained, lowest_not_sustained
from bench.traffic import PROTOCOLS, SECRETS, Request, write_requests
from ingress.bodies import parse_json_object
from ingress.protocols import protocol_class
from ingress.querystring import parse_query
from schema.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path

WRK_OUTPUT = """Running 10s test @ http://127.0.0.1:8080
  1 threads and 32 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    23.10ms    3.20ms  60.00ms   80.00%
  Latency Distribution
     50%   23.10ms
     75%   25.00ms
     90%   27.00ms
     99%    1.20s
  14050 requests in 10.00s, 2.10MB read
  Socket errors: connect 0, read 2, write 0, timeout 1
  Non-2xx or 3xx responses: 7
Requests/sec:   1405.00
Transfer/sec:    215.00KB
"""


def test_wrk_output_is_read_with_its_units() -> None:
    load = parse_wrk(WRK_OUTPUT)
    assert (load.requests_per_second, load.p50_ms, load.p99_ms) == (1405.0, 23.1, 1200.0)
    assert (load.non_2xx, load.errors) == (7, 3)
    # Without an accepted body, the refused answers are the non-2xx ones; with one, replay.lua
    # counts them itself, 2xx answers without the success code included.
    assert load.refused == 7
    assert parse_wrk(WRK_OUTPUT + "Refused answers: 12\n").refused == 12
    with pytest.raises(RuntimeError, match="unreadable"):
        parse_wrk("wrk: connection refused")


def test_profile_frames_are_grouped_by_our_function_or_by_library() -> None:
    assert _frame_group("Worker._handle (workers/consumer.py:240)") == (
        "workers/consumer.py: Worker._handle"
    )
    assert _frame_group("Connection.fetch (asyncpg/connection.py:689)") == "(asyncpg)"
    assert _frame_group("_run_code (<frozen runpy>:88)") is None
    # The process's entry points are on every stack: no share of theirs would tell anything.
    assert _frame_group("cmd_worker (payouts/cli.py:120)") is None
    assert _frame_group("serve (ingress/server.py:70)") is None


# py-spy's raw format: one line per distinct stack, outermost frame first, then its count.
PY_SPY_RAW = """\
_run_code (<frozen runpy>:88);Runner.run (asyncio/runners.py:118) 30
_run_code (<frozen runpy>:88);Runner.run (asyncio/runners.py:118);\
Worker._handle (workers/consumer.py:240);Connection.fetch (asyncpg/connection.py:689) 40
Worker._handle (workers/consumer.py:240);decode_event (schema/events.py:124);\
BaseModel.model_validate_json (pydantic/main.py:847) 20
Worker._handle (workers/consumer.py:241) 6
__init__ (<string>:3) 2
ABCMeta.__instancecheck__ (<frozen abc>:119) 2
"""


def test_a_profile_names_whose_code_was_running_and_what_was_on_the_stack() -> None:
    found = read_profile(PY_SPY_RAW)
    # Each sample counted once, for its innermost frame: the loop's C code under Runner.run.
    assert found.running == [
        (40.0, "(asyncpg)"),
        (30.0, "(event loop, in C)"),
        (20.0, "(pydantic)"),
        (6.0, "workers/consumer.py"),
        (2.0, "(abc)"),
        (2.0, "(<string>)"),
    ]
    # Each sample counted once per function or library on its stack, whatever its line.
    assert found.on_stack == [
        (66.0, "workers/consumer.py: Worker._handle"),
        (40.0, "(asyncpg)"),
        (20.0, "schema/events.py: decode_event"),
        (20.0, "(pydantic)"),
    ]


def bench_settings(tmp_path: Path) -> Any:
    from bench.__main__ import CONFIG

    path = tmp_path / "payouts.toml"
    path.write_text(
        CONFIG.format(
            database_url="postgresql://x@db/p",
            broker_url="amqp://mq/",
            namespace="bench",
            port=8080,
            status_port=9101,
        )
    )
    return load_settings(path, environ={})


@pytest.mark.parametrize("name", list(PROTOCOLS))
async def test_the_generated_traffic_verifies_and_resends_about_five_percent(
    tmp_path: Path, name: str
) -> None:
    settings = bench_settings(tmp_path)
    path = tmp_path / "requests"
    write_requests(path, PROTOCOLS[name], 400, seed=3)
    lines = path.read_text().splitlines()
    assert len(lines) == 400
    assert 5 <= len(lines) - len(set(lines)) <= 40, "about 5% exact re-sends"
    first = lines[0].split("\t")
    request = Request(*first)
    instance = next(p for p in settings.providers if request.path.startswith(p.route))
    protocol = protocol_class(instance.protocol)(instance, instance.read_secrets(SECRETS))
    verify: Any = protocol.verify  # type: ignore[attr-defined]  # both shapes have one
    if request.method == "GET":
        claim = verify(parse_query(urlsplit(request.path).query.encode()))
    else:
        claim = verify(parse_json_object(request.body.encode()))
    assert claim.transaction_id
    users = {json.dumps(line).count("hot-") > 0 for line in lines}
    assert users == {True, False}, "a hot subset and the rest"


def test_the_report_states_each_target_and_keeps_the_notes(tmp_path: Path) -> None:
    rng = random.Random(1)

    def load(rate: float) -> dict[str, float]:
        return {
            "per_second": rate,
            "p50_ms": 2.0,
            "p99_ms": 9.0,
            "non_2xx": 0,
            "errors": 0,
            "refused": 0,
        }

    def steady(
        rate: float,
        sustained: bool,
        ingress_cores: float = 0.5,
        protocol: str = "offerwall_md5 (000)",
        answer_p99_ms: float = 50.0,
    ) -> dict[str, Any]:
        return {
            "protocol": protocol,
            "target_per_second": rate,
            "achieved_per_second": rate,
            "answer_p50_ms": 3.0,
            "answer_p99_ms": answer_p99_ms,
            "credit_p50_ms": 10.0,
            "credit_p99_ms": 120.0,
            "credited": 100,
            "non_2xx": 0,
            "errors": 0,
            "refused": 0,
            "sustained": sustained,
            "seconds": 15,
            "cores": {"ingress": ingress_cores, "worker": 0.4, "machine": 1.5},
        }

    drain = {"payouts": 1000, "per_second": 4500.0, "peak_rss_mib": 60.0}
    results = {
        "run": {
            "date": "2026-11-22",
            "seconds": 600,
            "machine": "2 cores",
            "command": "x",
            "cores": 2,
        },
        "broker": {"publish_per_second": 5000.0, "consume_per_second": 5500.0},
        "http_ceiling": load(15000),
        "http_publish": load(3500),
        "naive": load(1800),
        "pgbench": {"hot": 200.0, "spread": 1900.0},
        "pgbench_clients": 10,
        "synchronous_commit": "on",
        "ingress": {
            **{name: load(1400) for name in PROTOCOLS},
            "offerwall_md5 (000), 2 processes": load(2100),
        },
        "drain": {
            "1 process(es)": drain,
            "2 process(es)": {**drain, "per_second": 4000.0},
            "5 hot wallets, batched (1 process)": {**drain, "per_second": 2400.0},
            "5 hot wallets, one payout per transaction (1 process)": {**drain, "per_second": 400.0},
        },
        "end_to_end": {
            "ceiling_per_second": 5000.0,
            "steps": [steady(500, True), steady(1500, False), steady(1000, False, 0.9)],
            "highest_sustained_per_second": 500.0,
            "soak": steady(250, True),
            "json_answers": [
                steady(250, True, protocol="aigame_payout (001)"),
                steady(250, True, protocol="wallet_billing (004)", answer_p99_ms=140.0),
            ],
        },
        "cpu": {
            "ingress (spec 000)": {
                "cores": {"measured": 0.96, "RabbitMQ": 0.33, "machine": 1.5},
                "processes": 1,
            },
            "worker drain, 2 process(es)": {
                "cores": {"measured": 1.2, "Postgres": 0.6, "machine": 1.9},
                "processes": 2,
            },
        },
        "profiles": {
            "ingress (spec 000)": {
                "running": [(45.0, "(uvicorn)"), (30.0, "(aiormq)")],
                "on_stack": [(90.0, "ingress/app.py: CallbackEndpoint.handle")],
            }
        },
    }
    memory = {
        name: [(float(t), 50 + rng.random()) for t in range(60)]
        for name in ("ingress (end to end)", "worker (end to end)")
    }
    # An ingress flat through the steady run, and a worker whose resident size climbs.
    memory["ingress (steady run)"] = [(float(t), 55.0) for t in range(60)]
    memory["worker (steady run)"] = [(float(t), 50 + t / 5) for t in range(60)]
    path = tmp_path / "benchmarks.md"
    report.write(path, results, memory)
    text = path.read_text()
    assert (
        "| worker drain (1 process) / raw broker consumer | 4,500/s | 0.82 | ≥ 0.80 | yes |" in text
    )
    assert (
        "| the same, `payouts worker --processes 2` (against the one raw consumer) | 4,000/s "
        "| 0.73 | ≥ 0.80 | **no** | all 2 cores busy |" in text
    )
    assert (
        "| hot wallets: batched / the worker at one payout per transaction, 10 at once "
        "| 2,400/s | 6.00 | ≥ 10 | **no** |" in text
    )
    assert (
        "| hot wallets: batched / pgbench at one payout per transaction, 10 clients "
        "| 2,400/s | 12.00 | ≥ 10 | yes |" in text
    )
    # Each protocol that waits for its outcome is judged on its own answers.
    assert (
        "| answer p99 of aigame_payout (001) (waits for the outcome) at half that rate | 50 ms "
        "|  | ≤ 100 ms | yes |" in text
    )
    assert (
        "| answer p99 of wallet_billing (004) (waits for the outcome) at half that rate | 140 ms "
        "|  | ≤ 100 ms | **no** |" in text
    )
    # Growth is judged over the steady run alone.
    assert "| ingress (steady run): growth over it | +0.0 MiB |  | ≤ 5 MiB | yes |" in text
    assert "| worker (steady run): growth over it | +9.6 MiB |  | ≤ 5 MiB | **no** |" in text
    assert "`synchronous_commit` was `on`" in text
    assert (
        "| request-to-credit p99 at half that rate (15 s) | 120 ms |  | ≤ 100 ms | **no** |" in text
    )
    assert (
        "| the same, `payouts ingress --processes 2` (against the one raw publisher) | 2,100/s "
        "| 0.42 | ≥ 0.80 | **no** |" in text
    )
    assert (
        "| offerwall_md5 (000) | 1,400/s | 2.0 ms | 9.0 ms | 0 | 0.28 | 0.40 | 0.09 | 0.78 |"
        in text
    )
    # What held each missed target back, from the cores used in its own measurement: the
    # end-to-end target by its lowest step not sustained, not by a higher one.
    assert (
        "| ingress accepted (spec 000) / broker publish with confirms | 1,400/s | 0.28 | ≥ 0.80 "
        "| **no** | measured at 0.96 of 1 core(s) |" in text
    )
    assert (
        "| end to end, highest sustained (15 s steps) / lower broker ceiling | 500/s | 0.10 "
        "| ≥ 0.70 "
        "| **no** | ingress at 0.90 of 1 core(s) |" in text
    )
    assert (
        "| end to end at 500/s, sustained |  | 0.50 | 0.40 |  |  |  | 1.50 "
        "| no core full (1.50 of 2 busy) |" in text
    )
    assert "| 1 process(es) | 1,000 | 4,500/s | 0.82 | 2.37 | 2.50 | 60 MiB |" in text
    assert (
        "| offerwall_md5 (000) | 500/s | 500/s | 0.28 | 3.0 ms | 50.0 ms | 10.0 ms | 120.0 ms "
        "| yes |" in text
    )
    assert "only publishes reached 0.70 of the raw publisher's rate" in text
    assert "(spec 000) reached 0.40 of that endpoint's rate." in text
    # The two views of a profile side by side, the shorter one padded with blank cells.
    assert "| 45% | `(uvicorn)` | 90% | `ingress/app.py: CallbackEndpoint.handle` |" in text
    assert "| 30% | `(aiormq)` |  |  |" in text
    assert (tmp_path / "benchmarks.svg").read_text().startswith("<svg")

    path.write_text(text + "My analysis of the bottleneck.\n")
    report.write(path, results, memory)
    assert path.read_text().endswith("My analysis of the bottleneck.\n")


@pytest.mark.parametrize(
    ("cores", "processes", "named"),
    [
        ({"measured": 0.88, "machine": 1.3}, 1, "measured at 0.88 of 1 core(s)"),
        (
            {"measured": 0.88, "machine": 1.3},
            2,
            "no core full (1.30 of 2 busy)",
        ),
        ({"measured": 1.75, "machine": 1.95}, 2, "all 2 cores busy; measured at 1.75 of 2 core(s)"),
        ({"ingress": 0.95, "worker": 0.3, "machine": 1.6}, 1, "ingress at 0.95 of 1 core(s)"),
        ({"measured": 0.5, "machine": 1.85}, 1, "all 2 cores busy"),
        (
            {"measured": 0.84, "machine": 1.79},
            1,
            "no core full (1.79 of 2 busy)",
        ),
    ],
)
def test_what_limited_a_measurement_is_read_from_the_cores_it_used(
    cores: dict[str, float], processes: int, named: str
) -> None:
    assert report.limit(cores, processes, machine_cores=2) == named


class Pipeline:
    """Sustains any rate up to `capacity`; fails the rates listed in `stalls` once each."""

    def __init__(self, capacity: float, stalls: tuple[float, ...] = ()) -> None:
        self.capacity = capacity
        self.stalls = list(stalls)
        self.rates: list[float] = []

    async def __call__(self, rate: float) -> dict[str, Any]:
        self.rates.append(rate)
        stalled = rate in self.stalls
        if stalled:
            self.stalls.remove(rate)
        sustained = rate <= self.capacity and not stalled
        return {
            "target_per_second": rate,
            "sustained": sustained,
            "achieved_per_second": rate if sustained else 0.0,
        }


async def test_the_search_retries_a_failed_step_then_halves_the_gap_twice() -> None:
    pipeline = Pipeline(capacity=170)
    sustained, steps = await highest_sustained(pipeline, ceiling=1000)
    assert pipeline.rates == [50, 100, 150, 200, 200, 175, 162.5]
    assert len(steps) == len(pipeline.rates)
    assert sustained == 162.5


async def test_the_search_goes_on_past_a_single_stall() -> None:
    pipeline = Pipeline(capacity=260, stalls=(100,))
    sustained, steps = await highest_sustained(pipeline, ceiling=1000)
    assert pipeline.rates == [50, 100, 100, 150, 200, 250, 300, 300, 275, 262.5]
    assert sustained == 250
    # What stopped the pipeline is read at 262.5/s, not at the stall that 100/s then passed.
    lowest = lowest_not_sustained(steps)
    assert lowest is not None
    assert lowest["target_per_second"] == 262.5


async def test_the_search_refines_nothing_when_no_step_is_sustained() -> None:
    pipeline = Pipeline(capacity=10)
    sustained, steps = await highest_sustained(pipeline, ceiling=1000)
    assert pipeline.rates == [50, 50]
    assert sustained == 0
    assert len(steps) == 2
