"""The console in a real browser (headless Chromium) against the real console, ingress and worker
processes: logging in and out, what a viewer may not do, a held payout released by creating the
account, a dead letter replayed, an order cancelled, a form with a wrong CSRF token, and every
main page rendered without a Content Security Policy violation. With
PAYOUTS_CONSOLE_SCREENSHOTS=DIR, that last test also saves each page as DIR/NAME.png
(docs/console/ holds the ones docs/console.md shows)."""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import pytest
from playwright.async_api import expect

from tests.e2e.console_browser import (
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    Console,
    headless_chromium,
    log_in,
    start_console,
)
from tests.e2e.live_prometheus import live_prometheus
from tests.e2e.stack import OFFERWALL_KEY, RETRY_TIERS, Stack, free_port
from tests.polling import wait_until
from tests.signing import offerwall_query

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    from playwright.async_api import Browser, Page

    from tests.services import Services

pytestmark = pytest.mark.e2e

SCREENSHOTS_ENV = "PAYOUTS_CONSOLE_SCREENSHOTS"


@pytest.fixture(scope="module")
async def console(
    services: Services, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Console]:
    """One stack for the module's tests (each uses users of its own): ingress, worker, a
    Prometheus scraping the ingress, and the console reading it."""
    tmp_path = tmp_path_factory.mktemp("console-browser")
    stack = Stack(
        tmp_path=tmp_path,
        database_url=await services.new_database(),
        broker_url=services.rabbitmq_url,
        namespace=services.new_namespace(RETRY_TIERS),
    )
    targets = {
        "payouts-ingress": [f"127.0.0.1:{stack.port}"],
        "payouts-worker": [f"127.0.0.1:{free_port()}"],  # the page reads the ingress's only
        "rabbitmq": [f"127.0.0.1:{free_port()}"],
    }
    try:
        await stack.start_ingress()
        await stack.start_worker()
        async with live_prometheus(tmp_path / "prometheus", targets) as prometheus:
            yield await start_console(stack, str(prometheus.client.base_url))
    finally:
        stack.stop_all()
        await services.release_namespace(stack.namespace)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with headless_chromium() as chromium:
        yield chromium


@pytest.fixture
async def page(browser: Browser, console: Console) -> AsyncIterator[Page]:
    """A tab of a browser context of its own: no cookie of another test."""
    context = await browser.new_context(base_url=console.base_url)
    try:
        yield await context.new_page()
    finally:
        await context.close()


async def send_signed_callback(stack: Stack, route: str, user: str, amount: int) -> str:
    """A spec-000 callback signed as the provider does; its transaction id."""
    transaction = f"tx-{uuid.uuid4().hex[:12]}"
    params = {
        "user_id": user,
        "amount": str(amount),
        "trans_id": transaction,
        "send_time": "1763800000",
    }
    async with httpx.AsyncClient(base_url=stack.base_url) as provider:
        answer = await provider.get(f"{route}?{offerwall_query(params, OFFERWALL_KEY)}")
    assert answer.status_code == 200, answer.text
    return transaction


async def wait_for_status(stack: Stack, transaction: str, status: str) -> None:
    async def recorded() -> bool:
        found = await stack.fetchval(
            "SELECT status FROM payouts WHERE transaction_id = $1", transaction
        )
        return bool(found == status)

    await wait_until(recorded, f"payout {transaction} {status}")


async def balance(stack: Stack, user: str) -> Decimal | None:
    found: Decimal | None = await stack.fetchval(
        "SELECT balance FROM accounts WHERE kind = 'wallet' AND owner = $1 AND currency = 'COIN'",
        user,
    )
    return found


@dataclass(frozen=True)
class ViewerSees:
    """A page a viewer opens (`path`), showing `text` in what `where` selects, without the
    `button` of its action."""

    path: str
    where: str
    text: str
    button: str


