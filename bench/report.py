"""docs/benchmarks.md and its plot, from one run's results. Everything above the notes marker is
regenerated; the notes below it (the analysis a person wrote) are kept."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from html import escape
from typing import TYPE_CHECKING, Any

from bench.constants import (
    ABANDON_BEHIND_SECONDS,
    ANSWER_WAIT_SECONDS,
    CONFIRM_WAIT_SECONDS,
    CONNECTIONS,
    MAX_CONNECTIONS,
    SOAK_FRACTIONS,
)
from bench.processes import MEASURED, CpuMeter
from bench.search import lowest_not_sustained

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["limit", "write"]

NOTES_MARKER = "<!-- notes: kept when the report is regenerated -->"
MIB_LIMIT = 150
# Growth over the steady run still called flat: allocator and cache warm-up settle within a
# few MiB, while a leak of even a few hundred bytes per payout grows by tens of MiB in ten minutes.
FLAT_MIB = 5
# Python runs our code on one core per process: a process using this much of it is held by it.
FULL_CORE = 0.85
# Of all the machine's cores: nothing is left for any process to grow into.
FULL_MACHINE = 0.9
PYTHON_GROUPS = (MEASURED, "ingress", "worker")
CPU_COLUMNS = (*PYTHON_GROUPS, "RabbitMQ", "Postgres", CpuMeter.TOOLS, CpuMeter.MACHINE)


def write(
    path: Path, results: dict[str, Any], memory: dict[str, list[tuple[float, float]]]
) -> None:
    notes = ""
    if path.exists() and NOTES_MARKER in path.read_text():
        notes = path.read_text().split(NOTES_MARKER, 1)[1]
    plot = path.with_suffix(".svg")
    plot.write_text(_plot(results))
    path.write_text(_markdown(results, memory, plot.name) + NOTES_MARKER + (notes or "\n"))


def _ratio(value: float, ceiling: float) -> str:
    return f"{value / ceiling:.2f}" if ceiling else "-"


def _met(ok: bool) -> str:
    return "yes" if ok else "**no**"


def _rate(value: float) -> str:
    return f"{value:,.0f}/s"


def _ms(value: float | None) -> str:
    """Milliseconds, or a dash for a figure the run did not have (a report from before it)."""
    return "-" if value is None else f"{value:.1f} ms"


def limit(cores: dict[str, float], processes: int, machine_cores: int) -> str:
    """What held a measurement back, read from the cores each process group used during it:
    the whole machine, a Python process at its one core, or neither (it waited on something)."""
    machine = cores.get(CpuMeter.MACHINE, 0)
    found = []
    if machine >= FULL_MACHINE * machine_cores:
        found.append(f"all {machine_cores} cores busy")
    for group in PYTHON_GROUPS:
        capacity = processes if group == MEASURED else 1
        if cores.get(group, 0) >= FULL_CORE * capacity:
            found.append(f"{group} at {cores[group]:.2f} of {capacity} core(s)")
    return "; ".join(found) or f"no core full ({machine:.2f} of {machine_cores} busy)"


def _cpu_rows(results: dict[str, Any]) -> dict[str, tuple[dict[str, float], int]]:
    """Each metered measurement's cores and process count; for the end-to-end run, the highest
    step sustained and the lowest not, each soak attempt at the highest rate, and the protocols
    that wait for their outcome at their share of it."""
    rows = {label: (row["cores"], row["processes"]) for label, row in results["cpu"].items()}
    e2e = results["end_to_end"]
    steps = e2e["steps"]
    sustained = [s for s in steps if s["sustained"]]
    if sustained:
        best = max(sustained, key=lambda s: s["achieved_per_second"])
        rows[_e2e_label(best)] = (best["cores"], 1)
    if (lowest := lowest_not_sustained(steps)) is not None:
        rows[_e2e_label(lowest)] = (lowest["cores"], 1)
    for soak in e2e["soaks"]:
        rows[_soak_label(soak)] = (soak["cores"], 1)
    for run in e2e["json_rates"]:
        rows[_json_rate_label(run)] = (run["cores"], 1)
    return rows


def _e2e_label(step: dict[str, Any]) -> str:
    held = "sustained" if step["sustained"] else "not sustained"
    return f"end to end at {_rate(step['target_per_second'])}, {held}"


def _soak_label(soak: dict[str, Any]) -> str:
    held = "held" if soak["sustained"] else "not held"
    return f"soak at {_rate(soak['target_per_second'])}, {held}"


def _json_rate_label(run: dict[str, Any]) -> str:
    return f"{run['protocol']} at {_rate(run['target_per_second'])}"


def _timelines(soaks: list[dict[str, Any]]) -> list[str]:
    """Each soak attempt minute by minute: when it fell behind, and beside what."""
    lines = [
        "**Soaks, minute by minute.** From the bench's look at each attempt every few seconds: the",
        "callbacks answered per second in each minute; Postgres's checkpoints in it "
        "(`pg_stat_bgwriter`),",
        "the WAL it wrote and the blocks the bench database read from outside its buffers "
        "(`pg_stat_database`),",
        "per second; and how far behind the worker was at the minute's end.",
        "",
    ]
    for soak in soaks:
        if not soak.get("timeline"):
            continue
        lines += [
            f"*{_soak_label(soak)}*",
            "",
            "| minute | answered | / target | checkpoints | WAL | blocks read | worker behind |",
            "|---|---|---|---|---|---|---|",
            *(
                f"| {m.number} | {_rate(m.answered_per_second)} | "
                f"{_ratio(m.answered_per_second, soak['target_per_second'])} | "
                f"{m.checkpoints:.0f} | {m.wal_mib_per_second:.1f} MiB/s | "
                f"{_rate(m.blocks_read_per_second)} | {m.worker_behind_seconds:.1f} s |"
                for m in minutes(soak["timeline"])
            ),
            "",
        ]
    return lines if len(lines) > 4 else []


def _postgres_settings(settings: dict[str, str]) -> str:
    """The rest of the sentence naming the server's tuning, as read at the run's start."""
    if not settings:
        return "."
    named = ", ".join(f"`{name}` {value}" for name, value in settings.items())
    return f"; the server's own tuning, left as the machine has it: {named}."


def _soak_run(soak: dict[str, Any]) -> str:
    """How long a soak attempt ran, and why it stopped early if it did."""
    if soak["abandoned"] is None:
        return f"soak, {soak['seconds']} s"
    return f"soak, stopped at {soak['ran_seconds']:.0f} of {soak['seconds']} s: {soak['abandoned']}"


@dataclass(frozen=True)
class Minute:
    """One minute of a soak attempt (the last one perhaps cut short)."""

    number: int
    answered_per_second: float
    checkpoints: float  # Postgres's, in the minute
    wal_mib_per_second: float
    blocks_read_per_second: float  # the bench database's, from outside Postgres's buffers
    worker_behind_seconds: float  # at its end


def minutes(timeline: list[dict[str, float]]) -> list[Minute]:
    """A soak attempt's looks, minute by minute."""
    rows: list[Minute] = []
    start: dict[str, float] = {}
    for index, look in enumerate(timeline):
        if look["elapsed"] // 60 > start.get("elapsed", 0.0) // 60 or index == len(timeline) - 1:
            rows.append(
                Minute(
                    len(rows) + 1,
                    _per_second(look, start, "answered"),
                    look["checkpoints"] - start.get("checkpoints", 0.0),
                    _per_second(look, start, "wal_bytes") / 2**20,
                    _per_second(look, start, "blocks_read"),
                    look["worker_behind"],
                )
            )
            start = look
    return rows


