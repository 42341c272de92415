"""The Dead letters and Held payouts pages on a real database, a real worker and a real RabbitMQ
namespace of the test's own: payouts held for a missing wallet are dead-lettered, then released
by "create the account" or replayed, each credited exactly once, every action audited."""

from __future__ import annotations

import asyncio
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from payouts.console.app import create_app
from payouts.console.dead_letter_pages import BROWSED_PER_VIEW
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    SESSION_SECRET,
    client,
    console_settings,
    signed_in_token,
)
from tests.console.test_access import audit_rows
from tests.e2e.stack import free_port
from tests.factories import payout_event
from tests.integration.pipeline import worker_running
from tests.integration.test_dead_letters import Scene, payout, wait_for_depth
from tests.polling import wait_until

if TYPE_CHECKING:
    import httpx

    from payouts.console.headers import SecurityHeaders
    from schema.events import PayoutEvent

WALLET = "INSERT INTO accounts (kind, owner, currency) VALUES ('wallet', $1, 'COIN')"
STATUS = "SELECT status FROM payouts WHERE transaction_id = $1"
DEAD_LETTER_OF = "SELECT dead_letter_id FROM dead_letters WHERE transaction_id = $1"
DEAD_LETTER_STATUS = "SELECT status FROM dead_letters WHERE transaction_id = $1"
PAYOUT_OF = "SELECT payout_id FROM payouts WHERE transaction_id = $1"
RUN_PAGE = re.compile(r"/dead-letters/runs/[0-9a-f]+")
REFRESH = '<meta http-equiv="refresh"'
CREDITS = """
SELECT count(*) FROM ledger_entries JOIN payouts USING (payout_id) WHERE transaction_id = $1
"""


def console_on(
    scene: Scene, dead_letters_browsed: int = BROWSED_PER_VIEW, **broker: Any
) -> SecurityHeaders:
    """The console of `scene`'s database and broker namespace (its broker settings changed by
    `broker`), a view of its Dead letters list browsing at most `dead_letters_browsed`."""
    settings = scene.settings()
    settings = settings.model_copy(
        update={
            "console": console_settings(scene.database_url).console,
            "broker": settings.broker.model_copy(update=broker),
        }
    )
    return create_app(settings, SESSION_SECRET, dead_letters_browsed=dead_letters_browsed)


async def dead_lettered(scene: Scene, events: list[PayoutEvent]) -> dict[str, str]:
    """Publish `events` (held: no wallet, none created) and wait until each is dead-lettered;
    their dead-letter ids by transaction id."""
    await scene.publish(events)
    await wait_for_depth(scene, scene.topology.dead_letter_queue, len(events), "dead-lettered")
    return {
        event.transaction_id: await scene.fetchval(DEAD_LETTER_OF, event.transaction_id)
        for event in events
    }


async def credited(scene: Scene, transaction: str) -> None:
    async def done() -> bool:
        return bool(await scene.fetchval(STATUS, transaction) == "credited")

    await wait_until(done, f"{transaction} credited")


async def acted(browser: httpx.AsyncClient, token: str, path: str, **form: str) -> httpx.Response:
    """Post an action's form; for a run it started, the page that run ended with."""
    answer = await browser.post(path, data={"csrf_token": token, **form})
    if answer.status_code != 303:
        return answer
    assert RUN_PAGE.fullmatch(answer.headers["location"]), answer.headers["location"]
    return await run_ended(browser, answer.headers["location"])


async def run_ended(browser: httpx.AsyncClient, run_page: str) -> httpx.Response:
    """The run page at `run_page` once the run ended: it no longer reloads itself."""
    pages: list[httpx.Response] = []

    async def ended() -> bool:
        pages.append(await browser.get(run_page))
        return REFRESH not in pages[-1].text

    await wait_until(ended, f"the run of {run_page} ended")
    return pages[-1]


def transaction_link(transaction_id: str) -> str:
    """The link to what is recorded under `transaction_id` of provider instance `ow`."""
    query = f"provider_instance=ow&amp;transaction_id={transaction_id}"
    return f'<a href="/payouts/transaction?{query}">{transaction_id}</a>'


def entries_of(rows: list[dict[str, Any]], action: str) -> list[dict[str, Any]]:
    return [row for row in rows if row["action"] == action]


