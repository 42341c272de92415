"""The Kubernetes manifests in deploy/k8s: valid objects that agree with one another, with
the payouts.toml they mount, and with the secrets that configuration names.

Each check returns the problems it finds: one test per check says the manifests have none, and
`test_each_check_sees_its_mistake` spoils a copy to show that the check would see one. The
checks run on the YAML files as written (no tool needed) and on what `kubectl kustomize` renders
from the base and the example overlay (skipped where kubectl is missing; failed under CI).
"""

from __future__ import annotations

import base64
import os
import subprocess
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import jsonschema  # type: ignore[import-untyped]  # ships no type information
import kubernetes_validate  # type: ignore[import-untyped]  # ships no type information
import pytest
import yaml

from payouts.console.server import checked_secret
from schema.settings import BROKER_URL_ENV, DATABASE_URL_ENV, load_settings, with_file_operators
from schema.topology import Topology
from tests.availability import require_tool
from workers.consumer import stop_seconds

if TYPE_CHECKING:
    from collections.abc import Callable

    from schema.settings import Settings

Manifest = dict[str, Any]

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
KEDA = K8S / "keda"
EXAMPLE = K8S / "overlays" / "example"
K8S_CONFIG = BASE / "payouts.toml"
EXAMPLE_CONFIG = ROOT / "deploy" / "payouts.example.toml"
LOCAL_SECRETS = ROOT / "deploy" / "local" / "example-secrets.env"
EXAMPLE_SECRETS = EXAMPLE / "example-secrets.env"
RENDERED = {"base": BASE, "example": EXAMPLE}

# The oldest Kubernetes the manifests are written for (deploy/k8s/README.md), and the newest
# whose schemas kubernetes-validate ships: a field too new for one, or gone from the other, fails.
KUBERNETES_VERSIONS = ("1.30", str(kubernetes_validate.latest_version()))
CORE_API_VERSIONS = frozenset({"v1", "apps/v1", "batch/v1", "policy/v1"})
KEDA_API_VERSION = "keda.sh/v1alpha1"
COMPONENT = "app.kubernetes.io/component"
# A pod's processes must listen on these for the kubelet, the Service and Prometheus to reach them.
EVERY_ADDRESS = frozenset({"0.0.0.0", "::"})  # noqa: S104  # binding to all interfaces is the point
IMAGE_UID = 10001  # the `payouts` user of deploy/Dockerfile
CONFIG_ENV = "PAYOUTS_CONFIG"
# A stopping worker takes up to workers.consumer.stop_seconds; Kubernetes must not kill it
# before, and a margin covers closing its connections.
GRACE_MARGIN_SECONDS = 5
# The Secrets the base names; an overlay generates them (with hashed names) or an operator
# creates them: every pod's, and the console's own (its operators and session key).
EXTERNAL_SECRET = "payouts-secrets"
CONSOLE_SECRET = "payouts-console"
EXTERNAL_SECRETS = frozenset({EXTERNAL_SECRET, CONSOLE_SECRET})
# deploy/k8s/README.md applies the migration first with this selector, the workloads after it.
MIGRATE_PHASE_SELECTOR = f"{COMPONENT} notin (ingress,worker,console)"
LATER_PHASE_COMPONENTS = frozenset({"ingress", "worker", "console"})
WORKLOAD_KINDS = frozenset({"Deployment", "Job"})


# --- Loading ----------------------------------------------------------------------------------


def load_documents(path: Path) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")) if doc]


def resource_files(directory: Path) -> list[Manifest]:
    """The objects in the files a kustomization lists as resources (not generated, not bases)."""
    kustomization = load_documents(directory / "kustomization.yaml")[0]
    objects: list[Manifest] = []
    for entry in kustomization.get("resources", []):
        if (directory / entry).is_file():
            objects += load_documents(directory / entry)
    return objects


def kubectl() -> str:
    return require_tool(
        "kubectl",
        "the kustomizations cannot be rendered; the checks on the YAML files as written still ran",
    )


