"""The drift scores of Evidently's `wasserstein` and `psi` tests, computed with NumPy alone.

Evidently's import costs 4-8 s on this machine, more than the monitor's whole computation on
100 000 rows; its HTML pages are the only part of it the monitor needs. So the scores are
computed here, by the definitions Evidently documents and uses (evidently 0.7, the functions
its DataDriftPreset registers for a numerical column), and Evidently is imported only when a
page is written (faultwatch.monitor.drift.save_drift_report). tests/test_monitor.py keeps these
scores equal to those in Evidently's own report, on data that takes every branch below.

- `wasserstein`: the first Wasserstein distance between the two samples' empirical
  distributions (the area between their CDFs), divided by the reference's standard deviation
  (population, ddof 0; at least 0.001): a mean shift of d standard deviations scores about d.
- `psi`: the population stability index, sum((r - c) * ln(r / c)) over bins. With more than 20
  distinct reference values the bins are NumPy's `sturges` edges of both samples together;
  otherwise each distinct value is a bin. An empty bin's share becomes a small positive number:
  1e-4, or a millionth of the side's smallest non-empty share when that is 1e-4 or less.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

FEW_VALUES = 20  # at most this many distinct reference values: psi bins by value
EMPTY_BIN = 1e-4


def wasserstein_1(u: np.ndarray, v: np.ndarray) -> float:
    """The first Wasserstein distance of two 1-d samples: the integral of |F_u - F_v|."""
    u, v = np.sort(u), np.sort(v)
    every = np.sort(np.concatenate([u, v]), kind="mergesort")
    widths = np.diff(every)
    cdf_u = np.searchsorted(u, every[:-1], side="right") / len(u)
    cdf_v = np.searchsorted(v, every[:-1], side="right") / len(v)
    return float(np.sum(np.abs(cdf_u - cdf_v) * widths))


def wasserstein_norm(reference: np.ndarray, current: np.ndarray) -> float:
    """The Wasserstein distance in units of the reference's standard deviation."""
    spread = max(float(np.std(reference)), 0.001)
    return wasserstein_1(reference, current) / spread


def _fill_empty(shares: np.ndarray) -> np.ndarray:
    smallest = float(shares[shares != 0].min())
    fill = smallest / 10**6 if smallest <= EMPTY_BIN else EMPTY_BIN
    return np.where(shares == 0, fill, shares)


def binned_shares(reference: np.ndarray, current: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each side's share of its values per bin (empty bins filled), as `psi` bins them."""
    if len(np.unique(reference)) > FEW_VALUES:
        edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
        ref = np.histogram(reference, edges)[0] / len(reference)
        cur = np.histogram(current, edges)[0] / len(current)
    else:
        values = np.union1d(reference, current)
        ref = np.array([np.count_nonzero(reference == x) for x in values]) / len(reference)
        cur = np.array([np.count_nonzero(current == x) for x in values]) / len(current)
    return _fill_empty(ref), _fill_empty(cur)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """The population stability index of `current` against `reference`."""
    ref, cur = binned_shares(reference, current)
    return float(np.sum((ref - cur) * np.log(ref / cur)))


STATTESTS: dict[str, Callable[[np.ndarray, np.ndarray], float]] = {
    "wasserstein": wasserstein_norm,
    "psi": psi,
}


def drift_score(stattest: str, reference: np.ndarray, current: np.ndarray) -> float:
    """The score of `stattest` (a key of STATTESTS) of `current` against `reference`: both
    finite float arrays of at least two values."""
    try:
        test = STATTESTS[stattest]
    except KeyError:
        known = ", ".join(STATTESTS)
        raise ValueError(f"unknown stattest {stattest!r}: expected one of {known}") from None
    return test(np.asarray(reference, dtype="float64"), np.asarray(current, dtype="float64"))