async def test_a_held_payout_is_released_by_create_the_account_and_its_dead_letter_then_skipped(
    scene: Scene,
) -> None:
    kim, lou = payout("kim", 7, create_account=False), payout("lou", 3, create_account=False)
    async with worker_running(scene.settings()), client(console_on(scene)) as browser:
        ids = await dead_lettered(scene, [kim, lou])
        kim_payout, lou_payout = [
            await scene.fetchval(PAYOUT_OF, event.transaction_id) for event in (kim, lou)
        ]
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        held = await browser.get("/held")
        assert held.text.count("account_policy is require_existing") == 2
        assert f'<a href="/payouts/{lou_payout}">{lou.transaction_id}</a>' in held.text
        assert '<a href="/users/lou">lou</a>' in held.text
        assert held.text.count('method="post" action="/held"') == 2
        only_kim = await browser.get("/held?user=kim")
        assert (kim.transaction_id in only_kim.text, lou.transaction_id in only_kim.text) == (
            True,
            False,
        )

        released = await acted(browser, token, "/held", user="kim", currency="COIN")
        assert released.status_code == 200
        assert "kim COIN:\nwallet created;\n1 held payout credited:\n" in released.text
        assert f'<a href="/payouts/{kim_payout}">ow payout {kim_payout}</a>, 7.' in released.text
        # The list shown with the result holds only what is still held.
        assert kim.transaction_id not in released.text
        assert lou.transaction_id in released.text
        assert await scene.fetchval(STATUS, kim.transaction_id) == "credited"

        listed = await browser.get("/dead-letters")
        assert "2 messages in the queue" in listed.text
        row_of_kim = re.search(rf"{ids[kim.transaction_id][:8]}.*?</tr>", listed.text, re.S)
        assert row_of_kim, listed.text
        for shown_in_row in ("yes, ", "business", "held_unknown_account", "<td>ow</td>"):
            assert shown_in_row in row_of_kim.group(0)
        # Its transaction links to what is recorded under it: kim's payout.
        kim_link = transaction_link(kim.transaction_id)
        assert kim_link in row_of_kim.group(0)
        kim_page = await browser.get(kim_link.split('"')[1].replace("&amp;", "&"))
        assert f"<h1>Payout {kim_payout}</h1>" in kim_page.text
        shown = await browser.get(f"/dead-letter?id={ids[lou.transaction_id]}")
        assert shown.status_code == 200
        assert f'"transaction_id": "{lou.transaction_id}"' in shown.text
        assert transaction_link(lou.transaction_id) in shown.text
        # And the payout's page links back to its dead letter.
        lou_page = await browser.get(f"/payouts/{lou_payout}")
        assert f'<a href="/dead-letter?id={ids[lou.transaction_id]}">' in lou_page.text
        assert shown.text.count('name="csrf_token"') == 3  # replay it, purge it, log out
        missing = await browser.get("/dead-letter?id=0123456789abcdef")
        assert missing.status_code == 404

        # Replaying kim's dead letter would be a duplicate: it is skipped, saying why.
        skipped = await acted(browser, token, "/dead-letters/replay", id=ids[kim.transaction_id])
        assert "0 of 1 replayed" in skipped.text
        reason = re.search(r"its payout was already credited at ([^(]+) \(", skipped.text)
        assert reason, skipped.text
        # Its time as the console writes times, not in ISO 8601 with microseconds.
        assert re.fullmatch(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC", reason.group(1))
    assert await scene.fetchval(CREDITS, kim.transaction_id) == 2  # one credit, two entries
    assert await scene.fetchval(DEAD_LETTER_STATUS, kim.transaction_id) == "dead_lettered"
    (created,) = entries_of(await audit_rows(scene.database_url), "account.create")
    assert (created["actor"], created["target"], created["result"]) == ("olga", "kim COIN", "ok")
    assert created["detail"] == {"created": True, "credited_held_payouts": 1}


async def test_a_dry_run_changes_nothing_and_a_replay_credits_once_even_replayed_twice(
    scene: Scene,
) -> None:
    ann, bea = payout("ann", 4, create_account=False), payout("bea", 6, create_account=False)
    async with worker_running(scene.settings()), client(console_on(scene)) as browser:
        ids = await dead_lettered(scene, [ann, bea])
        for user in ("ann", "bea"):  # the fix, made without crediting what was held
            await scene.fetchval(WALLET, user)
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)

        dry = await acted(browser, token, "/dead-letters/replay", scope="all", dry_run="yes")
        assert "Dry run: nothing was replayed" in dry.text
        assert "Of 2 selected, 2 would be replayed and 0 skipped." in dry.text
        assert await scene.depth(scene.topology.dead_letter_queue) == 2
        assert await scene.fetchval(DEAD_LETTER_STATUS, ann.transaction_id) == "dead_lettered"
        assert await scene.fetchval(STATUS, ann.transaction_id) == "held"

        replayed = await acted(
            browser, token, "/dead-letters/replay", id=ids[ann.transaction_id], rate="5"
        )
        assert "1 of 1 replayed" in replayed.text
        await credited(scene, ann.transaction_id)
        again = await acted(browser, token, "/dead-letters/replay", id=ids[ann.transaction_id])
        assert "0 of 0 replayed" in again.text
        await wait_for_depth(scene, scene.topology.work_queue, 0, "the replay consumed")
    assert await scene.fetchval(CREDITS, ann.transaction_id) == 2  # credited once
    assert await scene.fetchval("SELECT balance FROM accounts WHERE owner = 'ann'") == Decimal(4)
    assert await scene.fetchval(STATUS, bea.transaction_id) == "held"
    assert await scene.depth(scene.topology.dead_letter_queue) == 1
    replays = entries_of(await audit_rows(scene.database_url), "dlq.replay")
    assert [(e["actor"], e["target"], e["result"]) for e in replays] == [
        ("olga", "--all", "ok"),
        ("olga", ids[ann.transaction_id], "ok"),
        ("olga", ids[ann.transaction_id], "ok"),
    ]
    assert [(e["detail"]["dry_run"], e["detail"]["replayed"]) for e in replays] == [
        (True, 0),
        (False, 1),
        (False, 0),
    ]
    assert replays[1]["detail"]["per_second"] == 5