@cache
def _kustomize(directory: Path) -> str:
    result = subprocess.run(
        [kubectl(), "kustomize", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if result.returncode != 0:
        pytest.fail(f"kubectl kustomize {directory} failed:\n{result.stderr}")
    return result.stdout


def render(directory: Path) -> list[Manifest]:
    """What `kubectl kustomize` makes of the directory, parsed afresh (callers may change it)."""
    return [doc for doc in yaml.safe_load_all(_kustomize(directory)) if doc]


def manifests(view: str) -> list[Manifest]:
    """`files`: base and keda as written; `base`, `example`: those kustomizations rendered."""
    if view == "files":
        return resource_files(BASE) + resource_files(KEDA)
    return render(RENDERED[view])


@cache
def k8s_settings() -> Settings:
    return load_settings(K8S_CONFIG, environ={})


def read_env_file(path: Path) -> dict[str, str]:
    pairs = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


# --- Reading objects --------------------------------------------------------------------------


def name_of(obj: Manifest) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def component(obj: Manifest) -> str | None:
    labels: dict[str, str] = obj["metadata"].get("labels", {})
    return labels.get(COMPONENT)


def of_kind(objs: list[Manifest], kind: str) -> list[Manifest]:
    return [obj for obj in objs if obj["kind"] == kind]


def generated_secret(objs: list[Manifest], name: str) -> Manifest:
    """The Secret an overlay generated as `name` (kustomize adds a hash of its content)."""
    found = [
        obj for obj in of_kind(objs, "Secret") if obj["metadata"]["name"].rpartition("-")[0] == name
    ]
    assert len(found) == 1, f"expected one generated Secret {name}, found {len(found)}"
    return found[0]


def the(objs: list[Manifest], kind: str, component_label: str | None = None) -> Manifest:
    found = [
        obj
        for obj in of_kind(objs, kind)
        if component_label is None or component(obj) == component_label
    ]
    assert len(found) == 1, f"expected one {kind} {component_label or ''}, found {len(found)}"
    return found[0]


def workloads(objs: list[Manifest]) -> list[Manifest]:
    return [obj for obj in objs if obj["kind"] in WORKLOAD_KINDS]


def pod_spec(workload: Manifest) -> Manifest:
    spec: Manifest = workload["spec"]["template"]["spec"]
    return spec


def pod_labels(workload: Manifest) -> dict[str, str]:
    labels: dict[str, str] = workload["spec"]["template"]["metadata"].get("labels", {})
    return labels


def containers(workload: Manifest) -> list[Manifest]:
    found: list[Manifest] = pod_spec(workload)["containers"]
    return found


def matches(selector: Manifest, labels: dict[str, str]) -> bool:
    """A label selector: a plain map (Services) or matchLabels (the rest; no expressions here)."""
    assert "matchExpressions" not in selector, "matchExpressions are not understood by this test"
    wanted: dict[str, str] = selector.get("matchLabels", selector)
    return all(labels.get(key) == value for key, value in wanted.items())


def container_port(container: Manifest, port: int | str) -> int | None:
    """The number a probe's or Service's port (a number or a name) means in the container."""
    for declared in container.get("ports", []):
        if port in (declared["containerPort"], declared.get("name")):
            number: int = declared["containerPort"]
            return number
    return None


def option(args: list[str], flag: str) -> str | None:
    for index, arg in enumerate(args):
        if arg == flag and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{flag}="):
            return arg.partition("=")[2]
    return None


def pre_stop_seconds(container: Manifest) -> float:
    pre_stop: Manifest = container.get("lifecycle", {}).get("preStop", {})
    if "sleep" in pre_stop:
        return float(pre_stop["sleep"]["seconds"])
    command: list[str] = pre_stop.get("exec", {}).get("command", [])
    return float(command[1]) if len(command) == 2 and command[0] == "sleep" else 0.0


def secret_names(settings: Settings) -> set[str]:
    """Every variable the pods need from the Secret for this configuration."""
    names = {DATABASE_URL_ENV, BROKER_URL_ENV}  # the Kubernetes config writes neither URL
    for provider in settings.providers:
        names.update(provider.secret_env)
    for partner in settings.partners:
        names.update(partner.api_key_env, partner.secret_env)
    names.update(settings.internal_api.token_env)
    return names


# --- KEDA's schema ----------------------------------------------------------------------------
# kubernetes-validate has no KEDA schemas, and KEDA's CRD YAML is not to be had from PyPI, npm or
# Debian: @kubernetes-models/keda (npm) ships only compiled validators, cloudcoil-models-keda
# (PyPI) only pydantic models. So this restates, from KEDA 2.x's CRDs (keda.sh_scaledobjects and
# keda.sh_triggerauthentications) and its RabbitMQ scaler's documented parameters, the required
# fields and the types of every field we use. Unknown fields are refused where the API server
# would silently prune them from a structural CRD, so a misspelt one fails here instead.

_INT32 = {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}
_NAME = {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"}
_STRINGS = {"type": "object", "additionalProperties": {"type": "string"}}
_METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {"name": _NAME, "namespace": _NAME, "labels": _STRINGS, "annotations": _STRINGS},
}
_QUANTITY = {"type": "string", "pattern": r"^[0-9]+(\.[0-9]+)?$"}
_HPA_RULES = {  # autoscaling/v2 HPAScalingRules
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "stabilizationWindowSeconds": {"type": "integer", "minimum": 0, "maximum": 3600},
        "selectPolicy": {"enum": ["Max", "Min", "Disabled"]},
        "policies": {
            "type": "array",
            "items": {
                "type": "object",
                "additionalProperties": False,
                "required": ["type", "value", "periodSeconds"],
                "properties": {
                    "type": {"enum": ["Pods", "Percent"]},
                    "value": {"type": "integer", "minimum": 1},
                    "periodSeconds": {"type": "integer", "minimum": 1, "maximum": 1800},
                },
            },
        },
    },
}
_RABBITMQ_METADATA = {  # keda.sh/docs/2.x/scalers/rabbitmq-queue
    "type": "object",
    "additionalProperties": False,
    "required": ["queueName", "mode", "value"],
    "properties": {
        "protocol": {"enum": ["auto", "amqp", "http"]},
        "mode": {"enum": ["QueueLength", "MessageRate"]},
        "value": _QUANTITY,
        "activationValue": _QUANTITY,
        "queueName": {"type": "string", "minLength": 1},
        "vhostName": {"type": "string"},
        "useRegex": {"enum": ["true", "false"]},
        "excludeUnacknowledged": {"enum": ["true", "false"]},
        "unsafeSsl": {"enum": ["true", "false"]},
        "timeout": {"type": "string"},
        # `host` is left out on purpose: the URL holds a password, so it comes from the
        # TriggerAuthentication's Secret and never stands in the ScaledObject.
    },
}
_TRIGGER = {
    "type": "object",
    "additionalProperties": False,
    "required": ["type", "metadata"],
    "properties": {
        "type": {"type": "string", "minLength": 1},
        "name": {"type": "string"},
        "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
        "useCachedMetrics": {"type": "boolean"},
        "metadata": _STRINGS,
        "authenticationRef": {
            "type": "object",
            "additionalProperties": False,
            "required": ["name"],
            "properties": {
                "name": _NAME,
                "kind": {"enum": ["TriggerAuthentication", "ClusterTriggerAuthentication"]},
            },
        },
    },
    "if": {"properties": {"type": {"const": "rabbitmq"}}},
    "then": {"properties": {"metadata": _RABBITMQ_METADATA}},
}
KEDA_SCHEMAS: dict[str, Manifest] = {
    "ScaledObject": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["scaleTargetRef", "triggers"],
                "properties": {
                    "scaleTargetRef": {
                        "type": "object",
                        "additionalProperties": False,
                        "required": ["name"],
                        "properties": {
                            "apiVersion": {"type": "string"},
                            "kind": {"type": "string"},
                            "name": _NAME,
                            "envSourceContainerName": {"type": "string"},
                        },
                    },
                    "pollingInterval": _INT32,
                    "cooldownPeriod": _INT32,
                    "initialCooldownPeriod": _INT32,
                    "idleReplicaCount": _INT32,
                    "minReplicaCount": _INT32,
                    "maxReplicaCount": _INT32,
                    "fallback": {"type": "object"},
                    "advanced": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "restoreToOriginalReplicaCount": {"type": "boolean"},
                            "scalingModifiers": {"type": "object"},
                            "horizontalPodAutoscalerConfig": {
                                "type": "object",
                                "additionalProperties": False,
                                "properties": {
                                    "name": {"type": "string"},
                                    "behavior": {
                                        "type": "object",
                                        "additionalProperties": False,
                                        "properties": {
                                            "scaleUp": _HPA_RULES,
                                            "scaleDown": _HPA_RULES,
                                        },
                                    },
                                },
                            },
                        },
                    },
                    "triggers": {"type": "array", "minItems": 1, "items": _TRIGGER},
                },
            },
        },
    },
    "TriggerAuthentication": {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "minProperties": 1,
                "properties": {
                    "secretTargetRef": {
                        "type": "array",
                        "minItems": 1,
                        "items": {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["parameter", "name", "key"],
                            "properties": {
                                "parameter": {"type": "string", "minLength": 1},
                                "name": _NAME,
                                "key": {"type": "string", "pattern": r"^[-._a-zA-Z0-9]+$"},
                            },
                        },
                    },
                    # The other sources of credentials, unchecked beyond their type.
                    "env": {"type": "array"},
                    "configMapTargetRef": {"type": "array"},
                    "filePath": {"type": "string"},
                    "podIdentity": {"type": "object"},
                    "boundServiceAccountToken": {"type": "array"},
                    "hashiCorpVault": {"type": "object"},
                    "azureKeyVault": {"type": "object"},
                    "awsSecretManager": {"type": "object"},
                    "gcpSecretManager": {"type": "object"},
                },
            },
        },
    },
}


