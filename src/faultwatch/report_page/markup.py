"""The page's building blocks: its inline CSS, values as text, tables, badges and links."""

from __future__ import annotations

from html import escape
from typing import Any

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
    """A value as the page shows it: — for none, true/false, at most 4 decimals."""
    if v is None:
        return "—"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float):
        return f"{v:.4f}".rstrip("0").rstrip(".") if abs(v) < 1e6 else f"{v:.4g}"
    return str(v)


def e(v: Any) -> str:
    """`fmt`, escaped for HTML."""
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
    """A definition list of (term, HTML already escaped)."""
    return "<dl>" + "".join(f"<dt>{escape(k)}</dt><dd>{v}</dd>" for k, v in items) + "</dl>"


def badge(text: str, kind: str = "") -> str:
    return f'<span class="badge {kind}">{escape(text)}</span>'


def link(href: str, text: str) -> str:
    return f'<a href="{escape(href)}">{escape(text)}</a>'
