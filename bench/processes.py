"""Starting the measured processes, sampling their memory, and running the load tools."""

from __future__ import annotations

import asyncio
import os
import re
import resource
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

if TYPE_CHECKING:
    from collections.abc import Awaitable, Sequence

__all__ = [
    "MEASURED",
    "CpuMeter",
    "Load",
    "Profile",
    "Service",
    "parse_wrk",
    "pgbench",
    "profile",
    "read_profile",
    "wait_http",
    "wrk",
]

BENCH_DIR = Path(__file__).resolve().parent
# The CpuMeter group of the process a measurement is about (a server, a client, a worker).
MEASURED = "measured"


async def wait_http(url: str, limit_seconds: float = 60) -> None:
    deadline = time.monotonic() + limit_seconds
    async with httpx.AsyncClient() as client:
        while True:
            try:
                if (await client.get(url)).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"{url} not ready after {limit_seconds} s")
            await asyncio.sleep(0.2)


def _rss_kib(pid: int, field_name: str) -> int:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return 0
    match = re.search(rf"^{field_name}:\s+(\d+) kB", status, re.MULTILINE)
    return int(match.group(1)) if match else 0


def _descendants(pid: int) -> list[int]:
    children = Path(f"/proc/{pid}/task/{pid}/children")
    try:
        listed = children.read_text().split()
    except FileNotFoundError:
        return [pid]
    return [pid, *(grandchild for child in listed for grandchild in _descendants(int(child)))]


