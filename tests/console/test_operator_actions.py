"""The console's actions on dead letters, held payouts and orders, through its real application
on a real database and a real RabbitMQ namespace of the test's own: who may act, the CSRF token
of each form, and the audit entry of each action, failed ones included."""

from __future__ import annotations

import pytest

from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    client,
    console_app,
    signed_in_token,
)
from tests.console.test_access import audit_rows
from tests.services import fetch_value

# Every action of these pages, with a form that would act if it were allowed.
ACTIONS = [
    ("/dead-letters/replay", "dlq.replay", {"scope": "all", "dry_run": "yes"}),
    ("/dead-letters/purge", "dlq.purge", {"scope": "all", "confirmation": "0"}),
    ("/held", "account.create", {"user": "player-1", "currency": "COIN"}),
    ("/orders/cancel", "order.cancel", {"provider": "ow", "order_id": "order-1"}),
]

# What makes an action fail once it started: Postgres aborting its transaction.
REFUSING_FUNCTION = """
CREATE FUNCTION refuse_change() RETURNS trigger LANGUAGE plpgsql AS
$$ BEGIN RAISE EXCEPTION '%', TG_ARGV[0]; END $$
"""
REFUSING_TRIGGER = """
CREATE TRIGGER refuse BEFORE INSERT OR UPDATE ON {table}
FOR EACH ROW EXECUTE FUNCTION refuse_change({message})
"""
HELD_PAYOUT = """
INSERT INTO payouts (provider_instance, transaction_id, event_id, protocol, user_id, amount,
                     currency, signature, create_account, status, outcome, answer_code,
                     raw_request, received_at)
VALUES ('ow', 'tx-1', gen_random_uuid(), 'offerwall_md5', 'player-2', 4, 'COIN', 'sig', false,
        'held', 'held_unknown_account', '200', '{}', now())
"""
PENDING_ORDER = """
INSERT INTO pending_orders (provider_instance, order_id, user_id, amount)
VALUES ('ow', $1, 'player-1', 5)
"""


async def refuse_changes(database_url: str, table: str, message: str) -> None:
    """From now on Postgres refuses every insert or update of `table`, saying `message`."""
    await fetch_value(database_url, REFUSING_FUNCTION)
    trigger = REFUSING_TRIGGER.format(table=table, message=quote_literal(message))
    await fetch_value(database_url, trigger)


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


@pytest.mark.parametrize(("path", "action", "form"), ACTIONS)
async def test_a_viewer_is_refused_each_action_and_the_refusal_is_audited(
    database_url: str, path: str, action: str, form: dict[str, str]
) -> None:
    await fetch_value(database_url, PENDING_ORDER, "order-1")
    async with client(console_app(database_url), address="192.0.2.9") as browser:
        token = await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        refused = await browser.post(path, data={"csrf_token": token, **form})
    assert refused.status_code == 403
    assert "needs the operator role" in refused.text
    assert (await audit_rows(database_url))[-1] == {
        "actor": "vic", "actor_kind": "console", "action": action, "target": path,
        "source": "192.0.2.9", "result": "refused",
        # What the viewer tried, without the CSRF token.
        "detail": {"reason": "role viewer is not operator", "form": form},
    }  # fmt: skip
    assert await fetch_value(database_url, "SELECT status FROM pending_orders") == "pending"
    assert await fetch_value(database_url, "SELECT count(*) FROM accounts") == 0


@pytest.mark.parametrize(("path", "action", "form"), ACTIONS)
async def test_each_action_form_without_its_csrf_token_is_refused_and_audited(
    database_url: str, path: str, action: str, form: dict[str, str]
) -> None:
    await fetch_value(database_url, PENDING_ORDER, "order-1")
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        missing = await browser.post(path, data=form)
        forged = await browser.post(path, data={"csrf_token": "forged", **form})
    assert (missing.status_code, forged.status_code) == (403, 403)
    assert "did not come from this console" in missing.text
    refusals = (await audit_rows(database_url))[-2:]
    assert [(r["actor"], r["action"], r["target"], r["result"]) for r in refusals] == [
        ("olga", "csrf", path, "refused")
    ] * 2
    assert await fetch_value(database_url, "SELECT status FROM pending_orders") == "pending"
    assert await fetch_value(database_url, "SELECT count(*) FROM accounts") == 0


async def test_the_viewer_sees_the_pages_without_their_forms(database_url: str) -> None:
    await fetch_value(database_url, PENDING_ORDER, "order-1")
    await fetch_value(database_url, HELD_PAYOUT)
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, VIEWER, VIEWER_PASSWORD)
        held = await browser.get("/held")
        orders = await browser.get("/orders")
    assert "player-2" in held.text
    assert "account_policy is require_existing" in held.text
    assert 'method="post" action="/held"' not in held.text
    assert "order-1" in orders.text
    assert 'method="post" action="/orders/cancel"' not in orders.text
    for page in (held, orders):
        assert "<script" not in page.text
        assert "style=" not in page.text


async def test_a_create_the_account_that_rolled_back_is_audited_as_failed(
    database_url: str,
) -> None:
    await fetch_value(database_url, HELD_PAYOUT)
    await refuse_changes(database_url, "accounts", "no new wallets during the audit")
    async with client(console_app(database_url)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answer = await browser.post(
            "/held", data={"csrf_token": token, "user": "player-2", "currency": "COIN"}
        )
    assert answer.status_code == 500
    assert "account.create failed and changed nothing" in answer.text
    assert await fetch_value(database_url, "SELECT status FROM payouts") == "held"
    entry = (await audit_rows(database_url))[-1]
    assert (entry["actor"], entry["action"], entry["target"], entry["result"]) == (
        "olga", "account.create", "player-2 COIN", "failed",
    )  # fmt: skip
    assert entry["detail"] == {"error": "RaiseError: no new wallets during the audit"}
