"""The notebook runner on a tiny notebook and on the real 01_eda.ipynb with tiny params."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml
from conftest import run
from nbformat.v4 import new_code_cell, new_notebook

from faultwatch.errors import ParamsError
from faultwatch.notebook import NotebookFailed, run_notebook
from faultwatch.scraps import read_scraps


def tiny_notebook(path, body="sb.glue('total', a + b)\nsb.glue('where', label)"):
    cells = [
        new_code_cell("a = 1\nb = 2\nlabel = 'x'", metadata={"tags": ["parameters"]}),
        new_code_cell("import scrapbook as sb\nimport pandas as pd"),
        new_code_cell(body),
        new_code_cell(
            "sb.glue('frame', pd.DataFrame({'n': [a, b]}), encoder='pandas')\nprint('done')"
        ),
    ]
    for i, c in enumerate(cells):
        c["id"] = f"c{i}"
    nb = new_notebook(
        cells=cells,
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture
def tiny_project(tmp_path):
    (tmp_path / "params.yaml").write_text(
        yaml.safe_dump({"sum": {"a": 40, "b": 2, "label": "injected"}})
    )
    tiny_notebook(tmp_path / "notebooks" / "07_sum.ipynb")
    return tmp_path


def test_params_injected_scraps_written_no_volatile_metadata(tiny_project):
    r = run_notebook("notebooks/07_sum.ipynb", tiny_project)
    assert r.stage == "sum"
    metrics = json.loads((tiny_project / "reports/metrics/sum.json").read_text())
    assert metrics == {
        "total": 42,
        "where": "injected",
    }  # the DataFrame scrap stays in the notebook
    assert read_scraps(nbformat.read(r.notebook, 4))["frame"]["n"].tolist() == [40, 2]
    text = r.notebook.read_text()
    for volatile in ("start_time", "end_time", "duration", "timestamp", str(tiny_project)):
        assert volatile not in text
    assert r.html.exists() and "injected" in r.html.read_text()
    first = r.notebook.read_bytes(), r.html.read_bytes()
    run_notebook("notebooks/07_sum.ipynb", tiny_project)
    assert (r.notebook.read_bytes(), r.html.read_bytes()) == first


def test_failing_cell_fails_the_stage_and_keeps_outputs(tiny_project):
    r = run_notebook("notebooks/07_sum.ipynb", tiny_project)
    before = r.notebook.read_bytes(), r.metrics.read_bytes()
    tiny_notebook(
        tiny_project / "notebooks" / "07_sum.ipynb",
        body="x = 1\nraise ValueError(f'bad value {a}')",
    )
    with pytest.raises(NotebookFailed) as e:
        run_notebook("notebooks/07_sum.ipynb", tiny_project)
    msg = str(e.value)
    assert "notebooks/07_sum.ipynb: cell" in msg and "ValueError: bad value 40" in msg
    assert "raise ValueError(f'bad value {a}')" in msg
    assert (r.notebook.read_bytes(), r.metrics.read_bytes()) == before
    assert (tiny_project / "reports/notebooks/07_sum.failed.ipynb").exists()


def test_unknown_param_is_refused(tiny_project):
    (tiny_project / "params.yaml").write_text(yaml.safe_dump({"sum": {"a": 1, "c": 2}}))
    with pytest.raises(
        ParamsError, match=r"params.yaml: sum.c: the notebook's parameters cell has no such name"
    ):
        run_notebook("notebooks/07_sum.ipynb", tiny_project)


def test_cli_in_a_real_jupyter_kernel(tiny_project):
    proc = run(
        ["faultwatch", "nb", "run", "notebooks/07_sum.ipynb", "--kernel", "-p", "b=5"], tiny_project
    )
    assert "wrote reports/metrics/sum.json" in proc.stdout
    assert json.loads((tiny_project / "reports/metrics/sum.json").read_text())["total"] == 45


def test_cli_reports_a_failing_cell(tiny_project):
    tiny_notebook(tiny_project / "notebooks" / "07_sum.ipynb", body="1 / 0")
    proc = run(["faultwatch", "nb", "run", "notebooks/07_sum.ipynb"], tiny_project, check=False)
    assert proc.returncode == 1
    assert "ZeroDivisionError" in proc.stderr and "1 / 0" in proc.stderr


@pytest.mark.slow
def test_real_eda_notebook_on_tiny_data(project):
    run(["faultwatch", "prepare"], project)
    run(
        ["faultwatch", "nb", "run", "notebooks/01_eda.ipynb", "-p", "examples_per_class=1"], project
    )
    m = json.loads((project / "reports/metrics/eda.json").read_text())
    assert m["n_signals"] == 52 and m["n_fault"] == 12 and m["n_classes"] == 3
    assert m["fault_ratio"] == pytest.approx(12 / 52, abs=1e-6)
    assert m["always_healthy_accuracy"] == pytest.approx(40 / 52, abs=1e-6)
    assert m["quality"]["n_nonfinite_values"] == 0
    nb = nbformat.read(project / "reports/notebooks/01_eda.ipynb", 4)
    assert (
        sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        >= 3
    )