@dataclass
class Service:
    """A process under measurement, with its resident memory sampled every second."""

    name: str
    command: Sequence[str]
    env: dict[str, str]
    log_path: Path
    popen: subprocess.Popen[bytes] | None = None
    # (seconds since start, resident MiB of the largest process in the tree)
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    _sampler: asyncio.Task[None] | None = None

    def start(self) -> None:
        with self.log_path.open("ab") as log:
            self.popen = subprocess.Popen(
                list(self.command), env=self.env, stdout=log, stderr=subprocess.STDOUT
            )
        self._sampler = asyncio.get_running_loop().create_task(self._sample())

    async def _sample(self) -> None:
        assert self.popen is not None
        started = time.monotonic()
        while self.popen.poll() is None:
            pids = _descendants(self.popen.pid)
            # The supervisor of `--processes N` is tiny; the largest process is what matters.
            largest = max(_rss_kib(pid, "VmRSS") for pid in pids)
            self.rss_samples.append((time.monotonic() - started, largest / 1024))
            await asyncio.sleep(1)

    def peak_rss_mib(self) -> float:
        return max((mib for _, mib in self.rss_samples), default=0.0)

    async def stop(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.popen.send_signal(signal.SIGTERM)
            try:
                await asyncio.to_thread(self.popen.wait, 60)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                await asyncio.to_thread(self.popen.wait)
        if self._sampler is not None:
            self._sampler.cancel()


@dataclass(frozen=True)
class Load:
    """What wrk measured."""

    requests_per_second: float
    p50_ms: float
    p99_ms: float
    non_2xx: int
    errors: int
    # Answers that were not acceptances: non-2xx ones, and with an accepted body given to `wrk`,
    # 2xx ones without it.
    refused: int


_DURATION_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def _ms(text: str) -> float:
    match = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if match is None:
        raise ValueError(f"unreadable wrk duration {text!r}")
    return float(match.group(1)) * _DURATION_MS[match.group(2)]


async def wrk(
    url: str,
    requests_file: Path,
    *,
    seconds: int,
    connections: int,
    threads: int = 1,
    rate: float = 0,
    accepted_body: str = "",
    watch: Awaitable[object] | None = None,
) -> Load:
    """Replay `requests_file` against `url` with wrk; `rate` > 0 paces it (requests/s). With
    `accepted_body` (texts separated by "|"), an answer holding none of them counts as refused.
    When `watch` finishes first, wrk is stopped there (SIGINT: it still reports the run so far,
    its rate over the time it ran)."""
    env = {
        **os.environ,
        "REQUESTS": str(requests_file),
        "THREADS": str(threads),
        "CONNECTIONS": str(connections),
        "RATE": str(rate),
        "ACCEPTED_BODY": accepted_body,
    }
    command = [
        "wrk", f"-t{threads}", f"-c{connections}", f"-d{seconds}s", "--latency", "--timeout", "10s",
        "-s", str(BENCH_DIR / "replay.lua"), url,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    finished = asyncio.ensure_future(process.communicate())
    if watch is not None:
        watcher = asyncio.ensure_future(watch)
        await asyncio.wait({finished, watcher}, return_when=asyncio.FIRST_COMPLETED)
        if finished.done():
            watcher.cancel()
        else:
            process.send_signal(signal.SIGINT)
    output = (await finished)[0].decode()
    if process.returncode != 0:
        raise RuntimeError(f"wrk failed:\n{output}")
    return parse_wrk(output)


def parse_wrk(output: str) -> Load:
    """The rate, the latency percentiles and the failures of wrk's `--latency` report."""
    rate_match = re.search(r"Requests/sec:\s+([\d.]+)", output)
    p50 = re.search(r"^\s+50%\s+(\S+)", output, re.MULTILINE)
    p99 = re.search(r"^\s+99%\s+(\S+)", output, re.MULTILINE)
    if rate_match is None or p50 is None or p99 is None:
        raise RuntimeError(f"unreadable wrk output:\n{output}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", output)
    errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", output
    )
    refused = re.search(r"^Refused answers: (\d+)", output, re.MULTILINE)
    non_2xx_count = int(non_2xx.group(1)) if non_2xx else 0
    return Load(
        requests_per_second=float(rate_match.group(1)),
        p50_ms=_ms(p50.group(1)),
        p99_ms=_ms(p99.group(1)),
        non_2xx=non_2xx_count,
        errors=sum(int(n) for n in errors.groups()) if errors else 0,
        refused=int(refused.group(1)) if refused else non_2xx_count,
    )


async def pgbench(database_url: str, script: Path, *, clients: int, seconds: int) -> float:
    """Transactions per second of `script` (pgbench, `clients` connections, 2 threads), with
    prepared statements, as the worker's asyncpg uses them."""
    command = [
        "pgbench", "-n", "-M", "prepared", "-f", str(script), "-c", str(clients), "-j", "2",
        "-T", str(seconds), database_url,
    ]  # fmt: skip
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    output = (await process.communicate())[0].decode()
    match = re.search(r"tps = ([\d.]+) \(without initial connection time\)", output)
    if process.returncode != 0 or match is None:
        raise RuntimeError(f"pgbench failed:\n{output}")
    return float(match.group(1))


def _ticks(pid: int) -> int | None:
    """CPU time used by `pid` so far, in clock ticks; None once it has exited."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(") ", 1)[1].split()
    except FileNotFoundError:
        return None
    return int(fields[11]) + int(fields[12])  # utime + stime


def _pids_of(program: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            if f"({program})" in stat.read_text():
                found.append(int(stat.parent.name))
        except (FileNotFoundError, ProcessLookupError):
            continue
    return found


class CpuMeter:
    """Cores used by each group of processes between `start` and `stop`, and by the whole
    machine: who is busy, and whether anything was left idle."""

    # The load generator runs and exits inside the window, so /proc no longer has it at the
    # end: it is counted from the harness's rusage of its finished children.
    TOOLS = "wrk"
    MACHINE = "machine"

    def __init__(self, groups: dict[str, list[int]]) -> None:
        self._groups = {
            name: [p for pid in pids for p in _descendants(pid)] for name, pids in groups.items()
        }
        for program, label in (("beam.smp", "RabbitMQ"), ("postgres", "Postgres")):
            self._groups.setdefault(label, _pids_of(program))
        self._before: dict[int, int] = {}
        self._tools_before = 0.0
        self._machine_before = 0
        self._started = 0.0

    def start(self) -> None:
        self._before = {
            pid: ticks
            for pids in self._groups.values()
            for pid in pids
            if (ticks := _ticks(pid)) is not None
        }
        self._tools_before = _finished_children_seconds()
        self._machine_before = _machine_busy_ticks()
        self._started = time.monotonic()

    def stop(self) -> dict[str, float]:
        """Call once the tools started meanwhile have exited and been waited for."""
        elapsed = time.monotonic() - self._started
        ticks_per_second = os.sysconf("SC_CLK_TCK")
        # Postgres backends started meanwhile count from zero.
        self._groups["Postgres"] = sorted(set(self._groups["Postgres"]) | set(_pids_of("postgres")))
        used = {
            name: sum(self._used_ticks(pid) for pid in pids) / ticks_per_second
            for name, pids in self._groups.items()
        }
        used[self.TOOLS] = _finished_children_seconds() - self._tools_before
        used[self.MACHINE] = (_machine_busy_ticks() - self._machine_before) / ticks_per_second
        return {name: round(seconds / elapsed, 2) for name, seconds in used.items()}

    def _used_ticks(self, pid: int) -> int:
        """Since `start`; a process gone meanwhile (a short-lived helper) is not counted, and
        one started meanwhile counts from zero."""
        now = _ticks(pid)
        return 0 if now is None else now - self._before.get(pid, 0)


def _machine_busy_ticks() -> int:
    """Every core's non-idle time since boot, from the `cpu` line of /proc/stat."""
    user, nice, system, _idle, _iowait, irq, softirq = (
        int(n) for n in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:8]
    )
    # Steal (time the hypervisor gave to others) is not work done here.
    return user + nice + system + irq + softirq


