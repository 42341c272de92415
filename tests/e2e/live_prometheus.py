"""A real Prometheus in front of an end-to-end stack: the shipped scrape configuration with only
its targets replaced (static ones and service discovery alike) by the stack's local ports, and
its intervals shortened so a test sees scrapes and rule evaluations within seconds. Jobs,
relabelling and rule files are the shipped ones."""

from __future__ import annotations

import contextlib
import copy
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import httpx
import yaml

from tests.availability import require_tool
from tests.deploy.test_compose_stack import PROMETHEUS_CONFIG, bind_mounts, load_yaml
from tests.e2e.stack import free_port
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator
    from pathlib import Path

# Scrapes and rule evaluations this often, so that a test waits seconds, not the shipped 15 s.
INTERVAL = "1s"


def local_config(targets: dict[str, list[str]]) -> dict[str, Any]:
    """The shipped configuration with each job's targets replaced by `targets[job_name]`, and
    the container paths of its rule files by the files compose mounts there."""
    config: dict[str, Any] = copy.deepcopy(load_yaml(PROMETHEUS_CONFIG))
    config["global"] = {
        **config.get("global", {}),
        "scrape_interval": INTERVAL,
        "evaluation_interval": INTERVAL,
    }
    jobs = [job["job_name"] for job in config["scrape_configs"]]
    assert sorted(jobs) == sorted(targets), (
        f"{PROMETHEUS_CONFIG} has the jobs {jobs}: give each one its local targets"
    )
    for job in config["scrape_configs"]:
        for key in [key for key in job if key == "static_configs" or key.endswith("_sd_configs")]:
            del job[key]
        job["static_configs"] = [{"targets": targets[job["job_name"]]}]
        for key in ("scrape_interval", "scrape_timeout"):
            if key in job:
                job[key] = INTERVAL
    mounts = bind_mounts("prometheus")
    config["rule_files"] = [str(mounts[path]) for path in config.get("rule_files", [])]
    return config


@dataclass
class LivePrometheus:
    client: httpx.AsyncClient
    popen: subprocess.Popen[bytes]
    log_path: Path

    async def api(self, path: str, **params: str) -> Any:
        """The `data` of a successful answer of the HTTP API (`/api/v1/...`)."""
        response = await self.client.get(f"/api/v1/{path}", params=params)
        body = response.json()
        assert body["status"] == "success", body
        return body["data"]

    async def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector (or the scalar, as one sample) `expression` evaluates to now."""
        data = await self.api("query", query=expression)
        result: list[dict[str, Any]] = data["result"]
        return result if data["resultType"] == "vector" else [{"metric": {}, "value": result}]

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def _start(directory: Path, targets: dict[str, list[str]]) -> tuple[subprocess.Popen[bytes], int]:
    binary = require_tool("prometheus", "deploy/local/test.sh installs it (ensure_prometheus)")
    directory.mkdir(parents=True)
    config_path = directory / "prometheus.yml"
    config_path.write_text(yaml.safe_dump(local_config(targets)))
    port = free_port()
    with (directory / "prometheus.log").open("wb") as log:
        popen = subprocess.Popen(
            [
                binary,
                f"--config.file={config_path}",
                f"--storage.tsdb.path={directory / 'data'}",
                f"--web.listen-address=127.0.0.1:{port}",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    return popen, port


@contextlib.asynccontextmanager
async def live_prometheus(
    directory: Path, targets: dict[str, list[str]]
) -> AsyncIterator[LivePrometheus]:
    """Prometheus on a free loopback port with its data in `directory`, scraping `targets`."""
    popen, port = _start(directory, targets)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            prometheus = LivePrometheus(client, popen, directory / "prometheus.log")

            async def ready() -> bool:
                assert popen.poll() is None, prometheus.log()
                try:
                    return (await client.get("/-/ready")).status_code == 200
                except httpx.TransportError:
                    return False

            await wait_until(ready, "Prometheus ready")
            yield prometheus
    finally:
        popen.terminate()
        try:
            popen.wait(10)
        except subprocess.TimeoutExpired:
            popen.kill()
            popen.wait()
