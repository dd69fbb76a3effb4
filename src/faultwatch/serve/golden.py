"""The golden set of a model, and the smoke test that holds a running server to it.

The register stage records, for every model it puts in the store, a few signals of the test
split (up to 4 faults, the rest healthy, up to 16 in all, the first by id: the same on every
run) and the model's answers on them, computed the way the service computes them
(`LoadedModel.predict_proba` on the raw values, the entry's threshold, the model's class
names). They are written as `golden.json` inside the store entry's folder, so they travel with
the model: {"model_tag", "ids", "signals", "probabilities", "labels", "threshold", "fault_rate"}
(the test split's share of faults: what `faultwatch deploy` compares live fault rates with).
A multichannel model's golden signals are lists of channels (channels first, in the model's
order), which is one of the forms its /predict_batch takes.

`smoke_test` sends the golden signals to a server's `/predict_batch` (role `smoke`, so that
analyses leave them out) and passes only if the server answers with the same model version,
every probability within `tolerance` of the recorded one and every label equal. A server that
cannot be reached, answers an error or answers something else fails the test with the reason;
it never raises. Tolerance: the server batches signals differently from the register stage,
and float32 convolutions give results that differ by ~1e-7 between batch shapes; 1e-4 is far
above that and far below any difference that matters at a threshold.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from faultwatch.errors import FaultwatchError
from faultwatch.paths import write_text_atomic
from faultwatch.serve.identity import REQUEST_ID_HEADER, ROLE_HEADER, new_id

if TYPE_CHECKING:
    import pandas as pd

    from faultwatch.model.io import LoadedModel

GOLDEN_FILE = "golden.json"
MAX_SIGNALS = 16
MAX_FAULTS = 4
FIX = "re-register: `dvc repro -f -s register`"


class GoldenError(FaultwatchError):
    """A model's golden set is missing or malformed, or cannot be chosen from the test split."""


@dataclass(frozen=True)
class Golden:
    model_tag: str
    ids: list[str]
    signals: list[list[float]] | list[list[list[float]]]  # multichannel: channels first
    probabilities: list[float]
    labels: list[str]
    threshold: float
    # the share of faults in the split the model was evaluated on (stratified: as in training),
    # the reference of the deployment's fault-rate check
    fault_rate: float | None = None

    @property
    def model_version(self) -> str:
        return self.model_tag.split(":", 1)[-1]

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def select_golden(
    test: pd.DataFrame, min_length: int = 2, max_length: int | None = None, where: str = "test"
) -> pd.DataFrame:
    """Up to MAX_FAULTS fault rows (y == 1), then healthy rows (y == 0) up to MAX_SIGNALS, each
    in order of `id`; only signals the service accepts (finite, length within the limits; of
    each channel for a multichannel split)."""
    import numpy as np
    import pandas as pd

    missing = [c for c in ("id", "y", "values") if c not in test.columns]
    if missing:
        raise GoldenError(f"{where}: no column {', '.join(missing)} (expected prepare's split)")

    def servable(values: Any) -> bool:
        x = np.asarray(values, dtype="float64")  # (samples,) or (channels, samples)
        n = x.shape[-1] if x.ndim else 0
        return (
            x.ndim in (1, 2) and min_length <= n <= (max_length or n) and bool(np.isfinite(x).all())
        )

    ok = test[test["values"].map(servable)].sort_values("id", kind="stable")
    faults = ok[ok["y"] == 1].head(MAX_FAULTS)
    healthy = ok[ok["y"] == 0].head(MAX_SIGNALS - len(faults))
    chosen = pd.concat([faults, healthy])
    if chosen.empty:
        raise GoldenError(
            f"{where}: no signal the service accepts (finite, {min_length} to "
            f"{max_length} samples) for the golden set"
        )
    return chosen


def compute_golden(
    model: LoadedModel,
    model_tag: str,
    threshold: float,
    ids: Sequence[str],
    signals: Sequence,
    fault_rate: float | None = None,
) -> Golden:
    """The model's answers on `signals`, as the service gives them."""
    import numpy as np

    raw = [np.asarray(s, dtype="float64") for s in signals]
    proba = np.asarray(model.predict_proba(raw), dtype="float64").tolist()
    if not all(math.isfinite(p) for p in proba):
        raise GoldenError(
            f"{model_tag}: the model gives a non-finite probability on its golden set"
        )
    healthy, fault = (str(c) for c in model.meta["class_names"])
    return Golden(
        model_tag=str(model_tag),
        ids=[str(i) for i in ids],
        signals=[s.tolist() for s in raw],
        probabilities=proba,
        labels=[fault if p >= threshold else healthy for p in proba],
        threshold=float(threshold),
        fault_rate=None if fault_rate is None else float(fault_rate),
    )


def write_golden(entry_path: Path | str, golden: Golden) -> Path:
    path = Path(entry_path) / GOLDEN_FILE
    write_text_atomic(path, json.dumps(golden.as_dict()) + "\n")
    return path