# --- The checks -------------------------------------------------------------------------------


def schema_problems(objs: list[Manifest], version: str) -> list[str]:
    """Core, apps, batch and policy objects against Kubernetes' schemas, unknown fields refused."""
    problems = []
    for obj in objs:
        if obj["apiVersion"] not in CORE_API_VERSIONS:
            continue
        try:
            kubernetes_validate.validate(obj, version, strict=True)
        except kubernetes_validate.ValidationError as error:
            where = ".".join(str(part) for part in error.path)
            problems.append(f"{name_of(obj)}: {where}: {error.message}")
    return problems


def oldest_schema_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    return schema_problems(objs, KUBERNETES_VERSIONS[0])


def keda_schema_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    problems = []
    for obj in objs:
        if obj["apiVersion"] != KEDA_API_VERSION:
            continue
        schema = KEDA_SCHEMAS.get(obj["kind"])
        if schema is None:
            problems.append(f"{name_of(obj)}: no schema for this kind in this test")
            continue
        problems += json_schema_problems(obj, schema)
    return problems


def json_schema_problems(obj: Manifest, schema: Manifest) -> list[str]:
    """Each place where the object breaks the JSON Schema, named by its path."""
    return [
        f"{name_of(obj)}: {'.'.join(str(part) for part in error.absolute_path)}: {error.message}"
        for error in jsonschema.Draft202012Validator(schema).iter_errors(obj)
    ]


def selector_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """Each selector picks the pods it is meant for, and a drain can always take one of them."""
    problems = []
    pods = workloads(objs)
    for workload in of_kind(objs, "Deployment"):
        labels = pod_labels(workload)
        if not matches(workload["spec"]["selector"], labels):
            problems.append(f"{name_of(workload)}: its selector misses its own pods")
        for spread in pod_spec(workload).get("topologySpreadConstraints", []):
            if not matches(spread["labelSelector"], labels):
                problems.append(f"{name_of(workload)}: a spread constraint counts other pods")
    for service in of_kind(objs, "Service"):
        chosen = [pod for pod in pods if matches(service["spec"]["selector"], pod_labels(pod))]
        if len(chosen) != 1:
            problems.append(f"{name_of(service)}: selects {len(chosen)} workloads, not one")
            continue
        for port in service["spec"]["ports"]:
            target = port.get("targetPort", port["port"])
            if not any(container_port(c, target) for c in containers(chosen[0])):
                problems.append(f"{name_of(service)}: no container of its pods has port {target}")
    for budget in of_kind(objs, "PodDisruptionBudget"):
        chosen = [pod for pod in pods if matches(budget["spec"]["selector"], pod_labels(pod))]
        if len(chosen) != 1:
            problems.append(f"{name_of(budget)}: selects {len(chosen)} workloads, not one")
            continue
        replicas = chosen[0]["spec"].get("replicas")
        min_available = budget["spec"].get("minAvailable")
        if min_available is not None and (replicas is None or min_available >= replicas):
            problems.append(
                f"{name_of(budget)}: minAvailable {min_available} of {replicas} replicas "
                "blocks every drain"
            )
        if min_available is None and budget["spec"].get("maxUnavailable", 0) < 1:
            problems.append(f"{name_of(budget)}: allows no disruption")
    return problems


@dataclass(frozen=True)
class Listen:
    """Where a component's process listens (payouts.toml, or its options), what its readiness
    probe asks, and whether Prometheus scrapes it there."""

    host_flag: str
    port_flag: str
    host: str
    port: int
    readiness_path: str
    scraped: bool


def probe_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """Probes and the scrape reach the port the process listens on, as payouts.toml says."""
    ingress, worker, console = settings.ingress, settings.worker, settings.console
    listens = {
        "ingress": Listen("--host", "--port", ingress.host, ingress.port, "/readyz", True),
        "worker": Listen(
            "--status-host",
            "--status-port",
            worker.status_host,
            worker.status_port,
            "/readyz",
            True,
        ),
        # The console has no /metrics, and stays ready while its database is away.
        "console": Listen("--host", "--port", console.host, console.port, "/healthz", False),
    }
    problems = []
    for workload in workloads(objs):
        listen = listens.get(component(workload) or "")
        if listen is None:
            continue
        for container in containers(workload):
            where = f"{name_of(workload)} {container['name']}"
            args: list[str] = container.get("args", [])
            host = option(args, listen.host_flag) or listen.host
            port = int(option(args, listen.port_flag) or listen.port)
            if host not in EVERY_ADDRESS:
                problems.append(f"{where}: listens on {host}, out of the kubelet's reach")
            if container_port(container, port) is None:
                problems.append(f"{where}: listens on {port}, which is not a container port")
            for probe_kind, path in (
                ("startupProbe", "/healthz"),
                ("livenessProbe", "/healthz"),
                ("readinessProbe", listen.readiness_path),
            ):
                probe = container.get(probe_kind, {}).get("httpGet")
                if probe is None:
                    problems.append(f"{where}: no {probe_kind} over HTTP")
                elif probe.get("path") != path:
                    problems.append(f"{where}: {probe_kind} asks {probe.get('path')}, not {path}")
                elif container_port(container, probe["port"]) != port:
                    problems.append(f"{where}: {probe_kind} asks port {probe['port']}, not {port}")
            annotations = workload["spec"]["template"]["metadata"].get("annotations", {})
            scrape = (
                annotations.get("prometheus.io/scrape"),
                annotations.get("prometheus.io/port"),
                annotations.get("prometheus.io/path"),
            )
            if listen.scraped and scrape != ("true", str(port), "/metrics"):
                problems.append(f"{where}: scrape annotations {scrape} miss /metrics on {port}")
            if not listen.scraped and scrape[0] == "true":
                problems.append(f"{where}: scraped, but it serves no /metrics")
    return problems


