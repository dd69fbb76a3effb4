"""The notebook runner on a tiny notebook and on the real 01_eda.ipynb with tiny params."""

from __future__ import annotations

import json

import nbformat
import pytest
import yaml
from helpers.cli import run
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
    # cells: parameters (0), injected parameters (1), imports (2), the failing one (3)
    assert msg.splitlines()[0] == (
        "notebooks/07_sum.ipynb: cell 3 (execution 4) raised ValueError: bad value 40"
    )
    assert msg.splitlines()[2] == "    raise ValueError(f'bad value {a}')"
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
    metrics = "reports/adhoc/07_sum/reports/metrics/sum.json"  # -p: an ad-hoc run
    assert f"wrote {metrics}" in proc.stdout.splitlines()
    # each cell announced on stderr as it starts; the last line says what, where and what next
    assert "[sum] cell 2/5: (parameters)\n[sum] cell 3/5: import scrapbook as sb\n" in proc.stderr
    last = proc.stdout.splitlines()[-1]
    assert last.startswith("done: 07_sum.ipynb executed (5 cells, "), last
    assert last.endswith(
        " s) in reports/adhoc/07_sum; next: jupyter lab reports/adhoc/07_sum/reports/notebooks/"
        "07_sum.ipynb"
    ), last
    assert json.loads((tiny_project / metrics).read_text())["total"] == 45


def test_cli_reports_a_failing_cell(tiny_project):
    tiny_notebook(tiny_project / "notebooks" / "07_sum.ipynb", body="1 / 0")
    proc = run(["faultwatch", "nb", "run", "notebooks/07_sum.ipynb"], tiny_project, check=False)
    assert proc.returncode == 1
    # the failing cell's source in the error (not only in the cell's progress line)
    assert "ZeroDivisionError" in proc.stderr and "\n    1 / 0\n" in proc.stderr
    assert "done:" not in proc.stdout


@pytest.mark.slow
def test_real_eda_notebook_on_tiny_data(project):
    run(["faultwatch", "prepare"], project)
    proc = run(
        ["faultwatch", "nb", "run", "notebooks/01_eda.ipynb", "-p", "examples_per_class=1"],
        project,
    )
    # an ad-hoc run of a pipeline stage: the same change as a DVC experiment is what comes next
    assert proc.stdout.splitlines()[-1].endswith(
        "s) in reports/adhoc/01_eda; next: dvc exp run -S eda.examples_per_class=1 (the same "
        "change as an experiment of the pipeline)"
    ), proc.stdout
    out = project / "reports/adhoc/01_eda"  # -p: an ad-hoc run, beside the stage's outputs
    m = json.loads((out / "reports/metrics/eda.json").read_text())
    assert m["n_signals"] == 52 and m["n_fault"] == 12 and m["n_classes"] == 3
    assert m["fault_ratio"] == pytest.approx(12 / 52, abs=1e-6)
    assert m["always_healthy_accuracy"] == pytest.approx(40 / 52, abs=1e-6)
    assert m["quality"]["n_nonfinite_values"] == 0
    nb = nbformat.read(out / "reports/notebooks/01_eda.ipynb", 4)
    assert (
        sum(1 for c in nb.cells for o in c.get("outputs", []) if "image/png" in o.get("data", {}))
        >= 3
    )


@pytest.mark.parametrize(
    "body, ename",
    [
        ("import sys\nsys.exit(3)", "SystemExit: 3"),
        ("raise KeyboardInterrupt", "KeyboardInterrupt"),
    ],
)
def test_exit_and_interrupt_in_a_cell_are_named_like_any_error(tiny_project, body, ename):
    r = run_notebook("notebooks/07_sum.ipynb", tiny_project)
    before = r.notebook.read_bytes(), r.metrics.read_bytes()
    tiny_notebook(tiny_project / "notebooks" / "07_sum.ipynb", body=body)
    with pytest.raises(NotebookFailed) as e:
        run_notebook("notebooks/07_sum.ipynb", tiny_project)
    assert str(e.value).startswith(f"notebooks/07_sum.ipynb: cell 3 (execution 4) raised {ename}")
    assert (tiny_project / "reports/notebooks/07_sum.failed.ipynb").is_file()
    assert (r.notebook.read_bytes(), r.metrics.read_bytes()) == before


STAGED = """from faultwatch.paths import output
d = output('models/m')
d.mkdir(parents=True, exist_ok=True)
(d / f'w{a}.txt').write_text(str(a))
output('reports/x.txt').write_text(label)
"""


