"""The worker's garbage collector: start-up frozen, young collections rarer. In a process of its
own, so that the test run keeps CPython's defaults."""

from __future__ import annotations

import subprocess
import sys

from workers.garbage import YOUNG_THRESHOLD

PROBE = """
import gc
from workers import garbage
defaults = gc.get_threshold()
garbage.tune()
print(gc.get_freeze_count(), *gc.get_threshold(), *defaults[1:])
"""


def test_tune_freezes_start_up_and_keeps_the_older_generations_thresholds() -> None:
    out = subprocess.run(
        [sys.executable, "-c", PROBE], capture_output=True, text=True, check=True
    ).stdout.split()
    frozen, young, middle, old, default_middle, default_old = map(int, out)
    assert frozen > 0
    assert young == YOUNG_THRESHOLD
    assert (middle, old) == (default_middle, default_old)
