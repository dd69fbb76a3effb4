"""Fixtures: tiny synthetic signal sets in every format, and temporary copies of the project."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent


def make_signals(n_healthy: int = 40, n_fault: int = 12, seed: int = 0) -> pd.DataFrame:
    """Healthy: noisy sines of two kinds; fault: a sine with a burst. Lengths vary (48-80)."""
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n_healthy + n_fault):
        fault = i >= n_healthy
        n = int(rng.integers(48, 81))
        t = np.linspace(0, 4 * np.pi, n)
        label = "fault" if fault else ("pump_a" if i % 2 else "pump_b")
        v = np.sin(t * (1.0 if i % 2 else 2.0)) + 0.1 * rng.standard_normal(n)
        if fault:
            v[n // 3 : n // 3 + 8] += 3.0
        rows.append((f"s{i}", label, v.round(6)))
    return pd.DataFrame(rows, columns=["id", "label", "values"])


def write_tsv(df: pd.DataFrame, path: Path) -> Path:
    lines = [
        "\t".join([lab, *map(repr, v.tolist())])
        for lab, v in zip(df.label, df["values"], strict=True)
    ]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_ts(df: pd.DataFrame, path: Path) -> Path:
    labels = " ".join(sorted(df.label.unique()))
    head = [
        "# tiny test set",
        "@problemName tiny",
        "@univariate true",
        "@equalLength false",
        f"@classLabel true {labels}",
        "@data",
    ]
    body = [
        ",".join(map(repr, v.tolist())) + f":{lab}"
        for lab, v in zip(df.label, df["values"], strict=True)
    ]
    path.write_text("\n".join(head + body) + "\n")
    return path


def write_parquet(df: pd.DataFrame, path: Path) -> Path:
    out = df.assign(values=df["values"].map(list))
    out.to_parquet(path, index=False)
    return path


def tool_env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{VENV_BIN}{os.pathsep}{env.get('PATH', '')}"
    env["WANDB_MODE"] = "offline"
    env.pop("FAULTWATCH_ROOT", None)
    env.pop("MAKELEVEL", None)  # under `make test`: the commands' hints are the shell's, not make's
    env.update(extra)
    return env


def run(cmd: list[str], cwd: Path, check: bool = True, **env: str) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, env=tool_env(**env), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def git_commit(repo: Path, message: str) -> None:
    """Commit everything staged (or nothing) as a test author, without hooks."""
    run(
        [
            "git",
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "commit",
            "-q",
            "--allow-empty",
            "--no-verify",
            "-m",
            message,
        ],
        repo,
    )


TINY_PARAMS = {
    "data": {
        "source": "data/raw/tiny.tsv",
        "positive_label": "fault",
        "min_positive": 5,
        "min_length": 16,
        "max_length": 1000,
        "limit": None,
    },
    "split": {"seed": 7, "val_fraction": 0.25, "test_fraction": 0.25, "out_dir": "data/prepared"},
}


# short params for tests that run the whole pipeline: seconds per stage, not minutes
TINY_PIPELINE = {
    "data": {"min_positive": 5},
    "augment": {"target_fault_ratio": 0.3},
    "train": {
        "length": 64,
        "channels": [4, 8],
        "kernel_size": 5,
        "batch_size": 16,
        "max_epochs": 3,
        "patience": 3,
        "accelerator": "cpu",
        "wandb": True,
    },
    "evaluate": {"baseline_n_estimators": 20, "baseline_feature_length": 32, "worst_n": 2},
}


def tracked_project_files(repo: Path = REPO) -> list[str]:
    """The files git tracks (as they are in the working tree), less the user's own data: what
    lies under data/ and DVC's `.dvc` pointer files (`dvc add data/raw/pumps.tsv`) would make a
    test project depend on data it does not have."""
    files = subprocess.run(
        ["git", "ls-files", "--cached"], cwd=repo, capture_output=True, text=True, check=True
    ).stdout.splitlines()
    return [f for f in files if not f.startswith("data/") and not f.endswith(".dvc")]


def copy_project(dest: Path, params: dict | None = None) -> Path:
    """The repo's tracked files (no .venv, no outputs, no user data) in `dest`, as a fresh git
    repo, with tiny data in data/raw/tiny.tsv and `params` merged into params.yaml."""
    for f in tracked_project_files():
        src = REPO / f
        if src.is_file():
            (dest / f).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / f)
    (dest / "data" / "raw").mkdir(parents=True, exist_ok=True)
    (dest / ".venv").symlink_to(VENV_BIN.parent)
    write_tsv(make_signals(), dest / "data" / "raw" / "tiny.tsv")
    p = yaml.safe_load((dest / "params.yaml").read_text())
    for layer in (TINY_PARAMS, params or {}):
        for name, sec in layer.items():
            p.setdefault(name, {}).update(sec)
    (dest / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
    run(["git", "init", "-q"], dest)
    run(["git", "add", "-A"], dest)
    git_commit(dest, "copy")
    return dest


def store_env(root: Path) -> dict[str, str]:
    """The environment of a test project's commands: its own BentoML store, no telemetry."""
    return {"BENTOML_HOME": str(root / ".bentoml"), "BENTOML_DO_NOT_TRACK": "true"}


def copy_tree(template: Path, dest: Path) -> Path:
    """A copy of a prepared test project (git history, DVC cache, outputs, store, links kept):
    what several test modules need, built once per session by a template fixture below."""
    shutil.copytree(template, dest, symlinks=True)
    return dest


