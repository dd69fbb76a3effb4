"""The page's HTML: inline CSS, inline PNG plots, relative links only (it opens offline and
from any copy of the reports/ folder)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from html import escape
from typing import Any

from faultwatch.report_page.gather import DataChange, MetricRow
from faultwatch.report_page.plots import Drawn

CSS = """
:root { --ink:#1f2933; --muted:#66788a; --line:#d9e2ec; --bg:#f5f7fa; --card:#fff;
  --accent:#2f6fb3; --good:#1e7b4b; --bad:#b3261e; --warn:#9a6700; }
* { box-sizing: border-box; }
body { margin:0; font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;
  color:var(--ink); background:var(--bg); }
header { background:#16324f; color:#fff; padding:18px 32px 14px; }
header h1 { margin:0 0 4px; font-size:22px; }
header .sub { color:#c8d6e5; font-size:13px; }
header code { background:rgba(255,255,255,.14); color:#fff; }
nav { position:sticky; top:0; z-index:1; background:#fff; border-bottom:1px solid var(--line);
  padding:8px 32px; display:flex; gap:18px; flex-wrap:wrap; }
nav a { color:var(--accent); text-decoration:none; font-weight:500; }
main { padding:8px 32px 40px; max-width:1280px; }
section { background:var(--card); border:1px solid var(--line); border-radius:8px;
  padding:14px 20px 18px; margin:18px 0; scroll-margin-top:48px; }
h2 { font-size:18px; margin:4px 0 10px; }
h3 { font-size:15px; margin:14px 0 6px; }
p.note, .muted { color:var(--muted); }
code { font:12.5px ui-monospace,SFMono-Regular,Menlo,monospace; background:#eef2f6;
  padding:1px 4px; border-radius:3px; }
table { border-collapse:collapse; width:100%; font-size:13px; }
th, td { text-align:left; padding:4px 8px; border-bottom:1px solid var(--line); vertical-align:top; }
th { background:#f0f4f8; font-weight:600; }
td.num { text-align:right; font-variant-numeric:tabular-nums; white-space:nowrap; }
td.stage { background:#fafbfc; min-width:190px; }
td.stage b { font-size:14px; }
td.stage .muted { font-size:12px; }
.cards { display:grid; grid-template-columns:repeat(auto-fit,minmax(220px,1fr)); gap:12px; }
.card { border:1px solid var(--line); border-radius:8px; padding:10px 14px; background:#fff; }
.card .label { color:var(--muted); font-size:12px; text-transform:uppercase; letter-spacing:.04em; }
.card .value { font-size:16px; font-weight:600; margin:2px 0; overflow-wrap:anywhere; }
.grid2 { display:grid; grid-template-columns:repeat(auto-fit,minmax(480px,1fr)); gap:16px; }
figure { margin:0; border:1px solid var(--line); border-radius:6px; padding:8px; background:#fff; }
figure img { width:100%; height:auto; display:block; }
figcaption { font-size:12px; color:var(--muted); margin-top:4px; }
dl { display:grid; grid-template-columns:max-content 1fr; gap:3px 14px; margin:0; }
dt { color:var(--muted); }
dd { margin:0; word-break:break-all; }
.badge { display:inline-block; padding:1px 7px; border-radius:10px; font-size:12px;
  font-weight:600; background:#e4e7eb; color:var(--ink); }
.badge.good { background:#d6f0e0; color:var(--good); }
.badge.bad { background:#fbdad7; color:var(--bad); }
.badge.warn { background:#fdf0c8; color:var(--warn); }
/* the direction of a change, not a judgement: for some figures lower is better */
.up { color:#1d5fa8; } .down { color:#a3520f; } .same { color:var(--muted); }
ul.links { margin:4px 0; padding-left:18px; }
"""


def fmt(v: Any) -> str:
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def e(v: Any) -> str:
    return escape(fmt(v))


def table(headers: list[str], rows: list[list[str]], num: set[int] = frozenset()) -> str:
    """`rows` hold HTML already escaped; columns in `num` are right-aligned."""
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{c}</td>' if i in num else f"<td>{c}</td>" for i, c in enumerate(r)
        )
        + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def dl(items: list[tuple[str, str]]) -> str:
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {kind}">{escape(text)}</span>'


def link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'


def change(row: MetricRow) -> str:
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


def notebooks_section(notebooks: list[tuple[str, bool]]) -> str:
    items = [
        f"<li>{link(f'notebooks/{stem}.html', stem)}</li>"
        if present
        else f'<li>{escape(stem)} <span class="muted">(not run yet)</span></li>'
        for stem, present in notebooks
    ]
    return (
        '<section id="notebooks"><h2>Executed notebooks</h2>'
        '<p class="note">Each stage’s notebook as it ran in the pipeline, with its figures '
        f'(<code>reports/notebooks/</code>).</p><ul class="links">{"".join(items)}</ul></section>'
    )


def _figures(test: dict[str, Any] | None) -> str:
    test = test or {}
    keys = ("f1", "precision", "recall", "pr_auc")
    return ", ".join(f"{k} {fmt(test.get(k))}" for k in keys if k in test) or "—"


def _data(meta: dict[str, Any]) -> str:
    data = meta.get("data") or {}
    if not isinstance(data, dict) or not data:
        return "—"
    return (
        f"<code>{e(data.get('source'))}</code>, fault class <code>{e(data.get('positive_label'))}</code>, "
        f"data hash <code>{e(data.get('hash'))}</code>"
    )


def _store_items(store: tuple[dict, dict] | None) -> list[tuple[str, str]]:
    if store is None:
        return [("store entry", '<span class="muted">not in this BentoML store</span>')]
    labels, meta = store
    git = meta.get("git") or {}
    commit = git.get("commit") if isinstance(git, dict) else None
    dirty = " (uncommitted changes)" if isinstance(git, dict) and git.get("dirty") else ""
    schema = meta.get("input_schema") or {}
    return [
        ("trained on", _data(meta)),
        ("code commit", f"<code>{e((commit or '')[:12] or None)}</code>{escape(dirty)}"),
        ("W&B run", f"<code>{e(meta.get('wandb_run_id') or labels.get('wandb_run_id'))}</code>"),
        ("threshold", e(meta.get("threshold"))),
        ("input", f"resampled to {e(schema.get('resampled_to'))} samples" if schema else "—"),
        ("weights sha256", f"<code>{e(meta.get('weights_sha256'))}</code>"),
    ]


def _prod_reason(prod: Any, events: list[dict[str, Any]]) -> str:
    """The message of the version's latest `prod` assignment (the gate's reasons, or a
    person's), else the reasons recorded at its registration."""
    for ev in events:  # newest first
        if ev.get("stage") == "prod" and ev.get("version") == prod.version and ev.get("message"):
            return str(ev["message"])
    return "; ".join(prod.record.get("reasons") or []) or "—"


def serving_note(serving: dict[str, Any] | None) -> str:
    """What serves here, and a warning when the registry says otherwise."""
    if not serving:
        return ""
    if serving["live_version"]:
        here = (
            f"{escape(serving['live_version'])} live on {escape(serving['live_colour'])} at "
            f"<code>{escape(serving['url'])}</code> ({serving['share']} % of the traffic)"
        )
    else:
        here = "nothing deployed here (<code>faultwatch deploy status</code>)"
    note = f'<p id="serving"><b>Serving</b>: {here}</p>'
    if serving["problem"]:
        note += (
            f'<p id="serving-problem">{badge("disagree", "bad")} {escape(serving["problem"])}</p>'
        )
    return note


def models_section(data: dict[str, Any]) -> str:
    reg, pkg = data["register"], data["package"]
    if reg:
        store = data["candidate_store"]
        test = ((store[1].get("metrics") or {}).get("test") if store else None) or {}
        cand = dl(
            [
                ("model", f"<code>{e(reg.get('model_tag'))}</code>"),
                ("test", escape(_figures(test)) if test else e(None)),
                *_store_items(store),
            ]
        )
    else:
        cand = (
            '<p class="note">No candidate yet: the register stage writes reports/register.json.</p>'
        )
    if pkg:
        warnings = "".join(f"<li>{escape(w)}</li>" for w in pkg.get("warnings") or [])
        cand += "<h3>Packaged</h3>" + dl(
            [
                ("bento", f"<code>{e(pkg.get('bento_tag'))}</code>"),
                ("stage", e(pkg.get("stage"))),
                ("why", e(pkg.get("reason"))),
            ]
        )
        cand += f'<ul class="links">{warnings}</ul>' if warnings else ""
    prod = data["registry"]["production"]
    if pkg and prod and pkg.get("registry_version") != prod.version:
        cand += (
            f"<p>{badge('differs', 'warn')} this bento holds "
            f"{escape(pkg.get('registry_version') or 'the candidate')} ({e(pkg.get('stage'))}); "
            f"production (serving) is {escape(prod.version)}. "
            "<code>dvc repro -f -s package</code> packages the current model again.</p>"
        )
    if prod:
        rec = prod.record
        same = reg and reg.get("model_tag") == prod.model_tag
        items = [
            ("registry version", f"<b>{escape(prod.version)}</b> {badge('prod', 'good')}"),
            (
                "model",
                f"<code>{escape(prod.model_tag)}</code>" + (" (the candidate)" if same else ""),
            ),
            (
                "registered",
                f"{escape(prod.created_at)} on commit <code>{escape(prod.commit[:12])}</code>",
            ),
            ("test (gate)", escape(_figures(rec.get("test")))),
            ("why in production", escape(_prod_reason(prod, data["registry"]["events"]))),
            *_store_items(data["production_store"]),
        ]
        production = dl(items)
    else:
        production = (
            '<p class="note">No model in production yet: <code>faultwatch promote</code> gates the '
            "candidate (commit first: a registry version names a commit), and a version becomes "
            "production when <code>faultwatch deploy</code> puts the traffic on it.</p>"
        )
    production += serving_note(data["registry"].get("serving"))
    return (
        '<section id="models"><h2>Models and their provenance</h2><div class="grid2">'
        f"<div><h3>Candidate (reports/register.json)</h3>{cand}</div>"
        f"<div><h3>Production (registry)</h3>{production}</div></div></section>"
    )


def _event_text(ev: dict[str, Any]) -> str:
    if ev.get("event") == "registration":
        try:
            rec = json.loads(ev.get("message") or "")
            return f"registered {escape(str(rec.get('model_tag')))}: {escape(str(rec.get('decision')))}"
        except (TypeError, ValueError, AttributeError):
            pass
    return escape(str(ev.get("message") or ""))


def registry_section(reg: dict[str, Any]) -> str:
    if reg.get("error"):
        return f'<section id="registry"><h2>Registry</h2><p class="note">{escape(reg["error"])}</p></section>'
    if not reg["versions"]:
        return (
            '<section id="registry"><h2>Registry</h2><p class="note">No version registered yet: '
            "<code>faultwatch promote</code> registers the candidate and records the gate’s "
            "decision (git tags, GTO).</p></section>"
        )
    rows = []
    for v in reversed(reg["versions"]):
        t = v.record.get("test") or {}
        stages = [s for s in v.stages if s not in ("approved", "rejected")]
        kind = {"approved": "good", "rejected": "bad"}.get(v.approval, "warn")
        rows.append(
            [
                f"<b>{escape(v.version)}</b>",
                " ".join(badge(s, "good") for s in stages) or "—",
                badge(v.approval, kind),
                e(t.get("f1")),
                e(t.get("recall")),
                e(t.get("pr_auc")),
                f"<code>{escape(v.model_tag)}</code>",
                f"<code>{escape(v.commit[:8])}</code>",
                "; ".join(escape(r) for r in v.record.get("reasons") or []),
            ]
        )
    versions = table(
        [
            "version",
            "stage",
            "decision",
            "test f1",
            "recall",
            "pr_auc",
            "model",
            "commit",
            "reasons",
        ],
        rows,
        {3, 4, 5},
    )
    events = table(
        ["time", "version", "event", "message"],
        [
            [
                escape(str(ev.get("timestamp"))),
                escape(str(ev.get("version"))),
                escape(f"{ev.get('event')} {ev.get('stage') or ''}".strip()),
                _event_text(ev),
            ]
            for ev in reg["events"]
        ],
    )
    return (
        '<section id="registry"><h2>Registry</h2><p class="note">Every version with its stage '
        "and the gate’s decision (git tags, <code>faultwatch registry list</code>).</p>"
        f"{versions}<h3>History, newest first</h3>{events}</section>"
    )


def monitor_section(mon: dict[str, Any] | None) -> str:
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
    rows = []
    for version, fig in (rep.get("versions") or {}).items():
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
                escape(", ".join((fig.get("input_drift") or {}).get("drifted") or []) or "—"),
                e((fig.get("embedding_drift") or {}).get("verdict")),
            ]
        )
    versions = table(
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


def cards(data: dict[str, Any]) -> str:
    reg, prod, mon = data["register"], data["registry"]["production"], data["monitor"]
    rows = {r.path + ":" + r.key: r.new for r in data["metrics"]}
    f1 = rows.get("reports/metrics/evaluate.json:test.f1")
    pr = rows.get("reports/metrics/evaluate.json:test.pr_auc")
    pkg = data["package"] or {}
    items = [
        (
            "candidate",
            (reg or {}).get("model_tag") or "none yet",
            f"test f1 {fmt(f1)}, pr_auc {fmt(pr)}",
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
{registry_section(data["registry"])}
{monitor_section(data["monitor"])}
</main></body></html>
"""
