"""deploy/compose.yaml and what it mounts, checked without Docker: every mounted file exists, the
broker loads the project's definitions, Prometheus scrapes the ports the processes listen on,
and every query of the dashboard and the alerts names a metric the code exports, with labels it
has."""

from __future__ import annotations

import base64
import hashlib
import json
import re
import subprocess
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
from argon2 import PasswordHasher
from prometheus_client import Counter, Gauge, Histogram

from ingress import metrics as ingress_metrics
from schema.settings import load_settings
from tests.deploy.test_k8s_manifests import EVERY_ADDRESS, k8s_settings, load_documents
from workers import metrics as worker_metrics
from workers.consumer import stop_seconds

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
COMPOSE_FILE = DEPLOY / "compose.yaml"
STACK = DEPLOY / "compose"
CONTAINER_CONFIG = DEPLOY / "k8s" / "base" / "payouts.toml"
PROMETHEUS_CONFIG = STACK / "prometheus" / "prometheus.yml"
ALERTS = STACK / "prometheus" / "alerts.yml"
DASHBOARD = STACK / "grafana" / "dashboards" / "payouts.json"
DATASOURCES = STACK / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
DASHBOARD_PROVIDERS = STACK / "grafana" / "provisioning" / "dashboards" / "payouts.yml"

# Suffixes Prometheus series carry beyond the family name, and the metric types that have them.
SERIES_SUFFIXES = {
    "_total": (Counter,),
    "_bucket": (Histogram,),
    "_sum": (Histogram,),
    "_count": (Histogram,),
    "": (Gauge,),
}
METRIC_NAME = re.compile(r"\bpayouts_[a-z_]+")
GROUPING = re.compile(r"\b(?:by|without)\s*\(([^)]*)\)")
MATCHER = re.compile(r"\b(payouts_[a-z_]+)\{([^}]*)\}")


def load_yaml(path: Path) -> Any:
    (document,) = load_documents(path)
    return document


@cache
def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = load_yaml(COMPOSE_FILE)
    return loaded


def service(name: str) -> dict[str, Any]:
    services: dict[str, dict[str, Any]] = compose()["services"]
    assert name in services, f"{COMPOSE_FILE.name} has no service {name!r}"
    return services[name]


def bind_mounts(name: str) -> dict[str, Path]:
    """Container path -> host path of a service's bind mounts (named volumes left out)."""
    mounts = {}
    for volume in service(name).get("volumes", []):
        source, target = volume.split(":")[:2]
        if source.startswith("."):
            mounts[target] = (COMPOSE_FILE.parent / source).resolve()
    return mounts


def exported_metrics() -> dict[str, Counter | Gauge | Histogram]:
    exported = {}
    for module in (ingress_metrics, worker_metrics):
        for attribute in module.__all__:
            metric = getattr(module, attribute)
            # The family name as registered: a Counter's without the _total its series carry.
            exported[metric._name] = metric
    return exported


# Labels Prometheus attaches to every scraped series. A metric's own label of the same name is
# kept as `exported_<name>` (honor_labels is off): our `instance`, the provider instance, is
# `exported_instance` in Prometheus, and `instance` there names the scraped process.
TARGET_LABELS = {"instance", "job"}


