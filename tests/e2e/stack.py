"""Real `payouts ingress` and `payouts worker` processes on a throwaway database and namespace."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from schema.topology import Topology
from tests.polling import wait_until
from tests.services import fetch_value, queue_depth

OFFERWALL_KEY = "e2e-offerwall-pub-key"
OFFERWALL_KEY_NEXT = "e2e-offerwall-pub-key-next"  # the secret a rotation brings in
ADJOE_TOKEN = "e2e-adjoe-token"
AIGAME_KEY = "e2e-aigame-key"
BILLING_SECRET = "e2e-billing-secret"
# Short tiers, so a payout that failed during a fault is retried within the test's patience.
RETRY_TIERS = (1, 2, 5, 10, 30)

CONFIG = """
[database]
url = "{database_url}"
pool_max_size = 8

[broker]
urls = {broker_urls}
node_order = "{node_order}"
namespace = "{namespace}"
publish_timeout_seconds = 5
retry_delays_seconds = [1, 2, 5, 10, 30]

[ingress]
host = "127.0.0.1"
port = {port}

[worker]
prefetch = 8
in_place_retry_seconds = 0.5
shutdown_grace_seconds = 10

[[providers]]
name = "offerwall"
protocol = "offerwall_md5"
route = "/callbacks/offerwall"
secret_env = "E2E_OFFERWALL_KEY"
default_currency = "COIN"
max_amount = "100000"
account_policy = "create"

[[providers]]
name = "offerwall-strict"
protocol = "offerwall_md5"
route = "/callbacks/offerwall-strict"
secret_env = "E2E_OFFERWALL_KEY"
default_currency = "COIN"
max_amount = "100000"
account_policy = "require_existing"

[[providers]]
name = "adjoe"
protocol = "adjoe"
route = "/callbacks/adjoe"
secret_env = "E2E_ADJOE_TOKEN"
max_amount = "100000"
account_policy = "create"

[[providers]]
name = "aigame"
protocol = "aigame_payout"
route = "/aigame/v1/wallet/payout"
secret_env = "E2E_AIGAME_KEY"
allowed_currencies = ["VND2"]
amount_decimal_places = 2
max_amount = "100000"
account_policy = "create"
outcome_timeout_seconds = 10

