"""The `prepare` command as DVC calls it: a bad file or param fails clearly and loses nothing."""

from __future__ import annotations

import hashlib

import pytest
import yaml
from conftest import make_signals, run, write_tsv


def digests(project):
    outs = sorted((project / "data/prepared").glob("*.parquet")) + [
        project / "reports/metrics/prepare.json"
    ]
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in outs}


def set_params(project, **data):
    p = yaml.safe_load((project / "params.yaml").read_text())
    p["data"].update(data)
    (project / "params.yaml").write_text(yaml.safe_dump(p))


BAD_FILES = {
    "nan.tsv": ("fault\t1.0\tNaN\t" + "\t".join(["2.0"] * 30) + "\n", "rule 'values_finite'"),
    "one_class.tsv": (
        "".join("fault\t" + "\t".join(["1.5"] * 30) + "\n" for _ in range(9)),
        "at_least_two_classes",
    ),
    "data.xlsx": ("fault,1,2,3\n", "unknown extension '.xlsx'"),
    "comma.tsv": ("fault,1,2,3\n", "one column found: is the file tab-separated?"),
    "empty.tsv": ("", "the file is empty"),
}


@pytest.mark.parametrize("name", sorted(BAD_FILES))
def test_bad_data_file_exits_nonzero_and_keeps_outputs(project, name):
    run(["faultwatch", "prepare"], project)
    before = digests(project)
    text, expected = BAD_FILES[name]
    (project / "data/raw" / name).write_text(text)
    set_params(project, source=f"data/raw/{name}")
    proc = run(["faultwatch", "prepare"], project, check=False)
    assert proc.returncode != 0
    assert f"data/raw/{name}" in proc.stderr and expected in proc.stderr
    assert "Traceback" not in proc.stderr
    assert digests(project) == before


def test_missing_label_column_in_parquet(project):
    df = make_signals()
    df.assign(values=df["values"].map(list)).drop(columns="label").to_parquet(
        project / "data/raw/x.parquet"
    )
    set_params(project, source="data/raw/x.parquet")
    proc = run(["faultwatch", "prepare"], project, check=False)
    assert proc.returncode == 1
    assert proc.stderr == (
        "error: data/raw/x.parquet: rule 'label_present' failed: "
        "no 'label' column (columns: id, values)\n"
    )


def test_bad_param_names_the_key(project):
    set_params(project, min_length="short")
    proc = run(["faultwatch", "prepare"], project, check=False)
    assert proc.returncode == 1
    assert "params.yaml: data.min_length: Input should be a valid integer" in proc.stderr


def test_prepare_prints_the_split(project):
    write_tsv(make_signals(60, 20), project / "data/raw/tiny.tsv")
    out = run(["faultwatch", "prepare"], project).stdout
    assert out.splitlines() == [
        "train: 40 signals, 10 fault (25.0%)",
        "val: 20 signals, 5 fault (25.0%)",
        "test: 20 signals, 5 fault (25.0%)",
        "done: train, val and test splits (80 signals) in data/prepared; "
        "next: dvc repro (the stages after prepare)",
    ]


def test_a_dvc_experiment_copy_uses_its_projects_bentoml_store(tmp_path, monkeypatch):
    """`dvc exp run --queue`/`--temp` run the stages in <project>/.dvc/tmp/exps/...: the model
    they register must land in the project's store, where `dvc exp apply` expects it."""
    from faultwatch.paths import bentoml_home, experiment_home

    monkeypatch.delenv("BENTOML_HOME", raising=False)
    project = tmp_path / "proj"
    copy = project / ".dvc/tmp/exps/run/a1b2c3"
    copy.mkdir(parents=True)
    assert experiment_home(copy) == project.resolve()
    assert bentoml_home(copy) == project.resolve() / ".bentoml"
    assert experiment_home(project) is None
    assert bentoml_home(project) == project / ".bentoml"
    # a folder merely named exps elsewhere is not an experiment copy
    assert experiment_home(tmp_path / "tmp/exps/x") is None
    monkeypatch.setenv("BENTOML_HOME", str(tmp_path / "elsewhere"))
    assert bentoml_home(copy) == (tmp_path / "elsewhere").resolve()