async def test_a_filtered_replay_touches_only_the_filtered_messages(scene: Scene) -> None:
    ours = payout("cal", 2, create_account=False)
    theirs = payout_event(
        user_id="cal", amount=Decimal(9), create_account=False, provider_instance="ow-eu"
    )
    async with worker_running(scene.settings()), client(console_on(scene)) as browser:
        await dead_lettered(scene, [ours, theirs])
        await scene.fetchval(WALLET, "cal")
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        listed = await browser.get("/dead-letters?provider=ow-eu")
        assert "1 message matches" in listed.text
        assert "Replay the 1 matching message</h2>" in listed.text
        assert theirs.transaction_id in listed.text
        assert ours.transaction_id not in listed.text

        replayed = await acted(browser, token, "/dead-letters/replay", provider="ow-eu")
        assert "1 of 1 replayed" in replayed.text
        await credited(scene, theirs.transaction_id)
    assert await scene.fetchval(STATUS, ours.transaction_id) == "held"
    assert await scene.fetchval(DEAD_LETTER_STATUS, ours.transaction_id) == "dead_lettered"
    assert await scene.depth(scene.topology.dead_letter_queue) == 1
    (replay,) = entries_of(await audit_rows(scene.database_url), "dlq.replay")
    assert (replay["target"], replay["result"]) == ("--provider ow-eu", "ok")


async def test_a_purge_needs_the_count_typed_and_a_wrong_one_purges_nothing(scene: Scene) -> None:
    events = [payout("dan", 1, create_account=False) for _ in range(3)]
    async with worker_running(scene.settings()), client(console_on(scene)) as browser:
        await dead_lettered(scene, events)
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        page = await browser.get("/dead-letters?reason=business")
        assert "Type the number of messages the selection holds, 3, to confirm." in page.text

        for typed in ("2", "purge", ""):
            wrong = await acted(
                browser, token, "/dead-letters/purge", reason="business", confirmation=typed
            )
            assert wrong.status_code == 400
            assert "Nothing was purged: the selection holds 3 messages" in wrong.text
        assert await scene.depth(scene.topology.dead_letter_queue) == 3

        purged = await acted(
            browser, token, "/dead-letters/purge", reason="business", confirmation="3"
        )
        assert "3 of 3 purged" in purged.text
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    assert await scene.fetchval("SELECT count(*) FROM dead_letters WHERE status = 'purged'") == 3
    purges = entries_of(await audit_rows(scene.database_url), "dlq.purge")
    assert [(e["target"], e["result"], e["detail"]["purged"]) for e in purges] == [
        ("--reason business", "failed", 0)
    ] * 3 + [("--reason business", "ok", 3)]
    assert purges[0]["detail"]["reason"] == "the count was not confirmed; nothing was done"