def grace_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """Kubernetes waits for a stopping process to finish what it promised, and a bit more."""
    problems = []
    worker = the(objs, "Deployment", "worker")
    worker_grace = pod_spec(worker).get("terminationGracePeriodSeconds", 30)
    worker_needs = stop_seconds(settings) + GRACE_MARGIN_SECONDS
    if worker_grace < worker_needs:
        problems.append(
            f"worker: terminationGracePeriodSeconds {worker_grace} < {worker_needs} "
            "(the worker's stop bound and a margin)"
        )
    ingress = the(objs, "Deployment", "ingress")
    ingress_grace = pod_spec(ingress).get("terminationGracePeriodSeconds", 30)
    pause = pre_stop_seconds(containers(ingress)[0])
    if pause <= 0:
        problems.append("ingress: no pre-stop pause, so it stops before the endpoints drain")
    # The longest request: a publish, then (JSON protocols) the wait for the outcome.
    longest = settings.broker.publish_timeout_seconds + max(
        (provider.outcome_timeout_seconds for provider in settings.providers), default=0
    )
    if ingress_grace < pause + longest + GRACE_MARGIN_SECONDS:
        problems.append(
            f"ingress: terminationGracePeriodSeconds {ingress_grace} < pre-stop {pause} + "
            f"longest request {longest} + margin {GRACE_MARGIN_SECONDS}"
        )
    return problems


def keda_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """The autoscaler scales the workers on the queue they consume, with the URL they use."""
    problems = []
    work_queue = Topology.from_settings(settings.broker).work_queue
    deployments = {obj["metadata"]["name"] for obj in of_kind(objs, "Deployment")}
    authentications = {
        obj["metadata"]["name"]: obj for obj in of_kind(objs, "TriggerAuthentication")
    }
    worker_secrets = {
        source["secretRef"]["name"]
        for container in containers(the(objs, "Deployment", "worker"))
        for source in container.get("envFrom", [])
        if "secretRef" in source
    }
    for scaled in of_kind(objs, "ScaledObject"):
        spec = scaled["spec"]
        target = spec["scaleTargetRef"]
        if target.get("kind", "Deployment") != "Deployment" or target["name"] not in deployments:
            problems.append(f"{name_of(scaled)}: scales {target['name']}, no Deployment here")
        if not 1 <= spec.get("minReplicaCount", 0) <= spec.get("maxReplicaCount", 100):
            problems.append(f"{name_of(scaled)}: minReplicaCount must be 1 to maxReplicaCount")
        for trigger in spec["triggers"]:
            if trigger["type"] != "rabbitmq":
                continue
            if trigger["metadata"].get("queueName") != work_queue:
                problems.append(
                    f"{name_of(scaled)}: counts {trigger['metadata'].get('queueName')}, "
                    f"the workers consume {work_queue}"
                )
            reference = trigger.get("authenticationRef", {}).get("name")
            authentication = authentications.get(reference)
            if authentication is None:
                problems.append(f"{name_of(scaled)}: no TriggerAuthentication {reference}")
                continue
            hosts = [
                ref
                for ref in authentication["spec"].get("secretTargetRef", [])
                if ref["parameter"] == "host"
            ]
            sources = [(ref["name"], ref["key"]) for ref in hosts]
            if len(sources) != 1 or (
                sources[0][0] not in worker_secrets or sources[0][1] != BROKER_URL_ENV
            ):
                problems.append(
                    f"{name_of(authentication)}: host must be {BROKER_URL_ENV} of the Secret the "
                    f"workers read ({sorted(worker_secrets)})"
                )
    return problems


def security_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """Every container runs as the image's unprivileged user, read-only, without extra rights."""
    problems = []
    accounts = {obj["metadata"]["name"]: obj for obj in of_kind(objs, "ServiceAccount")}
    for workload in workloads(objs):
        pod = pod_spec(workload)
        pod_context = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            problems.append(f"{name_of(workload)}: mounts a service account token")
        account = accounts.get(pod.get("serviceAccountName", "default"))
        if account is None or account.get("automountServiceAccountToken") is not False:
            problems.append(f"{name_of(workload)}: its ServiceAccount mounts tokens")
        if pod.get("hostNetwork") or pod.get("hostPID") or pod.get("hostIPC"):
            problems.append(f"{name_of(workload)}: shares the node's namespaces")
        for container in containers(workload) + pod.get("initContainers", []):
            where = f"{name_of(workload)} {container['name']}"
            context = {**pod_context, **container.get("securityContext", {})}
            expected = {
                "runAsNonRoot": True,
                "runAsUser": IMAGE_UID,
                "readOnlyRootFilesystem": True,
                "allowPrivilegeEscalation": False,
                "seccompProfile": {"type": "RuntimeDefault"},
            }
            for key, value in expected.items():
                if context.get(key) != value:
                    problems.append(f"{where}: securityContext.{key} is {context.get(key)!r}")
            capabilities = context.get("capabilities", {})
            if capabilities.get("drop") != ["ALL"] or capabilities.get("add"):
                problems.append(f"{where}: must drop ALL capabilities and add none")
            if context.get("privileged"):
                problems.append(f"{where}: privileged")
            resources = container.get("resources", {})
            for needed in ("requests.cpu", "requests.memory", "limits.memory"):
                section, _, resource = needed.partition(".")
                if resource not in resources.get(section, {}):
                    problems.append(f"{where}: no resources.{needed}")
    return problems


def command_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """Each workload runs its own `payouts` command; the migration Job cleans up after itself."""
    problems = []
    for workload in workloads(objs):
        for container in containers(workload):
            where = f"{name_of(workload)} {container['name']}"
            args: list[str] = container.get("args", [])
            if "command" in container:  # it would replace the image's ENTRYPOINT, `payouts`
                problems.append(f"{where}: sets command; give the subcommand in args")
            if args[:1] != [component(workload)]:
                problems.append(f"{where}: runs `payouts {' '.join(args)}`, not its component")
    jobs = of_kind(objs, "Job")
    if [component(job) for job in jobs] != ["migrate"]:
        problems.append("one Job, the migration, runs `payouts migrate`")
    for job in jobs:
        spec = job["spec"]
        if not 1 <= spec.get("backoffLimit", 6) <= 10:
            problems.append(f"{name_of(job)}: backoffLimit must be set, 1 to 10")
        if "ttlSecondsAfterFinished" not in spec:
            problems.append(
                f"{name_of(job)}: finished Jobs pile up without ttlSecondsAfterFinished"
            )
        if pod_spec(job).get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append(f"{name_of(job)}: restartPolicy must be Never or OnFailure")
    return problems