def _per_second(look: dict[str, float], start: dict[str, float], name: str) -> float:
    """The change of a cumulative count from one look (none: the attempt's start) to another."""
    return (look[name] - start.get(name, 0.0)) / (look["elapsed"] - start.get("elapsed", 0.0))


def _events_per_message(runs: list[dict[str, Any]]) -> float | None:
    """The mean over `runs` together: their events over their messages."""
    messages = sum(run["messages"] for run in runs)
    return sum(run["events"] for run in runs) / messages if messages else None


def _mean(value: float | None) -> str:
    return "" if value is None else f"{value:.2f}"


def _growth(samples: list[tuple[float, float]]) -> float:
    """MiB between the mean of the first and of the last fifth of the samples."""
    if len(samples) < 10:
        return 0.0
    fifth = len(samples) // 5
    first = sum(mib for _, mib in samples[:fifth]) / fifth
    last = sum(mib for _, mib in samples[-fifth:]) / fifth
    return last - first


def _markdown(
    results: dict[str, Any], memory: dict[str, list[tuple[float, float]]], plot: str
) -> str:
    run, broker, drain = results["run"], results["broker"], results["drain"]
    http, naive, pg = results["http_ceiling"], results["naive"], results["pgbench"]
    publishing = results["http_publish"]
    ingress, e2e = results["ingress"], results["end_to_end"]
    offerwall = ingress["offerwall_md5 (000)"]
    soak, answers, json_rates = e2e["soak"], e2e["json_answers"], e2e["json_rates"]
    soaks, proofs = e2e["soaks"], e2e["proofs"]
    rate, held = e2e["rate_per_second"], e2e["held_per_second"]
    envelope_drain = next(name for name in drain if name.startswith("envelopes of"))
    peaks = {
        name: max((mib for _, mib in samples), default=0.0) for name, samples in memory.items()
    }
    ingress_peak = max(v for k, v in peaks.items() if k.startswith("ingress"))
    worker_peak = max(v for k, v in peaks.items() if k.startswith("worker"))
    # Judged over each soak that held: one stopped early ends behind, holding a backlog.
    soak_growth = {k: _growth(v) for k, v in memory.items() if "(soak" in k and "not held" not in k}

    cores = int(run["cores"])
    cpu_rows = _cpu_rows(results)
    lowest = lowest_not_sustained(e2e["steps"])
    # What stopped the soak: its first attempt that did not hold; else the lowest step not
    # sustained.
    not_held = next((_soak_label(s) for s in soaks if not s["sustained"]), None)
    soak_limit = not_held or (_e2e_label(lowest) if lowest is not None else None)
    spec_000 = [run for run in [*e2e["steps"], *soaks] if run["protocol"].startswith("offerwall")]
    # The runs measured against spec 000's rate, each with what it was.
    after_spec_000 = [
        (f"soak at half, {soak['seconds']} s", soak),
        *((f"half the rate, {a['seconds']} s", a) for a in answers),
        *((f"{e2e['json_share']:.2f} of the rate, {r['seconds']} s", r) for r in json_rates),
    ]

    def limited_by(label: str | None) -> str:
        return limit(*cpu_rows[label], cores) if label in cpu_rows else ""

    targets = [
        (f"end to end, spec 000, held for the whole soak ({soaks[0]['seconds']} s) / naive "
         "handler", _rate(held) if held is not None else "none held",
         _ratio(held or 0, naive["per_second"]), "≥ 1.50",
         held is not None and held >= 1.5 * naive["per_second"], soak_limit),
        (f"request-to-credit p99, commit included, at half that rate ({soak['protocol']}, "
         f"{soak['seconds']} s)",
         f"{soak['credit_p99_ms']:.0f} ms", "", "≤ 100 ms",
         soak["credit_p99_ms"] <= 100 and soak["sustained"], None),
        *(
            (f"{r['protocol']} end to end at {e2e['json_share']:.2f} of spec 000's "
             f"{_rate(rate)}: achieved / spec 000's rate", _rate(r["achieved_per_second"]),
             _ratio(r["achieved_per_second"], rate), f"≥ {e2e['json_share']:.2f}, sustained",
             r["sustained"] and r["achieved_per_second"] >= e2e["json_share"] * rate,
             _json_rate_label(r))
            for r in json_rates
        ),
        *(
            (f"answer p99 of {a['protocol']} (waits for the outcome) at half that rate",
             f"{a['answer_p99_ms']:.0f} ms", "", "≤ 100 ms",
             a["answer_p99_ms"] <= 100 and a["sustained"], None)
            for a in answers
        ),
        ("ingress accepted, spec 000, 1 process / HTTP + publish endpoint",
         _rate(offerwall["per_second"]), _ratio(offerwall["per_second"], publishing["per_second"]),
         "≥ 1.00", offerwall["per_second"] >= publishing["per_second"], "ingress (spec 000)"),
        ("ingress accepted, spec 000, 1 process / naive handler", _rate(offerwall["per_second"]),
         _ratio(offerwall["per_second"], naive["per_second"]), "≥ 2.00",
         offerwall["per_second"] >= 2 * naive["per_second"], "ingress (spec 000)"),
        (f"worker drain, {envelope_drain}: payouts / raw consumer's messages",
         _rate(drain[envelope_drain]["per_second"]),
         _ratio(drain[envelope_drain]["per_second"], broker["consume_per_second"]), "≥ 1.00",
         drain[envelope_drain]["per_second"] >= broker["consume_per_second"],
         f"worker drain, 1 process(es), {envelope_drain.split(' (')[0]}"),
        ("ingress peak resident memory", f"{ingress_peak:.0f} MiB", "", f"< {MIB_LIMIT} MB",
         ingress_peak * 1.048576 < MIB_LIMIT, None),
        ("worker peak resident memory (largest process)", f"{worker_peak:.0f} MiB", "",
         f"< {MIB_LIMIT} MB", worker_peak * 1.048576 < MIB_LIMIT, None),
        *(
            (f"{name}: growth over it", f"{growth:+.1f} MiB", "",
             f"≤ {FLAT_MIB} MiB", growth <= FLAT_MIB, None)
            for name, growth in soak_growth.items()
        ),
        ("`synchronous_commit`", f"`{results['synchronous_commit']}`", "", "`on`",
         results["synchronous_commit"] == "on", None),
    ]  # fmt: skip
    baselines = [
        ("HTTP ceiling", "bare Starlette, same uvicorn settings, wrk 32 connections",
         _rate(http["per_second"]), f"{http['p50_ms']:.1f} ms", f"{http['p99_ms']:.1f} ms"),
        ("broker publish", "aio-pika, persistent, confirmed, 32 in flight, quorum queue",
         _rate(broker["publish_per_second"]), "", ""),
        ("HTTP + publish",
         "a Starlette endpoint that only publishes a payout event per request, confirmed, with "
         "the ingress's publish call; same uvicorn settings, wrk 32 connections",
         _rate(publishing["per_second"]), f"{publishing['p50_ms']:.1f} ms",
         f"{publishing['p99_ms']:.1f} ms"),
        ("broker consume", "aio-pika, prefetch 200, ack each, 100,000 messages",
         _rate(broker["consume_per_second"]), "", ""),
        ("one transaction per credit, spread wallets",
         "pgbench, 10 clients, prepared statements, `bench/pgbench_credit.sql` over 10,000 "
         "wallets",
         _rate(pg["spread"]), "", ""),
        ("one transaction per credit, 5 hot wallets", "the same over 5 wallets",
         _rate(pg["hot"]), "", ""),
        ("naive handler",
         "verify spec 000 and credit in the request, one transaction each "
         "(`bench/baselines.py`)",
         _rate(naive["per_second"]), f"{naive['p50_ms']:.1f} ms",
         f"{naive['p99_ms']:.1f} ms"),
    ]  # fmt: skip
    lines = [
        "# Benchmarks",
        "",
        f"Generated by `{run['command']}` on {run['date']} in {run['seconds']} s,",
        f"on {run['machine']}.",
        "Every figure in the tables below comes from that one run: each measurement ran alone,",
        "beside the ceiling it is compared with. `synchronous_commit` was "
        f"`{results['synchronous_commit']}`, as read from the bench's database at its start"
        + _postgres_settings(results.get("postgres_settings", {})),
        "Time per part: "
        + ", ".join(f"{name} {took:,} s" for name, took in run["parts"].items())
        + ".",
        "",
        f"![throughput and latency]({plot})",
        "",
        "## Targets (issue 22)",
        "",
        "| measure | value | ratio | target | met | what limited it |",
        "|---|---|---|---|---|---|",
        *(
            f"| {m} | {v} | {r} | {t} | {_met(ok)} | {limited_by(row)} |"
            for m, v, r, t, ok, row in targets
        ),
        "",
        "*What limited it* is read from the cores each process used during that measurement",
        "(the table under *Where the time goes*): all cores busy (90% or more), one Python",
        "process at its one core (0.85 or more), or no core full: then it waited on something",
        "(the broker, the database, its own batching) with cores to spare.",
        "",
        "## Ceilings and baselines",
        "",
        "| what | how | rate | p50 | p99 |",
        "|---|---|---|---|---|",
        *(
            f"| {what} | {how} | {rate} | {p50} | {p99} |"
            for what, how, rate, p50, p99 in baselines
        ),
        "",
        "The endpoint that only publishes reached "
        f"{_ratio(publishing['per_second'], broker['publish_per_second'])} of the raw publisher's "
        "rate:",
        "the rest is what HTTP in one Python process costs before any ingress work. The ingress",
        f"(spec 000) reached {_ratio(offerwall['per_second'], publishing['per_second'])} "
        "of that endpoint's rate.",
        "",
        "## Ingress, per protocol",
        "",
        "wrk, 32 connections, 10 s, replaying pre-signed requests (5% exact re-sends). The query",
        "protocols run against the ingress alone; the JSON protocols wait for the outcome, so one",
        "worker process runs beside them. *Refused* counts the answers that were not an",
        "acceptance: an HTTP error, or for the JSON protocols (which answer HTTP 200 either way)",
        "a body without the success code.",
        "",
        "| protocol | accepted | p50 | p99 | refused | / broker publish | / HTTP + publish "
        "| / bare Starlette | / naive |",
        "|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {_rate(r['per_second'])} | {r['p50_ms']:.1f} ms | {r['p99_ms']:.1f} ms | "
            f"{r['refused']} | {_ratio(r['per_second'], broker['publish_per_second'])} | "
            f"{_ratio(r['per_second'], publishing['per_second'])} | "
            f"{_ratio(r['per_second'], http['per_second'])} | "
            f"{_ratio(r['per_second'], naive['per_second'])} |"
            for name, r in ingress.items()
        ),
        "",
        "## Worker drain",
        "",
        "A pre-filled work queue drained by `payouts worker --processes N`; the rate is payouts",
        "over the span from the first to the last crediting transaction. The hot rows go to 5",
        "wallets and compare with pgbench over the same 5; the others send a fifth of their",
        "payouts to 10 hot users and compare with pgbench spread evenly over 10,000 wallets.",
        "The one-payout-per-transaction worker runs `batch_size = 1` with",
        f"`concurrent_batches = {results['pgbench_clients']}`, as many transactions at once as "
        "pgbench's",
        "clients.",
        "",
        "| run | payouts | credits | / broker consume | / pgbench | / naive | peak RSS |",
        "|---|---|---|---|---|---|---|",
        *(
            f"| {name} | {d['payouts']:,} | {_rate(d['per_second'])} | "
            f"{_ratio(d['per_second'], broker['consume_per_second'])} | "
            f"{_ratio(d['per_second'], pg['hot' if 'hot' in name else 'spread'])} | "
            f"{_ratio(d['per_second'], naive['per_second'])} | "
            f"{d['peak_rss_mib']:.0f} MiB |"
            for name, d in drain.items()
        ),
        "",
        "## End to end",
        "",
        "The ingress and one worker process, wrk pacing spec 000 callbacks at steps of the",
        "lower broker ceiling; a step is sustained when wrk reached 95% of its rate, every",
        "answer was an acceptance, and the step's last payout was credited within 2 s of its",
        "end (a step that fails is run once more, and both runs are shown). Two more steps then",
        "halve the gap between the highest rate sustained and the lowest not, twice. Every run",
        "waits until all its payouts are credited, so the next starts on an empty queue.",
        "",
        "Then a **soak at the highest rate a step sustained**, for `--soak-seconds`, judged by",
        "the same rule. If it does not hold, it is run again at "
        + " and then ".join(f"{f:.0%}" for f in SOAK_FRACTIONS[1:])
        + " of that rate, until one",
        "holds; every attempt is shown. An attempt is stopped early once it cannot hold: a",
        "callback refused, 95% of the rate out of reach even if every remaining second ran at",
        f"the full rate, or the worker more than {ABANDON_BEHIND_SECONDS} s behind (the "
        "payout it settled last received",
        f"that long ago). The rate that held is spec 000's rate: {_rate(rate)} in this run"
        + ("" if held is not None else " (no attempt held: the highest step's)")
        + ". A second soak, as",
        "long, runs at half of it for the request-to-credit latency; specs 001 and 004 run",
        f"15 s at half of it for their answer times and 15 s at {e2e['json_share']:.2f} of it "
        "for their throughput.",
        "",
        "**Request-to-credit latency includes the commit.** It is each credited payout's",
        "`lag_ms` from the worker's own log line, written once the transaction that credited",
        "it has committed: from the ingress receiving the callback (after verifying it) to",
        "after the commit. (The books' `credited_at` is stamped at the start of the crediting",
        "transaction, which would leave its statements and its commit out.) *Caught up* too is",
        "read from those lines: the last payout's commit, not its transaction's start.",
        "",
        "**Connections.** The query protocols (000, 003) answer once the broker confirmed the",
        "event; a paced run still needs a connection free when each request is due, and with a",
        "fixed 32 a few slow confirms leave wrk behind the pace for good (it never makes up a",
        "missed send). Each of their steady runs opens rate times "
        f"{CONFIRM_WAIT_SECONDS:g} s connections (half",
        f"the p99 target), at least {CONNECTIONS}. Specs 001 and 004 hold each request until",
        "the worker's outcome comes back, so their connections cap their rate at connections /",
        "answer time (Little's law), as a provider's would: each of their steady runs opens",
        f"rate times {ANSWER_WAIT_SECONDS:g} s connections ({ANSWER_WAIT_SECONDS:g} s is twice "
        "the answer p99 target), at least",
        f"{CONNECTIONS} and at most {MAX_CONNECTIONS}, as a provider sending that many "
        "callbacks would.",
        "",
        "**Envelopes.** The ingress puts up to `broker.max_events_per_message` = "
        f"{e2e['max_events_per_message']} events",
        "in one broker message. *Events / message* is the mean the ingress reported over each",
        "run (the change of `payouts_ingress_events_per_message`'s sum over its count on the",
        "ingress's `/metrics`); over every spec 000 step and soak attempt together it was",
        f"{_mean(_events_per_message(spec_000)) or '-'}. `/ naive` divides by the naive "
        "handler's rate, which was",
        "measured flat out rather than paced.",
        "",
        "| protocol | run | target | achieved | / naive | connections | events / message "
        "| answer p50 | answer p99 | credit p50 | credit p99 | sustained |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {s['protocol']} | {kind} | {_rate(s['target_per_second'])} | "
            f"{_rate(s['achieved_per_second'])} | "
            f"{_ratio(s['achieved_per_second'], naive['per_second'])} | "
            f"{s['connections']} | {_mean(s['events_per_message'])} | "
            f"{s['answer_p50_ms']:.1f} ms | "
            f"{s['answer_p99_ms']:.1f} ms | {s['credit_p50_ms']:.1f} ms | "
            f"{s['credit_p99_ms']:.1f} ms | {'yes' if s['sustained'] else 'no'} |"
            for kind, s in [
                *((f"step, {s['seconds']} s", s) for s in e2e["steps"]),
                *((_soak_run(s), s) for s in soaks),
                *after_spec_000,
            ]
        ),
        "",
        "**Where an answer's time goes.** For the runs at half the rate and the ones that wait",
        "for the outcome: *confirm* is the mean wait of a callback for its message's confirm",
        "(`payouts_ingress_publish_seconds`), *transaction* the crediting transactions' mean",
        "time from opening to commit and *payouts / transaction* their mean size (the worker's",
        "`payouts_worker_commit_seconds` and `payouts_worker_batch_size`); *before the commit*",
        "is the request-to-credit latency above, and *after the commit* each answer's time less",
        "its payout's request-to-credit latency (joined by event id): the outcome's",
        "notification, the wake-up of the waiting request and its response, plus the",
        "verification before the event was built.",
        "",
        "| protocol | run | answer p50 | answer p99 | confirm | transaction "
        "| payouts / transaction | before the commit p50 | p99 | after the commit p50 | p99 |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *(
            f"| {s['protocol']} | {kind} | {s['answer_p50_ms']:.1f} ms | "
            f"{s['answer_p99_ms']:.1f} ms | {_ms(s.get('confirm_mean_ms'))} | "
            f"{_ms(s.get('transaction_mean_ms'))} | {_mean(s.get('payouts_per_transaction'))} | "
            f"{s['credit_p50_ms']:.1f} ms | {s['credit_p99_ms']:.1f} ms | "
            f"{_ms(s.get('after_commit_p50_ms'))} | {_ms(s.get('after_commit_p99_ms'))} |"
            for kind, s in after_spec_000
        ),
        "",
        *_timelines(soaks),
        "## Proof API (spec 002)",
        "",
        "A partner's look-ups of the payouts of specs 001 and 004 the runs above credited,",
        "against the same ingress. Each answer carries the payout's receipt, a PNG the ingress",
        "draws (several milliseconds of CPU) and keeps for the payouts asked most recently. The",
        "spec advises partners to keep the images they fetched, so the first run asks for each",
        "payout once (5% asked again), flat out over 32 connections for 10 s: what drawing",
        "allows. The second polls a few payouts whose receipts were drawn just before, paced at",
        "half spec 000's rate: the API's own cost (the look-up, the answer). *Refused* counts",
        'the answers without `"status":"success"` (the spec answers "Transaction not',
        'found" with HTTP 200).',
        "",
        "| run | payouts | target | achieved | answer p50 | answer p99 | refused | errors |",
        "|---|---|---|---|---|---|---|---|",
        f"| each payout once, flat out | {proofs['first_lookups']['payouts']:,} | flat out | "
        f"{_rate(proofs['first_lookups']['per_second'])} | "
        f"{proofs['first_lookups']['p50_ms']:.1f} ms | {proofs['first_lookups']['p99_ms']:.1f} ms"
        f" | {proofs['first_lookups']['refused']} | {proofs['first_lookups']['errors']} |",
        f"| polled, paced, {proofs['polled']['seconds']} s | {proofs['polled']['payouts']:,} | "
        f"{_rate(proofs['polled']['target_per_second'])} | "
        f"{_rate(proofs['polled']['achieved_per_second'])} | "
        f"{proofs['polled']['answer_p50_ms']:.1f} ms | {proofs['polled']['answer_p99_ms']:.1f} ms"
        f" | {proofs['polled']['refused']} | {proofs['polled']['errors']} |",
        "",
        "The polled payouts' receipts were drawn just before, one request each: "
        f"{proofs['polled']['warm_up_refused']} of",
        f"those {proofs['polled']['payouts']:,} answers were refused.",
        "",
        "## Memory",
        "",
        "Resident set of the largest process, sampled every second.",
        "",
        "| process | peak | change first → last fifth |",
        "|---|---|---|",
        *(
            f"| {name} | {peaks[name]:.0f} MiB | {_growth(samples):+.1f} MiB |"
            for name, samples in memory.items()
        ),
        "",
        "The growth over each soak that held is judged in the targets: at most "
        f"{FLAT_MIB} MiB between",
        "its first and last fifth counts as flat.",
        "",
        "## Where the time goes",
        "",
        f"Cores used during each measurement above, out of the machine's {cores}: by the",
        "process measured (the server, the raw client or the worker, with its children), by",
        "the ingress and the worker of the end-to-end run, by RabbitMQ, Postgres and the load",
        "generator, and by the whole machine (everything not idle, this harness included).",
        "",
        "| measurement | " + " | ".join(CPU_COLUMNS) + " | what limited it |",
        "|---|" + "---|" * (len(CPU_COLUMNS) + 1),
        *(
            f"| {label} | "
            + " | ".join(f"{row[c]:.2f}" if c in row else "" for c in CPU_COLUMNS)
            + f" | {limit(row, processes, cores)} |"
            for label, (row, processes) in cpu_rows.items()
        ),
        "",
        "py-spy samples of the ingress and of one worker process, in extra passes: the rates",
        "and cores reported above come from runs that no profiler slowed down. *Running* is the",
        "share of samples in which each owner's own code was running: our modules, a library",
        "(or a standard module) by name, or the event loop's C code (polling, and the sockets'",
        "reads and writes). These add up to 100% and name where the CPU goes. *On the stack* is",
        "the share in which each of our functions, or each library, was anywhere on the stack,",
        "callers included (functions nest, so these add up to more than 100%).",
        "",
        *(
            line
            for label, found in results["profiles"].items()
            for line in (
                f"**{label}**",
                "",
                "| running | owner | on the stack | where |",
                "|---|---|---|---|",
                *(
                    f"| {_share(running, 0)} | {_share(running, 1)} "
                    f"| {_share(on_stack, 0)} | {_share(on_stack, 1)} |"
                    for running, on_stack in itertools.zip_longest(
                        found["running"], found["on_stack"]
                    )
                ),
                "",
            )
        ),
        "## Reproduce",
        "",
        "```sh",
        f"bench/run.sh                      # about 12 minutes; writes this file and {plot}",
        "bench/run.sh --soak-seconds 600   # each soak ten minutes: about 30 minutes, at most",
        "                                  # about 52 when only the last of its three rates holds",
        "bench/run.sh --parts end_to_end   # one part (or several, comma-separated): prints its",
        "                                  # figures and leaves this file alone",
        "bench/run.sh --parts answer_path --rate 1600 --rounds 3",
        "                                  # specs 003, 001 and 004 at one rate, 3 times each,",
        "                                  # and where each answer's time goes (not in a whole",
        "                                  # run)",
        "```",
        "",
        "It needs the local Postgres and RabbitMQ (as the tests do), `wrk` (installed from",
        "Debian's packages when missing) and `pgbench` (PostgreSQL's client tools).",
        "",
    ]
    return "\n".join(lines) + "\n"