async def posted_by_a_viewer(
    browser: Browser, console: Console, sees: ViewerSees, action: str, form: dict[str, str]
) -> int:
    """The status of `action`'s form posted by a viewer, in a browser context of their own,
    after the page they act from was checked to hide its button: a viewer who posts it anyway
    uses a real CSRF token, the logout form's."""
    viewer = await browser.new_context(base_url=console.base_url)
    try:
        seeing = await viewer.new_page()
        await log_in(seeing, VIEWER, VIEWER_PASSWORD)
        await seeing.goto(sees.path)
        await expect(seeing.locator(sees.where)).to_contain_text(sees.text)
        await expect(seeing.get_by_role("button", name=sees.button)).to_have_count(0)
        token = await seeing.locator('form.logout input[name="csrf_token"]').get_attribute("value")
        assert token
        answer = await seeing.request.post(
            action, form={"csrf_token": token, **form}, max_redirects=0
        )
        return answer.status
    finally:
        await viewer.close()


async def test_an_operator_logs_in_and_sees_a_signed_callbacks_payout_recorded(
    console: Console, page: Page
) -> None:
    transaction = await send_signed_callback(
        console.stack, "/callbacks/offerwall", f"player-{uuid.uuid4().hex[:8]}", 250
    )
    await wait_for_status(console.stack, transaction, "credited")
    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await expect(page.get_by_role("heading", level=1)).to_have_text(f"Signed in as {OPERATOR}")
    await page.get_by_role("link", name="Providers").first.click()
    # The module's other tests may have sent some before: the count the database holds.
    credited = await console.stack.fetchval(
        "SELECT count(*) FROM payouts WHERE provider_instance = 'offerwall' AND status = 'credited'"
    )
    row = page.locator("#provider-offerwall table.recorded tr", has_text="credited")
    await expect(row.locator("td")).to_have_text(["credited", str(credited), str(credited)])
    await expect(page.locator("#provider-offerwall .last-seen")).to_contain_text("UTC")


async def test_support_finds_a_signed_callbacks_transaction_and_sees_the_balance(
    console: Console, page: Page
) -> None:
    """Where are my coins: the transaction searched, opened, its books balanced, and the
    user's balance on their page, as a viewer (support staff) sees them."""
    user = f"asker-{uuid.uuid4().hex[:8]}"
    first = await send_signed_callback(console.stack, "/callbacks/offerwall", user, 120)
    second = await send_signed_callback(console.stack, "/callbacks/offerwall", user, 30)
    await wait_for_status(console.stack, first, "credited")
    await wait_for_status(console.stack, second, "credited")
    await log_in(page, VIEWER, VIEWER_PASSWORD)
    await page.get_by_role("link", name="Payouts", exact=True).first.click()
    await page.get_by_label("Transaction id").fill(first)
    await page.get_by_role("button", name="Search").click()
    found = page.locator("table.payouts tbody tr")
    await expect(found).to_have_count(1)
    await expect(found).to_contain_text("credited")
    await found.get_by_role("link", name=first).click()
    await expect(page.locator(".balanced")).to_contain_text("Balanced")
    await page.get_by_role("link", name=user).first.click()
    assert await balance(console.stack, user) == Decimal(150)
    wallet = page.locator("tr", has=page.locator("td", has_text="COIN")).first
    await expect(wallet.locator("td.amount")).to_have_text("150")


async def test_a_viewer_cannot_create_an_account_and_the_refusal_is_audited(
    console: Console, page: Page
) -> None:
    user = f"viewer-target-{uuid.uuid4().hex[:8]}"
    await log_in(page, VIEWER, VIEWER_PASSWORD)
    await page.goto("/accounts")
    # The form is not shown to a viewer; sent all the same (its token from the logout form),
    # it is refused.
    await expect(page.get_by_role("button", name="Create the account")).to_have_count(0)
    token = await page.locator('form.logout input[name="csrf_token"]').get_attribute("value")
    assert token
    answer = await page.request.post(
        "/accounts",
        form={"csrf_token": token, "user": user, "currency": "COIN"},
        max_redirects=0,
    )
    assert answer.status == 403
    assert "needs the operator role" in await answer.text()
    assert await balance(console.stack, user) is None
    await page.goto(f"/audit?actor={VIEWER}&result=refused")
    refused = page.locator("tbody tr", has_text="account.create")
    await expect(refused).to_have_count(1)
    await expect(refused).to_contain_text("role viewer is not operator")