def config_mount_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """PAYOUTS_CONFIG names a file that the rendered ConfigMap mounts, holding base/payouts.toml."""
    problems = []
    config_maps = {obj["metadata"]["name"]: obj for obj in of_kind(objs, "ConfigMap")}
    for workload in workloads(objs):
        volumes = {volume["name"]: volume for volume in pod_spec(workload).get("volumes", [])}
        for container in containers(workload):
            where = f"{name_of(workload)} {container['name']}"
            env = {item["name"]: item.get("value") for item in container.get("env", [])}
            if CONFIG_ENV not in env:
                problems.append(f"{where}: does not set {CONFIG_ENV}")
                continue
            directory, _, key = str(env[CONFIG_ENV]).rpartition("/")
            mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
            if not mounts:
                problems.append(f"{where}: nothing is mounted where {CONFIG_ENV} points")
                continue
            if not mounts[0].get("readOnly"):
                problems.append(f"{where}: the configuration is mounted writable")
            source = volumes[mounts[0]["name"]].get("configMap", {}).get("name")
            data = config_maps.get(source, {}).get("data", {})
            if data.get(key) != K8S_CONFIG.read_text(encoding="utf-8"):
                problems.append(f"{where}: {directory}/{key} is not deploy/k8s/base/payouts.toml")
    return problems


def console_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """The console reads its operators from the file its --operators-file names, mounted
    read-only from the console's Secret, and its session key from the same Secret; no other
    workload reads that Secret."""
    problems = []
    console = the(objs, "Deployment", "console")
    (container,) = containers(console)
    volumes = {volume["name"]: volume for volume in pod_spec(console).get("volumes", [])}
    operators_file = option(container.get("args", []), "--operators-file") or str(
        settings.console.operators_file
    )
    directory, _, file_name = operators_file.rpartition("/")
    mounts = [m for m in container.get("volumeMounts", []) if m["mountPath"] == directory]
    source = volumes[mounts[0]["name"]].get("secret", {}) if mounts else {}
    if not source:
        problems.append(f"console: {operators_file} is not in a Secret's volume")
    elif not mounts[0].get("readOnly"):
        problems.append("console: the operators' Secret is mounted writable")
    elif not secret_name_is(source["secretName"], CONSOLE_SECRET):
        problems.append(f"console: {operators_file} comes from {source['secretName']}")
    elif {"key": "operators.toml", "path": file_name} not in source.get("items", []):
        problems.append(f"console: {operators_file} is not the Secret's key operators.toml")
    key_source = {
        variable["name"]: variable.get("valueFrom", {}).get("secretKeyRef", {})
        for variable in container.get("env", [])
    }.get(settings.console.session_secret_env, {})
    session_key = (
        key_source.get("key"),
        secret_name_is(key_source.get("name", ""), CONSOLE_SECRET),
    )
    if session_key != (settings.console.session_secret_env, True):
        problems.append(
            f"console: {settings.console.session_secret_env} is not the key of that name "
            f"of {CONSOLE_SECRET}"
        )
    problems += [
        f"{name_of(workload)}: reads the console's Secret"
        for workload in workloads(objs)
        if workload is not console
        and any(secret_name_is(name, CONSOLE_SECRET) for name in secret_references(workload))
    ]
    return problems


def secret_name_is(name: str, base_name: str) -> bool:
    """`name` is `base_name`, as written or as an overlay generated it (with a hash suffix)."""
    return base_name in (name, name.rpartition("-")[0])


def secret_references(workload: Manifest) -> list[str]:
    """The Secrets a workload's pods read: volumes, and its containers' variables."""
    names = [
        v["secret"]["secretName"] for v in pod_spec(workload).get("volumes", []) if "secret" in v
    ]
    for container in containers(workload):
        names += [s["secretRef"]["name"] for s in container.get("envFrom", []) if "secretRef" in s]
        names += [
            variable["valueFrom"]["secretKeyRef"]["name"]
            for variable in container.get("env", [])
            if "secretKeyRef" in variable.get("valueFrom", {})
        ]
    return names


def reference_problems(
    objs: list[Manifest], settings: Settings, created_elsewhere: frozenset[str] = frozenset()
) -> list[str]:
    """Every name an object refers to is an object of the rendering (kustomize renamed both),
    but for Secrets that something in the cluster makes (`created_elsewhere`)."""
    present = {(obj["kind"], obj["metadata"]["name"]) for obj in objs}
    secrets_rendered = bool(of_kind(objs, "Secret"))
    problems = []

    def need(kind: str, name: str, where: str) -> None:
        external = kind == "Secret" and (
            name in created_elsewhere or (name in EXTERNAL_SECRETS and not secrets_rendered)
        )
        if (kind, name) not in present and not external:
            problems.append(f"{where}: names {kind}/{name}, which is not rendered")

    for workload in workloads(objs):
        pod = pod_spec(workload)
        where = name_of(workload)
        need("ServiceAccount", pod.get("serviceAccountName", "default"), where)
        for volume in pod.get("volumes", []):
            if "configMap" in volume:
                need("ConfigMap", volume["configMap"]["name"], where)
        for name in secret_references(workload):
            need("Secret", name, where)
        for container in containers(workload):
            for source in container.get("envFrom", []):
                if "configMapRef" in source:
                    need("ConfigMap", source["configMapRef"]["name"], where)
    for scaled in of_kind(objs, "ScaledObject"):
        target = scaled["spec"]["scaleTargetRef"]
        need(target.get("kind", "Deployment"), target["name"], name_of(scaled))
        for trigger in scaled["spec"]["triggers"]:
            if "authenticationRef" in trigger:
                kind = trigger["authenticationRef"].get("kind", "TriggerAuthentication")
                need(kind, trigger["authenticationRef"]["name"], name_of(scaled))
    for authentication in of_kind(objs, "TriggerAuthentication"):
        for ref in authentication["spec"].get("secretTargetRef", []):
            need("Secret", ref["name"], name_of(authentication))
    return problems


