"""The benchmark harness's own logic: the traffic it replays is what the ingress accepts, and it
reads its tools' output and writes its report correctly."""

from __future__ import annotations

import json
import random
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import pytest
from starlette.requests import Request as StarletteRequest

from bench import report
from bench.__main__ import _connections
from bench.constants import WAITS_FOR_OUTCOME
from bench.observed import (
    after_commit_ms,
    latest_settled,
    parse_ingress_counts,
    parse_worker_counts,
    read_settled,
)
from bench.processes import _frame_group, parse_wrk, read_profile
from bench.report import Minute, minutes
from bench.search import highest_sustained, lowest_not_sustained
from bench.traffic import (
    PARTNER,
    PROTOCOLS,
    SECRETS,
    Request,
    each_once,
    polled,
    write_requests,
)
from ingress.bodies import parse_json_object
from ingress.proof_api import ProofEndpoint
from ingress.protocols import protocol_class
from ingress.querystring import parse_query
from schema.settings import load_settings

if TYPE_CHECKING:
    from pathlib import Path

    from ingress.database import IngressDatabase

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
    from bench.__main__ import CONFIG, PARTNER_INSTANCES

    path = tmp_path / "payouts.toml"
    path.write_text(
        CONFIG.format(
            database_url="postgresql://x@db/p",
            broker_url="amqp://mq/",
            namespace="bench",
            port=8080,
            status_port=9101,
            partner=PARTNER,
            partner_instances=json.dumps(list(PARTNER_INSTANCES)),
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
    method, target, body = lines[0].split("\t")  # no headers: the signature is in the request
    request = Request(method, target, body)
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


def _as_request(line: str) -> StarletteRequest:
    """A line of a requests file as the request wrk sends: method, path, body, headers."""
    method, path, body, *headers = line.split("\t")
    sent = [False]

    async def receive() -> dict[str, Any]:
        if sent[0]:
            return {"type": "http.disconnect"}
        sent[0] = True
        return {"type": "http.request", "body": body.encode(), "more_body": False}

    scope = {
        "type": "http",
        "method": method,
        "path": path,
        "query_string": b"",
        "headers": [
            (name.lower().encode(), value.encode())
            for name, value in (header.split(": ", 1) for header in headers)
        ],
    }
    return StarletteRequest(scope, receive)


@pytest.mark.parametrize("make", [each_once, polled])
async def test_the_partners_look_ups_authenticate_against_the_bench_partner(
    tmp_path: Path, make: Any
) -> None:
    settings = bench_settings(tmp_path)
    # Authentication reads no database: none is given.
    endpoint = ProofEndpoint(settings, cast("IngressDatabase", None), SECRETS)
    path = tmp_path / "requests"
    orders = [f"order-{n}" for n in range(50)]
    write_requests(path, make(orders), 200, seed=3)
    lines = path.read_text().splitlines()
    asked = set()
    for line in lines[:20]:
        request = _as_request(line)
        assert request.url.path == settings.proof_api.route
        partner, order_id = await endpoint._authenticate(request)
        assert partner.pid == PARTNER
        asked.add(order_id)
    assert asked <= set(orders)
    assert len(asked) > 1


def test_each_payout_is_asked_for_once_before_any_is_asked_again(tmp_path: Path) -> None:
    path = tmp_path / "requests"
    orders = [f"order-{n}" for n in range(300)]
    write_requests(path, each_once(orders), 300, seed=3)
    asked = [json.loads(line.split("\t")[2])["order_id"] for line in path.read_text().splitlines()]
    fresh = [order for n, order in enumerate(asked) if order not in asked[:n]]
    # In turn, but for the re-asks (about 5%), which repeat one already asked.
    assert fresh == orders[: len(fresh)]
    assert 250 <= len(fresh) < 300


@pytest.mark.parametrize(
    ("protocol", "rate", "connections"),
    [
        # The query protocols: enough for each request to wait 0.05 s for its confirm...
        ("offerwall_md5 (000)", 5000, 250),
        ("adjoe (003)", 2700, 135),
        ("offerwall_md5 (000)", 400, 32),
        # Enough for each request to wait 0.2 s at that rate (Little's law)...
        ("aigame_payout (001)", 2000, 400),
        ("wallet_billing (004)", 2000, 400),
        # ...never fewer than the query protocols get, nor more than the cap.
        ("aigame_payout (001)", 100, 32),
        ("wallet_billing (004)", 20_000, 1024),
    ],
)
def test_each_protocol_gets_connections_for_its_rate(
    protocol: str, rate: float, connections: int
) -> None:
    assert _connections(protocol, rate) == connections


WORKER_LOG = """\
{"ts": "2026-12-06T22:00:00.100+00:00", "level": "info", "message": "worker ready"}
{"ts": "2026-12-06T22:00:01.000+00:00", "level": "info", "message": "payout processed", \
"event_id": "e-1", "outcome": "credited", "lag_ms": 12.5}
{"ts": "2026-12-06T22:00:01.500+00:00", "level": "info", "message": "payout processed", \
"event_id": "e-2", "outcome": "credited", "lag_ms": 40.0}
{"ts": "2026-12-06T22:00:02.000+00:00", "level": "info", "message": "payout processed", \
"outcome": "duplicate", "lag_ms": 3.0}
{"ts": "2026-12-06T22:00:02.500+00:00", "level": "info", "message": "payout processed", \
"outcome": "credited", "lag_ms": 20.0}
{"ts": "2026-12-06T22:00:03.000+00:00", "level": "info", "message": "queue depths sampled"}
"""


def test_the_credits_and_their_latency_are_read_from_the_workers_lines(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text(WORKER_LOG)
    settled = read_settled(log, 0)
    # Credited payouts only: a re-send settled as a duplicate is no credit of its own.
    assert settled.credit_lags_ms == [12.5, 40.0, 20.0]
    assert settled.last_credit is not None
    assert settled.last_credit.isoformat() == "2026-12-06T22:00:02.500000+00:00"
    assert settled.percentile(0.5) == 20.0
    assert settled.percentile(1.0) == 40.0
    assert settled.percentile(0.75) == 30.0  # between the two nearest, as percentile_cont
    # From an offset: only the lines written after it.
    second = WORKER_LOG.index('{"ts": "2026-12-06T22:00:01.500')
    assert read_settled(log, second).credit_lags_ms == [40.0, 20.0]
    # The last delivery settled, whatever its outcome, and its lag in seconds.
    latest = latest_settled(log)
    assert latest is not None
    assert (latest[0].isoformat(), latest[1]) == ("2026-12-06T22:00:02.500000+00:00", 0.02)
    log.write_text('{"ts": "2026-12-06T22:00:00.100+00:00", "message": "worker ready"}\n')
    assert latest_settled(log) is None
    assert read_settled(log, 0).percentile(0.99) == 0.0


INGRESS_LOG = """\
{"ts": "2026-12-06T22:00:01.010+00:00", "message": "callback answered", "event_id": "e-1", \
"verdict": "accepted", "latency_ms": 20.0}
{"ts": "2026-12-06T22:00:01.020+00:00", "message": "callback answered", "event_id": "e-9", \
"verdict": "accepted", "latency_ms": 7.0}
{"ts": "2026-12-06T22:00:01.030+00:00", "message": "callback answered", "event_id": null, \
"verdict": "bad_signature", "latency_ms": 1.0}
{"ts": "2026-12-06T22:00:01.510+00:00", "message": "callback answered", "event_id": "e-2", \
"verdict": "accepted", "latency_ms": 43.5}
"""


def test_the_time_after_the_commit_joins_answers_to_credits_by_event(tmp_path: Path) -> None:
    worker_log, ingress_log = tmp_path / "worker.log", tmp_path / "ingress.log"
    worker_log.write_text(WORKER_LOG)
    ingress_log.write_text(INGRESS_LOG)
    settled = read_settled(worker_log, 0)
    assert settled.lag_by_event == {"e-1": 12.5, "e-2": 40.0}
    # e-9 was never credited and the refusal names no event: neither is counted.
    assert after_commit_ms(ingress_log, 0, settled) == [7.5, 3.5]
    second = INGRESS_LOG.index('{"ts": "2026-12-06T22:00:01.020')
    assert after_commit_ms(ingress_log, second, settled) == [3.5]


def test_an_ingress_line_the_bench_cannot_read_stops_it(tmp_path: Path) -> None:
    worker_log, ingress_log = tmp_path / "worker.log", tmp_path / "ingress.log"
    worker_log.write_text(WORKER_LOG)
    ingress_log.write_text(
        '{"message": "callback answered", "event_id": "e-1", "verdict": "accepted"}\n'
    )
    with pytest.raises(RuntimeError, match="cannot read"):
        after_commit_ms(ingress_log, 0, read_settled(worker_log, 0))


def test_a_worker_line_the_bench_cannot_read_stops_it(tmp_path: Path) -> None:
    log = tmp_path / "worker.log"
    log.write_text('{"ts": "2026-12-06T22:00:01+00:00", "message": "payout processed"}\n')
    with pytest.raises(RuntimeError, match="cannot read"):
        read_settled(log, 0)


INGRESS_METRICS = """\
# TYPE payouts_ingress_requests counter
payouts_ingress_requests_total{instance="offerwall",verdict="accepted",answer_code="200"} 900.0
payouts_ingress_requests_total{instance="offerwall",verdict="try_again",answer_code="503"} 4.0
payouts_ingress_requests_total{instance="aigame",verdict="accepted",answer_code="200"} 96.0
# TYPE payouts_ingress_events_per_message histogram
payouts_ingress_events_per_message_bucket{le="1.0"} 10.0
payouts_ingress_events_per_message_bucket{le="+Inf"} 250.0
payouts_ingress_events_per_message_count 250.0
payouts_ingress_events_per_message_sum 996.0
# TYPE payouts_ingress_publish_seconds histogram
payouts_ingress_publish_seconds_bucket{le="+Inf"} 996.0
payouts_ingress_publish_seconds_count 996.0
payouts_ingress_publish_seconds_sum 4.98
"""


def test_the_ingress_counts_are_read_from_its_metrics() -> None:
    counts = parse_ingress_counts(INGRESS_METRICS)
    assert (counts.answered, counts.refused, counts.events, counts.messages) == (
        1000,
        4,
        996,
        250,
    )
    earlier = parse_ingress_counts(
        INGRESS_METRICS.replace("996.0", "96.0").replace("count 250.0", "count 50.0")
    )
    change = counts - earlier
    assert change.events / change.messages == 4.5
    assert change.answered == 0
    assert (counts.publishes, counts.publish_seconds) == (996, 4.98)


WORKER_METRICS = """\
# TYPE payouts_worker_commit_seconds histogram
payouts_worker_commit_seconds_bucket{le="+Inf"} 40.0
payouts_worker_commit_seconds_count 40.0
payouts_worker_commit_seconds_sum 0.6
# TYPE payouts_worker_batch_size histogram
payouts_worker_batch_size_bucket{le="+Inf"} 40.0
payouts_worker_batch_size_count 40.0
payouts_worker_batch_size_sum 1000.0
"""


def test_the_workers_transactions_are_read_from_its_metrics() -> None:
    counts = parse_worker_counts(WORKER_METRICS)
    earlier = parse_worker_counts(
        WORKER_METRICS.replace("count 40.0", "count 30.0")
        .replace("sum 0.6", "sum 0.4")
        .replace("sum 1000.0", "sum 800.0")
    )
    change = counts - earlier
    assert change.transactions == 10
    assert round(change.transaction_seconds / change.transactions, 6) == 0.02
    assert change.batched / change.transactions == 20


def soak_looks(seconds: int, per_second: float, from_minute_2: float) -> list[dict[str, float]]:
    """A look every 5 s at a soak answering `per_second`, then `from_minute_2` after 60 s, with a
    checkpoint at 90 s and the worker falling behind after it."""
    looks, answered = [], 0.0
    for elapsed in range(5, seconds + 1, 5):
        answered += 5 * (per_second if elapsed <= 60 else from_minute_2)
        looks.append(
            {
                "elapsed": float(elapsed),
                "answered": answered,
                "checkpoints": 1.0 if elapsed >= 90 else 0.0,
                "wal_bytes": elapsed * 2.0**20,
                "blocks_read": 0.0 if elapsed < 90 else (elapsed - 85) * 10,
                "worker_behind": 0.5 if elapsed < 90 else elapsed - 88.0,
            }
        )
    return looks


def test_a_soaks_looks_are_told_minute_by_minute() -> None:
    assert minutes(soak_looks(125, 1000, 500)) == [
        Minute(1, 1000.0, 0.0, 1.0, 0.0, 0.5),
        Minute(2, 500.0, 1.0, 1.0, 35 * 10 / 60, 32.0),
        Minute(3, 500.0, 0.0, 1.0, 10.0, 37.0),  # the 5 s it ran of its third minute
    ]
    assert minutes([]) == []


def sample_results() -> tuple[dict[str, Any], dict[str, list[tuple[float, float]]]]:
    """One run's results, as `python -m bench` gathers them, and its memory samples."""
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
        seconds: int = 15,
        abandoned: str | None = None,
        achieved: float | None = None,
    ) -> dict[str, Any]:
        return {
            "protocol": protocol,
            "target_per_second": rate,
            "achieved_per_second": rate if achieved is None else achieved,
            "connections": 32,
            "answer_p50_ms": 3.0,
            "answer_p99_ms": answer_p99_ms,
            "credit_p50_ms": 10.0,
            "credit_p99_ms": 120.0,
            "credited": 100,
            "non_2xx": 0,
            "errors": 0,
            "refused": 0,
            "events_per_message": 4.0,
            "events": 4.0 * rate,
            "messages": rate,
            "confirm_mean_ms": 4.25,
            "transaction_mean_ms": 12.5,
            "payouts_per_transaction": 20.0,
            "after_commit_p50_ms": 6.0 if protocol.startswith(WAITS_FOR_OUTCOME) else None,
            "after_commit_p99_ms": 31.0 if protocol.startswith(WAITS_FOR_OUTCOME) else None,
            "abandoned": abandoned,
            "sustained": sustained,
            "seconds": seconds,
            "ran_seconds": float(seconds),
            "cores": {"ingress": ingress_cores, "worker": 0.4, "machine": 1.5},
        }

    drain = {"payouts": 1000, "per_second": 4500.0, "peak_rss_mib": 60.0}
    first_soak = steady(
        4000, False, 0.95, seconds=600, abandoned="the worker 31 s behind after 120 s"
    )
    first_soak["ran_seconds"] = 120.0
    first_soak["timeline"] = soak_looks(120, 4000, 3000)
    results = {
        "run": {
            "date": "2026-11-22",
            "seconds": 600,
            "parts": {"set_up": 12, "end_to_end": 500},
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
        "postgres_settings": {"shared_buffers": "128MB", "autovacuum": "off"},
        "ingress": {
            **{name: load(4000) for name in PROTOCOLS},
            "offerwall_md5 (000), 2 processes": load(2100),
        },
        "drain": {
            "1 process(es)": drain,
            "2 process(es)": {**drain, "per_second": 4000.0},
            "envelopes of 10 (1 process)": {**drain, "per_second": 6050.0},
            "5 hot wallets, batched (1 process)": {**drain, "per_second": 2400.0},
            "5 hot wallets, one payout per transaction (1 process)": {**drain, "per_second": 400.0},
        },
        "end_to_end": {
            "ceiling_per_second": 5000.0,
            "steps": [steady(3000, True), steady(4500, False), steady(4000, True, 0.9)],
            "highest_sustained_per_second": 4000.0,
            "soaks": [first_soak, steady(3600, True, seconds=600, achieved=3590)],
            "held_per_second": 3590.0,
            "rate_per_second": 3600.0,
            "soak": steady(1800, True, protocol="adjoe (003)", seconds=600),
            "json_answers": [
                steady(1800, True, protocol="aigame_payout (001)"),
                steady(1800, True, protocol="wallet_billing (004)", answer_p99_ms=140.0),
            ],
            "json_rates": [
                steady(2880, True, protocol="aigame_payout (001)"),
                steady(2880, False, 0.97, protocol="wallet_billing (004)", achieved=2500),
            ],
            "json_share": 0.8,
            "proofs": {
                "first_lookups": {**load(150), "payouts": 20_000},
                "polled": {
                    **steady(1800, True, protocol="proof API (002), polled"),
                    "payouts": 500,
                    "warm_up_refused": 0,
                },
            },
            "max_events_per_message": 10,
        },
        "cpu": {
            "ingress (spec 000)": {
                "cores": {"measured": 0.96, "RabbitMQ": 0.33, "machine": 1.5},
                "processes": 1,
            },
            "worker drain, 1 process(es), envelopes of 10": {
                "cores": {"measured": 0.7, "Postgres": 0.6, "machine": 1.9},
                "processes": 1,
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
    # An ingress flat through the soak, and a worker whose resident size climbs.
    memory["ingress (soak at 3,600/s)"] = [(float(t), 55.0) for t in range(60)]
    memory["worker (soak at 3,600/s)"] = [(float(t), 50 + t / 5) for t in range(60)]
    # An attempt stopped early ends holding a backlog: its growth is not judged.
    memory["worker (soak at 4,000/s, not held)"] = [(float(t), 50 + t) for t in range(60)]
    return results, memory


def test_the_report_states_each_target_and_keeps_the_notes(tmp_path: Path) -> None:
    results, memory = sample_results()
    path = tmp_path / "benchmarks.md"
    report.write(path, results, memory)
    text = path.read_text()
    # The soak's rate that held, against the naive handler; what stopped it is read from the
    # first attempt that did not hold.
    assert (
        "| end to end, spec 000, held for the whole soak (600 s) / naive handler | 3,590/s "
        "| 1.99 | ≥ 1.50 | yes | ingress at 0.95 of 1 core(s) |" in text
    )
    assert (
        "| request-to-credit p99, commit included, at half that rate (adjoe (003), 600 s) "
        "| 120 ms |  | ≤ 100 ms | **no** |" in text
    )
    # Specs 001 and 004 against spec 000's rate, each judged on its own run.
    assert (
        "| aigame_payout (001) end to end at 0.80 of spec 000's 3,600/s: achieved / spec 000's "
        "rate | 2,880/s | 0.80 | ≥ 0.80, sustained | yes |" in text
    )
    assert (
        "| wallet_billing (004) end to end at 0.80 of spec 000's 3,600/s: achieved / spec 000's "
        "rate | 2,500/s | 0.69 | ≥ 0.80, sustained | **no** | ingress at 0.97 of 1 core(s) |"
        in text
    )
    assert (
        "| answer p99 of aigame_payout (001) (waits for the outcome) at half that rate | 50 ms "
        "|  | ≤ 100 ms | yes |" in text
    )
    assert (
        "| answer p99 of wallet_billing (004) (waits for the outcome) at half that rate | 140 ms "
        "|  | ≤ 100 ms | **no** |" in text
    )
    assert (
        "| ingress accepted, spec 000, 1 process / HTTP + publish endpoint | 4,000/s | 1.14 "
        "| ≥ 1.00 | yes | measured at 0.96 of 1 core(s) |" in text
    )
    assert (
        "| ingress accepted, spec 000, 1 process / naive handler | 4,000/s | 2.22 | ≥ 2.00 "
        "| yes |" in text
    )
    # The drain of envelopes: payouts credited against the raw consumer's messages.
    assert (
        "| worker drain, envelopes of 10 (1 process): payouts / raw consumer's messages "
        "| 6,050/s | 1.10 | ≥ 1.00 | yes | all 2 cores busy |" in text
    )
    # Growth is judged over the soak alone.
    assert "| ingress (soak at 3,600/s): growth over it | +0.0 MiB |  | ≤ 5 MiB | yes |" in text
    assert "| worker (soak at 3,600/s): growth over it | +9.6 MiB |  | ≤ 5 MiB | **no** |" in text
    assert "not held): growth over it" not in text
    assert "| `synchronous_commit` | `on` |  | `on` | yes |" in text
    assert (
        "`synchronous_commit` was `on`, as read from the bench's database at its start; the "
        "server's own tuning, left as the machine has it: `shared_buffers` 128MB, `autovacuum` "
        "off." in text.replace("\n", " ")
    )
    assert "Time per part: set_up 12 s, end_to_end 500 s." in text
    # Every soak attempt, the one stopped early with its reason; the envelope size and the
    # mean events per message over spec 000's steps and soaks.
    assert (
        "| offerwall_md5 (000) | soak, stopped at 120 of 600 s: the worker 31 s behind after "
        "120 s | 4,000/s | 4,000/s | 2.22 | 32 | 4.00 |" in text
    )
    assert (
        "| offerwall_md5 (000) | soak, 600 s | 3,600/s | 3,590/s | 1.99 | 32 | 4.00 | 3.0 ms "
        "| 50.0 ms | 10.0 ms | 120.0 ms | yes |" in text
    )
    assert "`broker.max_events_per_message` = 10 events" in text
    # The attempt that was watched, minute by minute; the others have no looks to tell.
    assert (
        "*soak at 4,000/s, not held*\n\n| minute | answered | / target | checkpoints | WAL "
        "| blocks read | worker behind |\n|---|---|---|---|---|---|---|\n"
        "| 1 | 4,000/s | 1.00 | 0 | 1.0 MiB/s | 0/s | 0.5 s |\n"
        "| 2 | 3,000/s | 0.75 | 1 | 1.0 MiB/s | 6/s | 32.0 s |\n\n" in text
    )
    assert "*soak at 3,600/s, held*" not in text
    # Where an answer's time goes: after the commit only for a protocol that waits for it.
    assert (
        "| aigame_payout (001) | half the rate, 15 s | 3.0 ms | 50.0 ms | 4.2 ms | 12.5 ms "
        "| 20.00 | 10.0 ms | 120.0 ms | 6.0 ms | 31.0 ms |" in text
    )
    assert (
        "| adjoe (003) | soak at half, 600 s | 3.0 ms | 50.0 ms | 4.2 ms | 12.5 ms "
        "| 20.00 | 10.0 ms | 120.0 ms | - | - |" in text
    )
    assert "over every spec 000 step and soak attempt together it was\n4.00." in text
    assert "spec 000's rate: 3,600/s in this run. A second soak" in text
    assert (
        "| soak at 4,000/s, not held |  | 0.95 | 0.40 |  |  |  | 1.50 "
        "| ingress at 0.95 of 1 core(s) |" in text
    )
    # Spec 002: each payout once, and polled.
    assert (
        "| each payout once, flat out | 20,000 | flat out | 150/s | 2.0 ms | 9.0 ms | 0 | 0 |"
        in text
    )
    assert "| polled, paced, 15 s | 500 | 1,800/s | 1,800/s | 3.0 ms | 50.0 ms | 0 | 0 |" in text
    assert "one request each: 0 of\nthose 500 answers were refused." in text
    assert (
        "| offerwall_md5 (000) | 4,000/s | 2.0 ms | 9.0 ms | 0 | 0.80 | 1.14 | 0.27 | 2.22 |"
        in text
    )
    assert (
        "| end to end at 4,000/s, sustained |  | 0.90 | 0.40 |  |  |  | 1.50 "
        "| ingress at 0.90 of 1 core(s) |" in text
    )
    assert "| 1 process(es) | 1,000 | 4,500/s | 0.82 | 2.37 | 2.50 | 60 MiB |" in text
    assert "only publishes reached 0.70 of the raw publisher's rate" in text
    assert "(spec 000) reached 1.14 of that endpoint's rate." in text
    # The two views of a profile side by side, the shorter one padded with blank cells.
    assert "| 45% | `(uvicorn)` | 90% | `ingress/app.py: CallbackEndpoint.handle` |" in text
    assert "| 30% | `(aiormq)` |  |  |" in text
    assert (tmp_path / "benchmarks.svg").read_text().startswith("<svg")

    path.write_text(text + "My analysis of the bottleneck.\n")
    report.write(path, results, memory)
    assert path.read_text().endswith("My analysis of the bottleneck.\n")


def test_a_soak_that_never_held_says_so(tmp_path: Path) -> None:
    results, memory = sample_results()
    e2e = results["end_to_end"]
    for soak in e2e["soaks"]:
        soak["sustained"] = False
    e2e["held_per_second"] = None
    e2e["rate_per_second"] = e2e["highest_sustained_per_second"]
    path = tmp_path / "benchmarks.md"
    report.write(path, results, memory)
    text = path.read_text()
    assert (
        "| end to end, spec 000, held for the whole soak (600 s) / naive handler | none held "
        "| 0.00 | ≥ 1.50 | **no** | ingress at 0.95 of 1 core(s) |" in text
    )
    assert "spec 000's rate: 4,000/s in this run (no attempt held: the highest step's)." in text


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
