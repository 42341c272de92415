"""The Audit page: newest first, filtered and paged by its URL, times in UTC with their age."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import asyncpg

from payouts.actions.audit import ActorKind, AuditEntry, AuditResult, record
from payouts.console.pages import AUDIT_PAGE_SIZE
from payouts.console.rendering import age
from tests.console.consoles import OPERATOR, OPERATOR_PASSWORD, client, console_app, signed_in_token

ENTRY_ROW = re.compile(r"<tr class=\"result-(\w+)\">\s*<td>(\d+)</td>")


async def write_entries(database_url: str, entries: list[AuditEntry]) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        for entry in entries:
            await record(conn, entry)
    finally:
        await conn.close()


async def set_time(database_url: str, action: str, moment: datetime) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute("UPDATE audit_log SET at = $1 WHERE action = $2", moment, action)
    finally:
        await conn.close()


def shown_ids(page: str) -> list[int]:
    return [int(number) for _, number in ENTRY_ROW.findall(page)]


def entry(actor: str, action: str, result: AuditResult = AuditResult.OK) -> AuditEntry:
    return AuditEntry(actor, ActorKind.CLI, action, "host-1 alice", result)


async def test_entries_are_filtered_by_actor_action_and_result(database_url: str) -> None:
    await write_entries(
        database_url,
        [
            entry("alice", "account.create"),
            entry("bob", "account.create", AuditResult.FAILED),
            entry("alice", "dlq.replay", AuditResult.REFUSED),
        ],
    )
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)  # entry 4: the login
        everything = await browser.get("/audit")
        alice = await browser.get("/audit", params={"actor": "alice"})
        creations = await browser.get("/audit", params={"action": "account.create"})
        refused = await browser.get("/audit", params={"result": "refused"})
        both = await browser.get("/audit", params={"actor": "alice", "action": "account.create"})
    assert shown_ids(everything.text) == [4, 3, 2, 1]
    assert shown_ids(alice.text) == [3, 1]
    assert shown_ids(creations.text) == [2, 1]
    assert shown_ids(refused.text) == [3]
    assert shown_ids(both.text) == [1]
    assert 'value="alice"' in alice.text, "the filter form keeps what was asked"


async def test_entries_are_filtered_by_time_range_in_utc(database_url: str) -> None:
    await write_entries(database_url, [entry("a", "old"), entry("a", "mid"), entry("a", "new")])
    await set_time(database_url, "old", datetime(2026, 1, 1, 10, 0, tzinfo=UTC))
    await set_time(database_url, "mid", datetime(2026, 1, 2, 10, 0, tzinfo=UTC))
    await set_time(database_url, "new", datetime(2026, 1, 3, 10, 0, tzinfo=UTC))
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        ranged = await browser.get(
            "/audit", params={"actor": "a", "since": "2026-01-02", "until": "2026-01-03T10:00"}
        )
        since = await browser.get("/audit", params={"actor": "a", "since": "2026-01-01T10:00:01"})
    assert shown_ids(ranged.text) == [2]
    assert "2026-01-02 10:00:00 UTC" in ranged.text
    assert shown_ids(since.text) == [3, 2]


async def test_an_unreadable_filter_is_answered_with_what_to_write(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        since = await browser.get("/audit", params={"since": "yesterday"})
        result = await browser.get("/audit", params={"result": "maybe"})
        before = await browser.get("/audit", params={"before": "-1"})
        # Past Postgres' bigint, and a character no text column holds: refused before the query.
        huge = await browser.get("/audit", params={"before": "9" * 20})
        nul = await browser.get("/audit", params={"actor": "a\x00"})
    assert since.status_code == result.status_code == before.status_code == 400
    assert huge.status_code == nul.status_code == 400
    assert "since: write a UTC time as 2026-12-07T04:30 or 2026-12-07" in since.text
    assert "result: one of ok, refused, failed" in result.text
    assert "before: an entry number" in before.text
    assert "before: an entry number" in huge.text
    assert "actor: at most 256 printable characters" in nul.text


async def test_pages_go_back_in_time_keeping_the_filters(database_url: str) -> None:
    count = AUDIT_PAGE_SIZE + 5
    await write_entries(database_url, [entry("pager", f"step-{n}") for n in range(1, count + 1)])
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        first = await browser.get("/audit", params={"actor": "pager"})
        older = re.search(r'href="(/audit\?[^"]+)">Older<', first.text)
        assert older, "a link to the older entries"
        link = older.group(1).replace("&amp;", "&")
        assert link == f"/audit?actor=pager&before={count - AUDIT_PAGE_SIZE + 1}"
        second = await browser.get(link)
    assert shown_ids(first.text) == list(range(count, count - AUDIT_PAGE_SIZE, -1))
    assert shown_ids(second.text) == [5, 4, 3, 2, 1]
    assert ">Older<" not in second.text
    assert 'href="/audit?actor=pager">Newest<' in second.text


def test_an_age_is_told_in_its_largest_whole_unit() -> None:
    now = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    assert age(now - timedelta(seconds=12), now) == "12 s ago"
    assert age(now - timedelta(minutes=5, seconds=59), now) == "5 min ago"
    assert age(now - timedelta(hours=3), now) == "3 h ago"
    assert age(now - timedelta(days=2, hours=23), now) == "2 d ago"
    assert age(now + timedelta(seconds=5), now) == "in the future"


async def test_an_entrys_detail_is_shown_as_its_json_values(database_url: str) -> None:
    detailed = AuditEntry(
        "alice", ActorKind.CLI, "account.create", "host-1", AuditResult.OK,
        detail={"created": True, "credited_held_payouts": 2, "note": "<b>as typed</b>"},
    )  # fmt: skip
    await write_entries(database_url, [detailed])
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        page = await browser.get("/audit", params={"actor": "alice"})
    # jsonb keeps its keys in an order of its own.
    for shown in ("created: true", "credited_held_payouts: 2", "note: &lt;b&gt;as typed&lt;/b&gt;"):
        assert shown in page.text
