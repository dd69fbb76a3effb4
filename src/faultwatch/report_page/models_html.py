"""The models' sections of the page: the candidate and the production model with their
provenance, what serves here, and the registry's versions and history."""

from __future__ import annotations

import json
from html import escape
from typing import Any

from faultwatch.report_page.families_html import families_block
from faultwatch.report_page.markup import badge, dl, e, fmt, table


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


def version_family(v: Any, store: tuple[dict, dict] | None) -> str:
    """A registry version's model family: the gate's record, else its store entry's label;
    versions from before the classical family are CNNs."""
    labels = store[0] if store else {}
    return str(v.record.get("family") or labels.get("family") or "cnn")


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
                ("family", f"<b>{e(data['families'].get('candidate'))}</b>"),
                ("test", escape(_figures(test)) if test else e(None)),
                *_store_items(store),
            ]
        )
        cand += families_block(data["families"])
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
            ("family", f"<b>{e(version_family(prod, data['production_store']))}</b>"),
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
