"""What the report page shows, read from the project: every stage's metrics with the change
since the last commit (`dvc metrics diff` against HEAD), the candidate's and the production
model's provenance, the registry's versions and events, the latest monitoring report.

Everything the page needs is read before anything is written: a malformed input (a metrics
file that is not JSON, a record that is not an object) is a FaultwatchError naming the file.
What is merely absent (a stage not run yet, no commit, no registry, no monitoring) is shown
as absent on the page, never an error.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from faultwatch import registry
from faultwatch.deploy.live import serving
from faultwatch.errors import FaultwatchError
from faultwatch.evaluate.families import FAMILY_FILE, read_family_decision
from faultwatch.register import EVALUATE_FILE, REGISTER_FILE, data_hash, read_json
from faultwatch.report_page.fleet_html import fleet_rows

METRICS_DIR = "reports/metrics/"
PACKAGE_FILE = Path("reports/package.json")
MONITOR_FILE = Path("reports/metrics/monitor.json")
MONITOR_DIR = Path("reports/monitor")
NOTEBOOK_HTML_DIR = Path("reports/notebooks")


def read_dvc_yaml(root: Path) -> dict[str, Any]:
    """The pipeline's dvc.yaml; missing or malformed is an error (the page reports on it)."""
    path = root / "dvc.yaml"
    try:
        spec = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise FaultwatchError("dvc.yaml: not found (the pipeline the page reports on)") from None
    except yaml.YAMLError as e:
        raise FaultwatchError(f"dvc.yaml: not valid YAML: {e}") from None
    if not isinstance(spec, dict):
        raise FaultwatchError("dvc.yaml: expected a mapping with `stages:`")
    return spec


def _entry_path(entry: Any) -> str:
    return str(next(iter(entry)) if isinstance(entry, dict) else entry)


@dataclass(frozen=True)
class MetricFile:
    stage: str
    path: str
    declared: bool  # under `metrics:` (what `dvc metrics show` lists), not a plain output


def stage_metric_files(spec: dict[str, Any]) -> list[MetricFile]:
    """Each stage's summaries under reports/metrics/, in pipeline order: its declared
    `metrics:` and its plain outputs there (prepare, eda and augment write theirs as outs)."""
    files = []
    for stage, body in (spec.get("stages") or {}).items():
        body = body or {}
        for key in ("outs", "metrics"):
            for entry in body.get(key) or []:
                path = _entry_path(entry)
                if path.startswith(METRICS_DIR) and path.endswith((".json", ".yaml", ".yml")):
                    files.append(MetricFile(stage, path, key == "metrics"))
    return files


def flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    """Nested mappings to dotted keys, as `dvc metrics` shows them; lists are left out."""
    out: dict[str, Any] = {}
    if isinstance(value, dict):
        for k, v in value.items():
            out.update(flatten(v, f"{prefix}{k}."))
    elif not isinstance(value, list):
        out[prefix[:-1]] = value
    return out


def read_metric_file(root: Path, path: str) -> dict[str, Any] | None:
    """The flattened figures of one metrics file; None when the stage has not written it."""
    full = root / path
    if not full.is_file():
        return None
    text = full.read_text()
    try:
        value = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as e:
        raise FaultwatchError(f"{path}: not valid {Path(path).suffix[1:].upper()}: {e}") from None
    if not isinstance(value, dict):
        raise FaultwatchError(f"{path}: expected an object of named figures")
    return flatten(value)


@dataclass
class DataChange:
    """How the data behind the workspace's metrics differs from HEAD's: (HEAD's, now)."""

    source: tuple[str, str] | None = None  # params.yaml: data.source
    prepared: tuple[str, str] | None = None  # the data hash of prepare's splits (dvc.lock)


@dataclass
class Baseline:
    """What the workspace's metrics are compared with: HEAD, or why nothing."""

    commit: str | None = None
    subject: str = ""
    note: str = ""
    missing: set[str] = field(default_factory=set)  # files HEAD does not hold
    old: dict[str, dict[str, Any]] = field(default_factory=dict)  # path -> key -> {old, diff}
    data: DataChange | None = None  # None: the same data as HEAD's (or nothing to tell)