def image_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """The example overlay's `images` entry reached every container (it names the base's image)."""
    overlay = load_documents(EXAMPLE / "kustomization.yaml")[0]
    wanted = {f"{image['newName']}:{image['newTag']}" for image in overlay["images"]}
    return [
        f"{name_of(workload)} {container['name']}: image {container['image']}, not {wanted}"
        for workload in workloads(objs)
        for container in containers(workload)
        if container["image"] not in wanted or container["image"].endswith(":latest")
    ]


def autoscaler_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """A Deployment KEDA scales states no replicas, which every apply would put back."""
    scaled = {obj["spec"]["scaleTargetRef"]["name"] for obj in of_kind(objs, "ScaledObject")}
    return [
        f"{name_of(deployment)}: sets replicas although a ScaledObject scales it"
        for deployment in of_kind(objs, "Deployment")
        if deployment["metadata"]["name"] in scaled and "replicas" in deployment["spec"]
    ]


def migrate_phase_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """README.md's first step applies the Job and what it needs, and no workload."""
    first = [obj for obj in objs if component(obj) not in LATER_PHASE_COMPONENTS]
    problems = [
        f"{name_of(obj)}: applied with the migration, before it completed"
        for obj in first
        if obj["kind"] in {"Deployment", "ScaledObject", "TriggerAuthentication"}
    ]
    if not of_kind(first, "Job"):
        problems.append(f"`-l '{MIGRATE_PHASE_SELECTOR}'` leaves out the migration Job")
    problems += [f"first step: {problem}" for problem in reference_problems(first, settings)]
    return problems


def secret_problems(objs: list[Manifest], settings: Settings) -> list[str]:
    """The example Secret holds every variable the configuration names."""
    provided = read_env_file(EXAMPLE_SECRETS)
    return [
        f"{name} is named by payouts.toml but missing from {EXAMPLE_SECRETS.relative_to(ROOT)}"
        for name in sorted(secret_names(settings) - provided.keys())
    ]


# --- The manifests have no problem ------------------------------------------------------------

ALL_VIEWS = ["files", "base", "example"]
KEDA_VIEWS = ["files", "example"]


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
@pytest.mark.parametrize("view", ALL_VIEWS)
def test_objects_match_the_kubernetes_schemas(view: str, version: str) -> None:
    assert schema_problems(manifests(view), version) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_every_object_is_of_a_kind_with_a_schema(view: str) -> None:
    api_versions = {obj["apiVersion"] for obj in manifests(view)}
    assert api_versions <= CORE_API_VERSIONS | {KEDA_API_VERSION}


def test_the_keda_schemas_are_valid_json_schemas() -> None:
    for schema in KEDA_SCHEMAS.values():
        jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("view", KEDA_VIEWS)
def test_keda_objects_match_keda_schemas(view: str) -> None:
    objs = manifests(view)
    assert {obj["kind"] for obj in objs if obj["apiVersion"] == KEDA_API_VERSION} == {
        "ScaledObject",
        "TriggerAuthentication",
    }
    assert keda_schema_problems(objs, k8s_settings()) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_selectors_pick_their_pods_and_let_drains_proceed(view: str) -> None:
    assert selector_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_probes_and_scrapes_reach_the_configured_ports(view: str) -> None:
    assert probe_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_termination_grace_outlasts_the_drain(view: str) -> None:
    assert grace_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", KEDA_VIEWS)
def test_keda_scales_the_workers_on_their_work_queue(view: str) -> None:
    assert keda_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_containers_run_unprivileged_and_read_only(view: str) -> None:
    assert security_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_each_workload_runs_its_command_and_the_job_migrates(view: str) -> None:
    assert command_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", ["base", "example"])
def test_the_config_file_is_mounted_where_payouts_config_points(view: str) -> None:
    assert config_mount_problems(manifests(view), k8s_settings()) == []


@pytest.mark.parametrize("view", ALL_VIEWS)
def test_the_console_reads_its_operators_and_key_from_its_own_secret(view: str) -> None:
    assert console_problems(manifests(view), k8s_settings()) == []


def test_the_example_console_secret_holds_operators_the_console_accepts(tmp_path: Path) -> None:
    data = generated_secret(manifests("example"), CONSOLE_SECRET)["data"]
    operators_file = tmp_path / "operators.toml"
    operators_file.write_bytes(base64.b64decode(data["operators.toml"]))
    settings = k8s_settings()
    with_operators = with_file_operators(
        settings.model_copy(
            update={
                "console": settings.console.model_copy(update={"operators_file": operators_file})
            }
        )
    )
    session_key = base64.b64decode(data[settings.console.session_secret_env]).decode()
    assert checked_secret(with_operators, {settings.console.session_secret_env: session_key})
    assert [operator.name for operator in with_operators.console.operators] == ["example-admin"]
    assert "example" in session_key
    assert "EXAMPLE VALUES ONLY" in operators_file.read_text(encoding="utf-8")


@pytest.mark.parametrize("view", ["base", "example"])
def test_references_name_rendered_objects(view: str) -> None:
    assert reference_problems(manifests(view), k8s_settings()) == []


def test_references_follow_a_name_prefix(tmp_path: Path) -> None:
    # Kustomize renames KEDA's references only as deploy/k8s/keda/kustomizeconfig.yaml tells it.
    (tmp_path / "kustomization.yaml").write_text(
        f"namePrefix: tenant-\nresources:\n  - {os.path.relpath(EXAMPLE, tmp_path)}\n"
    )
    objs = render(tmp_path)
    assert the(objs, "ScaledObject")["spec"]["scaleTargetRef"]["name"] == "tenant-payouts-worker"
    assert reference_problems(objs, k8s_settings()) == []


def test_the_example_overlay_sets_every_image() -> None:
    assert image_problems(manifests("example"), k8s_settings()) == []


def test_the_keda_component_takes_replicas_from_the_worker() -> None:
    component_file = load_documents(KEDA / "kustomization.yaml")[0]
    target = the(resource_files(KEDA), "ScaledObject")["spec"]["scaleTargetRef"]["name"]
    removals = [
        patch
        for patch in component_file["patches"]
        if patch["target"]["name"] == target
        and {"op": "remove", "path": "/spec/replicas"} in yaml.safe_load(patch["patch"])
    ]
    assert removals, f"the keda component must remove spec.replicas from {target}"
    assert autoscaler_problems(manifests("example"), k8s_settings()) == []


def test_the_first_step_applies_the_migration_and_no_workload() -> None:
    assert migrate_phase_problems(manifests("example"), k8s_settings()) == []
    assert f"-l '{MIGRATE_PHASE_SELECTOR}'" in (K8S / "README.md").read_text(encoding="utf-8")