async def test_a_held_payout_is_released_by_creating_the_account_in_the_browser(
    console: Console, page: Page
) -> None:
    user = f"newcomer-{uuid.uuid4().hex[:8]}"
    # offerwall-strict requires an existing account: the payout is held.
    transaction = await send_signed_callback(console.stack, "/callbacks/offerwall-strict", user, 70)
    await wait_for_status(console.stack, transaction, "held")
    assert await balance(console.stack, user) is None
    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await page.goto("/accounts")
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("Currency").fill("COIN")
    await page.get_by_role("button", name="Create the account").click()
    await expect(page.locator(".done")).to_contain_text(
        f"{user} COIN: wallet created; 1 held payout credited: offerwall-strict payout"
    )
    assert await balance(console.stack, user) == Decimal(70)
    await wait_for_status(console.stack, transaction, "credited")


async def test_a_dead_letter_is_replayed_by_an_operator_once_and_never_by_a_viewer(
    console: Console, browser: Browser, page: Page
) -> None:
    user = f"late-{uuid.uuid4().hex[:8]}"
    transaction = await send_signed_callback(console.stack, "/callbacks/offerwall-strict", user, 40)
    await wait_for_status(console.stack, transaction, "held")

    async def dead_lettered() -> bool:
        return bool(await dead_letter_of(console.stack, transaction))

    await wait_until(dead_lettered, f"payout {transaction} dead-lettered")
    dead_letter = await dead_letter_of(console.stack, transaction)
    assert dead_letter is not None
    # The fix, made without crediting what was held: the replay is what credits it.
    await console.stack.fetchval(
        "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', $1, 'COIN')", user
    )
    refused = await posted_by_a_viewer(
        browser,
        console,
        ViewerSees(f"/dead-letter?id={dead_letter}", "body", transaction, "Replay"),
        "/dead-letters/replay",
        {"id": dead_letter},
    )
    assert refused == 403
    assert await balance(console.stack, user) == Decimal(0)

    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await page.get_by_role("link", name="Dead letters").first.click()
    await page.get_by_role("link", name=dead_letter[:8]).click()
    await page.get_by_role("button", name="Replay").click()
    await expect(page.locator("body")).to_contain_text("1 of 1 replayed")
    await wait_for_status(console.stack, transaction, "credited")
    # Confirmed by the broker, the message left the dead-letter queue.
    await page.goto("/dead-letters")
    await expect(page.locator("body")).not_to_contain_text(dead_letter[:8])
    assert await balance(console.stack, user) == Decimal(40)
    entries = await console.stack.fetchval(
        "SELECT count(*) FROM ledger_entries JOIN payouts USING (payout_id)"
        " WHERE transaction_id = $1",
        transaction,
    )
    assert entries == 2  # the wallet's and the funding account's: credited once


async def dead_letter_of(stack: Stack, transaction: str) -> str | None:
    found: str | None = await stack.fetchval(
        "SELECT dead_letter_id::text FROM dead_letters WHERE transaction_id = $1", transaction
    )
    return found