def _git(root: Path, *args: str) -> str | None:
    try:
        proc = subprocess.run(["git", *args], cwd=root, capture_output=True, text=True)
    except FileNotFoundError:
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def head(root: Path) -> dict[str, Any] | None:
    """HEAD's sha, subject and whether tracked files differ; None without a commit."""
    sha = _git(root, "rev-parse", "--verify", "-q", "HEAD")
    if not sha:
        return None
    dirty = bool(_git(root, "status", "--porcelain", "--untracked-files=no"))
    return {"commit": sha, "subject": _git(root, "log", "-1", "--format=%s") or "", "dirty": dirty}


def _yaml_or_none(text: str | None) -> Any:
    try:
        return yaml.safe_load(text) if text else None
    except yaml.YAMLError:
        return None  # a broken file of HEAD's or the workspace's: nothing to compare


def _data_source(params: Any) -> str | None:
    data = params.get("data") if isinstance(params, dict) else None
    return str(data["source"]) if isinstance(data, dict) and "source" in data else None


def _prepared_hash(lock: Any) -> str | None:
    """The data hash of the prepare stage's data outputs a dvc.lock records, as the registry
    computes it (faultwatch.register.data_hashes: its reports/ are not data)."""
    stages = lock.get("stages") if isinstance(lock, dict) else None
    outs = ((stages or {}).get("prepare") or {}).get("outs") or []
    hashes = {
        str(o["path"]): str(o["md5"])
        for o in outs
        if isinstance(o, dict)
        and o.get("md5")
        and not str(o.get("path", "")).startswith("reports/")
    }
    return data_hash(hashes) if hashes else None


def data_change(root: Path) -> DataChange | None:
    """data.source (params.yaml) and prepare's splits (dvc.lock) now against HEAD's: what
    differs, or None. Figures compared across such a change were measured on other data."""
    change = DataChange()
    for name, read, attr in (
        ("params.yaml", _data_source, "source"),
        ("dvc.lock", _prepared_hash, "prepared"),
    ):
        path = root / name
        now = read(_yaml_or_none(path.read_text() if path.is_file() else None))
        then = read(_yaml_or_none(_git(root, "show", f"HEAD:{name}")))
        if now is not None and then is not None and now != then:
            setattr(change, attr, (then, now))
    return change if change.source or change.prepared else None


def metrics_baseline(root: Path, paths: list[str]) -> Baseline:
    """`dvc metrics diff HEAD` (every figure, changed or not) of `paths`, through DVC's API,
    and whether the data behind them changed since (`data_change`)."""
    commit = head(root)
    if commit is None:
        return Baseline(note="no commit yet: nothing to compare with")
    base = Baseline(commit["commit"], commit["subject"], data=data_change(root))
    if not paths:
        return base
    from dvc.exceptions import DvcException
    from dvc.repo import Repo

    try:
        with Repo(str(root)) as repo:
            result = repo.metrics.diff(a_rev="HEAD", targets=paths, all=True)
    except DvcException as e:
        base.note = f"dvc metrics diff failed: {e}"
        return base
    base.old = {p: dict(figures) for p, figures in (result.get("diff") or {}).items()}
    base.missing = set((result.get("errors") or {}).get("HEAD") or {})
    return base


@dataclass
class MetricRow:
    stage: str
    path: str
    declared: bool
    key: str
    new: Any
    old: Any = None
    diff: Any = None
    in_head: bool = True  # HEAD holds this file (False without a commit too)
    compared: bool = True  # there is a commit to compare with


def metric_rows(root: Path, spec: dict[str, Any]) -> tuple[list[MetricRow], Baseline, list[str]]:
    """One row per figure of every stage's metrics file; the baseline; the files not written."""
    files = stage_metric_files(spec)
    current = {f.path: read_metric_file(root, f.path) for f in files}
    present = [p for p, v in current.items() if v is not None]
    base = metrics_baseline(root, present)
    rows, absent = [], []
    for f in files:
        figures = current[f.path]
        if figures is None:
            absent.append(f.path)
            continue
        old = base.old.get(f.path, {})
        for key, value in figures.items():
            was = old.get(key, {})
            rows.append(
                MetricRow(
                    f.stage,
                    f.path,
                    f.declared,
                    key,
                    value,
                    was.get("old"),
                    was.get("diff"),
                    in_head=base.commit is not None and f.path not in base.missing,
                    compared=base.commit is not None,
                )
            )
    return rows, base, absent


