"""What the database recorded of each provider instance's callbacks in the last hour and the last
day: the payouts by the outcome their first delivery was answered with, the conflicting copies
and reused signatures, the last one received. Refused callbacks never reach the database: the
ingress's metrics count those."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from payouts.actions.connections import with_connection
from payouts.actions.inspection import FIRST_OUTCOME

if TYPE_CHECKING:
    from datetime import datetime

    from schema.settings import Settings
    from workers.database import Connection

__all__ = ["RecordedActivity", "recorded_activity"]

# Both tables, by the time the ingress received the callback; a payout and its conflicting
# copies are distinct rows, so their counts add up to the callbacks recorded. A payout counts
# under the outcome its first delivery was answered with, not its status now: one held and
# credited later was answered "held" (and is counted among those `released`).
SELECT_RECORDED = f"""
SELECT provider_instance, outcome,
       count(*) FILTER (WHERE received_at >= now() - interval '1 hour') AS last_hour,
       count(*) AS last_day,
       count(*) FILTER (WHERE released) AS released,
       max(received_at) AS last_received
FROM (
    SELECT provider_instance, {FIRST_OUTCOME} AS outcome, received_at,
           credited_at > recorded_at AS released
    FROM payouts
    WHERE received_at >= now() - interval '1 day'
    UNION ALL
    SELECT provider_instance, outcome, received_at, false FROM payout_conflicts
    WHERE received_at >= now() - interval '1 day'
) AS recorded
GROUP BY provider_instance, outcome
ORDER BY provider_instance, outcome
"""  # noqa: S608 - composed of constant SQL only; every value is a bound parameter


@dataclass
class RecordedActivity:
    """One instance's recorded callbacks: the outcome their first delivery was answered with ->
    (last hour, last day); how many of the last day's held payouts were credited since; and
    the newest."""

    by_outcome: dict[str, tuple[int, int]] = field(default_factory=dict)
    released: int = 0
    last_received: datetime | None = None


async def recorded_activity(settings: Settings) -> dict[str, RecordedActivity]:
    """Each provider instance with callbacks recorded in the last day, by name."""

    async def read(conn: Connection) -> dict[str, RecordedActivity]:
        found: defaultdict[str, RecordedActivity] = defaultdict(RecordedActivity)
        for row in await conn.fetch(SELECT_RECORDED):
            activity = found[row["provider_instance"]]
            activity.by_outcome[row["outcome"]] = (row["last_hour"], row["last_day"])
            activity.released += row["released"]
            newest = row["last_received"]
            if activity.last_received is None or newest > activity.last_received:
                activity.last_received = newest
        return dict(found)

    return await with_connection(settings, read)
