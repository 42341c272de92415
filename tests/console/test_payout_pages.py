"""The support pages: the payout search, a payout with its books, answers and refusals, a user,
and the proof images, on payouts recorded by the real crediting code."""

from __future__ import annotations

import io
import re
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import asyncpg
from PIL import Image

from ingress.device_ids import mask
from payouts.actions.proofs import attach_proof
from payouts.actions.shown_requests import WITHHELD
from payouts.console.app import create_app
from payouts.console.payout_pages import SEARCH_PAGE_SIZE, USER_PAGE_SIZE
from schema.events import RawRequest
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    SESSION_SECRET,
    VIEWER,
    VIEWER_PASSWORD,
    client,
    console_settings,
    signed_in_token,
)
from tests.factories import payout_event, provider
from workers.accounts import create_wallet
from workers.batch_crediting import FundingAccounts, apply_batch
from workers.crediting import CreditResult, apply_payout

if TYPE_CHECKING:
    import httpx

    from payouts.console.headers import SecurityHeaders
    from schema.events import PayoutEvent

PAYOUT_ROW = re.compile(r'<tr class="status-\w+">\s*<td><a href="/payouts/(\d+)">')
GAID = "38400000-8cf0-11bd-b23e-10b96e40000d"


def console(database_url: str, store_device_ids: bool = False) -> SecurityHeaders:
    """The console, knowing provider instance `ow` (spec 000, the factories' default)."""
    instance = provider("offerwall_md5", name="ow", store_device_ids=store_device_ids)
    settings = console_settings(database_url).model_copy(update={"providers": (instance,)})
    return create_app(settings, SESSION_SECRET)


async def credit(database_url: str, *events: PayoutEvent) -> list[CreditResult]:
    """Each event through the worker's crediting transaction, as a delivery would be."""
    conn = await asyncpg.connect(database_url)
    try:
        results = []
        for event in events:
            async with conn.transaction():
                results.append(await apply_payout(conn, event))
        return results
    finally:
        await conn.close()


async def execute(database_url: str, statement: str, *arguments: Any) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await conn.execute(statement, *arguments)
    finally:
        await conn.close()


def shown_ids(page: str) -> list[int]:
    return [int(number) for number in PAYOUT_ROW.findall(page)]


async def signed_in(browser: httpx.AsyncClient) -> None:
    await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)


def redelivered(event: PayoutEvent, **changes: Any) -> PayoutEvent:
    """The same transaction arriving again: a provider's retry has a new event id."""
    return event.model_copy(update={"event_id": uuid.uuid4(), **changes})


# Search


async def test_search_finds_payouts_by_each_filter(database_url: str) -> None:
    day = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    alice = payout_event(user_id="alice", received_at=day)
    held = payout_event(user_id="bob", create_account=False, received_at=day + timedelta(days=1))
    other = payout_event(provider_instance="ow2", user_id="carol", received_at=day + timedelta(2))
    results = await credit(database_url, alice, held, other)
    ids = [result.payout_id for result in results]
    async with client(console(database_url)) as browser:
        await signed_in(browser)

        async def found(**query: str) -> list[int]:
            page = await browser.get("/payouts", params=query)
            assert page.status_code == 200, page.text
            return shown_ids(page.text)

        assert await found() == ids[::-1]
        assert await found(transaction_id=alice.transaction_id) == [ids[0]]
        assert await found(user_id="bob") == [ids[1]]
        assert await found(provider_instance="ow2") == [ids[2]]
        assert await found(status="held") == [ids[1]]
        assert await found(outcome="held_unknown_account") == [ids[1]]
        assert await found(status="credited", provider_instance="ow") == [ids[0]]
        assert await found(since="2026-03-02", until="2026-03-03") == [ids[1]]
        assert await found(since="2026-03-02T12:00:01") == [ids[2]]
        assert await found(user_id="nobody") == []


async def test_search_pages_newest_first_and_keeps_its_filters(database_url: str) -> None:
    events = [payout_event(user_id="pat") for _ in range(SEARCH_PAGE_SIZE + 2)]
    ids = [result.payout_id for result in await credit(database_url, *events)]
    await credit(database_url, payout_event(user_id="someone-else"))
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        first = await browser.get("/payouts", params={"user_id": "pat"})
        older_link = re.search(r'<a href="([^"]+)">Older</a>', first.text)
        assert older_link, "a second page is linked"
        older = await browser.get(older_link.group(1).replace("&amp;", "&"))
    assert shown_ids(first.text) == ids[::-1][:SEARCH_PAGE_SIZE]
    assert shown_ids(older.text) == ids[::-1][SEARCH_PAGE_SIZE:]
    assert "Older</a>" not in older.text
    assert '<a href="/payouts?user_id=pat">Newest</a>' in older.text


