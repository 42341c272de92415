"""The suite's own rules, partly on small suites run inside this one: only the service_control
fixture stops or reconfigures a shared service, it refuses a test without the `disruptive`
marker, and under CI a missing requirement fails instead of skipping."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.service_control import DISRUPTIVE

CONFTEST = 'pytest_plugins = ("tests.service_control",)'
INI = f"""\
[pytest]
addopts = --strict-markers -p no:cacheprovider -p no:asyncio
markers =
    {DISRUPTIVE}: stops a shared service
"""


def test_service_control_refuses_a_test_without_the_disruptive_marker(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest(CONFTEST)
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        import pytest

        def test_forgot_the_marker(service_control):
            pass

        @pytest.mark.disruptive
        def test_marked(service_control):
            pass
        """
    )
    result = pytester.runpytest_inprocess()
    result.assert_outcomes(passed=1, errors=1)
    result.stdout.fnmatch_lines(["*test_forgot_the_marker*mark it @pytest.mark.disruptive*"])


@pytest.mark.parametrize(("ci", "outcome"), [("", "skipped"), ("true", "failed")])
def test_a_missing_tool_skips_locally_and_fails_under_ci(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, ci: str, outcome: str
) -> None:
    monkeypatch.setenv("CI", ci)
    pytester.makeini(INI)
    pytester.makepyfile(
        """
        from tests.availability import require_tool

        def test_needs_a_tool():
            require_tool("no-such-tool-on-any-machine", "to show the rule")
        """
    )
    pytester.runpytest_inprocess().assert_outcomes(**{outcome: 1})


# What only tests/service_control.py may do: each stops or reconfigures a whole shared service.
SERVER_WIDE = (
    '"pg_ctlcluster"',
    '"stop_app"',
    "set_env(",
    '"close_all_connections"',
    "ServiceControl(",
)
TESTS = Path(__file__).resolve().parents[1]


def test_only_service_control_stops_or_reconfigures_a_shared_service() -> None:
    allowed = {TESTS / "service_control.py", Path(__file__).resolve()}
    found = [
        f"{path.relative_to(TESTS)}: {word}"
        for path in sorted(TESTS.rglob("*.py"))
        if path not in allowed
        for word in SERVER_WIDE
        if word in path.read_text(encoding="utf-8")
    ]
    assert not found, "use the service_control fixture instead: " + ", ".join(found)
