"""The monitoring section of the page: the latest report's verdict, reasons and figures per
model version, with links to its pages. A multichannel model's drifted features are grouped by
channel in one cell ("z: rms, crest"); its reasons name them as monitor.json does (`rms[z]`)."""

from __future__ import annotations

from html import escape
from typing import Any

from faultwatch.monitor.channels import describe_columns
from faultwatch.report_page.markup import badge, e, link, table


def _versions_table(figures: dict[str, Any]) -> str:
    """One row per model version: predictions, fault rate, latency, F1, drift."""
    rows = []
    for version, fig in figures.items():
        out, perf = fig.get("output_drift") or {}, fig.get("performance") or {}
        lat, real = fig.get("latency_ms") or {}, perf.get("realised") or {}
        rows.append(
            [
                escape(version),
                e(fig.get("n")),
                f"{e(out.get('fault_rate'))} (train {e(out.get('train_fault_rate'))})",
                " / ".join(
                    "—" if v is None else f"{v:.1f}" for v in (lat.get("p50"), lat.get("p99"))
                ),
                f"{e(real.get('f1'))} ({e(real.get('n'))} labelled)",
                e((perf.get("estimated") or {}).get("f1")),
                escape(
                    describe_columns((fig.get("input_drift") or {}).get("drifted") or []) or "—"
                ),
                e((fig.get("embedding_drift") or {}).get("verdict")),
            ]
        )
    return table(
        [
            "version",
            "predictions",
            "fault rate",
            "latency p50 / p99 ms",
            "F1 realised",
            "F1 estimated",
            "input drift",
            "embedding drift",
        ],
        rows,
        {1},
    )


def monitor_section(mon: dict[str, Any] | None) -> str:
    """The latest monitoring report (None: not run yet), its reasons and its pages."""
    if mon is None:
        return (
            '<section id="monitoring"><h2>Monitoring</h2><p class="note">No monitoring report yet: '
            "<code>faultwatch monitor --last 24h</code> compares the prediction log with the "
            "training data and refreshes this page.</p></section>"
        )
    rep = mon["report"]
    win = rep.get("window") or {}
    needed = rep.get("retrain_needed")
    verdict = badge("retrain needed", "bad") if needed else badge("no retrain needed", "good")
    reasons = table(
        ["kind", "feature", "score", "threshold", "model version"],
        [
            [
                e(r.get("kind")),
                e(r.get("feature")),
                e(r.get("score")),
                e(r.get("threshold")),
                e(r.get("model_version")),
            ]
            for r in rep.get("reasons") or []
        ],
        {2, 3},
    )
    versions = _versions_table(rep.get("versions") or {})
    links = [link(f"monitor/{p}", f"reports/monitor/{p}") for p in mon["pages"]]
    if mon["notebook"]:
        links.insert(0, link("notebooks/05_monitor.html", "05_monitor notebook"))
    malformed = (rep.get("malformed") or {}).get("n", 0)
    return (
        f'<section id="monitoring"><h2>Monitoring</h2><p>{verdict} window '
        f"{e(win.get('start'))} – {e(win.get('end'))}, {e(win.get('n_predictions'))} predictions, "
        f"{e(malformed)} malformed requests (<code>reports/metrics/monitor.json</code>)</p>"
        + (f"<h3>Reasons</h3>{reasons}" if rep.get("reasons") else "")
        + f"<h3>Per model version</h3>{versions}"
        + (
            f'<h3>Reports</h3><ul class="links">{"".join(f"<li>{x}</li>" for x in links)}</ul>'
            if links
            else ""
        )
        + "</section>"
    )
