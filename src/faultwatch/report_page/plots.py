"""The plots dvc.yaml declares (`plots:`), drawn with matplotlib as PNG data URIs.

`dvc plots show` renders Vega-Lite specs whose chart library loads from a CDN; the page must
open offline, so it draws the same definitions itself: the top-level `plots:` (a file with
its x / y fields, or a named plot whose `y` maps files to fields) and a stage's own `plots:`.
Templates: `confusion` / `confusion_normalized` as a count matrix, `scatter` as points, every
other template as lines. Without `x`, the row number is the x axis (DVC's `step`); without `y`,
the file's last field.
"""

from __future__ import annotations

import base64
import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faultwatch.errors import FaultwatchError


@dataclass(frozen=True)
class PlotSpec:
    title: str
    template: str
    x: dict[str, str | None]  # file -> x field (None: the row number)
    y: dict[str, list[str]]  # file -> y fields ([]: the last field)
    x_label: str | None = None
    y_label: str | None = None


@dataclass
class Drawn:
    spec: PlotSpec
    data_uri: str | None = None  # None: a file is missing
    missing: list[str] = field(default_factory=list)


def _fields(value: Any) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, list) else [str(value)]


def _spec(name: str, props: dict[str, Any] | None) -> PlotSpec:
    props = props or {}
    y = props.get("y")
    if isinstance(y, dict):  # a named plot: y maps each file to its field(s)
        ys = {str(f): _fields(v) for f, v in y.items()}
    else:
        ys = {name: _fields(y)}
    x = props.get("x")
    xs = {str(f): str(v) for f, v in x.items()} if isinstance(x, dict) else {}
    default_x = None if isinstance(x, dict) or x is None else str(x)
    return PlotSpec(
        title=str(props.get("title") or name),
        template=str(props.get("template") or "linear"),
        x={f: xs.get(f, default_x) for f in ys},
        y=ys,
        x_label=props.get("x_label") or (default_x if default_x else None),
        y_label=props.get("y_label"),
    )


def declared_plots(spec: dict[str, Any]) -> list[PlotSpec]:
    """Every plot definition of dvc.yaml: the top-level list first, then the stages' own."""
    entries: list[tuple[str, Any]] = []
    for item in spec.get("plots") or []:
        if isinstance(item, dict):
            entries += list(item.items())
        else:
            entries.append((str(item), None))
    for stage in (spec.get("stages") or {}).values():
        for item in (stage or {}).get("plots") or []:
            entries += list(item.items()) if isinstance(item, dict) else [(str(item), None)]
    return [_spec(name, props if isinstance(props, dict) else None) for name, props in entries]


def read_rows(root: Path, path: str) -> list[dict[str, Any]]:
    """A plot file's rows: JSON (a list of objects, or an object holding one), CSV, TSV, YAML."""
    text = (root / path).read_text()
    try:
        if path.endswith((".csv", ".tsv")):
            rows: Any = list(
                csv.DictReader(io.StringIO(text), delimiter="\t" if path.endswith(".tsv") else ",")
            )
        elif path.endswith(".json"):
            rows = json.loads(text)
        else:
            rows = yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError, csv.Error) as e:
        raise FaultwatchError(f"{path}: cannot read the plot's data: {e}") from None
    if isinstance(rows, dict):
        lists = [v for v in rows.values() if isinstance(v, list)]
        rows = lists[0] if len(lists) == 1 else None
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise FaultwatchError(f"{path}: expected a list of records (one per point) to plot")
    return rows


def _column(rows: list[dict[str, Any]], key: str, path: str, numeric: bool = True) -> list[Any]:
    try:
        values = [r[key] for r in rows]
        return [float(v) for v in values] if numeric else [str(v) for v in values]
    except KeyError:
        raise FaultwatchError(f"{path}: no field {key!r} (dvc.yaml plots names it)") from None
    except (TypeError, ValueError) as e:
        raise FaultwatchError(f"{path}: field {key!r} is not numeric: {e}") from None


def _confusion(ax, rows: list[dict[str, Any]], spec: PlotSpec, path: str) -> None:
    x_key = spec.x[path] or "predicted"
    y_key = (spec.y[path] or ["actual"])[0]
    xs, ys = _column(rows, x_key, path, False), _column(rows, y_key, path, False)
    labels = sorted(set(xs) | set(ys))
    counts = [
        [sum(1 for a, b in zip(ys, xs, strict=True) if a == r and b == c) for c in labels]
        for r in labels
    ]
    shown = counts
    if spec.template == "confusion_normalized":
        shown = [[c / max(sum(row), 1) for c in row] for row in counts]
    ax.imshow(shown, cmap="Blues")
    ax.set_xticks(range(len(labels)), labels)
    ax.set_yticks(range(len(labels)), labels)
    peak = max(max(r) for r in shown) if shown else 0
    for i, row in enumerate(shown):
        for j, v in enumerate(row):
            text = f"{v:.2f}" if isinstance(v, float) else str(v)
            ax.text(
                j, i, text, ha="center", va="center", color="white" if v > peak / 2 else "black"
            )
    ax.set_xlabel(x_key)
    ax.set_ylabel(y_key)


def draw(root: Path, spec: PlotSpec) -> Drawn:
    """One plot as a PNG data URI; a missing data file is reported, not drawn."""
    missing = [f for f in spec.y if not (root / f).is_file()]
    if missing:
        return Drawn(spec, None, missing)
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    try:
        for path, fields in spec.y.items():
            rows = read_rows(root, path)
            if spec.template.startswith("confusion"):
                _confusion(ax, rows, spec, path)
                continue
            x_key = spec.x[path]
            keys = fields or ([k for k in rows[0] if k != x_key][-1:] if rows else [])
            xs = _column(rows, x_key, path) if x_key else list(range(len(rows)))
            for key in keys:
                label = Path(path).stem if len(spec.y) > 1 else key
                ys = _column(rows, key, path)
                if spec.template == "scatter":
                    ax.scatter(xs, ys, s=14, label=label)
                else:
                    ax.plot(xs, ys, marker="o", markersize=3, label=label)
            ax.set_xlabel(spec.x_label or x_key or "step")
            ax.set_ylabel(
                spec.y_label or ", ".join(sorted({k for f in spec.y.values() for k in f} or keys))
            )
            ax.grid(alpha=0.3)
            if all(float(v).is_integer() for v in xs):
                from matplotlib.ticker import MaxNLocator

                ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        if len(ax.get_legend_handles_labels()[0]) > 1:
            ax.legend(fontsize=8)
        ax.set_title(spec.title, fontsize=10)
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png")
    finally:
        plt.close(fig)
    return Drawn(spec, "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode())