def load_golden(entry_path: Path | str) -> Golden:
    """The golden set in a store entry's folder; a missing or malformed file is a GoldenError
    that says how to make it again."""
    path = Path(entry_path) / GOLDEN_FILE
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise GoldenError(
            f"{path}: not found; the model's golden set (answers recorded at registration) is "
            f"written by the register stage: {FIX}"
        ) from None
    except (OSError, ValueError) as e:
        raise GoldenError(f"{path}: not valid JSON ({e}): {FIX}") from None
    try:
        golden = Golden(
            model_tag=_str(data, "model_tag"),
            ids=[str(i) for i in _list(data, "ids")],
            signals=[_floats(s) for s in _list(data, "signals")],
            probabilities=[float(p) for p in _list(data, "probabilities")],
            labels=[str(label) for label in _list(data, "labels")],
            threshold=float(data["threshold"]),
            fault_rate=None if data.get("fault_rate") is None else float(data["fault_rate"]),
        )
    except (KeyError, TypeError, ValueError) as e:
        raise GoldenError(f"{path}: malformed golden set ({e}): {FIX}") from None
    n = len(golden.signals)
    sizes = {len(golden.ids), len(golden.probabilities), len(golden.labels)}
    if n == 0 or sizes != {n}:
        raise GoldenError(
            f"{path}: malformed golden set: {n} signals, {len(golden.ids)} ids, "
            f"{len(golden.probabilities)} probabilities, {len(golden.labels)} labels "
            f"(expected the same number, at least 1): {FIX}"
        )
    if not all(math.isfinite(p) and 0 <= p <= 1 for p in golden.probabilities):
        raise GoldenError(f"{path}: malformed golden set: a probability outside [0, 1]: {FIX}")
    return golden


def _floats(signal: Any) -> list:
    """A golden signal's numbers as floats: a list of them, or a list of channels of them."""
    if not isinstance(signal, list):
        raise TypeError(f"a golden signal must be a list, got {type(signal).__name__}")
    if signal and isinstance(signal[0], list):
        return [[float(v) for v in channel] for channel in signal]
    return [float(v) for v in signal]


def _list(data: dict[str, Any], key: str) -> list:
    value = data[key]
    if not isinstance(value, list):
        raise TypeError(f"{key!r} must be a list, got {type(value).__name__}")
    return value


def _str(data: dict[str, Any], key: str) -> str:
    value = data[key]
    if not isinstance(value, str) or ":" not in value:
        raise TypeError(f"{key!r} must be a store tag name:version, got {value!r}")
    return value


@dataclass
class SmokeResult:
    passed: bool
    n: int  # golden signals sent
    max_abs_diff: float  # largest |probability - recorded|; nan when no answer was compared
    label_mismatches: int
    model_versions: list[str] = field(default_factory=list)  # as the server answered
    message: str = ""
    request_id: str = ""  # X-Request-ID of the smoke request, to find it in the prediction log

    def as_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["max_abs_diff"] = None if math.isnan(self.max_abs_diff) else self.max_abs_diff
        return d


def smoke_test(
    base_url: str,
    golden: Golden,
    tolerance: float = 1e-4,
    timeout_s: float = 30,
    model: str | None = None,
) -> SmokeResult:
    """POST the golden signals to `{base_url}/predict_batch` and compare the answers with the
    recorded ones; never raises for an HTTP problem (passed=False, the reason in `message`).
    `model`: the group a fleet bento should answer with (its `"model"`)."""
    import httpx

    n = len(golden.signals)
    request_id = f"smoke-{new_id()}"
    url = f"{base_url.rstrip('/')}/predict_batch"

    def failed(why: str, **found: Any) -> SmokeResult:
        values = {"max_abs_diff": math.nan, "label_mismatches": 0, "model_versions": [], **found}
        return SmokeResult(
            False, n, message=f"smoke test failed: {why}", request_id=request_id, **values
        )

    try:
        r = httpx.post(
            url,
            json={"signals": golden.signals, **({} if model is None else {"model": model})},
            headers={ROLE_HEADER: "smoke", REQUEST_ID_HEADER: request_id},
            timeout=timeout_s,
        )
    except httpx.HTTPError as e:
        return failed(f"POST {url}: {type(e).__name__}: {e}")
    if r.status_code != 200:
        return failed(f"POST {url}: HTTP {r.status_code}: {r.text[:300]}")
    try:
        answers = r.json()["predictions"]
        got = [(float(a["probability"]), str(a["label"]), str(a["model_version"])) for a in answers]
    except (ValueError, KeyError, TypeError) as e:
        return failed(f"POST {url}: not a predict_batch answer ({e!r}): {r.text[:300]}")
    versions = sorted({v for _, _, v in got})
    if len(got) != n:
        return failed(f"{len(got)} answers to {n} golden signals", model_versions=versions)
    diffs = [abs(p - want) for (p, _, _), want in zip(got, golden.probabilities, strict=True)]
    max_diff = max(diffs)
    mismatches = sum(label != want for (_, label, _), want in zip(got, golden.labels, strict=True))
    reasons = []
    if versions != [golden.model_version]:
        reasons.append(
            f"the server answers with model version {', '.join(versions)}, the golden set is "
            f"{golden.model_tag}'s"
        )
    if not max_diff <= tolerance:  # a NaN fails too
        worst = diffs.index(max_diff)
        reasons.append(
            f"max |probability - recorded| {max_diff:.3g} > tolerance {tolerance:g} "
            f"(signal {golden.ids[worst]}: {got[worst][0]!r} against {golden.probabilities[worst]!r})"
        )
    if mismatches:
        reasons.append(f"{mismatches} of {n} labels differ from the recorded ones")
    found = {"max_abs_diff": max_diff, "label_mismatches": mismatches, "model_versions": versions}
    if reasons:
        return failed("; ".join(reasons), **found)
    return SmokeResult(
        True,
        n,
        message=(
            f"smoke test passed: {n} golden signals of {golden.model_tag}, max |probability - "
            f"recorded| {max_diff:.3g} <= {tolerance:g}, all labels equal"
        ),
        request_id=request_id,
        **found,
    )
