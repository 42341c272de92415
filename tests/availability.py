"""What a test does when something it needs is missing on this machine: skip on a developer's
machine, fail under CI (`CI=true`), so CI can never be green without the tests that need it."""

from __future__ import annotations

import os
import shutil
from typing import NoReturn

import pytest


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def unavailable(reason: str) -> NoReturn:
    """Skip with `reason`; under CI, fail with it instead."""
    if in_ci():
        pytest.fail(f"{reason} (CI=true: a missing requirement fails, never skips)", pytrace=False)
    pytest.skip(reason)


def require_tool(tool: str, why: str) -> str:
    """The path of `tool`, or `unavailable` saying `why` the test needs it."""
    found = shutil.which(tool)
    if found is None:
        unavailable(f"{tool} is not on this machine: {why}")
    return found


def require_root(why: str) -> None:
    """`unavailable` unless this process runs as root, saying `why` the test needs it."""
    if os.geteuid() != 0:
        unavailable(f"needs root (this run is uid {os.geteuid()}): {why}")