async def test_a_search_that_matches_nothing_says_so(database_url: str) -> None:
    await credit(database_url, payout_event())
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = await browser.get("/payouts", params={"transaction_id": "never-sent"})
    assert page.status_code == 200
    assert shown_ids(page.text) == []
    assert "No payout matches." in page.text


async def test_malformed_filters_get_a_page_saying_what_to_write(database_url: str) -> None:
    malformed = [
        ({"since": "yesterday"}, "since: write a UTC time as 2026-12-07T04:30"),
        ({"until": "2026-13-01"}, "until: write a UTC time"),
        ({"status": "lost"}, "status: one of credited, held"),
        ({"outcome": "maybe"}, "outcome: one of credited, duplicate"),
        ({"before": "ten"}, "before: an entry number"),
        ({"before": "9" * 30}, "before: an entry number"),
        ({"user_id": "a\x00b"}, "user_id: at most 256 printable characters"),
        ({"transaction_id": "t" * 300}, "transaction_id: at most 256 printable characters"),
    ]
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        for query, message in malformed:
            page = await browser.get("/payouts", params=query)
            assert (page.status_code, message in page.text) == (400, True), (query, page.text)
        bad_before = await browser.get("/users/alice", params={"before": "-1"})
        unknown = await browser.get(f"/payouts/{2**63}")
        bad_image = await browser.get(f"/payouts/1/proofs/{2**64}")
        half = await browser.get("/payouts/transaction", params={"transaction_id": "t"})
    assert bad_before.status_code == 400
    assert (unknown.status_code, bad_image.status_code) == (404, 404)
    assert half.status_code == 400
    assert "give both provider_instance and transaction_id" in half.text