# --- The configuration and the secrets --------------------------------------------------------


def test_the_k8s_config_is_the_example_config_made_for_containers() -> None:
    k8s = k8s_settings()
    example = load_settings(EXAMPLE_CONFIG, environ={})
    assert k8s.ingress.host in EVERY_ADDRESS
    assert k8s.worker.status_host in EVERY_ADDRESS
    as_example = k8s.model_copy(
        update={
            "ingress": k8s.ingress.model_copy(update={"host": example.ingress.host}),
            "worker": k8s.worker.model_copy(update={"status_host": example.worker.status_host}),
            "database": k8s.database.model_copy(update={"url": example.database.url}),
            "broker": k8s.broker.model_copy(update={"urls": example.broker.urls}),
        }
    )
    assert as_example == example, (
        "deploy/k8s/base/payouts.toml must be deploy/payouts.example.toml but for ingress.host, "
        "worker.status_host and the URLs: copy the example's change into it"
    )


def test_the_k8s_config_leaves_the_urls_to_the_secret() -> None:
    raw = tomllib.loads(K8S_CONFIG.read_text(encoding="utf-8"))
    assert "url" not in raw["database"]
    assert "url" not in raw["broker"]


def test_the_example_secret_holds_every_variable_the_config_names() -> None:
    assert secret_problems(manifests("files"), k8s_settings()) == []


def test_the_rendered_secret_holds_every_variable_the_config_names() -> None:
    objs = manifests("example")
    secret = generated_secret(objs, EXTERNAL_SECRET)
    assert secret_names(k8s_settings()) <= set(secret["data"])
    ingress_secrets = [
        source["secretRef"]["name"]
        for source in containers(the(objs, "Deployment", "ingress"))[0]["envFrom"]
    ]
    assert ingress_secrets == [secret["metadata"]["name"]]


def test_the_example_broker_url_reaches_rabbitmq_from_kedas_namespace() -> None:
    # KEDA's operator connects with the same URL from its own namespace.
    namespace = load_documents(EXAMPLE / "kustomization.yaml")[0]["namespace"]
    host = urlsplit(read_env_file(EXAMPLE_SECRETS)[BROKER_URL_ENV]).hostname
    assert str(host).split(".")[1:3] == [namespace, "svc"]


def test_the_example_secrets_are_the_local_examples_and_say_so() -> None:
    example = read_env_file(EXAMPLE_SECRETS)
    local = read_env_file(LOCAL_SECRETS)
    assert {name: example.get(name) for name in local} == local
    assert all("example" in value for value in example.values())
    assert "EXAMPLE VALUES ONLY" in EXAMPLE_SECRETS.read_text(encoding="utf-8")


# --- Each check sees its mistake --------------------------------------------------------------


@dataclass(frozen=True)
class Edit:
    """Sets (or, with value None, removes) one field of the one object of a kind and component."""

    kind: str
    component: str | None
    path: tuple[str | int, ...]
    value: object

    def __call__(self, objs: list[Manifest], settings: Settings) -> Settings:
        node: Any = the(objs, self.kind, self.component)
        for step in self.path[:-1]:
            node = node[step]
        if self.value is None:
            del node[self.path[-1]]
        else:
            node[self.path[-1]] = self.value
        return settings


@dataclass(frozen=True)
class Reconfigure:
    """Changes keys of one section of payouts.toml (or of each provider instance)."""

    section: str
    values: dict[str, object]

    def __call__(self, objs: list[Manifest], settings: Settings) -> Settings:
        if self.section == "providers":
            providers = tuple(p.model_copy(update=self.values) for p in settings.providers)
            return settings.model_copy(update={"providers": providers})
        section = getattr(settings, self.section).model_copy(update=self.values)
        return settings.model_copy(update={self.section: section})


CONTAINER = ("spec", "template", "spec", "containers", 0)
POD = ("spec", "template", "spec")
ANNOTATIONS = ("spec", "template", "metadata", "annotations")
TRIGGER = ("spec", "triggers", 0)

