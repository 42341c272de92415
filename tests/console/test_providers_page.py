"""The Providers page from the database: each configured instance's recorded callbacks over the
last hour and day; and, without Prometheus or with one that does not answer, a page that says so
instead of failing. (With a real Prometheus: tests/e2e/test_console_providers.py.)"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import asyncpg
import pytest

from payouts.console.app import create_app
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    SESSION_SECRET,
    client,
    console_settings,
    signed_in_token,
)
from tests.e2e.stack import free_port
from tests.factories import payout_event, provider
from workers.accounts import create_wallet
from workers.crediting import apply_payout

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from schema.settings import Settings

INSTANCE = "ow"


def settings_with_providers(database_url: str, **console: object) -> Settings:
    settings = console_settings(database_url, **console)
    instances = (
        provider("offerwall_md5", name=INSTANCE, secret_env=("OW_CURRENT", "OW_NEXT")),
        provider("adjoe", name="quiet"),
    )
    return settings.model_copy(update={"providers": instances})


async def page_of(database_url: str, **console: object) -> str:
    settings = settings_with_providers(database_url, **console)
    async with client(create_app(settings, SESSION_SECRET)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answer = await browser.get("/providers")
    assert answer.status_code == 200, answer.text
    return answer.text


def section(page: str, instance: str) -> str:
    found = re.search(
        rf'<section class="provider" id="provider-{instance}">(.*?)</section>', page, re.S
    )
    assert found, f"no section for {instance}"
    return found.group(1)


async def record(database_url: str, ages: list[timedelta], **fields: object) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for age in ages:
            event = payout_event(
                provider_instance=INSTANCE, received_at=datetime.now(UTC) - age, **fields
            )
            async with conn.transaction():
                await apply_payout(conn, event)
    finally:
        await conn.close()


async def test_recorded_callbacks_are_counted_per_instance_over_the_hour_and_the_day(
    database_url: str,
) -> None:
    await record(database_url, [timedelta(minutes=5), timedelta(hours=3), timedelta(days=2)])
    await record(database_url, [timedelta(minutes=1)], create_account=False, user_id="nobody")
    shown = section(await page_of(database_url), INSTANCE)
    # The payout of two days ago is in neither window.
    assert "<tr><td>credited</td><td>1</td><td>2</td></tr>" in shown
    assert "<tr><td>held_unknown_account</td><td>1</td><td>1</td></tr>" in shown
    assert re.search(
        r"Last callback recorded:\s*\d{4}-\d\d-\d\d [\d:]+ UTC <span class=\"age\">1 min ago", shown
    )
    assert "none in the last day" in section(await page_of(database_url), "quiet")


async def test_held_payouts_credited_since_count_as_answered_held(database_url: str) -> None:
    await record(
        database_url,
        [timedelta(minutes=3), timedelta(minutes=2), timedelta(minutes=1)],
        create_account=False,
        user_id="newcomer",
    )
    conn = await asyncpg.connect(database_url)
    try:
        await create_wallet(conn, "newcomer", "COIN")
    finally:
        await conn.close()
    shown = section(await page_of(database_url), INSTANCE)
    assert "<tr><td>held_unknown_account</td><td>3</td><td>3</td></tr>" in shown
    assert "<tr><td>credited</td>" not in shown
    assert "Of the last day's payouts answered held_unknown_account, 3 were credited since" in shown


async def test_a_conflicting_copy_is_counted_beside_the_payout(database_url: str) -> None:
    await record(database_url, [timedelta(minutes=2)], transaction_id="tx-twice")
    await record(
        database_url, [timedelta(minutes=1)], transaction_id="tx-twice", amount=Decimal(99)
    )
    shown = section(await page_of(database_url), INSTANCE)
    assert "<tr><td>credited</td><td>1</td><td>1</td></tr>" in shown
    assert "<tr><td>conflict</td><td>1</td><td>1</td></tr>" in shown


async def test_without_prometheus_the_page_says_what_it_cannot_show(database_url: str) -> None:
    page = await page_of(database_url)
    assert "No Prometheus is configured (console.prometheus_url)" in page
    assert 'class="verdicts"' not in page


async def test_a_prometheus_that_does_not_answer_is_named_on_the_page(database_url: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"
    page = await page_of(database_url, prometheus_url=url)
    assert "The ingress&#39;s metrics are unavailable" in page
    assert f"Prometheus at {url}" in page
    assert "Connection refused" in page


@contextlib.contextmanager
def answering(tmp_path: Path, body: str) -> Iterator[str]:
    """A real HTTP server (not Prometheus) answering every query with `body`: its base URL."""
    (tmp_path / "api" / "v1").mkdir(parents=True)
    (tmp_path / "api" / "v1" / "query").write_text(body)
    handler = functools.partial(SimpleHTTPRequestHandler, directory=str(tmp_path))
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.mark.parametrize(
    ("body", "shown"),
    [
        ("<html>not Prometheus</html>", "Expecting value"),
        ('{"status": "error", "error": "parse error at char 4"}', "parse error at char 4"),
        (
            '{"status": "success", "data": {"result": '
            '[{"metric": {"exported_instance": "ow", "verdict": "accepted"}}]}}',
            "without a value",
        ),
    ],
)
async def test_a_prometheus_that_answers_nonsense_is_named_on_the_page(
    database_url: str, tmp_path: Path, body: str, shown: str
) -> None:
    with answering(tmp_path, body) as url:
        page = await page_of(database_url, prometheus_url=url)
    assert "The ingress&#39;s metrics are unavailable" in page
    assert shown in page