async def test_a_form_with_a_wrong_csrf_token_is_refused(console: Console, page: Page) -> None:
    user = f"forged-{uuid.uuid4().hex[:8]}"
    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await page.goto("/accounts")
    form = page.locator('form[action="/accounts"]')
    await form.locator('input[name="csrf_token"]').evaluate("field => field.value = 'forged'")
    await page.get_by_label("User id").fill(user)
    await page.get_by_label("Currency").fill("COIN")
    async with page.expect_response(lambda r: r.request.method == "POST") as answered:
        await page.get_by_role("button", name="Create the account").click()
    assert (await answered.value).status == 403
    await expect(page.locator(".problem")).to_contain_text("did not come from this console")
    assert await balance(console.stack, user) is None


async def test_logging_out_sends_every_page_back_to_the_login(console: Console, page: Page) -> None:
    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await page.get_by_role("button", name="Log out").click()
    await page.wait_for_url("**/login")
    await page.goto("/audit")
    assert page.url == f"{console.base_url}/login?next=%2Faudit"
    await expect(page.get_by_role("heading", level=1)).to_have_text("Log in")


async def test_the_main_pages_render_without_a_content_security_policy_violation(
    console: Console, page: Page
) -> None:
    """Every page's own stylesheet loads under its policy (no inline style or script to be
    refused): the browser reports nothing. Saved as screenshots when asked to."""
    complaints: list[str] = []
    page.on("console", lambda message: complaints.append(message.text))
    page.on("pageerror", lambda error: complaints.append(str(error)))
    await send_signed_callback(console.stack, "/callbacks/offerwall", "player-shown", 250)
    directory = os.environ.get(SCREENSHOTS_ENV)
    await page.set_viewport_size({"width": 1280, "height": 800})

    async def shoot(name: str) -> None:
        # The stylesheet applied: the header's dark background, not the browser's default.
        header = page.locator("header")
        await expect(header).to_have_css("background-color", "rgb(29, 35, 48)")
        if directory:
            await page.screenshot(path=str(Path(directory) / f"{name}.png"), full_page=True)

    await page.goto("/login")
    await shoot("login")
    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await shoot("home")
    for name in ("payouts", "held", "dead-letters", "orders", "audit", "accounts", "providers"):
        answer = await page.goto(f"/{name}")
        assert answer is not None
        assert answer.status == 200
        await shoot(name)
    assert complaints == []


async def test_an_operator_cancels_a_pending_order_and_a_viewer_cannot(
    console: Console, browser: Browser, page: Page
) -> None:
    user = f"buyer-{uuid.uuid4().hex[:8]}"
    order_id = f"APP-{uuid.uuid4().hex[:8]}"
    registered = console.stack.run(
        "order", "register", "--provider", "billing", "--order-id", order_id,
        "--user", user, "--item", "gem_pack", "--amount", "500",
    )  # fmt: skip
    assert registered.returncode == 0, registered.stderr
    refused = await posted_by_a_viewer(
        browser,
        console,
        ViewerSees(f"/orders?user={user}", "tbody tr", order_id, "Cancel"),
        "/orders/cancel",
        {"provider": "billing", "order_id": order_id},
    )
    assert refused == 403
    assert await order_state(console.stack, order_id) == "pending"

    await log_in(page, OPERATOR, OPERATOR_PASSWORD)
    await page.get_by_role("link", name="Orders").first.click()
    await page.get_by_label("User").fill(user)
    await page.get_by_role("button", name="Filter").click()
    await page.locator("tbody tr", has_text=order_id).get_by_role("button", name="Cancel").click()
    await expect(page.locator(".done")).to_have_text(f"Order billing {order_id} cancelled.")
    assert await order_state(console.stack, order_id) == "cancelled"
    await page.goto("/audit?action=order.cancel")
    audited = page.locator("tbody tr", has_text=order_id)
    await expect(audited).to_have_count(2)
    await expect(audited.filter(has_text="refused")).to_contain_text(VIEWER)
    await expect(audited.filter(has_text="ok")).to_contain_text(OPERATOR)


async def order_state(stack: Stack, order_id: str) -> str | None:
    found: str | None = await stack.fetchval(
        "SELECT status FROM pending_orders WHERE order_id = $1", order_id
    )
    return found
