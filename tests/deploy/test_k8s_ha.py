"""The ha overlay in deploy/k8s/overlays/ha: a RabbitmqCluster and a CloudNativePG Cluster that
match their operators' schemas and keep their promises (three brokers pausing a minority, three
Postgres instances with a synchronous standby), and payouts pods wired to the Secrets and
addresses those operators create.

As in test_k8s_manifests.py, each check returns the problems it finds, and
`test_each_check_sees_its_mistake` spoils a copy to show that it would see one. Everything here
reads what `kubectl kustomize` renders (skipped where kubectl is missing; failed under CI).
"""

from __future__ import annotations

import json
import re
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

import jsonschema  # type: ignore[import-untyped]  # ships no type information
import pytest

from schema.settings import BROKER_URL_ENV, DATABASE_URL_ENV, load_settings
from tests.deploy.test_k8s_manifests import (
    CORE_API_VERSIONS,
    EXAMPLE_SECRETS,
    EXTERNAL_SECRET,
    K8S,
    K8S_CONFIG,
    KUBERNETES_VERSIONS,
    Edit,
    Manifest,
    command_problems,
    component,
    containers,
    generated_secret,
    json_schema_problems,
    k8s_settings,
    name_of,
    read_env_file,
    reference_problems,
    render,
    schema_problems,
    secret_names,
    security_problems,
    selector_problems,
    the,
    workloads,
)

if TYPE_CHECKING:
    from collections.abc import Callable

HA = K8S / "overlays" / "ha"
HA_CONFIG = HA / "payouts.toml"
HA_SECRETS = HA / "example-secrets.env"
SCHEMAS = Path(__file__).resolve().parent / "schemas"

RABBITMQ_API_VERSION = "rabbitmq.com/v1beta1"
CNPG_API_VERSION = "postgresql.cnpg.io/v1"
# Each custom kind and the openAPIV3Schema excerpt vendored for it (schemas/README.md).
CRD_SCHEMA_FILES = {
    (RABBITMQ_API_VERSION, "RabbitmqCluster"): "rabbitmq.com_v1beta1_rabbitmqcluster.json",
    (CNPG_API_VERSION, "Cluster"): "postgresql.cnpg.io_v1_cluster.json",
}
# What the operators run rather than this rendering: the broker's disruption budget selects
# pods that only the RabbitMQ operator's StatefulSet creates.
OPERATED_COMPONENTS = frozenset({"broker", "database"})
AMQP_PORT = 5672
QUORUM_GROUP_KEY = "quorum_initial_group_size"
# The promise of docs/high-availability.md: a commit waits for a standby's flush at least.
SYNCHRONOUS_COMMITS = frozenset({"on", "remote_apply"})
ENV_REFERENCE = re.compile(r"^\$\(([A-Za-z_][A-Za-z0-9_]*)\)$")

Config = dict[str, Any]


# --- Loading ----------------------------------------------------------------------------------


def ha_objects() -> list[Manifest]:
    return render(HA)


def ha_config() -> Config:
    """The ha overlay's payouts.toml as parsed TOML (fresh: callers may change it)."""
    return tomllib.loads(HA_CONFIG.read_text(encoding="utf-8"))


