"""Three RabbitMQ nodes clustered beside the machine's default broker, for failover tests.

The first node forms the cluster; the others join it as they first boot (classic_config peer
discovery), and a node started again rejoins by itself. Each node has its own name, AMQP and
distribution ports, data, logs and cgroup (for partitions); all share one HOME whose Erlang
cookie the CLI uses too. The scripts in /usr/lib/rabbitmq/bin are called directly: the /usr/sbin
wrappers switch to the rabbitmq user, whose cookie is another. Every CLI call names its node
with -n, so nothing here can reach the default node.

cluster_partition_handling = pause_minority: in a partition, the side without a majority stops
serving (its clients reconnect to the majority) instead of carrying on alone and having its
writes thrown away when `autoheal` picks a winner. It is what RabbitMQ recommends for three or
more nodes in one data centre, and docs/failure-handling.md (Failover runs) says so.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tests.availability import require_tool
from tests.clusters.commands import CommandFailed, kill_and_wait, run
from tests.e2e.stack import alive, free_port

if TYPE_CHECKING:
    from pathlib import Path

    from tests.clusters.partitions import Partitions

RABBITMQ_BIN = "/usr/lib/rabbitmq/bin"
PARTITION_HANDLING = "pause_minority"
# Seconds before a silent peer counts as down: a partition is seen within 10-12 s, not 60-75 s.
NET_TICKTIME = 10
NODE_START_SECONDS = 90
CONFIG = """\
listeners.tcp.default = 127.0.0.1:{amqp_port}
cluster_partition_handling = {partition_handling}
net_ticktime = {net_ticktime}
disk_free_limit.absolute = 50MB
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = {first_node}
"""


@dataclass
class RabbitNode:
    """One node; `process` is its rabbitmq-server script while it runs."""

    letter: str
    name: str
    amqp_port: int
    dist_port: int
    base: Path
    cgroup: Path
    process: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}/"

    @property
    def pid_file(self) -> Path:
        return self.base / "rabbit.pid"

    def beam_pid(self) -> int | None:
        """The Erlang VM's pid while it runs (the script in `process` is only its parent)."""
        try:
            pid = int(self.pid_file.read_text().strip())
        except (FileNotFoundError, ValueError):
            return None
        return pid if alive(pid) else None


