"""The page's HTML: inline CSS, inline PNG plots, relative links only (it opens offline and
from any copy of the reports/ folder). Each section is rendered by the module of what it shows."""

from __future__ import annotations

from datetime import UTC, datetime
from html import escape
from typing import Any

from faultwatch.report_page.fleet_html import fleet_section
from faultwatch.report_page.markup import CSS, e, fmt, link
from faultwatch.report_page.models_html import models_section, registry_section
from faultwatch.report_page.monitor_html import monitor_section
from faultwatch.report_page.pipeline_html import metrics_section, notebooks_section, plots_section
from faultwatch.report_page.plots import Drawn


def cards(data: dict[str, Any]) -> str:
    """The summary: candidate, production, packaged bento and monitoring, one card each."""
    reg, prod, mon = data["register"], data["registry"]["production"], data["monitor"]
    rows = {r.path + ":" + r.key: r.new for r in data["metrics"]}
    f1 = rows.get("reports/metrics/evaluate.json:test.f1")
    pr = rows.get("reports/metrics/evaluate.json:test.pr_auc")
    pkg = data["package"] or {}
    family = (data.get("families") or {}).get("candidate")  # the CNN or the classical model
    items = [
        (
            "candidate",
            (reg or {}).get("model_tag") or "none yet",
            (f"{family}, " if family else "") + f"test f1 {fmt(f1)}, pr_auc {fmt(pr)}",
        ),
        (
            "production",
            prod.version if prod else "none yet",
            prod.model_tag if prod else "faultwatch promote",
        ),
        ("packaged", pkg.get("bento_tag") or "not yet", pkg.get("stage") or ""),
        (
            "monitoring",
            ("retrain needed" if mon["report"].get("retrain_needed") else "no retrain needed")
            if mon
            else "not run yet",
            f"window end {fmt((mon['report'].get('window') or {}).get('end'))}"
            if mon
            else "faultwatch monitor",
        ),
    ]
    return (
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="label">{escape(k)}</div><div class="value">{escape(v)}</div>'
            f'<div class="muted">{escape(s)}</div></div>'
            for k, v, s in items
        )
        + "</div>"
    )


def page(data: dict[str, Any], drawn: list[Drawn], source: str | None) -> str:
    """The whole page from what `gather` read and the plots drawn; `source` is data.source."""
    head = data["head"]
    commit = (
        f"commit {head['commit'][:12]}{' + uncommitted changes' if head['dirty'] else ''}"
        if head
        else "no commit yet"
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    nav = "".join(
        link(f"#{i}", t)
        for i, t in (
            ("notebooks", "Notebooks"),
            ("metrics", "Metrics"),
            ("plots", "Plots"),
            ("models", "Models"),
            *((("fleet", "Fleet"),) if data.get("fleet") else ()),
            ("registry", "Registry"),
            ("monitoring", "Monitoring"),
        )
    )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>faultwatch report</title><style>{CSS}</style></head>
<body><header><h1>faultwatch report</h1>
<div class="sub">{escape(commit)} · data <code>{e(source)}</code> · written {escape(now)} by
<code>faultwatch report</code> (the <code>report</code> stage, <code>faultwatch monitor</code>
and <code>faultwatch promote</code> refresh it)</div></header>
<nav>{nav}</nav><main>
<section id="summary"><h2>Summary</h2>{cards(data)}</section>
{notebooks_section(data["notebooks"])}
{metrics_section(data)}
{plots_section(drawn)}
{models_section(data)}
{fleet_section(data.get("fleet"))}
{registry_section(data["registry"])}
{monitor_section(data["monitor"])}
</main></body></html>
"""
