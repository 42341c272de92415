"""Network partitions between processes that all talk over 127.0.0.1.

Port rules alone cannot cut two local nodes apart: each side's outgoing connections use
ephemeral ports. So each process to be cut off runs in a cgroup of its own (cgroup v2); a
mangle rule marks every loopback connection a packet of that cgroup belongs to, and a filter
rule drops marked packets on the given ports only, both ways. Other traffic of the same
process (its AMQP clients) and every other process on the machine are untouched. All rules
carry a comment tag naming this run and are removed by `heal` and `close`.
"""

from __future__ import annotations

import functools
import os
import re
import shlex
import shutil
from pathlib import Path
from typing import TYPE_CHECKING

from tests.availability import require_tool
from tests.clusters.commands import kill_and_wait, run
from tests.e2e.stack import alive
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

TAG_PREFIX = "payouts-partition"
# Rules left by a run that died before its teardown name its pid; they are swept on start.
_STALE_TAG = re.compile(rf"{TAG_PREFIX}-(\d+)-\w+")
_TABLES = ("mangle", "filter")
EXIT_SECONDS = 5.0
_WHY_IPTABLES = (
    "partitions between local nodes are iptables rules; "
    "deploy/local/test.sh installs it (ensure_iptables)"
)


def cgroup2_root() -> Path:
    """Where cgroup v2 is mounted (alone, or beside v1 controllers as `unified`)."""
    with open("/proc/mounts") as mounts:
        for line in mounts:
            _device, mountpoint, kind, *_ = line.split()
            if kind == "cgroup2":
                return Path(mountpoint)
    raise RuntimeError("no cgroup2 mount in /proc/mounts: partitions need cgroup v2")


class Partitions:
    """Cgroups to start processes in, and the rules that cut them off from each other."""

    def __init__(self, run_id: str) -> None:
        self.tag = f"{TAG_PREFIX}-{os.getpid()}-{run_id}"
        self._root = cgroup2_root()
        self._cgroups: list[Path] = []
        # One connmark per cgroup cut off: a bit of our own, never a whole mark others may set.
        self._marks: dict[Path, int] = {}

    def cgroup(self, name: str) -> Path:
        """A fresh cgroup for one process; see `launch_in`."""
        path = self._root / f"{self.tag}-{name}"
        path.mkdir(exist_ok=True)
        self._cgroups.append(path)
        return path

    @staticmethod
    def launch_in(cgroup: Path, command: Sequence[str]) -> list[str]:
        """`command` run inside `cgroup`: the shell moves itself there, then execs it, so every
        process it forks is born inside."""
        move_then_exec = 'echo $$ > "$0/cgroup.procs" && exec "$@"'
        return ["sh", "-c", move_then_exec, str(cgroup), *command]

    async def isolate(self, cgroup: Path, ports: Sequence[int]) -> None:
        """Drop loopback TCP on `ports` (either end) of every connection `cgroup` takes part in."""
        mark = 1 << (16 + len(self._marks))
        self._marks[cgroup] = mark
        relative = "/" + str(cgroup.relative_to(self._root))
        await _iptables(
            "mangle", "-A", "OUTPUT", "-o", "lo", "-m", "cgroup", "--path", relative,
            "-m", "comment", "--comment", self.tag,
            "-j", "CONNMARK", "--set-xmark", f"{mark:#x}/{mark:#x}",
        )  # fmt: skip
        await _iptables(
            "filter", "-A", "OUTPUT", "-o", "lo", "-p", "tcp",
            "-m", "multiport", "--ports", ",".join(map(str, ports)),
            "-m", "connmark", "--mark", f"{mark:#x}/{mark:#x}",
            "-m", "comment", "--comment", self.tag, "-j", "DROP",
        )  # fmt: skip

    async def heal(self) -> None:
        """Remove every rule of this run."""
        await _remove_rules(lambda tag: tag == self.tag)
        self._marks.clear()

    async def close(self) -> None:
        """Heal, and remove the cgroups once their processes are gone (a killed process stays
        in its cgroup until its parent has reaped it)."""
        if self._marks:
            await self.heal()
        for path in self._cgroups:
            await wait_until(functools.partial(_emptied, path), f"{path} empty", EXIT_SECONDS)
            path.rmdir()
        self._cgroups.clear()

    @staticmethod
    async def sweep_stale() -> None:
        """Remove the rules and cgroups of runs whose pytest died before its teardown, killing
        what still runs in those cgroups: only processes such a run started in them."""

        def stale(tag: str) -> bool:
            match = _STALE_TAG.fullmatch(tag)
            return match is not None and not alive(int(match.group(1)))

        if shutil.which("iptables"):  # nothing to sweep where it is missing
            await _remove_rules(stale)
        for path in cgroup2_root().glob(f"{TAG_PREFIX}-*"):
            owner = _STALE_TAG.match(path.name)
            if owner and not alive(int(owner.group(1))):
                for pid in (path / "cgroup.procs").read_text().split():
                    await kill_and_wait(int(pid))
                await wait_until(functools.partial(_emptied, path), f"{path} empty", EXIT_SECONDS)
                path.rmdir()


def _has_processes(cgroup: Path) -> bool:
    return "populated 1" in (cgroup / "cgroup.events").read_text()


async def _emptied(cgroup: Path) -> bool:
    return not _has_processes(cgroup)


async def _iptables(table: str, *arguments: str) -> str:
    iptables = require_tool("iptables", _WHY_IPTABLES)
    return await run(iptables, "-w", "5", "-t", table, *arguments)


async def _remove_rules(matches: Callable[[str], bool]) -> None:
    for table in _TABLES:
        for line in (await _iptables(table, "-S", "OUTPUT")).splitlines():
            words = shlex.split(line)
            if "--comment" not in words or words[0] != "-A":
                continue
            if matches(words[words.index("--comment") + 1]):
                await _iptables(table, "-D", *words[1:])
