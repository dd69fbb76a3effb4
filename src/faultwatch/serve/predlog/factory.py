"""`open_log`: the one place that picks the prediction log's backend from its target."""

from __future__ import annotations

from pathlib import Path

from faultwatch.serve.predlog.log import PredictionLog
from faultwatch.serve.predlog.postgres import PostgresPredictionLog
from faultwatch.serve.predlog.sqlite import SqlitePredictionLog
from faultwatch.serve.predlog.target import default_target, is_postgres_url


def open_log(
    target: Path | str | None = None,
    synchronous: str | None = None,
    timeout_s: float | None = None,
    colour: str = "",
) -> PredictionLog:
    """The log `target` names: a path (SQLite) or a postgresql:// URL (PostgreSQL); None:
    $FAULTWATCH_PREDICTION_LOG, else reports/serving/predictions.sqlite. Tables are created
    or migrated; PredictionLogError if the log cannot be reached."""
    target = target or default_target()
    backend = PostgresPredictionLog if is_postgres_url(target) else SqlitePredictionLog
    return backend(target, synchronous=synchronous, timeout_s=timeout_s, colour=colour)
