"""The Orders page on a real database: filtered and paged by its URL, cancelling a pending order
as `payouts order cancel` does, and a cancel that failed audited as failed although its
transaction rolled back."""

from __future__ import annotations

import re

from payouts.console.acting import LIST_PAGE_SIZE
from tests.console.consoles import OPERATOR, OPERATOR_PASSWORD, client, console_app, signed_in_token
from tests.console.test_access import audit_rows
from tests.console.test_operator_actions import refuse_changes
from tests.services import fetch_value

# Orders registered a minute apart, order-000 first; player-1 has the even ones.
ORDERS = """
INSERT INTO pending_orders (provider_instance, order_id, user_id, amount, registered_at)
SELECT 'ow', format('order-%s', lpad(n::text, 3, '0')),
       CASE WHEN n % 2 = 0 THEN 'player-1' ELSE 'player-2' END, 5,
       now() - make_interval(mins => $1 - n)
FROM generate_series(0, $1 - 1) AS n
"""
ORDER_IDS = re.compile(r"<td>(order-\d+)</td>")


def shown_orders(text: str) -> list[str]:
    return ORDER_IDS.findall(text)


async def test_orders_are_listed_newest_first_filtered_and_paged_by_their_url(
    database_url: str,
) -> None:
    count = LIST_PAGE_SIZE + 10
    await fetch_value(database_url, ORDERS, count)
    await fetch_value(
        database_url,
        "UPDATE pending_orders SET status = 'cancelled', closed_at = now()"
        " WHERE order_id = 'order-003'",
    )
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        first = await browser.get("/orders")
        older_link = re.search(r'href="(/orders\?[^"]+)">Older', first.text)
        assert older_link, first.text
        older = await browser.get(older_link.group(1).replace("&amp;", "&"))
        of_player = await browser.get("/orders?user=player-1&state=pending")
        cancelled = await browser.get("/orders?state=cancelled")
        bad_state = await browser.get("/orders?state=paid")
    newest = [f"order-{n:03}" for n in range(count - 1, -1, -1)]
    assert shown_orders(first.text) == newest[:LIST_PAGE_SIZE]
    assert shown_orders(older.text) == newest[LIST_PAGE_SIZE:]
    assert 'href="/orders">Newest' in older.text
    assert (
        shown_orders(of_player.text) == [o for o in newest if int(o[-3:]) % 2 == 0][:LIST_PAGE_SIZE]
    )
    assert shown_orders(cancelled.text) == ["order-003"]
    assert bad_state.status_code == 400
    assert "state: one of pending, consumed, cancelled" in bad_state.text


async def test_an_operator_cancels_a_pending_order_once_and_both_tries_are_audited(
    database_url: str,
) -> None:
    await fetch_value(database_url, ORDERS, 2)
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        form = {"csrf_token": token, "provider": "ow", "order_id": "order-001"}
        done = await browser.post("/orders/cancel", data=form)
        again = await browser.post("/orders/cancel", data=form)
    assert done.status_code == 200
    assert "Order ow order-001 cancelled." in done.text
    assert again.status_code == 409
    assert "No pending order" in again.text
    statuses = await fetch_value(
        database_url,
        "SELECT string_agg(order_id || ' ' || status, ', ' ORDER BY order_id) FROM pending_orders",
    )
    assert statuses == "order-000 pending, order-001 cancelled"
    entries = [
        (e["actor"], e["actor_kind"], e["action"], e["target"], e["result"], e["detail"])
        for e in (await audit_rows(database_url))[1:]
    ]
    assert entries == [
        ("olga", "console", "order.cancel", "ow order-001", "ok", {}),
        ("olga", "console", "order.cancel", "ow order-001", "failed",
         {"reason": "no pending order under that id"}),
    ]  # fmt: skip


async def test_a_cancel_whose_transaction_rolled_back_is_audited_as_failed(
    database_url: str,
) -> None:
    await fetch_value(database_url, ORDERS, 1)
    await refuse_changes(
        database_url, "pending_orders", "orders are read-only during the migration"
    )
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answer = await browser.post(
            "/orders/cancel", data={"csrf_token": token, "provider": "ow", "order_id": "order-000"}
        )
    assert answer.status_code == 500
    assert "order.cancel failed and changed nothing" in answer.text
    assert "recorded as failed in the audit trail" in answer.text
    assert await fetch_value(database_url, "SELECT status FROM pending_orders") == "pending"
    entry = (await audit_rows(database_url))[-1]
    assert (entry["actor"], entry["action"], entry["target"], entry["result"]) == (
        "olga", "order.cancel", "ow order-000", "failed",
    )  # fmt: skip
    assert entry["detail"] == {"error": "RaiseError: orders are read-only during the migration"}


async def test_amounts_are_shown_in_plain_digits(database_url: str) -> None:
    # asyncpg reads NUMERIC 20000 as Decimal("2E+4"): the page shows the digits Postgres holds.
    await fetch_value(
        database_url,
        "INSERT INTO pending_orders (provider_instance, order_id, user_id, amount)"
        " VALUES ('ow', 'order-big', 'player-1', 20000), ('ow', 'order-cents', 'player-1', 0.50)",
    )
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        page = await browser.get("/orders")
    assert "amount 20000" in page.text
    assert "amount 0.50" in page.text
    assert "E+" not in page.text
