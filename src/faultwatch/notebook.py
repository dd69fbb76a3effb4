"""The notebook runner: one notebook = one pipeline stage.

papermill injects the stage's params.yaml section (and, as a dict, any other section the
notebook's parameters cell names: 01_eda's `quality`) with the `-p` overrides on top, all of it
validated by the sections' models before the first cell runs; the executed copy and an HTML
copy go under reports/notebooks/, the scraps become reports/metrics/<stage>.json. Outputs are
replaced only when every cell ran; volatile metadata (timestamps, durations, paths) is dropped
so the same inputs give the same bytes.
"""

from __future__ import annotations

import ast
import json
import os
import re
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsonschema's optional IRI checker (rfc3987-syntax, pulled in by jupyter-events) compiles a
# grammar on import: 1-1.5 s of every stage start. Notebook validation never checks IRIs.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import nbformat
import papermill as pm
import yaml
from papermill.exceptions import PapermillExecutionError

from faultwatch import progress, settings
from faultwatch.engine import register as register_engine
from faultwatch.errors import FaultwatchError, ParamsError
from faultwatch.params import SECTIONS, load_params, section
from faultwatch.paths import STAGING_ENV, display_path, group_of, write_text_atomic
from faultwatch.scraps import json_metrics, read_scraps


class NotebookFailed(FaultwatchError):
    """A cell raised: the message names the notebook, the cell and the error."""


@dataclass(frozen=True)
class NotebookRun:
    """What one run wrote (where its outputs went) and the scraps it glued."""

    stage: str
    notebook: Path
    html: Path
    metrics: Path
    scraps: dict[str, Any]
    cells: int = 0  # code cells executed
    seconds: float = 0.0


def stage_name(notebook: Path) -> str:
    """`notebooks/01_eda.ipynb` -> `eda`."""
    return re.sub(r"^\d+[_-]", "", notebook.stem)


def parameter_names(nb: nbformat.NotebookNode) -> set[str] | None:
    """Names assigned in the cell tagged `parameters` (None if the notebook has no such cell)."""
    for cell in nb.cells:
        if "parameters" in cell.get("metadata", {}).get("tags", []):
            names = set()
            for node in ast.parse(cell.source).body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [getattr(node, "target", None)]
                )
                names |= {t.id for t in targets if isinstance(t, ast.Name)}
            return names
    return None