[[providers]]
name = "billing"
protocol = "wallet_billing"
route = "/callbacks/billing"
secret_env = "E2E_BILLING_SECRET"
default_currency = "VND"
max_amount = "100000"
account_policy = "create"
verify_orders = true
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def alive(pid: int) -> bool:
    """Whether process `pid` is still running (a zombie has exited)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return not stat.read().split(") ")[1].startswith("Z")
    except FileNotFoundError:
        return False


def _above_info(log_line: str) -> bool:
    try:
        return json.loads(log_line).get("level") not in {"info", "debug"}
    except (ValueError, AttributeError):
        return True  # not a structured line: a traceback, say


def _payouts_command() -> list[str]:
    script = Path(sys.executable).parent / "payouts"
    return [str(script)] if script.exists() else [sys.executable, "-m", "payouts"]


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    # A worker's metrics and health port.
    status_port: int | None = None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def troubles(self, last: int = 8) -> str:
        """Its last log lines above info level, and whether it still runs: for a failure report."""
        lines = [line for line in self.log().splitlines() if _above_info(line)]
        state = "running" if self.popen.poll() is None else f"exited {self.popen.returncode}"
        return "\n".join([f"--- {self.name} ({state})", *(line[:400] for line in lines[-last:])])

    def signal(self, signum: int) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signum)

    def stop(self, timeout: float = 45.0) -> int:
        """SIGTERM, then wait past the longest stop bound of the stack's processes: a worker's
        (workers.consumer.stop_seconds, 25 s under this stack's settings, and 10 s more for the
        supervisor of --processes)."""
        self.signal(signal.SIGTERM)
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            self.popen.kill()
            return self.popen.wait()


@dataclass
class Stack:
    """`broker_url`: one node, or a cluster's nodes separated by commas (as PAYOUTS_BROKER_URL
    takes them), tried in `node_order`."""

    tmp_path: Path
    database_url: str
    broker_url: str
    namespace: str
    node_order: str = "shuffled"
    port: int = field(default_factory=free_port)
    processes: list[Process] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.config_path = self.tmp_path / "payouts.toml"
        self.write_config()

    @property
    def broker_urls(self) -> tuple[str, ...]:
        return tuple(self.broker_url.split(","))

    def write_config(self) -> None:
        """The config file from the fields: again after a test changed one (`node_order`)."""
        self.config_path.write_text(
            CONFIG.format(
                database_url=self.database_url,
                broker_urls=json.dumps(self.broker_urls),
                node_order=self.node_order,
                namespace=self.namespace,
                port=self.port,
            )
        )

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def env(self, database_url: str | None = None, broker_url: str | None = None) -> dict[str, str]:
        """The environment of our processes; URLs given here override the config file's
        (how a test routes one process through a TcpProxy)."""
        return {
            **os.environ,
            "E2E_OFFERWALL_KEY": OFFERWALL_KEY,
            "E2E_OFFERWALL_KEY_NEXT": OFFERWALL_KEY_NEXT,
            "E2E_ADJOE_TOKEN": ADJOE_TOKEN,
            "E2E_AIGAME_KEY": AIGAME_KEY,
            "E2E_BILLING_SECRET": BILLING_SECRET,
            "PAYOUTS_DATABASE_URL": database_url or "",
            "PAYOUTS_BROKER_URL": broker_url or "",
        }

    def run(
        self, *args: str, env: dict[str, str] | None = None
    ) -> subprocess.CompletedProcess[str]:
        """A `payouts` command run to its end, as an operator types it."""
        return subprocess.run(
            [*_payouts_command(), "--config", str(self.config_path), *args],
            env=env or self.env(),
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def _start(
        self, name: str, *args: str, env: dict[str, str] | None = None, config: Path | None = None
    ) -> Process:
        log_path = self.tmp_path / f"{name}-{len(self.processes)}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                [*_payouts_command(), "--config", str(config or self.config_path), *args],
                env=env or self.env(),
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        process = Process(name, popen, log_path)
        self.processes.append(process)
        return process

    async def start_ingress(
        self,
        broker_url: str | None = None,
        processes: int = 1,
        config: Path | None = None,
        port: int | None = None,
    ) -> Process:
        """`config` and `port` replace the stack's (several ingresses behind a load balancer)."""
        process = self._start(
            "ingress",
            "ingress",
            "--processes",
            str(processes),
            *(["--port", str(port)] if port else []),
            env=self.env(broker_url=broker_url),
            config=config,
        )
        base_url = f"http://127.0.0.1:{port}" if port else self.base_url
        async with httpx.AsyncClient(base_url=base_url) as client:

            async def ready() -> bool:
                try:
                    return (await client.get("/readyz")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, f"ingress ready; log:\n{process.log()}")
        return process

    async def start_worker(
        self, database_url: str | None = None, broker_url: str | None = None
    ) -> Process:
        env = self.env(database_url=database_url, broker_url=broker_url)
        status_port = free_port()
        process = self._start("worker", "worker", "--status-port", str(status_port), env=env)
        process.status_port = status_port

        async def consuming() -> bool:
            assert process.popen.poll() is None, process.log()
            return "worker consuming" in process.log()

        await wait_until(consuming, "worker consuming")
        return process

    def start_worker_processes(self, processes: int, base_status_port: int) -> Process:
        """`payouts worker --processes N`: the supervisor; its children log through it."""
        return self._start(
            "workers",
            "worker",
            "--processes",
            str(processes),
            "--status-port",
            str(base_status_port),
        )

    async def queue_depth(self, queue_name: str | None = None) -> int:
        return await queue_depth(
            self.broker_url, queue_name or Topology(self.namespace, RETRY_TIERS).work_queue
        )

    async def pending(self) -> int:
        """Messages still to be processed: in the work queue or waiting in a retry tier."""
        topology = Topology(self.namespace, RETRY_TIERS)
        return sum([await self.queue_depth(name) for name in topology.pending_queues])

    async def fetchval(self, query: str, *args: Any) -> Any:
        return await fetch_value(self.database_url, query, *args)

    def stop_all(self) -> None:
        for process in self.processes:
            process.stop()