def _finished_children_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


@dataclass(frozen=True)
class Profile:
    """Where a process spent its samples, two ways (shares in percent, largest first)."""

    # The share of samples in which each of our functions, or each library, was on the stack.
    on_stack: list[tuple[float, str]]
    # The share in which each owner's code was running itself: its module for our code, its
    # package for a library, the event loop's own C code for the loop. These add up to 100%.
    running: list[tuple[float, str]]


async def profile(pid: int, seconds: int, output: Path) -> Profile:
    """Where process `pid` spends its time: py-spy samples for `seconds`."""
    process = await asyncio.create_subprocess_exec(
        "py-spy", "record", "--pid", str(pid), "--duration", str(seconds), "--format", "raw",
        "--output", str(output), "--rate", "200", "--nonblocking",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
    )  # fmt: skip
    if await process.wait() != 0:
        return Profile([], [])
    return _read_output(output)


def _read_output(output: Path) -> Profile:
    return read_profile(output.read_text()) if output.exists() else Profile([], [])


def read_profile(raw: str) -> Profile:
    """py-spy's raw output (one `frame;frame;... count` line per distinct stack, outermost
    frame first) as a `Profile`."""
    total = 0
    on_stack: dict[str, int] = {}
    running: dict[str, int] = {}
    for line in raw.splitlines():
        stack, _, count = line.rpartition(" ")
        samples = int(count)
        total += samples
        frames = stack.split(";")
        for name in {group for frame in frames if (group := _frame_group(frame))}:
            on_stack[name] = on_stack.get(name, 0) + samples
        owner = _owner(frames[-1])
        running[owner] = running.get(owner, 0) + samples
    return Profile(_shares(on_stack, total), _shares(running, total))


def _shares(counts: dict[str, int], total: int) -> list[tuple[float, str]]:
    return sorted(((100 * n / total, name) for name, n in counts.items()), reverse=True)


_LIBRARIES = (
    "asyncpg",
    "aio_pika",
    "aiormq",
    "pamqp",
    "pydantic",
    "starlette",
    "uvicorn",
    "logging",
    "prometheus_client",
    "json",
)


# How a process starts: on the stack of every sample its main task takes, so they say nothing.
_ENTRY_MODULES = frozenset({"payouts/cli.py", "workers/event_loop.py", "ingress/server.py"})
_OUR_PACKAGES = ("ingress", "workers", "database", "schema", "broker", "payouts")
# py-spy's frame: `function (path:line)`.
_FRAME = re.compile(r"(.+) \((.+?):\d+\)$")


def _frame_group(frame: str) -> str | None:
    """`ingress/app.py: CallbackEndpoint.handle` for our code, `(asyncpg)` for a library's."""
    match = _FRAME.match(frame)
    if match is None:
        return None
    function, path = match.groups()
    package = path.split("/", 1)[0]
    if path in _ENTRY_MODULES:
        return None
    if package in _OUR_PACKAGES:
        return f"{path}: {function}"
    if package in _LIBRARIES:
        return f"({package})"
    return None


# The frame uvloop's C code runs under: samples whose innermost Python frame is this one were
# in the loop itself (polling, and reading and writing sockets for the transports).
_EVENT_LOOP_FRAME = re.compile(r"Runner\.run \(asyncio/runners\.py:\d+\)$")


def _owner(frame: str) -> str:
    """Whose code an innermost frame is running: `ingress/app.py` for ours, `(uvicorn)` for a
    library's or the standard library's, `(event loop, in C)` for uvloop's own."""
    if _EVENT_LOOP_FRAME.match(frame):
        return "(event loop, in C)"
    match = _FRAME.match(frame)
    if match is None:
        return "(other)"
    path = match.group(2)
    package = path.split("/", 1)[0]
    if package in _OUR_PACKAGES:
        return path
    if package.startswith("<frozen "):  # a standard module frozen into the interpreter
        package = package.removeprefix("<frozen ").removesuffix(">")
    return f"({package.removesuffix('.py')})"
