"""What every notebook runs with: params.yaml's section, the notebook's parameters cell and the
stage's params class agree; each notebook builds its params from its parameters cell; `-p`
overrides and `--params` files are validated as params.yaml is, before the first cell."""

from __future__ import annotations

import ast
import json
import re
from pathlib import Path
from typing import Any

import nbformat
import pytest
import yaml
from helpers.cli import run
from helpers.paths import REPO
from nbformat.v4 import new_code_cell, new_notebook

from faultwatch.errors import ParamsError
from faultwatch.notebook import stage_name, stage_parameters
from faultwatch.params import SECTIONS, load_params, section_model

NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))


def parameters_cell(nb: nbformat.NotebookNode) -> nbformat.NotebookNode:
    return next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))


def cell_values(nb: nbformat.NotebookNode) -> dict[str, Any]:
    """name -> value of every assignment in the parameters cell (all literals)."""
    body = ast.parse(parameters_cell(nb).source).body
    assert all(isinstance(n, ast.Assign) and len(n.targets) == 1 for n in body)
    return {n.targets[0].id: ast.literal_eval(n.value) for n in body}


def test_every_stage_notebook_is_found():
    stages = ["eda", "augment", "train", "evaluate", "monitor", "review"]
    assert [stage_name(p) for p in NOTEBOOKS] == stages


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_params_yaml_parameters_cell_and_params_class_agree(path: Path):
    nb = nbformat.read(path, as_version=4)
    stage = stage_name(path)
    model = section_model(stage)
    values = cell_values(nb)
    raw = load_params(REPO / "params.yaml")
    # a name that is another section (01_eda's `quality`) holds that section as a dict
    shared = sorted((set(values) & set(SECTIONS)) - {stage})
    own = {k: v for k, v in values.items() if k not in shared}
    assert sorted(own) == sorted(model.model_fields)  # every field, nothing else
    assert own == model().model_dump()  # the cell's values are the class's defaults ...
    assert raw[stage] == own  # ... and params.yaml's, as written ...
    assert model.model_validate(raw[stage]).model_dump() == own  # ... and once validated
    for name in shared:
        other = section_model(name)
        assert values[name] == other().model_dump() == raw[name]
        assert other.model_validate(raw[name]).model_dump() == values[name]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_each_notebook_builds_its_params_from_its_parameters_cell(path: Path):
    nb = nbformat.read(path, as_version=4)
    model = section_model(stage_name(path)).__name__
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert re.search(rf"\bparams = [\w.]*\b{model}\.from_names\(globals\(\)\)", code), model
    # after that line, the cells read the stage's own values from `params`, not the bare names
    first = next(i for i, c in enumerate(nb.cells) if f"{model}.from_names" in c.source)
    later = "\n".join(c.source for c in nb.cells[first + 1 :] if c.cell_type == "code")
    names = {n.id for n in ast.walk(ast.parse(later)) if isinstance(n, ast.Name)}
    assert not names & set(section_model(stage_name(path)).model_fields)


# one bad value per stage, and the start of the message that names it
BAD_OVERRIDES = {
    "eda": ("examples_per_class", 0, "greater than or equal to 1"),
    "augment": ("rebalance", "sometimes", "Input should be 'oversample', 'case_control'"),
    "train": ("lr_schedule", "linear", "Input should be 'constant' or 'cosine'"),
    "evaluate": ("baseline_model", "svm", "Input should be 'random_forest'"),
    "monitor": ("stattest", "ks", "unknown stattest 'ks'"),
    "review": ("url", "localhost:3000", "expected http://HOST:PORT"),
}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_a_bad_override_fails_with_its_key_and_rule(path: Path):
    nb = nbformat.read(path, as_version=4)
    stage = stage_name(path)
    key, bad, rule = BAD_OVERRIDES[stage]
    good = stage_parameters(
        stage, nb, REPO / "params.yaml", {key: getattr(section_model(stage)(), key)}
    )
    assert good[key] == cell_values(nb)[key]
    with pytest.raises(ParamsError) as e:
        stage_parameters(stage, nb, REPO / "params.yaml", {key: bad})
    assert str(e.value).startswith(f"-p: {stage}.{key}: "), str(e.value)
    assert rule in str(e.value)


