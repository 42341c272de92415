"""The suite's own rules, checked on small suites run inside this one: a test cannot control a
shared service without the `disruptive` marker, and under CI a missing requirement fails."""

from __future__ import annotations

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