def closed(schema: Any) -> Any:
    """The vendored openAPIV3Schema as a JSON Schema that refuses unknown fields, as `kubectl
    apply` does (strict field validation, its default since 1.27). An object whose field list
    was not read whole is marked x-payouts-partial and stays open."""
    if isinstance(schema, list):
        return [closed(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    converted = {key: closed(value) for key, value in schema.items()}
    if "properties" in schema and "x-payouts-partial" not in schema:
        converted["additionalProperties"] = False
    return converted


@cache
def crd_schema(api_version: str, kind: str) -> str:
    """The closed schema for a custom kind, as JSON text (parsed afresh by each caller)."""
    vendored = json.loads((SCHEMAS / CRD_SCHEMA_FILES[api_version, kind]).read_text())
    return json.dumps(closed(vendored))


# --- Reading objects --------------------------------------------------------------------------


def payouts_workloads(objs: list[Manifest]) -> list[Manifest]:
    return [obj for obj in workloads(objs) if component(obj) not in OPERATED_COMPONENTS]


def env_of(container: Manifest) -> list[Manifest]:
    found: list[Manifest] = container.get("env", [])
    return found


def secret_key(variable: Manifest) -> tuple[str, str] | None:
    ref = variable.get("valueFrom", {}).get("secretKeyRef")
    return None if ref is None else (ref["name"], ref["key"])


def conf_settings(text: str) -> dict[str, str]:
    """The `key = value` lines of a rabbitmq.conf fragment."""
    pairs = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.lstrip().startswith("#"):
            pairs[key.strip()] = value.partition("#")[0].strip()
    return pairs


# --- The checks -------------------------------------------------------------------------------


def crd_schema_problems(objs: list[Manifest], config: Config) -> list[str]:
    """Custom resources against the schemas of their operators' CRDs."""
    problems = []
    for obj in objs:
        if obj["apiVersion"] in CORE_API_VERSIONS:
            continue
        if (obj["apiVersion"], obj["kind"]) not in CRD_SCHEMA_FILES:
            problems.append(f"{name_of(obj)}: no vendored schema for {obj['apiVersion']}")
            continue
        problems += json_schema_problems(
            obj, json.loads(crd_schema(obj["apiVersion"], obj["kind"]))
        )
    return problems


def broker_problems(objs: list[Manifest], config: Config) -> list[str]:
    """Three (an odd number of) brokers that pause a minority, each quorum queue on all of them."""
    problems = []
    broker = the(objs, "RabbitmqCluster")
    replicas = broker["spec"].get("replicas", 1)
    if replicas < 3 or replicas % 2 == 0:
        problems.append(f"{name_of(broker)}: {replicas} replicas; an odd number, 3 or more")
    conf = conf_settings(broker["spec"].get("rabbitmq", {}).get("additionalConfig", ""))
    handling = conf.get("cluster_partition_handling")
    if handling != "pause_minority":
        problems.append(f"{name_of(broker)}: cluster_partition_handling is {handling}")
    if "load_definitions" in conf or any(key.startswith("definitions.") for key in conf):
        problems.append(
            f"{name_of(broker)}: imports definitions at boot, so the operator's default user "
            "is never created; `payouts migrate` declares the topology"
        )
    group = config["broker"].get(QUORUM_GROUP_KEY)
    if group != replicas:
        problems.append(f"payouts.toml: broker.{QUORUM_GROUP_KEY} is {group}, not {replicas}")
    return problems


def database_problems(objs: list[Manifest], config: Config) -> list[str]:
    """Three Postgres instances; each commit waits for a synchronous standby's flush."""
    problems = []
    database = the(objs, "Cluster")
    spec = database["spec"]
    where = name_of(database)
    instances = spec.get("instances", 1)
    if instances < 3:
        problems.append(
            f"{where}: {instances} instances; 3 keep a synchronous standby in a failover"
        )
    postgresql = spec.get("postgresql", {})
    synchronous = postgresql.get("synchronous")
    if synchronous is None:
        problems.append(f"{where}: no postgresql.synchronous, so replication is asynchronous")
    else:
        if not 1 <= synchronous.get("number", 0) < instances:
            problems.append(f"{where}: synchronous.number must be 1 to instances - 1")
        if synchronous.get("dataDurability", "required") != "required":
            problems.append(f"{where}: dataDurability lets commits through without a standby")
    if "minSyncReplicas" in spec or "maxSyncReplicas" in spec:
        problems.append(f"{where}: min/maxSyncReplicas beside postgresql.synchronous")
    commit = postgresql.get("parameters", {}).get("synchronous_commit", "on")
    if commit not in SYNCHRONOUS_COMMITS:
        problems.append(f"{where}: synchronous_commit = {commit} acknowledges unreplicated commits")
    return problems


def connection_problems(objs: list[Manifest], config: Config) -> list[str]:
    """Every payouts container reaches the primary through CNPG's -rw Service with the app
    Secret's URL, and every broker node by name with the default user's credentials."""
    problems = []
    broker = the(objs, "RabbitmqCluster")
    database = the(objs, "Cluster")
    namespace = broker["metadata"].get("namespace", "default")
    name = broker["metadata"]["name"]
    user_secret = f"{name}-default-user"
    nodes = {
        f"{name}-server-{index}.{name}-nodes.{namespace}.svc"
        for index in range(broker["spec"].get("replicas", 1))
    }
    for workload in payouts_workloads(objs):
        for container in containers(workload):
            where = f"{name_of(workload)} {container['name']}"
            defined: dict[str, Manifest] = {}
            for variable in env_of(container):
                defined[variable["name"]] = variable
                if variable["name"] == DATABASE_URL_ENV:
                    wanted = (f"{database['metadata']['name']}-app", "uri")
                    if secret_key(variable) != wanted:
                        problems.append(f"{where}: {DATABASE_URL_ENV} is not {wanted}")
                if variable["name"] != BROKER_URL_ENV:
                    continue
                urls = [urlsplit(url) for url in str(variable.get("value", "")).split(",")]
                if {url.hostname for url in urls} != nodes or len(urls) != len(nodes):
                    problems.append(f"{where}: broker hosts are not the nodes {sorted(nodes)}")
                for url in urls:
                    if url.scheme != "amqp" or url.port != AMQP_PORT:
                        problems.append(f"{where}: {url.hostname}: not amqp on {AMQP_PORT}")
                    if "heartbeat" not in parse_qs(url.query):
                        problems.append(f"{where}: {url.hostname}: no heartbeat")
                    for part, key in ((url.username, "username"), (url.password, "password")):
                        reference = ENV_REFERENCE.match(part or "")
                        source = defined.get(reference[1]) if reference else None
                        if source is None or secret_key(source) != (user_secret, key):
                            problems.append(
                                f"{where}: the broker {key} is not a variable defined before "
                                f"it from {user_secret}"
                            )
            for required in (DATABASE_URL_ENV, BROKER_URL_ENV):
                if required not in defined:
                    problems.append(f"{where}: does not set {required}")
    return problems


def operator_secrets(objs: list[Manifest]) -> frozenset[str]:
    """The Secrets the two operators make: the database's app user, the broker's default user."""
    database = the(objs, "Cluster")["metadata"]["name"]
    broker = the(objs, "RabbitmqCluster")["metadata"]["name"]
    return frozenset({f"{database}-app", f"{broker}-default-user"})


def operated_problems(objs: list[Manifest], config: Config) -> list[str]:
    """The base's checks that apply unchanged, on what is rendered besides the operators' part."""
    ours = [obj for obj in objs if component(obj) not in OPERATED_COMPONENTS]
    settings = k8s_settings()  # the same as the ha overlay's but for the quorum group size
    return [
        *selector_problems(ours, settings),
        *security_problems(ours, settings),
        *command_problems(ours, settings),
        *reference_problems(ours, settings, operator_secrets(objs)),
    ]


# --- The overlay has no problem ---------------------------------------------------------------

CHECKS = [crd_schema_problems, broker_problems, database_problems, connection_problems]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_core_objects_match_the_kubernetes_schemas(version: str) -> None:
    assert schema_problems(ha_objects(), version) == []


def test_every_object_is_of_a_kind_with_a_schema() -> None:
    kinds = {(obj["apiVersion"], obj["kind"]) for obj in ha_objects()}
    assert {api for api, _ in kinds} <= CORE_API_VERSIONS | {api for api, _ in CRD_SCHEMA_FILES}
    assert set(CRD_SCHEMA_FILES) <= kinds


def test_the_vendored_schemas_are_valid_json_schemas() -> None:
    for api_version, kind in CRD_SCHEMA_FILES:
        jsonschema.Draft202012Validator.check_schema(json.loads(crd_schema(api_version, kind)))


@pytest.mark.parametrize("check", [*CHECKS, operated_problems])
def test_the_ha_overlay_has_no_problem(
    check: Callable[[list[Manifest], Config], list[str]],
) -> None:
    assert check(ha_objects(), ha_config()) == []


def test_the_ha_config_is_the_base_config_with_the_quorum_group() -> None:
    ha = ha_config()
    del ha["broker"][QUORUM_GROUP_KEY]
    assert ha == tomllib.loads(K8S_CONFIG.read_text(encoding="utf-8")), (
        "deploy/k8s/overlays/ha/payouts.toml must be deploy/k8s/base/payouts.toml but for "
        f"broker.{QUORUM_GROUP_KEY}: copy the base's change into it"
    )


def test_the_ha_config_starts_a_process_on_the_three_nodes() -> None:
    """The file the overlay mounts passes the start-up checks, with the URLs its containers get:
    three broker nodes in one variable and the database's read-write service."""
    nodes = [
        f"amqp://user:pw@payouts-rabbitmq-server-{n}.payouts-rabbitmq-nodes:5672/" for n in range(3)
    ]
    settings = load_settings(
        HA_CONFIG,
        environ={
            BROKER_URL_ENV: ",".join(nodes),
            DATABASE_URL_ENV: "postgresql://app:pw@payouts-db-rw:5432/app",
            **{name: "secret" for name in read_env_file(HA_SECRETS)},
        },
    )
    assert settings.broker.urls == tuple(nodes)
    assert settings.broker.quorum_initial_group_size == 3


def test_the_ha_secret_is_the_example_secret_without_urls() -> None:
    example = read_env_file(EXAMPLE_SECRETS)
    del example[DATABASE_URL_ENV], example[BROKER_URL_ENV]
    assert read_env_file(HA_SECRETS) == example
    rendered = generated_secret(ha_objects(), EXTERNAL_SECRET)
    assert secret_names(k8s_settings()) - {DATABASE_URL_ENV, BROKER_URL_ENV} <= set(
        rendered["data"]
    )


def test_the_operators_come_before_the_migration() -> None:
    readme = (K8S / "README.md").read_text(encoding="utf-8")
    later = {"ingress", "worker", "console", "migrate"}
    first = [obj for obj in ha_objects() if component(obj) not in later]
    assert {obj["kind"] for obj in first} >= {"RabbitmqCluster", "Cluster", "Namespace"}
    assert not workloads(first)
    assert "-l 'app.kubernetes.io/component notin (ingress,worker,console,migrate)'" in readme


# --- Each check sees its mistake --------------------------------------------------------------


@dataclass(frozen=True)
class SetKey:
    """Sets (or, with value None, removes) one key of the ha overlay's payouts.toml."""

    section: str
    key: str
    value: object

    def __call__(self, objs: list[Manifest], config: Config) -> None:
        if self.value is None:
            del config[self.section][self.key]
        else:
            config[self.section][self.key] = self.value


@dataclass(frozen=True)
class OnObjects:
    """An Edit of test_k8s_manifests.py, applied to the rendered objects."""

    edit: Edit

    def __call__(self, objs: list[Manifest], config: Config) -> None:
        self.edit(objs, k8s_settings())


def edit(kind: str, component_label: str | None, *path: str | int, value: object) -> OnObjects:
    return OnObjects(Edit(kind, component_label, path, value))


def broker(*path: str, value: object) -> OnObjects:
    return edit("RabbitmqCluster", "broker", "spec", *path, value=value)


def database(*path: str, value: object) -> OnObjects:
    return edit("Cluster", "database", "spec", *path, value=value)


def env(kind: str, component_label: str, *path: str | int, value: object) -> OnObjects:
    """Changes the first container's env list: index 0 is PAYOUTS_CONFIG, then connections.yaml."""
    return edit(kind, component_label, *CONTAINER, "env", *path, value=value)


POD = ("spec", "template", "spec")
LITERAL_CREDENTIALS_URLS = [
    f"amqp://u:p@payouts-rabbitmq-server-{index}.payouts-rabbitmq-nodes.payouts.svc:5672/?heartbeat=30"
    for index in range(3)
]
CONTAINER = (*POD, "containers", 0)

SPOILS = [
    pytest.param(
        crd_schema_problems,
        broker("replica", value=3),
        id="misspelt-rabbitmqcluster-field",
    ),
    pytest.param(
        crd_schema_problems,
        broker("persistence", "storage", value="20 GB"),
        id="storage-not-a-quantity",
    ),
    pytest.param(
        crd_schema_problems,
        broker("rabbitmq", "additionalConfig", value="x" * 2001),
        id="additional-config-too-long",
    ),
    pytest.param(
        crd_schema_problems,
        database("postgresql", "synchronous", "methd", value="any"),
        id="misspelt-synchronous-field",
    ),
    pytest.param(
        crd_schema_problems,
        database("postgresql", "synchronous", "method", value="all"),
        id="unknown-synchronous-method",
    ),
    pytest.param(
        crd_schema_problems,
        database("instances", value="3"),
        id="instances-of-the-wrong-type",
    ),
    pytest.param(
        broker_problems,
        broker("replicas", value=2),
        id="even-broker-count",
    ),
    pytest.param(
        broker_problems,
        broker("rabbitmq", "additionalConfig", value="cluster_partition_handling = autoheal\n"),
        id="partitions-autoheal",
    ),
    pytest.param(
        broker_problems,
        broker(
            "rabbitmq",
            "additionalConfig",
            value=(
                "cluster_partition_handling = pause_minority\n"
                "load_definitions = /defs/definitions.json\n"
            ),
        ),
        id="definitions-imported-at-boot",
    ),
    pytest.param(
        broker_problems,
        SetKey("broker", QUORUM_GROUP_KEY, None),
        id="quorum-group-not-configured",
    ),
    pytest.param(
        database_problems,
        database("instances", value=2),
        id="two-postgres-instances",
    ),
    pytest.param(
        database_problems,
        database("postgresql", "synchronous", value=None),
        id="asynchronous-standbys",
    ),
    pytest.param(
        database_problems,
        database("postgresql", "synchronous", "dataDurability", value="preferred"),
        id="commits-without-a-standby",
    ),
    pytest.param(
        database_problems,
        database("postgresql", "parameters", "synchronous_commit", value="local"),
        id="local-commits",
    ),
    pytest.param(
        connection_problems,
        env("Deployment", "worker", 1, "valueFrom", "secretKeyRef", "name", value="payouts-db-su"),
        id="database-url-from-another-secret",
    ),
    pytest.param(
        connection_problems,
        env("Deployment", "ingress", 4, "value", value=",".join(LITERAL_CREDENTIALS_URLS)),
        id="broker-password-in-the-manifest",
    ),
    pytest.param(
        connection_problems,
        broker("replicas", value=5),
        id="broker-nodes-missing-from-the-url",
    ),
    pytest.param(
        connection_problems,
        env("Job", "migrate", 2, "name", value="RABBITMQ_USER"),
        id="credential-variable-undefined",
    ),
    pytest.param(
        operated_problems,
        edit("Deployment", "worker", *POD, "securityContext", "runAsUser", value=0),
        id="payouts-pod-runs-as-root",
    ),
]


@pytest.mark.parametrize(("check", "spoil"), SPOILS)
def test_each_check_sees_its_mistake(
    check: Callable[[list[Manifest], Config], list[str]],
    spoil: Callable[[list[Manifest], Config], None],
) -> None:
    objs = ha_objects()
    config = ha_config()
    assert check(objs, config) == []
    spoil(objs, config)
    assert check(objs, config) != []


def test_each_vendored_schema_names_its_source() -> None:
    readme = (SCHEMAS / "README.md").read_text(encoding="utf-8")
    for file_name in CRD_SCHEMA_FILES.values():
        assert file_name in readme
