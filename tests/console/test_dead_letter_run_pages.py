"""Replays and purges started from the console run in the background on a real database, a real
worker and a real RabbitMQ namespace of the test's own: the form answers at once with the run's
page, which follows it to its end; one run at a time; the audit trail records each start, and
the console's shutdown stops a run between two messages."""

from __future__ import annotations

import asyncio
import contextlib
import re
from typing import TYPE_CHECKING

from payouts.actions.audit import Actor, ActorKind
from payouts.console.run_registry import RunRegistry
from tests.console.consoles import (
    OPERATOR,
    OPERATOR_PASSWORD,
    VIEWER,
    VIEWER_PASSWORD,
    client,
    console_settings,
    lifespan_of,
    signed_in_token,
)
from tests.console.test_access import audit_rows
from tests.console.test_dead_letter_pages import (
    REFRESH,
    RUN_PAGE,
    WALLET,
    console_on,
    dead_lettered,
    entries_of,
    run_ended,
)
from tests.integration.pipeline import worker_running
from tests.integration.test_dead_letters import payout
from tests.polling import wait_until

if TYPE_CHECKING:
    from collections.abc import AsyncIterator

    import httpx

    from payouts.console.run_registry import ConsoleRun
    from tests.integration.test_dead_letters import Scene

STARTED = "/dead-letters/replay"


async def started(browser: httpx.AsyncClient, token: str, **form: str) -> str:
    """Start a replay; the page of its run, where the form sent the browser."""
    answer = await browser.post(STARTED, data={"csrf_token": token, **form})
    assert answer.status_code == 303, answer.text
    location = answer.headers["location"]
    assert RUN_PAGE.fullmatch(location), location
    return location


async def under_way(browser: httpx.AsyncClient, run_page: str, done: int) -> httpx.Response:
    """The run's page once it shows at least `done` messages replayed, the run not ended."""
    pages: list[httpx.Response] = []

    async def reached() -> bool:
        pages.append(await browser.get(run_page))
        found = re.search(r"(\d+) of \d+ replayed", pages[-1].text)
        return bool(found and int(found.group(1)) >= done)

    await wait_until(reached, f"{done} replayed at {run_page}")
    assert REFRESH in pages[-1].text, "the run ended before the test could watch it"
    return pages[-1]


@contextlib.asynccontextmanager
async def held_for(scene: Scene, count: int) -> AsyncIterator[None]:
    """`count` payouts held for want of a wallet, dead-lettered, their wallets then created
    (without crediting them): a replay credits each."""
    events = [payout(f"user-{n}", 1, create_account=False) for n in range(count)]
    async with worker_running(scene.settings()):
        await dead_lettered(scene, events)
        for n in range(count):
            await scene.fetchval(WALLET, f"user-{n}")
        yield


@contextlib.asynccontextmanager
async def operator_replaying(
    scene: Scene, count: int, rate: str
) -> AsyncIterator[tuple[httpx.AsyncClient, str, str]]:
    """An operator's browser, its CSRF token, and the page of the replay of `count` held payouts
    it started at `rate` messages a second, for the whole queue."""
    async with held_for(scene, count), client(console_on(scene)) as browser:
        token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
        yield browser, token, await started(browser, token, scope="all", rate=rate)


async def test_a_replay_answers_at_once_with_its_run_page_which_follows_it_to_its_end(
    scene: Scene,
) -> None:
    async with operator_replaying(scene, 4, "2") as (browser, token, run_page):
        watched = await under_way(browser, run_page, 1)
        assert "dlq.replay --all: under way" in watched.text
        assert "started by olga" in watched.text.lower()
        assert "Stop after the current message" in watched.text
        listed = await browser.get("/dead-letters")
        assert f'A run is under way: <a href="{run_page}">dlq.replay --all</a>' in listed.text
        second = await browser.post(STARTED, data={"csrf_token": token, "scope": "all"})
        assert second.status_code == 409
        assert f"Follow it at {run_page}" in second.text

        ended = await run_ended(browser, run_page)
        assert ended.status_code == 200
        assert "4 of 4 replayed" in ended.text
    assert await scene.depth(scene.topology.dead_letter_queue) == 0
    rows = await audit_rows(scene.database_url)
    (start,) = entries_of(rows, "dlq.replay.start")
    refused, end = entries_of(rows, "dlq.replay")
    run_id = run_page.rsplit("/", 1)[1]
    assert (start["actor"], start["target"], start["result"]) == ("olga", "--all", "ok")
    assert start["detail"] == {"run": run_id, "force": False, "dry_run": False, "per_second": 2}
    assert (refused["result"], refused["detail"]) == (
        "refused",
        {"reason": "another run is under way"},
    )
    assert (end["result"], end["detail"]["replayed"], end["detail"]["run"]) == ("ok", 4, run_id)
    assert rows.index(start) < rows.index(end)


