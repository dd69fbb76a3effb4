"""The pipeline's sections of the page: the executed notebooks, every stage's metrics with the
change since HEAD, and the plots dvc.yaml declares."""

from __future__ import annotations

from html import escape
from typing import Any

from faultwatch.report_page.gather import DataChange, MetricRow
from faultwatch.report_page.markup import badge, e, fmt, link
from faultwatch.report_page.plots import Drawn

# notebooks a person runs, in no stage and on no schedule: never "not run yet"
BY_HAND = {"06_review": "a person labels with it in JupyterLab (`faultwatch review`)"}


def notebooks_section(notebooks: list[tuple[str, bool]]) -> str:
    items = [
        f"<li>{link(f'notebooks/{stem}.html', stem)}</li>"
        if present
        else f'<li>{escape(stem)} <span class="muted">'
        f"({escape(BY_HAND.get(stem, 'not run yet'))})</span></li>"
        for stem, present in notebooks
    ]
    return (
        '<section id="notebooks"><h2>Executed notebooks</h2>'
        '<p class="note">Each stage’s notebook as it ran in the pipeline, with its figures '
        f'(<code>reports/notebooks/</code>).</p><ul class="links">{"".join(items)}</ul></section>'
    )


def change(row: MetricRow) -> str:
    """The Change column of one figure: its difference from HEAD's, or what HEAD lacked."""
    if not row.compared:
        return "—"
    if not row.in_head:
        return '<span class="muted">new file</span>'
    if row.old is None and row.new is not None:
        return '<span class="muted">new</span>'
    numbers = [isinstance(v, int | float) and not isinstance(v, bool) for v in (row.new, row.old)]
    if not all(numbers):
        return '<span class="same">=</span>' if row.old == row.new else f"was {e(row.old)}"
    d = row.diff if isinstance(row.diff, int | float) else row.new - row.old
    if d == 0:
        return '<span class="same">0</span>'
    return f'<span class="{"up" if d > 0 else "down"}">{"+" if d > 0 else "−"}{fmt(abs(d))}</span>'


def data_change_note(change: DataChange | None) -> str:
    """What a reader must know before reading the Change column: the data is not HEAD's."""
    if change is None:
        return ""
    parts = []
    if change.source:
        parts.append(
            f"<code>data.source</code> was <code>{escape(change.source[0])}</code> at HEAD and "
            f"is <code>{escape(change.source[1])}</code> now (params.yaml)"
        )
    if change.prepared:
        parts.append(
            f"the prepared splits differ (data hash <code>{escape(change.prepared[0])}</code> "
            f"at HEAD, <code>{escape(change.prepared[1])}</code> now; dvc.lock)"
        )
    return (
        f' <span class="data-changed">{badge("data changed", "warn")} The data changed since '
        f"HEAD: {'; '.join(parts)}. The changes below compare figures measured on other "
        "data.</span>"
    )


def metrics_section(data: dict[str, Any]) -> str:
    base, rows = data["baseline"], data["metrics"]
    if base.commit:
        against = f"HEAD {base.commit[:8]}"
        intro = (
            f"The workspace against the last commit, <code>{escape(base.commit[:12])}</code> "
            f"“{escape(base.subject)}” (<code>dvc metrics diff HEAD --all</code>). "
            "<i>dvc metrics</i>: the files dvc.yaml declares as metrics; the others are the "
            "stages’ plain summaries."
        )
    else:
        against, intro = "HEAD", escape(base.note)
    if base.commit and base.note:
        intro += f" {escape(base.note)}"
    intro += data_change_note(base.data)
    body = []
    spans: dict[str, int] = {}
    for r in rows:
        spans[r.path] = spans.get(r.path, 0) + 1
    shown: set[str] = set()
    for r in rows:
        cells = []
        if r.path not in shown:
            shown.add(r.path)
            what = badge("dvc metrics", "good") if r.declared else ""
            cells.append(
                f'<td class="stage" rowspan="{spans[r.path]}"><b>{escape(r.stage)}</b> {what}'
                f'<div class="muted">{escape(r.path)}</div></td>'
            )
        cells.append(f"<td><code>{escape(r.key)}</code></td>")
        cells.append(f'<td class="num">{e(r.new)}</td>')
        cells.append(f'<td class="num">{e(r.old) if r.in_head else "—"}</td>')
        cells.append(f'<td class="num">{change(r)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    absent = data["metrics_absent"]
    missing = (
        f'<p class="note">Not written yet: {", ".join(f"<code>{escape(p)}</code>" for p in absent)}'
        " (run <code>dvc repro</code>).</p>"
        if absent
        else ""
    )
    head = f"<th>Stage</th><th>Metric</th><th>Value</th><th>{escape(against)}</th><th>Change</th>"
    return (
        f'<section id="metrics"><h2>Metrics of every stage</h2><p class="note">{intro}</p>'
        f'<table class="metrics"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody>'
        f"</table>{missing}</section>"
    )


def plots_section(drawn: list[Drawn]) -> str:
    figs = []
    for d in drawn:
        files = ", ".join(d.spec.y)
        if d.data_uri:
            figs.append(
                f'<figure><img alt="{escape(d.spec.title)}" src="{d.data_uri}">'
                f"<figcaption>{escape(files)}</figcaption></figure>"
            )
        else:
            figs.append(
                f"<figure><b>{escape(d.spec.title)}</b><p class='note'>not drawn: "
                f"{escape(', '.join(d.missing))} not written yet (run <code>dvc repro</code>)</p></figure>"
            )
    body = "".join(figs) or '<p class="note">dvc.yaml declares no plots.</p>'
    return (
        '<section id="plots"><h2>Plots</h2><p class="note">The plots dvc.yaml declares '
        "(<code>dvc plots show</code>), drawn here without a network.</p>"
        f'<div class="grid2">{body}</div></section>'
    )