SPOILS = [
    pytest.param(
        "files",
        oldest_schema_problems,
        Edit("Deployment", "ingress", (*CONTAINER, "readynessProbe"), {"periodSeconds": 5}),
        id="misspelt-probe-field",
    ),
    pytest.param(
        "files",
        oldest_schema_problems,
        Edit("PodDisruptionBudget", "worker", ("spec", "maxUnavailable"), [1]),
        id="budget-of-the-wrong-type",
    ),
    pytest.param(
        "files",
        keda_schema_problems,
        Edit("ScaledObject", "worker", (*TRIGGER, "metadata", "mode"), "QueueLenght"),
        id="unknown-trigger-mode",
    ),
    pytest.param(
        "files",
        keda_schema_problems,
        Edit("ScaledObject", "worker", ("spec", "maxReplicas"), 6),
        id="misspelt-scaledobject-field",
    ),
    pytest.param(
        "files",
        keda_schema_problems,
        Edit("ScaledObject", "worker", (*TRIGGER, "metadata", "host"), "amqp://u:p@rabbitmq/"),
        id="broker-password-in-the-trigger",
    ),
    pytest.param(
        "files",
        keda_schema_problems,
        Edit("TriggerAuthentication", "worker", ("spec", "secretTargetRef", 0, "key"), None),
        id="secret-ref-without-key",
    ),
    pytest.param(
        "files",
        selector_problems,
        Edit("Service", "ingress", ("spec", "selector", COMPONENT), "ingres"),
        id="service-selects-nothing",
    ),
    pytest.param(
        "files",
        selector_problems,
        Edit("Service", "ingress", ("spec", "selector", COMPONENT), "worker"),
        id="service-selects-pods-without-its-port",
    ),
    pytest.param(
        "files",
        selector_problems,
        Edit("PodDisruptionBudget", "ingress", ("spec", "minAvailable"), 2),
        id="budget-blocks-drains",
    ),
    pytest.param(
        "files",
        selector_problems,
        Edit(
            "Deployment",
            "ingress",
            (*POD, "topologySpreadConstraints", 0, "labelSelector", "matchLabels", COMPONENT),
            "worker",
        ),
        id="spread-counts-other-pods",
    ),
    pytest.param(
        "files",
        probe_problems,
        Reconfigure("worker", {"status_port": 9102}),
        id="status-port-moved-in-config",
    ),
    pytest.param(
        "files",
        probe_problems,
        Reconfigure("worker", {"status_host": "127.0.0.1"}),
        id="status-on-loopback",
    ),
    pytest.param(
        "files",
        probe_problems,
        Edit("Deployment", "ingress", (*CONTAINER, "args"), ["ingress", "--port", "8081"]),
        id="ingress-port-moved-on-command-line",
    ),
    pytest.param(
        "files",
        probe_problems,
        Edit(
            "Deployment", "ingress", (*CONTAINER, "readinessProbe", "httpGet", "path"), "/healthz"
        ),
        id="readiness-ignores-the-broker",
    ),
    pytest.param(
        "files",
        probe_problems,
        Edit("Deployment", "worker", (*ANNOTATIONS, "prometheus.io/port"), "8080"),
        id="scrape-on-the-wrong-port",
    ),
    pytest.param(
        "files",
        grace_problems,
        Reconfigure("worker", {"shutdown_grace_seconds": 40}),
        id="worker-grace-below-the-drain",
    ),
    pytest.param(
        "files",
        grace_problems,
        Reconfigure("providers", {"outcome_timeout_seconds": 60}),
        id="ingress-grace-below-the-outcome-wait",
    ),
    pytest.param(
        "files",
        grace_problems,
        Edit("Deployment", "ingress", (*CONTAINER, "lifecycle"), None),
        id="no-pre-stop-pause",
    ),
    pytest.param(
        "files",
        keda_problems,
        Reconfigure("broker", {"namespace": "tenant-b"}),
        id="queue-of-another-namespace",
    ),
    pytest.param(
        "files",
        keda_problems,
        Edit("ScaledObject", "worker", ("spec", "scaleTargetRef", "name"), "payouts-workers"),
        id="scales-a-missing-deployment",
    ),
    pytest.param(
        "files",
        keda_problems,
        Edit("ScaledObject", "worker", ("spec", "minReplicaCount"), 0),
        id="scales-to-zero",
    ),
    pytest.param(
        "files",
        keda_problems,
        Edit("TriggerAuthentication", "worker", ("spec", "secretTargetRef", 0, "key"), "URL"),
        id="keda-reads-another-url",
    ),
    pytest.param(
        "files",
        security_problems,
        Edit("Job", "migrate", (*POD, "securityContext", "runAsUser"), 0),
        id="runs-as-root",
    ),
    pytest.param(
        "files",
        security_problems,
        Edit(
            "Deployment", "worker", (*CONTAINER, "securityContext", "readOnlyRootFilesystem"), False
        ),
        id="writable-root-filesystem",
    ),
    pytest.param(
        "files",
        security_problems,
        Edit("ServiceAccount", None, ("automountServiceAccountToken",), True),
        id="account-mounts-tokens",
    ),
    pytest.param(
        "files",
        security_problems,
        Edit("Deployment", "ingress", (*CONTAINER, "resources", "limits", "memory"), None),
        id="no-memory-limit",
    ),
    pytest.param(
        "files",
        command_problems,
        Edit("Job", "migrate", (*CONTAINER, "args"), ["worker"]),
        id="job-does-not-migrate",
    ),
    pytest.param(
        "files",
        command_problems,
        Edit("Job", "migrate", ("spec", "ttlSecondsAfterFinished"), None),
        id="finished-jobs-pile-up",
    ),
    pytest.param(
        "files",
        secret_problems,
        Reconfigure("providers", {"secret_env": ("PAYOUTS_NEW_PROVIDER_SECRET",)}),
        id="secret-missing-from-example",
    ),
    pytest.param(
        "example",
        config_mount_problems,
        Edit("Deployment", "worker", (*CONTAINER, "volumeMounts", 0, "mountPath"), "/etc/payout"),
        id="config-mounted-elsewhere",
    ),
    pytest.param(
        "example",
        reference_problems,
        Edit(
            "TriggerAuthentication",
            "worker",
            ("spec", "secretTargetRef", 0, "name"),
            EXTERNAL_SECRET,
        ),
        id="secret-reference-not-renamed",
    ),
    pytest.param(
        "example",
        image_problems,
        Edit("Job", "migrate", (*CONTAINER, "image"), "payouts"),
        id="image-not-set-by-overlay",
    ),
    pytest.param(
        "example",
        autoscaler_problems,
        Edit("Deployment", "worker", ("spec", "replicas"), 2),
        id="replicas-fight-the-autoscaler",
    ),
    pytest.param(
        "files",
        probe_problems,
        Edit("Deployment", "console", (*CONTAINER, "args"), ["console"]),
        id="console-on-loopback",
    ),
    pytest.param(
        "files",
        probe_problems,
        Edit("Deployment", "console", (*CONTAINER, "readinessProbe", "httpGet", "path"), "/readyz"),
        id="console-readiness-asks-a-missing-page",
    ),
    pytest.param(
        "files",
        console_problems,
        Edit("Deployment", "console", (*CONTAINER, "volumeMounts", 1, "mountPath"), "/etc/console"),
        id="console-operators-not-mounted",
    ),
    pytest.param(
        "files",
        console_problems,
        Edit("Deployment", "console", (*POD, "volumes", 1, "secret", "items", 0, "key"), "ops"),
        id="console-operators-of-another-key",
    ),
    pytest.param(
        "example",
        console_problems,
        Edit(
            "Deployment",
            "console",
            (*CONTAINER, "env", 1, "valueFrom", "secretKeyRef", "name"),
            EXTERNAL_SECRET,
        ),
        id="console-session-key-from-the-shared-secret",
    ),
    pytest.param(
        "files",
        console_problems,
        Edit(
            "Deployment", "ingress", (*CONTAINER, "envFrom", 0, "secretRef", "name"), CONSOLE_SECRET
        ),
        id="ingress-reads-the-console-secret",
    ),
    pytest.param(
        "example",
        migrate_phase_problems,
        Edit("Deployment", "worker", ("metadata", "labels", COMPONENT), "consumer"),
        id="worker-applied-before-migration",
    ),
]


@pytest.mark.parametrize(("view", "check", "spoil"), SPOILS)
def test_each_check_sees_its_mistake(
    view: str,
    check: Callable[[list[Manifest], Settings], list[str]],
    spoil: Callable[[list[Manifest], Settings], Settings],
) -> None:
    objs = manifests(view)
    settings = k8s_settings()
    assert check(objs, settings) == []
    spoilt_settings = spoil(objs, settings)  # spoils objs in place, or the settings
    assert check(objs, spoilt_settings) != []