def _share(row: tuple[float, str] | None, column: int) -> str:
    """One cell of a profile row: its share or its name; blank past the end of a shorter list."""
    if row is None:
        return ""
    return f"{row[0]:.0f}%" if column == 0 else f"`{row[1]}`"


def _plot(results: dict[str, Any]) -> str:
    """Two bar charts in one SVG: throughput beside its ceilings, and latency percentiles."""
    broker, drain, e2e = results["broker"], results["drain"], results["end_to_end"]
    throughput = [
        ("bare Starlette", results["http_ceiling"]["per_second"]),
        ("broker publish", broker["publish_per_second"]),
        ("HTTP + publish", results["http_publish"]["per_second"]),
        ("ingress (000)", results["ingress"]["offerwall_md5 (000)"]["per_second"]),
        (
            "ingress (000), 2 proc.",
            results["ingress"]["offerwall_md5 (000), 2 processes"]["per_second"],
        ),
        ("naive handler", results["naive"]["per_second"]),
        ("broker consume", broker["consume_per_second"]),
        ("worker, 1 process", drain["1 process(es)"]["per_second"]),
        ("worker, 2 processes", drain["2 process(es)"]["per_second"]),
        ("pgbench, spread", results["pgbench"]["spread"]),
        ("end to end, 15 s steps", e2e["highest_sustained_per_second"]),
        ("end to end, whole soak", e2e["held_per_second"] or 0.0),
        *(
            (f"{r['protocol'].split()[-1].strip('()')} end to end", r["achieved_per_second"])
            for r in e2e["json_rates"]
        ),
    ]
    latency = [
        ("naive p99", results["naive"]["p99_ms"]),
        ("ingress 000 p99", results["ingress"]["offerwall_md5 (000)"]["p99_ms"]),
        ("credit p50 (half-rate soak)", e2e["soak"]["credit_p50_ms"]),
        ("credit p99 (half-rate soak)", e2e["soak"]["credit_p99_ms"]),
        *(
            (f"{a['protocol'].split()[-1].strip('()')} answer p99 (half rate)", a["answer_p99_ms"])
            for a in e2e["json_answers"]
        ),
        ("002 answer p99 (polled)", e2e["proofs"]["polled"]["answer_p99_ms"]),
    ]
    width, bar, gap, left = 900, 22, 8, 200
    parts: list[str] = []
    y = 30

    def chart(title: str, rows: list[tuple[str, float]], unit: str) -> None:
        nonlocal y
        parts.append(f'<text x="10" y="{y}" font-weight="bold">{escape(title)}</text>')
        y += 12
        top = max(value for _, value in rows) or 1
        for label, value in rows:
            length = (width - left - 120) * value / top
            parts.append(
                f'<text x="{left - 8}" y="{y + 16}" text-anchor="end">{escape(label)}</text>'
            )
            parts.append(
                f'<rect x="{left}" y="{y}" width="{length:.1f}" height="{bar}" fill="#4a7ab5"/>'
            )
            parts.append(
                f'<text x="{left + length + 6:.1f}" y="{y + 16}">{value:,.0f} {unit}</text>'
            )
            y += bar + gap
        y += 30

    chart("Throughput (per second)", throughput, "/s")
    chart("Latency (milliseconds)", latency, "ms")
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{y}" '
        'font-family="sans-serif" font-size="13">\n'
        f'<rect width="100%" height="100%" fill="white"/>\n' + "\n".join(parts) + "\n</svg>\n"
    )
