"""The highest steady rate the pipeline sustains: rising steps, then halving the gap."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Awaitable, Callable

__all__ = ["FRACTIONS", "REFINEMENTS", "Step", "highest_sustained", "lowest_not_sustained"]

# Of the ceiling: a twentieth apart at first, where this machine's pipeline tops out.
FRACTIONS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
REFINEMENTS = 2  # halvings of the gap between the highest rate sustained and the lowest not

Step = dict[str, Any]


async def highest_sustained(
    run: Callable[[float], Awaitable[Step]], ceiling: float
) -> tuple[float, list[Step]]:
    """The highest achieved rate among the sustained steps `run` reported, and every step run.

    A step that fails is run once more: on a shared 2-core machine a single stall (a checkpoint,
    a neighbour) can fail a rate the pipeline otherwise sustains. Both runs are kept.
    """
    steps: list[Step] = []
    sustained, passed, failed = 0.0, 0.0, 0.0
    for fraction in FRACTIONS:
        rate = ceiling * fraction
        step = await run(rate)
        if not step["sustained"]:
            steps.append(step)
            step = await run(rate)
        steps.append(step)
        if not step["sustained"]:
            failed = rate
            break
        sustained, passed = step["achieved_per_second"], rate
    for _ in range(REFINEMENTS if passed and failed else 0):
        middle = (passed + failed) / 2
        step = await run(middle)
        steps.append(step)
        if step["sustained"]:
            sustained, passed = max(sustained, step["achieved_per_second"]), middle
        else:
            failed = middle
    return sustained, steps


def lowest_not_sustained(steps: list[Step]) -> Step | None:
    """The step that shows what stopped the pipeline: the lowest rate that no run sustained. A
    rate that failed once and held on its second run is not it: a stall, not the limit."""
    held = {step["target_per_second"] for step in steps if step["sustained"]}
    failed = [s for s in steps if not s["sustained"] and s["target_per_second"] not in held]
    return min(failed, key=lambda step: step["target_per_second"]) if failed else None
