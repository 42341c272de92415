"""Every list page answers a filter it cannot use with its 400 page, never a 500."""

from __future__ import annotations

import pytest

from tests.console.consoles import OPERATOR, OPERATOR_PASSWORD, client, console_app, signed_in_token

UNUSABLE = {"nul": "a\x00b", "overlong": "x" * 10_000}


async def test_an_entry_number_past_bigint_is_answered_400(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answer = await browser.get("/held", params={"before": "9" * 20})
    assert answer.status_code == 400, answer.text[:300]


@pytest.mark.parametrize(
    ("path", "name"),
    [
        ("/held", "user"),
        ("/held", "provider"),
        ("/held", "before"),
        ("/orders", "user"),
        ("/orders", "state"),
        ("/orders", "provider"),
        ("/dead-letters", "reason"),
        ("/dead-letters", "page"),
    ],
)
@pytest.mark.parametrize("value", UNUSABLE.values(), ids=UNUSABLE.keys())
async def test_an_unusable_filter_is_answered_400(
    database_url: str, path: str, name: str, value: str
) -> None:
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answer = await browser.get(path, params={name: value})
    assert answer.status_code == 400, (path, name, answer.status_code, answer.text[:300])