def test_cell_outputs_are_moved_into_place_only_when_every_cell_succeeds(tiny_project):
    # dvc.yaml declares models/m as one output of the stage: it is replaced as a whole
    (tiny_project / "dvc.yaml").write_text(
        yaml.safe_dump({"stages": {"sum": {"cmd": "x", "outs": ["models/m", "reports/x.txt"]}}})
    )
    tiny_notebook(tiny_project / "notebooks" / "07_sum.ipynb", body=STAGED)
    run_notebook("notebooks/07_sum.ipynb", tiny_project)
    assert sorted(p.name for p in (tiny_project / "models/m").iterdir()) == ["w40.txt"]
    assert (tiny_project / "reports/x.txt").read_text() == "injected"

    # the cells write new outputs, then the last cell fails: nothing of this run is kept
    tiny_notebook(tiny_project / "notebooks" / "07_sum.ipynb", body=STAGED + "1 / 0")
    with pytest.raises(NotebookFailed):
        run_notebook("notebooks/07_sum.ipynb", tiny_project, overrides={"a": 7, "label": "new"})
    assert sorted(p.name for p in (tiny_project / "models/m").iterdir()) == ["w40.txt"]
    assert (tiny_project / "reports/x.txt").read_text() == "injected"
    assert list((tiny_project / ".faultwatch/staging").iterdir()) == []

    # success: the folder is replaced whole (no stale w40.txt beside w7.txt)
    tiny_notebook(tiny_project / "notebooks" / "07_sum.ipynb", body=STAGED)
    run_notebook("notebooks/07_sum.ipynb", tiny_project, overrides={"a": 7, "label": "new"})
    assert sorted(p.name for p in (tiny_project / "models/m").iterdir()) == ["w7.txt"]
    assert (tiny_project / "reports/x.txt").read_text() == "new"


def test_unknown_cli_override_is_an_error(tiny_project):
    proc = run(
        ["faultwatch", "nb", "run", "notebooks/07_sum.ipynb", "-p", "unknown_name=3"],
        tiny_project,
        check=False,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip() == (
        "error: -p unknown_name: the notebook's parameters cell has no such name "
        "(it has: a, b, label)"
    )
    assert not (tiny_project / "reports").exists()


def test_adhoc_run_writes_beside_the_pipeline_outputs(tiny_project):
    run(["faultwatch", "nb", "run", "notebooks/07_sum.ipynb"], tiny_project)
    stage = tiny_project / "reports/metrics/sum.json"
    before = stage.read_bytes()
    proc = run(["faultwatch", "nb", "run", "notebooks/07_sum.ipynb", "-p", "b=5"], tiny_project)
    adhoc = tiny_project / "reports/adhoc/07_sum/reports/metrics/sum.json"
    assert "wrote reports/adhoc/07_sum/reports/metrics/sum.json" in proc.stdout.splitlines()
    assert json.loads(adhoc.read_text())["total"] == 45
    assert stage.read_bytes() == before
    out = tiny_project / "elsewhere"
    run(
        ["faultwatch", "nb", "run", "notebooks/07_sum.ipynb", "-p", "b=6", "--output", str(out)],
        tiny_project,
    )
    assert json.loads((out / "reports/metrics/sum.json").read_text())["total"] == 46
    assert stage.read_bytes() == before


def test_a_notebook_opened_in_jupyterlab_writes_under_reports_adhoc(tmp_path, monkeypatch):
    from faultwatch.paths import output

    monkeypatch.delenv("FAULTWATCH_STAGING", raising=False)
    monkeypatch.delenv("JPY_SESSION_NAME", raising=False)
    assert output("models/m", tmp_path) == tmp_path / "models/m"  # a script, a test
    # Jupyter Server names the notebook in the environment of the kernel it starts for it
    monkeypatch.setenv("JPY_SESSION_NAME", str(tmp_path / "notebooks/03_train.ipynb"))
    assert output("models/m", tmp_path) == tmp_path / "reports/adhoc/03_train/models/m"
    assert output(tmp_path.parent / "elsewhere", tmp_path) == tmp_path.parent / "elsewhere"
    # the runner's staging folder wins (`faultwatch nb run` started from a notebook cell)
    monkeypatch.setenv("FAULTWATCH_STAGING", str(tmp_path / "staging"))
    assert output("models/m", tmp_path) == tmp_path / "staging/models/m"
