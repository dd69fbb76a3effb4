"""A papermill engine that runs cells in this process (no kernel start, ~6 s saved per stage).

ploomber-engine provides the IPython shell that captures outputs, displays and figures; its own
papermill engine ("embedded") loses the failing cell on an error (it inserts marker cells
before reporting), so this engine drives the shell itself and records the error the way a
Jupyter kernel does: an `error` output on the failing cell, which papermill turns into a
PapermillExecutionError naming the cell.

Both engines here (this one and `KernelEngine`, papermill's own with a Jupyter kernel) print one
progress line per code cell when given `progress_label` (faultwatch.progress): which cell of
which stage runs now, on the terminal, never in the notebook.
"""

from __future__ import annotations

import traceback
from typing import Any

import nbformat
from papermill.engines import Engine, NBClientEngine, papermill_engines

from faultwatch import progress

NAME = "faultwatch-inprocess"
KERNEL_NAME = "faultwatch-kernel"
_MARKER_TAG = "ploomber-engine-error-cell"


class InProcessEngine(Engine):
    @classmethod
    def execute_managed_notebook(
        cls, nb_man: Any, kernel_name: str | None, progress_label: str | None = None, **kwargs: Any
    ) -> Any:
        from ploomber_engine.ipython import PloomberClient

        announce_cells(nb_man, progress_label)
        nb = nb_man.nb
        cells = list(nb.cells)
        client = PloomberClient(nb, progress_bar=False, cwd=".")
        with client:
            count = 1
            for index, cell in enumerate(cells):
                if cell.cell_type != "code":
                    continue
                nb_man.cell_start(cell, index)
                try:
                    client.execute_cell(
                        cell, cell_index=index, execution_count=count, store_history=False
                    )
                except BaseException as exc:  # SystemExit, KeyboardInterrupt: the same named error
                    nb.cells = [
                        c for c in nb.cells if _MARKER_TAG not in c.metadata.get("tags", [])
                    ]
                    cell.outputs.append(_error_output(exc))
                    nb_man.cell_exception(cell, cell_index=index, exception=exc)
                    nb_man.cell_complete(cell, cell_index=index)
                    break
                nb_man.cell_complete(cell, cell_index=index)
                count += 1
        return nb


class KernelEngine(NBClientEngine):
    """papermill's engine (a Jupyter kernel, as JupyterLab runs the notebook), announcing cells."""

    @classmethod
    def execute_managed_notebook(
        cls, nb_man: Any, kernel_name: str | None, progress_label: str | None = None, **kwargs: Any
    ) -> Any:
        announce_cells(nb_man, progress_label)
        return super().execute_managed_notebook(nb_man, kernel_name, **kwargs)


def cell_headline(source: str, width: int = 60) -> str:
    """The first non-blank line of a cell, shortened to `width` characters."""
    line = next((ln.strip() for ln in source.splitlines() if ln.strip()), "")
    return line if len(line) <= width else line[: width - 3] + "..."


def announce_cells(nb_man: Any, label: str | None) -> None:
    """Make papermill's execution manager print `[label] cell i/n: first line` as each code cell
    starts (this manager only: it is made anew for each notebook)."""
    if not label:
        return
    code = [i for i, c in enumerate(nb_man.nb.cells) if c.cell_type == "code"]
    start = nb_man.cell_start

    def cell_start(cell: Any, cell_index: int | None = None, **kwargs: Any) -> Any:
        if cell_index in code:
            tags = cell.get("metadata", {}).get("tags", [])
            what = "(parameters)" if "injected-parameters" in tags else cell_headline(cell.source)
            progress.step(f"[{label}] cell {code.index(cell_index) + 1}/{len(code)}: {what}")
        return start(cell, cell_index, **kwargs)

    nb_man.cell_start = cell_start


def _error_output(exc: BaseException) -> nbformat.NotebookNode:
    tb = traceback.format_exception(exc)
    # drop the frames of this engine and IPython: the user's cell is what matters
    cell_frames = [line for line in tb if "<ipython-input" in line or "/tmp/ipykernel" in line]
    return nbformat.v4.new_output(
        "error",
        ename=type(exc).__name__,
        evalue=str(exc),
        traceback=cell_frames + [tb[-1]] if cell_frames else tb,
    )


def register(kernel: bool = False) -> str:
    """Make the engine known to papermill (idempotent); returns its name. `kernel`: the one
    that runs cells in a Jupyter kernel."""
    name, engine = (KERNEL_NAME, KernelEngine) if kernel else (NAME, InProcessEngine)
    if name not in papermill_engines._engines:
        papermill_engines.register(name, engine)
    return name
