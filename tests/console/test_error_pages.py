"""The console's own page for an address without a page (404) and a method a page does not take
(405): its menu for a signed-in operator, nothing of the console for a stranger, the security
headers on both."""

from __future__ import annotations

from payouts.console.headers import SECURITY_HEADERS
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    client,
    console_app,
    signed_in_token,
)

MENU = '<a href="/dead-letters">Dead letters</a>'
NO_PAGE = "There is no page at this address."


async def test_an_address_without_a_page_answers_404_with_the_menu_and_what_to_do(
    database_url: str,
) -> None:
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        for path in ("/payouts/abc", "/payouts/-1", "/no-such-page", "/static/nothing.css"):
            answer = await browser.get(path)
            assert answer.status_code == 404, path
            assert answer.headers["content-type"].startswith("text/html"), path
            assert "<h1>Not Found</h1>" in answer.text, path
            assert f"{NO_PAGE} Pick one from the menu above." in answer.text, path
            assert MENU in answer.text, path
            for name, value in SECURITY_HEADERS.items():
                assert answer.headers.get(name) == value, (path, name)


async def test_a_stranger_at_any_address_without_a_page_learns_nothing(database_url: str) -> None:
    async with client(console_app(database_url)) as browser:
        answers = [await browser.get(path) for path in ("/payouts/abc", "/no-such-page")]
    for answer in answers:
        assert answer.status_code == 404
        assert NO_PAGE in answer.text
        assert "<nav>" not in answer.text
        assert 'action="/logout"' not in answer.text
        for name, value in SECURITY_HEADERS.items():
            assert answer.headers.get(name) == value, name
    # A route that exists but did not match reads as an address that never did.
    assert answers[0].text == answers[1].text


async def test_a_method_a_page_does_not_take_answers_405_with_the_menu_and_what_to_do(
    database_url: str,
) -> None:
    async with client(console_app(database_url)) as browser:
        await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        logout = await browser.get("/logout")
        search = await browser.post("/payouts")
    assert logout.status_code == 405
    assert logout.headers["allow"] == "POST"
    assert "<h1>Method Not Allowed</h1>" in logout.text
    assert "does not answer a GET: it takes POST;" in logout.text
    assert "Log out, for one, is a button" in logout.text
    assert MENU in logout.text
    assert search.status_code == 405
    assert "does not answer a POST: it takes GET, HEAD; open it from a link" in search.text
    for name, value in SECURITY_HEADERS.items():
        assert logout.headers.get(name) == value, name