class RabbitCluster:
    """Start with `start()`, always `close()`; `repair()` brings it back to three healthy
    nodes after a test that killed, stopped or cut one off."""

    def __init__(self, root: Path, run_id: str, partitions: Partitions, size: int = 3) -> None:
        require_tool("erl", "the cluster's nodes are Erlang VMs (apt-get install rabbitmq-server)")
        self.root = root
        self.partitions = partitions
        self.home = root / "home"
        self.home.mkdir(parents=True)
        cookie = self.home / ".erlang.cookie"
        cookie.write_text(os.urandom(16).hex().upper())
        cookie.chmod(0o400)
        self.nodes = [self._node(run_id, chr(ord("a") + index)) for index in range(size)]
        # What start() and close() took, for the report of the run.
        self.timings: dict[str, float] = {}

    @staticmethod
    def _name(run_id: str, letter: str) -> str:
        return f"rabbit-{run_id}-{letter}@localhost"

    def _node(self, run_id: str, letter: str) -> RabbitNode:
        base = self.root / letter
        (base / "log").mkdir(parents=True)
        amqp_port = free_port()
        (base / "rabbitmq.conf").write_text(
            CONFIG.format(
                amqp_port=amqp_port,
                partition_handling=PARTITION_HANDLING,
                net_ticktime=NET_TICKTIME,
                first_node=self._name(run_id, "a"),
            )
        )
        (base / "rabbitmq-env.conf").write_text("")  # the system one names the default node
        (base / "enabled_plugins").write_text("[].\n")  # no management: its port is taken
        return RabbitNode(
            letter=letter,
            name=self._name(run_id, letter),
            amqp_port=amqp_port,
            dist_port=free_port(),
            base=base,
            cgroup=self.partitions.cgroup(f"rabbit-{letter}"),
        )

    @property
    def amqp_urls(self) -> list[str]:
        return [node.url for node in self.nodes]

    @property
    def dist_ports(self) -> list[int]:
        return [node.dist_port for node in self.nodes]

    def node_named(self, name: str) -> RabbitNode:
        return next(node for node in self.nodes if node.name == name)

    def _env(self) -> dict[str, str]:
        return {**os.environ, "HOME": str(self.home), "RABBITMQ_CONF_ENV_FILE": "/dev/null"}

    def _node_env(self, node: RabbitNode) -> dict[str, str]:
        return {
            **self._env(),
            "RABBITMQ_NODENAME": node.name,
            "RABBITMQ_NODE_PORT": str(node.amqp_port),
            "RABBITMQ_DIST_PORT": str(node.dist_port),
            "RABBITMQ_CONFIG_FILE": str(node.base / "rabbitmq.conf"),
            "RABBITMQ_CONF_ENV_FILE": str(node.base / "rabbitmq-env.conf"),
            "RABBITMQ_MNESIA_BASE": str(node.base / "mnesia"),
            "RABBITMQ_LOG_BASE": str(node.base / "log"),
            "RABBITMQ_PID_FILE": str(node.pid_file),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(node.base / "enabled_plugins"),
            "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS": "-kernel inet_dist_use_interface {127,0,0,1}",
        }

    async def ctl(self, tool: str, node: RabbitNode, *arguments: str) -> str:
        """`tool` (rabbitmqctl, rabbitmq-queues, ...) against `node`, never the default node."""
        return await run(
            f"{RABBITMQ_BIN}/{tool}", "-q", "-n", node.name, *arguments, env=self._env()
        )

    async def start(self) -> None:
        """Start the first node, then the others, which join it as they boot (peer discovery
        from their config file, so no node is stopped to join), and wait until all are online."""
        began = time.monotonic()
        # The nodes register with epmd, and start one if none runs. Started here, outside their
        # cgroups, so a cgroup holds nothing but its node and can be swept whole; a no-op where
        # one runs (the default node's).
        await run(require_tool("epmd", "Erlang nodes find each other through it"), "-daemon")
        first, *others = self.nodes
        await self.start_node(first)
        await asyncio.gather(*(self.start_node(node) for node in others))
        await self.await_online()
        self.timings["start"] = time.monotonic() - began

    async def await_online(self, node: RabbitNode | None = None) -> None:
        running = node or next(n for n in self.nodes if n.beam_pid() is not None)
        await self.ctl(
            "rabbitmqctl", running, "await_online_nodes", str(len(self.nodes)), "--timeout", "90"
        )

    async def start_node(self, node: RabbitNode) -> None:
        """Start `node` (again: a node that was in the cluster rejoins it by itself)."""
        if node.pid_file.exists():
            node.pid_file.unlink()
        log = (node.base / "log" / "server.out").open("ab")
        with log:
            node.process = await asyncio.create_subprocess_exec(
                *self.partitions.launch_in(node.cgroup, [f"{RABBITMQ_BIN}/rabbitmq-server"]),
                env=self._node_env(node),
                stdout=log,
                stderr=log,
            )
        try:
            await self.ctl(
                "rabbitmqctl",
                node,
                "wait",
                "--timeout",
                str(NODE_START_SECONDS),
                str(node.pid_file),
            )
        except CommandFailed as error:
            raise CommandFailed(f"{error}\n{self.log_tail(node)}") from None

    async def kill_node(self, node: RabbitNode) -> None:
        """kill -9 the node's VM, as a crash or an OOM kill would."""
        pid = node.beam_pid()
        assert pid is not None, f"{node.name} is not running"
        await kill_and_wait(pid)
        if node.process is not None:
            await node.process.wait()

    async def stop_node(self, node: RabbitNode) -> None:
        """Stop the node gracefully, as an operator's rolling restart does."""
        await self.ctl("rabbitmqctl", node, "stop", str(node.pid_file))
        if node.process is not None:
            await node.process.wait()

    async def rolling_restart(self) -> None:
        for node in self.nodes:
            await self.stop_node(node)
            await self.start_node(node)
            await self.await_online(node)

    async def quorum_status(self, node: RabbitNode, queue: str, vhost: str = "/") -> Any:
        """`queue`'s Raft members as `node` sees them: [{"Node Name", "Raft State", ...}]."""
        arguments = ("quorum_status", queue, "--vhost", vhost, "--formatter", "json")
        return json.loads(await self.ctl("rabbitmq-queues", node, *arguments))

    async def quorum_leader(self, queue: str, vhost: str = "/") -> RabbitNode | None:
        """The node leading `queue`'s Raft group as a running member sees it (`list_queues
        leader` lags behind an election); None while no member knows a leader."""
        for node in self.nodes:
            if not await self.is_running(node):
                continue
            try:
                status = await self.quorum_status(node, queue, vhost)
            except CommandFailed:
                continue  # the member is going down, or was not one
            leaders = [m["Node Name"] for m in status if m.get("Raft State") == "leader"]
            if leaders:
                return self.node_named(leaders[0])
        return None

    async def quorum_members(self, queue: str, vhost: str = "/") -> list[RabbitNode]:
        running = next(n for n in self.nodes if n.beam_pid() is not None)
        status = await self.quorum_status(running, queue, vhost)
        return [self.node_named(member["Node Name"]) for member in status]

    async def quorum_members_in_step(self, queue: str, vhost: str = "/") -> list[RabbitNode]:
        """The members of `queue` taking part in its Raft group now, as leader or follower, as a
        running node sees them: a restarted member counts again once it has caught up. Until
        all are back, stopping another node may leave the queue without a majority."""
        running = [node for node in self.nodes if await self.is_running(node)]
        try:
            status = await self.quorum_status(running[0], queue, vhost)
        except (CommandFailed, IndexError):
            return []
        in_step = [m for m in status if m.get("Raft State") in {"leader", "follower"}]
        return [self.node_named(member["Node Name"]) for member in in_step]

    async def is_running(self, node: RabbitNode) -> bool:
        """Whether the node's rabbit application runs (a paused minority node's VM is up,
        its application is not)."""
        if node.beam_pid() is None:
            return False
        try:
            answer = await self.ctl("rabbitmqctl", node, "eval", "rabbit:is_running().")
        except CommandFailed:
            return False
        return answer.strip() == "true"

    async def isolate(self, node: RabbitNode) -> None:
        """Cut `node` off from the others (distribution traffic only: clients still reach it)."""
        await self.partitions.isolate(node.cgroup, self.dist_ports)

    async def heal(self) -> None:
        await self.partitions.heal()

    async def repair(self) -> None:
        """Back to every node running and clustered, after whatever a test did."""
        await self.heal()
        for node in self.nodes:
            if node.beam_pid() is None:
                await self.start_node(node)
        await self.await_online()

    async def close(self) -> None:
        """Kill every node (the data is thrown away) and remove the partition rules."""
        began = time.monotonic()
        for node in self.nodes:
            pid = node.beam_pid()
            if pid is not None:
                await kill_and_wait(pid)
            if node.process is not None and node.process.returncode is None:
                node.process.kill()
                await node.process.wait()
        await self.partitions.close()
        self.timings["close"] = time.monotonic() - began

    def log_tail(self, node: RabbitNode, lines: int = 20) -> str:
        logs = sorted((node.base / "log").glob("*"))
        text = "\n".join(path.read_text(errors="replace") for path in logs)
        return f"--- {node.name} logs:\n" + "\n".join(text.splitlines()[-lines:])