async def test_a_queue_larger_than_a_view_is_listed_in_part_and_acted_on_whole(
    scene: Scene,
) -> None:
    """A view browses only the first messages and says so; a filtered replay and a purge still
    act on every matching message of the queue, the purge confirmed by the count it answers."""
    first = [payout("eve", 1, create_account=False) for _ in range(4)]
    later = [
        payout_event(
            user_id="fay", amount=Decimal(2), create_account=False, provider_instance="ow-eu"
        )
        for _ in range(2)
    ]
    async with worker_running(scene.settings()), client(console_on(scene, 3)) as browser:
        await dead_lettered(scene, first)
        # Dead-lettered after the first four: past what a view browses.
        await scene.publish(later)
        await wait_for_depth(scene, scene.topology.dead_letter_queue, 6, "all dead-lettered")
        await scene.fetchval(WALLET, "fay")
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)

        listed = await browser.get("/dead-letters")
        assert "3 messages among the first 3 browsed, showing 1-3; the queue holds 6 ready." in (
            listed.text
        )
        assert "Replay the whole queue (6 ready)" in listed.text
        assert "Type the number of messages the selection holds" not in listed.text
        assert ">Next<" not in listed.text
        filtered = await browser.get("/dead-letters?provider=ow-eu")
        assert (
            "0 messages matching among the first 3 browsed; the queue holds 6 ready."
            in filtered.text
        )
        assert "Replay every match in the whole queue" in filtered.text

        replayed = await acted(browser, token, "/dead-letters/replay", provider="ow-eu")
        assert "2 of 2 replayed" in replayed.text
        for event in later:
            await credited(scene, event.transaction_id)

        counted = await acted(browser, token, "/dead-letters/purge", scope="all")
        assert counted.status_code == 400
        assert "the selection holds 4 messages, and you typed nothing. Type 4" in counted.text
        assert '<input type="hidden" name="scope" value="all">' in counted.text
        assert await scene.depth(scene.topology.dead_letter_queue) == 4
        purged = await acted(browser, token, "/dead-letters/purge", scope="all", confirmation="4")
        assert "4 of 4 purged" in purged.text
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    purges = entries_of(await audit_rows(scene.database_url), "dlq.purge")
    assert [(e["target"], e["result"], e["detail"]["purged"]) for e in purges] == [
        ("--all", "failed", 0),
        ("--all", "ok", 4),
    ]


async def test_a_replay_while_rabbitmq_is_away_is_answered_503_and_audited_as_failed(
    scene: Scene,
) -> None:
    away = console_on(scene, urls=(f"amqp://guest:guest@127.0.0.1:{free_port()}/",))
    async with client(away) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        answer = await acted(browser, token, "/dead-letters/replay", scope="all")
    assert answer.status_code == 503
    assert "cannot reach RabbitMQ" in answer.text
    rows = await audit_rows(scene.database_url)
    (start,) = entries_of(rows, "dlq.replay.start")
    (replay,) = entries_of(rows, "dlq.replay")
    assert (replay["target"], replay["result"]) == ("--all", "failed")
    assert replay["detail"]["error"].startswith("BrokerUnavailable")
    assert replay["detail"]["run"] == start["detail"]["run"]


async def test_viewers_at_once_each_see_the_whole_queue_and_a_run_meanwhile_selects_all_of_it(
    scene: Scene,
) -> None:
    """A browsing session hides the messages it fetched from every other one until it ends:
    the console's sessions take turns, so none sees a part of the queue for the whole."""
    events = [payout(f"viewer-{n}", 1, create_account=False) for n in range(3)]
    async with worker_running(scene.settings()), client(console_on(scene)) as browser:
        await dead_lettered(scene, events)
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        views = [browser.get("/dead-letters") for _ in range(8)]
        dry_run = acted(browser, token, "/dead-letters/replay", scope="all", dry_run="yes")
        *listed, selected = await asyncio.gather(*views, dry_run)
    assert [view.text.count("3 messages in the queue") for view in listed] == [1] * 8
    assert "Of 3 selected, 3 would be replayed and 0 skipped." in selected.text
