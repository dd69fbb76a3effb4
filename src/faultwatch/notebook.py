"""The notebook runner: one notebook = one pipeline stage.

papermill injects the stage's params.yaml section, the executed copy and an HTML copy go
under reports/notebooks/, the scraps become reports/metrics/<stage>.json. Outputs are replaced
only when every cell ran; volatile metadata (timestamps, durations, paths) is dropped so the
same inputs give the same bytes.
"""

from __future__ import annotations

import ast
import json
import os
import re
import sys
import tempfile
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# jsonschema's optional IRI checker (rfc3987-syntax, pulled in by jupyter-events) compiles a
# grammar on import: 1-1.5 s of every stage start. Notebook validation never checks IRIs.
sys.modules.setdefault("rfc3987_syntax", None)  # type: ignore[arg-type]

import nbformat

from faultwatch.errors import FaultwatchError, ParamsError
from faultwatch.params import SECTIONS, load_params, section
from faultwatch.paths import write_text_atomic
from faultwatch.scraps import json_metrics, read_scraps


class NotebookFailed(FaultwatchError):
    """A cell raised: the message names the notebook, the cell and the error."""


@dataclass(frozen=True)
class NotebookRun:
    stage: str
    notebook: Path
    html: Path
    metrics: Path
    scraps: dict[str, Any]


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


def stage_parameters(stage: str, nb: nbformat.NotebookNode, params_file: Path) -> dict[str, Any]:
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
    return values


VOLATILE_CELL_KEYS = ("papermill", "execution", "ploomber")
VOLATILE_NB_KEYS = (
    "start_time",
    "end_time",
    "duration",
    "input_path",
    "output_path",
    "environment_variables",
)


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
def _stage_context(root: Path) -> Iterator[None]:
    """FAULTWATCH_ROOT for the cells (and a kernel's environment), quiet scrapbook warnings."""
    before = os.environ.get("FAULTWATCH_ROOT")
    os.environ["FAULTWATCH_ROOT"] = str(root)
    try:
        with warnings.catch_warnings():
            # scrapbook warns that glue saw no kernel when cells run in-process; glue still works
            warnings.filterwarnings("ignore", message="No kernel detected")
            yield
    finally:
        if before is None:
            os.environ.pop("FAULTWATCH_ROOT", None)
        else:
            os.environ["FAULTWATCH_ROOT"] = before


def to_html(nb: nbformat.NotebookNode) -> str:
    from nbconvert import HTMLExporter

    with warnings.catch_warnings():
        # scraps have no HTML form; nbconvert warns once per glued value
        warnings.filterwarnings("ignore", message="Your element with mimetype")
        body, _ = HTMLExporter(template_name="lab").from_notebook_node(nb)
    return body


def run_notebook(
    notebook: Path | str,
    root: Path,
    params_file: Path | None = None,
    overrides: dict[str, Any] | None = None,
    html: bool = True,
    kernel: bool = False,
) -> NotebookRun:
    """Execute one notebook stage; outputs are only replaced when it succeeds.

    By default cells run in this process (faultwatch.engine): the same
    notebook semantics without a kernel start. `kernel=True` runs a Jupyter kernel as
    JupyterLab does.
    """
    import papermill as pm
    from papermill.exceptions import PapermillExecutionError

    from faultwatch.engine import register as register_engine

    src = Path(notebook)
    src = src if src.is_absolute() else root / src
    rel = src.relative_to(root) if src.is_relative_to(root) else src
    stage = stage_name(src)
    nb_in = nbformat.read(src, as_version=4)
    nb_in.metadata["path"] = str(rel)
    params_file = params_file or root / "params.yaml"
    parameters = {**stage_parameters(stage, nb_in, params_file), **(overrides or {})}

    out_nb = root / "reports" / "notebooks" / f"{src.stem}.ipynb"
    out_html = out_nb.with_suffix(".html")
    out_metrics = root / "reports" / "metrics" / f"{stage}.json"
    failed = out_nb.with_suffix(".failed.ipynb")
    out_nb.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{src.stem}.", suffix=".ipynb", dir=out_nb.parent)
    os.close(fd)
    try:
        with _stage_context(root):
            nb = pm.execute_notebook(
                str(src),
                tmp,
                parameters=parameters,
                cwd=str(root),
                engine_name=None if kernel else register_engine(),
                progress_bar=False,
                log_output=False,
            )
    except PapermillExecutionError as e:
        os.replace(tmp, failed)
        source = "\n".join("    " + line for line in e.source.splitlines()[-8:])
        raise NotebookFailed(
            f"{rel}: cell {e.cell_index} (execution {e.exec_count}) raised {e.ename}: {e.evalue}\n"
            f"{source}\n(the failed run is saved as {failed.relative_to(root)}; "
            f"earlier outputs are unchanged)"
        ) from None
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    Path(tmp).unlink(missing_ok=True)
    failed.unlink(missing_ok=True)
    nb = scrub(nb, root)
    scraps = read_scraps(nb)
    write_text_atomic(
        out_metrics, json.dumps(json_metrics(scraps), indent=2, sort_keys=True) + "\n"
    )
    if html:
        write_text_atomic(out_html, to_html(nb))
    write_text_atomic(out_nb, nbformat.writes(nb) + "\n")
    return NotebookRun(stage, out_nb, out_html, out_metrics, scraps)
