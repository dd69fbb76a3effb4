"""The fleet table (model groups, faultwatch.groups): one row a group with its candidate
against production, its approval, its drift when a monitor ran, and links to its notebooks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from faultwatch import registry
from faultwatch.errors import FaultwatchError
from faultwatch.groups import GroupSpec, specs
from faultwatch.params import load_params
from faultwatch.paths import GROUPS_DIR
from faultwatch.register import EVALUATE_FILE, REGISTER_FILE, read_json
from faultwatch.report_page.markup import badge, e, fmt, link

KIND = {registry.APPROVED: "good", registry.REJECTED: "bad", registry.PENDING: "warn"}
NOTEBOOKS = ("01_eda", "02_augment", "03_train", "04_evaluate", "05_monitor")


def _json(path: Path, what: str, root: Path) -> dict[str, Any] | None:
    return read_json(path, what, root) if path.is_file() else None


def fleet_rows(root: Path) -> list[dict[str, Any]] | None:
    """A row a group of params.yaml `groups`; None for a project without groups."""
    groups: dict[str, GroupSpec] = specs(load_params(root / "params.yaml"))
    if not groups:
        return None
    try:
        found = registry.artifacts(root)
    except FaultwatchError:
        found = {}
    rows = []
    for name, spec in groups.items():
        folder = root / GROUPS_DIR / name
        vs = found.get(name, [])
        latest = vs[-1] if vs else None
        prod = next((v for v in reversed(vs) if registry.PRODUCTION in v.stages), None)
        ev = _json(folder / "reports/metrics/evaluate.json", f"{name}: evaluate", root) or {}
        cand = _json(folder / REGISTER_FILE, f"{name}: the register stage's record", root) or {}
        mon = _json(folder / "reports/metrics/monitor.json", f"{name}: the monitor", root)
        scores = _json(folder / EVALUATE_FILE, f"{name}: the evaluate stage's scores", root) or {}
        rows.append(
            {
                "name": name,
                "collection": spec.collection,
                "description": spec.description,
                "candidate": cand.get("model_tag"),
                "candidate_f1": (ev.get("test") or {}).get("f1"),
                "family": candidate_family(cand, scores),
                "production_family": (prod.record.get("family") or "cnn") if prod else None,
                "latest": latest.version if latest else None,
                "approval": latest.approval if latest else None,
                "decided_by": (latest.decision or {}).get("by") if latest else None,
                "production": prod.version if prod else None,
                "production_f1": ((prod.record.get("test") or {}).get("f1")) if prod else None,
                "drift": None if mon is None else bool(mon.get("retrain_needed")),
                "realised": _realised(mon),
                "notebooks": [
                    nb for nb in NOTEBOOKS if (folder / f"reports/notebooks/{nb}.html").is_file()
                ],
            }
        )
    return rows


def candidate_family(register: dict[str, Any], scores: dict[str, Any]) -> str | None:
    """A group's candidate's model family: its register record's, else its evaluation's; a
    candidate from before the families is a CNN; None before the group's stages ran."""
    evaluated = scores.get("family") if isinstance(scores.get("family"), dict) else {}
    found = register.get("family") or evaluated.get("candidate")
    return found or ("cnn" if register.get("model_tag") or scores else None)


def _realised(mon: dict[str, Any] | None) -> str | None:
    """The monitored window's realised F1 of each logged version with labels ("v 0.91 (n=60)"),
    None when not monitored or nothing was labelled."""
    if not mon:
        return None
    shown = []
    for version, fig in (mon.get("versions") or {}).items():
        real = ((fig or {}).get("performance") or {}).get("realised") or {}
        if real.get("n"):
            shown.append(f"{version}: {fmt(real.get('f1'))} (n={real['n']})")
    return "; ".join(shown) or None


def _family_cell(row: dict[str, Any]) -> str:
    """The candidate's family; production's beside it where it is another."""
    cell = e(row["family"] or "-")
    prod = row["production_family"]
    if prod and row["family"] and prod != row["family"]:
        cell += f"<div class='muted'>production: {e(prod)}</div>"
    return cell


def fleet_section(rows: list[dict[str, Any]] | None) -> str:
    if rows is None:
        return ""
    head = (
        "<tr><th>group</th><th>collection</th><th>family</th><th>candidate (test f1)</th>"
        "<th>latest version"
        "</th><th>approval</th><th>production (test f1)</th><th>drift</th><th>realised f1</th>"
        "<th>notebooks</th></tr>"
    )
    body = []
    for r in rows:
        links = " ".join(
            link(f"../{GROUPS_DIR}/{r['name']}/reports/notebooks/{nb}.html", nb[3:])
            for nb in r["notebooks"]
        )
        drift = "not monitored" if r["drift"] is None else ("retrain" if r["drift"] else "ok")
        approval = r["approval"] or "-"
        if r["decided_by"] and r["decided_by"] != registry.GATE:
            approval += f" by {r['decided_by']}"
        body.append(
            f"<tr><td><b>{e(r['name'])}</b><div class='muted'>{e(r['description'] or '')}</div>"
            f"</td><td>{e(r['collection'] or '-')}</td><td>{_family_cell(r)}</td>"
            f"<td>{e(r['candidate'] or 'not run')} ({fmt(r['candidate_f1'])})</td>"
            f"<td>{e(r['latest'] or '-')}</td><td>{badge(approval, KIND.get(r['approval'] or '', ''))}</td>"
            f"<td>{e(r['production'] or '-')} ({fmt(r['production_f1'])})</td>"
            f"<td>{e(drift)}</td><td>{e(r['realised'] or '-')}</td><td>{links or '-'}</td></tr>"
        )
    return (
        '<section id="fleet"><h2>Fleet: the model groups</h2><p class="note">One row a group of '
        "params.yaml <code>groups</code> (its folder <code>groups/NAME/</code>): its candidate's "
        "model family (the CNN or the classical model), its candidate "
        "against its production model, the approval of its latest version, drift and the realised "
        "F1 of its labelled predictions when <code>faultwatch monitor --group</code> ran for it. <code>faultwatch registry list</code> "
        "shows the same.</p><table>" + head + "".join(body) + "</table></section>"
    )