def stage_parameters(
    stage: str,
    nb: nbformat.NotebookNode,
    params_file: Path,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The parameters papermill injects: the stage's section of `params_file`, any other
    section the parameters cell names (01_eda's `quality`, as a dict), then `overrides` (`-p`).
    All of it is validated as params.yaml is, with the key's name, before any cell runs."""
    overrides = dict(overrides or {})
    _check_overrides(overrides, nb)
    raw = load_params(params_file)
    values = raw.get(stage) or {}
    if stage in SECTIONS:
        section(stage, raw, source=str(params_file.name))  # fails with the key's name
    if not isinstance(values, dict):
        raise ParamsError(f"{params_file.name}: {stage}: expected a mapping")
    known = parameter_names(nb)
    if known is None:
        raise ParamsError(f"{nb.metadata.get('path', stage)}: no cell tagged 'parameters'")
    unknown = sorted(set(values) - known)
    if unknown:
        raise ParamsError(
            f"{params_file.name}: {', '.join(f'{stage}.{k}' for k in unknown)}: "
            f"the notebook's parameters cell has no such name (it has: {', '.join(sorted(known))})"
        )
    # a parameters-cell name that is another section (01_eda's `quality`) gets it as a dict
    shared = {
        name: section(name, raw, source=str(params_file.name)).model_dump()
        for name in sorted((known & set(SECTIONS)) - {stage})
        if name in raw
    }
    _validate_overrides(stage, values, overrides, known)
    # the file's values as written (not the model's dump): the injected cell shows what was set
    return {**values, **shared, **overrides}


def _check_overrides(overrides: Mapping[str, Any], nb: nbformat.NotebookNode) -> None:
    known = parameter_names(nb) or set()
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise ParamsError(
            f"{', '.join(f'-p {k}' for k in unknown)}: the notebook's parameters cell has no such "
            f"name (it has: {', '.join(sorted(known))})"
        )


def _validate_overrides(
    stage: str, values: dict[str, Any], overrides: dict[str, Any], known: set[str]
) -> None:
    """`-p` values over the file's section, checked by the section's model: a bad one fails
    with its dotted key and the rule it broke (`-p: evaluate.worst_n: Input should be ...`).
    An override of another section's name (`-p quality={...}`) replaces that whole dict, as
    it is injected, so it is checked alone."""
    if not overrides:
        return
    others = (known & set(SECTIONS)) - {stage}
    for name in sorted(others & set(overrides)):
        section(name, {name: overrides[name]}, source="-p")
    own = {k: v for k, v in overrides.items() if k not in others}
    if stage in SECTIONS and own:
        section(stage, {stage: {**values, **own}}, source="-p")


VOLATILE_CELL_KEYS = ("papermill", "execution", "ploomber")
VOLATILE_NB_KEYS = (
    "start_time",
    "end_time",
    "duration",
    "input_path",
    "output_path",
    "environment_variables",
)


def _relative(path: Path, root: Path) -> Path:
    """`path` relative to `root` when both lie in a model group's project; else as given."""
    found = group_of(root)
    if found and path.resolve().is_relative_to(found[0].resolve()):
        return Path(os.path.relpath(path.resolve(), root.resolve()))
    return path


def scrub(nb: nbformat.NotebookNode, root: Path) -> nbformat.NotebookNode:
    """Drop timestamps, durations and absolute paths so re-runs give identical files."""
    pm = nb.metadata.get("papermill", {})
    for key in VOLATILE_NB_KEYS:
        pm.pop(key, None)
    root_s = str(root.resolve())
    for cell in nb.cells:
        for key in VOLATILE_CELL_KEYS:
            cell.metadata.pop(key, None)
        if "injected-parameters" in cell.metadata.get("tags", []):
            cell["id"] = "injected-parameters"  # papermill gives it a random id
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                out["text"] = out["text"].replace(root_s, ".")
            elif out.get("output_type") == "error":
                out["traceback"] = [t.replace(root_s, ".") for t in out["traceback"]]
    return nb


@contextmanager
def _stage_context(root: Path, staging: Path, in_process: bool = True) -> Iterator[None]:
    """FAULTWATCH_ROOT and FAULTWATCH_STAGING for the cells (and a kernel's environment), quiet
    scrapbook warnings. In this process (not in a kernel, which would send the lines to the
    notebook) the cells may report progress to the terminal (faultwatch.progress)."""
    # the cells and a kernel read these from the environment: no argument reaches them
    env = {
        "FAULTWATCH_ROOT": str(root),
        STAGING_ENV: str(staging),
        progress.ENV: "1" if in_process else None,
    }
    with settings.temporarily(env), warnings.catch_warnings():
        # scrapbook warns that glue saw no kernel when cells run in-process; glue still works
        warnings.filterwarnings("ignore", message="No kernel detected")
        # IPython's hint when a cell calls sys.exit(): the runner reports the cell instead
        warnings.filterwarnings("ignore", message="To exit: use 'exit'")
        yield


def declared_outputs(root: Path, stage: str) -> list[Path]:
    """The outs, metrics and plots dvc.yaml declares for `stage`, relative to the root. In a
    model group's folder (faultwatch.groups): those of the project's `group-<stage>` stage,
    whose paths are relative to the group's folder (its `wdir`)."""
    found = group_of(root)
    path = (found[0] if found else root) / "dvc.yaml"
    if not path.is_file():
        return []
    spec = yaml.safe_load(path.read_text()) or {}
    if found:
        stage = f"group-{stage}"
    declared = ((spec.get("stages") or {}).get(stage)) or {}
    if found:
        declared = declared.get("do") or {}
    paths = []
    for key in ("outs", "metrics", "plots"):
        for entry in declared.get(key) or []:
            name = next(iter(entry)) if isinstance(entry, dict) else str(entry)
            paths.append(Path(name.replace("${key}", found[1]) if found else name))
    return paths


def commit_staged(staging: Path, target: Path, folders: list[Path]) -> list[Path]:
    """Move everything in `staging` to the same relative place under `target`.

    A staged file inside one of `folders` (a folder the stage declares as one output, such as
    models/fault_cnn) replaces that whole folder, so no file of an older version is left in
    it; other files replace their namesakes one by one. Returns the paths replaced.
    """
    units: list[Path] = []
    for f in sorted(p for p in staging.rglob("*") if not p.is_dir()):
        rel = f.relative_to(staging)
        unit = next((d for d in folders if rel == d or d in rel.parents), rel)
        if unit not in units:
            units.append(unit)
    for unit in units:
        src, dst = staging / unit, target / unit
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir() and dst.exists():
            old = dst.with_name(f".{dst.name}.replaced-{os.getpid()}")
            shutil.rmtree(old, ignore_errors=True)
            os.replace(dst, old)
            try:
                os.replace(src, dst)
            except BaseException:
                os.replace(old, dst)
                raise
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(src, dst)
    return [target / u for u in units]


def to_html(nb: nbformat.NotebookNode) -> str:
    """The executed notebook as JupyterLab's HTML page (the copy reports/ links to)."""
    from nbconvert import HTMLExporter

    with warnings.catch_warnings():
        # scraps have no HTML form; nbconvert warns once per glued value
        warnings.filterwarnings("ignore", message="Your element with mimetype")
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


STAGING_DIR = Path(".faultwatch") / "staging"


@dataclass(frozen=True)
class _Layout:
    """Where one run's files go: under the staging folder while the cells run, then moved to
    the same relative places under the target."""

    source: Path  # the notebook
    shown: Path  # the notebook as messages name it (relative to the root when inside it)
    stage: str
    target: Path
    staging: Path

    @property
    def notebook(self) -> Path:
        return Path("reports") / "notebooks" / f"{self.source.stem}.ipynb"

    @property
    def html(self) -> Path:
        return self.notebook.with_suffix(".html")

    @property
    def metrics(self) -> Path:
        return Path("reports/metrics") / f"{self.stage}.json"

    @property
    def failed(self) -> Path:
        return self.target / self.notebook.with_suffix(".failed.ipynb")


def _execute(
    layout: _Layout, root: Path, parameters: dict[str, Any], kernel: bool
) -> nbformat.NotebookNode:
    """Run the cells into the staging folder; a failing cell is a NotebookFailed naming it,
    with the failed run saved beside the outputs (which stay as they were)."""
    executed = layout.staging / layout.notebook
    executed.parent.mkdir(parents=True, exist_ok=True)
    try:
        with _stage_context(root, layout.staging, in_process=not kernel):
            return pm.execute_notebook(
                str(layout.source),
                str(executed),
                parameters=parameters,
                cwd=str(root),
                engine_name=register_engine(kernel=kernel),
                progress_bar=False,
                log_output=False,
                progress_label=layout.stage,
            )
    except PapermillExecutionError as e:
        failed = layout.failed
        if executed.is_file():
            failed.parent.mkdir(parents=True, exist_ok=True)
            os.replace(executed, failed)
        source = "\n".join("    " + line for line in e.source.splitlines()[-8:])
        raise NotebookFailed(
            f"{layout.shown}: cell {e.cell_index} (execution {e.exec_count}) raised {e.ename}: "
            f"{e.evalue}\n{source}\n(the failed run is saved as {display_path(failed, root)}; "
            f"earlier outputs are unchanged)"
        ) from None


def _stage_outputs(
    layout: _Layout, root: Path, nb: nbformat.NotebookNode, html: bool
) -> dict[str, Any]:
    """Add the metrics, the HTML copy and the scrubbed notebook to the staging folder, then move
    everything into place; returns the scraps."""
    nb = scrub(nb, root)
    scraps = read_scraps(nb)
    metrics = json.dumps(json_metrics(scraps), indent=2, sort_keys=True) + "\n"
    write_text_atomic(layout.staging / layout.metrics, metrics)
    if html:
        write_text_atomic(layout.staging / layout.html, to_html(nb))
    write_text_atomic(layout.staging / layout.notebook, nbformat.writes(nb) + "\n")
    commit_staged(layout.staging, layout.target, declared_outputs(root, layout.stage))
    layout.failed.unlink(missing_ok=True)
    return scraps


def run_notebook(
    notebook: Path | str,
    root: Path,
    params_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    html: bool = True,
    kernel: bool = False,
    output_root: Path | None = None,
) -> NotebookRun:
    """Execute one notebook stage; its outputs are replaced only when every cell succeeded.

    The parameters (the stage's params.yaml section and the overrides) are validated before
    the first cell. The cells write their outputs through `faultwatch.paths.output`, which
    points into a staging folder while the notebook runs; the runner adds the executed
    notebook, its HTML copy and the metrics, then moves everything into place under
    `output_root` (the project root for a pipeline stage; another folder for an ad-hoc run,
    which then leaves the pipeline's outputs alone). By default cells run in this process
    (faultwatch.engine): the same notebook semantics without a kernel start. `kernel=True`
    runs a Jupyter kernel as JupyterLab does. Each code cell is announced on stderr as it
    starts (faultwatch.progress).
    """
    src = Path(notebook)
    src = src if src.is_absolute() else root / src
    # a model group's folder runs the project's notebooks: ../../notebooks/01_eda.ipynb
    rel = src.relative_to(root) if src.is_relative_to(root) else _relative(src, root)
    stage = stage_name(src)
    nb_in = nbformat.read(src, as_version=4)
    nb_in.metadata["path"] = str(rel)
    parameters = stage_parameters(stage, nb_in, params_file or root / "params.yaml", overrides)

    (root / STAGING_DIR).mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f"{src.stem}-", dir=root / STAGING_DIR))
    layout = _Layout(src, rel, stage, output_root or root, staging)
    t0 = time.monotonic()
    try:
        nb = _execute(layout, root, parameters, kernel)
        scraps = _stage_outputs(layout, root, nb, html)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return NotebookRun(
        stage,
        layout.target / layout.notebook,
        layout.target / layout.html,
        layout.target / layout.metrics,
        scraps,
        cells=sum(c.cell_type == "code" for c in nb.cells),
        seconds=time.monotonic() - t0,
    )
