"""The `prepare` command as DVC calls it: a bad file or param fails clearly and loses nothing."""

from __future__ import annotations

import hashlib
import os
import subprocess

import pytest
import yaml
from helpers.cli import run
from helpers.datafiles import write_tsv
from helpers.paths import VENV_BIN
from helpers.signals import make_signals


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
    # a UEA multivariate set (6 sensor channels per signal) whose last row lost a channel
    "multivariate.ts": (
        "@problemName pumps6\n@univariate false\n@dimensions 6\n@equalLength true\n"
        "@classLabel true fault ok\n@data\n"
        + "".join(
            ":".join(",".join(str(c + i / 8) for i in range(24)) for c in range(n)) + f":{lab}\n"
            for lab, n in (("fault", 6), ("ok", 6), ("ok", 5))
        ),
        "row 9: rule 'channels_match' failed: channels found: 5 channel(s); every signal must "
        "have the channels 'dim_0', 'dim_1', 'dim_2', 'dim_3', 'dim_4', 'dim_5' (from "
        "@dimensions 6)",
    ),
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


def test_the_next_command_can_be_pasted_without_the_venv_on_path(project):
    """After `make run` the venv is not on the person's PATH: the hint names the venv's tools by
    their path from the project root (.venv/bin/dvc), and bare where PATH finds the same."""
    write_tsv(make_signals(60, 20), project / "data/raw/tiny.tsv")
    skip = ("DVC_STAGE", "FAULTWATCH_ROOT", "MAKELEVEL")
    plain = {k: v for k, v in os.environ.items() if k not in skip}
    argv = [str(project / ".venv/bin/faultwatch"), "prepare"]
    venv_first = f"{VENV_BIN}:/usr/bin:/bin"
    for path, make, dvc in (
        (venv_first, {}, "dvc"),  # an activated venv
        ("/usr/bin:/bin", {}, ".venv/bin/dvc"),  # a shell after `make run`
        (venv_first, {"MAKELEVEL": "1"}, ".venv/bin/dvc"),  # in `make run`: make's PATH
    ):
        env = {**plain, **make, "PATH": path}
        proc = subprocess.run(argv, cwd=project, env=env, capture_output=True, text=True)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.splitlines()[-1].endswith(
            f"; next: {dvc} repro (the stages after prepare)"
        )
    # from a folder below the root, the same tool, relative to there
    below = {"cwd": project / "data", "env": {**plain, "PATH": "/usr/bin:/bin"}}
    proc = subprocess.run(argv, capture_output=True, text=True, **below)
    assert proc.stdout.splitlines()[-1].endswith(
        "; next: ../.venv/bin/dvc repro (the stages after prepare)"
    )


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
