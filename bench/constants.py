"""The numbers both the harness and its report state: how the load is offered, and when a soak
counts as held."""

from __future__ import annotations

__all__ = [
    "ABANDON_BEHIND_SECONDS",
    "ANSWER_WAIT_SECONDS",
    "CONFIRM_WAIT_SECONDS",
    "CONNECTIONS",
    "MAX_CONNECTIONS",
    "SOAK_FRACTIONS",
    "WAITS_FOR_OUTCOME",
]

CONNECTIONS = 32  # concurrent requests from the load generator, and publishes for the ceiling
# The soak at the highest rate a step sustained: at these fractions of it in turn, until one
# holds for the whole soak. Each fraction gets its attempt (the 00:45 run of 2026-12-07 ended
# its two soaks' budget on two attempts that failed late, at 477 s and 411 s of 600, and never
# tried the third): what bounds `--soak-seconds 600` at about 52 minutes.
SOAK_FRACTIONS = (1.0, 0.9, 0.8)
# A soak attempt is given up once its worker is this far behind (the payout it settled last was
# received that long ago): fifteen times what a step may end behind.
ABANDON_BEHIND_SECONDS = 30
# The protocols that hold each request until the worker's outcome comes back (specs 001 and
# 004): their connections cap their rate at connections / answer time (Little's law), as a
# provider's would. Each of their steady runs gets enough connections for every request to wait
# ANSWER_WAIT_SECONDS (twice the answer p99 target), within CONNECTIONS and MAX_CONNECTIONS.
WAITS_FOR_OUTCOME = ("aigame_payout", "wallet_billing")
ANSWER_WAIT_SECONDS = 0.2
# The query protocols (000, 003) answer once the broker confirmed the event. A paced run still
# needs a connection free when each request is due: with a fixed 32, a few slow confirms leave
# the generator behind the pace for good (replay.lua never makes up a missed send), so a steady
# run measured wrk's connections, not the pipeline (2,700/s offered: 2,403/s achieved with 32,
# 2,632/s with 128, the pipeline caught up within 0.03 s both times). Each of their steady runs
# gets enough for every request to wait CONFIRM_WAIT_SECONDS (half the p99 target), as a
# provider sending that many callbacks would open.
CONFIRM_WAIT_SECONDS = 0.05
MAX_CONNECTIONS = 1024
