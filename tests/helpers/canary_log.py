"""A real prediction log written by two colours, for the canary analysis's tests
(test_canary_analysis, test_fleet_analysis)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np


@contextmanager
def two_colours(tmp_path: Path) -> Iterator[tuple[Path, object, object]]:
    """(path, blue's log, green's log) of one new SQLite log; both closed on leaving."""
    from faultwatch.serve.predlog import open_log

    path = tmp_path / "p.sqlite"
    blue, green = open_log(path, colour="blue"), open_log(path, colour="green")
    try:
        yield path, blue, green
    finally:
        blue.close()
        green.close()


def answers(
    log, n: int, fault_share: float = 0.3, latency_ms: float = 5.0,
    model: str | None = None, first: int = 0,
) -> None:  # fmt: skip
    """`n` live answers of the colour `log` writes as (of group `model`, when given), the
    first `fault_share` of them faults, each taking `latency_ms`."""
    from faultwatch.serve.predlog import InputSummary, LoggedPrediction

    summary = InputSummary.of(np.arange(10.0))
    faults = round(n * fault_share)
    log.append(
        [
            LoggedPrediction(
                "predict", f"{model or ''}-v", summary, 0.9 if i < faults else 0.1,
                "fault" if i < faults else "healthy", i < faults, 0.5, latency_ms, 1,
                prediction_id=f"{log.colour}{model or ''}{first + i:05d}".ljust(32, "0"),
                model=model,
            )
            for i in range(n)
        ]
    )  # fmt: skip
