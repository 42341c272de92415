"""Which layer may import which (docs/architecture.md#layers), checked on every module's imports,
including those made inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schema", "broker", "ingress", "workers", "payouts")
# What each layer may import of the product: its own package and those listed.
ALLOWED: dict[str, frozenset[str]] = {
    "schema": frozenset({"schema"}),
    "broker": frozenset({"schema", "broker"}),
    "ingress": frozenset({"schema", "broker", "ingress"}),
    "workers": frozenset({"schema", "broker", "workers"}),
    "payouts": frozenset(PRODUCT),
}
# The client libraries of the broker, behind the one adapter package.
AMQP_LIBRARIES = frozenset({"aio_pika", "aiormq", "pamqp"})
# Contracts hold data and SQL, not connections to anything.
SERVICE_LIBRARIES = AMQP_LIBRARIES | {"asyncpg", "starlette", "uvicorn"}


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in the module."""
    packages: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def modules_of(layer: str) -> list[Path]:
    return sorted((ROOT / layer).rglob("*.py"))


def forbidden_imports(layer: str) -> list[str]:
    found = []
    for module in modules_of(layer):
        imported = imported_packages(module)
        crossing = (imported & set(PRODUCT)) - ALLOWED[layer]
        if layer != "broker":
            crossing |= imported & AMQP_LIBRARIES
        if layer == "schema":
            crossing |= imported & SERVICE_LIBRARIES
        found += [f"{module.relative_to(ROOT)} imports {name}" for name in sorted(crossing)]
    return found


@pytest.mark.parametrize("layer", PRODUCT)
def test_a_layer_imports_only_what_lies_beneath_it(layer: str) -> None:
    assert modules_of(layer), f"no modules found under {layer}/"
    assert forbidden_imports(layer) == []


def test_the_check_sees_an_import_made_inside_a_function(tmp_path: Path) -> None:
    module = tmp_path / "lazy.py"
    module.write_text("def run() -> None:\n    from workers.consumer import Worker\n")
    assert "workers" in imported_packages(module)