async def test_a_viewer_sees_a_run_page_but_cannot_stop_the_run(scene: Scene) -> None:
    app = console_on(scene)
    async with held_for(scene, 3), client(app) as operator, client(app) as viewer:
        token = await signed_in_token(operator, OPERATOR, OPERATOR_PASSWORD)
        run_page = await started(operator, token, scope="all", rate="2")
        viewer_token = await signed_in_token(viewer, VIEWER, VIEWER_PASSWORD)

        seen = await under_way(viewer, run_page, 1)
        assert "dlq.replay --all: under way" in seen.text
        assert "Stop after the current message" not in seen.text
        refused = await viewer.post(f"{run_page}/stop", data={"csrf_token": viewer_token})
        assert refused.status_code == 403
        assert "3 of 3 replayed" in (await run_ended(viewer, run_page)).text
    assert entries_of(await audit_rows(scene.database_url), "dlq.stop")[0]["result"] == "refused"


async def test_an_operator_stops_a_run_and_what_it_did_not_reach_stays_in_the_queue(
    scene: Scene,
) -> None:
    async with operator_replaying(scene, 5, "1") as (browser, token, run_page):
        await under_way(browser, run_page, 1)

        stopping = await browser.post(f"{run_page}/stop", data={"csrf_token": token})
        assert (stopping.status_code, stopping.headers["location"]) == (303, run_page)
        ended = await run_ended(browser, run_page)
        assert ended.status_code == 502
        assert "interrupted; the messages not done stay in the queue" in ended.text
        counted = re.search(r"(\d) of 5 replayed", ended.text)
        assert counted, ended.text
        replayed = int(counted.group(1))
    assert replayed < 5
    assert await scene.depth(scene.topology.dead_letter_queue) == 5 - replayed
    rows = await audit_rows(scene.database_url)
    (stop,) = entries_of(rows, "dlq.stop")
    (end,) = entries_of(rows, "dlq.replay")
    assert (stop["actor"], stop["target"], stop["result"]) == ("olga", "dlq.replay --all", "ok")
    assert (end["result"], end["detail"]["replayed"]) == ("failed", replayed)


async def test_the_consoles_shutdown_stops_a_run_which_records_how_far_it_got(
    scene: Scene,
) -> None:
    app = console_on(scene)
    async with held_for(scene, 5):
        async with lifespan_of(app), client(app) as browser:
            token = await signed_in_token(browser, OPERATOR, OPERATOR_PASSWORD)
            run_page = await started(browser, token, scope="all", rate="1")
            await under_way(browser, run_page, 1)
        left = await scene.depth(scene.topology.dead_letter_queue)
    rows = await audit_rows(scene.database_url)
    (end,) = entries_of(rows, "dlq.replay")
    assert end["result"] == "failed"
    assert end["detail"]["stopped"] == "interrupted; the messages not done stay in the queue"
    assert 0 < left == 5 - end["detail"]["replayed"]


async def test_a_run_that_outlives_the_shutdowns_grace_is_cancelled_its_start_recorded(
    database_url: str,
) -> None:
    """What a console killed mid-run leaves: the start's entry, and no end's."""
    runs = RunRegistry()
    actor = Actor(OPERATOR, ActorKind.CONSOLE, "127.0.0.1")
    forever: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    async def deaf_to_stop(_: ConsoleRun) -> None:
        await forever

    run = await runs.start(
        console_settings(database_url), actor, "dlq.replay", "--all", {}, deaf_to_stop
    )
    await runs.stop_all(grace_seconds=0.1)
    assert run.task is not None
    assert run.task.cancelled()
    rows = await audit_rows(database_url)
    assert [(row["action"], row["detail"]) for row in rows] == [
        ("dlq.replay.start", {"run": run.id})
    ]