def test_an_override_of_another_section_is_checked_as_that_section():
    path = REPO / "notebooks" / "01_eda.ipynb"
    nb = nbformat.read(path, as_version=4)
    ok = stage_parameters("eda", nb, REPO / "params.yaml", {"quality": {"stuck_run": 5}})
    assert ok["quality"] == {"stuck_run": 5}  # injected as given: the cells read the whole dict
    with pytest.raises(ParamsError, match=r"^-p: quality\.stuck_run: .*greater than or equal to 2"):
        stage_parameters("eda", nb, REPO / "params.yaml", {"quality": {"stuck_run": 1}})
    with pytest.raises(ParamsError, match=r"^-p: quality\.stuck_rn: Extra inputs .*'stuck_run'"):
        stage_parameters("eda", nb, REPO / "params.yaml", {"quality": {"stuck_rn": 3}})


# ------------------------------------------------ through the CLI, on a notebook of stage `evaluate`
BODY = """import scrapbook as sb
from faultwatch.evaluate import EvaluateParams
params = EvaluateParams.from_names(globals())
sb.glue('worst_n', params.worst_n)
"""


@pytest.fixture
def evaluate_project(tmp_path: Path) -> Path:
    """A project whose 04_evaluate notebook has the real parameters cell and one quick cell."""
    real = nbformat.read(REPO / "notebooks" / "04_evaluate.ipynb", as_version=4)
    cells = [parameters_cell(real), new_code_cell(BODY)]
    cells[1]["id"] = "body"
    nb = new_notebook(cells=cells, metadata=real.metadata)
    (tmp_path / "notebooks").mkdir()
    nbformat.write(nb, tmp_path / "notebooks" / "04_evaluate.ipynb")
    params = load_params(REPO / "params.yaml")
    (tmp_path / "params.yaml").write_text(yaml.safe_dump({"evaluate": params["evaluate"]}))
    return tmp_path


def outputs(root: Path) -> dict[str, bytes]:
    reports = root / "reports"
    return {str(p.relative_to(root)): p.read_bytes() for p in reports.rglob("*") if p.is_file()}


def nb_run(root: Path, *args: str):
    return run(["faultwatch", "nb", "run", "notebooks/04_evaluate.ipynb", *args], root, check=False)


def test_bad_overrides_and_params_files_fail_before_any_cell_and_leave_the_outputs(
    evaluate_project: Path,
):
    root = evaluate_project
    first = nb_run(root, "--no-html")
    assert first.returncode == 0, first.stderr
    assert json.loads((root / "reports/metrics/evaluate.json").read_text()) == {"worst_n": 6}
    before = outputs(root)

    rule = "Input should be greater than or equal to 1"
    # an ad-hoc run (-p) and one over the pipeline's own outputs (--output the root)
    for extra in ((), ("--output", str(root))):
        proc = nb_run(root, "-p", "worst_n=-3", *extra)
        assert proc.returncode == 1, proc.stdout
        assert proc.stderr.strip() == f"error: -p: evaluate.worst_n: {rule}", proc.stderr
        assert "cell" not in proc.stderr  # no cell started
    # the first of two bad overrides is named with its rule, and so is the second
    proc = nb_run(root, "-p", "worst_n=0", "-p", "baseline_n_estimators=zero")
    assert proc.returncode == 1
    assert proc.stderr.splitlines() == [
        "error: -p: evaluate.baseline_n_estimators: Input should be a valid integer, unable to "
        "parse string as an integer",
        f"-p: evaluate.worst_n: {rule}",
    ]

    bad = root / "other.yaml"
    bad.write_text(yaml.safe_dump({"evaluate": {"worst_n": 0}}))
    proc = nb_run(root, "--params", str(bad), "--output", str(root))
    assert proc.returncode == 1
    assert proc.stderr.strip() == f"error: other.yaml: evaluate.worst_n: {rule}"
    bad.write_text(yaml.safe_dump({"evaluate": {"worst_m": 2}}))
    proc = nb_run(root, "--params", str(bad))
    assert proc.returncode == 1
    assert proc.stderr.strip().startswith("error: other.yaml: evaluate.worst_m: Extra inputs")

    assert outputs(root) == before  # nothing written, nothing replaced
    assert not (root / "reports/adhoc").exists()
    assert list((root / ".faultwatch/staging").iterdir()) == []

    good = nb_run(root, "-p", "worst_n=2", "--no-html")  # the same run with a good value
    assert good.returncode == 0, good.stderr
    adhoc = root / "reports/adhoc/04_evaluate/reports/metrics/evaluate.json"
    assert json.loads(adhoc.read_text()) == {"worst_n": 2}