@pytest.fixture(scope="session")
def tiny_pipeline(tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    """One `dvc repro` of the whole pipeline on tiny data (TINY_PIPELINE), its store in the
    project: (the template's root, that run). Modules that change the project take a copy
    (`copy_tree`); running the pipeline once per session instead of once per module saves
    about 80 s each."""
    root = copy_project(tmp_path_factory.mktemp("tiny-pipeline") / "proj", TINY_PIPELINE)
    first = run(["dvc", "repro"], root, **store_env(root))
    return root, first


@pytest.fixture(scope="session")
def deploy_template(tmp_path_factory) -> tuple[Path, dict[str, str]]:
    """A gate project with the bentofile and deploy/ folder, three registered versions
    (tests/gate_project.deploy_project): (the template's root, {registry version: model
    version}). Copy it (`copy_tree`) before use: the deploy and container tests change it."""
    from gate_project import deploy_project, make_project

    root = make_project(tmp_path_factory.mktemp("deploy-template") / "proj", bento=True)
    shutil.copytree(REPO / "deploy", root / "deploy")
    run(["git", "add", "-A"], root)
    git_commit(root, "project with bentofile")
    return root, deploy_project(root)


@pytest.fixture
def signals() -> pd.DataFrame:
    return make_signals()


@pytest.fixture
def project(tmp_path: Path) -> Path:
    return copy_project(tmp_path / "proj")


# ---------------------------------------------------------------- a real PostgreSQL server
@pytest.fixture(scope="session")
def postgres_instance():
    """One PostgreSQL server for the session (tests/pg.py); skipped only without binaries."""
    from pg import find_pg_bin, running_postgres

    if find_pg_bin() is None:
        pytest.skip("PostgreSQL binaries not found (/usr/lib/postgresql/*/bin): make system")
    with running_postgres() as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(postgres_instance) -> str:
    """postgresql://faultwatch:...@127.0.0.1:PORT/faultwatch, shared by the session."""
    return postgres_instance.url()


@pytest.fixture
def postgres_url(postgres_instance) -> str:
    """A new empty database on the session's server, for one test."""
    return postgres_instance.create_database()


# ------------------------------------------------- two workers (pytest-xdist, `make test`)
# `make test` runs the suite on two workers: it waits on servers, subprocesses and sleeps more
# than it computes. Work is handed out a module at a time, so a module's fixtures run once, on
# one worker; modules that share something a worker cannot hold twice share a group:
# - the session's tiny pipeline (one `dvc repro`, about 90 s, built once per worker that uses it);
# - podman's image store: the README walk-through and test_container both build the base image
#   and images from it (each its own project's name: faultwatch-proj, faultwatch-fwimages);
# - the deploy modules; the users of npm_modules() (one `npm ci` into .venv/npm at a time).
# (xdist's own `--dist loadgroup` marks do nothing with pytest 9: it renames `item._nodeid`,
# which pytest 9 no longer reads; so the grouping is this scheduler.)
XDIST_GROUPS = {
    "test_release": "tiny_pipeline",
    "test_stage_outputs": "tiny_pipeline",
    "test_jupyterlab": "tiny_pipeline",
    "test_report_page": "tiny_pipeline",
    "test_readme": "podman",
    "test_container": "podman",
    "test_deploy": "deploy",
    "test_deploy_postgres": "deploy",
    "test_k8s": "npm",
    "test_ci_workflow": "npm",
}
# the longest groups first: the scheduler hands groups out in collection order, so a long one
# started last would leave the other worker idle at the end
LONGEST_FIRST = ["podman", "tiny_pipeline", "deploy", "test_retrain", "test_serve"]


def group_of_nodeid(nodeid: str) -> str:
    """The group of a test: its module's group, or the module itself."""
    module = Path(nodeid.split("::", 1)[0]).stem
    return XDIST_GROUPS.get(module, module)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    def rank(item: pytest.Item) -> int:
        group = group_of_nodeid(item.nodeid)
        return LONGEST_FIRST.index(group) if group in LONGEST_FIRST else len(LONGEST_FIRST)

    items.sort(key=rank)  # stable: the order inside a group and among the rest is kept


def pytest_xdist_make_scheduler(config: pytest.Config, log):
    """Module-at-a-time scheduling with the groups above (xdist's LoadScopeScheduling, whose
    unit of work is what `_split_scope` returns)."""
    from xdist.scheduler import LoadScopeScheduling

    class GroupScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return group_of_nodeid(nodeid)

    return GroupScheduling(config, log)


# ---------------------------------------------------------------- schemas from npm
NPM_SRC = REPO / "tests" / "npm"
NPM_DIR = REPO / ".venv" / "npm"


def npm_modules() -> Path:
    """.venv/npm/node_modules as pinned by tests/npm/package-lock.json, installed when missing
    (`make setup` installs it): the schemas of deploy/ and of the GitHub workflow."""
    wanted = (NPM_SRC / "package-lock.json").read_text()
    modules = NPM_DIR / "node_modules"
    lock = NPM_DIR / "package-lock.json"
    if modules.is_dir() and lock.is_file() and lock.read_text() == wanted:
        return modules
    npm = shutil.which("npm")
    if npm is None:
        pytest.fail("npm is not on PATH: the schema packages in tests/npm need Node.js and npm")
    NPM_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("package.json", "package-lock.json", ".npmrc"):
        shutil.copyfile(NPM_SRC / name, NPM_DIR / name)
    proc = subprocess.run(
        [npm, "ci", "--prefix", str(NPM_DIR), "--no-audit", "--no-fund"],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert proc.returncode == 0, f"npm ci --prefix {NPM_DIR} failed:\n{proc.stderr[-2000:]}"
    return modules
