"""The EDA's shortcut check: a single trivial property that separates the fault class is flagged,
in the function and in the real 01_eda.ipynb with its scraps."""

from __future__ import annotations

import json

import nbformat
import numpy as np
import pandas as pd
import pytest
import yaml
from helpers.cli import run

from faultwatch import eda


def signals(fault_length: int | None = None, fault_offset: float = 0.0, seed: int = 0):
    """200 healthy and 20 fault noisy sines. By default fault and healthy lengths and levels
    come from one distribution; `fault_length` makes every fault signal that long (healthy ones
    100-1300 samples, never within 20 of it), `fault_offset` shifts the fault level."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(220):
        fault = i >= 200
        if fault and fault_length:
            n = fault_length
        elif fault_length:
            n = int(rng.choice([*range(100, fault_length - 20), *range(fault_length + 21, 1300)]))
        else:
            n = int(rng.integers(100, 1300))
        v = np.sin(np.arange(n) / rng.uniform(3, 9)) + rng.normal(0, 0.3, n)
        rows.append({"y": int(fault), "values": v + (fault_offset if fault else 0.0)})
    return pd.DataFrame(rows)


def test_a_length_shortcut_is_flagged_even_inside_the_healthy_range():
    scores = eda.shortcut_scores(signals(fault_length=200), threshold=0.95)
    assert scores.index[0] == "length" and scores.loc["length", "separation"] == 1.0
    assert scores.loc["length", "fault_side"] == "near the fault median"
    summary = eda.shortcut_summary(scores)
    assert "length" in summary["flagged"] and summary["max_property"] == "length"
    assert not {"mean", "std", "min", "max", "range", "rms"} & set(summary["flagged"])
    assert eda.shortcut_warning(scores, 0.95).startswith("WARNING: length")


def test_no_shortcut_no_flag():
    scores = eda.shortcut_scores(signals(), threshold=0.95)
    summary = eda.shortcut_summary(scores)
    assert summary["flagged"] == [] and summary["max_auc"] < 0.7
    assert eda.shortcut_warning(scores, 0.95).startswith("No single trivial property")


def test_a_level_shortcut_is_flagged_and_the_threshold_is_the_param():
    strong = eda.shortcut_scores(signals(fault_offset=3.0), threshold=0.95)
    assert strong.loc["mean", "flagged"] and strong.loc["mean", "fault_side"] == "higher in fault"
    assert not strong.loc["length", "flagged"]
    weak = signals(fault_offset=0.03)  # the mean separates with a ROC-AUC of about 0.91
    assert eda.shortcut_summary(eda.shortcut_scores(weak, threshold=0.95))["flagged"] == []
    assert eda.shortcut_summary(eda.shortcut_scores(weak, threshold=0.9))["flagged"] == ["mean"]


@pytest.mark.slow
def test_eda_notebook_shows_and_glues_the_shortcut_and_the_gap_counts(project):
    """Tiny data whose fault signals are all 100 samples long (healthy 48-80), two with a gap,
    prepared with data.missing: interpolate: eda.json carries both, compactly."""
    rng = np.random.default_rng(1)
    lines = []
    for i in range(52):
        fault = i >= 40
        n = 100 if fault else int(rng.integers(48, 81))
        v = [f"{x:.4f}" for x in np.sin(np.arange(n) / 4) + rng.normal(0, 0.2, n)]
        if i in (3, 45):
            v[10] = "NaN"
        lines.append("\t".join(["fault" if fault else "pump", *v]))
    (project / "data/raw/tiny.tsv").write_text("\n".join(lines) + "\n")
    p = yaml.safe_load((project / "params.yaml").read_text())
    p["data"]["missing"] = "interpolate"
    (project / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["faultwatch", "prepare"], project)
    run(["faultwatch", "nb", "run", "notebooks/01_eda.ipynb", "--no-html"], project)
    m = json.loads((project / "reports/metrics/eda.json").read_text())
    assert m["missing"] == {
        "signals_interpolated": 2,
        "samples_filled": 2,
        "samples_trimmed": 0,
        "signals_dropped": 0,
    }
    assert m["shortcut"]["max_property"] == "length" and m["shortcut"]["max_auc"] == 1.0
    assert "length" in m["shortcut"]["flagged"]
    assert set(m["shortcut"]) == {"flagged", "max_auc", "max_property"}  # compact, no table
    nb = nbformat.read(project / "reports/notebooks/01_eda.ipynb", 4)
    text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
    assert "WARNING: length" in text
