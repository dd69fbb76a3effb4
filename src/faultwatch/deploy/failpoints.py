"""Fault injection for the tests: FAULTWATCH_FAILPOINT=NAME[:N] kills this process with
SIGKILL, as a crash would, the N-th time (default: the first) it reaches the point NAME.

The deploy commands' points: `router`, after each command that changes the router (a weight, an
address, a server's state, the shadow), and `saved`, after the state file is written; the
retrain loop's: each step's function name (`step_stage`, `step_canary` ...), before it runs. A test
kills `deploy switch` at `router:1`, `router:2` ... `saved:1` in turn and checks that the next
command finds the router and the state apart, says so, and sets the router to the state
(faultwatch.deploy.reconcile). Unset (always, outside the tests), a point costs a dict lookup.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

from faultwatch import settings

_reached: Counter[str] = Counter()


def reach(name: str) -> None:
    """Die here if FAULTWATCH_FAILPOINT names this point and this is its N-th time."""
    wanted = settings.get("FAULTWATCH_FAILPOINT")
    if not wanted:
        return
    point, _, nth = wanted.partition(":")
    if point != name:
        return
    _reached[name] += 1
    if _reached[name] == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)
