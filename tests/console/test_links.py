"""The links between the console's pages, on records written by the real crediting code: a held
payout to its payout and its user, each payout "create the account" credited to its page, a
consumed order to the payout that consumed it."""

from __future__ import annotations

from tests.console.consoles import OPERATOR, OPERATOR_PASSWORD, client, signed_in_token
from tests.console.test_payout_pages import console, credit, execute
from tests.factories import payout_event

CONSUMED = """
UPDATE pending_orders SET status = 'consumed', consumed_by = $1, closed_at = now()
WHERE order_id = 'order-1'
"""
ORDER = """
INSERT INTO pending_orders (provider_instance, order_id, user_id, amount)
VALUES ('ow', 'order-1', 'bob', 5)
"""


async def test_a_held_payout_links_to_its_payout_and_its_user(database_url: str) -> None:
    held = payout_event(user_id="bob/ext", create_account=False)
    (result,) = await credit(database_url, held)
    async with client(console(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        page = (await browser.get("/held")).text
        user_page = await browser.get("/users/bob%2Fext")
    assert f'<a href="/payouts/{result.payout_id}">{held.transaction_id}</a>' in page
    assert '<a href="/users/bob%2Fext">bob/ext</a>' in page
    assert user_page.status_code == 200


async def test_create_the_account_links_each_payout_it_credited(database_url: str) -> None:
    results = await credit(
        database_url,
        payout_event(user_id="bob", create_account=False),
        payout_event(user_id="bob", create_account=False),
    )
    async with client(console(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        created = await browser.post(
            "/accounts", data={"csrf_token": token, "user": "bob", "currency": "COIN"}
        )
    assert "wallet created;\n2 held payouts credited:" in created.text
    first, second = (result.payout_id for result in results)
    assert (
        f'<a href="/payouts/{first}">ow payout {first}</a>, 10.5; '
        f'<a href="/payouts/{second}">ow payout {second}</a>, 10.5.'
    ) in created.text


async def test_a_consumed_order_links_to_the_payout_that_consumed_it(database_url: str) -> None:
    event = payout_event(user_id="bob")
    (result,) = await credit(database_url, event)
    await execute(database_url, ORDER)
    await execute(database_url, CONSUMED, result.payout_id)
    async with client(console(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        page = (await browser.get("/orders")).text
    assert f'by <a href="/payouts/{result.payout_id}">{event.transaction_id}</a>' in page
    assert '<a href="/users/bob">bob</a>' in page
