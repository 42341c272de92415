"""The Prometheus files deploy/ ships, through Prometheus's own `promtool`: the configuration and
every rules file load, and each alert fires and clears on the synthetic series of
tests/deploy/prometheus/*_test.yml, whose cases fail when an alert's expression is broken."""

from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import yaml

from tests.availability import require_tool
from tests.deploy.test_compose_stack import (
    DEPLOY,
    PROMETHEUS_CONFIG,
    bind_mounts,
    load_yaml,
)
from tests.deploy.test_k8s_manifests import load_documents

UNIT_TESTS = sorted((Path(__file__).parent / "prometheus").glob("*_test.yml"))
# An expression that never has a result, and one that always has one.
NEVER = "absent(vector(1))"
ALWAYS = "vector(1)"


def promtool(*arguments: str | Path) -> subprocess.CompletedProcess[str]:
    tool = require_tool("promtool", "deploy/local/test.sh installs it (ensure_prometheus)")
    return subprocess.run(
        [tool, *map(str, arguments)], capture_output=True, text=True, timeout=60, check=False
    )


def rule_groups() -> list[tuple[str, list[dict[str, Any]]]]:
    """(where, groups) of every rules file under deploy/, and of every PrometheusRule object of
    the Kubernetes manifests (its spec holds a rules file's groups)."""
    found = []
    for path in sorted(DEPLOY.rglob("*.y*ml")):
        for document in load_documents(path):
            if not isinstance(document, dict):
                continue
            if document.get("kind") == "PrometheusRule":
                found.append((f"{path} {document['metadata']['name']}", document["spec"]["groups"]))
            elif isinstance(document.get("groups"), list):
                found.append((str(path), document["groups"]))
    return found


def alert_names() -> set[str]:
    return {
        rule["alert"]
        for _, groups in rule_groups()
        for group in groups
        for rule in group["rules"]
        if "alert" in rule
    }


def test_the_rules_files_are_found() -> None:
    """The search below is what every other test here relies on."""
    (rule_file,) = load_yaml(PROMETHEUS_CONFIG)["rule_files"]
    assert str(bind_mounts("prometheus")[rule_file]) in [where for where, _ in rule_groups()]
    assert len(alert_names()) >= 11


def test_promtool_accepts_the_configuration_with_the_rules_compose_mounts(tmp_path: Path) -> None:
    """The full check (rules files read and checked too), with the container paths of
    `rule_files` replaced by the files compose mounts there."""
    config = load_yaml(PROMETHEUS_CONFIG)
    mounts = bind_mounts("prometheus")
    config["rule_files"] = [str(mounts[path]) for path in config["rule_files"]]
    checked = tmp_path / "prometheus.yml"
    checked.write_text(yaml.safe_dump(config))
    result = promtool("check", "config", checked)
    assert result.returncode == 0, result.stdout + result.stderr


def test_promtool_accepts_every_rules_file(tmp_path: Path) -> None:
    files = []
    for number, (where, groups) in enumerate(rule_groups()):
        files.append(tmp_path / f"{number}.yml")
        files[-1].write_text(yaml.safe_dump({"groups": groups}))
        assert groups, f"{where} has no rule groups"
    result = promtool("check", "rules", *files)
    assert result.returncode == 0, result.stdout + result.stderr


def test_each_alert_fires_and_clears_on_synthetic_series() -> None:
    assert UNIT_TESTS, "no promtool unit tests found"
    result = promtool("test", "rules", *UNIT_TESTS)
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_cases_where_it_fires_and_where_it_does_not() -> None:
    fires: set[str] = set()
    quiet: set[str] = set()
    for path in UNIT_TESTS:
        for case in yaml.safe_load(path.read_text(encoding="utf-8"))["tests"]:
            for check in case.get("alert_rule_test", []):
                (fires if check["exp_alerts"] else quiet).add(check["alertname"])
    assert alert_names() - fires == set(), "alerts no case makes fire"
    assert alert_names() - quiet == set(), "alerts no case expects silent"


def test_a_broken_alert_fails_its_cases(tmp_path: Path) -> None:
    """Each alert in turn made never to fire, then always to fire: the unit tests must fail
    every time. One promtool run checks them all (each variant in its own directory)."""
    variants = []
    for alert in sorted(alert_names()):
        for name, expression in (("never", NEVER), ("always", ALWAYS)):
            directory = tmp_path / f"{alert}-{name}"
            directory.mkdir()
            for number, (_, groups) in enumerate(rule_groups()):
                broken = [
                    {
                        **group,
                        "rules": [
                            {**rule, "expr": expression} if rule.get("alert") == alert else rule
                            for rule in group["rules"]
                        ],
                    }
                    for group in groups
                ]
                (directory / f"{number}.yml").write_text(yaml.safe_dump({"groups": broken}))
            for path in UNIT_TESTS:
                case = yaml.safe_load(path.read_text(encoding="utf-8"))
                case["rule_files"] = sorted(p.name for p in directory.glob("*.yml"))
                variants.append(directory / path.name)
                variants[-1].write_text(yaml.safe_dump(case))
    result = promtool("test", "rules", *variants)
    # promtool names each file on stdout, followed by SUCCESS there or its failures on stderr.
    passed = [variant for variant in variants if f"{variant}\n  SUCCESS" in result.stdout]
    assert passed == [], "breaking these alerts failed no unit test"
    assert result.stderr.count("FAILED") == len(variants), result.stdout + result.stderr[-2000:]