async def test_the_pages_need_a_login_and_any_role_reads_them(database_url: str) -> None:
    (result,) = await credit(database_url, payout_event())
    pages = ["/payouts", f"/payouts/{result.payout_id}", "/users/alice"]
    async with client(console(database_url)) as browser:
        for path in pages:
            answer = await browser.get(path)
            assert answer.status_code == 303
            assert answer.headers["location"].startswith("/login?next=")
        await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        for path in pages:
            assert (await browser.get(path)).status_code == 200, path
    async with client(console(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        for path in pages:
            assert (await browser.get(path)).status_code == 200, path


# One payout


async def test_payout_page_shows_its_fields_balanced_books_and_items(database_url: str) -> None:
    event = payout_event(amount=Decimal("12.50"), items=("sword", "shield"), order_id="o-1")
    (result,) = await credit(database_url, event)
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
    for field in ("payout_id", "event_id", "signature", "answer_code", "recorded_at", "price"):
        assert f"<th>{field}</th>" in page
    assert event.transaction_id in page
    assert str(event.event_id) in page
    assert event.signature in page
    assert "Balanced: its ledger entries sum to 0" in page
    assert '<td class="amount">12.50</td>' in page
    assert '<td class="amount">-12.50</td>' in page
    assert "<td>sword</td><td>1</td>" in page
    assert "<td>shield</td><td>1</td>" in page
    assert "Not balanced" not in page


async def test_a_payout_whose_entries_do_not_balance_is_flagged(database_url: str) -> None:
    (result,) = await credit(database_url, payout_event(amount=Decimal(5)))
    await execute(
        database_url,
        "INSERT INTO ledger_entries (payout_id, account_id, amount)"
        " SELECT $1, account_id, 1 FROM accounts WHERE kind = 'wallet'",
        result.payout_id,
    )
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
    assert "Not balanced: its ledger entries sum to 1." in page
    assert "it credited 6 to wallets, not its amount 5" in page
    assert "Balanced:" not in page


async def test_a_held_payout_balances_with_no_entries(database_url: str) -> None:
    (result,) = await credit(database_url, payout_event(create_account=False))
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
    assert "a held payout has moved nothing" in page
    assert "it is held until the user's wallet exists" in page


async def test_payout_page_shows_the_answers_and_the_refusals_of_its_transaction(
    database_url: str,
) -> None:
    event = payout_event()
    conflicting = redelivered(event, amount=Decimal(999), signature=uuid.uuid4().hex)
    (first, *_) = await credit(
        database_url, event, redelivered(event), redelivered(event), conflicting
    )
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{first.payout_id}")).text
    assert "<strong>Credited</strong>" in page
    assert "leaving the balance 10.5 COIN." in page
    assert "was answered as <strong>credited</strong>, which this protocol does not tell" in page
    assert "so the delivery got its accepted answer <code>200</code>" in page
    assert "2 deliveries after it was credited were answered as duplicates, crediting" in page
    assert "<h3>conflict, received" in page
    assert "<td>999 COIN</td>" in page
    assert str(conflicting.event_id) in page


def aigame_callback(**overrides: Any) -> PayoutEvent:
    """A spec-001 callback, by default for a user with no wallet under `require_existing`."""
    fields: dict[str, Any] = {
        "provider_instance": "aigame",
        "protocol": "aigame_payout",
        "user_id": "newcomer",
        "create_account": False,
    }
    return payout_event(**(fields | overrides))


async def test_a_held_payout_shows_it_was_answered_member_does_not_exist(
    database_url: str,
) -> None:
    event = aigame_callback()
    (held,) = await credit(database_url, event)
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{held.payout_id}")).text
    assert "<strong>Held</strong>: nothing is credited until the user's wallet exists" in page
    assert (
        "was answered as <strong>held_unknown_account</strong>: <code>800101</code> "
        "&ldquo;Member does not exist&rdquo;"
    ) in page
    assert "not what a delivery was answered" in page, "answer_code 200 is explained"


async def test_a_held_payout_released_by_creating_the_account_keeps_its_first_answer(
    database_url: str,
) -> None:
    event = aigame_callback()
    (held,) = await credit(database_url, event)
    await credit(database_url, redelivered(event))  # a re-send while held: 800101 again
    conn = await asyncpg.connect(database_url)
    try:
        await create_wallet(conn, "newcomer", "COIN")
    finally:
        await conn.close()
    await credit(database_url, redelivered(event))  # a re-send after: a duplicate
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{held.payout_id}")).text
    assert "<strong>Credited</strong>" in page
    assert "leaving the balance 10.5 COIN: it was held first, and credited by a later" in page
    assert (
        "was answered as <strong>held_unknown_account</strong>: <code>800101</code> "
        "&ldquo;Member does not exist&rdquo;"
    ) in page
    assert "answered as <strong>credited</strong>" not in page
    assert "<th>first_outcome</th><td>held_unknown_account" in page
    assert '<th>outcome</th><td>credited <span class="kind">now:' in page
    assert "Re-sends that came while it was held were answered the same" in page
    assert (
        "1 delivery after it was credited was answered as a duplicate "
        "(<code>200</code> &ldquo;success&rdquo;)"
    ) in page


async def test_a_payout_credited_in_a_workers_batch_shows_it_was_answered_credited(
    database_url: str,
) -> None:
    event = aigame_callback(create_account=True)
    conn = await asyncpg.connect(database_url)
    try:
        async with conn.transaction():
            (credited,) = await apply_batch(conn, [event], FundingAccounts())
    finally:
        await conn.close()
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{credited.payout_id}")).text
    assert (
        "was answered as <strong>credited</strong>: <code>200</code> &ldquo;success&rdquo;"
    ) in page
    assert "it was held first" not in page
    assert "Re-sends that came while it was held" not in page


async def test_one_later_delivery_is_counted_in_the_singular(database_url: str) -> None:
    event = payout_event()
    (first, _) = await credit(database_url, event, redelivered(event))
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{first.payout_id}")).text
    singular = "1 delivery after it was credited was answered as a duplicate, crediting nothing."
    assert singular in page


async def test_a_transaction_with_only_refused_deliveries_has_a_page(database_url: str) -> None:
    recorded = payout_event()
    reused = payout_event(signature=recorded.signature, transaction_id="tx-shifted")
    await credit(database_url, recorded, reused)
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = await browser.get(
            "/payouts/transaction",
            params={"provider_instance": "ow", "transaction_id": "tx-shifted"},
        )
        nothing = await browser.get(
            "/payouts/transaction", params={"provider_instance": "ow", "transaction_id": "none"}
        )
    assert page.status_code == 200
    assert "No payout is recorded under this transaction" in page.text
    assert "<h3>signature_reused, received" in page.text
    assert nothing.status_code == 404
    assert "Nothing is recorded under transaction &#39;none&#39;" in nothing.text


def _callback_with_gaid(**overrides: Any) -> PayoutEvent:
    query = f"user_id=alice&amount=10.5&trans_id=t1&gaid={GAID}&sign=abc"
    raw = RawRequest(method="GET", path="/cb", query_string=query, client_ip="192.0.2.1")
    return payout_event(raw_request=raw, attributes={"gaid": GAID}, **overrides)


async def test_device_ids_kept_as_sent_are_shown_masked(database_url: str) -> None:
    (result,) = await credit(database_url, _callback_with_gaid())
    async with client(console(database_url, store_device_ids=True)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
    assert GAID not in page
    assert f"gaid={mask(GAID).replace(':', '%3A')}&amp;sign=abc" in page
    assert f"<th>gaid</th><td>{mask(GAID)}</td>" in page


async def test_device_ids_the_ingress_masked_are_shown_as_stored(database_url: str) -> None:
    hashed = mask(GAID)
    stored = f"user_id=alice&gaid={hashed.replace(':', '%3A')}"
    raw = RawRequest(method="GET", path="/cb", query_string=stored, client_ip="192.0.2.1")
    event = payout_event(raw_request=raw, attributes={"gaid": hashed})
    (result,) = await credit(database_url, event)
    async with client(console(database_url, store_device_ids=False)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
    assert stored.replace("&", "&amp;") in page, "not hashed a second time"


async def test_the_raw_request_of_an_instance_no_longer_configured_is_withheld(
    database_url: str,
) -> None:
    (result,) = await credit(database_url, _callback_with_gaid(provider_instance="gone"))
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
    assert GAID not in page
    assert WITHHELD in page


def _png() -> bytes:
    image = io.BytesIO()
    Image.new("RGB", (4, 3), (200, 30, 30)).save(image, format="PNG")
    return image.getvalue()


async def test_proof_images_are_shown_inline_and_served_only_after_login(
    database_url: str,
) -> None:
    event = payout_event()
    (result,) = await credit(database_url, event)
    png = _png()
    conn = await asyncpg.connect(database_url)
    try:
        image_id = await attach_proof(conn, "ow", event.transaction_id, "image/png", png)
    finally:
        await conn.close()
    assert result.payout_id is not None
    source = f"/payouts/{result.payout_id}/proofs/{image_id}"
    async with client(console(database_url)) as browser:
        anonymous = await browser.get(source)
        await signed_in(browser)
        page = (await browser.get(f"/payouts/{result.payout_id}")).text
        image = await browser.get(source)
        other_payout = await browser.get(f"/payouts/{result.payout_id + 1}/proofs/{image_id}")
    assert anonymous.status_code == 303
    assert anonymous.content != png
    assert f'<img src="{source}"' in page
    assert image.status_code == 200
    assert image.content == png
    assert image.headers["content-type"] == "image/png"
    assert image.headers["x-content-type-options"] == "nosniff"
    assert image.headers["cache-control"] == "no-store"
    assert other_payout.status_code == 404


# One user


async def test_user_page_shows_balances_held_payouts_inventory_and_payouts(
    database_url: str,
) -> None:
    conn = await asyncpg.connect(database_url)
    try:
        await create_wallet(conn, "uma", "GEM")
    finally:
        await conn.close()
    credited = [
        payout_event(user_id="uma", amount=Decimal(2), items=("hat",))
        for _ in range(USER_PAGE_SIZE)
    ]
    # Of two payouts for wallets that must exist, the one whose wallet does is credited.
    gems = payout_event(user_id="uma", currency="GEM", create_account=False)
    held = payout_event(user_id="uma", currency="EUR", create_account=False)
    results = await credit(database_url, *credited, gems, held)
    ids = [result.payout_id for result in results]
    await credit(database_url, payout_event(user_id="someone-else"))
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = (await browser.get("/users/uma")).text
        older = (await browser.get("/users/uma", params={"before": ids[2]})).text
    assert '<td>COIN</td><td class="amount">40</td>' in page
    assert '<td>GEM</td><td class="amount">10.5</td>' in page
    assert f'<a href="/payouts/{ids[-1]}">{held.transaction_id}</a>' in page
    assert gems.transaction_id not in page.split("<h2>Held payouts</h2>")[1].split("<h2>")[0]
    assert "<td>hat</td><td>20</td>" in page
    assert shown_ids(page) == ids[::-1][:USER_PAGE_SIZE]
    assert '<a href="/users/uma?before=' in page
    assert shown_ids(older) == ids[1::-1]


async def test_a_user_with_nothing_has_an_empty_page(database_url: str) -> None:
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        page = await browser.get("/users/nobody")
    assert page.status_code == 200
    assert "No wallet." in page.text
    assert "No payout." in page.text


# Escaping


async def test_markup_in_a_user_id_or_a_raw_request_is_shown_as_text(database_url: str) -> None:
    script = "<script>alert(1)</script>"
    raw = RawRequest(
        method="GET",
        path="/cb",
        query_string=f"user_id={script}",
        client_ip="192.0.2.1",
        user_agent=script,
    )
    event = payout_event(user_id=script, raw_request=raw, transaction_id=f"tx{script}")
    (result,) = await credit(database_url, event)
    async with client(console(database_url)) as browser:
        await signed_in(browser)
        pages = [
            await browser.get("/payouts", params={"user_id": script}),
            await browser.get(f"/payouts/{result.payout_id}"),
            await browser.get("/users/" + "%3Cscript%3Ealert(1)%3C%2Fscript%3E"),
        ]
    for page in pages:
        assert page.status_code == 200, page.text
        assert "<script>" not in page.text
        assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert shown_ids(pages[0].text) == [result.payout_id]
    assert 'href="/users/%3Cscript%3Ealert%281%29%3C%2Fscript%3E"' in pages[1].text