def optional_json(root: Path, path: Path, what: str) -> dict[str, Any] | None:
    """A JSON object, None when absent; malformed is an error naming the file."""
    return read_json(root / path, what, root) if (root / path).is_file() else None


def store_info(tag: str | None) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """(labels, metadata) of a BentoML store entry; None when it is not in this store."""
    if not tag:
        return None
    import bentoml
    from bentoml.exceptions import BentoMLException

    try:
        info = bentoml.models.get(tag).info
    except BentoMLException:
        return None
    return dict(info.labels), dict(info.metadata)


def registry_state(root: Path) -> dict[str, Any]:
    """Versions (oldest first), events (newest first), production; `error` instead when the
    registry cannot be read (not a git repository)."""
    try:
        versions = registry.versions(root)
        events = registry.events(root)
    except FaultwatchError as e:
        return {"versions": [], "events": [], "production": None, "error": str(e)}
    prod = [v for v in versions if registry.PRODUCTION in v.stages]
    return {
        "versions": versions,
        "events": events,
        "production": prod[-1] if prod else None,
        # what serves here (the deployment's state) and any disagreement with the registry
        "serving": serving(root).to_dict(),
    }


def monitor_state(root: Path) -> dict[str, Any] | None:
    """The latest monitoring report (reports/metrics/monitor.json) and the pages beside it."""
    report = optional_json(root, MONITOR_FILE, "the monitor's report")
    if report is None:
        return None
    pages = sorted(p.name for p in (root / MONITOR_DIR).glob("*.html"))
    notebook = root / NOTEBOOK_HTML_DIR / "05_monitor.html"
    return {"report": report, "pages": pages, "notebook": notebook.is_file()}


def families_state(root: Path, register: dict[str, Any] | None) -> dict[str, Any]:
    """The candidate's model family, the train stage's choice between the families
    (reports/train/family.json) and each family's test figures from the evaluation
    (scores.json's `family`); each None where absent (a project from before the families)."""
    scores = optional_json(root, EVALUATE_FILE, "the evaluate stage's scores") or {}
    evaluation = scores.get("family") if isinstance(scores.get("family"), dict) else None
    decision = read_family_decision(root / FAMILY_FILE, root)
    candidate = (register or {}).get("family") or (evaluation or {}).get("candidate")
    if candidate is None and register:
        candidate = "cnn"  # registered before the families: a CNN
    return {"candidate": candidate, "decision": decision, "evaluation": evaluation}


def notebooks(root: Path) -> list[tuple[str, bool]]:
    """(stem, its executed HTML exists) for each notebook of notebooks/, and any other
    executed notebook under reports/notebooks/."""
    stems = {p.stem for p in (root / "notebooks").glob("*.ipynb")}
    stems |= {p.stem for p in (root / NOTEBOOK_HTML_DIR).glob("*.html")}
    return [(s, (root / NOTEBOOK_HTML_DIR / f"{s}.html").is_file()) for s in sorted(stems)]


def gather(root: Path) -> dict[str, Any]:
    """Everything the page shows (see the module's docstring)."""
    spec = read_dvc_yaml(root)
    rows, base, absent = metric_rows(root, spec)
    register = optional_json(root, REGISTER_FILE, "the register stage's record")
    package = optional_json(root, PACKAGE_FILE, "the package stage's record")
    reg = registry_state(root)
    prod = reg["production"]
    return {
        "spec": spec,
        "head": head(root),
        "metrics": rows,
        "baseline": base,
        "metrics_absent": absent,
        "notebooks": notebooks(root),
        "register": register,
        "candidate_store": store_info((register or {}).get("model_tag")),
        "families": families_state(root, register),
        "package": package,
        "registry": reg,
        "production_store": store_info(prod.model_tag) if prod else None,
        "monitor": monitor_state(root),
        "fleet": fleet_rows(root),
    }
