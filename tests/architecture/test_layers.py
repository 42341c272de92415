"""Which layer may import which (docs/architecture.md#layers), checked on every module's imports,
including those made inside functions."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PRODUCT = ("schema", "broker", "database", "ingress", "workers", "payouts")
# What each layer may import of the product: its own package and those listed.
ALLOWED: dict[str, frozenset[str]] = {
    "schema": frozenset({"schema"}),
    "broker": frozenset({"schema", "broker"}),
    "database": frozenset({"schema", "database"}),
    "ingress": frozenset({"schema", "broker", "database", "ingress"}),
    "workers": frozenset({"schema", "broker", "database", "workers"}),
    "payouts": frozenset(PRODUCT),
}
# The client libraries of the broker, behind the one adapter package.
AMQP_LIBRARIES = frozenset({"aio_pika", "aiormq", "pamqp"})
# Contracts hold data and SQL, not connections to anything.
SERVICE_LIBRARIES = AMQP_LIBRARIES | {"asyncpg", "starlette", "uvicorn"}
# asyncpg's ways to open a connection, behind the one that tries each host with its own timeout.
POSTGRES_CONNECTORS = frozenset({"connect", "create_pool"})


def imported_packages(path: Path) -> set[str]:
    """The top-level package of every absolute import in the module."""
    packages: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            packages.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            packages.add(node.module.split(".")[0])
    return packages


def postgres_connectors_used(path: Path) -> set[str]:
    """asyncpg's connect functions the module calls or imports by name."""
    used: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Attribute) and node.attr in POSTGRES_CONNECTORS:
            if isinstance(node.value, ast.Name) and node.value.id == "asyncpg":
                used.add(node.attr)
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("asyncpg"):
            used.update(alias.name for alias in node.names if alias.name in POSTGRES_CONNECTORS)
    return used


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
        if layer != "database":
            crossing |= {f"asyncpg.{name}" for name in postgres_connectors_used(module)}
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


def test_the_check_sees_a_connection_opened_past_the_database_package(tmp_path: Path) -> None:
    module = tmp_path / "direct.py"
    module.write_text(
        "import asyncpg\nfrom asyncpg import create_pool\n\n"
        "async def run() -> None:\n    await asyncpg.connect('postgresql://')\n"
    )
    assert postgres_connectors_used(module) == {"connect", "create_pool"}
