"""The page a dead-letter run ends with lists a bounded number of ids of each kind, and says how
many more there are and where to see them."""

from __future__ import annotations

from pathlib import Path

import jinja2

from payouts.actions.dead_letters import SelectionRun
from payouts.console import rendering
from payouts.console.dead_letter_run_pages import LISTED_PER_KIND

TEMPLATES = jinja2.Environment(
    loader=jinja2.FileSystemLoader(Path(rendering.__file__).parent / "templates"),
    autoescape=True,
)


def ended_page(run: SelectionRun) -> str:
    context = {"verb": "replayed", "run": run, "listed": LISTED_PER_KIND, "operator": None}
    return TEMPLATES.get_template("dead_letter_run.html").render(context)


def test_a_dry_run_of_many_lists_the_first_ids_and_counts_the_rest() -> None:
    ids = [f"dead-letter-{number:05}" for number in range(LISTED_PER_KIND + 7)]
    page = ended_page(SelectionRun("replayed", selected=len(ids), dry_run=True, ids=ids))
    assert f"Of {len(ids)} selected, {len(ids)} would be replayed and 0 skipped." in page
    assert ids[LISTED_PER_KIND - 1] in page
    assert ids[LISTED_PER_KIND] not in page
    assert "… and 7 more, not listed here" in page


def test_skipped_and_failed_messages_are_listed_up_to_the_same_bound() -> None:
    skipped = [(f"skipped-{number:05}", "credited since") for number in range(LISTED_PER_KIND + 1)]
    failed = [("failed-00001", "broker gone")]
    page = ended_page(
        SelectionRun("replayed", selected=len(skipped) + 1, skipped=skipped, failures=failed)
    )
    assert page.count("credited since") == LISTED_PER_KIND
    assert "… and 1 more, not listed here" in page
    assert "failed-0" in page
    assert page.count("more, not listed here") == 1


def test_a_short_run_lists_every_id_and_no_remainder() -> None:
    ids = ["only-one"]
    page = ended_page(SelectionRun("replayed", selected=1, dry_run=True, ids=ids))
    assert "only-one" in page
    assert "not listed here" not in page