def labels_of(metric: Counter | Gauge | Histogram) -> set[str]:
    """The labels of the metric's series as Prometheus stores them. Where the metric has its own
    `instance`, a query naming `instance` means the provider but gets the process: refused."""
    own = set(metric._labelnames)
    names = {f"exported_{name}" if name in TARGET_LABELS else name for name in own}
    names |= TARGET_LABELS - own
    return names | {"le"} if isinstance(metric, Histogram) else names


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) for every dashboard target and every alert rule."""
    found = []
    for panel in json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]:
        for target in panel.get("targets", []):
            found.append((f"panel {panel['title']!r}", target["expr"]))
    for group in load_yaml(ALERTS)["groups"]:
        for rule in group["rules"]:
            found.append((f"alert {rule['alert']}", rule["expr"]))
    return found


def query_problems(where: str, query: str) -> list[str]:
    exported = exported_metrics()
    problems = []
    named = []
    for series in METRIC_NAME.findall(query):
        family = next(
            (
                (series.removesuffix(suffix), types)
                for suffix, types in SERIES_SUFFIXES.items()
                if series.endswith(suffix) and series.removesuffix(suffix) in exported
            ),
            None,
        )
        if family is None or not isinstance(exported[family[0]], family[1]):
            problems.append(f"{where}: {series} is not a series the ingress or workers export")
        else:
            named.append(exported[family[0]])
    known_labels = set().union(*(labels_of(metric) for metric in named)) if named else set()
    for grouping in GROUPING.findall(query):
        for label in filter(None, (part.strip() for part in grouping.split(","))):
            if label not in known_labels:
                problems.append(f"{where}: no metric in {query!r} has the label {label!r}")
    for series, matchers in MATCHER.findall(query):
        for label in re.findall(r"([a-z_]+)\s*(?:=~|!~|!=|=)", matchers):
            if label not in known_labels:
                problems.append(f"{where}: {series} has no label {label!r}")
    return problems


def test_the_queries_name_exported_metrics_and_their_labels() -> None:
    found = queries()
    assert len(found) > 20, "the dashboard and the alerts were not read"
    assert [problem for where, query in found for problem in query_problems(where, query)] == []


def test_the_query_check_catches_what_it_should() -> None:
    assert query_problems("x", "rate(payouts_worker_payouts_total[5m])") == []
    assert query_problems("x", "rate(payouts_worker_payout_total[5m])")  # misspelled family
    assert query_problems("x", "payouts_worker_payouts")  # a counter without _total
    assert query_problems("x", "rate(payouts_worker_consuming_total[5m])")  # a gauge as counter
    assert query_problems("x", "sum by (queue) (rate(payouts_worker_payouts_total[5m]))")
    # The provider instance is `exported_instance` once scraped; `instance` is the process.
    assert query_problems("x", "sum by (instance) (rate(payouts_worker_payouts_total[5m]))")
    assert not query_problems("x", "sum by (exported_instance) (payouts_worker_payouts_total)")
    assert not query_problems("x", "min by (instance) (payouts_ingress_broker_connected)")
    assert query_problems("x", 'payouts_queue_messages{queu="x"}')
    assert not query_problems("x", "sum by (le) (rate(payouts_worker_lag_seconds_bucket[5m]))")


def test_the_dashboard_uses_the_provisioned_datasource() -> None:
    (datasource,) = load_yaml(DATASOURCES)["datasources"]
    panels = json.loads(DASHBOARD.read_text(encoding="utf-8"))["panels"]
    used = {
        thing["datasource"]["uid"]
        for panel in panels
        for thing in [panel, *panel.get("targets", [])]
        if "datasource" in thing
    }
    assert used == {datasource["uid"]}
    assert datasource["url"] == "http://prometheus:9090"
    assert "prometheus" in compose()["services"]


def test_grafana_finds_the_dashboard_where_compose_mounts_it() -> None:
    (provider,) = load_yaml(DASHBOARD_PROVIDERS)["providers"]
    mounts = bind_mounts("grafana")
    assert mounts[provider["options"]["path"]] == DASHBOARD.parent
    assert mounts["/etc/grafana/provisioning"] == DATASOURCES.parents[1]


def test_prometheus_scrapes_the_ports_the_processes_listen_on() -> None:
    settings = k8s_settings()
    jobs = {job["job_name"]: job for job in load_yaml(PROMETHEUS_CONFIG)["scrape_configs"]}
    (ingress_target,) = jobs["payouts-ingress"]["static_configs"][0]["targets"]
    assert ingress_target == f"ingress:{settings.ingress.port}"
    (workers,) = jobs["payouts-worker"]["dns_sd_configs"]
    # One address per replica from Docker's DNS, each at its status port.
    assert (workers["names"], workers["type"], workers["port"]) == (
        ["worker"],
        "A",
        settings.worker.status_port,
    )
    assert service("worker")["deploy"]["replicas"] >= 2
    (broker_target,) = jobs["rabbitmq"]["static_configs"][0]["targets"]
    assert broker_target == "rabbitmq:15692"
    plugins = bind_mounts("rabbitmq")["/etc/rabbitmq/enabled_plugins"].read_text()
    assert "rabbitmq_prometheus" in plugins


def test_prometheus_loads_the_alerts_compose_mounts() -> None:
    mounts = bind_mounts("prometheus")
    assert mounts["/etc/prometheus/prometheus.yml"] == PROMETHEUS_CONFIG
    (rule_file,) = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert mounts[rule_file] == ALERTS


def test_every_bind_mount_exists() -> None:
    for name in compose()["services"]:
        for target, source in bind_mounts(name).items():
            assert source.exists(), f"{name}: {source} (for {target}) does not exist"


def test_the_broker_imports_the_users_before_the_project_definitions() -> None:
    mounts = bind_mounts("rabbitmq")
    conf = mounts["/etc/rabbitmq/conf.d/20-payouts.conf"].read_text(encoding="utf-8")
    settings = dict(
        line.split(" = ", 1) for line in conf.splitlines() if line and not line.startswith("#")
    )
    assert settings["definitions.import_backend"] == "local_filesystem"
    directory = settings["definitions.local.path"]
    # RabbitMQ imports a directory's files one by one in name order; the vhost comes first.
    imported = sorted(
        (Path(target).name, source)
        for target, source in mounts.items()
        if str(Path(target).parent) == directory
    )
    assert [source for _, source in imported] == [
        STACK / "rabbitmq" / "users.json",
        DEPLOY / "rabbitmq" / "definitions.json",
    ]


def test_the_development_user_has_the_password_the_urls_use() -> None:
    (user,) = json.loads((STACK / "rabbitmq" / "users.json").read_text())["users"]
    assert user["hashing_algorithm"] == "rabbit_password_hashing_sha256"
    salted = base64.b64decode(user["password_hash"])
    salt, digest = salted[:4], salted[4:]
    url = service("migrate")["environment"]["PAYOUTS_BROKER_URL"]
    login = urlsplit(url)
    assert (login.scheme, login.username) == ("amqp", user["name"])
    password = login.password or ""
    assert digest == hashlib.sha256(salt + password.encode()).digest()


@pytest.mark.parametrize("name", ["ingress", "worker"])
def test_healthchecks_ask_the_port_the_process_listens_on(name: str) -> None:
    settings = k8s_settings()
    port = settings.ingress.port if name == "ingress" else settings.worker.status_port
    probe = " ".join(service(name)["healthcheck"]["test"])
    assert f"http://127.0.0.1:{port}/healthz" in probe


def test_workers_get_longer_to_stop_than_their_stop_bound() -> None:
    grace = service("worker")["stop_grace_period"]
    assert grace.endswith("s")
    assert int(grace.removesuffix("s")) > stop_seconds(k8s_settings())


def test_the_image_carries_the_container_config() -> None:
    dockerfile = (DEPLOY / "Dockerfile").read_text(encoding="utf-8")
    source = CONTAINER_CONFIG.relative_to(DEPLOY.parent)
    assert f"COPY {source} /etc/payouts/payouts.toml" in dockerfile
    assert "PAYOUTS_CONFIG=/etc/payouts/payouts.toml" in dockerfile
    settings = k8s_settings()
    # Reachable from the other containers: Prometheus, and the published port.
    assert settings.ingress.host in EVERY_ADDRESS
    assert settings.worker.status_host in EVERY_ADDRESS


def test_the_console_is_published_on_loopback_only_and_not_on_the_providers_port() -> None:
    console = service("console")
    assert console["profiles"] == ["console"]  # started on purpose, once it has an operator
    (published,) = console["ports"]
    host, host_port, container_port = published.split(":")
    assert host == "127.0.0.1"
    settings = k8s_settings()
    assert int(container_port) != settings.ingress.port
    assert host_port not in {port.split(":")[1] for port in service("ingress")["ports"]}


def test_the_console_builds_a_config_with_its_section_and_the_operators(tmp_path: Path) -> None:
    """The console's command run with local paths: the image's config, its [console] section and
    the operators file make a configuration the console accepts, listening where published."""
    operators = tmp_path / "operators.toml"
    cheap = PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    operators.write_text(
        '[[console.operators]]\nname = "admin"\nrole = "operator"\n'
        f'password_hash = "{cheap.hash("pw")}"\n'
    )
    (command,) = service("console")["command"]
    built = tmp_path / "payouts.toml"
    local = (
        command.replace("/etc/payouts/payouts.toml", str(CONTAINER_CONFIG))
        .replace("/run/secrets/console-operators", str(operators))
        .replace("/tmp/payouts.toml", str(built))  # noqa: S108 (the container's path, replaced)
        .replace("exec payouts --config", "test -s")
        .removesuffix(" console")
    )
    subprocess.run(["sh", "-c", local], check=True, timeout=10)
    settings = load_settings(built, {})
    assert [operator.name for operator in settings.console.operators] == ["admin"]
    assert settings.console.host in EVERY_ADDRESS
    assert str(settings.console.port) == service("console")["ports"][0].split(":")[2]
    assert settings.console.prometheus_url == "http://prometheus:9090"
    secret = compose()["secrets"]["console-operators"]["file"]
    assert secret == "local/console-operator.toml"
    assert f"deploy/{secret}" in (DEPLOY.parent / ".gitignore").read_text().splitlines()
